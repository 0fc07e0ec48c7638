"""What the commands do, as library functions: open a model with a profile, ask, summarize.

The CLI parses and prints; everything here can be called from Python and from tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import BinaryIO, Callable, Sequence

from longchat.context import strategy_class
from longchat.errors import ConfigError, InputError
from longchat.profile import Profile, load_profile
from longchat.runtime.generate import Engine, GenerationStats, Sampling
from longchat.runtime.loader import LoadedModel, load_model
from longchat.runtime.rope import Rope
from longchat.sources import STDIN, iter_pieces, read_text

Note = Callable[[str], None]
Progress = Callable[[int, int], None]


@dataclass
class Runner:
    """A loaded model behind one profile's strategy: what every command works with."""

    profile: Profile
    model: LoadedModel
    engine: Engine

    @property
    def tokenizer(self):
        return self.model.tokenizer

    @property
    def window(self) -> int:
        """Tokens of prompt + reply the strategy accepts."""
        return self.profile.context.window or self.model.cfg.max_position_embeddings

    @property
    def window_label(self) -> str:
        """The window for people: strategies with bounded attention take any length."""
        return "any length" if self.window >= 10_000_000 else f"{self.window:,} tokens"

    @property
    def effective_window(self) -> int:
        return min(self.profile.context.effective_window or self.window, self.window)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)


def open_runner(profile: str | Profile = "auto", model: str | None = None, *, device: str | None = None,
                overrides: Sequence[str] = (), note: Note = lambda m: None,
                loaded: LoadedModel | None = None) -> Runner:
    """Load the profile, then its model (`model` wins over the profile's), then the strategy.

    `loaded`: an already loaded model to use instead (comparisons run several profiles on one).
    """
    prof = profile if isinstance(profile, Profile) else load_profile(profile, list(overrides))
    loaded = loaded or load_model(model or prof.model or "default", device=device, note=note)
    cls = strategy_class(prof.context.strategy)
    dec = loaded.decoder
    strategy = cls(loaded.cfg, Rope(loaded.cfg.hf, dec.device), prof.strategy, device=dec.device, dtype=dec.dtype)
    engine = Engine(loaded, strategy, prefill_chunk=prof.context.prefill_chunk, final_chunk=prof.context.final_chunk)
    engine.on_note = note
    return Runner(prof, loaded, engine)


def chat_ids(tokenizer, messages: list[dict]) -> list[int]:
    """Token ids of `messages` in the model's chat template, ready for the assistant's reply."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return tokenizer.encode(text, add_special_tokens=False)
    # Base models have no template: a plain transcript they can continue.
    text = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in messages) + "Assistant:"
    return tokenizer.encode(text)


ASK_PROMPT = "Read the document below, then answer the question that follows it.\n\n{document}\n\nQuestion: {question}"


def ask_messages(document: str, question: str, system: str | None = None) -> list[dict]:
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": "user", "content": ASK_PROMPT.format(document=document, question=question)}]


def fit_document(runner: Runner, sources: Sequence[str], question: str, sampling: Sampling, *,
                 stdin: BinaryIO | None = None, truncate: bool = False, note: Note = lambda m: None) -> str:
    """Read the sources and make sure prompt + reply fit the window; never cut silently."""
    overhead = len(chat_ids(runner.tokenizer, ask_messages("", question)))
    budget = runner.window - sampling.max_new_tokens - overhead - 8  # 8: re-tokenising at the seams
    if budget <= 0:
        raise ConfigError(
            f"the window ({runner.window} tokens) has no room for a document after the question "
            f"and max_new_tokens={sampling.max_new_tokens}"
        )
    # No tokenizer yields more than ~12 characters a token on real text: read one char past that.
    max_chars = budget * 12
    text = read_text(sources, stdin=stdin, max_chars=max_chars, note=note)
    ids = runner.encode(text)
    if len(ids) <= budget and len(text) <= max_chars:
        return text
    size = f"more than {len(ids):,}" if len(text) > max_chars else f"{len(ids):,}"
    if not truncate:
        raise InputError(
            f"the input is {size} tokens but profile '{runner.profile.name}' leaves room for {budget:,} "
            f"(window {runner.window:,}); pass --truncate to keep only the start, or use `longchat summarize`"
        )
    note(f"warning: the input is {size} tokens; kept the first {budget:,} and dropped the rest (--truncate)")
    return runner.tokenizer.decode(ids[:budget])


def ask(runner: Runner, sources: Sequence[str], question: str, *, sampling: Sampling | None = None,
        stdin: BinaryIO | None = None, truncate: bool = False, system: str | None = None,
        on_text: Callable[[str], None] | None = None, progress: Progress | None = None,
        note: Note = lambda m: None) -> str:
    """Answer `question` about the sources; the reply streams to `on_text` and is returned."""
    if not question.strip():
        raise InputError("the question is empty")
    sampling = sampling or runner.profile.generation
    document = fit_document(runner, sources, question, sampling, stdin=stdin, truncate=truncate, note=note)
    prompt = chat_ids(runner.tokenizer, ask_messages(document, question, system))
    return runner.engine.generate_text(prompt, sampling, on_text=on_text, progress=progress)


SUMMARY_PROMPT = ("Summarize the following text in a short paragraph. Keep names, numbers, dates "
                  "and key facts.\n\n{text}")
MERGE_PROMPT = ("The notes below summarize consecutive parts of one long input, in order. Write one "
                "short summary of the whole input from them.\n\n{text}")


class Summarizer:
    """Hierarchical summary in bounded memory: chunk summaries, merged whenever they pile up."""

    def __init__(self, runner: Runner, sampling: Sampling, on_chunk: Callable[[int], None] = lambda n: None):
        self.runner = runner
        self.sampling = sampling
        self.on_chunk = on_chunk
        overhead = len(chat_ids(runner.tokenizer, [{"role": "user", "content": MERGE_PROMPT.format(text="")}]))
        self.chunk_tokens = runner.effective_window - sampling.max_new_tokens - overhead - 8
        if self.chunk_tokens < 64:
            raise ConfigError(
                f"effective window {runner.effective_window} leaves too little room for text after "
                f"max_new_tokens={sampling.max_new_tokens}; lower generation.max_new_tokens"
            )
        self.notes: list[str] = []   # summaries not yet merged; their total stays under a chunk
        self.chunks = 0
        self.total = GenerationStats(stop_reason="done")

    def _generate(self, template: str, text: str) -> str:
        prompt = chat_ids(self.runner.tokenizer, [{"role": "user", "content": template.format(text=text)}])
        reply = self.runner.engine.generate_text(prompt, self.sampling).strip()
        s = self.runner.engine.stats
        for key in ("prompt_tokens", "new_tokens", "prefill_s", "decode_s"):
            setattr(self.total, key, getattr(self.total, key) + getattr(s, key))
        self.total.peak_rss_mb = max(self.total.peak_rss_mb, s.peak_rss_mb)
        return reply

    def add_chunk(self, text: str) -> None:
        self.notes.append(self._generate(SUMMARY_PROMPT, text))
        self.chunks += 1
        self.on_chunk(self.chunks)
        joined = "\n\n".join(self.notes)
        if len(self.runner.encode(joined)) > self.chunk_tokens:
            # Merge all but the newest note so the pile never outgrows one chunk.
            self.notes = [self._generate(MERGE_PROMPT, "\n\n".join(self.notes[:-1])), self.notes[-1]]

    def finish(self, tail: str) -> str:
        if self.chunks == 0:
            return self._generate(SUMMARY_PROMPT, tail)  # the whole input fits one chunk
        if tail.strip():
            self.add_chunk(tail)
        if len(self.notes) == 1:
            return self.notes[0]
        return self._generate(MERGE_PROMPT, "\n\n".join(self.notes))


def summarize(runner: Runner, sources: Sequence[str], *, sampling: Sampling | None = None,
              stdin: BinaryIO | None = None, progress: Callable[[int, int | None, int], None] | None = None,
              note: Note = lambda m: None) -> tuple[str, GenerationStats]:
    """Summarise sources of any length; `progress(bytes_read, total_bytes or None, chunks_done)`."""
    sampling = sampling or runner.profile.generation
    sources = list(sources) or [STDIN]
    total = None
    if all(s != STDIN and os.path.isfile(s) for s in sources):
        total = sum(os.path.getsize(s) for s in sources)
    read = 0
    summarizer = Summarizer(runner, sampling, on_chunk=lambda n: progress and progress(read, total, n))
    limit = summarizer.chunk_tokens
    buffer, has_text = "", False
    for piece, is_text in iter_pieces(sources, stdin=stdin, note=note):
        has_text = has_text or (is_text and not piece.isspace())
        read += len(piece.encode("utf-8", "replace"))
        buffer += piece
        # Tokenise a bounded slice at a time (~2 chunks of text), so memory stays flat.
        while len(buffer) >= limit * 8:
            head, buffer = buffer[: limit * 8], buffer[limit * 8:]
            ids = runner.encode(head)
            summarizer.add_chunk(runner.tokenizer.decode(ids[:limit]))
            if len(ids) > limit:
                buffer = runner.tokenizer.decode(ids[limit:]) + buffer
        if progress:
            progress(read, total, summarizer.chunks)
    if not has_text:
        raise InputError("the input is empty")
    # What is left may still be more than one chunk (short inputs never entered the loop).
    ids = runner.encode(buffer)
    while len(ids) > limit:
        summarizer.add_chunk(runner.tokenizer.decode(ids[:limit]))
        ids = ids[limit:]
    text = summarizer.finish(runner.tokenizer.decode(ids))
    return text, summarizer.total
