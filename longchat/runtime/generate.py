"""Prefill and decode: chunked prefill, streaming decode, sampling, stop tokens, stats.

An `Engine` owns one strategy (one sequence). It remembers which token ids its strategy has
consumed, so a chat turn only prefills what is new when the strategy can rewind (`truncate`).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Collection, Iterator

import torch
from tokenizers import Tokenizer

from longchat.context.attention import AttentionFlops, counting
from longchat.context.base import Question, QuestionText, ReadsQuestion
from longchat.runtime.loader import LoadedModel
from longchat.sysinfo import peak_rss_mb

try:
    from tokenizers.decoders import DecodeStream
except ImportError:  # an older tokenizers, without it: every tokenizer takes the generic scheme
    DecodeStream = None

# Chat-template end markers of the families we run; used when present in the vocabulary.
STOP_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<|endoftext|>", "<|end_of_text|>", "</s>")


class Cancelled(KeyboardInterrupt):
    """A reply stopped by its caller (`should_stop`): a client that went away, a server
    shutting down. A KeyboardInterrupt, so that every place that keeps a reply cut short by
    Ctrl-C (a chat turn marked interrupted, the engine's stats) keeps this one the same way."""


@dataclass
class Sampling:
    """How to pick the next token. temperature 0 means greedy."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    seed: int = 0
    # Stop a reply whose last N tokens already appeared in it (a loop), and cut the repeat
    # off; 0 = off. 32 tokens: a tokenizer that spells numbers digit by digit makes one
    # timestamp ~20 tokens, and a reply may rightly name the same time twice; a loop is caught
    # 32 tokens in. (Session replies use 16 unless a profile sets another: chat.session.)
    stop_on_repeat: int = 32

    def validate(self, where: str) -> None:
        from longchat.settings import require

        require(self.max_new_tokens >= 1, where, "max_new_tokens", "an integer >= 1")
        require(self.temperature >= 0, where, "temperature", "a number >= 0 (0 = greedy)")
        require(0 < self.top_p <= 1, where, "top_p", "a number in (0, 1]")
        require(self.top_k >= 0, where, "top_k", "an integer >= 0 (0 = off)")
        require(self.repetition_penalty > 0, where, "repetition_penalty", "a number > 0 (1 = off)")
        require(self.stop_on_repeat == 0 or self.stop_on_repeat >= 4, where, "stop_on_repeat",
                "0 (off) or an integer >= 4 (tokens)")


# `GenerationStats.stop_reason` of figures summed over several replies (their `stops` say how
# each ended).
SUMMED = "done"


@dataclass
class GenerationStats:
    prompt_tokens: int = 0
    reused_tokens: int = 0
    prefill_s: float = 0.0
    new_tokens: int = 0
    decode_s: float = 0.0
    # How the reply ended: eos (the model ended its turn: a stop token), stop (a caller's stop
    # string, `longchat serve`), repeat (stop_on_repeat), length (max_new_tokens), interrupted;
    # SUMMED for a sum of replies.
    stop_reason: str = ""
    peak_rss_mb: float = 0.0
    prefill_flops: int = 0      # weight matmuls + the attention the strategy asked for
    stops: dict = field(default_factory=dict)  # summed figures: stop_reason -> how many replies
    extra: dict = field(default_factory=dict)

    @property
    def prefill_tok_s(self) -> float:
        done = self.prompt_tokens - self.reused_tokens
        return done / self.prefill_s if self.prefill_s > 0 else 0.0

    @property
    def decode_tok_s(self) -> float:
        # The first new token comes out of prefill; decode steps produce the rest.
        steps = max(self.new_tokens - 1, 0)
        return steps / self.decode_s if self.decode_s > 0 else 0.0

    @property
    def endings(self) -> dict[str, int]:
        """How the replies these figures cover ended, {stop_reason: count}: a sum's tally, or
        one reply's own reason."""
        if self.stops or self.stop_reason in ("", SUMMED):
            return dict(self.stops)
        return {self.stop_reason: 1}

    def add(self, other: "GenerationStats") -> None:
        """Sum another reply's figures into these (peak memory: the larger; how it ended: counted)."""
        for key in ("prompt_tokens", "reused_tokens", "prefill_s", "new_tokens", "decode_s", "prefill_flops"):
            setattr(self, key, getattr(self, key) + getattr(other, key))
        self.peak_rss_mb = max(self.peak_rss_mb, other.peak_rss_mb)
        for reason, n in other.endings.items():
            self.stops[reason] = self.stops.get(reason, 0) + n
        for key, value in other.extra.items():  # a remote engine's figures (runtime.remote): counts summed
            if key.startswith("remote") or key == "token_counts":
                summed = isinstance(value, (int, float)) and not isinstance(value, bool) and key != "remote_window"
                self.extra[key] = round(self.extra.get(key, 0) + value, 3) if summed else value

    def as_dict(self) -> dict:
        out = asdict(self)
        extra = out.pop("extra")
        out["stops"] = self.endings
        out.update(prefill_tok_s=round(self.prefill_tok_s, 1), decode_tok_s=round(self.decode_tok_s, 2))
        out.update(extra)
        for key in ("prefill_s", "decode_s"):
            out[key] = round(out[key], 3)
        return out


def stop_token_ids(tokenizer, hf_config) -> set[int]:
    """EOS ids from the config and tokenizer, plus known chat end markers in the vocabulary."""
    ids: set[int] = set()
    for source in (getattr(hf_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(source, int):
            ids.add(source)
        elif isinstance(source, (list, tuple)):
            ids.update(source)
    vocab = tokenizer.get_vocab()
    ids.update(vocab[t] for t in STOP_TOKENS if t in vocab)
    return ids


class Detokenizer:
    """Turns a stream of token ids into text deltas without splitting multi-byte characters.

    The deltas join up to what decoding the whole reply gives (special tokens skipped), at a cost
    per token that does not grow with the reply: a fast tokenizer steps `tokenizers`'
    `DecodeStream`; any other decodes only the few ids since the last delta (`_window_delta`).
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self._parts: list[str] = []  # the deltas; `emitted` joins them when asked
        backend = _decode_backend(tokenizer)
        self._stream = (backend, DecodeStream(skip_special_tokens=True)) if backend is not None else None
        # The generic scheme: ids[prefix:read] spelt the text around the last delta; the next
        # delta is what ids[prefix:] adds to it.
        self._prefix = self._read = 0

    @property
    def emitted(self) -> str:
        """The reply's text so far."""
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    def push(self, token_id: int) -> str:
        """Take the next id; return the text it completes ("" while a character is incomplete)."""
        self.ids.append(token_id)
        delta = None
        if self._stream is not None:
            backend, stream = self._stream
            try:
                delta = stream.step(backend, token_id) or ""
            except Exception:
                # DecodeStream gives up on some invalid byte sequences (a byte-fallback token
                # that a later one respells); the generic scheme takes over from the last delta.
                self._stream = None
        if delta is None:
            delta = self._window_delta()
        if delta:
            self._parts.append(delta)
            self._prefix, self._read = self._read, len(self.ids)
        return delta

    def _window_delta(self) -> str:
        # Decoding from the id before the last delta, not from the reply's start, keeps spacing
        # that depends on the neighbour (a leading-space marker dropped at a text's start is
        # dropped in both decodes alike), as text-generation servers do.
        decode = self.tokenizer.decode
        before = decode(self.ids[self._prefix:self._read], skip_special_tokens=True)
        text = decode(self.ids[self._prefix:], skip_special_tokens=True)
        if len(text) <= len(before) or text.endswith("\ufffd"):
            return ""  # nothing new yet, or an incomplete UTF-8 sequence: wait for the next token
        return text[len(before):]


def _decode_backend(tokenizer):
    """The `tokenizers.Tokenizer` behind a fast HF tokenizer whose `decode` is that tokenizer's
    alone (no clean-up of spaces after it), else None."""
    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
    if DecodeStream is None or not isinstance(backend, Tokenizer):
        return None
    return None if getattr(tokenizer, "clean_up_tokenization_spaces", False) else backend


def sample_next(logits: torch.Tensor, s: Sampling, history: list[int], gen: torch.Generator) -> int:
    """Pick the next token from logits (V,)."""
    if s.repetition_penalty != 1.0 and history:
        logits = logits.clone()  # logits come out of inference mode: edit a copy
        seen = torch.tensor(sorted(set(history)), device=logits.device)
        picked = logits[seen]
        logits[seen] = torch.where(picked > 0, picked / s.repetition_penalty, picked * s.repetition_penalty)
    if s.temperature <= 0:
        return int(torch.argmax(logits))
    logits = logits / s.temperature
    if s.top_k > 0:
        kth = torch.topk(logits, min(s.top_k, logits.shape[-1])).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if s.top_p < 1.0:
        sorted_p, order = torch.sort(probs, descending=True)
        cut = torch.cumsum(sorted_p, 0) - sorted_p > s.top_p
        sorted_p[cut] = 0
        probs = torch.zeros_like(probs).scatter_(0, order, sorted_p)
    return int(torch.multinomial(probs.cpu(), 1, generator=gen))


class RepeatGuard:
    """Spots a reply that loops: its last `n` tokens already appeared in it. `cut` is then
    where the repetition starts (the reply up to it holds one copy of what repeats)."""

    def __init__(self, n: int):
        self.n = n
        self.seen: dict[tuple[int, ...], int] = {}  # n-gram -> where it first started
        self.cut: int | None = None

    def push(self, ids: list[int]) -> bool:
        """True when `ids` (the reply so far, one token longer than last time) now repeats."""
        if len(ids) < self.n:
            return False
        j = len(ids) - self.n
        gram = tuple(ids[j:])
        i = self.seen.setdefault(gram, j)
        if i == j:
            return False
        while i > 0 and ids[i - 1] == ids[j - 1]:  # the copy may have started earlier
            i, j = i - 1, j - 1
        self.cut = j
        return True


# Logits added to the token that carries a reply on as a favoured text goes on, once the reply
# runs FAVOUR - 1 tokens as it does (`CopyGuard.helped`): the passages or lines of a document that
# an `ask`, a chat or a session read, and the block InfLLM pinned for an `ask` (docs/settings.md).
FAVOUR_BOOST = 3.0


class CopyGuard:
    """Keeps a reply from copying earlier texts: the token that would complete an `n`-gram found
    in one of `earlier` (token ids, e.g. the assistant's earlier replies) is barred, and so is
    the last token of any of `phrases` (token ids, barred whole whatever their length). A small
    model otherwise answers a new question with its last reply, word for word.

    And the other way round, for texts the reply should follow (`favoured`, e.g. the user's
    facts placed before a question): once the reply's last `FAVOUR - 1` tokens run as in one
    of them, the token that came next there gets `boost` added to its logit."""

    FAVOUR = 4

    def __init__(self, earlier: list[list[int]], n: int, phrases: list[list[int]] = (),
                 favoured: list[list[int]] = (), boost: float = 0.0, breaks: Collection[int] = ()):
        self.n = n
        self.next = _continuations(earlier, n)  # (n-1)-gram -> the tokens that followed it
        self.phrases: dict[tuple[int, ...], set[int]] = {}
        for ids in phrases:
            if ids:
                self.phrases.setdefault(tuple(ids[:-1]), set()).add(ids[-1])
        self.boost = boost
        # Never across a sentence's end (`breaks`: tokens that end one): the answer is helped to
        # finish the sentence it quotes, not to read the document on after it.
        self.favoured = _continuations(favoured, self.FAVOUR, set(breaks)) if boost else {}

    def barred(self, new: list[int]) -> set[int]:
        """The tokens `new` (the reply so far) may not continue with."""
        out: set[int] = set()
        if self.n and len(new) >= self.n - 1:
            out |= self.next.get(tuple(new[len(new) - self.n + 1:]), set())
        for head, last in self.phrases.items():
            if len(new) >= len(head) and tuple(new[len(new) - len(head):]) == head:
                out |= last
        return out

    def helped(self, new: list[int]) -> set[int]:
        """The tokens that would carry `new` on as a favoured text goes on (they get `boost`)."""
        k = self.FAVOUR - 1
        return self.favoured.get(tuple(new[len(new) - k:]), set()) if len(new) >= k else set()


def _continuations(texts: list[list[int]], n: int, breaks: set[int] = frozenset()) -> dict[tuple[int, ...], set[int]]:
    """(n-1)-gram -> the tokens that follow it somewhere in `texts` (n-grams holding one of
    `breaks` left out)."""
    out: dict[tuple[int, ...], set[int]] = {}
    for ids in texts:
        for i in range(len(ids) - n + 1):
            if not breaks or breaks.isdisjoint(ids[i:i + n]):
                out.setdefault(tuple(ids[i:i + n - 1]), set()).add(ids[i + n - 1])
    return out


def sentence_breaks(tokenizer, texts: list[list[int]]) -> set[int]:
    """The tokens of `texts` that end a sentence or a line (their text holds a line break or ends
    in . ! or ?)."""
    ids = sorted({t for ids in texts for t in ids})
    pieces = tokenizer.batch_decode([[t] for t in ids])
    return {t for t, p in zip(ids, pieces) if "\n" in p or p.rstrip().endswith((".", "!", "?"))}


class Engine:
    """Generates from one model through one context strategy, keeping its state between calls."""

    def __init__(self, model: LoadedModel, strategy, *, prefill_chunk: int = 512, final_chunk: int = 0):
        self.model = model
        self.strategy = strategy
        self.prefill_chunk = prefill_chunk
        # Strategies that retrieve memory by a chunk's mean query (InfLLM) choose what the
        # first answer token sees from the prompt's last chunk: a short one that is mostly
        # the question retrieves by the question, not by the text before it.
        self.final_chunk = final_chunk
        # No tokenizer (a random-weight model for benchmarks): no stop tokens, every step runs.
        self.stop_ids = stop_token_ids(model.tokenizer, model.cfg.hf) if model.tokenizer is not None else set()
        self.cached_ids: list[int] = []  # ids the strategy state holds, in order
        self.stats = GenerationStats()
        self.attention_flops = AttentionFlops()  # what the strategy's attention did, all forwards
        # What the strategy tells the user, unless a call passes its own `on_note` (the process's
        # stderr for the CLI; a server passes one per request).
        self.on_note: Callable[[str], None] = lambda message: None
        # (ids, restore): an attached memory that prompts start with, and how to go back to it.
        self.base: tuple[list[int], Callable[[], None]] | None = None

    def reset(self, *, forget_base: bool = False) -> None:
        """Forget what the strategy holds (and, with `forget_base`, the attached memory too)."""
        if forget_base:
            self.base = None
        self.strategy.reset()
        self.cached_ids = []

    def restore(self, ids: list[int], load: Callable[[], None], *, as_base: bool = False) -> None:
        """Start from a saved state that holds `ids`: `load()` puts it into the (reset) strategy.

        With `as_base` (an attached memory), a later prompt that starts with `ids` but diverges
        from what is cached goes back to that state by loading it again, not by re-reading `ids`.
        """
        def back() -> None:
            self.reset()
            load()
            self.cached_ids = list(ids)

        back()
        self.base = (list(ids), back) if as_base else None

    def _forward(self, ids: list[int], logits: str):
        # If a forward is interrupted (Ctrl-C) the strategy state is half-updated: forget it.
        try:
            with counting(self.attention_flops):
                out = self.model.decoder.forward(torch.tensor([ids], device=self.model.device), self.strategy.reader,
                                                 logits=logits)
        except BaseException:
            self.reset()
            raise
        self.cached_ids.extend(ids)
        return out

    def _reuse_prefix(self, prompt_ids: list[int]) -> int:
        """Keep the longest cached prefix of the prompt (minus one token, to get its logits).

        When the strategy cannot rewind to it, fall back to `base` (an attached memory the
        prompt starts with): restoring it costs a file read, not re-reading the memory.
        """
        n = 0
        for a, b in zip(self.cached_ids, prompt_ids):
            if a != b:
                break
            n += 1
        n = min(n, len(prompt_ids) - 1)
        if n < len(self.cached_ids):
            if n and self.strategy.reader.truncate(n):
                self.cached_ids = self.cached_ids[:n]
            else:
                n = 0
                self.reset()
        if self.base is not None:
            base_ids, restore = self.base
            if n < len(base_ids) < len(prompt_ids) and prompt_ids[: len(base_ids)] == base_ids:
                restore()
                n = len(base_ids)
        return n

    def prefill(self, prompt_ids: list[int], progress: Callable[[int, int], None] | None = None,
                question: Question | None = None, should_stop: Callable[[], bool] | None = None) -> torch.Tensor:
        """Feed the prompt in chunks; return the logits (V,) after its last token. `question`:
        what the caller knows of the question the prompt ends with (else the last chunk's text
        stands for it); `should_stop`: asked between forwards, True raises `Cancelled`."""
        reused = self._reuse_prefix(prompt_ids)
        todo = prompt_ids[reused:]
        self.stats = GenerationStats(prompt_tokens=len(prompt_ids), reused_tokens=reused)
        attention_before = self.attention_flops.flops
        start = time.perf_counter()
        logits = None
        reread, scored = 0, 0  # extra reads of the question (to agree on what to retrieve)
        reader = self.strategy.reader
        for i, j in self.chunk_bounds(len(todo)):
            last = j == len(todo)
            if last and isinstance(reader, ReadsQuestion):
                reread, scored = reader.read_last_chunk(todo[i:j], self._read_aside,
                                                        self._question_text(todo[i:j], question))
            logits = self._forward(todo[i:j], "last" if last else "none")
            if progress:
                progress(reused + j, len(prompt_ids))
            if not last:
                self._check_stop(should_stop)
        if logits is not None and logits.device.type == "cuda":
            torch.cuda.synchronize(logits.device)  # a GPU runs behind Python: count its work here
        self.stats.prefill_s = time.perf_counter() - start
        self.stats.prefill_flops = (self.attention_flops.flops - attention_before
                                    + self.model.decoder.matmul_flops(len(todo) + reread, 1 + scored))
        return logits[0]

    def _question_text(self, chunk: list[int], question: Question | None) -> QuestionText | None:
        """The prompt so far and the question (else the last chunk) as text."""
        tok = self.model.tokenizer  # a random-weight model (`bench scale`) has none: no words to match
        if not hasattr(tok, "batch_decode"):
            return None
        text = question.text if question is not None else tok.decode(chunk, skip_special_tokens=True)
        return QuestionText(list(self.cached_ids), text, lambda spans: tok.batch_decode(spans, skip_special_tokens=True),
                            apart=question is not None and question.apart)

    def _read_aside(self, ids: list[int], logits: str):
        """A forward the strategy is about to rewind: the cached ids stay as they were."""
        out = self._forward(ids, logits)
        del self.cached_ids[-len(ids):]
        return out

    def chunk_bounds(self, n: int) -> list[tuple[int, int]]:
        """[start, end) of each prefill forward over `n` new tokens."""
        tail = self.final_chunk if 0 < self.final_chunk < n else 0
        body = n - tail
        bounds = [(i, min(i + self.prefill_chunk, body)) for i in range(0, body, self.prefill_chunk)]
        return bounds + ([(body, n)] if tail else [])

    def generate(self, prompt_ids: list[int], sampling: Sampling,
                 progress: Callable[[int, int], None] | None = None, question: Question | None = None,
                 copy_guard: CopyGuard | None = None, *, on_note: Callable[[str], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> Iterator[int]:
        """Yield new token ids until a stop token or the token limit. Stats land in `self.stats`.

        `question`: the user's question the prompt ends with, for strategies that retrieve by its
        words (else the text of the prompt's last chunk stands for it), and whether it is asked
        about a document before it (`ask`). `copy_guard`: n-grams the reply may not copy.
        `on_note`: where this call's notes go (else `self.on_note`); `should_stop`: asked before
        each prefill chunk and each decoded token, True raises `Cancelled` (`longchat serve`: the
        client left), between forwards, so the state stays consistent."""
        if not prompt_ids:
            raise ValueError("empty prompt")
        message = self._prepare(prompt_ids, len(prompt_ids) + sampling.max_new_tokens)
        if self.strategy.reader.length != len(self.cached_ids):  # the strategy started afresh
            self.reset()
        if message:
            (on_note or self.on_note)(message)
        logits = self.prefill(prompt_ids, progress, question, should_stop)
        if copy_guard is None and question is not None and question.apart:
            copy_guard = self._answer_aid()
        chosen = getattr(self.strategy, "chosen", None)
        if chosen:
            self.stats.extra["strategy_used"] = chosen
        gen = torch.Generator().manual_seed(sampling.seed)
        new: list[int] = []
        guard = RepeatGuard(sampling.stop_on_repeat) if sampling.stop_on_repeat else None
        self.repeat_cut = None
        start = time.perf_counter()
        self.stats.stop_reason = "length"
        try:
            while len(new) < sampling.max_new_tokens:
                barred = copy_guard.barred(new) if copy_guard is not None else None
                helped = copy_guard.helped(new) if copy_guard is not None and copy_guard.boost else None
                if barred or helped:
                    logits = logits.clone()  # logits come out of inference mode: edit a copy
                    if helped:
                        logits[list(helped)] += copy_guard.boost
                    if barred:
                        logits[list(barred)] = float("-inf")
                token = sample_next(logits, sampling, new, gen)
                if token in self.stop_ids:
                    self.stats.stop_reason = "eos"
                    break
                new.append(token)
                self.stats.new_tokens = len(new)
                yield token
                if guard is not None and guard.push(new):
                    self.stats.stop_reason = "repeat"
                    self.repeat_cut = guard.cut
                    self.stats.extra["repeat_cut_tokens"] = len(new) - guard.cut
                    break
                if len(new) >= sampling.max_new_tokens:
                    break
                self._check_stop(should_stop)
                logits = self._forward([token], "last")[0]
        except (GeneratorExit, KeyboardInterrupt):
            self.stats.stop_reason = "interrupted"
            raise
        finally:
            self.stats.decode_s = time.perf_counter() - start
            self.stats.peak_rss_mb = round(peak_rss_mb(), 1)
            self.stats.extra["memory_mb"] = self.memory_split(self.stats.peak_rss_mb)

    def memory_split(self, peak_mb: float) -> dict[str, float]:
        """What the peak resident memory is made of, in MiB: the process before the weights
        (Python, torch, our code), the weights as held, the attention state the strategy
        holds now (the KV cache; it only grows within a reply), and the rest: activations, the
        tokenizer, allocator slack (`working`)."""
        dec = self.model.decoder
        split = {"floor": self.model.floor_mb, "weights": dec.weight_bytes / 2**20 if dec.device.type == "cpu" else 0.0,
                 "kv_cache": self.strategy.reader.memory_bytes() / 2**20 if dec.device.type == "cpu" else 0.0}
        split["working"] = max(peak_mb - sum(split.values()), 0.0)
        return {k: round(v, 1) for k, v in split.items()}

    def _answer_aid(self) -> CopyGuard | None:
        """For a question about a document: the strategy's favoured spans of it (InfLLM's
        pinned block), as a `CopyGuard` that nudges the answer to run on as they do."""
        reader = self.strategy.reader
        spans, boost = reader.answer_aid() if isinstance(reader, ReadsQuestion) else ([], 0.0)
        read = [self.cached_ids[a:b] for a, b in spans if b <= len(self.cached_ids)]
        if not read or not boost or self.model.tokenizer is None:
            return None
        self.stats.extra["answer_aid_tokens"] = sum(len(x) for x in read)
        return CopyGuard([], 0, favoured=read, boost=boost, breaks=sentence_breaks(self.model.tokenizer, read))

    def _prepare(self, prompt_ids: list[int], n_tokens: int) -> str | None:
        """Let the strategy get ready for a prompt + reply of `n_tokens`. A prompt that starts
        with the attached memory is read by the strategy that holds it: `auto` would otherwise
        pick full attention for a short one, and the memory, restored into InfLLM, be lost."""
        if self.base is not None and prompt_ids[: len(self.base[0])] == self.base[0]:
            found = self.strategy.memory_strategy(n_tokens)
            if found is not None:
                return found[0].prepare(n_tokens) or found[1]
        return self.strategy.prepare(n_tokens)

    def _check_stop(self, should_stop: Callable[[], bool] | None) -> None:
        if should_stop is not None and should_stop():
            self.stats.stop_reason = "interrupted"
            raise Cancelled()

    last_text = ""  # the reply `generate_text` made so far: what was said before a Ctrl-C
    repeat_cut: int | None = None  # where the last reply began to repeat itself (stop_on_repeat)

    def generate_text(self, prompt_ids: list[int], sampling: Sampling,
                      on_text: Callable[[str], None] | None = None, progress=None, question: Question | None = None,
                      *, messages: list[dict] | None = None, tools: list[dict] | None = None,
                      copy_guard: CopyGuard | None = None, on_note: Callable[[str], None] | None = None,
                      should_stop: Callable[[], bool] | None = None) -> str:
        """Run `generate` and return the decoded reply, streaming deltas to `on_text`: the one
        streaming loop (ask, summarize, chat and sessions all reply through it). Stats are
        final when it returns or raises (Ctrl-C in `on_text` included). `messages` and `tools`
        (what `prompt_ids` were rendered from) are for a remote engine (`runtime.remote`); the
        local model reads the ids."""
        detok = Detokenizer(self.model.tokenizer)
        self.last_text = ""  # what was produced, also when Ctrl-C cuts the reply short
        tokens = self.generate(prompt_ids, sampling, progress, question, copy_guard, on_note=on_note,
                               should_stop=should_stop)
        try:
            for token in tokens:
                delta = detok.push(token)
                if delta and on_text:
                    on_text(delta)
        finally:
            tokens.close()  # finalises stats now, not at garbage collection
            self.last_text = detok.emitted
        if self.repeat_cut is not None:  # streamed already; the returned reply drops the repeat
            return self.model.tokenizer.decode(detok.ids[: self.repeat_cut], skip_special_tokens=True)
        return detok.emitted
