"""Weight formats (runtime/weights.py) against fp32, on tiny models of every family.

Tolerances are on the relative error of all logits, ||got - ref|| / ||ref||, over 120 tokens
(prefill in chunks, then decode steps). Observed on these models: fp16 <0.1%, bf16 0.5-0.9%,
int8 1.4-2.4%, int4 12-21% (Gaussian random weights are the worst case for 4 bits; a wrong
layout or scale gives errors of 100% and more). The int4 kernel itself is checked tightly
against its own dequantised weights in `test_quantisers_round_trip_within_their_step`.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import one_line_error
from tiny_models import FAMILIES, make_tiny

from longchat.context import strategy_class
from longchat.errors import ConfigError
from longchat.profile import load_profile
from longchat.runtime.config import ModelConfig
from longchat.runtime.loader import load_decoder
from longchat.runtime.rope import Rope
from longchat.runtime.weights import FORMATS, Int4, Int8, check_format

TOLERANCE = {"fp32": 1e-6, "bf16": 0.015, "fp16": 0.002, "int8": 0.04, "int4": 0.3}


def logits(decoder, cfg, ids):
    strategy = strategy_class("full")(cfg, Rope(cfg.hf), kv="fp32")  # the weights alone differ
    chunks = [decoder.forward(ids[:, i:i + 50], strategy, logits="all") for i in range(0, 100, 50)]
    steps = [decoder.forward(ids[:, i:i + 1], strategy, logits="all") for i in range(100, 120)]
    return torch.cat(chunks + steps, dim=1)


def load(folder, fmt):
    import transformers

    cfg = ModelConfig.from_hf(transformers.AutoConfig.from_pretrained(folder))
    return cfg, load_decoder(folder, cfg, torch.device("cpu"), torch.float32, fmt)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_format_tracks_fp32_on_every_family(family, tiny_dirs):
    cfg, ref_model = load(tiny_dirs[family], "fp32")
    ids = torch.randint(0, cfg.vocab_size, (1, 120), generator=torch.Generator().manual_seed(3))
    ref = logits(ref_model, cfg, ids)
    for fmt in FORMATS:
        _, model = load(tiny_dirs[family], fmt)
        got = logits(model, cfg, ids)
        err = ((got - ref).norm() / ref.norm()).item()
        assert err <= TOLERANCE.get(fmt, 1e-6), (family, fmt, err)
        assert model.weight_format == ("fp32" if fmt == "auto" else fmt)
        assert got.dtype == torch.float32


def test_resident_size_follows_the_format(tiny_dirs):
    sizes = {fmt: load(tiny_dirs["llama"], fmt)[1].weight_bytes for fmt in ("fp32", "bf16", "int8", "int4")}
    assert sizes["bf16"] == pytest.approx(sizes["fp32"] / 2, rel=0.05)
    assert sizes["int8"] < sizes["fp32"] / 3.5
    assert sizes["int4"] < sizes["int8"]  # the tiny vocabulary's int8 table keeps it above 1/8


def test_fp16_checkpoint_gives_the_same_logits_as_fp32(tmp_path):
    """A checkpoint whose weights are fp16: held as fp16, widened per product, it computes
    exactly what the fp32 path computes (greedy tokens identical), at half the memory."""
    folder = make_tiny("llama", tmp_path / "half", torch_dtype="float16")
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "half", dtype=torch.float16)
    model.save_pretrained(folder)
    cfg, ref_model = load(folder, "fp32")
    _, half = load(folder, "fp16")
    ids = torch.randint(0, cfg.vocab_size, (1, 120), generator=torch.Generator().manual_seed(4))
    assert torch.equal(logits(half, cfg, ids), logits(ref_model, cfg, ids))
    assert half.weight_bytes < 0.55 * ref_model.weight_bytes


def test_quantisers_round_trip_within_their_step():
    w = torch.randn(96, 128) * 0.05
    i8 = Int8.quantize(w)
    assert (i8.dense() - w).abs().max() <= i8.scale.max() / 2 + 1e-7
    i4 = Int4.quantize(w)
    step = (w.view(96, 4, 32).amax(-1) - w.view(96, 4, 32).amin(-1)) / 15
    # the CPU layout keeps bf16 scales and zeros: their rounding adds to half a step
    assert ((i4.dense() - w).abs().view(96, 4, 32).amax(-1) <= step * 0.5 + w.abs().max() * 0.02).all()
    x = torch.randn(3, 128)
    assert torch.allclose(i8(x), x @ i8.dense().T, rtol=0.02, atol=0.02)
    assert torch.allclose(i4(x), x @ i4.dense().T, rtol=0.02, atol=0.02)


def test_int4_needs_whole_groups():
    with pytest.raises(ConfigError, match="divisible by 32"):
        Int4.quantize(torch.randn(8, 40))


def test_the_format_is_a_profile_setting_with_a_short_form():
    assert load_profile("full", ["model.weights=int4"]).runtime.weights == "int4"
    assert load_profile("full", ["runtime.weights=bf16"]).runtime.weights == "bf16"
    with pytest.raises(ConfigError, match="weights must be auto"):
        load_profile("full", ["model.weights=int3"])
    with pytest.raises(ConfigError, match="unknown weight format"):
        check_format("q4")


def test_cli_refuses_an_unknown_format_in_one_line(tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_text("The sky is blue.")
    run = subprocess.run([sys.executable, "-m", "longchat", "ask", str(doc), "colour?", "--set", "model.weights=int3"],
                         capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert run.returncode == 4  # a configuration error (README: exit codes)
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert "weights must be auto | fp32 | bf16 | fp16 | int8 | int4" in run.stderr


def test_bench_decode_compares_formats_in_their_own_processes(cli, tiny_chat_model, tmp_path):
    import time

    out_json = tmp_path / "decode.json"
    start = time.perf_counter()
    code, out, err = cli("bench", "decode", "--model", tiny_chat_model, "--weights", "fp32,int4/int8,default",
                         "--lengths", "200", "--rounds", "2", "--new-tokens", "6", "--no-llama-cpp",
                         "--json", out_json, timeout=600)
    wall_s = time.perf_counter() - start
    assert code == 0, err
    assert err.count("round 1: ") == 3 and err.count("round 2: ") == 3
    rows = json.loads(out_json.read_text())["rows"]
    assert [r["engine"] for r in rows] == ["fp32", "int4/int8", "default"]
    fp32, int4, default = rows
    # What each was held as: the KV cache as asked; the default follows the checkpoint (fp32
    # safetensors stay fp32 on a CPU) with the half-size cache.
    assert int4["held"] == "int4/int8" and default["held"] in ("fp32/bf16", "fp32/fp32")
    assert all(r["length"] == 200 and r["rounds"] == 2 and r["peak_rss_mib"] > 0 for r in rows)
    # The rates are per second (not per ms, not inverted): the time they imply for every round's
    # 200-token prefill and 5 decode steps (the first token comes out of the prefill) fits the
    # wall clock's; with the median of two rounds, the implied time can only be less than the real one.
    assert sum(r["rounds"] * (200 / r["prefill_tok_s"] + 5 / r["decode_tok_s"]) for r in rows) <= wall_s
    assert fp32["same_tokens"] == 6 and len(int4["tokens"]) == 6  # fp32 is the reference
    assert fp32["weights_mib"] > 3 * int4["weights_mib"] and default["weights_mib"] == fp32["weights_mib"]
    assert "decode - " in out and "int4/int8" in out and f"default ({default['held']})" in out


def test_bench_decode_says_what_llama_cpp_needs(cli, tiny_chat_model):
    code, out, err = cli("bench", "decode", "--model", tiny_chat_model, "--llama-cpp", "--rounds", "1")
    assert code == 4 and one_line_error(err) and "needs a GGUF model" in err


def test_quantised_load_of_the_bundled_gguf_keeps_no_fp32_copy(default_model_dir):
    """The bundled Q4_1/Q8_0 GGUF held as int4: what the load adds to the process is about the
    int4 weights (~91 MiB), never the 513 MiB of fp32 the conversion cache holds."""
    script = (
        "from longchat.runtime.loader import load_model, load_tokenizer\n"
        "from longchat.sysinfo import peak_rss_mb\n"
        "load_tokenizer('default'); base = peak_rss_mb()\n"
        "m = load_model('default', weights='int4', note=lambda s: None)\n"
        "print(base, peak_rss_mb(), m.decoder.weight_bytes / 2**20, m.decoder.weight_format)\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    base, peak, weights, fmt = run.stdout.split()
    assert fmt == "int4" and float(weights) < 100
    assert float(peak) - float(base) < 250, (base, peak)  # measured: +119 MiB


def test_the_bundled_int4_holds_the_ggufs_own_4_bit_codes(default_model_dir):
    """Q4_1 blocks are 32 inputs of d * q + m, q in 0..15: requantising the converted fp32
    weights finds the same grid exactly; only d and m are rounded (to bf16, the kernel's)."""
    from longchat.runtime.loader import _Weights

    weight = _Weights(default_model_dir).get("model.layers.3.mlp.down_proj.weight").float()
    n, k = weight.shape
    groups = weight.view(n, k // 32, 32)
    lo, hi = groups.amin(-1, keepdim=True), groups.amax(-1, keepdim=True)
    codes = (groups - lo) / (hi - lo)
    assert ((codes * 15) - (codes * 15).round()).abs().max() < 1e-3
    err = (Int4.quantize(weight).dense() - weight).abs()
    assert err.mean() / weight.abs().mean() < 0.005


def test_memory_keys_name_a_quantised_format_and_old_memories_stay_valid(tiny_chat_model, home, tmp_path):
    from longchat.api import open_runner
    from longchat.memory.encode import memory_key
    from longchat.memory.store import Memory, MemoryStoreError

    def key(fmt):
        runner = open_runner("infllm", str(tiny_chat_model), overrides=[f"model.weights={fmt}"])
        return memory_key(runner, runner.engine.strategy.params, "head")

    fp32, auto, int8 = key("fp32"), key("auto"), key("int8")
    assert "weights" not in fp32 and fp32 == auto  # memories made before formats existed keep their key
    assert int8["weights"] == "int8" and {k: v for k, v in int8.items() if k != "weights"} == fp32
    made_with_fp32 = Memory(tmp_path, {"key": fp32})
    made_with_fp32.check_key(fp32)
    with pytest.raises(MemoryStoreError, match="--set model.weights=fp32 reads it as it was made"):
        made_with_fp32.check_key(int8)


def test_prefill_chunks_widen_int_weights_to_bf16_and_agree_with_the_kernels(monkeypatch):
    from longchat.runtime import weights

    # Where chunks are widened (bf16 matmuls: AVX512-BF16 or AMX), the kernel's packed layout is
    # the one we unpack. An AVX2-only CPU packs int4 otherwise; there int4 keeps the kernel.
    assert weights._int4_layout_known() or not weights.bf16_matmuls()
    monkeypatch.setattr(weights, "bf16_matmuls", lambda: True)  # the widened path, on any CPU
    w = torch.randn(192, 128, generator=torch.Generator().manual_seed(0)) * 0.05
    x = torch.randn(64, 128, generator=torch.Generator().manual_seed(1))
    for linear in (Int8.quantize(w), Int4.quantize(w)):
        chunk, step = linear(x), linear(x[:1])  # 64 rows: widened when the CPU multiplies bf16 natively
        monkeypatch.setattr(weights, "WIDEN_ROWS", 10**9)
        kernel, kernel_step = linear(x), linear(x[:1])
        monkeypatch.setattr(weights, "WIDEN_ROWS", 16)
        assert ((chunk - kernel).norm() / kernel.norm()).item() < 0.01, linear.fmt
        assert torch.equal(step, kernel_step)  # a decode step always takes the kernel


def test_auto_reads_a_converted_gguf_types_once(tmp_path, default_model_dir):
    """`auto` picks from the GGUF's tensor types; they are kept beside the converted folder, so
    a later load does not parse the GGUF's header (its vocabulary: seconds) again."""
    import torch

    from longchat.runtime.loader import auto_weights

    source = json.loads((default_model_dir / "longchat-source.json").read_text())
    (tmp_path / "longchat-source.json").write_text(json.dumps({"gguf": source["gguf"]}))
    assert auto_weights(tmp_path, torch.device("cpu")) == "int4"
    kept = json.loads((tmp_path / "longchat-source.json").read_text())
    assert kept["tensor_types"].startswith("Q4_")
    kept["gguf"] = str(tmp_path / "gone.gguf")  # the kept types are what is read now
    kept["tensor_types"] = "Q8_0"
    (tmp_path / "longchat-source.json").write_text(json.dumps(kept))
    assert auto_weights(tmp_path, torch.device("cpu")) == "int8"
