"""`lm-infinite` (LM-Infinite): a Λ-shaped mask with a distance limit.

Each query sees its nearest `local_branch` tokens at their true distances and the first
`global_branch` tokens at a clamped distance (`limit_distance`), never further than the model
was trained on. Optionally (`top_k` > 0), in layers >= `top_k_from_layer`, the last query of
each forward also attends to the `top_k` middle tokens it scores highest (at the same clamped
distance): that is what lets it retrieve a passkey from the masked middle.
The full KV is kept (unrotated) because those middle tokens must stay searchable.
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
class LMInfiniteParams(StrategyParams):
    local_branch: int = 2048     # nearest tokens seen at their true distance
    global_branch: int = 10      # first tokens always seen (10-100 behave alike)
    limit_distance: int = 0      # distance the global tokens sit at; 0 = local_branch
    top_k: int = 5               # middle tokens the last query may also attend to; 0 = off
    top_k_from_layer: int = 4    # first layer that does the middle top-k

    def validate(self, where: str) -> None:
        require(self.local_branch >= 1, where, "local_branch", "an integer >= 1")
        require(self.global_branch >= 0, where, "global_branch", "an integer >= 0")
        require(self.limit_distance >= 0, where, "limit_distance", "an integer >= 0 (0 = local_branch)")
        require(self.top_k >= 0, where, "top_k", "an integer >= 0 (0 = off)")
        require(self.top_k_from_layer >= 0, where, "top_k_from_layer", "an integer >= 0")


@register_strategy
class LMInfinite(ContextStrategy):
    name = "lm-infinite"
    Params = LMInfiniteParams

    def reset(self) -> None:
        self.layers = [KVBuffer() for _ in range(self.cfg.n_layers)]  # unrotated keys
        self._length = 0

    def begin(self, positions: torch.Tensor) -> None:
        p = self.params
        t = positions.shape[0]
        past, total = self._length, self._length + t
        self.lo = max(0, past - p.local_branch + 1)        # first key any query here sees locally
        self.g = min(p.global_branch, self.lo)             # global keys outside the local slice
        k_abs = torch.arange(self.lo, total, device=self.device)
        q_abs = k_abs[past - self.lo:]
        self.cos, self.sin = self.rope.cos_sin(k_abs - self.lo, self.dtype)
        self.local_mask = Mask((k_abs[None, :] <= q_abs[:, None]) & (q_abs[:, None] - k_abs[None, :] < p.local_branch))
        limit = p.limit_distance or p.local_branch
        self.cos_q, self.sin_q = self.rope.cos_sin(torch.tensor([limit], device=self.device), self.dtype)
        self.cos_g, self.sin_g = self.rope.cos_sin(torch.arange(self.g, device=self.device), self.dtype)
        self.n_middle = self.lo - self.g
        self._length = total

    def attend(self, layer, q, k, v):
        p = self.params
        keys, values = self.layers[layer].append(k, v)  # (B, Hkv, S, D) unrotated
        t = q.shape[2]
        q_l = rotate(q, self.cos[-t:], self.sin[-t:])
        k_l = rotate(keys[:, :, self.lo:], self.cos, self.sin)
        v_l = values[:, :, self.lo:]
        q_g = rotate(q, self.cos_q, self.sin_q)
        parts = [attention_lse(q_l, k_l, v_l, self.local_mask)]
        if self.g:
            g_k = rotate(keys[:, :, : self.g], self.cos_g, self.sin_g)
            parts.append(attention_lse(q_g, g_k, values[:, :, : self.g]))
        if p.top_k and layer >= p.top_k_from_layer and self.n_middle > 0:
            # Only the last query reads the middle: its part is empty (-inf) for the other rows.
            m_k, m_v = self.select_middle(q_g[:, :, -1], keys[:, :, self.g : self.lo], values[:, :, self.g : self.lo])
            o_last, lse_last = attention_lse(q_g[:, :, -1:], m_k, m_v)
            o_mid = o_last.new_zeros(q.shape)
            o_mid[:, :, -1:] = o_last
            lse_mid = lse_last.new_full(q.shape[:3], float("-inf"))
            lse_mid[:, :, -1:] = lse_last
            parts.append((o_mid, lse_mid))
        return merge_attention(parts)

    def select_middle(self, q_last: torch.Tensor, m_k: torch.Tensor, m_v: torch.Tensor):
        """Top-k middle tokens per KV head for the last query (B, Hq, D); keys stay unrotated."""
        c = self.cfg
        q = q_last.view(q_last.shape[0], c.n_kv_heads, c.n_rep, c.head_dim).sum(dim=2)  # (B, Hkv, D)
        scores = torch.einsum("bhd,bhsd->bhs", q, m_k)
        idx = torch.topk(scores, min(self.params.top_k, m_k.shape[2]), dim=-1).indices  # (B, Hkv, k)
        gather = idx[..., None].expand(-1, -1, -1, c.head_dim)
        return torch.gather(m_k, 2, gather), torch.gather(m_v, 2, gather)

    def memory_bytes(self) -> int:
        return sum(buf.nbytes() for buf in self.layers)
