"""Errors the CLI turns into one line on stderr, and the exit codes it uses."""

from __future__ import annotations

# Exit codes, named so that scripts and tests can rely on them.
EXIT_OK = 0
EXIT_ERROR = 1          # a runtime failure we could name (model, generation, ...)
EXIT_USAGE = 2          # bad flags or arguments (click uses 2 as well)
EXIT_INPUT = 3          # a source could not be read, or the input is empty / too long
EXIT_CONFIG = 4         # a profile or setting is invalid
EXIT_MODEL = 5          # the model could not be found or loaded
EXIT_INTERRUPTED = 130  # Ctrl-C, the shell convention


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
