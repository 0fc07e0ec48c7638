"""`longchat bench ...`: accuracy, speed and memory on long-context tasks, and CLI start-up time."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from longchat.cli import app
from longchat.cli.common import DeviceOpt, ModelOpt, ProfileOpt, SetOpt, err, note, open_runner_cli

bench_app = typer.Typer(
    help="Measure accuracy, speed and memory on long-context tasks, and start-up time.",
    no_args_is_help=True,
)
app.add_typer(bench_app, name="bench")

LengthsOpt = typer.Option("1k,2k,4k,8k", "--lengths", "-l", help="Comma-separated lengths in tokens (prompt + reply); k = 1024, e.g. 1k,2k,1500,8k.")
SamplesOpt = typer.Option(5, "--samples", min=1, help="Prompts per length; the answer's depth is spread evenly from start (0) to end (1).")
SeedOpt = typer.Option(0, "--seed", help="Seed for the hidden answers.")
JsonOpt = typer.Option(None, "--json", help="Also write every result (per sample, per length, machine info) to this JSON file.")
VsTransformersOpt = typer.Option(False, "--vs-transformers", help="Also time plain transformers `generate` on each length's first prompt and compare.")


def _stdout() -> Console:
    # Piped output gets a wide table instead of rich's 80-column default, so no header wraps.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def run_bench_task(task_name: str, lengths: str, samples: int, profile: str, model: Optional[str],
                   device: Optional[str], set_: Optional[List[str]], seed: int, json_path: Optional[str],
                   vs_transformers: bool) -> None:
    """What every task command does: parse, run, print the table, write the JSON."""
    from longchat.bench.report import hf_line, results_table, sample_line, write_json
    from longchat.bench.run import parse_lengths, run_task
    from longchat.bench.tasks import get_task
    from longchat.errors import ConfigError

    task = get_task(task_name)
    wanted = parse_lengths(lengths)
    if json_path and not Path(json_path).expanduser().parent.is_dir():
        raise ConfigError(f"--json: the folder of {json_path} does not exist")
    runner = open_runner_cli(profile, model, device, set_)

    def progress(line: str) -> None:
        err.print(line, markup=False, highlight=False, soft_wrap=True)

    result = run_task(runner, task, wanted, samples=samples, seed=seed, vs_transformers=vs_transformers,
                      on_sample=lambda s: progress(sample_line(task.name, s, samples)),
                      on_hf=lambda r: progress(hf_line(r)), note=note)
    if json_path:
        write_json(result, Path(json_path).expanduser())
        note(f"wrote {json_path}")
    _stdout().print(results_table(result))


@bench_app.command()
def passkey(
    lengths: str = LengthsOpt,
    samples: int = SamplesOpt,
    profile: str = ProfileOpt,
    model: Optional[str] = ModelOpt,
    device: Optional[str] = DeviceOpt,
    set_: Optional[List[str]] = SetOpt,
    seed: int = SeedOpt,
    json_path: Optional[str] = JsonOpt,
    vs_transformers: bool = VsTransformersOpt,
) -> None:
    """Find a 5-digit pass key hidden in filler text, at each length; greedy, completion style.

    Prints a table (accuracy, prefill and decode tok/s, peak RSS) on stdout and one line per prompt on stderr. Lengths over the profile's window are reported as skipped.

    Example: longchat bench passkey --lengths 1k,2k,4k,8k --samples 5 --json out.json
    """
    run_bench_task("passkey", lengths, samples, profile, model, device, set_, seed, json_path, vs_transformers)


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
