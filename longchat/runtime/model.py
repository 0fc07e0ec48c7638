"""Our decoder forward for the RoPE families (Llama, Mistral, Qwen2, Qwen3, Phi-3, SmolLM2).

Reads top-down: weights of a layer, norm, attention, MLP, the whole decoder. Attention itself
is delegated to a context strategy, which gets the pre-RoPE queries and keys.
Projections are fused (qkv, gate+up) because on a CPU a 135M model spends much of a decode
step in per-call overhead; fewer, larger matmuls are measurably faster.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from longchat.runtime.config import ModelConfig
from longchat.runtime.weights import Dense, Embedding, Linear


@dataclass
class LayerWeights:
    """Norms as tensors; projections (with their biases) as `weights.Linear` in some format."""

    input_norm: torch.Tensor        # (C,)
    qkv: Linear                     # ((Hq + 2 Hkv) D, C)
    o: Linear                       # (C, Hq D)
    q_norm: torch.Tensor | None     # (D,) Qwen3
    k_norm: torch.Tensor | None
    post_norm: torch.Tensor         # (C,)
    gate_up: Linear                 # (2 I, C)
    down: Linear                    # (C, I)

    def projections(self) -> tuple[Linear, ...]:
        return self.qkv, self.o, self.gate_up, self.down


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # Computed in fp32 and cast back before the weight, like transformers, so bf16 matches.
    dtype = x.dtype
    x32 = x.float()
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x32.to(dtype)


class Decoder:
    """A decoder-only transformer; `forward` runs token ids through it for one strategy."""

    def __init__(self, cfg: ModelConfig, embed: Embedding | torch.Tensor, layers: list[LayerWeights],
                 final_norm: torch.Tensor, lm_head: Linear | torch.Tensor):
        self.cfg = cfg
        self.dtype = final_norm.dtype     # of the activations, norms and KV cache
        self.device = final_norm.device
        if isinstance(embed, torch.Tensor):
            embed = Embedding(Dense(embed), self.dtype)
        self.embed = embed                # (V, C)
        self.layers = layers
        self.final_norm = final_norm
        # (V, C), the embedding's own table when tied (one copy)
        self.lm_head = Dense(lm_head) if isinstance(lm_head, torch.Tensor) else lm_head
        # What runs a one-token step's layers, when not `run_layers`: the C kernels
        # (`runtime.native.NativeStep`, the default on a CPU) or torch.compile (`runtime.step`).
        self.step = None

    @property
    def weight_format(self) -> str:
        return self.layers[0].qkv.fmt if self.layers else self.lm_head.fmt

    @property
    def weight_bytes(self) -> int:
        """Bytes the weights take in memory (a tied embedding counted once)."""
        held = {id(p): p for w in self.layers for p in w.projections()}
        held[id(self.embed.table)] = self.embed.table
        held[id(self.lm_head)] = self.lm_head
        norms = [w.input_norm for w in self.layers] + [w.post_norm for w in self.layers] + [self.final_norm]
        norms += [n for w in self.layers for n in (w.q_norm, w.k_norm) if n is not None]
        return sum(p.nbytes for p in held.values()) + sum(n.numel() * n.element_size() for n in norms)

    def attention(self, i: int, w: LayerWeights, x: torch.Tensor, strategy) -> torch.Tensor:
        return w.o(self.attend(i, w, w.qkv(x), strategy))

    def attend(self, i: int, w: LayerWeights, qkv: torch.Tensor, strategy) -> torch.Tensor:
        """The projected qkv (B, T, (Hq + 2 Hkv) D) -> the heads' outputs (B, T, Hq D)."""
        cfg = self.cfg
        b, t, _ = qkv.shape
        q, k, v = qkv.split([cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim,
                             cfg.n_kv_heads * cfg.head_dim], dim=-1)
        q = q.view(b, t, cfg.n_heads, cfg.head_dim).transpose(1, 2)     # (B, Hq, T, D)
        k = k.view(b, t, cfg.n_kv_heads, cfg.head_dim).transpose(1, 2)  # (B, Hkv, T, D)
        v = v.view(b, t, cfg.n_kv_heads, cfg.head_dim).transpose(1, 2)  # (B, Hkv, T, D)
        if w.q_norm is not None:
            q = rms_norm(q, w.q_norm, cfg.rms_norm_eps)
            k = rms_norm(k, w.k_norm, cfg.rms_norm_eps)
        out = strategy.attend(i, q, k, v)  # (B, Hq, T, D)
        return out.transpose(1, 2).reshape(b, t, cfg.n_heads * cfg.head_dim)

    def mlp(self, w: LayerWeights, x: torch.Tensor) -> torch.Tensor:
        gate, up = w.gate_up(x).chunk(2, dim=-1)
        return w.down(F.silu(gate) * up)

    @torch.inference_mode()
    def forward(self, input_ids: torch.Tensor, strategy, *, logits: str | int = "last") -> torch.Tensor | None:
        """Run `input_ids` (B, T) as the next T tokens of the strategy's sequence.

        `logits`: "last" -> (B, V) for the final position, "all" -> (B, T, V), an int n ->
        (B, n, V) for the last n positions, "none" -> None (intermediate prefill chunks need no
        vocabulary projection).
        """
        t = input_ids.shape[1]
        positions = torch.arange(strategy.length, strategy.length + t, device=self.device)
        strategy.begin(positions)
        x = self.embed(input_ids)  # (B, T, C)
        eps = self.cfg.rms_norm_eps
        x = self.step(x, strategy) if t == 1 and self.step is not None else self.run_layers(x, strategy)
        if logits == "none":
            return None
        if logits == "last":
            x = x[:, -1]
        elif isinstance(logits, int):
            x = x[:, x.shape[1] - logits:]
        return self.lm_head(rms_norm(x, self.final_norm, eps)).float()

    def run_layers(self, x: torch.Tensor, strategy) -> torch.Tensor:
        """The embedded tokens x (B, T, C) through every layer."""
        eps = self.cfg.rms_norm_eps
        for i, w in enumerate(self.layers):
            x = x + self.attention(i, w, rms_norm(x, w.input_norm, eps), strategy)
            x = x + self.mlp(w, rms_norm(x, w.post_norm, eps))
        return x

    def matmul_flops(self, tokens: int, logit_rows: int) -> int:
        """FLOPs of the weight matmuls for `tokens` tokens, `logit_rows` of them projected to
        the vocabulary: 2 per weight per token (attention itself is counted by the strategy)."""
        w = self.layers[0]
        per_layer = sum(p.numel for p in w.projections())
        return 2 * per_layer * len(self.layers) * tokens + 2 * self.lm_head.numel * logit_rows
