"""The `longchat` Typer app that every command module adds its commands to (`cli/__init__.py`
runs it)."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="longchat",
    help="Chat with, and ask about, inputs far larger than your local model's context window.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")) -> None:
    """Chat with, and ask about, inputs far larger than your local model's context window."""
