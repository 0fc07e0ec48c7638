"""`longchat sessions list|show|facts|rm|export`: the stored chat sessions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from longchat.cli.app import app
from longchat.cli.common import err, note
from longchat.chat.store import when as _when

sessions_app = typer.Typer(help="Stored chat sessions (`longchat chat --session NAME`).", no_args_is_help=True)
app.add_typer(sessions_app, name="sessions")


def _store():
    from longchat.chat.store import Store

    return Store()


@sessions_app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="One JSON array instead of a table.")) -> None:
    """Sessions, most recently used first, with their message counts."""
    from rich.console import Console
    from rich.table import Table

    rows = _store().sessions()
    if as_json:
        print(json.dumps(rows))
        return
    if not rows:
        note("no sessions yet: `longchat chat --session NAME` starts one")
        return
    table = Table()
    for col in ("name", "messages", "in window", "archival", "model", "last used"):
        table.add_column(col, justify="right" if col in ("messages", "in window", "archival") else "left")
    for r in rows:
        table.add_row(r["name"], f"{r['messages']:,}", f"{r['in_context']:,}", f"{r['archival']:,}", r["model"],
                      _when(r["updated"]))
    Console().print(table)


@sessions_app.command()
def show(name: str = typer.Argument(..., metavar="NAME", help="The session."),
         last: int = typer.Option(20, "--last", "-n", min=1, help="How many of the latest messages to print.")) -> None:
    """A session's documents, core memory, summary and latest messages."""
    data = _store().export(name)
    print(f"session {data['name']} · {len(data['messages'])} messages · last used {_when(data['updated'])}")
    for doc in data["documents"]:
        print(f"[document {doc['label']}] {len(doc['content']):,} characters, read per question")
    for label, value in data["core"].items():
        print(f"[core {label}] {value}")
    if data["summary"]:
        print(f"[summary] {data['summary']}")
    for m in data["messages"][-last:]:
        mark = "" if m["in_context"] else " (paged out)"
        print(f"{_when(m['created'])} {m['role']}{mark}: {m['content']}")


@sessions_app.command()
def facts(name: Optional[str] = typer.Argument(None, metavar="[NAME]", help="The session (none: every session, each fact with the session it came from)."),
          as_json: bool = typer.Option(False, "--json", help="One JSON array instead of lines.")) -> None:
    """The facts a session keeps from what the user said (each with the message it came from,
    and the earlier statements it replaced, "was: ..."); `/forget ID` in the chat removes one.
    Without NAME, every session's."""
    from longchat.chat.commands import facts_lines

    store = _store()
    names = [name] if name else [s["name"] for s in store.sessions()]
    kept = [{**f, "session": n} for n in names for f in store.facts_with_history(store.session_id(n))]
    if as_json:
        print(json.dumps(kept))
    elif not kept:
        note(f"session {name!r} keeps no facts yet" if name else "no session keeps facts yet")
    elif name:
        print("\n".join(facts_lines(kept)))
    else:
        for n in names:
            mine = [f for f in kept if f["session"] == n]
            if mine:
                print(f"## {n}\n" + "\n".join(facts_lines(mine)))


@sessions_app.command()
def rm(name: str = typer.Argument(..., metavar="NAME", help="The session to delete."),
       yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask.")) -> None:
    """Delete a session and everything it remembers."""
    from longchat.errors import InputError
    from longchat.chat.store import SessionLock

    store = _store()
    store.session_id(name)  # unknown -> a clear error
    if not yes:
        import sys

        if not sys.stdin.isatty():
            raise InputError(f"rm {name}: pass --yes to delete without a prompt")
        typer.confirm(f"delete session {name!r} and all its messages?", abort=True)
    lock = SessionLock(name)  # not while a chat has it open
    try:
        store.remove(name)
    finally:
        lock.release()
    err.print(f"deleted session {name}", markup=False)


@sessions_app.command()
def export(name: str = typer.Argument(..., metavar="NAME", help="The session."),
           fmt: str = typer.Option("md", "--format", "-f", help="md (readable) or json (everything)."),
           output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write here instead of stdout.")) -> None:
    """Everything a session holds, as Markdown or JSON."""
    from longchat.errors import InputError

    if fmt not in ("md", "json"):
        raise InputError("--format must be md or json")
    data = _store().export(name)
    if fmt == "json":
        text = json.dumps(data, indent=2, ensure_ascii=False)
    else:
        lines = [f"# Session {data['name']}", "", f"Last used {_when(data['updated'])}, model {data['model']}.", ""]
        lines += ["## Core memory", ""] + [f"- **{k}**: {v}" for k, v in data["core"].items()] + [""]
        if data["facts"]:  # what the user said to keep, each with the message it came from
            lines += ["## Facts", ""]
            for f in data["facts"]:
                lines.append(f"- {f['content']} (" + (f"from message #{f['source']}, " if f["source"] else "") +
                             f"{_when(f['created'])})")
                lines += [f"  - was: {h['content']} ({_when(h['created'])} to {_when(h['until'])})"
                          for h in f["history"]]
            lines.append("")
        if data["summary"]:
            lines += ["## Summary", "", data["summary"], ""]
        lines += ["## Messages", ""]
        for m in data["messages"]:
            lines += [f"**{m['role']}** ({_when(m['created'])}):", "", m["content"], ""]
        if data["archival"]:
            lines += ["## Archival memory", ""] + [f"- {a['content']}" for a in data["archival"]]
        text = "\n".join(lines)
    if output:
        output.write_text(text + "\n", encoding="utf-8")
        note(f"wrote {output}")
    else:
        print(text)
