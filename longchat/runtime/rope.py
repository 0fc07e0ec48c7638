"""Rotary position embeddings: frequencies from transformers' own rope utilities, rotation here.

Strategies need to rotate queries and keys at positions of their choosing (InfLLM puts memory
at one fixed distance, StreamingLLM re-indexes inside its cache), so rotation is a plain
function of (tensor, positions) instead of something baked into the attention module.
"""

from __future__ import annotations

import torch


class Rope:
    """inv_freq and the attention scaling for one model; `cos_sin(positions)` builds tables."""

    def __init__(self, hf_config, device: torch.device | str = "cpu"):
        params = getattr(hf_config, "rope_parameters", None) or {}
        self.rope_type = params.get("rope_type", "default")
        self._init_fn = None
        if self.rope_type != "default":
            # Reuse transformers' initialisers so linear / dynamic / yarn / llama3 numerics match it.
            from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

            from longchat.runtime.hf_folder import as_transformers

            hf_config = as_transformers(hf_config)
            self._init_fn = ROPE_INIT_FUNCTIONS[self.rope_type]
        self.hf_config = hf_config
        self.max_position_embeddings = hf_config.max_position_embeddings
        if self.rope_type == "default":
            head_dim = getattr(hf_config, "head_dim", None) or (
                hf_config.hidden_size // hf_config.num_attention_heads
            )
            base = params.get("rope_theta", getattr(hf_config, "rope_theta", 10000.0))
            inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim))
            self.attention_scaling = 1.0
        else:
            inv_freq, self.attention_scaling = self._init_fn(hf_config, "cpu")
        self.original_inv_freq = inv_freq.to(device)
        self.inv_freq = self.original_inv_freq
        self._dynamic_len = self.max_position_embeddings

    def _update_dynamic(self, max_pos: int) -> None:
        # Dynamic NTK grows the base once the sequence passes the trained length and goes back
        # to the original frequencies below it, exactly like transformers' dynamic_rope_update.
        seq_len = max_pos + 1
        if seq_len > self._dynamic_len:
            inv_freq, self.attention_scaling = self._init_fn(self.hf_config, "cpu", seq_len=seq_len)
            self.inv_freq = inv_freq.to(self.original_inv_freq.device)
            self._dynamic_len = seq_len
        elif seq_len < self.max_position_embeddings < self._dynamic_len:
            self.inv_freq = self.original_inv_freq
            self._dynamic_len = self.max_position_embeddings

    def cos_sin(self, positions: torch.Tensor, dtype: torch.dtype, *,
                exact: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Tables for `positions` (T,) -> cos, sin each (T, D), in `dtype`.

        `exact`: compute the angles in float64. fp32 angles (what transformers does, so the
        default matches it) lose ~0.06 rad at position 1M; strategies that rotate keys at
        absolute positions far past the trained length need the exact ones.
        """
        if self.rope_type == "dynamic":
            self._update_dynamic(int(positions.max()))
        work = torch.float64 if exact else torch.float
        freqs = positions.to(work)[:, None] * self.inv_freq.to(work)[None, :]  # (T, D/2)
        emb = torch.cat((freqs, freqs), dim=-1)  # (T, D)
        return (emb.cos() * self.attention_scaling).to(dtype), (emb.sin() * self.attention_scaling).to(dtype)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Apply RoPE to x (B, H, T, D) with tables (T, D) (or (B, 1, T, D))."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin
