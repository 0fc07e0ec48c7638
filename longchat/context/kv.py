"""A growable key/value buffer for one layer, shared by the strategies that keep raw KV."""

from __future__ import annotations

import torch


class KVBuffer:
    """Keys and values (B, H, T, D) with amortised O(1) append (capacity doubles)."""

    def __init__(self):
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.size = 0

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add k, v (B, H, T, D); return views of everything stored so far."""
        t = k.shape[2]
        if self.k is None or self.size + t > self.k.shape[2]:
            capacity = max(256, 2 * (self.size + t))
            shape = (*k.shape[:2], capacity, k.shape[3])
            new_k = k.new_empty(shape)
            new_v = v.new_empty(shape)
            if self.k is not None:
                new_k[:, :, : self.size] = self.k[:, :, : self.size]
                new_v[:, :, : self.size] = self.v[:, :, : self.size]
            self.k, self.v = new_k, new_v
        self.k[:, :, self.size : self.size + t] = k
        self.v[:, :, self.size : self.size + t] = v
        self.size += t
        return self.k[:, :, : self.size], self.v[:, :, : self.size]

    def truncate(self, n: int) -> None:
        self.size = min(self.size, n)

    def nbytes(self) -> int:
        if self.k is None:
            return 0
        return self.k.numel() * self.k.element_size() * 2
