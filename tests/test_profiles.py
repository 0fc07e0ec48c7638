"""Profiles: shipped ones validate; bad files and overrides fail naming file, key and values."""

from __future__ import annotations

import pytest

from longchat.errors import ConfigError
from longchat.profile import available_profiles, load_profile


def test_every_shipped_profile_loads():
    shipped = available_profiles()
    assert "full" in shipped
    for name in shipped:
        profile = load_profile(name)
        assert profile.description


def test_set_overrides_and_strategy_alias():
    profile = load_profile("full", ["generation.temperature=0.5", "context.window=1024", "generation.top_k=5"])
    assert profile.generation.temperature == 0.5
    assert profile.context.window == 1024 and profile.generation.top_k == 5


@pytest.mark.parametrize("override, words", [
    (["generation.temperature=-1"], ["[generation]", "temperature", ">= 0"]),
    (["generation.colour=1"], ["--set 'generation.colour=1' [generation]", "unknown key 'colour'", "max_new_tokens"]),
    (["generation.tmperature=1"], ["unknown key 'tmperature'; did you mean 'temperature'?"]),
    (["genration.top_k=1"], ["unknown section 'genration'; did you mean 'generation'?"]),
    (["context.prefill_chunk=abc"], ["--set 'context.prefill_chunk=abc'", "prefill_chunk must be an integer, got 'abc'"]),
    (["context.window='big'"], ["window must be an integer"]),
    (["context.strategy='nope'"], ["unknown strategy 'nope'", "full"]),
    (["full.topk=3"], ["[strategy] (full)", "unknown key 'topk'", "takes no settings", "infllm"]),
    (["nosection.x=1"], ["unknown section 'nosection'"]),
    (["novalue"], ["expected KEY=VALUE"]),
    (["compress.method='magic'"], ["method must be one of: none"]),
])
def test_bad_values_name_the_key(override, words):
    with pytest.raises(ConfigError) as err:
        load_profile("full", override)
    for word in words:
        assert word in str(err.value)


def test_bad_file_names_the_file(tmp_path):
    bad = tmp_path / "mine.toml"
    bad.write_text('description = "x"\ncolour = 3\n')
    with pytest.raises(ConfigError, match=r"mine\.toml: unknown key 'colour'"):
        load_profile(str(bad))
    bad.write_text("not = [valid")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_profile(str(bad))
    with pytest.raises(ConfigError, match="unknown profile 'nope'; available: .*full"):
        load_profile("nope")


def user_profiles(tmp_path, monkeypatch, **files: str):
    monkeypatch.setenv("LONGCHAT_HOME", str(tmp_path))
    folder = tmp_path / "config" / "profiles"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.toml").write_text(text)
    return folder


def test_user_profile_shadows_and_extends(tmp_path, monkeypatch):
    user_profiles(tmp_path, monkeypatch, terse='description = "short answers"\n[generation]\nmax_new_tokens = 32\n')
    profile = load_profile("terse")
    assert profile.generation.max_new_tokens == 32 and profile.description == "short answers"
    auto = load_profile("auto")
    assert (profile.context, profile.strategy) == (auto.context, auto.strategy)  # auto underneath


def test_a_one_line_user_profile_is_auto_with_that_value(tmp_path, monkeypatch):
    """Issue 42: `[generation] temperature = 0.7` alone used to be the `full` strategy (which
    refuses a long PDF); a user's profile extends auto unless it names another base."""
    user_profiles(tmp_path, monkeypatch, warm="[generation]\ntemperature = 0.7\n",
                  deep='extends = "infllm"\n[strategy]\ntopk = 3\n',
                  infllm="[strategy]\ntopk = 2\n",  # shadows the shipped infllm: extends it
                  plain='[context]\nstrategy = "full"\n',  # a strategy brings its shipped profile
                  top="temperature = 0.7\n")
    warm = load_profile("warm")
    assert warm.context.strategy == "auto" and warm.context.window == load_profile("auto").context.window
    assert warm.generation.temperature == 0.7 and "auto" in warm.description
    deep = load_profile("deep")
    assert deep.context.strategy == "infllm" and deep.strategy.topk == 3 and deep.context.window > 10**6
    assert load_profile("infllm").strategy.topk == 2 and load_profile("infllm").context.window > 10**6
    assert load_profile("plain").context.strategy == "full"
    assert load_profile("plain").context.window == 0  # full's own window: the model's, not auto's
    with pytest.raises(ConfigError, match=r"top\.toml: unknown key 'temperature'; .*under \[generation\]"):
        load_profile("top")
    path = tmp_path / "mine.toml"  # a .toml path is a user's profile too
    path.write_text('extends = "inflm"\n')
    with pytest.raises(ConfigError, match=r"mine\.toml: extends unknown profile 'inflm'; did you mean 'infllm'\?"):
        load_profile(str(path))
    path.write_text("[strategy]\ntokp = 3\n")
    with pytest.raises(ConfigError, match=r"mine\.toml \[strategy\] \(auto\): unknown key 'tokp'; did you mean 'topk'\?"):
        load_profile(str(path))
    user_profiles(tmp_path, monkeypatch, one='extends = "two"\n', two='extends = "one"\n')
    with pytest.raises(ConfigError, match="goes round in a circle: one -> two -> one"):
        load_profile("one")


def test_set_is_blamed_only_for_what_it_breaks(tmp_path):
    """Several --set are checked together (the second makes the first fit); a bad one is named
    as the flag, not as the profile's file."""
    profile = load_profile("auto", ["context.final_chunk=600", "context.prefill_chunk=1024"])
    assert profile.context.final_chunk == 600
    with pytest.raises(ConfigError) as err:
        load_profile("auto", ["generation.top_k=3", "context.final_chunk=600"])
    assert str(err.value).startswith("--set 'context.final_chunk=600' [context]: final_chunk must be")
    assert "auto.toml" not in str(err.value)


def test_an_old_memory_section_names_its_new_name(tmp_path):
    """[memory] configured sessions and was renamed [sessions]: say so, in the file and in --set."""
    old = tmp_path / "old.toml"
    old.write_text('[context]\nstrategy = "full"\n\n[memory]\nbudget = 600\n')
    with pytest.raises(ConfigError, match=r"old.toml: the \[memory\] section is now \[sessions\]"):
        load_profile(str(old))
    with pytest.raises(ConfigError, match=r"--set 'memory.budget=600': the \[memory\] section is now \[sessions\]"):
        load_profile("full", ["memory.budget=600"])
    assert load_profile("full", ["sessions.budget=600"]).sessions.budget == 600


def test_a_removed_setting_says_it_was_removed_and_where_to_read_why():
    """settings.REMOVED: a key deleted from the code (issue 40's "measured, not kept") is named
    as removed, with the page that says why, not as an unknown key."""
    from longchat.settings import REMOVED

    assert {"meaning", "quote", "contiguity", "ask_window", "segment", "surprise_gamma", "surprise_window",
            "min_block"} <= set(REMOVED)
    with pytest.raises(ConfigError, match=r"\[strategy\] \(infllm\): 'quote' was removed in issue 40 "
                                          r"\(measured, not kept: docs/settings\.md\); delete it from the profile"):
        load_profile("infllm", ["strategy.quote=1"])
    with pytest.raises(ConfigError, match=r"'segment' was removed .*docs/settings\.md"):
        load_profile("auto", ["infllm.segment='surprise'"])


def test_every_setting_of_a_memory_strategy_says_whether_it_is_part_of_a_memorys_key():
    """`settings.stored` / `read_time` on each field decide `memory_key`: a new field without
    one would fail here, not silently reuse (or refuse) memories it changes."""
    import dataclasses

    from longchat.context.auto import AutoParams
    from longchat.context.infllm import InfLLMParams

    for cls in (InfLLMParams, AutoParams):
        unclassified = [f.name for f in dataclasses.fields(cls) if "memory_key" not in f.metadata]
        assert not unclassified, f"{cls.__name__}: say whether these change a memory: {unclassified}"
    keyed = {f.name for f in dataclasses.fields(InfLLMParams) if f.metadata["memory_key"]}
    assert keyed == {"n_init", "n_local", "block_size", "topk", "repr_topk", "store_bits", "memory_positions"}


def test_shipped_profiles_list_only_what_differs_from_the_defaults():
    """Defaults are written once, on the dataclasses; a shipped profile that repeats one would
    drift from it the day the default moves."""
    import dataclasses
    import tomllib

    from longchat.context.registry import strategy_class
    from longchat.profile import SECTIONS, _shipped

    for name, path in _shipped().items():
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        strategy = data.get("context", {}).get("strategy", "full")
        tables = {**SECTIONS, "strategy": strategy_class(strategy).Params}
        for section, table in data.items():
            if not isinstance(table, dict):
                continue
            defaults = {f.name: f.default for f in dataclasses.fields(tables[section])}
            repeated = [key for key, value in table.items() if defaults[key] == value]
            assert not repeated, f"{name}.toml [{section}] repeats defaults: {repeated}"
