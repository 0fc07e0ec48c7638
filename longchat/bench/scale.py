"""`longchat bench scale`: what a profile costs on a big model at long lengths, without its weights.

A decoder of a named shape (Llama-3.1-8B: 32 layers, 4096 wide, 8 key/value heads) gets random
weights, made directly on the device, and reads a prompt of random token ids through a
profile's strategy, as `ask` would. Reported per run: prefill and decode tokens/s, prefill model
FLOP utilisation, peak GPU memory (allocated by torch) and peak host RSS.

The answers mean nothing (random weights, random tokens), but the work does not depend on
them: the same matmuls, the same number of memory blocks written and retrieved. Only which
blocks are retrieved differs, so the block loads per decode step of a real model may differ.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from longchat.bench.flops import peak_matmul_flops
from longchat.bench.run import format_length, overrides_for, parse_lengths
from longchat.errors import ConfigError, InputError
from longchat.runtime.generate import Sampling
from longchat import sysinfo
from longchat.sysinfo import peak_rss_mb, reset_peak_rss

_LLAMA3_ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}

# transformers LlamaConfig arguments per shape: the real models' published configs.
SHAPES: dict[str, dict] = {
    "llama3-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=8, vocab_size=128256, max_position_embeddings=131072,
                      rms_norm_eps=1e-5, rope_parameters=_LLAMA3_ROPE),
    "llama3-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                      num_key_value_heads=8, vocab_size=128256, max_position_embeddings=131072,
                      rms_norm_eps=1e-5, tie_word_embeddings=True, rope_parameters={**_LLAMA3_ROPE, "factor": 32.0}),
    "smollm2-135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, vocab_size=49152, max_position_embeddings=8192, rms_norm_eps=1e-5,
                         tie_word_embeddings=True, rope_parameters={"rope_type": "default", "rope_theta": 100000.0}),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=512, max_position_embeddings=4096, rms_norm_eps=1e-5,
                 rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
}


@dataclass
class ScaleRun:
    profile: str
    length: int
    status: str = "ok"             # ok | out of memory | skipped (...)
    prompt_tokens: int = 0
    new_tokens: int = 0
    prefill_s: float = 0.0
    prefill_tok_s: float = 0.0
    prefill_tflop_s: float = 0.0
    mfu: float | None = None
    decode_tok_s: float = 0.0
    gpu_peak_gib: float | None = None      # torch.cuda.max_memory_allocated, weights included
    gpu_reserved_gib: float | None = None  # what torch's allocator held from the driver
    host_peak_gib: float = 0.0             # VmHWM of the process
    state_gib: float = 0.0                 # the strategy's KV / memory blocks at the end


def parse_runs(spec: str) -> list[tuple[str, int]]:
    """"infllm:128k,infllm:1m,full:32k" -> [("infllm", 131072), ...]."""
    runs = []
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        profile, sep, length = item.rpartition(":")
        if not sep or not profile:
            raise ConfigError(f"--runs: {item!r} is not PROFILE:LENGTH (e.g. infllm:128k)")
        runs.append((profile, parse_lengths(length)[0]))
    if not runs:
        raise ConfigError("--runs: name at least one PROFILE:LENGTH")
    return runs


def shape_config(shape: str):
    """The transformers config of a named shape."""
    from transformers import LlamaConfig

    if shape not in SHAPES:
        raise ConfigError(f"--shape: unknown shape {shape!r}; known: {', '.join(SHAPES)}")
    return LlamaConfig(**SHAPES[shape])


def weight_bytes(cfg, dtype: torch.dtype, weights: str = "auto") -> int:
    """Bytes of the shape's weights held as `weights` (`runtime.weights`)."""
    from longchat.runtime.weights import bytes_per_weight, embedding_format

    c, hd = cfg.hidden_size, cfg.head_dim
    per_layer = (cfg.n_heads + 2 * cfg.n_kv_heads) * hd * c + c * cfg.n_heads * hd + 3 * cfg.intermediate_size * c
    embeddings = cfg.vocab_size * c * (1 if cfg.tie_word_embeddings else 2)
    size = torch.empty(0, dtype=dtype).element_size()
    return int(cfg.n_layers * per_layer * bytes_per_weight(weights, dtype)
               + embeddings * bytes_per_weight(embedding_format(weights), dtype) + (2 * cfg.n_layers + 1) * c * size)


def _free_bytes(device: torch.device) -> int | None:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return sysinfo.available_ram()


def random_model(shape: str, device: torch.device, dtype: torch.dtype, seed: int = 0, weights: str = "auto"):
    """A `LoadedModel` of `shape` with N(0, 0.02) weights (norms at 1), built on `device`,
    its projections held as `weights` (each quantised as it is drawn: no fp32 copy stays)."""
    from longchat.runtime.config import ModelConfig
    from longchat.runtime.loader import LoadedModel
    from longchat.runtime.model import Decoder, LayerWeights
    from longchat.runtime.weights import Embedding, embedding_format, make_linear

    start = time.perf_counter()
    cfg = ModelConfig.from_hf(shape_config(shape))
    need, free = weight_bytes(cfg, dtype, weights), _free_bytes(device)
    held = str(dtype).removeprefix("torch.") if weights == "auto" else weights
    if free is not None and need > free:
        raise InputError(f"the {shape} shape needs {need / 2**30:.1f} GiB of weights in {held}, "
                         f"but {device} has {free / 2**30:.1f} GiB free")
    gen = torch.Generator(device=device).manual_seed(seed)

    def w(*size, fmt=weights):
        drawn = torch.randn(*size, generator=gen, device=device, dtype=dtype).mul_(0.02)
        return make_linear(drawn, None, fmt, dtype)

    def ones(n):
        return torch.ones(n, device=device, dtype=dtype)

    c, hd, inter = cfg.hidden_size, cfg.head_dim, cfg.intermediate_size
    layers = [LayerWeights(input_norm=ones(c), qkv=w((cfg.n_heads + 2 * cfg.n_kv_heads) * hd, c),
                           o=w(c, cfg.n_heads * hd), q_norm=None, k_norm=None, post_norm=ones(c),
                           gate_up=w(2 * inter, c), down=w(c, inter))
              for _ in range(cfg.n_layers)]
    table = embedding_format(weights)
    embed = w(cfg.vocab_size, c, fmt=table)
    lm_head = embed if cfg.tie_word_embeddings else w(cfg.vocab_size, c, fmt=table)
    decoder = Decoder(cfg, Embedding(embed, dtype), layers, ones(c), lm_head)
    return LoadedModel(f"random {shape}", Path(f"<random {shape}>"), cfg, decoder, None, time.perf_counter() - start)


def run_scale(shape: str, runs: list[tuple[str, int]], *, device: str | None = None, overrides: list[str] = (),
              new_tokens: int = 32, seed: int = 0, note: Callable[[str], None] = lambda m: None,
              on_run: Callable[[dict, list[ScaleRun]], None] = lambda m, r: None) -> tuple[dict, list[ScaleRun]]:
    """Each (profile, length) in turn on one random model; (machine info, results).
    `on_run(machine, results so far)` after each run.

    A run that runs out of GPU memory is recorded as such and the next one goes on.
    """
    from longchat.api import open_runner
    from longchat.profile import load_profile
    from longchat.runtime.loader import default_dtype, pick_device

    if new_tokens < 2:
        raise ConfigError("--new-tokens must be >= 2 (the first comes out of prefill)")
    # Every profile and override is checked before minutes go into building the weights.
    profiles = {name: load_profile(name, overrides_for(name, list(overrides))) for name, _ in runs}
    formats = {p.runtime.weights for p in profiles.values()}
    if len(formats) > 1:  # one model serves every run
        raise ConfigError(f"the runs' profiles hold the weights differently ({', '.join(sorted(formats))}); "
                          "give one with --set model.weights=...")
    weights = formats.pop()
    dev = pick_device(device)
    dtype = default_dtype(dev)
    model = random_model(shape, dev, dtype, seed, weights)
    held = str(dtype).removeprefix("torch.") if weights == "auto" else weights
    note(f"random {shape}: {model.decoder.weight_bytes / 2**30:.1f} GiB of {held} weights on {dev} in {model.load_s:.1f} s")
    peak = peak_matmul_flops(dev, dtype)
    machine = {"shape": shape, "config": dict(SHAPES[shape]), "device": str(dev),
               "dtype": str(dtype), "weights": weights, "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
               "peak_matmul_tflop_s": round(peak / 1e12, 2), "new_tokens": new_tokens, "overrides": list(overrides)}
    if dev.type == "cuda":
        machine["gpu"] = torch.cuda.get_device_name(dev)
    results = []
    for profile, length in runs:
        runner = open_runner(profiles[profile], note=note, loaded=model)
        result = ScaleRun(runner.profile.name, length)
        if length > runner.window:
            result.status = f"skipped (window {runner.window:,})"
        else:
            _measure(runner, length, new_tokens, seed, peak, result, note)
        runner.engine.reset()
        del runner
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        results.append(result)
        on_run(machine, results)
    return machine, results


def _measure(runner, length: int, new_tokens: int, seed: int, peak: float, result: ScaleRun, note) -> None:
    engine, dev = runner.engine, runner.model.device
    rng = random.Random(f"scale:{seed}:{length}")
    vocab = runner.model.cfg.vocab_size
    prompt = [rng.randrange(vocab) for _ in range(length - new_tokens)]
    # Random weights loop: stop_on_repeat off, so that every decode step the run asks for is timed.
    sampling = Sampling(max_new_tokens=new_tokens, temperature=0.0, stop_on_repeat=0)
    for _ in engine.generate(prompt[: min(len(prompt), 2048)], Sampling(max_new_tokens=2, temperature=0.0)):
        pass  # warm-up: allocator, kernel choice
    engine.reset()
    reset_peak_rss()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    start = last = time.perf_counter()

    def progress(done: int, total: int) -> None:  # a line every 10 s: 1M tokens can take many minutes
        nonlocal last
        now = time.perf_counter()
        if now - last >= 10 or (done == total and now - start >= 10):
            last = now
            note(f"{result.profile} {format_length(length)}: prefill {done:,}/{total:,} tokens, "
                 f"{now - start:.0f} s, {done / (now - start):,.0f} tok/s")

    try:
        for _ in engine.generate(prompt, sampling, progress=progress):
            pass
    except torch.OutOfMemoryError:
        result.status = "out of memory"
        engine.reset()
    except InputError as e:  # infllm's memory blocks would not fit in RAM / on disk
        result.status = "refused"
        note(f"{result.profile} {format_length(length)}: {e}")
    st = engine.stats
    result.prompt_tokens, result.new_tokens = len(prompt), st.new_tokens
    result.prefill_s, result.prefill_tok_s = round(st.prefill_s, 2), round(st.prefill_tok_s, 1)
    result.decode_tok_s = round(st.decode_tok_s, 2)
    if st.prefill_s > 0 and result.status == "ok":
        result.prefill_tflop_s = round(st.prefill_flops / st.prefill_s / 1e12, 3)
        result.mfu = round(st.prefill_flops / st.prefill_s / peak, 3)
    result.host_peak_gib = round(peak_rss_mb() / 1024, 2)
    result.state_gib = round(engine.strategy.reader.memory_bytes() / 2**30, 2)
    if dev.type == "cuda":
        result.gpu_peak_gib = round(torch.cuda.max_memory_allocated(dev) / 2**30, 2)
        result.gpu_reserved_gib = round(torch.cuda.max_memory_reserved(dev) / 2**30, 2)


def scale_line(r: ScaleRun) -> str:
    """One line per finished run, for stderr."""
    if r.status.startswith("skipped"):
        return f"{r.profile} {format_length(r.length)}: {r.status}"
    gpu = f", GPU peak {r.gpu_peak_gib:.1f} GiB" if r.gpu_peak_gib is not None else ""
    return (f"{r.profile} {format_length(r.length)}: {r.status}; prefill {r.prefill_tok_s:,.0f} tok/s "
            f"({r.prefill_s:.0f} s), decode {r.decode_tok_s:.1f} tok/s{gpu}, host peak {r.host_peak_gib:.1f} GiB")


def scale_table(machine: dict, results: list[ScaleRun]):
    from rich.table import Table

    weights = machine.get("weights", "auto")
    held = machine["dtype"] if weights == "auto" else f"{weights} weights"
    title = f"scale - random {machine['shape']}, {machine.get('gpu', machine['device'])}, {held}"
    table = Table(title=title)
    for name in ("profile", "length", "status", "prefill tok/s", "prefill TFLOP/s", "MFU", "decode tok/s",
                 "GPU peak GiB", "host peak GiB", "KV/memory GiB"):
        table.add_column(name, justify="left" if name in ("profile", "status") else "right", no_wrap=True)
    for r in results:
        if r.status != "ok":
            table.add_row(r.profile, format_length(r.length), r.status, *["-"] * 7)
            continue
        table.add_row(r.profile, format_length(r.length), r.status, f"{r.prefill_tok_s:,.0f}",
                      f"{r.prefill_tflop_s:.2f}", f"{100 * r.mfu:.0f}%", f"{r.decode_tok_s:.1f}",
                      "-" if r.gpu_peak_gib is None else f"{r.gpu_peak_gib:.1f}", f"{r.host_peak_gib:.1f}",
                      f"{r.state_gib:.2f}")
    return table


def scale_json(machine: dict, results: list[ScaleRun]) -> dict:
    return {"task": "scale", "machine": machine, "runs": [asdict(r) for r in results]}
