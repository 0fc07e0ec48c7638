"""Encoding sources into InfLLM memory: in one pass, with checkpoints, resumable.

The encoded memory is the strategy's state after the *prefix* of an ask prompt: the chat
template's head, a one-line instruction, then every document (each after a "### File:" line
in named memories). A question is only its suffix ("\\n\\nQuestion: ...", the template's tail),
so answering from a memory prefills a few dozen tokens.

Token ids go to the model in `prefill_chunk`-sized forwards counted from the prompt's first
token, whether the memory is kept or not, so a cached answer and a fresh one see exactly the
same computation. A checkpoint (every `checkpoint_every` tokens and at the end) records the
strategy's small state and where in which document the next token comes from.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Sequence

import numpy as np

from longchat.errors import EnvError, InputError, env_error
from longchat.memory.store import Checkpoint, Memory, MemoryStoreError, file_sha256
from longchat.paths import cache_dir
from longchat.sources import EVERYTHING, Document, Selection, iter_documents
from longchat.sources.text import decode_blocks

HEADER = "### File: {label}\n"
SEPARATOR = "\n\n"
STREAM_ABOVE = 64_000_000  # bytes: larger text files are tokenized as they are encoded
Progress = Callable[[int, int], None]  # (tokens done, tokens expected)


# ------------------------------------------------------------------ identity


def model_sha256(folder: Path) -> str:
    """A hash of a model folder's weights, tokenizer and config, cached by size and mtime."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".safetensors", ".bin", ".json", ".model"))
    ident = "|".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
    index = cache_dir() / "model-hashes.json"
    try:
        known = json.loads(index.read_text())
    except (OSError, ValueError):
        known = {}
    key = f"{folder.resolve()}|{ident}"
    if key not in known:
        h = hashlib.sha256()
        for p in files:
            h.update(p.name.encode())
            h.update(file_sha256(p).encode())
        known[key] = h.hexdigest()
        index.parent.mkdir(parents=True, exist_ok=True)
        tmp = index.with_name(f".model-hashes.{os.getpid()}")
        tmp.write_text(json.dumps(known))
        os.replace(tmp, index)
    return known[key]


def memory_key(runner, params, head: str) -> dict:
    """Everything that changes the encoded keys and values: a memory is only used when equal."""
    strategy = {f"infllm.{f.name}": getattr(params, f.name) for f in dataclasses.fields(params)
                if f.metadata["memory_key"]}  # declared on each field: `settings.stored` / `read_time`
    model = runner.model
    dtype = str(model.decoder.dtype).removeprefix("torch.")
    key = {"model": model.name, "model_sha256": model_sha256(model.path), "dtype": dtype,
           "prefill_chunk": runner.profile.context.prefill_chunk, "head": head, **strategy}
    # Weights held in another format than the dtype (int8, int4: runtime/weights.py) give other
    # keys and values; memories made before formats existed have no entry and stay valid.
    if model.decoder.weight_format != {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(dtype):
        key["weights"] = model.decoder.weight_format
    return key


# ------------------------------------------------------------------ sources


@dataclass
class Source:
    """One document to encode, identified by its content."""

    label: str
    kind: str
    path: str | None
    size: int | None
    sha256: str | None                 # of its bytes (None: stdin, known once read)
    document: Document | None = field(default=None, repr=False)
    data: bytes | None = field(default=None, repr=False)  # stdin, read whole for a cache key
    skip_bytes: int = 0                # a grown log: only the bytes after this are new
    has_text: bool = False             # set once read: anything but whitespace in it

    def entry(self) -> dict:
        return {"label": self.label, "kind": self.kind, "path": self.path, "size": self.size, "sha256": self.sha256}

    def same(self, entry: dict) -> bool:
        return self.label == entry["label"] and self.sha256 == entry["sha256"]

    def grew_from(self, entry: dict) -> bool:
        """A text file that only gained bytes at its end since `entry` (a growing log)."""
        old = entry.get("size") or 0
        return (self.label == entry["label"] and self.kind == "text" and self.path is not None and old > 0
                and (self.size or 0) > old and file_sha256(Path(self.path), old) == entry["sha256"])


def collect_sources(specs: Sequence[str], *, stdin: BinaryIO | None = None, read_stdin: bool = False,
                    note=lambda m: None, select: Selection | None = None) -> list[Source]:
    """The documents named by `specs` (folders walked), each with its content hash.

    A stream (stdin, a pipe) is read once: whole when `read_stdin` (its bytes make the cache
    key), else one block ahead, so a short one is held and a long one streams when encoded.
    Raises `InputError` when every source is known to be empty: an empty file, or a stream
    that ended with nothing but whitespace.
    """
    out = []
    for doc in iter_documents(specs, stdin=stdin, note=note, select=select):
        if doc.hold is not None:
            data = doc.hold(read_stdin)
            out.append(Source(doc.label, "stdin", None, len(data) if data is not None else None,
                              hashlib.sha256(data).hexdigest() if data is not None else None, doc, data))
        else:
            path = doc.path
            out.append(Source(doc.label, doc.kind, str(Path(path).resolve()), os.stat(path).st_size, file_sha256(path), doc))
    if all(src.size == 0 or (src.data is not None and not src.data.strip()) for src in out):
        raise InputError("the input is empty")  # also: folders with no readable file in them
    return out


def reopen(entry: dict, note=lambda m: None) -> Source:
    """A source recorded in a manifest, read again from its path."""
    if not entry.get("path"):
        raise MemoryStoreError(f"cannot re-read {entry['label']} (it came from stdin); ingest into a new memory")
    found = collect_sources([entry["path"]], note=note, select=EVERYTHING)  # chosen when it was ingested
    if not found:
        raise MemoryStoreError(f"{entry['label']} is no longer readable")
    src = found[0]
    src.label = entry["label"]
    return src


def _pieces(src: Source) -> Iterator[str]:
    if src.skip_bytes:
        with open(src.path, "rb") as f:
            f.seek(src.skip_bytes)
            yield from decode_blocks(f)
    elif src.document is not None:
        yield from src.document.pieces()  # a held stream decodes its held bytes again
    else:
        yield src.data.decode("utf-8")  # text made in memory (`api.text_source`)


def source_ids(tokenizer, src: Source, index: int, headers: bool) -> Iterator[list[int]]:
    """The ids of document `index` in the prompt: separator, "### File:" line, its text."""
    if not src.skip_bytes:
        if index:
            yield tokenizer.encode(SEPARATOR, add_special_tokens=False)
        if headers:
            yield tokenizer.encode(HEADER.format(label=src.label), add_special_tokens=False)
    hasher = hashlib.sha256() if src.sha256 is None else None
    for piece in _pieces(src):
        if hasher:
            hasher.update(piece.encode())
        src.has_text = src.has_text or bool(piece.strip())
        yield tokenizer.encode(piece, add_special_tokens=False)
    if hasher:
        src.sha256 = hasher.hexdigest()


def read_ids(tokenizer, sources: list[Source], first: int, headers: bool) -> list[np.ndarray | None]:
    """Ids of each source from index `first` on, read now; None for big files (streamed later)."""
    out = []
    for i, src in enumerate(sources[first:], start=first):
        if src.kind == "text" and (src.size or 0) - src.skip_bytes > STREAM_ABOVE or (src.kind == "stdin" and src.data is None):
            out.append(None)
        else:
            parts = list(source_ids(tokenizer, src, i, headers))
            out.append(np.concatenate([np.asarray(p, dtype=np.int32) for p in parts]) if parts else np.zeros(0, np.int32))
    return out


# ------------------------------------------------------------------ the encoder


class Encoder:
    """Feeds ids through the engine in fixed chunks; checkpoints into `memory` when there is one."""

    def __init__(self, engine, strategy, memory: Memory | None, *, progress: Progress = lambda d, t: None,
                 checkpoint_every: int = 32768, keep_checkpoints: bool = True):
        self.engine, self.strategy, self.memory = engine, strategy, memory
        self.chunk = engine.prefill_chunk
        self.progress = progress
        self.checkpoint_every = checkpoint_every
        self.keep_checkpoints = keep_checkpoints
        self.buffer: list[int] = []
        self.docs: list[dict] = memory.documents if memory else []
        self.ids_written = 0
        self.last_checkpoint = 0
        self.expected = 0
        self.start_time = time.perf_counter()
        self.encoded = 0  # tokens forwarded by this run

    @property
    def consumed(self) -> int:
        return len(self.engine.cached_ids)

    def start(self, head_ids: list[int]) -> None:
        self.engine.reset(forget_base=True)
        if self.memory:
            self.strategy.persist(self.memory.blocks_dir, 0)
        self.docs.clear()
        self.buffer = list(head_ids)

    def resume(self, ckpt: Checkpoint) -> None:
        """Continue from a checkpoint: its state, its ids, and the documents before it."""
        state = self.memory.load_checkpoint(ckpt)
        self.engine.restore(self.memory.ids(ckpt.tokens), lambda: self.memory.restore(self.strategy, state))
        self.ids_written = self.last_checkpoint = ckpt.tokens
        del self.docs[ckpt.doc + (1 if ckpt.offset else 0):]
        if ckpt.offset:
            self.docs[-1]["end"] = None

    def add(self, src: Source, index: int, ids: np.ndarray | None, headers: bool, skip: int = 0,
            grow: bool = False) -> None:
        """Encode document `index` (its first `skip` ids were encoded before)."""
        if grow:
            self.docs[index].update(src.entry(), end=None)
        elif not skip:
            self.docs.append({**src.entry(), "start": self.consumed + len(self.buffer), "end": None})
        pieces = [ids] if ids is not None else source_ids(self.engine.model.tokenizer, src, index, headers)
        for piece in pieces:
            piece = list(piece)
            if skip:
                cut = min(skip, len(piece))
                piece, skip = piece[cut:], skip - cut
            self.buffer.extend(int(t) for t in piece)
            self._drain()
        self.docs[index].update(src.entry(), end=self.consumed + len(self.buffer))

    def _drain(self) -> None:
        while len(self.buffer) >= self.chunk:
            self._forward(self.buffer[: self.chunk])
            del self.buffer[: self.chunk]
            if (self.memory and self.docs and self.consumed >= self.docs[0]["start"]
                    and self.consumed - self.last_checkpoint >= self.checkpoint_every):
                self.checkpoint(complete=False)

    def _forward(self, ids: list[int]) -> None:
        with self._writing():  # memory blocks go to their files as they are evicted
            self.engine._forward(ids, "none")
        self.encoded += len(ids)
        self.progress(self.consumed, max(self.expected, self.consumed))

    def finish(self) -> None:
        if self.buffer:
            self._forward(self.buffer)
            self.buffer = []
        if self.memory:
            self.checkpoint(complete=True)

    def checkpoint(self, *, complete: bool) -> None:
        """Make the state so far durable: block files, ids, the small state, then the manifest."""
        g = self.consumed
        doc = len(self.docs)
        offset = 0
        if not complete:
            doc = max(i for i, d in enumerate(self.docs) if d["start"] <= g)
            offset = g - self.docs[doc]["start"]
        ckpt = Checkpoint(file=f"ckpt-{g}.pt", tokens=g, blocks=self.strategy.layers[0].store.count, doc=doc, offset=offset, sha256="")
        with self._writing():
            self.strategy.sync()
            self.memory.write_ids(self.engine.cached_ids, self.ids_written)
            self.memory.commit(self.strategy.snapshot(), ckpt, complete=complete, keep_old=self.keep_checkpoints)
        self.ids_written = self.last_checkpoint = g

    @contextmanager
    def _writing(self):
        """A disk error (full, read-only, ...) as one line that names the folder: writes to an
        open file (blocks, fsync) raise OSErrors that name none. The memory keeps its last checkpoint."""
        try:
            yield
        except OSError as e:
            if self.memory is None:  # the disk tier's temp files
                raise env_error(e, e.filename or self.strategy.params.disk_dir or tempfile.gettempdir()) from e
            raise EnvError(f"{env_error(e, e.filename or self.memory.path)}; what was encoded up to the last "
                           f"checkpoint is kept, and running the command again resumes from there") from e

    @property
    def tokens_per_s(self) -> float:
        elapsed = time.perf_counter() - self.start_time
        return self.encoded / elapsed if elapsed > 0 else 0.0


@dataclass
class Plan:
    """Where encoding starts and what it covers."""

    checkpoint: Checkpoint | None   # resume from here (None: from scratch)
    first: int                      # index of the first source to (re-)encode
    skip: int                       # ids of sources[first] already encoded
    grow: bool                      # sources[first] is a grown log: only its new bytes
    message: str | None             # what changed, for the user


def plan(memory: Memory, sources: list[Source]) -> Plan:
    """Compare the memory's documents with `sources` and pick the latest usable checkpoint."""
    old = memory.documents
    p = 0
    while p < min(len(old), len(sources)) and sources[p].same(old[p]):
        p += 1
    message = None
    if p < len(old) and old[p].get("end") is not None:
        if p == len(old) - 1 and p < len(sources) and memory.complete and sources[p].grew_from(old[p]):
            final = memory.checkpoints[-1]
            sources[p].skip_bytes = old[p]["size"]
            return Plan(final, p, 0, True, f"{old[p]['label']} grew; encoding its new part")
        if p < len(sources) and sources[p].label == old[p]["label"]:
            message = f"{old[p]['label']} changed since it was ingested; re-encoding from it"
        else:
            message = f"the sources differ from the memory's from {old[p]['label']} on; re-encoding from there"
    usable = [c for c in memory.checkpoints if c.doc < p or (c.doc == p and c.offset == 0)]
    if not usable:
        return Plan(None, 0, 0, False, message)
    ckpt = usable[-1]
    return Plan(ckpt, min(ckpt.doc, len(sources)), ckpt.offset, False, message)
