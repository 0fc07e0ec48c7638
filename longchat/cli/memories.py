"""`longchat memories`: list, show and remove the encoded memories (`longchat ingest` writes them)."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import List, Optional

import typer
from rich.table import Table

from longchat.cli.app import app
from longchat.cli.common import note, out

memories_app = typer.Typer(help="List, inspect and remove encoded memories (named, and the automatic ask cache).",
                           no_args_is_help=True)
app.add_typer(memories_app, name="memories")


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
