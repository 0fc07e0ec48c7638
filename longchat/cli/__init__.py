"""The `longchat` command. Each command group lives in its own module; this one wires them
together and turns errors into one line on stderr with a named exit code."""

from __future__ import annotations

import os
import sys

import click
import typer

from longchat.cli.app import app
from longchat.cli.common import ReaderLeft
from longchat.errors import (EXIT_ENV, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, LongchatError,
                             env_error)


def _register() -> None:
    """The built-in commands (each module adds its own to `app`), then the plugins'
    `longchat_commands`."""
    global _registered
    if _registered:
        return
    _registered = True
    from longchat import plugins
    from longchat.cli import (ask, bench, chat, compress, history, ingest, memories, models, profiles,  # noqa: F401
                              serve, sessions, summarize)
    from longchat.cli import plugins as plugins_command  # noqa: F401

    plugins.collect("longchat_commands", app=app)


_registered = False


def _click_classes(name: str) -> tuple[type, ...]:
    """The exception class `name` from click and from typer: typer >= 0.2x ships its own copy
    of click (`typer._click`, with Exit and Abort in `typer` itself), and the commands are built
    by typer, so what they raise comes from there."""
    places = [click.exceptions, typer]
    try:
        from typer import _click as typer_click
        places.append(typer_click.exceptions)
    except ImportError:  # a typer that uses click itself
        pass
    return tuple({getattr(place, name) for place in places if isinstance(getattr(place, name, None), type)})


_EXIT, _ABORT, _USAGE, _CLICK = (_click_classes(n) for n in ("Exit", "Abort", "UsageError", "ClickException"))


def _interrupted() -> int:
    print("\nlongchat: interrupted; what was saved is kept, and running the command again resumes",
          file=sys.stderr, flush=True)
    return EXIT_INTERRUPTED


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code instead of exiting (tests call it in-process)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("LONGCHAT_DEBUG") == "1"
    _register()
    from longchat.sources import Selection, selecting

    try:
        with selecting(Selection()):  # what a command's --include / --exclude set ends with it
            result = app(args=argv, prog_name="longchat", standalone_mode=False)
        # Not standalone, typer returns the code of `raise typer.Exit(n)`, and turns Ctrl-C
        # into a silent 130.
        code = result if isinstance(result, int) and not isinstance(result, bool) else EXIT_OK
        return _interrupted() if code == EXIT_INTERRUPTED else code
    except _EXIT as e:
        return _interrupted() if e.exit_code == EXIT_INTERRUPTED else e.exit_code
    except (*_ABORT, KeyboardInterrupt):
        return _interrupted()
    except _USAGE as e:
        e.show()  # the usage line, a hint, and the mistake
        return EXIT_USAGE
    except _CLICK as e:
        e.show()
        return e.exit_code
    except (BrokenPipeError, ReaderLeft):
        # `longchat ask ... | head`: the reader left; say nothing more.
        _quiet_stdout()
        return EXIT_OK
    except LongchatError as e:
        if debug:
            raise
        print(f"longchat: error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        # Sources are checked and named by the readers; an OSError that gets here is about
        # longchat's own files (cache, memories, sessions) or the disk.
        if debug:
            raise
        print(f"longchat: error: {env_error(e)}", file=sys.stderr)
        return EXIT_ENV
    except Exception as e:  # a bug: still one line, unless --debug
        if debug:
            raise
        print(f"longchat: internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return EXIT_ERROR


def _quiet_stdout() -> None:
    """After a closed pipe, point stdout at /dev/null so the interpreter's final flush is silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
