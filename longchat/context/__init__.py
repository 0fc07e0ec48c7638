"""Context strategies: how attention reaches past the model's trained window."""

from longchat.context.base import (  # noqa: F401
    STRATEGIES,
    ContextStrategy,
    StrategyParams,
    parse_params,
    register_strategy,
    strategy_class,
)
