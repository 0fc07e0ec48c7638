"""`infllm` (InfLLM): sinks + local window + retrieved memory blocks, one softmax over all.

Per layer the sequence splits into: the first `n_init` tokens (kept forever), memory blocks
of `block_size` evicted tokens, a remainder not yet a full block, and the last `n_local`
tokens. Each forward:
  * local part: the window plus the new chunk, causal, normal RoPE at window indices;
  * global part: init tokens + the `topk` blocks whose representative keys best match the
    chunk's mean query + the remainder. Global keys are unrotated and the query is rotated at
    position `n_local`, so every memory token sits at one fixed distance (the trained range
    is never exceeded, however long the input).
Both parts share one softmax (`two_part_attention`).
While nothing has been evicted this is exactly full attention.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from longchat.context.attention import two_part_attention
from longchat.context.base import ContextStrategy, StrategyParams, register_strategy
from longchat.context.blocks import BlockStore
from longchat.runtime.rope import rotate
from longchat.settings import require


@dataclass
class InfLLMParams(StrategyParams):
    n_init: int = 128          # initial tokens (attention sinks), always attended
    n_local: int = 2048        # local window; the bundled model reads ~2-4k tokens reliably
    block_size: int = 128      # tokens per memory block
    topk: int = 16             # blocks retrieved per chunk and per decoded token
    repr_topk: int = 4         # representative keys per block, used for retrieval
    max_cached_block: int = 32 # blocks a GPU cache may hold; must be >= topk
    disk: bool = False         # keep blocks in temp files instead of RAM (bounded host memory)
    disk_dir: str = ""         # where the disk tier writes ("" = the system temp dir)

    def validate(self, where: str) -> None:
        require(self.n_init >= 0, where, "n_init", "an integer >= 0")
        require(self.n_local >= 1, where, "n_local", "an integer >= 1")
        require(self.block_size >= 1, where, "block_size", "an integer >= 1")
        require(self.topk >= 1, where, "topk", "an integer >= 1")
        require(1 <= self.repr_topk <= self.block_size, where, "repr_topk", f"an integer in 1..block_size ({self.block_size})")
        require(self.max_cached_block >= self.topk, where, "topk",
                f"<= max_cached_block ({self.max_cached_block}): retrieved blocks must fit the block cache")

    def check_context(self, context, where: str) -> None:
        require(context.prefill_chunk <= self.n_local, where, "n_local",
                f">= context.prefill_chunk ({context.prefill_chunk}): a chunk must fit the local window")


@register_strategy
class InfLLM(ContextStrategy):
    name = "infllm"
    Params = InfLLMParams

    def reset(self) -> None:
        p, c = self.params, self.cfg
        disk = (p.disk_dir or tempfile.gettempdir()) if p.disk else None
        L = c.n_layers
        self.local_k = [None] * L    # (B, Hkv, W, D) unrotated, W <= n_local
        self.local_v = [None] * L
        self.local_score = [None] * L  # (Hkv, W): how much local queries attended to each key
        self.init_k = [None] * L     # (B, Hkv, <= n_init, D) unrotated
        self.init_v = [None] * L
        self.rem_k = [None] * L      # (B, Hkv, < block_size, D): evicted, not yet a block
        self.rem_v = [None] * L
        self.rem_score = [None] * L
        self.stores = [BlockStore(c.n_kv_heads, p.block_size, c.head_dim, p.repr_topk, disk_dir=disk)
                       for _ in range(L)]
        self._length = 0
        self.window = 0              # tokens in the local window (same for every layer)
        self.evicted = 0             # tokens that have left the window so far
        self.last_retrieved: list[list[int]] = [[] for _ in range(L)]

    @property
    def length(self) -> int:
        return self._length

    def begin(self, positions: torch.Tensor) -> None:
        p = self.params
        t = positions.shape[0]
        if t > p.n_local:
            raise ValueError(f"chunk of {t} tokens is larger than infllm n_local={p.n_local}")
        w = self.window
        idx = torch.arange(w + t, device=self.device)
        self.cos, self.sin = self.rope.cos_sin(idx, self.dtype)  # local: index in window + chunk
        fixed = torch.tensor([p.n_local], device=self.device)
        self.cos_g, self.sin_g = self.rope.cos_sin(fixed, self.dtype)  # global: one fixed position
        self.local_mask = idx[None, :] <= idx[w:, None]  # (T, W + T) causal
        # Eviction plan for this forward: what leaves the window, and how much of it is init.
        over = max(0, w + t - p.n_local)
        self.to_init = min(over, max(0, p.n_init - self.evicted))
        self.over = over
        self.evicted += over
        self.window = w + t - over
        self._length += t

    def _global_kv(self, layer: int, q_g: torch.Tensor):
        """Init tokens + retrieved blocks + remainder, unrotated: K, V (B, Hkv, G, D) or None."""
        parts_k, parts_v = [], []
        if self.init_k[layer] is not None:
            parts_k.append(self.init_k[layer])
            parts_v.append(self.init_v[layer])
        store = self.stores[layer]
        if store.count:
            ids = self.retrieve_blocks(layer, q_g)
            k, v = store.gather(ids, self.device, self.dtype)
            parts_k.append(k[None])
            parts_v.append(v[None])
        if self.rem_k[layer] is not None:
            parts_k.append(self.rem_k[layer])
            parts_v.append(self.rem_v[layer])
        if not parts_k:
            return None, None
        return torch.cat(parts_k, dim=2), torch.cat(parts_v, dim=2)

    def retrieve_blocks(self, layer: int, q_g: torch.Tensor) -> list[int]:
        """Top-k blocks by the chunk's mean global query against representative keys."""
        c = self.cfg
        q_mean = q_g[0].mean(dim=1)  # (Hq, D)
        q_mean = q_mean.view(c.n_kv_heads, c.n_rep, c.head_dim).sum(dim=1)  # (Hkv, D)
        reprs = self.stores[layer].representatives().to(q_mean)  # (N, Hkv, r, D)
        scores = torch.einsum("hd,nhrd->n", q_mean, reprs)
        k = min(self.params.topk, scores.shape[0])
        ids = sorted(torch.topk(scores, k).indices.tolist())
        self.last_retrieved[layer] = ids
        return ids

    def attend(self, layer, q, k, v):
        t = q.shape[2]
        if self.local_k[layer] is not None:
            lk = torch.cat([self.local_k[layer], k], dim=2)
            lv = torch.cat([self.local_v[layer], v], dim=2)
        else:
            lk, lv = k, v
        q_l = rotate(q, self.cos[-t:], self.sin[-t:])
        lk_rot = rotate(lk, self.cos, self.sin)
        q_g = rotate(q, self.cos_g, self.sin_g)
        gk, gv = self._global_kv(layer, q_g)
        if gk is None:
            out = F.scaled_dot_product_attention(q_l, lk_rot, lv, attn_mask=self.local_mask, enable_gqa=True)
        else:
            out = two_part_attention(q_g, gk, gv, self.local_mask.new_ones(t, gk.shape[2]),
                                     q_l, lk_rot, lv, self.local_mask)
        self._update_window(layer, q, lk, lv)
        return out

    def _update_window(self, layer: int, q: torch.Tensor, lk: torch.Tensor, lv: torch.Tensor) -> None:
        """Score the window's keys by this chunk's queries, then evict what no longer fits."""
        c, p = self.cfg, self.params
        q_mean = q[0].mean(dim=1).view(c.n_kv_heads, c.n_rep, c.head_dim).sum(dim=1)  # (Hkv, D)
        score = torch.einsum("hd,htd->ht", q_mean, lk[0]).float()  # (Hkv, W+T)
        prev = self.local_score[layer]
        if prev is not None:
            score[:, : prev.shape[1]] += prev
        over = self.over
        if over:
            n_init = self.to_init
            if n_init:
                self._append_init(layer, lk[:, :, :n_init], lv[:, :, :n_init])
            if over > n_init:
                self._append_remainder(layer, lk[:, :, n_init:over], lv[:, :, n_init:over], score[:, n_init:over])
        self.local_k[layer] = lk[:, :, over:]
        self.local_v[layer] = lv[:, :, over:]
        self.local_score[layer] = score[:, over:]

    def _append_init(self, layer, k, v):
        if self.init_k[layer] is None:
            self.init_k[layer], self.init_v[layer] = k, v
        else:
            self.init_k[layer] = torch.cat([self.init_k[layer], k], dim=2)
            self.init_v[layer] = torch.cat([self.init_v[layer], v], dim=2)

    def _append_remainder(self, layer, k, v, score):
        bs = self.params.block_size
        if self.rem_k[layer] is not None:
            k = torch.cat([self.rem_k[layer], k], dim=2)
            v = torch.cat([self.rem_v[layer], v], dim=2)
            score = torch.cat([self.rem_score[layer], score], dim=1)
        full = k.shape[2] // bs
        for b in range(full):
            sl = slice(b * bs, (b + 1) * bs)
            block_k, block_v = k[0, :, sl], v[0, :, sl]  # (Hkv, bs, D)
            top = torch.topk(score[:, sl], self.params.repr_topk, dim=1).indices  # (Hkv, r)
            reprs = torch.gather(block_k, 1, top[..., None].expand(-1, -1, block_k.shape[-1]))
            self.stores[layer].append(block_k, block_v, reprs)
        rest = full * bs
        if rest < k.shape[2]:
            self.rem_k[layer], self.rem_v[layer], self.rem_score[layer] = k[:, :, rest:], v[:, :, rest:], score[:, rest:]
        else:
            self.rem_k[layer] = self.rem_v[layer] = self.rem_score[layer] = None

    def memory_bytes(self) -> int:
        tensors = self.local_k + self.local_v + self.init_k + self.init_v + self.rem_k + self.rem_v
        ram = sum(t.numel() * t.element_size() for t in tensors if t is not None)
        return ram + sum(s.nbytes_ram() for s in self.stores)
