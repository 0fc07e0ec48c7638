"""Context strategies: how attention reaches past the model's trained window."""

from longchat.context.base import STRATEGIES, ContextStrategy, StrategyParams, parse_params, register_strategy  # noqa: F401
from longchat.context.registry import strategies, strategy_class  # noqa: F401
