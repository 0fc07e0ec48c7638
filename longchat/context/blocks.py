"""Block memory for InfLLM: evicted key/value blocks of one layer, in RAM or on disk.

A block is `block_size` consecutive tokens' unrotated keys and values (Hkv, bs, D), stored
16-bit. Representative keys (Hkv, r, D) stay in RAM in every tier: retrieval scores them
at each step. The disk tier appends blocks to two files and reads the chosen ones back with
positional reads; unlike a memory map, that keeps the blocks out of the process's resident
set, so host RAM stays flat however long the input is.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import torch


class BlockStore:
    """Append-only blocks + representatives; `gather(ids)` returns (K, V) for chosen blocks."""

    def __init__(self, n_kv_heads: int, block_size: int, head_dim: int, repr_topk: int,
                 dtype: torch.dtype = torch.float16, disk_dir: str | None = None):
        self.shape = (n_kv_heads, block_size, head_dim)
        self.dtype = dtype
        self.count = 0
        self.reprs = torch.empty(0, n_kv_heads, repr_topk, head_dim)  # (N, Hkv, r, D)
        self._k = self._v = None          # RAM tier: (cap, Hkv, bs, D)
        self._files = None
        if disk_dir is not None:
            fd_k, self._path_k = tempfile.mkstemp(prefix="infllm-k-", dir=disk_dir)
            fd_v, self._path_v = tempfile.mkstemp(prefix="infllm-v-", dir=disk_dir)
            self._files = (fd_k, fd_v)
            # Unlinked at once: the OS frees the space when we close, even after a crash.
            os.unlink(self._path_k)
            os.unlink(self._path_v)
        self.block_bytes = int(np.prod(self.shape)) * torch.empty(0, dtype=dtype).element_size()

    def append(self, k: torch.Tensor, v: torch.Tensor, reprs: torch.Tensor) -> None:
        """k, v (Hkv, bs, D); reprs (Hkv, r, D)."""
        k16, v16 = k.to(self.dtype).cpu().contiguous(), v.to(self.dtype).cpu().contiguous()
        if self._files is not None:
            offset = self.count * self.block_bytes
            os.pwrite(self._files[0], k16.view(torch.uint8).numpy().tobytes(), offset)
            os.pwrite(self._files[1], v16.view(torch.uint8).numpy().tobytes(), offset)
        else:
            if self._k is None or self.count == self._k.shape[0]:
                cap = max(16, 2 * self.count)
                new_k = torch.empty(cap, *self.shape, dtype=self.dtype)
                new_v = torch.empty(cap, *self.shape, dtype=self.dtype)
                if self._k is not None:
                    new_k[: self.count], new_v[: self.count] = self._k[: self.count], self._v[: self.count]
                self._k, self._v = new_k, new_v
            self._k[self.count], self._v[self.count] = k16, v16
        if self.count == self.reprs.shape[0]:
            grown = torch.empty(max(16, 2 * self.count), *self.reprs.shape[1:], dtype=reprs.dtype, device=reprs.device)
            grown[: self.count] = self.reprs[: self.count].to(grown)
            self.reprs = grown
        self.reprs[self.count] = reprs
        self.count += 1

    def representatives(self, device=None, dtype=None) -> torch.Tensor:
        """(N, Hkv, r, D) representative keys of every block, for retrieval scoring."""
        return self.reprs[: self.count].to(device=device or self.reprs.device, dtype=dtype or self.reprs.dtype)

    def gather(self, ids: list[int], device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Blocks `ids` as K, V (Hkv, len(ids) * bs, D) in `dtype` on `device`."""
        if self._files is None:
            index = torch.tensor(ids)
            k, v = self._k[index], self._v[index]  # (n, Hkv, bs, D)
        else:
            k = torch.empty(len(ids), *self.shape, dtype=self.dtype)
            v = torch.empty_like(k)
            for row, block in enumerate(ids):
                offset = block * self.block_bytes
                k[row].view(-1).view(torch.uint8).numpy()[:] = np.frombuffer(
                    os.pread(self._files[0], self.block_bytes, offset), dtype=np.uint8)
                v[row].view(-1).view(torch.uint8).numpy()[:] = np.frombuffer(
                    os.pread(self._files[1], self.block_bytes, offset), dtype=np.uint8)
        h, bs, d = self.shape
        k = k.to(device=device, dtype=dtype).permute(1, 0, 2, 3).reshape(h, len(ids) * bs, d)
        v = v.to(device=device, dtype=dtype).permute(1, 0, 2, 3).reshape(h, len(ids) * bs, d)
        return k, v

    def nbytes_ram(self) -> int:
        ram = self.reprs.numel() * self.reprs.element_size()
        if self._k is not None:
            ram += 2 * self._k.numel() * self._k.element_size()
        return ram

    def close(self) -> None:
        if self._files is not None:
            for fd in self._files:
                os.close(fd)
            self._files = None

    def __del__(self):
        self.close()
