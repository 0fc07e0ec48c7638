"""Context strategies by name: the built-ins, then those plugins add (`longchat_strategies`)."""

from __future__ import annotations

from longchat import plugins
from longchat.context import auto, full, infllm, lm_infinite, rope_scaled, self_extend, streaming
from longchat.context.base import STRATEGIES, ContextStrategy
from longchat.errors import ConfigError

BUILTIN: list[type[ContextStrategy]] = [full.FullAttention, auto.Auto, infllm.InfLLM, lm_infinite.LMInfinite,
                                        self_extend.SelfExtend, streaming.StreamingLLM, rope_scaled.RopeScaled]

_seen_plugins = -1
_from_plugins: set[str] = set()


def strategies() -> dict[str, type[ContextStrategy]]:
    """name -> class: the built-ins, those registered in this process, then the plugins'
    (read again whenever the set of plugins changes)."""
    global _seen_plugins
    if _seen_plugins != plugins.generation():
        _seen_plugins = plugins.generation()
        for name in _from_plugins:  # a plugin that went away takes its strategies with it
            STRATEGIES.pop(name, None)
        _from_plugins.clear()
        found = plugins.gather("longchat_strategies", [*BUILTIN, *STRATEGIES.values()], lambda c: c.name,
                               lambda c: isinstance(c, type) and issubclass(c, ContextStrategy)
                               and bool(getattr(c, "name", None)), "named ContextStrategy")
        _from_plugins.update(name for name in found if name not in STRATEGIES)
        STRATEGIES.update(found)
    return STRATEGIES


def strategy_class(name: str) -> type[ContextStrategy]:
    """Look a strategy up; an unknown name fails with the valid ones."""
    try:
        return strategies()[name]
    except KeyError:
        raise ConfigError(f"unknown strategy {name!r}; valid: {', '.join(sorted(strategies()))}") from None
