"""Typed settings: build a dataclass from a TOML table, rejecting unknown keys and bad types."""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from typing import Any

from longchat.errors import ConfigError

# A window this long means "any length": the strategies whose attention is bounded (positions
# stay inside the trained range) say it instead of a number.
ANY_LENGTH = 10_000_000

# Settings that were removed, by their key as a profile writes it: what a profile (or --set)
# still naming one is told, after "'<key>' was ". Met only where the key is unknown.
_ISSUE_40 = "removed in issue 40 (measured, not kept: docs/settings.md)"
_FIXED = "fixed at the method's published value in issue 40 (docs/settings.md)"
REMOVED: dict[str, str] = {
    **{key: _ISSUE_40 for key in ("meaning", "quote", "contiguity", "ask_window", "segment", "surprise_gamma",
                                  "surprise_window", "min_block")},
    **{key: _FIXED for key in ("segment_tokens", "coarse_slack", "dynamic_ratio", "reorder")},
    "full_up_to": "removed in issue 40: `auto` reads with full attention up to context.effective_window; "
                  "set that instead",
    **{key: "removed in issue 40: kept as behaviour, not a setting (docs/settings.md)"
       for key in ("semantic_floor", "hide_unsupported", "passages_cover", "passages_floor", "passages_boost",
                   "vote_from", "decode_hold", "focus", "pinned_boost", "rerank_margin")},
    **{key: "removed in issue 40 (off, sessions lost at most one fact: docs/settings.md)"
       for key in ("copy_guard", "copy_boost")},
    "score_dtype": "removed in issue 40: representative keys are scored in float16 on a GPU and in bfloat16 "
                   "on a CPU where that is >= 1.5x faster, else float32 (docs/settings.md)",
}


def _allowed_types(cls, name: str) -> tuple[type, ...]:
    hint = typing.get_type_hints(cls)[name]
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return tuple(a for a in args)
    return (hint,)


_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false", type(None): "none"}


def _type_name(types_: tuple[type, ...]) -> str:
    return " or ".join(_TYPE_WORDS.get(t, t.__name__) for t in types_)


def unknown_key(key: str, known, where: str) -> ConfigError:
    """The error for a key a table does not take: a near miss ('did you mean'), else the keys
    it does take."""
    from difflib import get_close_matches

    known = sorted(known)
    close = get_close_matches(key, known, n=3, cutoff=0.6)
    if close:
        hint = "did you mean " + " or ".join(repr(c) for c in close) + "?"
    else:
        hint = f"allowed keys: {', '.join(known)}" if known else "this table takes no keys"
    return ConfigError(f"{where}: unknown key {key!r}; {hint}")


def stored(default):
    """A strategy setting that changes what a memory stores (its blocks' keys and values): part
    of the memory's key (`memory.encode.memory_key`), so a memory is used only where it is equal."""
    return dataclasses.field(default=default, metadata={"memory_key": True})


def read_time(default):
    """A strategy setting that changes only how blocks are held or read at question time (or
    which strategy reads): memories and ask-cache entries stay valid across it."""
    return dataclasses.field(default=default, metadata={"memory_key": False})


def build(cls, values: dict[str, Any], where: str):
    """cls(**values) with every key and type checked; errors name `where`, the key and what fits."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a table, got {values!r}")
    known = {f.name for f in dataclasses.fields(cls)}
    for key, value in values.items():
        if key not in known and key in REMOVED:
            raise ConfigError(f"{where}: {key!r} was {REMOVED[key]}; delete it from the profile")
        if key not in known:
            raise unknown_key(key, known, where)
        allowed = _allowed_types(cls, key)
        if float in allowed and isinstance(value, int) and not isinstance(value, bool):
            values = {**values, key: float(value)}
        elif not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise ConfigError(f"{where}: {key} must be {_type_name(allowed)}, got {value!r}")
    obj = cls(**values)
    check = getattr(obj, "validate", None)
    if check:
        check(where)
    return obj


def parse_assignment(text: str) -> tuple[list[str], Any]:
    """`section.key=value` -> (["section", "key"], value); the value is read as TOML, else a string."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. generation.temperature=0.7")
    key, raw = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    path = [p for p in key.strip().split(".") if p]
    if len(path) != 2:
        raise ConfigError(f"--set {text!r}: the key must be SECTION.KEY, e.g. generation.max_new_tokens")
    return path, value


def require(condition: bool, where: str, key: str, allowed: str) -> None:
    """Raise a ConfigError naming the key and what is allowed unless `condition` holds."""
    if not condition:
        raise ConfigError(f"{where}: {key} must be {allowed}")
