"""Benchmarks: passkey prompts on the real tokenizer, scoring, length parsing, the CLI end to end."""

from __future__ import annotations

import json
import random
import re
import time

import pytest

from conftest import check_speeds
from longchat.bench.needles import N_NEEDLES, build_needles_prompt
from longchat.bench.passkey import FILLER, INSTRUCTION, NEEDLE, QUESTION, build_passkey_prompt, first_integer, score_passkey
from longchat.bench.run import depths, format_length, overrides_for, parse_lengths
from longchat.bench.tasks import TASKS, get_task
from longchat.cli import main
from longchat.errors import EXIT_CONFIG, EXIT_INPUT, ConfigError, InputError
from tiny_models import make_tiny


@pytest.fixture(scope="module")
def tokenizer(default_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(default_model_dir)


def filler_sentences(line: str) -> int:
    return sum(line.count(s) for s in FILLER)


def split_prompt(tokenizer, ids) -> tuple[str, int, int]:
    """(text, filler sentences before the needle, after it)."""
    text = tokenizer.decode(ids)
    lines = text.split("\n")
    at = next(i for i, line in enumerate(lines) if line.startswith("The pass key is "))
    return text, sum(map(filler_sentences, lines[:at])), sum(map(filler_sentences, lines[at + 1:]))


# ---------------------------------------------------------------- prompt building

@pytest.mark.parametrize("length", [1000, 1024, 4096, 8184, 16384])
@pytest.mark.parametrize("depth", [0.0, 0.3, 1.0])
def test_prompt_length_within_one_percent_never_over(tokenizer, length, depth):
    ids, _ = build_passkey_prompt(tokenizer, length, depth, random.Random(0))
    assert length * 0.99 <= len(ids) <= length


def test_short_prompt_is_short_by_less_than_one_sentence(tokenizer):
    longest = max(len(tokenizer.encode(" " + s, add_special_tokens=False)) for s in FILLER)
    for length in (100, 256, 300, 517):
        ids, _ = build_passkey_prompt(tokenizer, length, 0.5, random.Random(1))
        assert length - longest < len(ids) <= length


@pytest.mark.parametrize("depth", [0.0, 0.25, 0.5, 0.75, 1.0])
def test_needle_sits_at_its_depth(tokenizer, depth):
    ids, key = build_passkey_prompt(tokenizer, 2048, depth, random.Random(7))
    text, before, after = split_prompt(tokenizer, ids)
    assert NEEDLE.format(key=key) in text
    assert before / (before + after) == pytest.approx(depth, abs=1 / (before + after))
    # The ids are the text's own tokenisation, not a splice the model would never see.
    assert tokenizer(text)["input_ids"] == ids


def test_depth_edges_touch_instruction_and_question(tokenizer):
    ids, key = build_passkey_prompt(tokenizer, 512, 0.0, random.Random(3))
    lines = tokenizer.decode(ids).split("\n")
    assert lines[0] == INSTRUCTION and lines[1] == NEEDLE.format(key=key) and lines[-1] == QUESTION

    ids, key = build_passkey_prompt(tokenizer, 512, 1.0, random.Random(3))
    lines = tokenizer.decode(ids).split("\n")
    assert lines[-2] == NEEDLE.format(key=key) and lines[-1] == QUESTION
    assert tokenizer.decode(ids).endswith("What is the pass key? The pass key is")


def test_keys_are_five_digits_and_seeded(tokenizer):
    a = build_passkey_prompt(tokenizer, 300, 0.5, random.Random("s"))
    b = build_passkey_prompt(tokenizer, 300, 0.5, random.Random("s"))
    assert a == b and 10000 <= a[1] <= 99999
    keys = {build_passkey_prompt(tokenizer, 300, 0.5, random.Random(i))[1] for i in range(5)}
    assert len(keys) > 1


def test_too_short_length_is_an_input_error(tokenizer):
    with pytest.raises(InputError, match="needs at least"):
        build_passkey_prompt(tokenizer, 20, 0.5, random.Random(0))


def test_depths_spread_evenly():
    assert depths(5) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert depths(2) == [0.0, 1.0]
    assert depths(1) == [0.5]


# ---------------------------------------------------------------- scoring and the registry

@pytest.mark.parametrize("text, ok", [
    (" 48213.", True), (" 48213. Remember it.", True), ("48213", True), (" is 48213", True),
    (" 48214.", False), (" 4821", False), ("", False), (" the key", False), (" 1 48213", False),
])
def test_score_passkey_takes_the_first_integer(text, ok):
    assert score_passkey(text, 48213) is ok


def test_first_integer():
    assert first_integer(" 123 456") == 123 and first_integer("none") is None


def test_task_registry_names_the_valid_tasks():
    assert get_task("passkey") is TASKS["passkey"]
    assert get_task("needles") is TASKS["needles"]
    with pytest.raises(ConfigError, match="valid: needles, passkey"):
        get_task("nope")


# ---------------------------------------------------------------- lengths

@pytest.mark.parametrize("spec, lengths", [
    ("1k,2k,1500,8k", [1024, 2048, 1500, 8192]),
    (" 4K , 128k ", [4096, 131072]),
    ("1.5k", [1536]),
    ("1m", [1048576]),
    ("2k,2k,1k", [2048, 1024]),
])
def test_parse_lengths(spec, lengths):
    assert parse_lengths(spec) == lengths


@pytest.mark.parametrize("spec", ["", "abc", "0", "-1k", "1k,,2k", "1.3", "0.0001k", "1g", "2kk"])
def test_parse_lengths_rejects(spec):
    with pytest.raises(ConfigError, match="--lengths"):
        parse_lengths(spec)


def test_format_length():
    assert [format_length(n) for n in (1024, 1536, 1500, 131072, 1048576, 256)] == ["1k", "1.5k", "1500", "128k", "1m", "256"]


# ---------------------------------------------------------------- CLI

def test_cli_passkey_on_the_default_model(home, tmp_path, capsys, reuse_model):
    out_json = tmp_path / "bench.json"
    start = time.perf_counter()
    code = main(["bench", "passkey", "--lengths", "256", "--samples", "1", "--json", str(out_json)])
    wall_s = time.perf_counter() - start
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "accuracy" in out and "prefill tok/s" in out and "prefill MFU" in out and "peak RSS MiB" in out
    assert "1/1" in out  # the model finds the key at 256 tokens
    assert "passkey 256 #1/1 depth 0.50" in err and " ok " in err

    data = json.loads(out_json.read_text())["runs"][0]
    [summary] = data["lengths"]
    assert summary["length"] == 256 and summary["correct"] == 1 and summary["total"] == 1
    assert 248 * 0.95 <= summary["prompt_tokens"] <= 248  # 256 minus 8 for the reply
    [sample] = data["samples"]
    assert sample["ok"] and sample["got"] == sample["expected"] and sample["depth"] == 0.5
    # The figures are the run's own: the tokens generated are the ones counted, each rate is its
    # count over its seconds, the seconds fit the end-to-end time and that the wall clock's.
    assert sample["new_tokens"] == len(sample["token_ids"]) and 1 <= sample["new_tokens"] <= 8
    assert sample["prompt_tokens"] == summary["prompt_tokens"]
    check_speeds(sample, wall_s)
    assert sample["prefill_s"] + sample["decode_s"] <= sample["seconds"] + 0.01 and sample["seconds"] <= wall_s
    assert summary["prefill_tok_s"] == sample["prefill_tok_s"]  # the median of one
    # The FLOPs counted: a multiply-add per weight of each layer's projections per prompt token
    # (the embedding is looked up, the vocabulary projected for the last position only), plus
    # the attention, a few percent at 248 tokens.
    c = reuse_model.cfg
    weights = c.n_layers * c.hidden_size * ((c.n_heads + 2 * c.n_kv_heads) * c.head_dim + c.n_heads * c.head_dim
                                            + 3 * c.intermediate_size)
    per_token = sample["prefill_gflop"] * 1e9 / sample["prompt_tokens"]
    assert 2 * weights < per_token < 1.1 * 2 * weights, (per_token, weights)
    # (each figure rounded: prefill_s to 1 ms, GFLOP/s to 0.1, MFU to 0.001)
    assert summary["prefill_gflop_s"] == pytest.approx(sample["prefill_gflop"] / sample["prefill_s"],
                                                       rel=0.0006 / sample["prefill_s"] + 0.001, abs=0.06)
    peak = data["machine"]["peak_matmul_gflop_s"]
    assert summary["mfu"] == pytest.approx(summary["prefill_gflop_s"] / peak, rel=0.06 / peak, abs=0.0006 + 0.06 / peak)
    assert summary["mfu"] < 1.5
    assert summary["peak_rss_mb"] > reuse_model.decoder.weight_bytes / 2**20  # the weights are resident
    for key in ("torch", "torch_threads", "model", "profile", "window"):
        assert key in data["machine"]


@pytest.fixture(scope="module")
def tiny_with_tokenizer(tmp_path_factory, tokenizer):
    """A 2-layer random Llama with the real tokenizer: the whole pipeline in a second or two."""
    folder = make_tiny("llama", tmp_path_factory.mktemp("tiny-tok") / "llama", vocab_size=len(tokenizer),
                       bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    tokenizer.save_pretrained(folder)
    return folder


def test_cli_vs_transformers_and_skipped_lengths(home, tmp_path, tiny_with_tokenizer, capsys):
    out_json = tmp_path / "bench.json"
    start = time.perf_counter()
    code = main(["bench", "passkey", "--lengths", "200,300,1k", "--samples", "2", "--model", str(tiny_with_tokenizer),
                 "--vs-transformers", "--json", str(out_json)])
    wall_s = time.perf_counter() - start
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "skipped (window 512)" in out and "hf prefill tok/s" in out and "decode ours/hf" in out
    assert err.count("passkey 200 #") == 2 and "transformers 300:" in err

    data = json.loads(out_json.read_text())["runs"][0]
    assert [s["status"] for s in data["lengths"]] == ["ok", "ok", "skipped (window 512)"]
    hf = data["samples"][0]["hf"]  # (the per-sample record keeps transformers' token ids)
    assert {k: v for k, v in hf.items() if k not in ("token_ids", "answer")}.items() <= data["lengths"][0]["hf"].items()
    # transformers' figures: its prefill on the first sample's very prompt, its decode timed over
    # the 15 steps after the first of its 16 tokens; each rate is its count over its seconds.
    assert hf["prompt_tokens"] == data["samples"][0]["prompt_tokens"] and len(hf["token_ids"]) == 16
    assert 0 < hf["prefill_s"] < wall_s and 0 < hf["decode_s"] < wall_s
    assert hf["prefill_tok_s"] == pytest.approx(hf["prompt_tokens"] / hf["prefill_s"], rel=0.0006 / hf["prefill_s"] + 0.001)
    assert hf["decode_tok_s"] == pytest.approx(15 / hf["decode_s"], rel=0.0006 / hf["decode_s"] + 0.001)
    for sample in data["samples"]:
        assert sample["new_tokens"] == len(sample["token_ids"])
        check_speeds(sample, wall_s)
    # Same weights, same prompt ids, greedy: our forward and transformers pick the same tokens.
    assert hf["compared"] > 0 and hf["agree"] == hf["compared"]
    assert len(data["samples"]) == 4 and "hf" in data["samples"][0] and "hf" not in data["samples"][1]


def test_cli_bad_lengths_fail_in_one_line(home, capsys):
    code = main(["bench", "passkey", "--lengths", "1k,lots"])
    _, err = capsys.readouterr()
    assert code == EXIT_CONFIG
    assert err.strip().count("\n") == 0 and "'lots'" in err


def test_cli_too_short_length_fails_before_running(home, tiny_with_tokenizer, capsys):
    code = main(["bench", "passkey", "--lengths", "1k,40", "--model", str(tiny_with_tokenizer)])
    _, err = capsys.readouterr()
    assert code == EXIT_INPUT and "length 40 is too short" in err and "passkey 1k #" not in err


# ---------------------------------------------------------------- multi-needle task

@pytest.mark.parametrize("length", [600, 4096])
@pytest.mark.parametrize("depth", [0.0, 0.5, 1.0])
def test_needles_prompt_holds_every_needle_and_fits(tokenizer, length, depth):
    ids, value = build_needles_prompt(tokenizer, length, depth, random.Random(f"n{length}{depth}"))
    text = tokenizer.decode(ids)
    assert length * 0.97 <= len(ids) <= length and tokenizer(text)["input_ids"] == ids
    needles = re.findall(r"The special magic number for (\w+) is (\d+)\.", text)
    assert len(needles) == N_NEEDLES and len({k for k, _ in needles}) == N_NEEDLES
    asked = re.search(r"What is the special magic number for (\w+)\?", text).group(1)
    assert dict(needles)[asked] == str(value)
    # The asked needle sits at its depth in the prose (counted in characters).
    body = text[: text.rindex("\n")]
    where = body.index(f"for {asked} is {value}.") / len(body)
    assert where == pytest.approx(depth, abs=0.08)


def test_needles_prompts_are_seeded(tokenizer):
    a = build_needles_prompt(tokenizer, 500, 0.3, random.Random("x"))
    assert a == build_needles_prompt(tokenizer, 500, 0.3, random.Random("x"))
    assert a != build_needles_prompt(tokenizer, 500, 0.3, random.Random("y"))


def test_overrides_reach_only_the_matching_strategy():
    sets = ["infllm.topk=8", "context.prefill_chunk=256", "streaming.n_local=64"]
    assert overrides_for("infllm", sets) == ["infllm.topk=8", "context.prefill_chunk=256"]
    assert overrides_for("full", sets) == ["context.prefill_chunk=256"]


def test_cli_compares_profiles_side_by_side_with_plot(home, tmp_path, tiny_with_tokenizer, capsys):
    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    code = main(["bench", "needles", "--lengths", "200,400", "--samples", "2", "--model", str(tiny_with_tokenizer),
                 "-p", "full,infllm", "--set", "infllm.n_local=128", "--set", "context.prefill_chunk=64",
                 "--json", str(out_json), "--plot", str(out_png)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "full" in out and "infllm" in out and err.count("needles 400 #") == 4
    runs = json.loads(out_json.read_text())["runs"]
    assert [r["machine"]["profile"] for r in runs] == ["full", "infllm"]
    # Both profiles were judged on the very same prompts.
    assert [s["expected"] for s in runs[0]["samples"]] == [s["expected"] for s in runs[1]["samples"]]
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out_png.stat().st_size > 10_000


# ---------------------------------------------------------------- scale (random weights)

def test_cli_scale_runs_each_profile_on_a_random_model(home, tmp_path, capsys):
    out_json = tmp_path / "scale.json"
    start = time.perf_counter()
    code = main(["bench", "scale", "--shape", "tiny", "--runs", "infllm:3k,full:8k,full:2k", "-n", "4",
                 "--json", str(out_json)])
    wall_s = time.perf_counter() - start
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "scale - random tiny" in out and "skipped (window 4,096)" in out
    data = json.loads(out_json.read_text())
    assert data["machine"]["shape"] == "tiny" and data["machine"]["peak_matmul_tflop_s"] > 0
    infllm, skipped, full = data["runs"]
    assert [r["status"] for r in data["runs"]] == ["ok", "skipped (window 4,096)", "ok"]
    # No tokenizer, no stop token: every asked-for token is decoded; the prompt leaves room for them.
    assert infllm["new_tokens"] == full["new_tokens"] == 4 and infllm["prompt_tokens"] == 3 * 1024 - 4
    # Each rate is its count over its seconds (prefill_s is shown to 10 ms: checked when that is
    # close enough), and the time the rates imply fits the wall clock's. MFU is reported (rounded:
    # on a machine this busy it can round to 0.0), never above the peak.
    for run in (infllm, full):
        if run["prefill_s"] >= 0.05:
            assert run["prefill_tok_s"] == pytest.approx(run["prompt_tokens"] / run["prefill_s"],
                                                         rel=0.006 / run["prefill_s"] + 0.001)
        assert run["prompt_tokens"] / run["prefill_tok_s"] + (run["new_tokens"] - 1) / run["decode_tok_s"] <= wall_s
        assert 0 <= run["mfu"] < 1.5
    assert infllm["gpu_peak_gib"] is None and infllm["host_peak_gib"] > 0


def test_cli_scale_refuses_what_cannot_fit_and_goes_on(home, tmp_path, capsys, monkeypatch):
    from longchat import sysinfo

    monkeypatch.setattr(sysinfo, "available_ram", lambda: 10 * 2**20)
    code = main(["bench", "scale", "--shape", "tiny", "--runs", "infllm:1m,full:1k", "-n", "2"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "infllm 1m: infllm: 1,048,576 tokens leave" in err and "memory blocks in RAM" in err
    assert re.search(r"infllm +│ +1m +│ refused", out) and re.search(r"full +│ +1k +│ ok", out)
    code = main(["bench", "scale", "--shape", "llama3-8b"])  # 30 GiB of fp32 weights in 10 MiB
    _, err = capsys.readouterr()
    assert code == EXIT_INPUT and "llama3-8b shape needs 29.9 GiB of weights in float32" in err


@pytest.mark.parametrize("args, words", [
    (["--runs", "infllm"], "'infllm' is not PROFILE:LENGTH"),
    (["--runs", "infllm:lots"], "'lots' is not a token count"),
    (["--shape", "gpt5"], "unknown shape 'gpt5'; known: llama3-8b"),
    (["--runs", "nosuch:1k", "--shape", "tiny"], "nosuch"),
])
def test_cli_scale_bad_options_fail_in_one_line(home, capsys, args, words):
    code = main(["bench", "scale", *args])
    _, err = capsys.readouterr()
    assert code == EXIT_CONFIG and words in err and err.strip().count("\n") == 0, err
