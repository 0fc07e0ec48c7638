"""`streaming` (StreamingLLM, attention sinks): the first tokens + a recent window, constant memory.

Keys are cached *unrotated* and rotated at their index inside the cache on every forward,
so distances never exceed the cache size however long the stream runs. It keeps generation
stable; it does not let the model recall what left the window.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from longchat.context.attention import count
from longchat.context.base import ContextStrategy, StrategyParams, register_strategy
from longchat.runtime.rope import rotate
from longchat.settings import require


@dataclass
class StreamingParams(StrategyParams):
    n_sink: int = 4        # initial tokens kept forever (the "attention sinks")
    n_local: int = 2048    # most recent tokens each query sees, itself included

    def validate(self, where: str) -> None:
        require(self.n_sink >= 0, where, "n_sink", "an integer >= 0")
        require(self.n_local >= 1, where, "n_local", "an integer >= 1")


@register_strategy
class StreamingLLM(ContextStrategy):
    name = "streaming"
    Params = StreamingParams

    def reset(self) -> None:
        self.k: list[torch.Tensor | None] = [None] * self.cfg.n_layers  # (B, Hkv, S, D) unrotated
        self.v: list[torch.Tensor | None] = [None] * self.cfg.n_layers
        self._length = 0
        self.cached = 0  # tokens in the cache (sinks + recent)

    def begin(self, positions: torch.Tensor) -> None:
        p = self.params
        t = positions.shape[0]
        total = self.cached + t
        idx = torch.arange(total, device=self.device)
        self.cos, self.sin = self.rope.cos_sin(idx, self.dtype)  # cache index = position
        q_idx = idx[self.cached:]
        # Each query sees the sinks and the last n_local tokens up to itself.
        self.mask = (idx[None, :] <= q_idx[:, None]) & (
            (idx[None, :] < p.n_sink) | (q_idx[:, None] - idx[None, :] < p.n_local)
        )
        self.pairs = int(self.mask.sum())
        self.before = self.cached
        # After this forward keep the first n_sink and the last n_local tokens.
        self.keep = total if total <= p.n_sink + p.n_local else None
        self.cached = min(total, p.n_sink + p.n_local)
        self._length += t

    def attend(self, layer, q, k, v):
        if self.k[layer] is not None:
            k_all, v_all = torch.cat([self.k[layer], k], dim=2), torch.cat([self.v[layer], v], dim=2)
        else:
            k_all, v_all = k, v
        t = q.shape[2]
        q_rot = rotate(q, self.cos[-t:], self.sin[-t:])
        k_rot = rotate(k_all, self.cos, self.sin)
        count(q, self.pairs)
        out = F.scaled_dot_product_attention(q_rot, k_rot, v_all, attn_mask=self.mask, enable_gqa=True)
        if self.keep is None:  # evict the middle: sinks + most recent
            n_sink, n_local = self.params.n_sink, self.params.n_local
            k_all = torch.cat([k_all[:, :, :n_sink], k_all[:, :, -n_local:]], dim=2)
            v_all = torch.cat([v_all[:, :, :n_sink], v_all[:, :, -n_local:]], dim=2)
        self.k[layer], self.v[layer] = k_all, v_all
        return out

    def memory_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k + self.v if t is not None)
