"""Options and output helpers shared by the commands. stdout carries answers only."""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from dataclasses import replace
from typing import Iterator, List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

err = Console(stderr=True, highlight=False)

ProfileOpt = typer.Option("auto", "--profile", "-p", help="Context strategy profile: a name (see `longchat profiles`) or a .toml path. Default 'auto': full attention when the input fits the model's effective window, InfLLM past it.")
ModelOpt = typer.Option(None, "--model", "-m", help="A model folder, a .gguf file, a hub id, or 'default' (SmolLM2-135M-Instruct). Default: the profile's model, else 'default'.")
DeviceOpt = typer.Option(None, "--device", help="cpu, cuda, cuda:1 ... Default: CUDA when available, else CPU.")
SetOpt = typer.Option(None, "--set", "-s", help="Override a profile value, e.g. --set generation.temperature=0.7 (repeatable).")
MaxNewOpt = typer.Option(None, "--max-new-tokens", "-n", help="Longest reply in tokens. Default: the profile's.")
TemperatureOpt = typer.Option(None, "--temperature", "-t", help="0 = greedy (the default), higher = more random.")
CompressOpt = typer.Option(None, "--compress", "--rate", help="Compress the input first, keeping this share of its tokens (0-1, e.g. 0.3); question-aware LongLLMLingua unless the profile's compress.method says otherwise.")
KeepOpt = typer.Option(None, "--keep", help="A string compression must keep (repeatable).")
StatsOpt = typer.Option(False, "--stats", help="Print timing and memory figures as one JSON line on stderr (after the answer).")


def note(message: str) -> None:
    """A line for the user on stderr; never mixed into the answer."""
    err.print(f"longchat: {message}", markup=False, soft_wrap=True)


def sampling_from(profile, max_new_tokens: Optional[int], temperature: Optional[float]):
    """The profile's generation settings with the command-line flags on top, validated."""
    from longchat.settings import build
    from dataclasses import asdict

    values = asdict(profile.generation)
    if max_new_tokens is not None:
        values["max_new_tokens"] = max_new_tokens
    if temperature is not None:
        values["temperature"] = temperature
    return build(type(profile.generation), values, "command line")


def open_runner_cli(profile: str, model: Optional[str], device: Optional[str], overrides: Optional[List[str]]):
    from longchat.pipeline import open_runner

    with err.status("loading model...", spinner="dots") if err.is_terminal else _nothing():
        return open_runner(profile, model, device=device, overrides=overrides or [], note=note)


def use_compression(runner, rate: Optional[float], target_tokens: Optional[int] = None) -> None:
    """`--compress RATE` / `--target-tokens N` on top of the profile's [compress] section."""
    from longchat.compress import with_rate

    runner.profile.compress = with_rate(runner.profile.compress, rate, target_tokens)


@contextmanager
def _nothing():
    yield


@contextmanager
def prefill_progress(label: str = "reading", always: bool = False) -> Iterator:
    """A progress bar on stderr for long prefills; a callback (done, total) for the engine."""
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
                        TextColumn("{task.completed:,}/{task.total:,} tokens"), TextColumn("{task.fields[rate]}"),
                        TimeRemainingColumn(),
                        console=err, transient=True)
    task = None
    logged = 0  # tenths of the prompt reported so far, when stderr is a log rather than a terminal
    first: tuple[float, int] | None = None  # (time, tokens done) at the first call: a resumed run starts past 0
    done_now = 0

    def rate() -> str:
        elapsed = time.perf_counter() - first[0]
        return f"{(done_now - first[1]) / elapsed:,.0f} tok/s" if elapsed > 1 else ""

    def update(done: int, total: int) -> None:
        nonlocal task, logged, first, done_now
        done_now = done
        first = first or (time.perf_counter(), done)
        if first[1] >= total:
            return  # all of it was already there (an attached memory): nothing to show
        if not err.is_terminal:
            # A log gets a plain line every 10% of a long prompt instead of bar redraws.
            tenth = done * 10 // total
            if (always or total >= 8192) and tenth > logged:
                logged = tenth
                note(f"{label} {done:,}/{total:,} tokens ({tenth * 10}%, {rate()})")
            return
        if task is None:
            # Short prompts finish before a bar is worth drawing.
            if total < 4096 and not always:
                return
            progress.start()
            task = progress.add_task(label, total=total, rate="")
        progress.update(task, completed=done, total=max(total, done), rate=rate())
        if done >= total:
            progress.stop()

    try:
        yield update
    finally:
        if task is not None:
            progress.stop()


def stream_out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def print_stats(runner, stats, **extra) -> None:
    """The --stats line: one JSON object, the last line on stderr."""
    record = {**stats.as_dict(), "profile": runner.profile.name, "strategy": runner.profile.context.strategy,
              "model": runner.model.name, "device": str(runner.model.device), "load_s": round(runner.model.load_s, 2),
              **extra}
    sys.stderr.flush()
    print(json.dumps(record), file=sys.stderr, flush=True)
