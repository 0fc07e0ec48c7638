"""`longchat bench ...`: accuracy, speed and memory on long-context tasks, and CLI start-up time."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from longchat.cli.app import app
from longchat.cli.common import DeviceOpt, ModelOpt, SetOpt, check_rate, err, note

bench_app = typer.Typer(
    help="Measure accuracy, speed and memory on long-context tasks, and start-up time.",
    no_args_is_help=True,
)
app.add_typer(bench_app, name="bench")

LengthsOpt = typer.Option("1k,2k,4k,8k", "--lengths", "-l", help="Comma-separated lengths in tokens (prompt + reply); k = 1024, e.g. 1k,2k,1500,8k.")
SamplesOpt = typer.Option("5", "--samples", help="Prompts per length, e.g. 5, or per length: 5,16k:20,64k:3. The answer's depth is spread evenly from start (0) to end (1).")
SeedOpt = typer.Option(0, "--seed", help="Seed for the hidden answers.")
JsonOpt = typer.Option(None, "--json", help="Also write every result (per sample, per length, machine info) to this JSON file.")
VsTransformersOpt = typer.Option(False, "--vs-transformers", help="Also time plain transformers `generate` on each length's first prompt and compare (3 rounds, taking turns with ours; medians).")


def _stdout() -> Console:
    # Piped output gets a wide table instead of rich's 80-column default, so no header wraps.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 320)


BenchProfileOpt = typer.Option("full", "--profile", "-p", help="Profile(s) to measure, comma-separated to compare side by side on the same prompts, e.g. full,infllm.")
PlotOpt = typer.Option(None, "--plot", help="Also draw accuracy and prefill speed vs length per profile into this PNG file.")


def run_bench_task(task_name: str, lengths: str, samples: str, profile: str, model: Optional[str],
                   device: Optional[str], set_: Optional[List[str]], seed: int, json_path: Optional[str],
                   vs_transformers: bool, plot_path: Optional[str], compress: Optional[float] = None) -> None:
    """What every task command does: parse, run each profile, print the table, write JSON and PNG."""
    from longchat.bench.report import hf_line, results_table, sample_line, write_json, write_plot
    from longchat.bench.run import parse_lengths, parse_samples, run_profiles
    from longchat.bench.tasks import get_task
    from longchat.errors import ConfigError

    task = get_task(task_name)
    wanted = parse_lengths(lengths)
    counts = parse_samples(samples, wanted)
    for flag, path in (("--json", json_path), ("--plot", plot_path)):
        if path and not Path(path).expanduser().parent.is_dir():
            raise ConfigError(f"{flag}: the folder of {path} does not exist")
    profiles = [p.strip() for p in profile.split(",") if p.strip()]
    set_ = list(set_ or [])
    if compress is not None:
        set_.append(f"compress.rate={compress}")
        if not any(x.replace(" ", "").startswith("compress.method=") for x in set_):
            set_.append('compress.method="longllmlingua"')

    def progress(line: str) -> None:
        err.print(line, markup=False, highlight=False, soft_wrap=True)

    results = run_profiles(profiles, task, wanted, model=model, device=device, overrides=set_ or [], note=note,
                           samples=counts, seed=seed, vs_transformers=vs_transformers,
                           on_sample=lambda s: progress(sample_line(task.name, s, counts[s.length])),
                           on_hf=lambda r: progress(hf_line(r)))
    if json_path:
        write_json(results, Path(json_path).expanduser())
        note(f"wrote {json_path}")
    if plot_path:
        write_plot(results, Path(plot_path).expanduser())
        note(f"wrote {plot_path}")
    _stdout().print(results_table(results))


def _task_options(task_name: str, summary: str):
    """A `longchat bench TASK` command; every task takes the same options."""

    def command(
        lengths: str = LengthsOpt,
        samples: str = SamplesOpt,
        profile: str = BenchProfileOpt,
        model: Optional[str] = ModelOpt,
        device: Optional[str] = DeviceOpt,
        set_: Optional[List[str]] = SetOpt,
        seed: int = SeedOpt,
        json_path: Optional[str] = JsonOpt,
        vs_transformers: bool = VsTransformersOpt,
        plot_path: Optional[str] = PlotOpt,
        compress: Optional[float] = typer.Option(None, "--compress", callback=check_rate, help="Compress each prompt's haystack to this share of its tokens first (question-aware LongLLMLingua), then answer; adds compression columns."),
    ) -> None:
        run_bench_task(task_name, lengths, samples, profile, model, device, set_, seed, json_path,
                       vs_transformers, plot_path, compress)

    command.__doc__ = summary
    bench_app.command(name=task_name)(command)


_task_options("passkey", """Find a 5-digit pass key hidden in filler text, at each length; greedy, completion style.

    Prints a table (accuracy, prefill and decode tok/s, peak RSS per profile and length) on stdout and one line per prompt on stderr. Lengths over a profile's window are reported as skipped.

    Example: longchat bench passkey --lengths 2k,16k,32k --samples 5 -p full,infllm --json out.json --plot out.png
    """)
_task_options("needles", """Several key/value needles in varied prose; ask for one. Same options and output as `passkey`.

    Example: longchat bench needles --lengths 2k,32k --samples 10 -p infllm --plot needles.png
    """)


@bench_app.command()
def scale(
    shape: str = typer.Option("llama3-8b", "--shape", help="Model shape with random weights: llama3-8b, llama3-1b, smollm2-135m or tiny."),
    runs: str = typer.Option("infllm:128k,full:32k", "--runs", help="PROFILE:LENGTH pairs, comma-separated; k = 1024, m = 1024**2, e.g. infllm:128k,infllm:1m,full:32k."),
    new_tokens: int = typer.Option(32, "--new-tokens", "-n", min=1, help="Tokens decoded after each prompt (no stop token: all of them run)."),
    device: Optional[str] = DeviceOpt,
    set_: Optional[List[str]] = SetOpt,
    json_path: Optional[str] = JsonOpt,
) -> None:
    """Cost of a profile on a big model at long lengths, with random weights (no download).

    Builds a model of the shape's published config with random weights on the device (GPU in bf16 when there is one) and reads random token ids through each profile: prefill and decode tok/s, prefill MFU, peak GPU memory, peak host RSS. Answers mean nothing; the work is the same as a real model's. The JSON file is rewritten after every run.

    Example (GPU): longchat bench scale --shape llama3-8b --runs infllm:128k,full:32k --json scale.json
    1M tokens of Llama-3-8B memory blocks take ~140 GB at 16 bits: add --set infllm.store_bits=8 (or infllm.disk=true).
    """
    import json

    from longchat.bench.scale import parse_runs, run_scale, scale_json, scale_line, scale_table
    from longchat.errors import ConfigError

    pairs = parse_runs(runs)
    out = Path(json_path).expanduser() if json_path else None
    if out and not out.parent.is_dir():
        raise ConfigError(f"--json: the folder of {json_path} does not exist")
    def on_run(machine: dict, results: list) -> None:
        err.print(scale_line(results[-1]), markup=False, highlight=False, soft_wrap=True)
        if out:  # after every run: a long run that is cut short keeps the ones before it
            out.write_text(json.dumps(scale_json(machine, results), indent=1) + "\n")

    machine, results = run_scale(shape, pairs, device=device, overrides=list(set_ or []), new_tokens=new_tokens,
                                 note=note, on_run=on_run)
    if out:
        note(f"wrote {json_path}")
    _stdout().print(scale_table(machine, results))


@bench_app.command()
def decode(
    model: Optional[str] = ModelOpt,
    weights: str = typer.Option("default,int4/fp32,fp32/fp32", "--weights", "-w", help="What to compare, comma-separated: WEIGHTS[/KV] (weights: auto, fp32, bf16, fp16, int8, int4; KV cache: auto, fp32, bf16, fp16, int8) or default (no flags); the first is the reference for 'same tokens'."),
    lengths: str = typer.Option("1k,4k,16k", "--lengths", "-l", help="Prompt lengths in tokens, comma-separated; k = 1024."),
    new_tokens: int = typer.Option(64, "--new-tokens", "-n", min=1, help="Tokens decoded greedily after each prompt (stop tokens ignored: every step runs)."),
    rounds: int = typer.Option(2, "--rounds", min=1, help="Rounds, taking turns between the engines; the table shows medians."),
    llama_cpp: Optional[bool] = typer.Option(None, "--llama-cpp/--no-llama-cpp", help="Also run llama.cpp on the same GGUF and token ids. Default: when llama-cpp-python is installed (pip install llama-cpp-python)."),
    device: Optional[str] = DeviceOpt,
    json_path: Optional[str] = JsonOpt,
) -> None:
    """Prefill and decode tok/s and peak RSS per weight and KV cache format, beside llama.cpp when installed.

    Each measurement runs in its own process (load, prefill the prompt, decode), so its peak RSS is its own. The prompt is natural prose (the bundled sample, repeated), the same token ids for every engine. Rounds take turns between the engines.

    Example: longchat bench decode --weights default,int4/fp32,fp32/fp32 --lengths 1k,4k,16k --rounds 2
    """
    from longchat.bench.decode import LLAMA_CPP, medians, run_decode, write_json
    from longchat.bench.run import parse_lengths
    from longchat.errors import ConfigError

    out = Path(json_path).expanduser() if json_path else None
    if out and not out.parent.is_dir():
        raise ConfigError(f"--json: the folder of {json_path} does not exist")
    formats = [f.strip() for f in weights.split(",") if f.strip()]
    spec = model or "default"

    def on_run(run, r: int) -> None:
        err.print(f"round {r + 1}: {run.engine} {run.length:,} tokens: prefill {run.prefill_tok_s:,.0f} tok/s, "
                  f"decode {run.decode_tok_s:.1f} tok/s, peak RSS {run.peak_rss_mib:,.0f} MiB",
                  markup=False, highlight=False)

    done = run_decode(spec, formats, parse_lengths(lengths), new_tokens=new_tokens, rounds=rounds, device=device,
                      llama_cpp=llama_cpp, on_run=on_run)
    rows = medians(done)
    with_llama = any(r["engine"] == LLAMA_CPP for r in rows)
    table = Table(title=f"decode - {spec}, medians of {rounds} round(s), {new_tokens} new tokens")
    for name in ("engine", "prompt", "prefill tok/s", "decode tok/s", "peak RSS MiB", "weights MiB", "same tokens"):
        table.add_column(name, justify="left" if name == "engine" else "right")
    if with_llama:
        for name in ("prefill x llama.cpp", "decode x llama.cpp", "RSS x llama.cpp"):
            table.add_column(name, justify="right")
    for row in rows:
        label = row["engine"] if row["engine"] in (LLAMA_CPP, row["held"]) else f"{row['engine']} ({row['held']})"
        cells = [label, f"{row['length']:,}", f"{row['prefill_tok_s']:,.0f}", f"{row['decode_tok_s']:.1f}",
                 f"{row['peak_rss_mib']:,.0f}", f"{row['weights_mib']:,.0f}", f"{row['same_tokens']}/{new_tokens}"]
        if with_llama:
            cells += [f"{row[k]:.2f}" if row.get(k) is not None else "" for k in
                      ("prefill_tok_s_vs_llama_cpp", "decode_tok_s_vs_llama_cpp", "peak_rss_mib_vs_llama_cpp")]
        table.add_row(*cells)
    if out:
        write_json(str(out), spec, done, rows)
        note(f"wrote {json_path}")
    _stdout().print(table)


@bench_app.command()
def startup(
    model: Optional[str] = ModelOpt,
    warm_runs: int = typer.Option(2, "--warm-runs", min=1, help="How many warm `ask` runs to time."),
) -> None:
    """Time `longchat ask` from a shell: cold (empty cache, so the model is converted) vs warm.

    Runs the real CLI as subprocesses with a temporary LONGCHAT_HOME on a one-line file.
    """
    from longchat.bench.startup import time_startup

    runs = time_startup(model, warm_runs=warm_runs,
                        on_run=lambda r: err.print(f"{r.label}: {r.seconds:.1f} s", markup=False, highlight=False))
    table = Table(title="longchat start-up (subprocess wall time)")
    table.add_column("run")
    table.add_column("seconds", justify="right")
    table.add_column("answer")
    for r in runs:
        table.add_row(r.label, f"{r.seconds:.1f}", "" if r.label.startswith("help") else r.output[:60])
    _stdout().print(table)
