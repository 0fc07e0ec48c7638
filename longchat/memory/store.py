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

import fcntl
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from longchat.errors import StoreError
from longchat.paths import cache_dir, data_dir

FORMAT = 1


class MemoryStoreError(StoreError):
    """A memory is missing, corrupt, busy, or was made for another model or other settings."""


def named_root() -> Path:
    return data_dir() / "memories"


def cache_root() -> Path:
    return cache_dir() / "memories"


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash leaves the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
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
        self._lock_fd: int | None = None

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
        """Read a memory's manifest; a missing or unreadable one is a clear error."""
        file = path / "manifest.json"
        if not file.is_file():
            raise MemoryStoreError(f"no memory at {path} (no manifest: never finished a first checkpoint?)")
        try:
            manifest = json.loads(file.read_text())
            if manifest.get("format") != FORMAT:
                raise ValueError(f"format {manifest.get('format')!r}, this longchat reads {FORMAT}")
            for c in manifest["checkpoints"]:
                Checkpoint(**c)
        except (ValueError, KeyError, TypeError) as e:
            raise MemoryStoreError(f"memory '{path.name}' is corrupt ({e}); remove it with `longchat memories rm {path.name}`") from None
        return cls(path, manifest)

    def check_key(self, key: dict) -> None:
        """Refuse a memory made by another model or with settings that change its keys."""
        have = self.manifest.get("key", {})
        diff = [k for k in sorted(set(have) | set(key)) if have.get(k) != key.get(k)]
        if diff:
            shown = ", ".join(f"{k}: memory has {have.get(k)!r}, now {key.get(k)!r}" for k in diff[:3])
            raise MemoryStoreError(f"memory '{self.name}' was encoded with other settings ({shown}); "
                               f"re-ingest it, or use the model and profile it was made with")

    # -- locking ---------------------------------------------------------------------------

    def lock(self, exclusive: bool) -> "Memory":
        """Hold a shared (reading) or exclusive (writing) lock until `unlock`; never waits."""
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            doing = "read" if exclusive else "written"
            raise MemoryStoreError(f"memory '{self.name}' is being {doing} by another longchat process; try again when it is done") from None
        self._lock_fd = fd
        return self

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

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
            raise MemoryStoreError(f"memory '{self.name}' is corrupt (its token ids are truncated)")
        return np.fromfile(file, dtype=np.int32, count=n).tolist() if n else []

    def load_checkpoint(self, ckpt: Checkpoint) -> dict:
        file = self.path / ckpt.file
        try:
            data = file.read_bytes()
        except OSError as e:
            raise MemoryStoreError(f"memory '{self.name}' is corrupt (checkpoint {ckpt.file}: {e.strerror})") from None
        if hashlib.sha256(data).hexdigest() != ckpt.sha256:
            raise MemoryStoreError(f"memory '{self.name}' is corrupt (checkpoint {ckpt.file} does not match its hash)")
        import io

        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)

    # -- writing ---------------------------------------------------------------------------

    def write_ids(self, ids: list[int], start: int) -> None:
        """Write ids[start:] at their place in ids.bin."""
        with open(self.path / "ids.bin", "r+b" if (self.path / "ids.bin").exists() else "wb") as f:
            f.seek(4 * start)
            f.write(np.asarray(ids[start:], dtype=np.int32).tobytes())
            f.flush()
            os.fsync(f.fileno())

    def commit(self, state: dict, ckpt: Checkpoint, *, complete: bool, keep_old: bool) -> None:
        """Make `state` (already synced block files and ids) the memory's current state."""
        import io

        buf = io.BytesIO()
        torch.save(state, buf)
        data = buf.getvalue()
        ckpt.sha256 = hashlib.sha256(data).hexdigest()
        atomic_write(self.path / ckpt.file, data)
        old = self.checkpoints
        kept = [c for c in old if c.tokens < ckpt.tokens and c.file != ckpt.file] if keep_old else []
        self.manifest.update(checkpoints=[vars(c) for c in kept + [ckpt]], tokens=ckpt.tokens,
                             complete=complete, updated=time.time())
        self.save_manifest()
        self.touch()
        for c in old:  # files no longer named (after the manifest stopped naming them)
            if c.file not in {k.file for k in kept + [ckpt]}:
                (self.path / c.file).unlink(missing_ok=True)

    def drop_checkpoints_after(self, tokens: int) -> None:
        """Forget checkpoints past `tokens` (re-encoding from an earlier point)."""
        old = self.checkpoints
        kept = [c for c in old if c.tokens <= tokens]
        self.manifest.update(checkpoints=[vars(c) for c in kept], tokens=kept[-1].tokens if kept else 0,
                             complete=False)
        self.save_manifest()
        for c in old:
            if c not in kept:
                (self.path / c.file).unlink(missing_ok=True)

    def save_manifest(self) -> None:
        atomic_write(self.path / "manifest.json", json.dumps(self.manifest, indent=1).encode())

    def size(self) -> int:
        return dir_size(self.path)


def find(name: str) -> Memory:
    """A named memory, else an automatic cache entry by its folder name."""
    for root in (named_root(), cache_root()):
        if (root / name).is_dir():
            return Memory.open(root / name)
    raise MemoryStoreError(f"no memory named {name!r}; see `longchat memories list`")


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
