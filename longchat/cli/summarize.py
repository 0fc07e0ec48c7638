"""`longchat summarize [SOURCE...]`: summaries of inputs of any length, stdin by default."""

from __future__ import annotations

from typing import List, Optional

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from longchat.cli.app import app
from longchat.cli.common import (CompressOpt, DeviceOpt, MaxNewOpt, ModelOpt, PlainProgress, ProfileOpt, QuietOpt,
                                 SetOpt, StatsOpt, TemperatureOpt, check_sources, err, note, open_runner_cli,
                                 print_stats, sampling_from, set_quiet, use_compression)


@app.command()
def summarize(
    sources: Optional[List[str]] = typer.Argument(None, metavar="SOURCE", help="Files, PDFs, folders, or - ; stdin when none is given."),
    compress: Optional[float] = CompressOpt,
    profile: str = ProfileOpt,
    model: Optional[str] = ModelOpt,
    device: Optional[str] = DeviceOpt,
    set_: Optional[List[str]] = SetOpt,
    max_new_tokens: Optional[int] = MaxNewOpt,
    temperature: Optional[float] = TemperatureOpt,
    stats: bool = StatsOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Summarise SOURCEs (or stdin) of any length.

    Input longer than the model reads reliably is cut into chunks; each chunk is summarised,
    and the chunk summaries are merged into one (hierarchically, in bounded memory).
    Example: cat app.log | longchat summarize
    """
    from longchat import api

    check_sources(sources or [])
    set_quiet(quiet)
    runner = open_runner_cli(profile, model, device, set_)
    use_compression(runner, compress)
    sampling = sampling_from(runner.profile, max_new_tokens, temperature)
    progress = Progress(SpinnerColumn(), TextColumn("[bold]summarising"), BarColumn(), DownloadColumn(),
                        TextColumn("{task.fields[chunks]} chunks"), TimeElapsedColumn(),
                        console=err, transient=True, disable=quiet or not err.is_terminal)
    task = progress.add_task("summarising", total=None, chunks=0)
    plain = PlainProgress("summarising", unit="bytes")

    def update(done: int, total: int | None, chunks: int) -> None:
        progress.update(task, completed=done, total=total, chunks=chunks)
        if not err.is_terminal:
            plain.update(done, total, f"{chunks} chunks summarised" if chunks != 1 else "1 chunk summarised")

    with progress:
        text, totals = api.summarize(runner, sources or [], sampling=sampling, progress=update, note=note)
    print(text.strip(), flush=True)
    if stats:
        print_stats(runner, totals)
