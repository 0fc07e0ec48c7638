"""The baseline most users reach for: retrieve the best passages (BM25), read them whole.

Registered as the compression method "rag" (so `ask`, `compress`, `chat --file` and
`longchat bench ... --compress` can all use it) and as the profile `rag`, which pairs it with
full attention: `longchat ask --profile rag book.txt "..."`, and
`longchat bench needles -p rag,infllm` compares it with InfLLM on the same prompts.

Documents are cut into passages of about `compress.passage_tokens` tokens at paragraph, line
or sentence breaks; each passage is scored by Okapi BM25 (k1 = 1.5, b = 0.75) against the
question's words (lower-cased, stop words dropped); the best passages are kept until the
budget (`compress.target_tokens`, else `rate` x the input) and put back in reading order.
Passages holding a `--keep` string always stay. Without a question there is nothing to
retrieve by: the start of the input is kept, with a note.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from longchat.compress import budget
from longchat.errors import InputError
from longchat.plugins import hookimpl

if TYPE_CHECKING:
    from longchat.compress import Result

K1, B = 1.5, 0.75
STOP = set("""a an and are as at be by did do does for from had has have how i if in into is it its my of on or so
that the their them there these they this to was were what when where which who whom why will with you your
""".split())
BREAK = re.compile(r"\n\s*\n|\n|(?<=[.!?])\s+")


def words(text: str) -> list[str]:
    return [w for w in re.findall(r"[^\W_]+", text.lower()) if w not in STOP]


def bm25(query: list[str], passages: list[list[str]]) -> list[float]:
    n = len(passages)
    avg = sum(len(p) for p in passages) / max(n, 1) or 1.0
    df = Counter(w for p in passages for w in set(p))
    scores = []
    for p in passages:
        tf = Counter(p)
        s = 0.0
        for w in set(query):
            if tf[w]:
                idf = math.log(1 + (n - df[w] + 0.5) / (df[w] + 0.5))
                s += idf * tf[w] * (K1 + 1) / (tf[w] + K1 * (1 - B + B * len(p) / avg))
        scores.append(s)
    return scores


class RagCompressor:
    def __init__(self, model, settings, note=lambda m: None):
        self.tok = model.tokenizer
        self.s = settings
        self.note = note

    def _count(self, text: str) -> int:
        return len(self.tok.encode(text, add_special_tokens=False))

    def passages(self, text: str) -> list[tuple[str, int]]:
        """(text, tokens) pieces of about passage_tokens tokens, cut at the strongest break available."""
        pieces, out, buf, size = [], [], "", 0
        pos = 0
        for m in BREAK.finditer(text):
            pieces.append(text[pos:m.end()])
            pos = m.end()
        pieces.append(text[pos:])
        for piece in pieces:
            n = self._count(piece)
            if buf and size + n > self.s.passage_tokens:
                out.append((buf, size))
                buf, size = "", 0
            buf += piece
            size += n
        if buf.strip():
            out.append((buf, size))
        return [(p, n) for p, n in out if p.strip()]

    def compress(self, docs, *, question=None, labels=None, keep=(), rate=None, target_tokens=None, method=None,
                 progress=lambda done, total: None) -> Result:
        from longchat.compress import Result  # here: it imports torch, which loading the plugin need not

        start = time.perf_counter()
        found = [(d, p, n) for d, text in enumerate(docs) for p, n in self.passages(text)]
        items = [(d, p) for d, p, _ in found]
        sizes = [n for _, _, n in found]  # summed piece counts: within a token or two of the passage's
        total = sum(sizes)
        if not total:
            raise InputError("the input is empty")
        rate = self.s.rate if rate is None else rate
        target = budget.target_tokens(total, rate, self.s.target_tokens if target_tokens is None else target_tokens)
        if question and question.strip():
            scores = bm25(words(question), [words(p) for _, p in items])
            order = sorted(range(len(items)), key=lambda i: (-scores[i], i))
        else:
            self.note("rag without a question keeps the start of the input")
            order = list(range(len(items)))
        must = [i for i, (_, p) in enumerate(items) if any(k and k in p for k in keep)]
        chosen, used = set(must), sum(sizes[i] for i in must)
        for i in order:
            if used >= target:
                break
            if i not in chosen and used + sizes[i] <= target * 1.05:
                chosen.add(i)
                used += sizes[i]
        progress(total, total)
        parts, prev_doc = [], None
        for i in sorted(chosen):
            d, p = items[i]
            if d != prev_doc:
                parts.append(("\n\n" if parts else "") + (f"### File: {labels[d]}\n" if labels else ""))
                prev_doc = d
            else:
                parts.append("\n\n")
            parts.append(p.strip())
        text = "".join(parts)
        return Result(text=text, tokens_in=total, tokens_out=self._count(text), target=target,
                      seconds=time.perf_counter() - start, method="rag", passages_in=len(items),
                      passages_kept=len(chosen), ranking=order)


@hookimpl
def longchat_compressors():
    return [("rag", RagCompressor)]


@hookimpl
def longchat_profiles():
    return [Path(__file__).with_name("rag.toml")]
