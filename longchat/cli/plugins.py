"""`longchat plugins`: what is loaded and what each plugin registers."""

from __future__ import annotations

import json

import typer

from longchat.cli import app


@app.command("plugins")
def plugins_(as_json: bool = typer.Option(False, "--json", help="One JSON array instead of text.")) -> None:
    """List the loaded plugins (built-ins, installed packages in the `longchat.plugins.v1`
    entry-point group, filtered by LONGCHAT_PLUGINS) and what each one registers."""
    from longchat import plugins

    found = plugins.loaded()
    if as_json:
        print(json.dumps([{"name": p.name, "source": p.source, "error": p.error, "registers": p.registers}
                          for p in found]))
        return
    for p in found:
        state = f"FAILED: {p.error}" if p.error else "loaded"
        print(f"{p.name} ({p.source}): {state}")
        for hook, items in p.registers.items():
            if items:
                print(f"  {hook}: {', '.join(items)}")
