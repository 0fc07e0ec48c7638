"""`longchat plugins`: what is loaded and what each plugin registers."""

from __future__ import annotations

import json

import typer

from longchat.cli.app import app


@app.command("plugins")
def plugins_(as_json: bool = typer.Option(False, "--json", help="One JSON array instead of text.")) -> None:
    """List the loaded plugins (built-ins, installed packages in the `longchat.plugins.v1`
    entry-point group, filtered by LONGCHAT_PLUGINS) and what each one registers."""
    found = listing()
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


def listing() -> list:
    """`plugins.Loaded` for the built-ins (from each registry), then every third-party plugin."""
    from longchat import plugins
    from longchat.compress import METHODS
    from longchat.context.registry import BUILTIN
    from longchat.chat.functions import builtin_functions
    from longchat.sources.registry import _builtins

    functions = [name for name in builtin_functions(None, 0, lambda message: None) if name != "send_message"]
    builtin = plugins.Loaded("builtin", "built-in", registers={
        "readers": [f"{r.name} ({', '.join(r.extensions) or 'fallback'})" for r in _builtins()],
        "strategies": [c.name for c in BUILTIN], "compressors": list(METHODS), "memory_functions": functions})
    return [builtin, *plugins.loaded()]
