"""The shape of a decoder, read from a transformers config, and the families we can run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from longchat.errors import ModelError

# model_type -> what differs between the RoPE decoder families we implement.
#   qkv_bias: q/k/v projections carry a bias (Qwen2) even when attention_bias is absent.
#   qk_norm:  per-head RMSNorm on queries and keys before RoPE (Qwen3).
#   fused:    checkpoint stores qkv_proj / gate_up_proj already fused (Phi-3).
FAMILIES: dict[str, dict[str, bool]] = {
    "llama": {},
    "mistral": {},
    "qwen2": {"qkv_bias": True},
    "qwen3": {"qk_norm": True},
    "phi3": {"fused": True},
}


@dataclass
class ModelConfig:
    """Everything the forward needs; `hf` keeps the transformers config for RoPE maths."""

    model_type: str
    vocab_size: int
    hidden_size: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    intermediate_size: int
    rms_norm_eps: float
    max_position_embeddings: int
    tie_word_embeddings: bool
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False
    fused: bool = False
    sliding_window: int | None = None
    hf: Any = field(default=None, repr=False)

    @property
    def n_rep(self) -> int:
        """Query heads per key/value head (grouped-query attention)."""
        return self.n_heads // self.n_kv_heads

    @classmethod
    def from_hf(cls, hf) -> "ModelConfig":
        """Read a transformers PretrainedConfig; unknown families fail with the list we support."""
        model_type = getattr(hf, "model_type", None)
        if model_type not in FAMILIES:
            raise ModelError(
                f"model type {model_type!r} is not supported; supported: {', '.join(FAMILIES)}"
            )
        traits = FAMILIES[model_type]
        act = getattr(hf, "hidden_act", "silu")
        if act not in ("silu", "swish"):
            raise ModelError(f"activation {act!r} is not supported (only silu)")
        rope = getattr(hf, "rope_parameters", None) or {}
        if float(rope.get("partial_rotary_factor", getattr(hf, "partial_rotary_factor", 1.0)) or 1.0) != 1.0:
            raise ModelError("partial rotary embeddings are not supported")
        n_heads = hf.num_attention_heads
        attention_bias = bool(getattr(hf, "attention_bias", False))
        return cls(
            model_type=model_type,
            vocab_size=hf.vocab_size,
            hidden_size=hf.hidden_size,
            n_layers=hf.num_hidden_layers,
            n_heads=n_heads,
            n_kv_heads=getattr(hf, "num_key_value_heads", None) or n_heads,
            head_dim=getattr(hf, "head_dim", None) or hf.hidden_size // n_heads,
            intermediate_size=hf.intermediate_size,
            rms_norm_eps=hf.rms_norm_eps,
            max_position_embeddings=hf.max_position_embeddings,
            tie_word_embeddings=bool(getattr(hf, "tie_word_embeddings", False)),
            qkv_bias=attention_bias or traits.get("qkv_bias", False),
            o_bias=attention_bias,
            mlp_bias=bool(getattr(hf, "mlp_bias", False)),
            qk_norm=traits.get("qk_norm", False),
            fused=traits.get("fused", False),
            sliding_window=getattr(hf, "sliding_window", None)
            if getattr(hf, "use_sliding_window", True)
            else None,
            hf=hf,
        )
