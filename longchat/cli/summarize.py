"""`longchat summarize [SOURCE...]`: summaries of inputs of any length, stdin by default.

A log (found from its first lines, or `--as log`) is mined into a template table first and the
model reads the table, not the log; other text is summarised hierarchically.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from typing import List, Optional

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from longchat.cli import common
from longchat.cli.app import app
from longchat.cli.common import (CompressOpt, DeviceOpt, ExcludeOpt, IncludeOpt, MaxNewOpt, ModelOpt, PlainProgress, ProfileOpt,
                                 QuietOpt, ReadAs, SetOpt, StatsOpt, TemperatureOpt, check_sources, err, mine_log,
                                 note, open_runner_cli, print_stats, sampling_from, set_quiet, usage_error,
                                 use_compression, use_selection)


LOG_REPORT_TOKENS = 160  # a log report's longest reply unless -n says otherwise


@app.command()
def summarize(
    sources: Optional[List[str]] = typer.Argument(None, metavar="SOURCE", help="Files, PDFs, folders, or - ; stdin when none is given."),
    read_as: ReadAs = typer.Option(ReadAs.auto, "--as", help="auto: a log when its first lines look like one (stated on stderr); log: mine templates whatever it looks like; text: summarise it as prose."),
    no_model: bool = typer.Option(False, "--no-model", help="Logs: print the template table and ranking alone, in seconds; no model is loaded."),
    as_json: bool = typer.Option(False, "--json", help="Logs: the template table and ranking as JSON (with the model's report unless --no-model)."),
    since: Optional[str] = typer.Option(None, "--since", help="Logs: records at or after this time (2026-12-01, '2026-12-01 05:00', 'Dec 1 05:00', 05:00, or seconds after boot for dmesg)."),
    until: Optional[str] = typer.Option(None, "--until", help="Logs: records at or before this time (same forms as --since)."),
    level: Optional[str] = typer.Option(None, "--level", help="Logs: the lowest level kept: debug, info, warn, error or fatal."),
    grep: Optional[str] = typer.Option(None, "--grep", help="Logs: only records matching this regular expression (stack traces included)."),
    include: Optional[List[str]] = IncludeOpt,
    exclude: Optional[List[str]] = ExcludeOpt,
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

    A log (syslog, journald, nginx, dmesg, Python logging, JSON lines ...) is read in one pass
    into a table of message templates (counts, levels, times) ranked errors first; the model
    writes its report from that table, with the table's exact figures under it.
    Other input longer than the model reads reliably is cut into chunks; each chunk is
    summarised, and the chunk summaries are merged into one (hierarchically, in bounded memory).
    Example: cat app.log | longchat summarize ; journalctl -b | longchat summarize --no-model
    """
    from longchat.logs import Filters

    log_only = [flag for flag, on in (("--no-model", no_model), ("--since", since), ("--until", until),
                                      ("--level", level), ("--grep", grep)) if on]
    if read_as == ReadAs.text and log_only:
        raise usage_error(f"{log_only[0]} works on logs; drop it or --as text")
    try:
        filters = Filters.parse(since, until, level, grep)
    except ValueError as e:
        raise usage_error(str(e)) from None
    use_selection(include, exclude)
    check_sources(sources or [])
    set_quiet(quiet)
    from longchat import api

    fmt, pieces = api.open_input(sources or [], note=note)
    fmt = api.log_format(fmt, read_as.value, note)
    if fmt is None:
        if log_only:
            from longchat.errors import InputError

            if not any(is_text and piece.strip() for piece, is_text in pieces):
                raise InputError("the input is empty")
            raise InputError(f"the input does not look like a log, and {log_only[0]} needs one; "
                             f"pass --as log to read each line as a record")
        return _summarize_text(api, sources, pieces, as_json, compress, profile, model, device, set_,
                               max_new_tokens, temperature, stats)
    if compress is not None:
        note("--compress is for prose; a log's template table is what the model reads (--as text to compress the log)")
    table = mine_log(api, sources, pieces, fmt, filters)
    if no_model:
        print(json.dumps(table.as_json(), ensure_ascii=False) if as_json else table.render(max_items=50), flush=True)
        return
    runner = open_runner_cli(profile, model, device, set_, max_new_tokens)
    # A log's report is short by default: the exact figures come from the table under it.
    longest = max_new_tokens or min(LOG_REPORT_TOKENS, runner.profile.generation.max_new_tokens)
    sampling = sampling_from(runner.profile, longest, temperature)
    with err.status("writing the report from the table...", spinner="dots") if err.is_terminal and not quiet \
            else nullcontext():
        text, totals = api.summarize_log(runner, table, sampling=sampling, note=note)
    if as_json:
        print(json.dumps({**table.as_json(), "report": text}, ensure_ascii=False), flush=True)
    else:
        print(text.strip(), flush=True)
    if stats:
        print_stats(runner, totals, mined_lines=table.lines, mine_s=round(table.seconds, 3),
                    mine_mb_s=round(table.bytes / 1e6 / max(table.seconds, 1e-9), 2))


def _summarize_text(api, sources, pieces, as_json, compress, profile, model, device, set_, max_new_tokens,
                    temperature, stats) -> None:
    runner = open_runner_cli(profile, model, device, set_, max_new_tokens)
    use_compression(runner, compress)
    sampling = sampling_from(runner.profile, max_new_tokens, temperature)
    progress = Progress(SpinnerColumn(), TextColumn("[bold]summarising"), BarColumn(), DownloadColumn(),
                        TextColumn("{task.fields[chunks]} chunks"), TimeElapsedColumn(),
                        console=err, transient=True, disable=common.QUIET or not err.is_terminal)
    task = progress.add_task("summarising", total=None, chunks=0)
    plain = PlainProgress("summarising", unit="bytes")

    def update(done: int, total: int | None, chunks: int) -> None:
        progress.update(task, completed=done, total=total, chunks=chunks)
        if not err.is_terminal:
            plain.update(done, total, f"{chunks} chunks summarised" if chunks != 1 else "1 chunk summarised")

    with progress:
        text, totals = api.summarize(runner, sources or [], sampling=sampling, progress=update, note=note,
                                     pieces=pieces)
    if as_json:
        print(json.dumps({"format": None, "report": text.strip()}, ensure_ascii=False), flush=True)
    else:
        print(text.strip(), flush=True)
    if stats:
        print_stats(runner, totals)
