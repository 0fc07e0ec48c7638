"""Key/value buffers for the strategies that keep raw KV, and the format the cache is held in.

`[runtime] kv` (`--set model.kv=...`) is the format of `full` attention's cache (and of
`rope-scaled`, which is full attention): what a decode step reads for every earlier token.
- `auto`: bf16 on a CPU with native bf16 matmuls (AVX512-BF16, AMX), else the model's dtype
  (bf16 on a GPU). Half the bytes of fp32, as llama.cpp's default f16 cache, and faster here:
  a decode step reads the cache through bf16 matmuls (docs/decode.md).
- `fp32`, `bf16`, `fp16`: held in that dtype, attended in it.
- `int8`: a quarter of fp32's bytes, for the longest inputs: symmetric per token and head, with
  a scale each, widened to the `auto` dtype when read (slower than bf16: every step widens it).
The other strategies hold their state in the model's dtype (InfLLM's blocks: `store_bits`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

KV_FORMATS = ("auto", "fp32", "bf16", "fp16", "int8")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class KVFormat:
    """How a cache is held: `name` (fp32, bf16, fp16, int8) and the dtype it is attended in."""

    name: str
    dtype: torch.dtype

    @property
    def quantised(self) -> bool:
        return self.name == "int8"


def dtype_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in _DTYPES.items()}.get(dtype, str(dtype).removeprefix("torch."))


def kv_format(name: str, dtype: torch.dtype, device: torch.device) -> KVFormat:
    """Resolve a `[runtime] kv` value for a model held in `dtype` on `device`."""
    from longchat.runtime.weights import bf16_matmuls

    half = torch.bfloat16 if device.type == "cpu" and dtype == torch.float32 and bf16_matmuls() else dtype
    if name == "auto":
        return KVFormat(dtype_name(half), half)
    if name == "int8":
        return KVFormat("int8", half)
    return KVFormat(name, _DTYPES[name])


class KVBuffer:
    """Keys and values (B, H, T, D) with amortised O(1) append (capacity doubles); keys only
    with `values=False` (a second rotation of keys whose values another buffer holds).

    `reserve(n)`: the sequence will reach `n` tokens, so the next growth goes straight to `n`.
    A prompt + reply that is known in advance is then held in one allocation of its own size,
    not doubled past it (at 1k tokens doubling held twice the cache, and both copies at once
    while copying).

    `fmt`: held as (None: as appended). Views come back in `fmt.dtype` (int8 widened)."""

    def __init__(self, values: bool = True, fmt: KVFormat | None = None):
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.k_scale: torch.Tensor | None = None  # int8: (B, H, cap, 1) per token and head
        self.v_scale: torch.Tensor | None = None
        self.values = values
        self.fmt = fmt
        self.size = 0
        self.reserved = 0

    def reserve(self, n: int) -> None:
        self.reserved = max(self.reserved, n)

    def append(self, k: torch.Tensor, v: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Add k (and v) (B, H, T, D); return views of everything stored so far (v None without values)."""
        t = k.shape[2]
        self.make_room(t, k, v)
        at = slice(self.size, self.size + t)
        self._put(self.k, self.k_scale, at, k)
        if self.values:
            self._put(self.v, self.v_scale, at, v)
        self.size += t
        return self._view(self.k, self.k_scale), None if self.v is None else self._view(self.v, self.v_scale)

    def make_room(self, t: int, k: torch.Tensor, v: torch.Tensor | None = None) -> None:
        """Hold at least `t` more tokens shaped like k, v (B, H, *, D), growing if need be."""
        if self.k is None or self.size + t > self.k.shape[2]:
            need = self.size + t
            capacity = self.reserved if need <= self.reserved else max(256, 2 * need)
            self.k, self.k_scale = self._grow(self.k, self.k_scale, k, capacity)
            if self.values:
                self.v, self.v_scale = self._grow(self.v, self.v_scale, v, capacity)

    def _put(self, data: torch.Tensor, scale: torch.Tensor | None, at: slice, x: torch.Tensor) -> None:
        if scale is None:
            data[:, :, at] = x
            return
        s = x.abs().amax(dim=-1, keepdim=True).float().clamp_min(1e-8) / 127
        data[:, :, at] = (x.float() / s).round_().to(torch.int8)
        scale[:, :, at] = s

    def _view(self, data: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
        if scale is None:
            return data[:, :, : self.size]
        return data[:, :, : self.size].to(self.fmt.dtype) * scale[:, :, : self.size].to(self.fmt.dtype)

    def _grow(self, old, old_scale, like: torch.Tensor, capacity: int):
        fmt = self.fmt
        dtype = like.dtype if fmt is None else (torch.int8 if fmt.quantised else fmt.dtype)
        # A half-precision cache starts as zeros, not garbage: a decode step reads the whole
        # buffer (`held`) and masks what is past `size` (0 * NaN would not be masked).
        half = dtype in (torch.bfloat16, torch.float16)
        new = (like.new_zeros if half else like.new_empty)((*like.shape[:2], capacity, like.shape[3]), dtype=dtype)
        scale = like.new_empty((*like.shape[:2], capacity, 1), dtype=torch.float32) if dtype == torch.int8 else None
        if old is not None:
            new[:, :, : self.size] = old[:, :, : self.size]
            if scale is not None:
                scale[:, :, : self.size] = old_scale[:, :, : self.size]
        return new, scale

    def held(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The whole buffers (B, H, capacity, D) whose first `size` tokens are the cache, for a
        reader that masks the rest (a contiguous tensor is read faster than a slice of one);
        None unless they are bf16/fp16 (what `attention.attend_all` reads this way) and hold
        little more than `size` (not after a doubling)."""
        if self.k is None or self.v is None or self.k.dtype not in (torch.bfloat16, torch.float16):
            return None
        return (self.k, self.v) if self.k.shape[2] <= self.size + max(256, self.size // 4) else None

    def truncate(self, n: int) -> None:
        self.size = min(self.size, n)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.k, self.v, self.k_scale, self.v_scale) if t is not None)
