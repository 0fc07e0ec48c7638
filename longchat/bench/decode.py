"""Prefill and decode speed and peak memory per weight format and KV cache format, beside
llama.cpp when it is installed (`pip install llama-cpp-python`).

An engine is `WEIGHTS[/KV]` (`model.weights`, `model.kv`; KV defaults to `auto`), or `default`:
what a user gets with no flags.

Every measurement is its own subprocess (`python -m longchat.bench.decode WORKER-JSON`), so
that its peak RSS is its own: the model load, the prompt's prefill and the greedy decode of a
fixed number of tokens (stop tokens ignored: every step runs). Rounds alternate the formats
(and llama.cpp), and the table holds medians, so a noisy machine hits all of them alike.

Both engines read the same token ids: ours are given to llama.cpp as ids, not as text.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from longchat.errors import ConfigError, LongchatError

LLAMA_CPP = "llama.cpp"


@dataclass
class DecodeRun:
    engine: str            # WEIGHTS[/KV], "default" or "llama.cpp", as asked
    length: int            # prompt tokens
    held: str = ""         # what the model and cache were held as: "int4/bf16"
    prefill_tok_s: float = 0.0
    decode_tok_s: float = 0.0
    peak_rss_mib: float = 0.0
    load_s: float = 0.0
    weights_mib: float = 0.0
    tokens: list[int] = field(default_factory=list)


def document_ids(tokenizer, length: int) -> list[int]:
    """`length` token ids of natural prose: the bundled sample document, repeated."""
    text = (Path(__file__).resolve().parent.parent / "samples" / "lighthouse.md").read_text(encoding="utf-8")
    ids = tokenizer.encode(text, add_special_tokens=False)
    return (ids * (length // len(ids) + 1))[:length]


def _peak_rss_mib() -> float:
    from longchat.sysinfo import peak_rss_mb

    return round(peak_rss_mb(), 1)


def parse_engine(engine: str) -> tuple[str, str]:
    """`WEIGHTS[/KV]` or `default` -> (weights, kv), each checked."""
    from longchat.context.kv import KV_FORMATS
    from longchat.runtime.weights import check_format

    weights, _, kv = ("auto/auto" if engine == "default" else engine).partition("/")
    check_format(weights)
    if (kv or "auto") not in KV_FORMATS:
        raise ConfigError(f"bench decode: KV format {kv!r} in {engine!r}; allowed: {', '.join(KV_FORMATS)}")
    return weights, kv or "auto"


def measure_ours(spec: str, engine_spec: str, length: int, new_tokens: int, device: str | None) -> DecodeRun:
    import torch

    from longchat.context import strategy_class
    from longchat.runtime.generate import Engine
    from longchat.runtime.loader import load_model
    from longchat.runtime.rope import Rope

    fmt, kv = parse_engine(engine_spec)
    model = load_model(spec, device=device, weights=fmt, note=lambda m: None)
    ids = document_ids(model.tokenizer, length)
    dec = model.decoder
    strategy = strategy_class("full")(model.cfg, Rope(model.cfg.hf, dec.device), device=dec.device, dtype=dec.dtype,
                                      kv=kv)
    engine = Engine(model, strategy, prefill_chunk=512)
    strategy.prepare(length + new_tokens)  # as `Engine.generate` does: the KV cache sized once
    start = time.perf_counter()
    logits = engine.prefill(ids)
    prefill_s = time.perf_counter() - start
    tokens = [int(torch.argmax(logits))]
    start = time.perf_counter()
    for _ in range(new_tokens - 1):
        logits = engine._forward([tokens[-1]], "last")[0]
        tokens.append(int(torch.argmax(logits)))
    if dec.device.type == "cuda":
        torch.cuda.synchronize()
    decode_s = time.perf_counter() - start
    return DecodeRun(engine_spec, length, f"{dec.weight_format}/{strategy.kv.name}", round(length / prefill_s, 1),
                     round((new_tokens - 1) / decode_s, 2), _peak_rss_mib(), round(model.load_s, 2),
                     round(dec.weight_bytes / 2**20, 1), tokens)


def measure_llama_cpp(gguf: str, ids: list[int], new_tokens: int) -> DecodeRun:
    """llama.cpp on the same token ids, which the parent made with our tokenizer: this process
    loads neither transformers nor torch, so its peak RSS is llama.cpp's own."""
    from llama_cpp import Llama

    length = len(ids)
    threads = len(os.sched_getaffinity(0))
    start = time.perf_counter()
    llm = Llama(model_path=gguf, n_ctx=length + new_tokens + 8, n_batch=512, n_threads=threads,
                n_threads_batch=threads, verbose=False)
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    llm.eval(ids)
    prefill_s = time.perf_counter() - start
    tokens = [_last_argmax(llm)]
    start = time.perf_counter()
    for _ in range(new_tokens - 1):
        llm.eval([tokens[-1]])
        tokens.append(_last_argmax(llm))
    decode_s = time.perf_counter() - start
    return DecodeRun(LLAMA_CPP, length, "gguf/f16", round(length / prefill_s, 1), round((new_tokens - 1) / decode_s, 2),
                     _peak_rss_mib(), round(load_s, 2), round(Path(gguf).stat().st_size / 2**20, 1), tokens)


def _last_argmax(llm) -> int:
    """The greedy next token after `llm.eval`: llama-cpp-python 0.3 keeps no `scores` rows
    unless every position's logits are asked for, so read the context's last row directly."""
    import numpy as np

    return int(np.argmax(np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))))


def llama_cpp_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def _gguf_of(spec: str) -> str | None:
    """The GGUF file llama.cpp can read for `spec` (the default model's, or a .gguf path)."""
    from longchat.runtime.loader import default_gguf_path

    if spec in ("", "default"):
        return str(default_gguf_path())
    return spec if spec.endswith(".gguf") and Path(spec).is_file() else None


def _worker(job: dict) -> DecodeRun:
    """One measurement in a fresh process; its result is the last line of its stdout."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "longchat.bench.decode", json.dumps(job)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise LongchatError(f"bench decode: the {job['engine']} run at {job['length']} tokens failed: {last}")
    return DecodeRun(**json.loads(proc.stdout.strip().splitlines()[-1]))


def run_decode(spec: str, formats: list[str], lengths: list[int], *, new_tokens: int = 64, rounds: int = 2,
               device: str | None = None, llama_cpp: bool | None = None,
               on_run: Callable[[DecodeRun, int], None] = lambda r, i: None) -> list[list[DecodeRun]]:
    """Every (engine, length) `rounds` times, taking turns; [round][run]. `llama_cpp`: None = when
    it is installed and the model is a GGUF."""
    for engine in formats:
        parse_engine(engine)
    if new_tokens < 2:
        raise ConfigError("--new-tokens must be >= 2 (the first comes out of prefill)")
    gguf = _gguf_of(spec)
    if llama_cpp and gguf is None:
        raise ConfigError("--llama-cpp needs a GGUF model (the default, or a .gguf file)")
    if llama_cpp and not llama_cpp_available():
        raise ConfigError("--llama-cpp: llama-cpp-python is not installed; pip install llama-cpp-python (builds in a few minutes)")
    with_llama = bool(gguf) and (llama_cpp if llama_cpp is not None else llama_cpp_available())
    engines = list(formats) + ([LLAMA_CPP] if with_llama else [])
    ids_files = _ids_files(spec, lengths) if with_llama else {}
    try:
        return _rounds(engines, spec, gguf, lengths, new_tokens, rounds, device, ids_files, on_run)
    finally:
        for path in ids_files.values():
            Path(path).unlink(missing_ok=True)


def _ids_files(spec: str, lengths: list[int]) -> dict[int, str]:
    """The prompt's ids per length, in temporary files for the llama.cpp workers."""
    import tempfile

    from longchat.runtime.loader import load_tokenizer

    tokenizer = load_tokenizer(spec)
    out = {}
    for length in lengths:
        with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="longchat-ids-", delete=False) as f:
            json.dump(document_ids(tokenizer, length), f)
        out[length] = f.name
    return out


def _rounds(engines, spec, gguf, lengths, new_tokens, rounds, device, ids_files, on_run) -> list[list[DecodeRun]]:
    done: list[list[DecodeRun]] = []
    for r in range(rounds):
        order = engines if r % 2 == 0 else engines[::-1]
        runs = []
        for length in lengths:
            for engine in order:
                job = {"engine": engine, "spec": spec, "gguf": gguf, "length": length, "new_tokens": new_tokens,
                       "device": device, "ids_file": ids_files.get(length)}
                runs.append(_worker(job))
                on_run(runs[-1], r)
        done.append(runs)
    return done


def medians(rounds: list[list[DecodeRun]]) -> list[dict]:
    """One row per (engine, length): medians over rounds, the greedy tokens' agreement with the
    first format's (the reference, usually fp32), and the ratios to llama.cpp."""
    keyed: dict[tuple[str, int], list[DecodeRun]] = {}
    for runs in rounds:
        for run in runs:
            keyed.setdefault((run.engine, run.length), []).append(run)
    rows = []
    for (engine, length), runs in keyed.items():
        row = {"engine": engine, "length": length, "held": runs[0].held, "rounds": len(runs)}
        for key in ("prefill_tok_s", "decode_tok_s", "peak_rss_mib", "load_s", "weights_mib"):
            row[key] = round(statistics.median(getattr(r, key) for r in runs), 2)
        row["tokens"] = runs[0].tokens
        rows.append(row)
    for row in rows:
        same = [r for r in rows if r["length"] == row["length"]]
        ref = same[0]["tokens"]
        row["same_tokens"] = next((i for i, (a, b) in enumerate(zip(ref, row["tokens"])) if a != b),
                                  min(len(ref), len(row["tokens"])))
        llama = next((r for r in same if r["engine"] == LLAMA_CPP), None)
        if llama and row is not llama:
            for key in ("prefill_tok_s", "decode_tok_s", "peak_rss_mib"):
                row[f"{key}_vs_llama_cpp"] = round(row[key] / llama[key], 2) if llama[key] else None
    return rows


def write_json(path: str, spec: str, rounds: list[list[DecodeRun]], rows: list[dict]) -> None:
    import platform

    import torch

    machine = {"python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
               "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
               "load_avg_end": [round(x, 2) for x in os.getloadavg()]}
    data = {"model": spec, "machine": machine, "rows": rows, "rounds": [[asdict(r) for r in runs] for runs in rounds]}
    Path(path).write_text(json.dumps(data, indent=1) + "\n")


def main(argv: list[str]) -> int:
    job = json.loads(argv[0])
    if job["engine"] == LLAMA_CPP:
        run = measure_llama_cpp(job["gguf"], json.loads(Path(job["ids_file"]).read_text()), job["new_tokens"])
    else:
        run = measure_ours(job["spec"], job["engine"], job["length"], job["new_tokens"], job["device"])
    print(json.dumps(asdict(run)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
