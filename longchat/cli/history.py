"""`longchat logs [on|off|path]`: the history of asks (`longchat.history`), as `llm logs` keeps one."""

from __future__ import annotations

import json
from typing import Optional

import typer

from longchat.cli.app import app
from longchat.cli.common import note

logs_app = typer.Typer(help="The history of asks: questions, answers, sources, profile and timings.",
                       invoke_without_command=True)
app.add_typer(logs_app, name="logs")


@logs_app.callback()
def logs(ctx: typer.Context,
         count: int = typer.Option(10, "--count", "-n", min=1, help="How many of the latest asks to show."),
         query: Optional[str] = typer.Option(None, "--query", "-q", help="Only asks whose question or answer holds all these words."),
         as_json: bool = typer.Option(False, "--json", help="One JSON array instead of text.")) -> None:
    """The latest asks, newest first (`longchat logs -q backup` searches them).

    Every answered `longchat ask` is recorded unless `longchat logs off` (or `ask --no-log`)."""
    if ctx.invoked_subcommand is not None:
        return
    from longchat.history import History, history_path, recording

    if not history_path().exists():
        note("no asks recorded yet" + ("" if recording() else " (recording is off: `longchat logs on`)"))
        if as_json:
            print("[]")
        return
    history = History()
    try:
        asks = history.latest(count, query)
    finally:
        history.close()
    if as_json:
        print(json.dumps([a.as_dict() for a in asks], ensure_ascii=False))
        return
    from longchat.chat.store import when
    from longchat.text.cite import Cited

    for a in reversed(asks):  # oldest first, so the newest ends up above the prompt
        where = ", ".join(a.inputs) or "-"
        print(f"## {when(a.created)}  #{a.id}  {a.profile} / {a.model}  {a.seconds:.1f} s  ({where})")
        print(f"> {a.question}\n\n{a.answer}")
        if a.sources:
            print("Sources: " + "; ".join(str(Cited.from_dict(s)) for s in a.sources))
        print()
    if not asks:
        note("no asks match" if query else "no asks recorded yet")


@logs_app.command("on")
def on() -> None:
    """Record every ask from now on (the default)."""
    from longchat.history import set_recording

    set_recording(True)
    note("asks are recorded")


@logs_app.command("off")
def off() -> None:
    """Stop recording asks (those recorded stay; `longchat logs on` starts again)."""
    from longchat.history import set_recording

    set_recording(False)
    note("asks are no longer recorded")


@logs_app.command("path")
def path() -> None:
    """Print where the history file is."""
    from longchat.history import history_path

    print(history_path())
