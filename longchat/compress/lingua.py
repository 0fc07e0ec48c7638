"""LLMLingua and LongLLMLingua-style prompt compression with a small causal LM.

Only the context is compressed. The steps (see DESIGN.md and budget.py for the arithmetic):

1. Documents are cut into passages of at most `passage_tokens` (at blank lines, newlines or
   sentence ends), so the compressor never reads more than a passage plus the question.
2. Coarse: passages are ranked. llmlingua: by their own perplexity, highest first (surprising
   text carries information). longllmlingua: by the perplexity of the question followed by
   "We can get the answer to this question in the given documents." after the passage,
   lowest first. Passages are kept in rank order up to `COARSE_SLACK` x the target; passages
   holding a `keep` string are always kept.
3. Fine: each kept passage is read in segments of ~`SEGMENT_TOKENS`; a token's score is its
   loss given the *compressed* text before it in the passage (the KV cache holds only what
   was kept) - llmlingua - or that loss minus its loss when the question comes first
   (longllmlingua's contrastive perplexity). Whole units (words, numbers, code lines,
   keep-strings; see units.py) are kept best-first until the passage's budget, with the
   rounding error carried on so the total lands on the target.
4. Passages go out in reading order (best first when there is a question), each document's
   "### File:" header kept.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from longchat.compress import budget
from longchat.compress.units import Unit, assign_tokens, render, split_units
from longchat.context.full import FullAttention
from longchat.errors import InputError
from longchat.runtime.rope import Rope

SENTENCE_END = re.compile(r"[.!?;:]\s")
RESTRICTION = " We can get the answer to this question in the given documents."
METHODS = ("llmlingua", "longllmlingua")
# The method's own constants (LLMLingua's iterative segments, LongLLMLingua's dynamic ratio and
# reordering), fixed rather than settings since issue 40 (docs/settings.md).
SEGMENT_TOKENS = 200   # token-level scoring step (the compressed prefix is re-read)
COARSE_SLACK = 1.25    # passages kept by rank until they hold this x the target
DYNAMIC_RATIO = 0.3    # longllmlingua: the best passage keeps +0.3 more, the worst -0.3
Progress = Callable[[int, int], None]  # (tokens read, tokens to read)


@dataclass
class Passage:
    doc: int             # index of its document
    index: int           # its place among all passages (reading order)
    text: str
    ids: list[int]
    units: list[Unit]
    owner: list[int]     # per token: the unit it belongs to
    adjacent: bool       # continues the passage before it in the same document

    @property
    def forced(self) -> int:
        return sum(u.tokens for u in self.units if u.forced)

    @property
    def free(self) -> int:
        return len(self.ids) - self.forced


@dataclass
class Result:
    text: str
    tokens_in: int
    tokens_out: int
    target: int
    seconds: float
    method: str
    passages_in: int = 0
    passages_kept: int = 0
    ranking: list[int] = field(default_factory=list)  # passage indices, best first (when ranked)

    @property
    def ratio(self) -> float:
        return self.tokens_out / self.tokens_in if self.tokens_in else 1.0

    def as_dict(self) -> dict:
        return {"method": self.method, "tokens_in": self.tokens_in, "tokens_out": self.tokens_out,
                "target": self.target, "ratio": round(self.ratio, 4), "seconds": round(self.seconds, 3),
                "passages_in": self.passages_in, "passages_kept": self.passages_kept}


def _fresh_state(model) -> FullAttention:
    """An empty full-attention KV state for the compressor model."""
    return FullAttention(model.cfg, Rope(model.cfg.hf, model.device), device=model.device, dtype=model.decoder.dtype)


def _token_losses(prev_logits: torch.Tensor, ids: list[int]) -> torch.Tensor:
    """-log p(ids[i]) from the logits that predict each of them (one row per id)."""
    target = torch.tensor(ids, device=prev_logits.device)
    return -prev_logits.log_softmax(-1).gather(1, target[:, None])[:, 0]


class _Reader:
    """The compressor reading one passage left to right, its KV holding only kept tokens."""

    def __init__(self, model, lead: list[int]):
        self.model = model
        self.state = _fresh_state(model)
        self.last = self._run(lead)[-1]
        self.logits: torch.Tensor | None = None

    def _run(self, ids: list[int]) -> torch.Tensor:
        x = torch.tensor([ids], device=self.model.device)
        return self.model.decoder.forward(x, self.state, logits="all")[0].float()

    def losses(self, ids: list[int]) -> torch.Tensor:
        """-log p(token) for each of `ids`, read after everything kept so far."""
        self.logits = self._run(ids)
        return _token_losses(torch.cat([self.last[None], self.logits[:-1]]), ids)

    @torch.inference_mode()
    def keep(self, mask: list[bool]) -> None:
        """Drop the last segment's unkept tokens from the cache (positions keep their gaps,
        as in the reference: the kept text reads as if the rest had never been there)."""
        t = len(mask)
        kept = [i for i, m in enumerate(mask) if m]
        if kept:
            self.last = self.logits[kept[-1]]
        if len(kept) == t:
            return
        for buf in self.state.layers:
            base = buf.size - t
            idx = torch.tensor([base + i for i in kept], dtype=torch.long, device=buf.k.device)
            n = base + len(kept)
            buf.k[:, :, base:n] = buf.k[:, :, idx]
            buf.v[:, :, base:n] = buf.v[:, :, idx]
            buf.size = n


class Compressor:
    """Compresses documents with one loaded model (the bundled small one by default)."""

    def __init__(self, model, settings, *, note: Callable[[str], None] = lambda m: None):
        self.model = model
        self.s = settings
        self.note = note
        self.tok = model.tokenizer

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False)

    # -- 1. passages ---------------------------------------------------------------------------
    def passages(self, docs: Sequence[str], keep: Sequence[str]) -> list[Passage]:
        """Each document's units (found on the whole document, so a code block or keep-string
        spanning a cut stays what it is) grouped into passages cut between units."""
        out: list[Passage] = []
        for d, text in enumerate(docs):
            if not text.strip():
                continue
            enc = self.tok(text, add_special_tokens=False, return_offsets_mapping=True)
            ids, offsets = enc["input_ids"], [tuple(o) for o in enc["offset_mapping"]]
            units, owner = assign_tokens(split_units(text, keep), text, offsets)
            for k, (a, b) in enumerate(self._cuts(text, offsets, owner)):
                first, last = owner[a], owner[b - 1]
                c0 = units[first].start
                c1 = units[last + 1].start if last + 1 < len(units) else len(text)
                local = [Unit(u.start - c0, u.end - c0, u.forced, u.line, u.tokens) for u in units[first:last + 1]]
                out.append(Passage(d, len(out), text[c0:c1], ids[a:b], local, [o - first for o in owner[a:b]],
                                   adjacent=k > 0))
        return out

    def _cuts(self, text: str, offsets: list[tuple[int, int]], owner: list[int]) -> list[tuple[int, int]]:
        """Token ranges of about passage_tokens, cut between units at the strongest break in
        their second half (a blank line, a newline, a sentence end, a space)."""
        n = len(offsets)
        size = -(-n // -(-n // self.s.passage_tokens))  # even sizes: no stub passage at the end
        cuts, start = [], 0
        while n - start > size:
            best, best_level = None, -1
            for t in range(start + size, start + size // 2, -1):
                if owner[t] == owner[t - 1]:
                    continue
                around = text[offsets[t - 1][0]:offsets[t][0] + 1]
                level = (4 if "\n\n" in around else 3 if "\n" in around
                         else 2 if SENTENCE_END.search(around) else 1 if " " in around else 0)
                if level > best_level:
                    best, best_level = t, level
                    if level == 4:
                        break
            if best is None:  # one unit longer than half a passage: cut after it
                best = next((t for t in range(start + size, n) if owner[t] != owner[t - 1]), n)
            cuts.append((start, best))
            start = best
        return cuts + ([(start, n)] if start < n else [])

    # -- 2. coarse -----------------------------------------------------------------------------
    def rank(self, passages: list[Passage], question: str | None, progress: Callable[[int], None]) -> list[int]:
        """Passage indices, best first."""
        cond = self.encode(question.strip() + RESTRICTION) if question else []
        lead = self.encode("\n")
        scores = []
        for p in passages:
            ids = lead + p.ids + cond
            n = len(cond) if cond else len(p.ids)
            logits = self.model.decoder.forward(torch.tensor([ids], device=self.model.device), _fresh_state(self.model),
                                                logits=n + 1)[0, :-1].float()
            loss = _token_losses(logits, ids[len(ids) - n:]).mean().item()
            scores.append(loss if cond else -loss)  # lower question loss / higher own loss first
            progress(len(p.ids))
        return sorted(range(len(passages)), key=lambda i: (scores[i], i))

    # -- 3. fine -------------------------------------------------------------------------------
    def squeeze(self, p: Passage, budget_tokens: float, question: str | None) -> tuple[list[bool], int]:
        """Which units of `p` to keep so about `budget_tokens` of its tokens stay; and how many did."""
        units = p.units
        if budget_tokens >= len(p.ids):
            return [True] * len(units), len(p.ids)
        if budget_tokens <= p.forced:
            return [u.forced for u in units], p.forced
        lead = self.encode("\n")
        plain = _Reader(self.model, lead)
        cond = _Reader(self.model, self.encode(question.strip() + "\n\n") + lead) if question else None
        kept = [False] * len(units)
        done_tokens, kept_tokens = 0, 0
        for a, b in self._segments(p):
            ids = p.ids[a:b]
            scores = plain.losses(ids)
            if cond is not None:
                scores = scores - cond.losses(ids)
            first, last = p.owner[a], p.owner[b - 1]
            best = [-float("inf")] * (last - first + 1)
            for t, s in zip(range(a, b), scores.tolist()):
                u = p.owner[t] - first
                best[u] = max(best[u], s)
            seg_units = units[first:last + 1]
            for u, score in zip(seg_units, best):
                u.score = score
            forced = sum(u.tokens for u in seg_units if u.forced)
            done_tokens += b - a
            # The segment's share of the budget, plus whatever earlier segments missed.
            want = budget_tokens * done_tokens / len(p.ids) - kept_tokens - forced
            free = [i for i, u in enumerate(seg_units) if not u.forced]
            pick = budget.pick_units([best[i] for i in free], [seg_units[i].tokens for i in free], want)
            seg_keep = [u.forced for u in seg_units]
            for i, k in zip(free, pick):
                seg_keep[i] = k
            for i, k in enumerate(seg_keep):
                kept[first + i] = k
            kept_tokens += sum(u.tokens for u, k in zip(seg_units, seg_keep) if k)
            mask = [seg_keep[p.owner[t] - first] for t in range(a, b)]
            plain.keep(mask)
            if cond is not None:
                cond.keep(mask)
        return kept, kept_tokens

    def _segments(self, p: Passage) -> list[tuple[int, int]]:
        """Token ranges of about SEGMENT_TOKENS that never split a unit."""
        out, start, n = [], 0, len(p.ids)
        while start < n:
            end = min(n, start + SEGMENT_TOKENS)
            while 0 < end < n and p.owner[end] == p.owner[end - 1]:
                end += 1
            out.append((start, end))
            start = end
        return out

    # -- all -----------------------------------------------------------------------------------
    def compress(self, docs: Sequence[str], *, question: str | None = None, labels: Sequence[str] | None = None,
                 keep: Sequence[str] = (), rate: float | None = None, target_tokens: int | None = None,
                 method: str | None = None, progress: Progress = lambda done, total: None) -> Result:
        """Compress `docs` (one string each); `labels` give each a "### File:" header line."""
        start = time.perf_counter()
        method = method or (self.s.method if self.s.on else "longllmlingua")
        if method not in METHODS:
            raise InputError(f"unknown compression method {method!r}; use one of: {', '.join(METHODS)}")
        question = (question or "").strip() or None
        if method == "longllmlingua" and question is None:
            self.note("longllmlingua without a question ranks like llmlingua (by each passage's own perplexity)")
        passages = self.passages(docs, keep)
        total = sum(len(p.ids) for p in passages)
        if not total:
            raise InputError("the input is empty")
        rate = self.s.rate if rate is None else rate
        target = budget.target_tokens(total, rate, self.s.target_tokens if target_tokens is None else target_tokens)
        aware = method == "longllmlingua" and question is not None
        sizes = [len(p.ids) for p in passages]
        must = [p.index for p in passages if p.forced]
        ranking: list[int] = []
        reads = 2 if aware else 1  # token-level reads per token: contrastive reads twice
        done = 0

        def ranked(n: int) -> None:
            nonlocal done
            done += n
            progress(done, total + round(min(total, target * COARSE_SLACK)) * reads)

        if len(passages) > 1 and (aware or total > target * COARSE_SLACK):
            ranking = self.rank(passages, question if aware else None, ranked)
            rest = [i for i in ranking if i not in must]
            held = sum(sizes[i] for i in must)  # passages with a keep-string are always kept
            order = must + rest
            chosen = must + budget.coarse_select(rest, sizes, max(0, target - held / COARSE_SLACK),
                                                 COARSE_SLACK)
        else:
            order = chosen = list(range(len(passages)))
        chosen_set = set(chosen)
        by_rank = [i for i in order if i in chosen_set]
        offsets = budget.rank_offsets(len(by_rank), DYNAMIC_RATIO if aware else 0.0)
        kept_passages = [passages[i] for i in by_rank]
        ratios = budget.keep_ratios([p.free for p in kept_passages], [p.forced for p in kept_passages],
                                    offsets, target)
        masks: dict[int, list[bool]] = {}
        work = done + reads * sum(len(p.ids) for p, r in zip(kept_passages, ratios) if 0 < r < 1)
        carry = 0.0
        for p, r in zip(kept_passages, ratios):
            for u in p.units:
                u.score = float("inf")  # unscored (a passage kept whole) never goes in the trim
            want = p.forced + r * p.free + carry
            mask, got = self.squeeze(p, want, question if aware else None) if r < 1 else ([True] * len(p.units), len(p.ids))
            carry = want - got
            masks[p.index] = mask
            if 0 < r < 1:
                done += reads * len(p.ids)
                progress(done, work)
        out_order = by_rank if aware else sorted(by_rank)  # with a question, the best passage goes first
        text, out_tokens = self._settle(passages, out_order, masks, labels, target)
        return Result(text=text, tokens_in=total, tokens_out=out_tokens, target=target,
                      seconds=time.perf_counter() - start, method=method, passages_in=len(passages),
                      passages_kept=len(by_rank), ranking=ranking)

    def _settle(self, passages, order, masks, labels, target) -> tuple[str, int]:
        """Render, count, and trim or refill by unit score until the count is within 2% of the
        target: joining kept words re-tokenises a little differently from the original. Refills
        skip units larger than what is missing (a code line can be 25 tokens); the closest
        result seen is the one returned."""
        best: tuple[int, str, int] | None = None
        for _ in range(6):
            pieces = {i: render(passages[i].text, passages[i].units, masks[i]) for i in order}
            text = self._join(passages, order, pieces, labels)
            n = len(self.encode(text)) if text else 0
            miss = n - target
            if best is None or abs(miss) < best[0]:
                best = (abs(miss), text, n)
            if abs(miss) <= 0.02 * target + 1:
                break
            over = miss > 0
            pool = sorted(((u.score, i, k) for i in order for k, u in enumerate(passages[i].units)
                           if not u.forced and u.score != float("inf") and masks[i][k] == over),
                          reverse=not over)
            moved = 0
            for _, i, k in pool:
                if moved >= abs(miss):
                    break
                size = passages[i].units[k].tokens
                if not over and moved + size > abs(miss) + 0.02 * target + 1:
                    continue  # too big to add: look for a smaller one
                masks[i][k] = not over
                moved += size
            if not moved:
                break
        return best[1], best[2]

    @staticmethod
    def _join(passages: list[Passage], order: list[int], pieces: dict[int, str], labels) -> str:
        parts: list[str] = []
        prev: Passage | None = None
        for i in order:
            p, piece = passages[i], pieces[i].strip("\n")
            if not piece:
                continue
            if prev is None or prev.doc != p.doc:
                if parts:
                    parts.append("\n\n")
                if labels is not None:
                    parts.append(f"### File: {labels[p.doc]}\n")
            elif p.adjacent and p.index == prev.index + 1:
                tail = prev.text[len(prev.text.rstrip()):] + p.text[:len(p.text) - len(p.text.lstrip())]
                parts.append("\n\n" if "\n\n" in tail else "\n" if "\n" in tail else " ")
            else:
                parts.append("\n\n")
            parts.append(piece)
            prev = p
        return "".join(parts)
