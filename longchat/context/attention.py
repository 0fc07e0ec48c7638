"""Attention pieces shared by the strategies: attention that also returns its log-sum-exp,
and the merge that turns several such parts into one softmax.

Strategies that see one key set through two rotations of the query (InfLLM's memory at a
fixed distance, LM-Infinite's clamped globals, Self-Extend's grouped positions) attend to
each part separately and merge: with o_i and lse_i per part, the single-softmax result is
    sum_i exp(lse_i - m) o_i / sum_i exp(lse_i - m),   m = max_i lse_i
which equals one softmax over the union of the keys, exactly (up to float rounding).
On CPU each part runs through PyTorch's fused flash kernel (no (T, S) score matrix, all
cores); elsewhere a plain fp32 fallback computes the same thing.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

import torch
import torch.nn.functional as F

_cpu_flash = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


class AttentionFlops:
    """Attention FLOPs asked for so far: QK^T and PV over the (query, key) pairs a strategy
    lets attend, 4 x query heads x head_dim per pair. Masked-out pairs are not counted, so
    this is the method's work, not the kernel's (used for model FLOP utilisation)."""

    def __init__(self):
        self.flops = 0

    def add(self, q: torch.Tensor, pairs: int) -> None:
        """`pairs` (query, key) pairs per head for q (B, Hq, T, D)."""
        b, hq, _, d = q.shape
        self.flops += 4 * b * hq * d * int(pairs)


# The counter of whoever is running the model (the engine), if anyone counts.
_counting: ContextVar[AttentionFlops | None] = ContextVar("attention_flops", default=None)


@contextmanager
def counting(counter: AttentionFlops) -> Iterator[AttentionFlops]:
    """Count the attention FLOPs of everything run inside into `counter`."""
    token = _counting.set(counter)
    try:
        yield counter
    finally:
        _counting.reset(token)


def count(q: torch.Tensor, pairs: int) -> None:
    """Strategies report the (query, key) pairs they attend per head for q (B, Hq, T, D)."""
    counter = _counting.get()
    if counter is not None:
        counter.add(q, pairs)


def causal_pairs(t: int, past: int = 0) -> int:
    """(query, key) pairs of t new queries that see `past` earlier keys and themselves causally."""
    return t * past + t * (t + 1) // 2


class Mask:
    """A (T, S) bool mask (True = attend), built once per forward and shared by every layer.

    The fused kernel wants it additive, in the query dtype and tiled over the folded
    grouped-query rows; that form is made on first use and kept.
    """

    def __init__(self, allowed: torch.Tensor):
        self.allowed = allowed
        self._folded: dict = {}
        self._pairs: int | None = None

    @property
    def pairs(self) -> int:
        """How many (query, key) pairs may attend."""
        if self._pairs is None:
            self._pairs = int(self.allowed.sum())
        return self._pairs

    def folded(self, n_rep: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(allowed (n_rep*T, S), additive bias in `dtype`, rows that see nothing (n_rep*T,))."""
        key = (n_rep, dtype)
        if key not in self._folded:
            allowed = self.allowed.repeat(n_rep, 1) if n_rep > 1 else self.allowed
            bias = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(~allowed, float("-inf"))
            empty = ~allowed.any(dim=-1)
            self._folded[key] = (allowed, bias, empty if empty.any() else None)
        return self._folded[key]


def causal_attention_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`attention_lse` of T queries over the same T positions, causal.

    The fused kernel skips the masked half of the blocks here, which an explicit mask cannot.
    Grouped heads cannot fold into rows under a causal mask, so k and v (T keys) are expanded.
    """
    b, hq, t, d = q.shape
    if _cpu_flash is None or q.device.type != "cpu":
        return attention_lse(q, k, v, Mask(torch.ones(t, t, dtype=torch.bool, device=q.device).tril()))
    count(q, causal_pairs(t))
    n_rep = hq // k.shape[1]
    if n_rep > 1:
        k, v = k.repeat_interleave(n_rep, dim=1), v.repeat_interleave(n_rep, dim=1)  # (B, Hq, T, D)
    out, lse = _cpu_flash(q.to(k.dtype), k, v, is_causal=True)
    return out.to(q.dtype), lse


def attention_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                  mask: Mask | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention of q over k, v, and each row's log-sum-exp of the scaled logits.

    q (B, Hq, T, D); k, v (B, Hkv, S, D) with Hq a multiple of Hkv (grouped-query heads share
    a key head, as in transformers' repeat_kv); mask: which (T, S) pairs may attend, or None.
    A row that sees no key gets lse -inf (weight 0 in `merge_attention`).
    Returns out (B, Hq, T, D) and lse (B, Hq, T) fp32.
    """
    b, hq, t, d = q.shape
    hkv = k.shape[1]
    n_rep = hq // hkv
    count(q, t * k.shape[2] if mask is None else mask.pairs)
    # Heads of one group share their keys, so they fold into the query rows: (B, Hkv, n_rep*T, D).
    # A cache held in another dtype (context.kv) is attended in its own.
    qf = q.reshape(b, hkv, n_rep * t, d).to(k.dtype)
    allowed = bias = empty = None
    if mask is not None:
        allowed, bias, empty = mask.folded(n_rep, q.dtype)
    if _cpu_flash is not None and q.device.type == "cpu":
        out, lse = _cpu_flash(qf, k, v, attn_mask=bias)
    else:
        # In place after the first product: on a GPU the (rows, S) fp32 matrix is the peak
        # (2 GB per layer for a 512-token chunk over 32k keys of a Llama-3-8B).
        scores = torch.einsum("bhtd,bhsd->bhts", qf.float(), k.float()).mul_(d ** -0.5)  # (B, Hkv, n_rep*T, S)
        if allowed is not None:
            scores.masked_fill_(~allowed, float("-inf"))
        lse = torch.logsumexp(scores, dim=-1)
        probs = scores.sub_(lse[..., None]).exp_().nan_to_num_(0.0)  # a row that sees nothing: 0
        out = torch.einsum("bhts,bhsd->bhtd", probs, v.float()).to(q.dtype)
    if empty is not None:  # the kernel reports lse 0 for a row with no key; it must weigh nothing
        lse = lse.masked_fill(empty, float("-inf"))
        out = out.masked_fill(empty[:, None], 0.0)
    return out.reshape(b, hq, t, d).to(q.dtype), lse.reshape(b, hq, t)


def attend_all(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, n: int | None = None) -> torch.Tensor:
    """Softmax attention of q (B, Hq, T, D) over the first `n` keys (all: None) of k, v
    (B, Hkv, S, D): no mask, computed in the cache's dtype, returned in q's.

    A decode step (T = 1) over a bf16/fp16 cache on a CPU runs as two batched matmuls with each
    group's query heads folded into rows. torch's CPU attention kernel widens a half-precision
    cache element by element: 30 layers at 4k keys took 72 ms a step that way. The matmuls are
    fast only on a contiguous cache, so a caller that holds a reserved buffer passes all of it
    with `n`: the keys past `n` (zeros, at most the reply's length) are scored and masked, which
    costs less than copying the first `n` out of the buffer each step (docs/decode.md). The
    scores come out of the matmul in the cache's dtype; the softmax is taken in fp32."""
    b, hq, t, d = q.shape
    n = k.shape[2] if n is None else n
    count(q, t * n)
    if t == 1 and q.device.type == "cpu" and k.dtype in (torch.bfloat16, torch.float16):
        hkv = k.shape[1]
        qf = q.reshape(b, hkv, hq // hkv, d).to(k.dtype)               # (B, Hkv, n_rep, D)
        scores = torch.matmul(qf, k.transpose(-1, -2)).float()         # (B, Hkv, n_rep, S)
        if n < k.shape[2]:
            scores[..., n:] = float("-inf")
        probs = torch.softmax(scores.mul_(d ** -0.5), dim=-1).to(k.dtype)
        return torch.matmul(probs, v).reshape(b, hq, t, d).to(q.dtype)
    return F.scaled_dot_product_attention(q.to(k.dtype), k[:, :, :n], v[:, :, :n], enable_gqa=True).to(q.dtype)


def merge_attention(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """One softmax over the union of the parts' keys, from each part's (out, lse)."""
    if len(parts) == 1:
        return parts[0][0]
    lse = torch.stack([p[1] for p in parts])                        # (P, B, H, T)
    weights = torch.softmax(lse, dim=0)[..., None]                  # (P, B, H, T, 1)
    out = sum(w * o.float() for w, (o, _) in zip(weights, parts))   # (B, H, T, D)
    return out.to(parts[0][0].dtype)
