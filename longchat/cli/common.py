"""Options and output helpers shared by the commands. stdout carries answers only."""

from __future__ import annotations

import json
import math
import os
import re
import stat
import sys
import time
from contextlib import contextmanager
from enum import Enum
from typing import Iterator, List, Optional

import typer
from rich.console import Console
from rich.progress import (BarColumn, DownloadColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn,
                           TimeRemainingColumn, TransferSpeedColumn)

from longchat.settings import ANY_LENGTH

err = Console(stderr=True, highlight=False)
# Tables on stdout: as wide as the terminal, or 200 columns into a pipe (nothing cut for grep).
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)

ProfileOpt = typer.Option("auto", "--profile", "-p", help="Context strategy profile: a name (see `longchat profiles`) or a .toml path. Default 'auto': full attention when the input fits the model's effective window, InfLLM past it.")
ModelOpt = typer.Option(None, "--model", "-m", help="A model folder, a .gguf file, a hub id, 'default' (SmolLM2-135M-Instruct), or an OpenAI-compatible engine: openai:URL[#NAME] (see docs/scaling.md). Default: the profile's model, else 'default'.")
def _check_device(value: Optional[str]) -> Optional[str]:
    if value is not None and not re.fullmatch(r"cpu|cuda(:\d+)?|mps|xpu(:\d+)?", value):
        raise typer.BadParameter(f"{value!r}: expected cpu, cuda, cuda:N (or mps, xpu)")
    return value


DeviceOpt = typer.Option(None, "--device", callback=_check_device, help="cpu, cuda, cuda:1 ... Default: CUDA when available, else CPU.")
SetOpt = typer.Option(None, "--set", "-s", help="Override a profile value, e.g. --set generation.temperature=0.7 (repeatable).")

# Option values are checked while the command line is parsed: a bad one costs a usage line (exit
# 2), never a model load. What needs the model's window (-n) is checked from its config, before
# its weights load (`open_runner_cli`).


def check_max_new_tokens(value: Optional[int]) -> Optional[int]:
    if value is not None and not 1 <= value < ANY_LENGTH:
        raise typer.BadParameter(f"{value}: expected a number of tokens from 1 to the model's window")
    return value


def check_temperature(value: Optional[float]) -> Optional[float]:
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise typer.BadParameter(f"{value}: expected a number >= 0 (0 = greedy)")
    return value


def check_rate(value: Optional[float]) -> Optional[float]:
    if value is not None and not (math.isfinite(value) and 0 < value <= 1):
        raise typer.BadParameter(f"{value}: expected the share of tokens to keep, a number in (0, 1], e.g. 0.3")
    return value


def check_text(value: Optional[str]) -> Optional[str]:
    """A question or other text that must say something."""
    if value is not None and not value.strip():
        raise typer.BadParameter("it is empty")
    return value


MaxNewOpt = typer.Option(None, "--max-new-tokens", "-n", callback=check_max_new_tokens, help="Longest reply in tokens. Default: the profile's.")
TemperatureOpt = typer.Option(None, "--temperature", "-t", callback=check_temperature, help="0 = greedy (the default), higher = more random.")
CompressOpt = typer.Option(None, "--compress", "--rate", callback=check_rate, help="Compress the input first, keeping this share of its tokens (0-1, e.g. 0.3); question-aware LongLLMLingua unless the profile's compress.method says otherwise.")
KeepOpt = typer.Option(None, "--keep", help="A string compression must keep (repeatable).")
QuietOpt = typer.Option(False, "--quiet", help="No progress on stderr (notes and errors still go there).")
StatsOpt = typer.Option(False, "--stats", help="Print timing and memory figures as one JSON line on stderr (after the answer).")


IncludeOpt = typer.Option(None, "--include", metavar="PATTERN", help="In folders, read files skipped by default (lock files, minified, generated, data files, vendored folders like node_modules/) that match this gitignore-style pattern, e.g. '*.csv' (repeatable).")
ExcludeOpt = typer.Option(None, "--exclude", metavar="PATTERN", help="Leave out files and folders matching this gitignore-style pattern, e.g. 'tests/' or '*.md' (repeatable).")


def use_selection(include: Optional[List[str]], exclude: Optional[List[str]]) -> None:
    """--include / --exclude for every source this command reads; a bad pattern fails now
    (one line, exit 2), before anything loads."""
    from longchat.sources import select

    select.use(select.Selection(tuple(include or ()), tuple(exclude or ())))


QUIET = False  # --quiet: no progress lines or bars


def set_quiet(quiet: bool) -> None:
    global QUIET
    QUIET = quiet


def usage_error(message: str) -> Exception:
    """A usage mistake found by a command itself: shown like click's own (usage line, the
    mistake) with exit code 2. typer >= 0.2x ships its own copy of click, whose context is current."""
    try:
        from typer._click.exceptions import UsageError
        from typer._click.globals import get_current_context
    except ImportError:
        from click import get_current_context
        from click.exceptions import UsageError
    return UsageError(message, get_current_context(silent=True))


def check_sources(specs: List[str]) -> None:
    """Every SOURCE exists and can be read: checked before the model loads, so a typo costs
    a second, not a model load. Files are read later by their readers."""
    from longchat.errors import InputError
    from longchat.sources.base import cannot_open

    if specs.count("-") > 1:
        raise InputError("stdin ('-') can be given only once")
    for spec in specs:
        if spec == "-":
            continue
        try:
            mode = os.stat(spec).st_mode
            if stat.S_ISDIR(mode):
                os.listdir(spec)
            elif not os.access(spec, os.R_OK):
                raise PermissionError(13, "permission denied", spec)
        except OSError as e:
            raise cannot_open(spec, e) from None


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


def open_runner_cli(profile: str, model: Optional[str], device: Optional[str], overrides: Optional[List[str]],
                    max_new_tokens: Optional[int] = None):
    """The profile, then the model. The reply's length is checked against the window first: for
    a local model from its config, before its weights load; `max_new_tokens` is -n's value."""
    from longchat import api
    from longchat.profile import load_profile
    from longchat.runtime.remote import is_remote

    prof = load_profile(profile, list(overrides or []))
    spec = model or prof.model
    if not is_remote(spec):
        check_reply_fits(prof, max_new_tokens, overrides, api.reply_limit(prof, spec or "default", note))
    with err.status("loading model...", spinner="dots") if err.is_terminal else _nothing():
        runner = api.open_runner(prof, model, device=device, note=note)
    if runner.remote:  # the engine's window is known once it answered
        check_reply_fits(runner.profile, max_new_tokens, overrides, runner.window - 1)
    return runner


def check_reply_fits(prof, max_new_tokens: Optional[int], overrides: Optional[List[str]], limit: int) -> None:
    """-n (or the profile's generation.max_new_tokens) leaves the prompt room in the window."""
    from longchat.errors import ConfigError

    longest = max_new_tokens if max_new_tokens is not None else prof.generation.max_new_tokens
    if longest <= limit:
        return
    what = (f"{longest:,} tokens: the longest reply is {limit:,} (the {limit + 1:,}-token window of profile "
            f"'{prof.name}' on this model, less the prompt)")
    if max_new_tokens is not None:
        raise usage_error(f"Invalid value for '--max-new-tokens' / '-n': {what}")
    given = [o for o in overrides or [] if o.replace(" ", "").startswith("generation.max_new_tokens=")]
    source = f"--set {given[-1]!r}" if given else f"{prof.source}: generation.max_new_tokens"
    raise ConfigError(f"{source}: {what}")


def use_compression(runner, rate: Optional[float], target_tokens: Optional[int] = None) -> None:
    """`--compress RATE` / `--target-tokens N` on top of the profile's [compress] section."""
    from longchat.compress import with_rate

    runner.profile.compress = with_rate(runner.profile.compress, rate, target_tokens)


@contextmanager
def _nothing():
    yield


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class PlainProgress:
    """Progress for a log rather than a terminal: a plain stderr line every 10% of the work
    and at least every `every_s` seconds, with the rate and the time left when they are known."""

    def __init__(self, label: str, unit: str = "tokens", every_s: float = 30.0, min_total: int = 0):
        self.label, self.unit, self.every_s, self.min_total = label, unit, every_s, min_total
        self.first: tuple[float, int] | None = None  # (time, done) at the first call: a resumed run starts past 0
        self.last_line = 0.0
        self.tenths = 0

    def _amount(self, n: float) -> str:
        if self.unit == "bytes":
            from longchat.memory.store import human_bytes

            return human_bytes(n)
        return f"{n:,.0f}"

    def update(self, done: int, total: int | None, extra: str = "") -> None:
        now = time.monotonic()
        if self.first is None:
            self.first, self.last_line = (now, done), now
            return
        if QUIET or (total is not None and (total < self.min_total or self.first[1] >= total)):
            return
        tenth = done * 10 // total if total else 0
        if tenth <= self.tenths and now - self.last_line < self.every_s:
            return
        self.tenths, self.last_line = max(tenth, self.tenths), now
        parts = [f"{done * 100 // total}%"] if total else []
        parts += [extra] if extra else []
        elapsed, gained = now - self.first[0], done - self.first[1]
        if elapsed > 1 and gained > 0:
            rate = gained / elapsed
            parts.append(f"{self._amount(rate)}/s" if self.unit == "bytes" else f"{rate:,.0f} {self.unit}/s")
            if total:
                parts.append(f"ETA {_duration((total - done) / rate)}")
        shown = f"{self._amount(done)}/{self._amount(total)}" if total else self._amount(done)
        unit = "" if self.unit == "bytes" else f" {self.unit}"
        note(f"{self.label} {shown}{unit} ({', '.join(parts)})" if parts else f"{self.label} {shown}{unit}")


@contextmanager
def prefill_progress(label: str = "reading", always: bool = False) -> Iterator:
    """A progress bar on stderr for long prefills (plain lines when stderr is a log); a
    callback (done, total) for the engine."""
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
                        TextColumn("{task.completed:,}/{task.total:,} tokens"), TextColumn("{task.fields[rate]}"),
                        TimeRemainingColumn(),
                        console=err, transient=True)
    plain = PlainProgress(label, min_total=0 if always else 4096)
    task = None
    first: tuple[float, int] | None = None  # (time, tokens done) at the first call: a resumed run starts past 0
    done_now = 0

    def rate() -> str:
        elapsed = time.perf_counter() - first[0]
        return f"{(done_now - first[1]) / elapsed:,.0f} tok/s" if elapsed > 1 else ""

    def update(done: int, total: int) -> None:
        nonlocal task, first, done_now
        if not err.is_terminal:
            plain.update(done, total)
            return
        done_now = done
        first = first or (time.perf_counter(), done)
        if first[1] >= total or QUIET:
            return  # all of it was already there (an attached memory): nothing to show
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


class ReaderLeft(Exception):
    """stdout's reader went away (`longchat ask ... | head`). Not an OSError, so that typer,
    which turns a broken pipe into a silent exit 1, lets it through to `main` (exit 0)."""


def stream_out(text: str) -> None:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        raise ReaderLeft() from None


def print_stats(runner, stats, **extra) -> None:
    """The --stats line: one JSON object, the last line on stderr."""
    record = {**stats.as_dict(), "profile": runner.profile.name, "strategy": runner.profile.context.strategy,
              **_held_as(runner),
              "model": runner.model.name, "device": str(runner.model.device), "load_s": round(runner.model.load_s, 2),
              **extra}
    sys.stderr.flush()
    print(json.dumps(record), file=sys.stderr, flush=True)


def _held_as(runner) -> dict:
    """How a local model is held: its weight format and the format of the KV cache the last
    reply read (`full`'s follows `[runtime] kv`; the other strategies hold the model's dtype)."""
    dec = runner.model.decoder
    if dec is None:  # a remote engine
        return {}
    from longchat.context.full import FullAttention
    from longchat.context.kv import dtype_name

    from longchat.runtime.native import NativeStep

    reader = runner.engine.strategy.reader
    kv = reader.kv.name if isinstance(reader, FullAttention) else dtype_name(dec.dtype)
    # how a one-token step ran: in C (runtime/native.py) where the reader gives it its cache
    step = "native" if isinstance(dec.step, NativeStep) and reader.offers_native() else "torch"
    if dec.step is not None and not isinstance(dec.step, NativeStep):
        step = "compiled"
    return {"weights": dec.weight_format, "kv": kv, "decode": step}


class ReadAs(str, Enum):
    """`--as`: read the input as a log (templates first) or as text; auto: found from its first lines."""

    auto = "auto"
    log = "log"
    text = "text"


def mine_log(api, sources, pieces, fmt, filters=None):
    """The template pass (`api.mine_log`), with progress on stderr: a bar on a terminal, plain
    lines otherwise, and a line on what it found."""
    total = None
    if sources and all(s != "-" and os.path.isfile(s) for s in sources):
        total = sum(os.path.getsize(s) for s in sources)
    progress = Progress(SpinnerColumn(), TextColumn("[bold]mining templates"), BarColumn(), DownloadColumn(),
                        TransferSpeedColumn(), TextColumn("{task.fields[lines]:,} lines, {task.fields[templates]:,} templates"),
                        TimeRemainingColumn(), console=err, transient=True, disable=QUIET or not err.is_terminal)
    task = progress.add_task("mining", total=total, lines=0, templates=0)
    plain = PlainProgress("mining", unit="bytes")

    def update(done: int, lines: int, templates: int) -> None:
        progress.update(task, completed=done, lines=lines, templates=templates)
        if not err.is_terminal:
            plain.update(done, total, f"{lines:,} lines, {templates:,} templates")

    with progress:
        table = api.mine_log(pieces, fmt, filters, progress=update)
    if not QUIET:
        from longchat.logs.table import plural
        from longchat.memory.store import human_bytes

        rate = table.bytes / max(table.seconds, 1e-9)
        note(f"mined {plural(table.lines, 'line')} ({human_bytes(table.bytes)}) into {plural(len(table.templates), 'template')} "
             f"in {table.seconds:.1f}s ({human_bytes(rate)}/s)")
    return table
