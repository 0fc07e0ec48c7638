"""A growable key/value buffer for one layer, shared by the strategies that keep raw KV."""

from __future__ import annotations

import torch


class KVBuffer:
    """Keys and values (B, H, T, D) with amortised O(1) append (capacity doubles); keys only
    with `values=False` (a second rotation of keys whose values another buffer holds).

    `reserve(n)`: the sequence will reach `n` tokens, so the next growth goes straight to `n`.
    A prompt + reply that is known in advance is then held in one allocation of its own size,
    not doubled past it (at 1k tokens doubling held twice the cache, and both copies at once
    while copying)."""

    def __init__(self, values: bool = True):
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.values = values
        self.size = 0
        self.reserved = 0

    def reserve(self, n: int) -> None:
        self.reserved = max(self.reserved, n)

    def append(self, k: torch.Tensor, v: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Add k (and v) (B, H, T, D); return views of everything stored so far (v None without values)."""
        t = k.shape[2]
        if self.k is None or self.size + t > self.k.shape[2]:
            need = self.size + t
            capacity = self.reserved if need <= self.reserved else max(256, 2 * need)
            self.k = self._grow(self.k, k, capacity)
            if self.values:
                self.v = self._grow(self.v, v, capacity)
        self.k[:, :, self.size : self.size + t] = k
        if self.values:
            self.v[:, :, self.size : self.size + t] = v
        self.size += t
        return self.k[:, :, : self.size], None if self.v is None else self.v[:, :, : self.size]

    def _grow(self, old: torch.Tensor | None, like: torch.Tensor, capacity: int) -> torch.Tensor:
        new = like.new_empty((*like.shape[:2], capacity, like.shape[3]))
        if old is not None:
            new[:, :, : self.size] = old[:, :, : self.size]
        return new

    def truncate(self, n: int) -> None:
        self.size = min(self.size, n)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.k, self.v) if t is not None)
