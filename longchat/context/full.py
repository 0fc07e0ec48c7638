"""`full`: standard causal attention over every token, with a KV cache (the reference)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from longchat.context.attention import (attend_all, attention_lse, count, causal_attention_lse, causal_pairs,
                                        merge_attention)
from longchat.context.base import ContextStrategy, register_strategy
from longchat.context.kv import KVBuffer
from longchat.runtime.rope import rotate


@register_strategy
class FullAttention(ContextStrategy):
    """Keys are rotated at their true positions and cached; queries see all earlier keys."""

    name = "full"

    _reserve = 0  # tokens the current prompt + reply will reach (`prepare`)

    def reset(self) -> None:
        self.layers = [KVBuffer(fmt=self.kv) for _ in range(self.cfg.n_layers)]
        for buf in self.layers:
            buf.reserve(self._reserve)
        self._length = 0

    def begin(self, positions: torch.Tensor) -> None:
        self.cos, self.sin = self.rope.cos_sin(positions.to(self.device), self.dtype)
        past, t = self._length, positions.shape[0]
        # A later prefill chunk sees its past unmasked and itself causally: two parts merged
        # into one softmax, so the fused kernel can skip the masked half (one (T, past+T)
        # mask would make it compute every block).
        self.split = t > 1 and past > 0
        self.causal = t > 1 and past == 0
        self._length += t

    def attend(self, layer, q, k, v):
        q = rotate(q, self.cos, self.sin)
        k = rotate(k, self.cos, self.sin)
        keys, values = self.layers[layer].append(k, v)  # (B, Hkv, S, D), held as context.kv
        t = q.shape[2]
        if self.split:
            return merge_attention([attention_lse(q, keys[:, :, :-t], values[:, :, :-t]),
                                    causal_attention_lse(q, keys[:, :, -t:], values[:, :, -t:])])
        if self.causal:
            count(q, causal_pairs(t))
            out = F.scaled_dot_product_attention(q.to(keys.dtype), keys, values, is_causal=True, enable_gqa=True)
            return out.to(q.dtype)
        held = self.layers[layer].held() if t == 1 else None
        if held is not None:  # a decode step reads the reserved buffer whole (attend_all)
            return attend_all(q, *held, n=keys.shape[2])
        return attend_all(q, keys, values)

    def offers_native(self) -> bool:
        return self.kv.name == "bf16" and self.device.type == "cpu"

    def native_caches(self):
        if not self.offers_native():
            return None
        like = torch.empty(1, self.cfg.n_kv_heads, 1, self.cfg.head_dim, dtype=torch.bfloat16)
        for buf in self.layers:
            buf.make_room(1, like, like)
        return [(buf.k, buf.v, buf.size) for buf in self.layers]

    def native_appended(self, t: int) -> None:
        for buf in self.layers:
            buf.size += t
        cfg = self.cfg
        count(torch.empty(1, cfg.n_heads, t, cfg.head_dim, device="meta"), t * self._length)

    def prepare(self, n_tokens: int) -> str | None:
        self._reserve = n_tokens  # the prompt + reply's cache in one allocation
        for buf in self.layers:
            buf.reserve(n_tokens)
        return None

    def truncate(self, n_tokens: int) -> bool:
        for buf in self.layers:
            buf.truncate(n_tokens)
        self._length = min(self._length, n_tokens)
        return True

    def memory_bytes(self) -> int:
        return sum(buf.nbytes() for buf in self.layers)
