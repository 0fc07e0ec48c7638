"""`self-extend` (LongLM Self-Extend): neighbour attention + grouped attention, one softmax.

Keys closer than `neighbor_window` use normal positions. Farther keys use grouped positions:
key at pos // group_size, query at pos // group_size + w - w // group_size, so the largest
relative distance stays inside the trained range up to about
(trained_length - w) * group_size + w tokens. Both key rotations are cached (they never change).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from longchat.context.attention import Mask, attention_lse, merge_attention
from longchat.context.base import ContextStrategy, StrategyParams, register_strategy
from longchat.context.kv import KVBuffer
from longchat.runtime.rope import rotate
from longchat.settings import require


@dataclass
class SelfExtendParams(StrategyParams):
    neighbor_window: int = 1024   # w: keys closer than this keep their true distance
    group_size: int = 16          # G: farther keys share a position per group

    def validate(self, where: str) -> None:
        require(self.neighbor_window >= 1, where, "neighbor_window", "an integer >= 1")
        require(self.group_size >= 1, where, "group_size", "an integer >= 1")


@register_strategy
class SelfExtend(ContextStrategy):
    name = "self-extend"
    Params = SelfExtendParams

    def reset(self) -> None:
        self.neighbor = [KVBuffer() for _ in range(self.cfg.n_layers)]  # keys rotated at pos
        self.grouped = [KVBuffer(values=False) for _ in range(self.cfg.n_layers)]  # the same keys rotated at pos // G
        self._length = 0

    def begin(self, positions: torch.Tensor) -> None:
        w, g = self.params.neighbor_window, self.params.group_size
        positions = positions.to(self.device)
        self.cos_n, self.sin_n = self.rope.cos_sin(positions, self.dtype)
        self.cos_k, self.sin_k = self.rope.cos_sin(positions // g, self.dtype)
        self.cos_q, self.sin_q = self.rope.cos_sin(positions // g + w - w // g, self.dtype)
        k_abs = torch.arange(int(positions[-1]) + 1, device=self.device)
        causal = k_abs[None, :] <= positions[:, None]
        near = positions[:, None] - k_abs[None, :] < w
        self.mask_n, self.mask_g = causal & near, causal & ~near
        self.parts_masks = Mask(self.mask_n), Mask(self.mask_g)
        self._length += positions.shape[0]

    def attend(self, layer, q, k, v):
        k_n, v_all = self.neighbor[layer].append(rotate(k, self.cos_n, self.sin_n), v)
        k_g, _ = self.grouped[layer].append(rotate(k, self.cos_k, self.sin_k))
        q_n = rotate(q, self.cos_n, self.sin_n)
        q_g = rotate(q, self.cos_q, self.sin_q)
        near, far = self.parts_masks
        return merge_attention([attention_lse(q_n, k_n, v_all, near), attention_lse(q_g, k_g, v_all, far)])

    def memory_bytes(self) -> int:
        return sum(b.nbytes() for b in self.neighbor + self.grouped)
