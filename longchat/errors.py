"""Errors the CLI turns into one line on stderr, and the exit codes it uses.

The table below is the one the README prints and `tests/test_cli_edges.py` checks; every
command uses it.
"""

from __future__ import annotations

import errno
import os

# Exit codes, named so that scripts and tests can rely on them.
EXIT_OK = 0
EXIT_ERROR = 1          # a runtime failure we could name (generation, a bug shown as one line)
EXIT_USAGE = 2          # bad flags or arguments: a missing argument, an unknown option or command
EXIT_INPUT = 3          # a source could not be read, or the input is empty / too long
EXIT_CONFIG = 4         # a profile or setting is invalid
EXIT_MODEL = 5          # the model could not be found or loaded
EXIT_STORE = 6          # a named memory or session is missing, busy, corrupt or made with other settings
EXIT_ENV = 7            # longchat's own folders or the disk: LONGCHAT_HOME unusable, disk full, no permission
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGINT, the shell convention

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_ERROR: "a runtime failure (generation), or a bug shown as one line",
    EXIT_USAGE: "usage: a missing argument, an unknown option or command, a bad option value",
    EXIT_INPUT: "input: a source is missing, unreadable, empty or too long",
    EXIT_CONFIG: "profile or setting invalid",
    EXIT_MODEL: "the model cannot be found or loaded",
    EXIT_STORE: "a memory or session is missing, busy, corrupt or made with other settings",
    EXIT_ENV: "environment: LONGCHAT_HOME unusable, disk full, permission denied, a damaged file of longchat's",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C, SIGINT); what was saved is kept and a rerun resumes",
}


class LongchatError(Exception):
    """An error with a message fit to show a user as one line, and an exit code."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, *, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class InputError(LongchatError):
    """A source is missing, unreadable, empty, or longer than the profile allows."""

    exit_code = EXIT_INPUT


class ConfigError(LongchatError):
    """A profile or a setting is invalid; the message names the file, key and allowed values."""

    exit_code = EXIT_CONFIG


class ModelError(LongchatError):
    """A model spec cannot be resolved or its weights cannot be loaded."""

    exit_code = EXIT_MODEL


class StoreError(LongchatError):
    """A named memory or session is missing, busy, corrupt, or was made with other settings."""

    exit_code = EXIT_STORE


class EnvError(LongchatError):
    """longchat's own files cannot be written or read: the message names the path and the fix."""

    exit_code = EXIT_ENV


def env_error(error: OSError, path: str | os.PathLike | None = None, doing: str = "write") -> EnvError:
    """The one-line error for an OSError met on longchat's own files (cache, memories, sessions)."""
    where = str(path or error.filename or "?")
    code = error.errno
    if code == errno.ENOSPC or code == errno.EDQUOT:
        return EnvError(f"no space left on the device while writing {where}; free some space "
                        f"(`longchat memories list` shows what the cache holds) or set LONGCHAT_HOME to another disk")
    if code == errno.EROFS:
        return EnvError(f"cannot {doing} {where}: the file system is read-only; set LONGCHAT_HOME to a writable folder")
    if code in (errno.EACCES, errno.EPERM):
        return EnvError(f"cannot {doing} {where}: permission denied; fix its permissions or set LONGCHAT_HOME "
                        f"to a folder you own")
    if code in (errno.ENOTDIR, errno.EEXIST):
        return EnvError(f"cannot {doing} {where}: a file stands where longchat needs a folder; move it away or "
                        f"set LONGCHAT_HOME to a folder")
    return EnvError(f"cannot {doing} {where}: {(error.strerror or type(error).__name__).lower()}; "
                    f"set LONGCHAT_HOME to a folder you can write")
