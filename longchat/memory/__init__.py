"""Encode once, ask many times: InfLLM memory kept on disk, named (`ingest`) or cached (`ask`).

`ingest` builds or continues a named memory; `ask` on sources past the effective window encodes
them into the automatic cache (keyed by model, settings and content) and answers later
questions from it; `attach` loads a memory for answering, reading only its small state: the
blocks stay in their files and are read when retrieval picks them.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Sequence

from longchat.errors import ConfigError, InputError
from longchat.memory import speed
from longchat.memory.encode import Encoder, Plan, Source, collect_sources, memory_key, plan, read_ids, reopen
from longchat.memory.store import (NAME, Memory, MemoryStoreError, cache_root, evict_cache, find, human_bytes,
                                   named_root, resume_hint)
from longchat.prompts import encode_rendered, frame

__all__ = ["Memory", "MemoryStoreError", "attach", "ingest", "infllm_for", "cache_limit", "encode_for_ask", "find",
           "evict_cache", "cache_root"]


def infllm_for(runner, n_tokens: int):
    """(the strategy to encode with, a line for the user) or None when the profile's strategy
    keeps no block memory. `auto` switches to InfLLM here."""
    found = runner.engine.strategy.memory_strategy(n_tokens)
    if found is not None and runner.engine.strategy.reader.length != len(runner.engine.cached_ids):
        runner.engine.reset()  # the strategy started afresh
    return found


REMOTE_NO_MEMORY = ("memories hold the local model's encoded KV blocks; a remote engine (--model openai:...) "
                    "reads text only. Ask about the files themselves (`longchat ask FILES ...`), or use a local model")


def _require_infllm(runner, n_tokens: int = 1 << 40, note=lambda m: None):
    if runner.engine.strategy is None:  # a remote engine (runtime.remote)
        raise ConfigError(REMOTE_NO_MEMORY)
    found = infllm_for(runner, n_tokens)
    if found is None:
        raise ConfigError(f"profile '{runner.profile.name}' uses strategy '{runner.profile.context.strategy}', "
                          f"which keeps no memory; use --profile infllm or auto")
    if found[1]:
        note(found[1])
    return found[0]


def cache_limit() -> int:
    """Bytes the automatic cache may hold: LONGCHAT_CACHE_MAX ("20GB", "500MB"), default 20 GB."""
    raw = os.environ.get("LONGCHAT_CACHE_MAX", "20GB").strip().upper()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB)?", raw)
    if not m:
        raise ConfigError(f"LONGCHAT_CACHE_MAX={raw!r}: expected a size like 20GB or 500MB")
    scale = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}[m.group(2) or "B"]
    return int(float(m.group(1)) * scale)


def _open_or_create(path: Path, key: dict, extra: dict) -> Memory:
    if (path / "manifest.json").is_file():
        mem = Memory.open(path)
        mem.check_key(key)
        return mem
    # A folder without a manifest never reached its first checkpoint: nothing in it is used.
    return Memory.create(path, {"key": key, **extra})


@dataclass
class EncodeResult:
    memory: Memory | None
    tokens: int           # tokens the memory holds
    encoded: int          # tokens this run encoded
    seconds: float
    up_to_date: bool = False

    @property
    def tokens_per_s(self) -> float:
        return self.encoded / self.seconds if self.seconds > 0 else 0.0


def _run(runner, strategy, mem: Memory | None, sources: list[Source], pl: Plan, head_ids: list[int], headers: bool,
         progress, keep_checkpoints: bool, checkpoint_every: int, ids=None, note=lambda m: None) -> EncodeResult:
    start = time.perf_counter()
    enc = Encoder(runner.engine, strategy, mem, progress=progress, checkpoint_every=checkpoint_every,
                  keep_checkpoints=keep_checkpoints)
    if pl.checkpoint is not None:
        enc.resume(pl.checkpoint)
        if mem.checkpoints[-1].tokens > pl.checkpoint.tokens:
            mem.drop_checkpoints_after(pl.checkpoint.tokens)
    else:
        if mem and mem.checkpoints:  # its block files are about to be overwritten from the first
            mem.drop_checkpoints_after(-1)
        enc.start(head_ids)
    if ids is None:
        ids = read_ids(runner.tokenizer, sources, pl.first, headers)
    streamed = sum(max(0, (s.size or 0) - s.skip_bytes) // 4 for s, x in zip(sources[pl.first:], ids) if x is None)
    enc.expected = enc.consumed + len(enc.buffer) + sum(len(x) for x in ids if x is not None) + streamed - pl.skip
    if not streamed and enc.expected > enc.consumed:  # the count is known: say what the read will cost
        note(speed.read_cost(runner, strategy, enc.expected - enc.consumed, enc.expected, kept=mem is not None))
    # Refuse now, not hours into the encoding, an input whose blocks cannot fit on the memory's disk.
    strategy.prepare(enc.expected, folder=mem.path if mem is not None else None)
    for i in range(pl.first, len(sources)):
        enc.add(sources[i], i, ids[i - pl.first], headers, skip=pl.skip if i == pl.first else 0,
                grow=pl.grow and i == pl.first)
    if enc.encoded or enc.buffer or not (mem and mem.complete):
        enc.finish()
        result = EncodeResult(mem, enc.consumed, enc.encoded, time.perf_counter() - start)
        speed.record_speed(runner, result.encoded, result.seconds)
        return result
    return EncodeResult(mem, enc.consumed, 0, time.perf_counter() - start, up_to_date=True)


def ingest(runner, specs: Sequence[str], *, name: str | None = None, append: bool = False,
           stdin: BinaryIO | None = None, progress=lambda d, t: None, note=lambda m: None,
           checkpoint_every: int = 32768) -> EncodeResult:
    """Encode `specs` into the named memory (created, resumed, continued or partly redone)."""
    name = name or default_name(specs)
    if not NAME.match(name):
        raise InputError(f"bad memory name {name!r}: use letters, digits, '.', '_' and '-'")
    strategy = _require_infllm(runner)
    head, _ = frame(runner.tokenizer, None)
    key = memory_key(runner, strategy.params, head)
    path = named_root() / name
    if append and not (path / "manifest.json").is_file():
        raise MemoryStoreError(f"no memory named {name!r} to append to; drop --append to create it")
    new = collect_sources(specs, stdin=stdin, note=note)  # an empty or unreadable input leaves no memory behind
    mem = _open_or_create(path, key, {"name": name, "kind": "named", "headers": True})
    mem.lock(exclusive=True)
    try:
        if append:
            merged = [_recorded(entry, note) for entry in mem.documents if entry.get("end") is not None or mem.complete]
            for src in new:
                same_file = [i for i, old in enumerate(merged) if src.path and old.path == src.path]
                if same_file:
                    src.label = merged[same_file[0]].label
                    merged[same_file[0]] = src
                else:
                    merged.append(src)
            new = merged
        pl = plan(mem, new)
        if pl.message:
            note(pl.message)
        if pl.checkpoint is not None and not pl.grow and pl.checkpoint.tokens < mem.tokens:
            note(f"continuing from the checkpoint at {pl.checkpoint.tokens:,} tokens")
        elif pl.checkpoint is not None and not mem.complete:
            note(f"resuming an interrupted ingest at {pl.checkpoint.tokens:,} tokens")
        mem.manifest["sources"] = list(dict.fromkeys((mem.manifest.get("sources") or []) + [str(s) for s in specs])) \
            if append else [str(s) for s in specs]
        return _run(runner, strategy, mem, new, pl, encode_rendered(runner.tokenizer, head), True, progress,
                    keep_checkpoints=True, checkpoint_every=checkpoint_every, note=note)
    finally:
        mem.unlock()


def _recorded(entry: dict, note) -> Source:
    """An already-ingested document, re-read from its path to see whether it changed."""
    try:
        return reopen(entry, note)
    except (MemoryStoreError, InputError):
        # Gone or from stdin: kept as it was encoded (it is never re-read unless something before it changed).
        return Source(entry["label"], entry["kind"], entry.get("path"), entry.get("size"), entry["sha256"])


def default_name(specs: Sequence[str]) -> str:
    first = next((s for s in specs if s != "-"), "stdin")
    if first != "stdin" and not (os.path.isfile(first) or os.path.isdir(first)):
        first = "input"  # <(cmd) or a FIFO: /dev/fd/63 says nothing
    base = Path(first.rstrip("/")).name or "memory"
    return re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip("._-") or "memory"


def encode_for_ask(runner, strategy, sources: list[Source], head: str, headers: bool, ids, *, cache: bool,
                   progress=lambda d, t: None, note=lambda m: None, head_ids: list[int] | None = None) -> EncodeResult:
    """Encode an ask's sources: into the automatic cache (resuming a partial entry), or only
    into the strategy when `cache` is off. `head_ids`: the head's tokens, if the caller has them."""
    head_ids = encode_rendered(runner.tokenizer, head) if head_ids is None else head_ids
    if not cache:
        return _run(runner, strategy, None, sources, Plan(None, 0, 0, False, None), head_ids, headers, progress,
                    keep_checkpoints=False, checkpoint_every=1 << 62, ids=ids, note=note)
    key = {**memory_key(runner, strategy.params, head), "headers": headers}
    path = cache_root() / cache_name(sources, key)
    mem = _open_or_create(path, key, {"name": path.name, "kind": "cache", "headers": headers})
    mem.lock(exclusive=True)
    try:
        pl = plan(mem, sources)
        if pl.checkpoint is not None:
            note(f"resuming an interrupted encoding at {pl.checkpoint.tokens:,} tokens")
            ids = None
        return _run(runner, strategy, mem, sources, pl, head_ids, headers, progress,
                    keep_checkpoints=False, checkpoint_every=32768, ids=ids, note=note)
    finally:
        mem.unlock()


def cache_name(sources: list[Source], key: dict) -> str:
    """`notes.txt-<hash>` for one source; for several, the folder they share (the one given, for
    a folder) or else the first one's name, and their count: `myrepo-3files-<hash>`."""
    import hashlib
    import json

    ident = json.dumps({"key": key, "docs": [(s.label, s.sha256) for s in sources]}, sort_keys=True)
    labels = [s.label for s in sources]
    try:
        shared = Path(os.path.commonpath(labels)).name if len(labels) > 1 else ""
    except ValueError:  # absolute and relative labels: nothing shared
        shared = ""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", shared or Path(labels[0]).name)[:40].lstrip("._-") or "input"
    count = f"-{len(labels)}files" if len(labels) > 1 else ""
    return f"{stem}{count}-{hashlib.sha256(ident.encode()).hexdigest()[:16]}"


def cached(runner, sources: list[Source], head: str, headers: bool) -> Memory | None:
    """The complete automatic-cache memory for these sources, if there is one."""
    found = infllm_for_params(runner)
    if found is None:
        return None
    key = {**memory_key(runner, found, head), "headers": headers}
    path = cache_root() / cache_name(sources, key)
    if not (path / "manifest.json").is_file():
        return None
    mem = Memory.open(path)
    return mem if mem.complete else None


def full_up_to(runner) -> int:
    """Prompt + reply tokens read with full attention: `auto`'s threshold, 0 for `infllm`."""
    return getattr(runner.engine.strategy.params, "full_up_to", 0)


def infllm_for_params(runner):
    """The InfLLM parameters the profile would encode with (without switching anything)."""
    return runner.engine.strategy.memory_params()


def attach(runner, mem: Memory, *, system: str | None = None, note=lambda m: None) -> list[int]:
    """Load `mem` into the runner's InfLLM strategy (blocks stay in their files); returns the
    prompt prefix it holds. The engine can go back to it cheaply when a prompt diverges."""
    if not mem.complete:
        raise MemoryStoreError(f"memory '{mem.name}' is incomplete (interrupted); {resume_hint(mem.path, mem.manifest)}")
    strategy = _require_infllm(runner, mem.tokens + runner.profile.generation.max_new_tokens, note)
    head, _ = frame(runner.tokenizer, system)
    key = memory_key(runner, strategy.params, head)
    have = mem.manifest.get("key", {})
    if mem.manifest.get("kind") == "cache":
        key["headers"] = have.get("headers")
    mem.check_key({**key, "head": have.get("head")})  # model and settings first: the clearer message
    if have.get("head") != head:
        raise MemoryStoreError(f"memory '{mem.name}' was encoded with another system prompt; ask without --system, or re-ingest")
    ckpt = mem.checkpoints[-1]
    state = mem.load_checkpoint(ckpt)
    ids = mem.ids(ckpt.tokens)
    # Restored into the memory strategy of the moment: `auto` may have read a prompt without the
    # memory with full attention since, and makes a new InfLLM to go back to it.
    runner.engine.restore(ids, lambda: mem.restore(runner.engine.strategy.memory_strategy(len(ids))[0], state),
                          as_base=True)
    mem.touch()
    return ids


def describe(mem: Memory) -> str:
    state = "" if mem.complete else f" (incomplete: {resume_hint(mem.path, mem.manifest)})"
    return f"{mem.name}: {mem.tokens:,} tokens, {len(mem.documents)} document(s), {human_bytes(mem.size())}{state}"
