"""Block memory for InfLLM: evicted key/value blocks of one layer, in RAM or in files.

A block is `block_size` consecutive tokens' unrotated keys and values (Hkv, bs, D), stored as
one fixed-size record: 16-bit floats, or 8-bit integers with one 16-bit scale per token and
head (absmax). Representative keys (Hkv, r, D) stay on the compute device in every tier
(RAM on a CPU, GPU memory on a GPU; 1/8 of the blocks' bytes at the defaults): retrieval
scores them at every step, and copying them over on each step would cost more than the model.

Tiers: RAM; temp files (unlinked at once, so the OS frees them even after a crash); or the
files of a persistent memory (`path`), which outlive the process. Files are read back with
positional reads; unlike a memory map, that keeps blocks out of the resident set, so host RAM
stays flat however long the input is.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from longchat.timing import median_seconds

# Representatives are scored against every step's query: 16-bit halves their RAM, and a
# head-major layout (one contiguous (N*r, D) matrix per head) makes scoring one product a head.
# Files hold them as float16; in memory they are held in the dtype they are scored in.
REPR_DTYPE = torch.float16
SCORE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
_cpu_auto: torch.dtype | None = None


def head_logits(keys: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """keys (H, M, D) x q (H, D) -> (H, M): each head's keys against its own query. On a CPU
    one matrix-vector product per head: a 16-bit bmm with one column runs a generic kernel,
    2x slower than the per-head gemv at 256-8192 blocks here (`python bench/score_dtype.py`)."""
    if keys.device.type != "cpu":
        return torch.bmm(keys, q[:, :, None])[..., 0]
    return torch.stack([keys[h] @ q[h] for h in range(keys.shape[0])])


def score_dtype(name: str, device: torch.device | str) -> torch.dtype:
    """The dtype representatives are held and scored in. "auto": float16 on a GPU; on a CPU,
    bfloat16 where its product is clearly (1.5x) faster than float16's (CPUs with AVX512-BF16 or
    AMX), else float16; measured once per process."""
    global _cpu_auto
    if name != "auto":
        return SCORE_DTYPES[name]
    if torch.device(device).type != "cpu":
        return torch.float16
    if _cpu_auto is None:
        x, q = torch.randn(3, 16384, 64), torch.randn(3, 64)
        took = {}
        for dtype in (torch.float16, torch.bfloat16):
            a, b = x.to(dtype), q.to(dtype)
            took[dtype] = median_seconds(lambda: head_logits(a, b), 10)
        _cpu_auto = torch.bfloat16 if 1.5 * took[torch.bfloat16] < took[torch.float16] else torch.float16
    return _cpu_auto


class TruncatedFile(ValueError):
    """A persistent block file holds fewer blocks than its memory's manifest counts."""

    def __init__(self, path: Path):
        super().__init__(f"{path} is truncated")
        self.path = path


class BlockStore:
    """Append-only blocks + representatives; `gather(ids)` returns (K, V) for chosen blocks."""

    def __init__(self, n_kv_heads: int, block_size: int, head_dim: int, repr_topk: int, *,
                 bits: int = 16, disk_dir: str | None = None, path: Path | None = None, count: int = 0,
                 device: torch.device | str = "cpu", dtype: torch.dtype = REPR_DTYPE):
        """`path`: persistent files `<path>.kv` and `<path>.repr`, of which the first `count`
        blocks are kept (anything after them, from an interrupted run, is overwritten).
        `device`, `dtype`: where the representatives live and what they are scored in."""
        if bits not in (8, 16):
            raise ValueError("bits must be 8 or 16")
        self.shape = (n_kv_heads, block_size, head_dim)
        self.bits = bits
        n = n_kv_heads * block_size * head_dim
        self.half_bytes = n * 2 if bits == 16 else n + n_kv_heads * block_size * 2  # k or v
        self.record_bytes = 2 * self.half_bytes
        self.repr_shape = (n_kv_heads, repr_topk, head_dim)
        # a block in its files: K and V (`.kv`) and its representative keys (`.repr`)
        self.block_bytes = self.record_bytes + n_kv_heads * repr_topk * head_dim * REPR_DTYPE.itemsize
        self.count = 0
        self.device, self.dtype = torch.device(device), dtype
        self.reprs = torch.empty(n_kv_heads, 0, repr_topk, head_dim, dtype=dtype, device=self.device)  # (Hkv, cap, r, D)
        self._ram = None                   # RAM tier: (cap, record_bytes) uint8
        self._fd = self._repr_fd = None
        if path is not None:
            self._fd = os.open(f"{path}.kv", os.O_RDWR | os.O_CREAT, 0o644)
            self._repr_fd = os.open(f"{path}.repr", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                self._load_reprs(count, path)
            except BaseException:
                self.close()
                raise
        elif disk_dir is not None:
            self._fd, temp = tempfile.mkstemp(prefix="infllm-", dir=disk_dir)
            os.unlink(temp)

    @property
    def persistent(self) -> bool:
        return self._repr_fd is not None

    # -- records ---------------------------------------------------------------------------

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        """(n, Hkv, bs, D) -> uint8 record halves (n, half_bytes), quantised where x is (on a
        GPU, there) and then copied to the host in one transfer."""
        x = x.detach()
        n = x.shape[0]
        if self.bits == 16:
            return x.to(torch.float16).contiguous().view(torch.uint8).reshape(n, -1).cpu()
        scale = x.float().abs().amax(dim=-1, keepdim=True).clamp_min(1e-8) / 127
        q = torch.round(x.float() / scale).clamp(-127, 127).to(torch.int8)
        return torch.cat([q.view(torch.uint8).reshape(n, -1),
                          scale.to(torch.float16).view(torch.uint8).reshape(n, -1)], dim=1).cpu()

    def _decode(self, raw: torch.Tensor, dtype) -> torch.Tensor:
        """uint8 (n, half_bytes) -> (n, Hkv, bs, D) in `dtype`."""
        n = raw.shape[0]
        if self.bits == 16:
            return raw.contiguous().view(torch.float16).reshape(n, *self.shape).to(dtype)
        h, bs, d = self.shape
        q = raw[:, : h * bs * d].contiguous().view(torch.int8).reshape(n, h, bs, d)
        scale = raw[:, h * bs * d :].contiguous().view(torch.float16).reshape(n, h, bs, 1)
        return (q.to(torch.float32) * scale.to(torch.float32)).to(dtype)

    # -- writing ---------------------------------------------------------------------------

    def append(self, k: torch.Tensor, v: torch.Tensor, reprs: torch.Tensor) -> None:
        """One block: k, v (Hkv, bs, D); reprs (Hkv, r, D)."""
        self.extend(k[None], v[None], reprs[None])

    def extend(self, k: torch.Tensor, v: torch.Tensor, reprs: torch.Tensor) -> None:
        """n blocks at once: k, v (n, Hkv, bs, D); reprs (n, Hkv, r, D)."""
        n, at = k.shape[0], self.count
        records = torch.cat([self._encode(k), self._encode(v)], dim=1)  # (n, record_bytes)
        if self._fd is not None:
            os.pwrite(self._fd, records.numpy().tobytes(), at * self.record_bytes)
        else:
            if self._ram is None or at + n > self._ram.shape[0]:
                grown = torch.empty(max(16, 2 * at, at + n), self.record_bytes, dtype=torch.uint8)
                if self._ram is not None:
                    grown[:at] = self._ram[:at]
                self._ram = grown
            self._ram[at : at + n] = records
        reprs = reprs.detach().to(REPR_DTYPE)  # rounded as the files keep them, in every tier
        if self._repr_fd is not None:
            size = reprs[0].numel() * reprs.element_size()
            os.pwrite(self._repr_fd, reprs.cpu().contiguous().view(torch.uint8).numpy().tobytes(), at * size)
        reprs = reprs.to(self.device, self.dtype)
        if at + n > self.reprs.shape[1]:
            h, _, r, d = self.reprs.shape
            grown = torch.empty(h, max(16, 2 * at, at + n), r, d, dtype=self.dtype, device=self.device)
            grown[:, :at] = self.reprs[:, :at]
            self.reprs = grown
        self.reprs[:, at : at + n] = reprs.permute(1, 0, 2, 3)
        self.count += n

    def truncate(self, count: int) -> None:
        """Forget the blocks from `count` on (later appends overwrite them)."""
        self.count = min(self.count, count)

    def sync(self) -> None:
        """Make what was appended durable (persistent files only)."""
        if self.persistent:
            os.fsync(self._fd)
            os.fsync(self._repr_fd)

    def _load_reprs(self, count: int, path: Path) -> None:
        size = int(np.prod(self.repr_shape)) * torch.empty(0, dtype=REPR_DTYPE).element_size()
        for fd, need, suffix in ((self._fd, count * self.record_bytes, ".kv"), (self._repr_fd, count * size, ".repr")):
            if os.fstat(fd).st_size < need:
                raise TruncatedFile(Path(f"{path}{suffix}"))
        raw = os.pread(self._repr_fd, count * size, 0)
        flat = torch.frombuffer(bytearray(raw), dtype=REPR_DTYPE) if count else torch.empty(0, dtype=REPR_DTYPE)
        self.reprs = flat.reshape(count, *self.repr_shape).permute(1, 0, 2, 3).contiguous().to(self.device, self.dtype)
        self.count = count

    # -- reading ---------------------------------------------------------------------------

    def representatives(self, device=None, dtype=None) -> torch.Tensor:
        """(N, Hkv, r, D) representative keys of every block, for retrieval scoring."""
        return self.reprs[:, : self.count].permute(1, 0, 2, 3).to(device=device or self.reprs.device,
                                                                    dtype=dtype or self.reprs.dtype)

    def scores(self, q: torch.Tensor) -> torch.Tensor:
        """Each block's retrieval score for queries q (Hkv, D): its best representative's
        logit, summed over heads -> (N,) float32."""
        h, _, r, d = self.reprs.shape
        reprs = self.reprs[:, : self.count]
        logits = head_logits(reprs.reshape(h, self.count * r, d), q.to(reprs))  # (Hkv, N*r)
        return logits.view(h, self.count, r).amax(dim=2).float().sum(dim=0)

    def gather(self, ids: list[int], device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Blocks `ids` as K, V (Hkv, len(ids) * bs, D) in `dtype` on `device`."""
        if self._fd is None:
            raw = self._ram[torch.tensor(ids)]
        else:
            raw = torch.empty(len(ids), self.record_bytes, dtype=torch.uint8)
            for row, block in enumerate(ids):
                raw[row].numpy()[:] = np.frombuffer(
                    os.pread(self._fd, self.record_bytes, block * self.record_bytes), dtype=np.uint8)
        h, bs, d = self.shape
        raw = raw.to(device)  # decoded where it is used: on a GPU the int8 maths runs there
        out = []
        for half in (raw[:, : self.half_bytes], raw[:, self.half_bytes :]):
            x = self._decode(half, dtype)  # (n, Hkv, bs, D)
            out.append(x.permute(1, 0, 2, 3).reshape(h, len(ids) * bs, d))
        return out[0], out[1]

    def nbytes_ram(self) -> int:
        """Bytes held in memory: the RAM tier's records and the representatives (on the
        compute device)."""
        ram = self.reprs.numel() * self.reprs.element_size()
        return ram + (self._ram.numel() if self._ram is not None else 0)

    def close(self) -> None:
        for name in ("_fd", "_repr_fd"):
            fd = getattr(self, name, None)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)

    def __del__(self):
        self.close()
