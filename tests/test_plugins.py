"""Plugins through the real pluggy hooks: registration, discovery, failures, the CLI listing."""

from __future__ import annotations

import json
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from longchat import plugins
from longchat.cli import main
from longchat.cli.plugins import listing
from longchat.context.base import STRATEGIES
from longchat.context.registry import strategy_class
from longchat.context.full import FullAttention
from longchat.errors import ConfigError
from longchat.plugins import hookimpl
from longchat.sources import Document, Reader, read_text, reader_for


def open_shout(path: Path, label: str, note) -> Document:
    text = path.read_text().upper()
    return Document(label=label, kind="shout", size=len(text), open_pieces=lambda: iter([text]))


class ShoutFull(FullAttention):
    """Full attention under another name: a strategy coming from a plugin."""

    name = "shout-full"


class TestPlugin:
    @hookimpl
    def longchat_readers(self):
        return [Reader("shout", (".shout",), "text in capitals", open_shout)]

    @hookimpl
    def longchat_strategies(self):
        return [ShoutFull]


class BrokenHooks:
    @hookimpl
    def longchat_readers(self):
        raise RuntimeError("disk on fire")


@pytest.fixture
def fresh():
    plugins.reset()
    yield
    plugins.reset()


def test_a_plugin_adds_a_reader_and_a_strategy(fresh, tmp_path, home, tiny_chat_model):
    plugins.register(TestPlugin(), "test-plugin")
    try:
        src = tmp_path / "note.shout"
        src.write_text("quiet words\n")
        assert reader_for(src).name == "shout"
        assert read_text([str(src)]) == "QUIET WORDS\n"
        assert strategy_class("shout-full") is ShoutFull
        profile = tmp_path / "shout.toml"
        profile.write_text('[context]\nstrategy = "shout-full"\n')
        from longchat.api import open_runner
        from longchat.runtime.generate import Sampling

        ids = list(range(100, 160))
        ours = open_runner(str(profile), str(tiny_chat_model)).engine.generate(ids, Sampling(max_new_tokens=5))
        ref = open_runner("full", str(tiny_chat_model)).engine.generate(ids, Sampling(max_new_tokens=5))
        assert list(ours) == list(ref)
    finally:
        plugins.unregister("test-plugin")
    with pytest.raises(ConfigError, match="unknown strategy"):
        strategy_class("shout-full")
    assert "shout-full" not in STRATEGIES
    assert reader_for(tmp_path / "note.shout").name == "text"


def test_a_broken_plugin_warns_and_the_rest_works(fresh, monkeypatch, capsys, tmp_path):
    broken = EntryPoint(name="broken", value="no_such_module_anywhere", group=plugins.GROUP)
    real = plugins.entry_points

    def fake(group):
        return [*real(group=group), broken]

    monkeypatch.setattr(plugins, "entry_points", fake)
    plugins.reset()
    plugins.manager()  # what every command does first (to add the plugins' commands)
    err = capsys.readouterr().err
    assert "plugin 'broken'" in err and "failed to load" in err and err.count("warning") == 1
    (tmp_path / "a.txt").write_text("still fine\n")
    assert read_text([str(tmp_path / "a.txt")]) == "still fine\n"
    plugins.register(BrokenHooks(), "hooks-fail")
    read_text([str(tmp_path / "a.txt")])
    read_text([str(tmp_path / "a.txt")])  # the registry was read once: the failing hook warned once
    assert capsys.readouterr().err.count("failed in longchat_readers") == 1
    assert main(["plugins", "--json"]) == 0
    listed = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert listed["broken"]["error"].startswith("ModuleNotFoundError")


def test_first_party_plugins_are_discovered_through_entry_points(fresh, capsys):
    names = {ep.name for ep in plugins.entry_points(group=plugins.GROUP)}
    assert {"html", "rag"} <= names, "install them: pip install -e plugins/longchat-html -e plugins/longchat-rag"
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "html (longchat-html-" in out and "readers: html (.html, .htm, .xhtml)" in out
    assert "rag (longchat-rag-" in out and "compressors: rag" in out and "profiles: rag" in out
    assert "builtin (built-in): loaded" in out and "strategies: full, auto, infllm" in out


def test_longchat_plugins_env_restricts_third_party_plugins(fresh, monkeypatch, capsys):
    monkeypatch.setenv("LONGCHAT_PLUGINS", "html")
    plugins.reset()
    assert [p.name for p in listing()] == ["builtin", "html"]
    monkeypatch.setenv("LONGCHAT_PLUGINS", "none")
    plugins.reset()
    assert [p.name for p in listing()] == ["builtin"]
    with pytest.raises(ConfigError, match="unknown profile 'rag'"):
        from longchat.profile import load_profile

        load_profile("rag")
