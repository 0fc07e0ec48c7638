"""Context strategy profiles: TOML files shipped in `profiles/` or kept in the user config dir.

A profile names a strategy and its parameters, the window, generation defaults, and the
compression and memory sections later stages read. Every key is typed and validated on load.

A user's profile (in the config dir, or a .toml path) lists only what it changes: it extends a
base profile, `extends = "NAME"` when it names one (see `base_of` for the default), so a file
of one line (`[generation]` `temperature = 0.7`) is `auto` with that temperature.
"""

from __future__ import annotations

import tomllib
from difflib import get_close_matches
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from longchat.context.base import StrategyParams, parse_params
from longchat.context.registry import strategy_class
from longchat.errors import ConfigError
from longchat.paths import config_dir
from longchat.runtime.generate import Sampling
from longchat.settings import REMOVED, build, parse_assignment, require


@dataclass
class ContextSettings:
    """[context]: which strategy, and how much the model may attend to at once."""

    strategy: str = "full"
    window: int = 0            # tokens of prompt + reply the strategy accepts; 0 = the model's trained length
    effective_window: int = 0  # tokens the model reads reliably (summary chunk size); 0 = window
    prefill_chunk: int = 512   # tokens per prefill forward: bounds activation memory
    final_chunk: int = 0       # read the prompt's last N tokens as a forward of their own; 0 = off

    def validate(self, where: str) -> None:
        require(self.window >= 0, where, "window", "an integer >= 0 (0 = the model's trained length)")
        require(self.effective_window >= 0, where, "effective_window", "an integer >= 0 (0 = window)")
        require(self.prefill_chunk >= 1, where, "prefill_chunk", "an integer >= 1")
        require(0 <= self.final_chunk <= self.prefill_chunk, where, "final_chunk",
                f"an integer in 0..prefill_chunk ({self.prefill_chunk})")


@dataclass
class CompressSettings:
    """[compress]: prompt compression before the model reads the input (see longchat/compress)."""

    method: str = "none"         # none | llmlingua | longllmlingua (question-aware)
    rate: float = 0.5            # share of the context's tokens to keep
    target_tokens: int = 0       # keep this many context tokens instead of `rate` (0 = use rate)
    model: str = "default"       # the compressor: the bundled small model unless set
    passage_tokens: int = 256    # documents are ranked in passages of at most this many tokens

    def validate(self, where: str) -> None:
        from longchat.compress import methods

        known = ["none", *methods()]
        require(self.method in known, where, "method", f"one of: {', '.join(known)}")
        require(0.0 < self.rate <= 1.0, where, "rate", "a number in (0, 1]")
        require(self.target_tokens >= 0, where, "target_tokens", "an integer >= 0 (0 = use rate)")
        require(self.passage_tokens >= 16, where, "passage_tokens", "an integer >= 16")
        require(bool(self.model), where, "model", "a model spec (\"default\" = the bundled model)")

    @property
    def on(self) -> bool:
        return self.method != "none"


@dataclass
class SessionSettings:
    """[sessions]: how `chat --session` keeps a long conversation inside the window (MemGPT-style)."""

    paging: str = "system"     # system: summaries + searched memories, done by longchat for any model;
                               # functions: that, plus memory functions the model may call;
                               # truncate: a baseline that just drops the oldest messages
    budget: int = 0            # tokens of prompt + reply per turn; 0 = the profile's effective window
    pressure: float = 0.75     # share of the budget that starts the memory-pressure step
    keep_last: int = 4         # messages that never leave the window when older ones are summarised
    relevant: int = 3          # searched memories placed before each message
    semantic: bool = True      # search by meaning too (static word vectors, text/embed.py), fused with full-text
    max_steps: int = 4         # functions: calls chained by request_heartbeat per user message

    def validate(self, where: str) -> None:
        require(self.paging in ("system", "functions", "truncate"), where, "paging",
                "one of: system, functions, truncate")
        require(self.budget == 0 or self.budget >= 256, where, "budget", "0 or an integer >= 256")
        require(0.1 <= self.pressure < 1.0, where, "pressure", "a number in [0.1, 1)")
        require(self.keep_last >= 1, where, "keep_last", "an integer >= 1")
        require(0 <= self.relevant <= 20, where, "relevant", "an integer in 0..20")
        require(1 <= self.max_steps <= 20, where, "max_steps", "an integer in 1..20")


@dataclass
class RemoteSettings:
    """[remote]: talking to an OpenAI-compatible engine (`--model openai:URL`, docs/scaling.md)."""

    timeout: float = 600.0     # seconds to wait for the engine's next bytes before giving up
    retries: int = 3           # retries of a 429 / 5xx / dropped connection, with backoff

    def validate(self, where: str) -> None:
        require(self.timeout > 0, where, "timeout", "a number of seconds > 0")
        require(0 <= self.retries <= 20, where, "retries", "an integer in 0..20")


@dataclass
class RuntimeSettings:
    """[runtime]: how the local model is held (`--set model.weights=int8` is the short form)."""

    # auto: the model's dtype (fp32 on a CPU, bf16 on a GPU); fp32, bf16, fp16; int8 or int4:
    # quantised, decoded through torch's weight-only kernels (runtime/weights.py, README).
    weights: str = "auto"
    # How `full` attention holds its KV cache (context/kv.py): auto (bf16 on a CPU with bf16
    # matmuls, else the model's dtype), fp32, bf16, fp16, or int8 (a quarter of fp32, for the
    # longest inputs).
    kv: str = "auto"
    # on: one-token decode steps run through torch.compile (runtime/step.py), compiled at load
    # (once per machine, then cached); off: eager. Measured no faster on a 2-core CPU (docs/decode.md).
    compile: str = "off"

    def validate(self, where: str) -> None:
        from longchat.runtime.step import MODES
        from longchat.context.kv import KV_FORMATS
        from longchat.runtime.weights import FORMATS

        require(self.weights in FORMATS, where, "weights", " | ".join(FORMATS))
        require(self.kv in KV_FORMATS, where, "kv", " | ".join(KV_FORMATS))
        require(self.compile in MODES, where, "compile", " | ".join(MODES))


@dataclass
class Profile:
    name: str
    source: str
    description: str = ""
    model: str | None = None
    context: ContextSettings = field(default_factory=ContextSettings)
    strategy: StrategyParams = field(default_factory=StrategyParams)
    generation: Sampling = field(default_factory=Sampling)
    compress: CompressSettings = field(default_factory=CompressSettings)
    sessions: SessionSettings = field(default_factory=SessionSettings)
    remote: RemoteSettings = field(default_factory=RemoteSettings)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)



SECTIONS = {"context": ContextSettings, "generation": Sampling, "compress": CompressSettings,
            "sessions": SessionSettings, "remote": RemoteSettings, "runtime": RuntimeSettings}
# Sections renamed since: an old profile gets a message naming the new one.
RENAMED = {"memory": "sessions"}


def _renamed(section: str, where: str) -> ConfigError:
    return ConfigError(f"{where}: the [{section}] section is now [{RENAMED[section]}] (how `chat --session` "
                       f"keeps a long conversation in the window); rename it")
TOP_LEVEL = {"description", "model", "strategy", "extends", *SECTIONS}
DEFAULT_BASE = "auto"  # what a user's profile extends unless it says otherwise (`base_of`)


def _shipped() -> dict[str, Path]:
    folder = resources.files("longchat.profiles")
    return {Path(p.name).stem: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".toml")}


def _user() -> dict[str, Path]:
    folder = config_dir() / "profiles"
    return {p.stem: p for p in sorted(folder.glob("*.toml"))} if folder.is_dir() else {}


def _from_plugins() -> dict[str, Path]:
    from longchat import plugins

    return {Path(str(p)).stem: Path(str(p)) for name, p in plugins.collect("longchat_profiles")}


def available_profiles() -> dict[str, Path]:
    """name -> file; plugin profiles add to the shipped ones, user profiles shadow both."""
    return {**_from_plugins(), **_shipped(), **_user()}


def find_profile(spec: str) -> Path:
    """A name (`infllm`) or a path to a .toml file."""
    if spec.endswith(".toml") or "/" in spec:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise ConfigError(f"no such profile file: '{spec}'")
        return path
    profiles = available_profiles()
    if spec not in profiles:
        raise ConfigError(f"unknown profile {spec!r}; available: {', '.join(sorted(profiles))}")
    return profiles[spec]


def load_profile(spec: str = "full", overrides: list[str] = ()) -> Profile:
    """Read (over its base, `base_of`), merge `--set section.key=value` overrides, and validate
    a profile. A bad value names the file it is in, or the `--set` that brought it."""
    path = find_profile(spec)
    where = str(path)
    data = _read_extended(path)
    strategy_name = data.get("context", {}).get("strategy", ContextSettings.strategy)
    # `--set infllm.topk=8` is the same as `strategy.topk=8` under infllm, and under auto, which runs it.
    own = {strategy_name, *_runs(strategy_name)}
    steps: list[tuple[str, dict]] = []  # (the --set, the data with it and those before it)
    merged = data
    for text in overrides:
        (section, key), value = parse_assignment(text)
        if (section, key) in (("model", "weights"), ("model", "kv"), ("model", "compile")):  # short forms the README uses
            section = "runtime"
        if section in own:
            section = "strategy"
        if section in RENAMED:
            raise _renamed(section, f"--set {text!r}")
        if section not in SECTIONS and section != "strategy":
            raise ConfigError(f"--set {text!r}: unknown section {section!r}; "
                              f"{_suggest(section, [*SECTIONS, 'strategy', *own], 'section')}")
        merged = {**merged, section: {**merged.get(section, {}), key: value}}
        steps.append((text, merged))
    try:
        return profile_from_dict(merged, name=path.stem, where=where)
    except ConfigError:
        if not steps:
            raise
        # Blame the file if it is bad on its own, else the first --set that makes it bad.
        profile_from_dict(data, name=path.stem, where=where)
        for text, upto in steps:
            profile_from_dict(upto, name=path.stem, where=f"--set {text!r}")
        raise


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"cannot read profile {path}: {e.strerror}") from None


def _complete() -> dict[str, Path]:
    """Profiles written whole (shipped, or from plugins): read as they are, over the defaults."""
    return {**_from_plugins(), **_shipped()}


def base_of(path: Path, data: dict[str, Any]) -> str | None:
    """The profile a file extends: the one its `extends` names; for a user's profile without
    one, the shipped profile it shadows (a user's `infllm.toml`), else the shipped profile named
    like the strategy it sets (a strategy brings its own window), else `auto`. Shipped and plugin
    profiles extend nothing unless they say so."""
    named = data.get("extends")
    if named is not None:
        require(isinstance(named, str) and bool(named), str(path), "extends", "a profile name (e.g. \"infllm\")")
        return named
    complete = _complete()
    if path in complete.values():
        return None
    context = data.get("context")
    strategy = context.get("strategy") if isinstance(context, dict) else None
    if path.stem in complete and strategy in (None, _strategy_of(complete[path.stem])):
        return path.stem
    if strategy is None:
        return DEFAULT_BASE
    return strategy if strategy in complete and _strategy_of(complete[strategy]) == strategy else None


def _strategy_of(path: Path) -> str:
    return _read(path).get("context", {}).get("strategy", ContextSettings.strategy)


def _read_extended(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The file's tables over its base's (key by key); the base's [strategy] only where the
    strategy is the same (another strategy's settings would not fit it)."""
    data = _read(path)
    base = base_of(path, data)
    data.pop("extends", None)
    if base is None:
        return data
    if path in seen:
        raise ConfigError(f"{path}: `extends` goes round in a circle: "
                          f"{' -> '.join(p.stem for p in (*seen, path))}")
    profiles = available_profiles()
    if base not in profiles:
        raise ConfigError(f"{path}: extends unknown profile {base!r}; {_suggest(base, profiles, 'profile')}")
    base_path = profiles[base]
    if base_path == path:  # a user's auto.toml extending auto: the shipped one underneath
        base_path = _complete().get(base)
        if base_path is None:
            raise ConfigError(f"{path}: extends itself")
    merged = _read_extended(base_path, (*seen, path))
    if "description" not in data:
        data["description"] = f"{base}, with the changes in {path.name}"
    context = data.get("context")
    named = context.get("strategy") if isinstance(context, dict) else None
    if named is not None and named != merged.get("context", {}).get("strategy", ContextSettings.strategy):
        merged.pop("strategy", None)
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _suggest(word: str, allowed, what: str = "key") -> str:
    """'did you mean ...?' for a near miss, else the allowed names."""
    allowed = sorted(allowed)
    close = get_close_matches(word, allowed, n=3, cutoff=0.6)
    if close:
        return "did you mean " + " or ".join(repr(c) for c in close) + "?"
    return f"allowed {what}s: {', '.join(allowed)}" if allowed else f"no {what}s are allowed here"


def _runs(strategy_name: str) -> tuple[str, ...]:
    try:
        return strategy_class(strategy_name).runs
    except ConfigError:
        return ()  # an unknown strategy is reported, with the valid names, when the profile is built


def profile_from_dict(data: dict[str, Any], *, name: str, where: str) -> Profile:
    for key in data:
        if key in RENAMED:
            raise _renamed(key, where)
        if key not in TOP_LEVEL:
            raise ConfigError(f"{where}: unknown key {key!r}; {_top_level_hint(key)}")
    sections = {key: build(cls, data.get(key, {}), f"{where} [{key}]") for key, cls in SECTIONS.items()}
    cls = strategy_class(sections["context"].strategy)
    _check_settings_taken(cls, data.get("strategy", {}), where)
    strategy = parse_params(cls, data.get("strategy", {}), where)
    strategy.check_context(sections["context"], f"{where} [strategy] ({sections['context'].strategy})")
    description, model = data.get("description", ""), data.get("model")
    require(isinstance(description, str), where, "description", "a string")
    require(model is None or isinstance(model, str), where, "model", "a model spec string")
    return Profile(name=name, source=where, description=description, model=model,
                   strategy=strategy, **sections)


def _top_level_hint(key: str) -> str:
    """A setting written outside its section (`temperature = 0.7` on the first line) is named
    with the section it belongs in; other unknown keys get a near miss or the allowed keys."""
    import dataclasses

    homes = [name for name, cls in SECTIONS.items() if key in {f.name for f in dataclasses.fields(cls)}]
    if homes:
        return f"it belongs in a section: put it under [{homes[0]}]"
    return _suggest(key, TOP_LEVEL)


def _check_settings_taken(cls, values: dict, where: str) -> None:
    """A strategy without settings given one: name the strategies that take a key like it."""
    import dataclasses

    from longchat.context.registry import strategies

    key = next(iter(values), None) if isinstance(values, dict) else None
    if key is None or key in REMOVED or dataclasses.fields(cls.Params):
        return
    takers = sorted(name for name, other in strategies().items()
                    if get_close_matches(key, [f.name for f in dataclasses.fields(other.Params)], n=1, cutoff=0.6))
    hint = f"; a key like it is a setting of: {', '.join(takers)} ([context] strategy)" if takers else ""
    raise ConfigError(f"{where} [strategy] ({cls.name}): unknown key {key!r}: the {cls.name} strategy takes "
                      f"no settings{hint}")
