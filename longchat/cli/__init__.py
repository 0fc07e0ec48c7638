"""The `longchat` command. Each command group lives in its own module; this one wires them
together and turns errors into one line on stderr with a named exit code."""

from __future__ import annotations

import os
import sys

import click
import typer

from longchat.errors import EXIT_ERROR, EXIT_INTERRUPTED, LongchatError

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


def _register() -> None:
    """Commands come through the plugins' `longchat_commands` hook (the built-in ones too)."""
    global _registered
    if _registered:
        return
    _registered = True
    from longchat import plugins

    plugins.collect("longchat_commands", app=app)


_registered = False


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code instead of exiting (tests call it in-process)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("LONGCHAT_DEBUG") == "1"
    _register()
    try:
        app(args=argv, prog_name="longchat", standalone_mode=False)
        return 0
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.Abort:
        print("longchat: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except KeyboardInterrupt:
        print("\nlongchat: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `longchat ask ... | head`: the reader left; say nothing more.
        sys.stderr.close()
        return 0
    except LongchatError as e:
        if debug:
            raise
        print(f"longchat: error: {e}", file=sys.stderr)
        return e.exit_code
    except Exception as e:  # a bug: still one line, unless --debug
        if debug:
            raise
        print(f"longchat: internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return EXIT_ERROR


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
