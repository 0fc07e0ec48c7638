"""`longchat ask SOURCE... QUESTION`: one answer about files, PDFs, folders or stdin.

A log (found from its first lines, or `--as log`) is mined into a template table first and the
model reads the templates most related to the question, not the log's lines.
"""

from __future__ import annotations

import json
from typing import List, Optional

import typer

from longchat.cli.app import app
from longchat.cli.common import (CompressOpt, DeviceOpt, ExcludeOpt, IncludeOpt, KeepOpt, MaxNewOpt, ModelOpt, ProfileOpt, QuietOpt, ReadAs,
                                 SetOpt, StatsOpt, TemperatureOpt, check_sources, mine_log, note, open_runner_cli,
                                 prefill_progress, print_stats, sampling_from, set_quiet, stream_out, use_compression,
                                 use_selection, usage_error, check_text)


@app.command()
def ask(
    sources: Optional[List[str]] = typer.Argument(None, metavar="SOURCE", show_default=False, help="Files, PDFs, folders, or - for stdin (none with --memory)."),
    question: str = typer.Argument(..., metavar="QUESTION", show_default=False, callback=check_text, help="The question to answer from the sources."),
    memory: Optional[str] = typer.Option(None, "--memory", help="Answer from a memory made by `longchat ingest` (see `longchat memories list`)."),
    read_as: ReadAs = typer.Option(ReadAs.auto, "--as", help="auto: a log when its first lines look like one (stated on stderr); log: mine its templates and read those most related to the question; text: read it as a document."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not keep or reuse the encoded input (long inputs are otherwise cached, so a second question is fast)."),
    include: Optional[List[str]] = IncludeOpt,
    exclude: Optional[List[str]] = ExcludeOpt,
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
    cite: bool = typer.Option(False, "--cite", help="After the answer, list where the text read came from: file and lines, or PDF pages (always in --json's `sources`)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (answer, sources and stats) instead of streaming text."),
    no_log: bool = typer.Option(False, "--no-log", help="Do not record this ask in the history (`longchat logs`; `longchat logs off` stops recording)."),
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
    import time

    started = time.perf_counter()
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
    if memory is not None and (include or exclude):
        raise usage_error("--include and --exclude choose files of SOURCEs; a --memory is already encoded")
    use_selection(include, exclude)
    check_sources(sources or [])
    set_quiet(quiet)
    from longchat import api  # after the checks above: it imports torch, which a usage mistake need not wait for

    stdin = None
    if memory is None:
        fmt, pieces, stdin = api.open_ask_input(sources or [], read_as=read_as.value, note=note)
        if fmt is not None:
            answer, runner, found = _ask_log(api, sources, pieces, fmt, question, compress, profile, model, device,
                                             set_, max_new_tokens, temperature, system, as_json, stats, cite)
            if not no_log:
                record(question, answer, sources or [], found, runner, started)
            return
    runner = open_runner_cli(profile, model, device, set_, max_new_tokens)
    use_compression(runner, compress)
    sampling = sampling_from(runner.profile, max_new_tokens, temperature)
    with prefill_progress("compressing") as squeezing, prefill_progress() as progress:
        answer = api.ask(runner, sources or [], question, sampling=sampling, stdin=stdin, truncate=truncate,
                         system=system, on_text=None if as_json else stream_out, progress=progress, note=note,
                         cache=not no_cache, memory=memory, keep=keep or [], compress_progress=squeezing)
    info = runner.engine.stats
    found = info.extra.pop("sources", [])
    if as_json:
        print(json.dumps({"answer": answer.strip(), "sources": found, "profile": runner.profile.name,
                          "model": runner.model.name, "stats": info.as_dict()}))
    else:
        stream_out("\n")
        if cite:
            stream_out(sources_text(found))
    if stats:
        print_stats(runner, info)
    if not no_log:
        record(question, answer, list(sources or []) or [f"memory:{memory}"], found, runner, started)


def record(question: str, answer: str, inputs: list[str], sources: list[dict], runner, started: float) -> None:
    """The ask, into the history (`longchat logs`), unless recording is off. A history that
    cannot be written costs a note, never the answer."""
    import time

    from longchat import history
    from longchat.errors import LongchatError

    if not history.recording():
        return
    try:
        store = history.History()
        try:
            store.record(question, answer.strip(), inputs=inputs, sources=sources, profile=runner.profile.name,
                         model=runner.model.name, stats=runner.engine.stats.as_dict(),
                         seconds=time.perf_counter() - started)
        finally:
            store.close()
    except (LongchatError, OSError) as error:
        note(f"the ask was not recorded in the history: {error}")


def sources_text(sources: list[dict]) -> str:
    """`--cite`'s lines: "Sources:" and one line per range read ("notes.md:12-30", "book.pdf p. 4")."""
    from longchat.text.cite import Cited

    if not sources:
        return "Sources: none recorded for this reading\n"
    return "Sources:\n" + "".join(f"  {Cited.from_dict(s)}\n" for s in sources)


def _ask_log(api, sources, pieces, fmt, question, compress, profile, model, device, set_, max_new_tokens,
             temperature, system, as_json, stats, cite=False):
    """A log: the template pass first, then the model (so the two never hold memory at once).
    Returns (the answer, the runner, its sources: the first line of each template shown)."""
    if compress is not None:
        note("--compress is for prose; the log's templates are what the model reads (--as text to compress the log)")
    if not question.strip():
        from longchat.errors import InputError

        raise InputError("the question is empty")
    table = mine_log(api, sources, pieces, fmt)
    runner = open_runner_cli(profile, model, device, set_, max_new_tokens)
    sampling = sampling_from(runner.profile, max_new_tokens, temperature)
    with prefill_progress() as progress:
        answer, shown, checked = api.ask_log(runner, table, question, sampling=sampling, system=system,
                                             on_text=None if as_json else stream_out, progress=progress, note=note)
    info = runner.engine.stats
    label = sources[0] if len(sources or []) == 1 and sources[0] != "-" else None
    found = [{"file": label, "lines": [t.first_line, t.first_line]} for t, _ in shown[:3] if t.first_line]
    if as_json:
        log = {"format": table.format, "overview": table.overview(),
               "templates": [{**table.template_json(t), "score": round(score, 3)} for t, score in shown]}
        print(json.dumps({"answer": answer.strip(), "sources": found, "profile": runner.profile.name,
                          "model": runner.model.name, "stats": info.as_dict(), "log": log, **checked},
                         ensure_ascii=False))
    else:
        stream_out("\n")
        if cite:
            stream_out(sources_text(found))
    if stats:
        print_stats(runner, info)
    return answer, runner, found
