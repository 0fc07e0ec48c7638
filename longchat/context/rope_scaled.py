"""`rope-scaled`: full attention with zero-shot RoPE scaling (linear, dynamic NTK, YaRN, llama3).

Frequencies come from transformers' own rope initialisers applied to a copy of the model
config with `rope_parameters` replaced, so the numerics match a checkpoint shipped that way.
Checkpoints whose config already carries scaling get it from `full` without this strategy.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from longchat.context.base import register_strategy
from longchat.context.full import FullAttention
from longchat.context.base import StrategyParams
from longchat.runtime.rope import Rope
from longchat.settings import require

ROPE_TYPES = ("linear", "dynamic", "yarn")


@dataclass
class RopeScaledParams(StrategyParams):
    rope_type: str = "linear"   # linear | dynamic (NTK) | yarn
    factor: float = 4.0         # context extension factor
    original_max_position_embeddings: int = 0  # trained length; 0 = the model's max_position_embeddings

    def validate(self, where: str) -> None:
        require(self.rope_type in ROPE_TYPES, where, "rope_type", f"one of: {', '.join(ROPE_TYPES)}")
        require(self.factor >= 1.0, where, "factor", "a number >= 1")
        require(self.original_max_position_embeddings >= 0, where, "original_max_position_embeddings",
                "an integer >= 0 (0 = the model's)")


def scaled_config(hf_config, params: RopeScaledParams):
    """A copy of the transformers config whose rope_parameters ask for `params`' scaling."""
    cfg = copy.deepcopy(hf_config)
    base = dict(getattr(cfg, "rope_parameters", None) or {})
    trained = params.original_max_position_embeddings or cfg.max_position_embeddings
    cfg.rope_parameters = {"rope_theta": base.get("rope_theta", getattr(cfg, "rope_theta", 10000.0)),
                           "rope_type": params.rope_type, "factor": params.factor,
                           "original_max_position_embeddings": trained}
    if params.rope_type != "dynamic":
        cfg.max_position_embeddings = int(trained * params.factor)
    else:
        cfg.max_position_embeddings = trained
    return cfg


@register_strategy
class RopeScaled(FullAttention):
    name = "rope-scaled"
    Params = RopeScaledParams

    def __init__(self, cfg, rope, params=None, **kw):
        super().__init__(cfg, rope, params, **kw)
        self.rope = Rope(scaled_config(cfg.hf, self.params), self.device)
