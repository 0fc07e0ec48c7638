"""Encoded memories on disk: a folder per memory, a manifest written last, files that outlive a crash.

    <root>/<name>/
        manifest.json        what it holds; replaced atomically, always last
        ids.bin              the token ids read so far (int32)
        blocks/L000.kv ...   per layer: key/value block records, and .repr representative keys
        ckpt-<tokens>.pt     the strategy's small state (window, init tokens, ...) at a checkpoint
        used                 its modification time is the last use (LRU for the automatic cache)
        .lock                shared while answering from it, exclusive while writing it

Only what a manifest names is trusted: block and id files may run past it after a kill -9
(their tails are overwritten when encoding resumes), and a checkpoint is written and synced
before the manifest that points at it. So a memory is always either its previous state or a
resumable newer one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from longchat.context.infllm.blocks import TruncatedFile
from longchat.errors import StoreError, env_error
from longchat.locks import Lock
from longchat.paths import cache_dir, data_dir

FORMAT = 1
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class MemoryStoreError(StoreError):
    """A memory is missing, corrupt, busy, or was made for another model or other settings."""


class BrokenMemory(MemoryStoreError):
    """A memory that cannot be used as it is: `state` (incomplete, corrupt, damaged) and why,
    and `fix`, what to run."""

    def __init__(self, name: str, state: str, why: str, fix: str):
        self.state, self.reason, self.fix = state, f"{state} ({why})", fix
        super().__init__(f"memory '{name}' is {self.reason}; {fix}")


def named_root() -> Path:
    return data_dir() / "memories"


def cache_root() -> Path:
    return cache_dir() / "memories"


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash leaves the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # a full disk: give back what the half-written file took
        raise
    _sync_dir(path.parent)


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_sha256(path: Path, limit: int | None = None) -> str:
    """Hash of a file's bytes (its first `limit` bytes when given)."""
    h = hashlib.sha256()
    left = limit
    with open(path, "rb") as f:
        while left is None or left > 0:
            chunk = f.read(1 << 20 if left is None else min(1 << 20, left))
            if not chunk:
                break
            h.update(chunk)
            if left is not None:
                left -= len(chunk)
    return h.hexdigest()


def dir_size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


@dataclass
class Checkpoint:
    file: str      # ckpt-<tokens>.pt
    tokens: int    # token ids consumed by the strategy at this point
    blocks: int    # memory blocks per layer
    doc: int       # the document the next token belongs to (-1: the prompt head)
    offset: int    # ... and its index within that document's ids
    sha256: str    # of the checkpoint file


class Memory:
    """One memory folder. Open with `Memory.open` (existing) or `Memory.create`."""

    def __init__(self, path: Path, manifest: dict):
        self.path = path
        self.manifest = manifest
        self._lock: Lock | None = None

    # -- identity --------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def complete(self) -> bool:
        return bool(self.manifest.get("complete"))

    @property
    def tokens(self) -> int:
        return int(self.manifest.get("tokens", 0))

    @property
    def documents(self) -> list[dict]:
        return self.manifest.setdefault("documents", [])

    @property
    def checkpoints(self) -> list[Checkpoint]:
        return [Checkpoint(**c) for c in self.manifest.get("checkpoints", [])]

    @property
    def blocks_dir(self) -> Path:
        return self.path / "blocks"

    @classmethod
    def create(cls, path: Path, manifest: dict) -> "Memory":
        (path / "blocks").mkdir(parents=True, exist_ok=True)
        now = time.time()
        manifest = {"format": FORMAT, "complete": False, "tokens": 0, "documents": [], "checkpoints": [],
                    "created": now, "updated": now, **manifest}
        mem = cls(path, manifest)
        return mem

    @classmethod
    def open(cls, path: Path) -> "Memory":
        """Read a memory's manifest; a missing or unreadable one is a `BrokenMemory` that says what to run."""
        file = path / "manifest.json"
        if not file.is_file():
            raise BrokenMemory(path.name, "incomplete", "interrupted before its first checkpoint", resume_hint(path, {}))
        try:
            manifest = json.loads(file.read_text())
            if manifest.get("format") != FORMAT:
                raise ValueError(f"format {manifest.get('format')!r}, this longchat reads {FORMAT}")
            for c in manifest["checkpoints"]:
                Checkpoint(**c)
        except OSError as e:
            raise env_error(e, file, "read") from None
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise BrokenMemory(path.name, "corrupt", f"manifest.json: {e}", remove_hint(path)) from None
        return cls(path, manifest)

    def damaged(self, what: str) -> BrokenMemory:
        return BrokenMemory(self.name, "damaged", what, remove_hint(self.path))

    def check_key(self, key: dict) -> None:
        """Refuse a memory made by another model or with settings that change its keys."""
        have = self.manifest.get("key", {})
        if have.get("infllm.segment", "fixed") != "fixed":  # event-shaped blocks: removed in issue 40
            raise MemoryStoreError(f"memory '{self.name}' was encoded with event-shaped blocks (segment = "
                                   f"\"surprise\"), which this version no longer reads; {remove_hint(self.path)}")
        diff = [k for k in sorted(set(have) | set(key)) if have.get(k) != key.get(k)]
        if diff:
            shown = ", ".join(f"{k}: memory has {have.get(k)!r}, now {key.get(k)!r}" for k in diff[:3])
            hint = ""
            if "weights" in diff:
                hint = f" (--set model.weights={have.get('weights') or 'fp32'} reads it as it was made)"
            raise MemoryStoreError(f"memory '{self.name}' was encoded with other settings ({shown}); "
                                   f"re-ingest it, or use the model and profile it was made with{hint}")

    # -- locking ---------------------------------------------------------------------------

    def lock(self, exclusive: bool) -> "Memory":
        """Hold a shared (reading) or exclusive (writing) lock until `unlock`; never waits."""
        lock = Lock(self.path / ".lock")
        if not lock.take(exclusive):
            # Who holds it: readers share the lock, so a shared one is refused only by a writer.
            doing = "written" if not exclusive or not lock.take(exclusive=False) else "read"
            lock.release()
            raise MemoryStoreError(f"memory '{self.name}' is being {doing} by another longchat process; "
                                   f"try again when it is done")
        self._lock = lock
        return self

    def unlock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def touch(self) -> None:
        (self.path / "used").touch()

    def last_used(self) -> float:
        try:
            return (self.path / "used").stat().st_mtime
        except OSError:
            return float(self.manifest.get("updated", 0))

    # -- reading ---------------------------------------------------------------------------

    def ids(self, n: int | None = None) -> list[int]:
        n = self.tokens if n is None else n
        file = self.path / "ids.bin"
        if n and (not file.is_file() or file.stat().st_size < 4 * n):
            raise self.damaged("ids.bin is truncated")
        return np.fromfile(file, dtype=np.int32, count=n).tolist() if n else []

    def load_checkpoint(self, ckpt: Checkpoint) -> dict:
        file = self.path / ckpt.file
        try:
            data = file.read_bytes()
        except FileNotFoundError:
            raise self.damaged(f"{ckpt.file} is missing") from None
        except OSError as e:
            raise env_error(e, file, "read") from None
        if hashlib.sha256(data).hexdigest() != ckpt.sha256:
            raise self.damaged(f"checkpoint {ckpt.file} does not match its hash")
        import io

        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)

    def restore(self, strategy, state: dict) -> None:
        """Put `strategy` in a checkpoint's `state`, its blocks read from this memory's files."""
        try:
            strategy.restore(state, self.blocks_dir)
        except TruncatedFile as e:
            raise self.damaged(f"{e.path.relative_to(self.path)} is truncated") from None

    # -- writing ---------------------------------------------------------------------------

    def write_ids(self, ids: list[int], start: int) -> None:
        """Write ids[start:] at their place in ids.bin."""
        with open(self.path / "ids.bin", "r+b" if (self.path / "ids.bin").exists() else "wb") as f:
            f.seek(4 * start)
            f.write(np.asarray(ids[start:], dtype=np.int32).tobytes())
            f.flush()
            os.fsync(f.fileno())

    def commit(self, state: dict, ckpt: Checkpoint, *, complete: bool, keep_old: bool) -> None:
        """Make `state` (already synced block files and ids) the memory's current state;
        `keep_old`: keep an older checkpoint too (see `_worth_keeping`), else only this one."""
        import io

        buf = io.BytesIO()
        torch.save(state, buf)
        data = buf.getvalue()
        ckpt.sha256 = hashlib.sha256(data).hexdigest()
        atomic_write(self.path / ckpt.file, data)
        older = [c for c in self.checkpoints if c.tokens < ckpt.tokens and c.file != ckpt.file]
        kept = self._worth_keeping(older, ckpt) if keep_old else []
        self.manifest.update(checkpoints=[vars(c) for c in kept + [ckpt]], tokens=ckpt.tokens,
                             complete=complete, updated=time.time())
        self.save_manifest()
        self.touch()
        self._remove_unnamed_checkpoints()

    def _worth_keeping(self, older: list[Checkpoint], newest: Checkpoint) -> list[Checkpoint]:
        """The one checkpoint before `newest` kept with it (each holds every layer's local
        window: ~50 MB for the bundled model, so they must not pile up): the latest from before
        the document `newest` is in began, where a changed last document (the usual edit) is
        re-encoded from."""
        docs = self.documents
        doc = min(newest.doc, len(docs) - 1)
        start = docs[doc]["start"] if doc >= 0 else 0
        return [c for c in older if c.tokens <= start][-1:]

    def drop_checkpoints_after(self, tokens: int) -> None:
        """Forget checkpoints past `tokens` (re-encoding from an earlier point; -1: from the
        start), before the files they name are overwritten."""
        kept = [c for c in self.checkpoints if c.tokens <= tokens]
        self.manifest.update(checkpoints=[vars(c) for c in kept], tokens=kept[-1].tokens if kept else 0,
                             complete=False)
        self.save_manifest()
        self._remove_unnamed_checkpoints()

    def _remove_unnamed_checkpoints(self) -> None:
        """Checkpoint files the manifest no longer names (also those of a commit cut short)."""
        named = {c.file for c in self.checkpoints}
        for file in self.path.glob("ckpt-*.pt"):
            if file.name not in named:
                file.unlink(missing_ok=True)

    def save_manifest(self) -> None:
        atomic_write(self.path / "manifest.json", json.dumps(self.manifest, indent=1).encode())

    def size(self) -> int:
        return dir_size(self.path)


def remove_hint(path: Path) -> str:
    again = "" if path.parent == cache_root() else " and ingest again"
    return f"remove it with `longchat memories rm {path.name}`{again}"


def resume_hint(path: Path, manifest: dict) -> str:
    """How to finish an interrupted memory, or be rid of it."""
    rm = f"remove it with `longchat memories rm {path.name}`"
    if path.parent == cache_root():
        return f"the same `longchat ask` on its sources resumes it, or {rm}"
    sources = " ".join(map(shlex.quote, manifest.get("sources") or [])) or "SOURCE..."
    return f"resume it with `longchat ingest {sources} --name {path.name}`, or {rm}"


def locate(name: str) -> Path:
    """The folder of a named memory, else of an automatic cache entry, whatever state it is in."""
    for root in (named_root(), cache_root()):
        if NAME.match(name) and (root / name).is_dir():
            return root / name
    raise MemoryStoreError(f"no memory named {name!r}; see `longchat memories list`")


def find(name: str) -> Memory:
    """A named memory, else an automatic cache entry by its folder name."""
    return Memory.open(locate(name))


def all_memories() -> list[tuple[str, Path]]:
    """(kind, folder) of every memory folder: 'named' ones, then the automatic 'cache'."""
    out = []
    for kind, root in (("named", named_root()), ("cache", cache_root())):
        if root.is_dir():
            out += [(kind, p) for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    return out


def remove(path: Path) -> None:
    """Delete a memory folder; refuses one another process is using."""
    mem = Memory(path, {})
    mem.lock(exclusive=True)
    try:
        # Rename first: a crash mid-delete leaves no half memory under the real name.
        trash = path.with_name(f".deleting-{path.name}-{os.getpid()}")
        os.replace(path, trash)
    finally:
        mem.unlock()
    shutil.rmtree(trash, ignore_errors=True)


def evict_cache(max_bytes: int, keep: Path | None = None, note=lambda m: None) -> None:
    """Remove least-recently-used automatic cache memories until the cache fits `max_bytes`."""
    entries = []
    for kind, path in all_memories():
        if kind == "cache":
            mem = Memory(path, {})
            entries.append((mem.last_used(), path, dir_size(path)))
    total = sum(size for _, _, size in entries)
    for _, path, size in sorted(entries, key=lambda e: e[0]):
        if total <= max_bytes:
            break
        if keep is not None and path == keep:
            continue
        try:
            remove(path)
        except MemoryStoreError:
            continue  # in use: leave it
        total -= size
        note(f"cache: removed {path.name} ({human_bytes(size)}) to stay under {human_bytes(max_bytes)}")
