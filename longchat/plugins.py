"""Plugins: one small set of pluggy hooks through which installed packages add to longchat.

This module is a leaf: it imports nothing of longchat's. Each registry (readers in
`sources.registry`, strategies in `context.registry`, compressors in `compress`, memory
functions in `chat.session`, commands in `cli`, profiles in `profile`) lists its own built-ins
and adds what the plugins' hooks return, through `gather` (built-ins first, a taken name
skipped with a warning).

A plugin is a module (usually an installed package) with functions marked `@hookimpl`:

    from longchat.plugins import hookimpl

    @hookimpl
    def longchat_readers():
        return [Reader("html", (".html", ".htm"), "HTML pages as text", open_html)]

Installed packages are found through the entry-point group `longchat.plugins.v1` (the
version is in the name: a hook change that breaks plugins gets a new group).
`LONGCHAT_PLUGINS=a,b` loads only those third-party plugins, `LONGCHAT_PLUGINS=none` none;
the built-ins are always there. A plugin that fails to import or register prints one warning
naming it, and everything else keeps working.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable

import pluggy

PROJECT = "longchat"
GROUP = "longchat.plugins.v1"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class Hooks:
    """What a plugin can add. Each hook returns a list (or None); results from every plugin are joined."""

    @hookspec
    def longchat_readers(self) -> list:
        """`longchat.sources.Reader`s: file formats, claimed by extension."""

    @hookspec
    def longchat_strategies(self) -> list:
        """`ContextStrategy` subclasses (each with a unique `name` and a `Params` dataclass)."""

    @hookspec
    def longchat_compressors(self) -> list:
        """(method name, factory) pairs: factory(model, settings, note) -> an object with the
        `compress(docs, question=, labels=, keep=, rate=, target_tokens=, method=, progress=)`
        method of `longchat.compress.Compressor`, returning a `longchat.compress.Result`."""

    @hookspec
    def longchat_memory_functions(self, store, session_id: int) -> list:
        """`longchat.chat.functions.Function`s a session's model may call; they get the
        store and session id only (no files, no shell)."""

    @hookspec
    def longchat_commands(self, app) -> list:
        """Add Typer commands to `app`; return the names added."""

    @hookspec
    def longchat_profiles(self) -> list:
        """Paths of profile .toml files to ship (user profiles of the same name win)."""


@dataclass
class Loaded:
    name: str
    source: str                 # "built-in" or "package-version"
    plugin: Any = None
    error: str | None = None
    registers: dict[str, list[str]] = field(default_factory=dict)


_manager: pluggy.PluginManager | None = None
_loaded: list[Loaded] = []
_generation = 0  # bumped whenever the set of plugins changes: registries re-read their hooks


def generation() -> int:
    manager()
    return _generation


def warn(message: str) -> None:
    print(f"longchat: warning: {message}", file=sys.stderr)


def manager() -> pluggy.PluginManager:
    """The plugin manager with the allowed entry points (loaded once)."""
    global _manager
    if _manager is None:
        pm = pluggy.PluginManager(PROJECT)
        pm.add_hookspecs(Hooks)
        _manager = pm
        for ep in _allowed(entry_points(group=GROUP)):
            source = f"{ep.dist.name}-{ep.dist.version}" if ep.dist else "entry point"
            try:
                plugin = ep.load()
                pm.register(plugin, name=ep.name)
            except Exception as e:  # a broken plugin must not take longchat down
                warn(f"plugin {ep.name!r} ({source}) failed to load and was skipped: {type(e).__name__}: {e}")
                _loaded.append(Loaded(ep.name, source, error=f"{type(e).__name__}: {e}"))
                continue
            _loaded.append(Loaded(ep.name, source, plugin))
    return _manager


def _allowed(eps):
    wanted = os.environ.get("LONGCHAT_PLUGINS")
    if wanted is None:
        return list(eps)
    names = {n.strip() for n in wanted.split(",") if n.strip()}
    return [ep for ep in eps if ep.name in names and "none" not in names]


def reset() -> None:
    """Forget every plugin; the next use loads them again (tests, after installing a package)."""
    global _manager
    _manager = None
    _loaded.clear()
    _reported.clear()
    _reset_caches()


def register(plugin, name: str) -> None:
    """Register a plugin object in this process (tests, embedding applications)."""
    pm = manager()
    pm.register(plugin, name=name)
    _loaded.append(Loaded(name, "registered", plugin))
    _reset_caches()


def unregister(name: str) -> None:
    pm = manager()
    plugin = pm.get_plugin(name)
    if plugin is not None:
        pm.unregister(plugin)
    _loaded[:] = [x for x in _loaded if x.name != name]
    _reset_caches()


def collect(hook: str, **kwargs) -> list[tuple[str, Any]]:
    """(plugin name, item) for every item every plugin returns from `hook`; a plugin whose hook
    raises is reported once and skipped."""
    pm = manager()
    out = []
    caller = getattr(pm.hook, hook)
    for impl in reversed(caller.get_hookimpls()):  # registration order
        try:
            items = impl.function(**{k: kwargs[k] for k in impl.argnames if k in kwargs})
        except Exception as e:
            _failed(impl.plugin_name, hook, e)
            continue
        for item in items or []:
            out.append((impl.plugin_name, item))
    return out


_reported: set[tuple[str, str]] = set()


def _failed(name: str, hook: str, error: Exception) -> None:
    if (name, hook) not in _reported:
        _reported.add((name, hook))
        warn(f"plugin {name!r} failed in {hook} and was skipped there: {type(error).__name__}: {error}")


def _reset_caches() -> None:
    global _generation
    _generation += 1


def gather(hook: str, builtins: list, name_of: Callable[[Any], str], valid: Callable[[Any], bool], kind: str,
           **kwargs) -> dict[str, Any]:
    """name -> item: `builtins` first, then every plugin's items from `hook` (`kwargs` passed
    on). An item that is not `valid`, or whose name is taken, is skipped with a warning that
    names the plugin and says it is not a `kind`."""
    found = {name_of(item): item for item in builtins}
    for plugin, item in collect(hook, **kwargs):
        if not valid(item):
            warn(f"plugin {plugin!r} registered something that is not a {kind}; skipped")
        elif name_of(item) in found:
            if found[name_of(item)] is not item:
                warn(f"plugin {plugin!r}: a {kind.split()[-1]} named {name_of(item)!r} exists already; skipped")
        else:
            found[name_of(item)] = item
    return found


def loaded() -> list[Loaded]:
    """Every third-party plugin seen, with what it registers (for `longchat plugins`)."""
    manager()
    for item in _loaded:
        if item.plugin is None:
            continue
        item.registers = {}
        for hook, show in (("longchat_readers", lambda r: f"{r.name} ({', '.join(r.extensions) or 'fallback'})"),
                           ("longchat_strategies", lambda c: c.name),
                           ("longchat_compressors", lambda c: c[0]),
                           ("longchat_profiles", lambda p: os.path.basename(str(p))[:-5])):
            impl = getattr(item.plugin, hook, None)
            if impl is not None:
                try:
                    item.registers[hook.removeprefix("longchat_")] = [show(x) for x in impl() or []]
                except Exception as e:
                    item.registers[hook.removeprefix("longchat_")] = [f"error: {e}"]
        impl = getattr(item.plugin, "longchat_memory_functions", None)
        if impl is not None:
            try:
                item.registers["memory_functions"] = [f.name for f in impl(store=None, session_id=0) or []]
            except Exception:
                item.registers["memory_functions"] = ["(needs a session)"]
    return list(_loaded)
