"""`longchat ingest` and `longchat memories`: encoded memories that later questions reuse."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from longchat.cli.app import app
from longchat.cli.common import (DeviceOpt, ModelOpt, ProfileOpt, QuietOpt, SetOpt, check_sources, note, open_runner_cli,
                                 prefill_progress, set_quiet, usage_error)

memories_app = typer.Typer(help="List, inspect and remove encoded memories (named, and the automatic ask cache).",
                           no_args_is_help=True)
app.add_typer(memories_app, name="memories")
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)


@app.command()
def ingest(
    sources: List[str] = typer.Argument(..., metavar="SOURCE", help="Files, PDFs, folders (repositories), or - for stdin."),
    name: Optional[str] = typer.Option(None, "--name", help="The memory's name. Default: the first source's file or folder name."),
    append: bool = typer.Option(False, "--append", help="Add SOURCEs to the existing memory NAME (a grown log is continued, not re-read)."),
    profile: str = ProfileOpt,
    model: Optional[str] = ModelOpt,
    device: Optional[str] = DeviceOpt,
    set_: Optional[List[str]] = SetOpt,
    checkpoint_every: int = typer.Option(32768, "--checkpoint-every", min=1, help="Tokens between checkpoints: where an interrupted ingest resumes, and where a changed source is re-encoded from."),
    quiet: bool = QuietOpt,
) -> None:
    """Encode SOURCEs once into a named memory; then `ask --memory NAME` answers from it fast.

    Running it again on the same memory resumes an interrupted ingest, says which source changed
    and re-encodes from there, or reports that the memory is up to date.

    Example: longchat ingest ./myrepo --name myrepo && longchat ask --memory myrepo "Where is main()?"
    """
    from longchat import memory

    from longchat.memory.store import NAME

    if name is not None and not NAME.match(name):
        raise usage_error(f"bad memory name {name!r}: use letters, digits, '.', '_' and '-'")
    check_sources(sources)
    set_quiet(quiet)
    runner = open_runner_cli(profile, model, device, set_)
    with prefill_progress("encoding", always=True) as progress:
        result = memory.ingest(runner, sources, name=name, append=append, progress=progress, note=note,
                               checkpoint_every=checkpoint_every)
    mem = result.memory
    if result.up_to_date:
        note(f"memory '{mem.name}' is up to date")
    else:
        note(f"encoded {result.encoded:,} tokens in {result.seconds:.1f} s ({result.tokens_per_s:,.0f} tokens/s)")
    print(memory.describe(mem))


@memories_app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="One JSON object per memory.")) -> None:
    """Every memory with its size; `cache` ones are made by `ask` and evicted least-recently-used
    past LONGCHAT_CACHE_MAX (default 20GB). Below the table, how to finish or remove each one
    that is incomplete or broken."""
    from longchat.memory.store import BrokenMemory, Memory, all_memories, dir_size, human_bytes, resume_hint

    rows = []
    for kind, path in all_memories():
        try:
            mem = Memory.open(path)
            info = {"name": path.name, "kind": kind, "tokens": mem.tokens, "documents": len(mem.documents),
                    "complete": mem.complete, "model": mem.manifest.get("key", {}).get("model"),
                    "bytes": dir_size(path), "last_used": mem.last_used(), "state": "ok"}
            if not mem.complete:
                info.update(state="incomplete", error="incomplete (interrupted)", fix=resume_hint(path, mem.manifest))
        except BrokenMemory as e:
            info = {"name": path.name, "kind": kind, "tokens": 0, "documents": 0, "complete": False, "model": None,
                    "bytes": dir_size(path), "last_used": 0, "state": e.state, "error": e.reason, "fix": e.fix}
        rows.append(info)
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    if not rows:
        out.print("no memories yet: `longchat ingest SOURCE...` makes one, and `longchat ask` caches long inputs")
        return
    table = Table("name", "kind", "tokens", "docs", "size", "model", "last used", "state")
    for r in rows:
        used = datetime.fromtimestamp(r["last_used"]).strftime("%Y-%m-%d %H:%M") if r["last_used"] else "-"
        table.add_row(r["name"], r["kind"], f"{r['tokens']:,}", str(r["documents"]), human_bytes(r["bytes"]),
                      r["model"] or "-", used, r["state"])
    out.print(table)
    for r in rows:
        if "fix" in r:
            print(f"'{r['name']}': {r['error']}; {r['fix']}")


@memories_app.command()
def show(name: str = typer.Argument(..., metavar="NAME", help="A memory name (see `longchat memories list`).")) -> None:
    """The manifest of one memory: model, settings, documents and checkpoints."""
    from longchat.memory import describe
    from longchat.memory.store import find

    mem = find(name)
    print(describe(mem))
    m = mem.manifest
    print(f"path: {mem.path}")
    print(f"created: {time.ctime(m.get('created', 0))}   updated: {time.ctime(m.get('updated', 0))}")
    key = {k: v for k, v in m.get("key", {}).items() if k != "head"}
    print("settings: " + ", ".join(f"{k}={v}" for k, v in key.items()))
    for doc in mem.documents:
        span = f"{doc['start']:,}-{doc['end']:,}" if doc.get("end") is not None else f"{doc['start']:,}- (partial)"
        print(f"  {doc['label']}  [{doc['kind']}, {doc.get('size') or 0:,} bytes, tokens {span}]")
    print(f"checkpoints: {', '.join(f'{c.tokens:,}' for c in mem.checkpoints) or 'none'}")


@memories_app.command()
def rm(names: List[str] = typer.Argument(..., metavar="NAME", help="Memories to delete.")) -> None:
    """Delete memories, whatever state they are in (refused while another longchat process uses one)."""
    from longchat.memory.store import locate, remove

    for name in names:
        remove(locate(name))
        note(f"removed memory '{name}'")


@memories_app.command()
def path(name: Optional[str] = typer.Argument(None, metavar="NAME", help="A memory; without it, the folders memories live in.")) -> None:
    """Where a memory lives on disk (or where named and cached memories go)."""
    from longchat.memory.store import cache_root, locate, named_root

    if name:
        print(locate(name))
    else:
        print(f"named: {named_root()}\ncache: {cache_root()}")
