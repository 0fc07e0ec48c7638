"""`longchat ask SOURCE... QUESTION`: one answer about files, PDFs, folders or stdin.

A log (found from its first lines, or `--as log`) is mined into a template table first and the
model reads the templates most related to the question, not the log's lines.
"""

from __future__ import annotations

import json
from typing import List, Optional

import typer

from longchat.cli.app import app
from longchat.cli.common import (CompressOpt, DeviceOpt, KeepOpt, MaxNewOpt, ModelOpt, ProfileOpt, QuietOpt, ReadAs,
                                 SetOpt, StatsOpt, TemperatureOpt, check_sources, mine_log, note, open_runner_cli,
                                 prefill_progress, print_stats, sampling_from, set_quiet, stream_out, use_compression,
                                 usage_error)


@app.command()
def ask(
    sources: Optional[List[str]] = typer.Argument(None, metavar="SOURCE", show_default=False, help="Files, PDFs, folders, or - for stdin (none with --memory)."),
    question: str = typer.Argument(..., metavar="QUESTION", show_default=False, help="The question to answer from the sources."),
    memory: Optional[str] = typer.Option(None, "--memory", help="Answer from a memory made by `longchat ingest` (see `longchat memories list`)."),
    read_as: ReadAs = typer.Option(ReadAs.auto, "--as", help="auto: a log when its first lines look like one (stated on stderr); log: mine its templates and read those most related to the question; text: read it as a document."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not keep or reuse the encoded input (long inputs are otherwise cached, so a second question is fast)."),
    compress: Optional[float] = CompressOpt,
    keep: Optional[List[str]] = KeepOpt,
    profile: str = ProfileOpt,
    model: Optional[str] = ModelOpt,
    device: Optional[str] = DeviceOpt,
    set_: Optional[List[str]] = SetOpt,
    max_new_tokens: Optional[int] = MaxNewOpt,
    temperature: Optional[float] = TemperatureOpt,
    system: Optional[str] = typer.Option(None, "--system", help="A system prompt for this question."),
    truncate: bool = typer.Option(False, "--truncate", help="Keep the start of an input too long for the window (with a warning) instead of refusing it."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (answer and stats) instead of streaming text."),
    stats: bool = StatsOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Answer QUESTION about the SOURCEs. Only the answer goes to stdout.

    Inputs past the effective window are encoded once into a cache; asking again about the
    same files reads only the question.

    A log (syslog, journald, nginx, dmesg, Python logging, JSON lines ...) is read in one pass
    into a table of message templates; the model reads the templates most related to the
    question, with their exact counts and times.

    Example: longchat ask book.pdf notes/ "Who betrays Ned?" ; longchat ask app.log "Why did the backup fail?"
    """
    import os

    if not sources and memory is None:
        if question == "-" or os.path.exists(question):
            raise usage_error(f"the question is missing: longchat ask {question} \"your question\"")
        raise usage_error("give at least one SOURCE (or --memory NAME) before the question")
    if memory is not None and sources:
        raise usage_error("give SOURCEs or --memory NAME, not both")
    if memory is not None and compress is not None:
        raise usage_error("--compress shrinks SOURCEs before they are read; a --memory is already encoded")
    if memory is not None and read_as == ReadAs.log:
        raise usage_error("--as log reads SOURCEs; a --memory is already encoded")
    check_sources(sources or [])
    set_quiet(quiet)
    from longchat import api  # after the checks above: it imports torch, which a usage mistake need not wait for

    stdin = None
    if memory is None:
        fmt, pieces, stdin = api.open_ask_input(sources or [], read_as=read_as.value, note=note)
        if fmt is not None:
            return _ask_log(api, sources, pieces, fmt, question, compress, profile, model, device, set_,
                            max_new_tokens, temperature, system, as_json, stats)
    runner = open_runner_cli(profile, model, device, set_)
    use_compression(runner, compress)
    sampling = sampling_from(runner.profile, max_new_tokens, temperature)
    with prefill_progress("compressing") as squeezing, prefill_progress() as progress:
        answer = api.ask(runner, sources or [], question, sampling=sampling, stdin=stdin, truncate=truncate,
                         system=system, on_text=None if as_json else stream_out, progress=progress, note=note,
                         cache=not no_cache, memory=memory, keep=keep or [], compress_progress=squeezing)
    info = runner.engine.stats
    if as_json:
        print(json.dumps({"answer": answer.strip(), "profile": runner.profile.name, "model": runner.model.name,
                          "stats": info.as_dict()}))
    else:
        stream_out("\n")
    if stats:
        print_stats(runner, info)


def _ask_log(api, sources, pieces, fmt, question, compress, profile, model, device, set_, max_new_tokens,
             temperature, system, as_json, stats) -> None:
    """A log: the template pass first, then the model (so the two never hold memory at once)."""
    if compress is not None:
        note("--compress is for prose; the log's templates are what the model reads (--as text to compress the log)")
    if not question.strip():
        from longchat.errors import InputError

        raise InputError("the question is empty")
    table = mine_log(api, sources, pieces, fmt)
    runner = open_runner_cli(profile, model, device, set_)
    sampling = sampling_from(runner.profile, max_new_tokens, temperature)
    with prefill_progress() as progress:
        answer, shown, checked = api.ask_log(runner, table, question, sampling=sampling, system=system,
                                             on_text=None if as_json else stream_out, progress=progress, note=note)
    info = runner.engine.stats
    if as_json:
        log = {"format": table.format, "overview": table.overview(),
               "templates": [{**table.template_json(t), "score": round(score, 3)} for t, score in shown]}
        print(json.dumps({"answer": answer.strip(), "profile": runner.profile.name, "model": runner.model.name,
                          "stats": info.as_dict(), "log": log, **checked}, ensure_ascii=False))
    else:
        stream_out("\n")
    if stats:
        print_stats(runner, info)
