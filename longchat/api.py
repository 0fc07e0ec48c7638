"""What the commands do, as library functions: open a model with a profile, ask, summarize.

The CLI parses and prints; everything here can be called from Python and from tests.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, replace
from typing import BinaryIO, Callable, Iterable, Sequence

from longchat import memory as memories
from longchat import reading
from longchat.context import strategy_class
from longchat.context.base import Question
from longchat.memory.encode import collect_sources, read_ids
from longchat.prompts import (LOG_REPORT_PROMPT, MERGE_PROMPT, SUMMARY_PROMPT, ask_messages, chat_ids, encode_rendered,
                              frame, question_suffix)
from longchat.errors import ConfigError, InputError
from longchat.profile import Profile, load_profile
from longchat.runtime import remote
from longchat.runtime.generate import SUMMED, Engine, GenerationStats, Sampling
from longchat.runtime.loader import LoadedModel, load_model
from longchat.runtime.rope import Rope
from longchat.runtime.step import CompiledStep, compile_step
from longchat.settings import ANY_LENGTH
from longchat.sources import STDIN, iter_pieces, read_text, wants_headers
from longchat.text.cite import cite, quoted

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
    def remote(self) -> bool:
        """The model is an OpenAI-compatible engine (`--model openai:URL`, `runtime.remote`)."""
        return self.engine.strategy is None

    @property
    def window(self) -> int:
        """Tokens of prompt + reply the strategy accepts."""
        return self.profile.context.window or self.model.cfg.max_position_embeddings

    @property
    def window_label(self) -> str:
        """The window for people: strategies with bounded attention take any length."""
        if self.remote:
            return f"{self.model.window:,} tokens of the engine's"
        return "any length" if self.window >= ANY_LENGTH else f"{self.window:,} tokens"

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
    if loaded is None and remote.is_remote(model or prof.model):
        return open_remote(prof, model or prof.model, note=note)
    loaded = loaded or load_model(model or prof.model or "default", device=device, weights=prof.runtime.weights, note=note)
    cls = strategy_class(prof.context.strategy)
    dec = loaded.decoder
    if prof.runtime.compile == "on" and not isinstance(dec.step, CompiledStep):
        compile_step(dec, "on", note)
    strategy = cls(loaded.cfg, Rope(loaded.cfg.hf, dec.device), prof.strategy, device=dec.device, dtype=dec.dtype,
               kv=prof.runtime.kv)
    engine = Engine(loaded, strategy, prefill_chunk=prof.context.prefill_chunk, final_chunk=prof.context.final_chunk)
    engine.on_note = note
    return Runner(prof, loaded, engine)


def reply_limit(prof: Profile, spec: str, note: Note = lambda m: None) -> int:
    """The longest reply `prof` allows on the local model `spec`, read from the model's config
    (no weights load): the window less one prompt token. Strategies that take any length
    (streaming, infllm, auto) allow any reply (`ANY_LENGTH`): reading past the trained length
    is what they are for."""
    from longchat.runtime.loader import trained_length

    window = prof.context.window or trained_length(spec, note)
    return min(window, ANY_LENGTH) - 1


# Strategies that only change which text the model reads; the others work on the local KV cache.
REMOTE_STRATEGIES = ("full", "auto")


def open_remote(prof: Profile, spec: str, *, note: Note = lambda m: None) -> Runner:
    """A runner whose model is an OpenAI-compatible engine. Its window comes from the engine
    (else `context.window`) and is held in the local tokenizer's units (`RemoteModel.ratio`),
    so chunking, sessions and budgets work as with a local model; `ask` counts with the engine."""
    from longchat.runtime.loader import load_tokenizer

    if prof.context.strategy not in REMOTE_STRATEGIES:
        raise ConfigError(
            f"profile '{prof.name}' uses the {prof.context.strategy} strategy, which works inside the local model's "
            f"attention (its KV cache); a remote engine only reads text. Use --profile auto (the engine reads the "
            f"input whole while it fits its window; past it, retrieval or compression, chosen per question), "
            f"--profile rag, or --compress RATE")
    tokenizer = load_tokenizer(prof.compress.model, note=note)
    model = remote.RemoteModel(spec, tokenizer, timeout=prof.remote.timeout, retries=prof.remote.retries, note=note)
    window, source = model.engine_window, model.window_source
    if window is None:
        bounded = prof.context.window if 0 < prof.context.window < ANY_LENGTH else 0
        window, source = bounded or DEFAULT_REMOTE_WINDOW, (
            "the profile's context.window" if bounded else
            "a default: the engine reports none (--set context.window=N to say it)")
    counts = "counted by the engine (/tokenize)" if model.exact else \
        f"estimated locally (x{remote.ESTIMATE_RATIO}; the engine has no /tokenize)"
    note(f"remote engine {model.base_url}, model {model.model_id}: window {window:,} tokens from {source}; "
         f"tokens {counts}")
    model.window = window
    local = max(256, int(window / model.ratio))
    context = replace(prof.context, window=local, effective_window=local)
    engine = remote.RemoteEngine(model)
    engine.on_note = note
    return Runner(replace(prof, context=context), model, engine)


DEFAULT_REMOTE_WINDOW = 8192


def input_room(runner: Runner, window: int, sampling: Sampling, frame: list[dict]) -> int:
    """Tokens of input that fit `window` beside the reply and the messages `frame` wraps it in
    (rendered empty), less 8 for re-tokenising at the seams."""
    return window - sampling.max_new_tokens - len(chat_ids(runner.tokenizer, frame)) - 8


def fit_document(runner: Runner, sources: Sequence[str], question: str, sampling: Sampling, *,
                 stdin: BinaryIO | None = None, truncate: bool = False, note: Note = lambda m: None,
                 text: str | None = None) -> str:
    """Read the sources (or take `text`) and make sure prompt + reply fit the window; never cut silently."""
    budget = input_room(runner, runner.window, sampling, ask_messages("", question))
    if budget <= 0:
        raise ConfigError(
            f"the window ({runner.window} tokens) has no room for a document after the question "
            f"and max_new_tokens={sampling.max_new_tokens}"
        )
    # No tokenizer yields more than ~12 characters a token on real text: read one char past that.
    max_chars = budget * 12
    if text is None:
        text = read_text(sources, stdin=stdin, max_chars=max_chars, note=note)
    ids = runner.encode(text[: max_chars + 1])
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


def compress_input(runner: Runner, sources: Sequence[str], question: str | None, *, stdin: BinaryIO | None = None,
                   keep: Sequence[str] = (), progress: Progress | None = None, note: Note = lambda m: None):
    """The sources compressed by the profile's [compress] settings (a `compress.Result`)."""
    from longchat import compress

    result = compress.compress_sources(compress.compressor_for(runner, note=note), sources, question=question,
                                       keep=keep, stdin=stdin, progress=progress, note=note)
    note(compress.describe(result))
    return result


def text_source(text: str, label: str = "<compressed>"):
    """A document held in memory (compressed text), encoded like stdin."""
    import hashlib

    from longchat.memory.encode import Source

    data = text.encode("utf-8")
    return Source(label, "stdin", None, len(data), hashlib.sha256(data).hexdigest(), None, data)


def ask(runner: Runner, sources: Sequence[str], question: str, *, sampling: Sampling | None = None,
        stdin: BinaryIO | None = None, truncate: bool = False, system: str | None = None,
        on_text: Callable[[str], None] | None = None, progress: Progress | None = None,
        note: Note = lambda m: None, cache: bool = True, memory: str | None = None,
        keep: Sequence[str] = (), compress_progress: Progress | None = None) -> str:
    """Answer `question` about the sources (or the named `memory`); the reply streams to
    `on_text` and is returned.

    With a profile that keeps block memory (infllm, auto past the effective window) the sources
    are encoded once into the automatic cache and later questions only read the question
    (`cache=False`: encode, answer, keep nothing). Other strategies read the whole prompt.
    With [compress] on, the sources are compressed first (question-aware for longllmlingua)
    and the model reads only what is left.
    """
    if not question.strip():
        raise InputError("the question is empty")
    sampling = sampling or runner.profile.generation
    if memory is not None and runner.remote:
        raise ConfigError(memories.REMOTE_NO_MEMORY)
    if runner.remote:
        return ask_remote(runner, sources, question, sampling, stdin=stdin, truncate=truncate, system=system,
                          on_text=on_text, progress=progress, note=note, keep=keep,
                          compress_progress=compress_progress)
    if memory is not None:
        if sources:
            raise InputError("give SOURCEs or --memory, not both")
        mem = memories.find(memory)
        return _answer_from(runner, mem, question, sampling, system, on_text, progress, note, hit="named")
    suffix = question_suffix(runner.tokenizer, question, system)
    squeezed = None
    if runner.profile.compress.on:
        squeezed = compress_input(runner, sources, question, stdin=stdin, keep=keep, progress=compress_progress,
                                  note=note).text
    params = memories.infllm_for_params(runner)
    if params is None:
        document = fit_document(runner, sources, question, sampling, stdin=stdin, truncate=truncate, note=note,
                                text=squeezed)
        messages = ask_messages(document, question, system)
        return runner.engine.generate_text(chat_ids(runner.tokenizer, messages), sampling, on_text=on_text,
                                           progress=progress, question=Question(question), messages=messages)
    if squeezed is None:
        srcs = collect_sources(sources, stdin=stdin, read_stdin=True, note=note)
        headers = wants_headers(sources)
    else:
        srcs, headers = [text_source(squeezed)], False
    head, _ = frame(runner.tokenizer, system)
    if cache and (mem := memories.cached(runner, srcs, head, headers)) is not None:
        return _answer_from(runner, mem, question, sampling, system, on_text, progress, note, hit="hit")
    ids = read_ids(runner.tokenizer, srcs, 0, headers)
    if not any(x is None or src.has_text for x, src in zip(ids, srcs)):
        raise InputError("the input is empty")
    head_ids = encode_rendered(runner.tokenizer, head)
    total = None if any(x is None for x in ids) else len(head_ids) + sum(len(x) for x in ids) + len(suffix)
    engine = runner.engine
    label = None if headers else srcs[0].label  # one source: its name is in no "### File:" line
    if total is not None and total + sampling.max_new_tokens <= memories.full_up_to(runner):
        flat = head_ids + [int(t) for x in ids for t in x]  # fits: read whole (`auto` picks full)
        answer = engine.generate_text(flat + suffix, sampling, on_text=on_text, progress=progress,
                                      question=Question(question))
        return _cited(runner, answer, flat, len(head_ids), [(len(head_ids), len(flat))], label, question)
    if total is not None and reading.reads_passages(runner, total - len(head_ids) - len(suffix)):
        flat = head_ids + [int(t) for x in ids for t in x]
        answer = answer_from_passages(runner, flat, len(head_ids), question, system, sampling, on_text, progress, note,
                                      label)
        if answer is not None:
            return answer
    strategy, message = memories.infllm_for(runner, (total or 1 << 40) + sampling.max_new_tokens)
    if message:
        note(message)
    if total is not None:  # will the blocks fit: in RAM (or the disk tier), or in the ask cache's folder?
        strategy.prepare(total + sampling.max_new_tokens, folder=memories.cache_root() if cache else None)
    result = memories.encode_for_ask(runner, strategy, srcs, head, headers, ids, cache=cache,
                                     progress=progress or (lambda d, t: None), note=note, head_ids=head_ids)
    document = list(engine.cached_ids)
    answer = engine.generate_text(document + suffix, sampling, on_text=on_text, question=Question(question, apart=True))
    _cited(runner, answer, document, len(head_ids), strategy.read_spans(len(document)), label, question)
    engine.stats.extra.update(memory=result.memory.name if result.memory else None, cache="miss" if cache else "off",
                              encoded_tokens=result.encoded,
                              encode_s=round(result.seconds, 3), encode_tok_s=round(result.tokens_per_s, 1))
    if result.memory is not None:
        result.memory.touch()
        memories.evict_cache(memories.cache_limit(), keep=result.memory.path, note=note)
    return answer


def _cited(runner: Runner, answer: str, ids: list[int], start: int, spans: list[tuple[int, int]],
           label: str | None, question: str = "") -> str:
    """Record where the text read for `answer` came from (`sources` in --stats and --json): the
    lines the answer quotes when it quotes some (beyond the question's words), else all of `spans`."""
    tok = runner.tokenizer
    asked = tok.encode(question, add_special_tokens=False) + tok.encode(" " + question, add_special_tokens=False)
    spans = quoted(ids, spans, tok.encode(answer.strip(), add_special_tokens=False), asked=asked) or spans
    decode = lambda x: tok.decode(x, skip_special_tokens=True)  # noqa: E731
    runner.engine.stats.extra["sources"] = [c.as_dict() for c in cite(decode, ids, start, spans, label)]
    return answer


def answer_from_passages(runner: Runner, ids: list[int], start: int, question: str, system: str | None,
                         sampling: Sampling, on_text, progress, note: Note, label: str | None = None) -> str | None:
    """Answer from what `reading.choose` picks of the document `ids[start:]` (the template head
    before it): BM25's best passages, else the lines nearest the question's meaning, read alone
    with full attention. None when it picks neither: the caller reads the whole document with
    InfLLM. Callers check `reading.reads_passages` first."""
    chosen = reading.choose(runner, ids, start, question, note=note, label=label)
    if chosen is None:
        return None
    messages = ask_messages(chosen.text, question, system)
    answer = runner.engine.generate_text(chat_ids(runner.tokenizer, messages), sampling, on_text=on_text,
                                         progress=progress, question=Question(question), messages=messages,
                                         copy_guard=chosen.copy_guard(runner.tokenizer))
    runner.engine.stats.extra.update(chosen.info())
    if chosen.spans:  # the passage's line that the answer quotes, when it quotes one
        _cited(runner, answer, ids, start, chosen.spans, label, question)
    return answer


def ask_remote(runner: Runner, sources: Sequence[str], question: str, sampling: Sampling, *,
               stdin: BinaryIO | None = None, truncate: bool = False, system: str | None = None,
               on_text: Callable[[str], None] | None = None, progress: Progress | None = None,
               note: Note = lambda m: None, keep: Sequence[str] = (),
               compress_progress: Progress | None = None) -> str:
    """`ask` against a remote engine (`runtime.remote`). The engine reads the whole input while
    prompt + reply fit its window. Past it, `auto` reads BM25's best passages when one holds
    half of the question's words (as `rag` does), else compresses the input
    question-aware with the local compressor down to the window; stderr says which. Other
    profiles refuse an input past the window (or keep its start with `truncate`), never silently."""
    model, tok = runner.model, runner.tokenizer
    if runner.profile.compress.on:
        document = compress_input(runner, sources, question, stdin=stdin, keep=keep, progress=compress_progress,
                                  note=note).text
    else:
        document = read_text(sources, stdin=stdin, note=note)
    overhead, _ = model.count_messages(ask_messages("", question, system))
    room = model.window - sampling.max_new_tokens - overhead
    if room <= 0:
        raise ConfigError(f"the engine's window ({model.window:,} tokens) has no room for a document after the "
                          f"question and max_new_tokens={sampling.max_new_tokens}")
    local = len(runner.encode(document))
    # The engine counts what could fit: a tokenizer twice as thrifty as the local one's at most.
    n, exact = model.count(document) if local <= 2 * room else (math.ceil(local * model.ratio), False)
    counted = "counted by the engine" if exact else "estimated"
    read, cited = "whole", []
    if n > room:
        budget = int(room / model.ratio)  # local tokens that surely fit
        if truncate:
            note(f"warning: the input is {n:,} tokens ({counted}); kept the first ~{room:,} that fit the engine's "
                 f"window ({model.window:,}) and dropped the rest (--truncate)")
            document, read = tok.decode(runner.encode(document)[:budget]), "truncated"
        elif runner.profile.context.strategy != "auto":
            raise InputError(
                f"the input is {n:,} tokens ({counted}) but the engine's window ({model.window:,}) leaves room for "
                f"{room:,}; use --profile auto (retrieval or compression past the window), --compress RATE, "
                f"or --truncate")
        else:
            label = None if wants_headers(sources) or not sources else sources[0]
            document, read, cited = _fit_remote(runner, document, question, budget, keep, compress_progress, note,
                                                label)
    else:
        note(f"remote: the engine reads the whole input ({n:,} tokens, {counted}; window {model.window:,})")
    messages = ask_messages(document, question, system)
    answer = runner.engine.generate_text(runner.encode(document), sampling, on_text=on_text, progress=progress,
                                         question=Question(question), messages=messages)
    runner.engine.stats.extra.update(read=read, document_tokens=n, document_tokens_exact=exact,
                                     remote_window=model.window)
    if cited:
        runner.engine.stats.extra["sources"] = cited
    return answer


def _fit_remote(runner: Runner, document: str, question: str, budget: int, keep: Sequence[str],
                compress_progress: Progress | None, note: Note, label: str | None) -> tuple[str, str, list[dict]]:
    """`auto` past a remote engine's window: (the text to send, how it was chosen, its sources):
    what `reading.choose` picks (passages, the nearest lines), else the input compressed."""
    chosen = reading.choose(runner, runner.encode(document), 0, question, note=note, budget=budget, label=label)
    if chosen is not None:
        return chosen.text, chosen.how, chosen.info().get("sources", [])
    return compress_to(runner, document, question, budget, keep, compress_progress, note), "compressed", []


def compress_to(runner: Runner, document: str, question: str | None, budget: int, keep: Sequence[str] = (),
                progress: Progress | None = None, note: Note = lambda m: None) -> str:
    """`document` compressed question-aware by the local compressor down to ~`budget` tokens
    (what a remote engine reads of an input past its window that no passage answers)."""
    from longchat import compress

    note(f"compressing it question-aware with the local compressor down to ~{budget:,} tokens")
    result = compress.compressor_for(runner, note=note).compress(
        [document], question=question, keep=keep, target_tokens=budget, method="longllmlingua",
        progress=progress or (lambda d, t: None))
    note(compress.describe(result))
    return result.text


def _answer_from(runner, mem, question, sampling, system, on_text, progress, note, hit: str) -> str:
    """Answer from an encoded memory: only the question's tokens are read, or,
    with `auto` on a long memory, only BM25's best passages of it (`answer_from_passages`)."""
    mem.lock(exclusive=False)
    mem.touch()  # `memories list` shows when it was last read, by passages or blocks
    try:
        head = len(encode_rendered(runner.tokenizer, frame(runner.tokenizer, system)[0]))
        label = mem.documents[0]["label"] if len(mem.documents) == 1 else None
        if mem.complete and reading.reads_passages(runner, mem.tokens - head):  # ids.bin is read only then
            answer = answer_from_passages(runner, mem.ids(), head, question, system, sampling, on_text, progress,
                                          note, label)
            if answer is not None:
                runner.engine.stats.extra.update(memory=mem.name, cache=hit)
                return answer
        start = time.perf_counter()
        prefix = memories.attach(runner, mem, system=system, note=note)
        load_s = time.perf_counter() - start
        suffix = question_suffix(runner.tokenizer, question, system)
        answer = runner.engine.generate_text(prefix + suffix, sampling, on_text=on_text, progress=progress,
                                             question=Question(question, apart=True))
        if hasattr(reader := runner.engine.strategy.reader, "read_spans"):
            _cited(runner, answer, prefix, head, reader.read_spans(len(prefix)), label, question)
    finally:
        mem.unlock()
    runner.engine.stats.extra.update(memory=mem.name, cache=hit, memory_load_s=round(load_s, 3))
    return answer


def summary_sampling(sampling: Sampling) -> Sampling:
    """Generation settings for summaries: tokens already said are made a little less likely (a
    135M model otherwise writes one sentence again and again; a reply that loops anyway is cut
    by stop_on_repeat, as every reply is). A profile's own value wins."""
    penalty = sampling.repetition_penalty
    return replace(sampling, repetition_penalty=penalty if penalty != 1.0 else 1.1)


class Summarizer:
    """Hierarchical summary in bounded memory: chunk summaries, merged whenever they pile up."""

    def __init__(self, runner: Runner, sampling: Sampling, on_chunk: Callable[[int], None] = lambda n: None):
        self.runner = runner
        self.sampling = summary_sampling(sampling)
        self.on_chunk = on_chunk
        self.chunk_tokens = input_room(runner, runner.effective_window, sampling,
                                       [{"role": "user", "content": MERGE_PROMPT.format(text="")}])
        if self.chunk_tokens < 64:
            raise ConfigError(
                f"effective window {runner.effective_window} leaves too little room for text after "
                f"max_new_tokens={sampling.max_new_tokens}; lower generation.max_new_tokens"
            )
        self.notes: list[str] = []   # summaries not yet merged; their total stays under a chunk
        self.chunks = 0
        self.total = GenerationStats(stop_reason=SUMMED)
        self.note_sampling = replace(self.sampling, max_new_tokens=min(self.sampling.max_new_tokens, 128))

    def plan(self, total_bytes: int | None) -> None:
        """Pick the chunk notes' length from the input's size: short enough that all the notes
        fit one final merge when they can (no merges on the way), at least 48 tokens. Unknown
        size (stdin): 128. ~4 bytes a token: a rough mean for text."""
        if total_bytes is None:
            return
        chunks = total_bytes // 4 // self.chunk_tokens + 1
        length = max(48, min(self.sampling.max_new_tokens, self.chunk_tokens // chunks - 16))
        self.note_sampling = replace(self.sampling, max_new_tokens=length)

    def _generate(self, template: str, text: str, sampling: Sampling | None = None) -> str:
        ids = self.runner.encode(text)
        if len(ids) > self.chunk_tokens:  # every step stays within the window, merges included
            text = self.runner.tokenizer.decode(ids[: self.chunk_tokens])
        messages = [{"role": "user", "content": template.format(text=text)}]
        reply = self.runner.engine.generate_text(chat_ids(self.runner.tokenizer, messages), sampling or self.sampling,
                                                 messages=messages).strip()
        self.total.add(self.runner.engine.stats)
        return reply

    def add_chunk(self, text: str) -> None:
        self.notes.append(self._generate(SUMMARY_PROMPT, text, self.note_sampling))
        self.chunks += 1
        self.on_chunk(self.chunks)
        joined = "\n\n".join(self.notes)
        if len(self.runner.encode(joined)) > self.chunk_tokens:
            # Merge all but the newest note so the pile never outgrows one chunk.
            self.notes = [self._generate(MERGE_PROMPT, "\n\n".join(self.notes[:-1]), self.note_sampling),
                          self.notes[-1]]

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
              note: Note = lambda m: None, pieces: Iterable[tuple[str, bool]] | None = None,
              ) -> tuple[str, GenerationStats]:
    """Summarise sources of any length; `progress(bytes_summarised, total_bytes or None, chunks_done)`,
    both in bytes of text: the total is the text files' size; with a PDF (or another reader's
    format, whose file size says nothing of its text) the text is extracted first and counted;
    for stdin, what was read, once it has all been read.
    `pieces`: the input already opened (`iter_pieces` of the sources, e.g. after `logs.sniff`)."""
    from pathlib import Path

    from longchat.sources.registry import FALLBACK, reader_for

    sampling = sampling or runner.profile.generation
    sources = list(sources) or [STDIN]
    total = None
    if pieces is None:
        pieces = iter_pieces(sources, stdin=stdin, note=note)
    if all(s != STDIN and os.path.isfile(s) for s in sources):
        if all(reader_for(Path(s)).name == FALLBACK for s in sources):
            total = sum(os.path.getsize(s) for s in sources)
        else:  # a PDF's text: a fraction of its bytes (fonts, images), held once extracted
            pieces = list(pieces)
            total = sum(len(piece.encode("utf-8", "replace")) for piece, _ in pieces)
    read = fed = 0
    summarizer = Summarizer(runner, sampling, on_chunk=lambda n: progress and progress(fed, total, n))
    summarizer.plan(total)
    limit = summarizer.chunk_tokens
    compressor = None
    if runner.profile.compress.on:
        # Each chunk is read 1/rate times larger and compressed back to a chunk before it is
        # summarised: fewer, fuller chunks. No question is known, so passages rank by their own
        # perplexity (llmlingua).
        from longchat import compress

        compressor = compress.compressor_for(runner, note=note)
        limit = int(limit / runner.profile.compress.rate)

    def squeeze(text: str) -> str:
        if compressor is None:
            return text
        return compressor.compress([text], method="llmlingua", rate=runner.profile.compress.rate, target_tokens=0).text

    def add(ids: list[int]) -> None:
        nonlocal fed
        text = runner.tokenizer.decode(ids)
        fed += len(text.encode("utf-8", "replace"))
        summarizer.add_chunk(squeeze(text))

    if progress:
        progress(0, total, 0)
    buffer, has_text = "", False
    for piece, is_text in pieces:
        has_text = has_text or (is_text and not piece.isspace())
        read += len(piece.encode("utf-8", "replace"))
        buffer += piece
        # Tokenise a bounded slice at a time (~2 chunks of text), so memory stays flat.
        while len(buffer) >= limit * 8:
            head, buffer = buffer[: limit * 8], buffer[limit * 8:]
            ids = runner.encode(head)
            add(ids[:limit])
            if len(ids) > limit:
                buffer = runner.tokenizer.decode(ids[limit:]) + buffer
    if not has_text:
        raise InputError("the input is empty")
    total = total or read  # stdin: now its size is known
    # What is left may still be more than one chunk (short inputs never entered the loop).
    ids = runner.encode(buffer)
    if progress:
        progress(fed, total, summarizer.chunks)
    while len(ids) > limit:
        add(ids[:limit])
        ids = ids[limit:]
    tail = runner.tokenizer.decode(ids)
    text = summarizer.finish(squeeze(tail) if tail.strip() else tail)
    return text, summarizer.total


def open_input(sources: Sequence[str], *, stdin: BinaryIO | None = None, note: Note = lambda m: None):
    """(log format or None, the input's pieces from the start): whether the sources read as a
    log, found from their first lines (stdin is read once: what was looked at is replayed)."""
    from longchat import logs

    return logs.sniff(iter_pieces(list(sources) or [STDIN], stdin=stdin, note=note))


def log_format(fmt, read_as: str = "auto", note: Note = lambda m: None):
    """The format to read the input in, from what `open_input` found and `--as` (auto, log,
    text): None reads it as text. Says on stderr (`note`) when a log is read as one."""
    from longchat import logs

    if read_as == "text":
        return None
    if read_as == "log" and fmt is None:
        note("no known log format in the first lines; reading each line as a record (--as log)")
        return logs.LINES
    if fmt is not None:
        note(f"the input looks like a log ({fmt.name}); mining templates first (--as text to read it as prose)")
    return fmt


def open_ask_input(sources: Sequence[str], *, read_as: str = "auto", stdin: BinaryIO | None = None,
                   note: Note = lambda m: None):
    """For `ask`: (log format, the input's pieces, None) when the input reads as a log (mine it
    with `mine_log`, answer with `ask_log`), else (None, None, stdin to give `ask`): stdin's
    first bytes, looked at here, are read again from it. A pipe named like a file (`<(cmd)`)
    can be read only once, so it is looked at only with `--as log`."""
    import sys

    from longchat.sources.stdin import Rewindable

    sources = list(sources) or [STDIN]
    once = [s for s in sources if s != STDIN and os.path.exists(s) and not (os.path.isfile(s) or os.path.isdir(s))]
    if read_as == "text" or (once and read_as == "auto"):
        return None, None, stdin
    replay = Rewindable(stdin or sys.stdin.buffer) if STDIN in sources else None
    fmt, pieces = open_input(sources, stdin=replay, note=note)
    fmt = log_format(fmt, read_as, note)
    if fmt is not None:
        return fmt, pieces, None
    if replay is not None:
        replay.rewind()
    return None, None, replay


def mine_log(pieces: Iterable[tuple[str, bool]], fmt, filters=None, *,
             progress: Callable[[int, int, int], None] | None = None):
    """The template table (`logs.LogTable`) of a log in one streaming pass; no model is needed.
    `progress(bytes read, lines, templates)` after each piece of input."""
    from longchat import logs

    # Several sources: the "### File:" lines between documents are not log lines.
    text = (piece for piece, is_text in pieces if is_text or not piece.startswith("### File: "))
    table = logs.scan(text, fmt, filters, progress=progress)
    if table.records + table.filtered == 0:
        raise InputError("the input is empty")
    return table


ASK_LOG_TEMPLATES = 40  # templates a question's reader is shown at most
FACT_ANSWER_TOKENS = 48  # a reply to a question the table answers exactly: one sentence


def ask_log(runner: Runner, table, question: str, *, sampling: Sampling | None = None, system: str | None = None,
            on_text: Callable[[str], None] | None = None, progress: Progress | None = None,
            note: Note = lambda m: None) -> tuple[str, list, dict]:
    """Answer `question` about a log from its template table (`mine_log`), never its lines:
    (answer, the (template, BM25 score) rows the model read, {"facts", "figure_check"}).

    A counting, time or "which" question (`logs.facts`) gets its exact answer computed from the
    table and handed to the model as "Facts from the table", with the template it is about; the
    model phrases it. Other questions read an overview line and the templates most related to the
    question's words (`LogTable.relevant`; errors and warnings break ties) with their exact counts,
    levels, times and an example line, as many as the effective window holds. Either way the
    answer's figures are checked (`logs.report.wrong_figures`): a sentence stating a number, time,
    date, version or package the table and the question do not hold is dropped, and the facts'
    answer is added when the model left it out (both said in a note). `on_text` gets the checked
    answer once, not tokens as they come."""
    from longchat.logs.facts import find_facts
    from longchat.logs.table import plural

    if not question.strip():
        raise InputError("the question is empty")
    sampling = sampling or runner.profile.generation
    tok = runner.tokenizer
    budget = input_room(runner, runner.effective_window, sampling, ask_messages("", question, system))
    if budget < 64:
        raise ConfigError(f"effective window {runner.effective_window} leaves too little room for the log's table "
                          f"after max_new_tokens={sampling.max_new_tokens}; lower generation.max_new_tokens")
    facts = find_facts(table, question)
    if facts is not None:
        # The facts alone: a small model copies them best when nothing else competes (with the
        # template's line beside them, SmolLM2-135M quoted its peak times instead), and one
        # sentence is all the answer needs.
        head = f"Log: {table.format} format, {plural(table.records, 'record')}.\n\n{facts.block()}\n"
        rows = []
        sampling = replace(sampling, max_new_tokens=min(sampling.max_new_tokens, FACT_ANSWER_TOKENS))
    else:
        head = (f"Log: {table.overview()}.\n\nThe kinds of message in this log most related to the question, most "
                f"related first (level, how many times, when, the message with variable parts as <TAGS>, an example):\n")
        rows = table.relevant(question)[:ASK_LOG_TEMPLATES]
    used = len(runner.encode(head))
    shown, parts = [], []
    for row, entry in zip(rows, table.render_relevant(rows)):
        n = len(runner.encode(entry)) + 1
        if used + n > budget:
            if not shown:  # even one template is too long: its start
                parts.append(tok.decode(runner.encode(entry)[: budget - used]))
                shown.append(row)
            break
        shown.append(row)
        parts.append(entry)
        used += n
    if facts is not None:
        shown = [(facts.template, 1.0)]
    document = head + "\n".join(parts)
    messages = ask_messages(document, question, system)
    prompt = chat_ids(tok, messages)
    matched = sum(score > 0 for _, score in shown)
    note(f"the model reads {len(shown)} of the log's {len(table.templates):,} templates ({len(prompt):,} tokens), "
         f"{matched} sharing words with the question; not the log's lines"
         + (f"; facts from the table: {facts.answer[:120]}" if facts is not None else ""))
    answer = runner.engine.generate_text(prompt, sampling, progress=progress, question=Question(question),
                                         messages=messages).strip()
    answer, check = check_log_answer(answer, document + "\n" + question, shown, facts, note)
    runner.engine.stats.extra.update(log_templates_shown=len(shown), mined_lines=table.lines,
                                     mine_s=round(table.seconds, 3))
    if on_text is not None:
        on_text(answer)
    return answer, shown, {"facts": None if facts is None else facts.lines + [f"Answer: {facts.answer}"],
                           "figure_check": check}


def check_log_answer(answer: str, known: str, shown: list, facts=None, note: Note = lambda m: None) -> tuple[str, dict]:
    """(the answer without its sentences that state figures `known` and the shown templates'
    values do not hold, plus the facts' answer when it is missing, {"wrong", "missing",
    "corrected"}): `ask_log`'s figure check."""
    from longchat.logs.report import dates_in, figures_in, sentences, wrong_figures

    values = [v for t, _ in shown for seen in t.values.values() for v in seen]
    wrong, kept = [], []
    for sentence in sentences(answer):
        bad = wrong_figures(sentence, known, values)
        wrong += bad
        if not bad:
            kept.append(sentence)
    text = " ".join(kept).strip()
    missing = []
    if facts is not None:
        numbers, clocks = figures_in(text)
        dates = dates_in(text)
        missing = [k for k in facts.key if k not in (dates if "-" in k else clocks if ":" in k else numbers)]
    if wrong:
        note(f"dropped what the answer stated against the table ({', '.join(dict.fromkeys(wrong))})")
    corrected = bool(wrong) or bool(missing)
    if facts is not None and corrected:
        if missing:
            note(f"the answer lacked the table's figure ({', '.join(missing)}); the facts' answer is added")
        text = (text + "\n" if text else "") + f"From the table: {facts.answer}"
    elif not text:
        text = answer if not wrong else "(the answer stated figures the table does not hold; see the note)"
    return text, {"wrong": list(dict.fromkeys(wrong)), "missing": missing, "corrected": corrected}


def summarize_log(runner: Runner, table, *, sampling: Sampling | None = None,
                  note: Note = lambda m: None) -> tuple[str, GenerationStats]:
    """The model's report of a log from its template table (`mine_log`), never from its lines,
    with the table's exact figures under it. The table is cut to the effective window (fewer
    ranked templates); past that it is summarised hierarchically first. Sentences of the report
    that state counts or times the table does not hold are dropped (and named in a note)."""
    from longchat.logs.report import check_figures

    sampling = summary_sampling(sampling or runner.profile.generation)
    tok = runner.tokenizer
    budget = input_room(runner, runner.effective_window, sampling,
                  [{"role": "user", "content": LOG_REPORT_PROMPT.format(table="")}])
    if budget < 64:
        raise ConfigError(f"effective window {runner.effective_window} leaves too little room for the log's table "
                          f"after max_new_tokens={sampling.max_new_tokens}; lower generation.max_new_tokens")
    totals = GenerationStats(stop_reason=SUMMED)
    items = 30
    text = table.render(max_items=items, concrete=True)
    while len(runner.encode(text)) > budget and items > 3:
        items = max(3, items // 2)
        text = table.render(max_items=items, concrete=True)
    if len(runner.encode(text)) > budget:
        note(f"the log's table does not fit the effective window ({runner.effective_window:,} tokens) even with "
             f"{items} templates; summarising the table itself first")
        text, stats = summarize(runner, [], sampling=sampling, pieces=[(table.render(concrete=True), True)],
                                note=note)
        totals.add(stats)
    messages = [{"role": "user", "content": LOG_REPORT_PROMPT.format(table=text)}]
    prompt = chat_ids(tok, messages)
    note(f"the model reads the table ({len(prompt):,} tokens), not the log")
    reply = runner.engine.generate_text(prompt, sampling, messages=messages).strip()
    totals.add(runner.engine.stats)
    totals.stop_reason = runner.engine.stats.stop_reason
    if totals.stop_reason in ("length", "repeat") and "\n" in reply and not reply.endswith((".", "!", "?")):
        reply = reply.rsplit("\n", 1)[0]  # the last line was cut short: it goes
    kept, dropped = check_figures(reply, text)
    if dropped:
        note(f"dropped {len(dropped)} sentence{'s' * (len(dropped) != 1)} of the report stating figures the "
             f"table does not hold: " + " | ".join(d[:80] for d in dropped))
    report = (kept + "\n\n" if kept else "") + table.figures()
    return report, totals
