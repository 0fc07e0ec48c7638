"""What every reader shares: the `Document` it hands out, the `Reader` record, and errors."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from longchat.errors import InputError

Note = Callable[[str], None]
"""Where readers send one-line remarks for the user (skipped files, empty pages, ...)."""


def note_to_stderr(message: str) -> None:
    """The default `Note`: one line on stderr, so stdout keeps carrying only the answer."""
    print(f"longchat: note: {message}", file=sys.stderr)


@dataclass
class Document:
    """One named text the model will see: a file, a page-marked PDF, or stdin."""

    label: str        # the name the model sees: the path as the user gave it, or "<stdin>"
    kind: str         # the reader that made it: "text", "pdf", "stdin" (stdin, or a pipe), ...
    size: int | None  # bytes on disk when known (for progress bars); None for streams
    open_pieces: Callable[[], Iterator[str]] = field(repr=False, compare=False)
    path: Path | None = field(default=None, compare=False)  # the file, when there is one
    # Streams only (stdin, pipes): hold(whole) reads ahead one block, or all when `whole`, and
    # returns all the bytes if the stream ended there (then it can be read again), else None.
    hold: Callable[[bool], bytes | None] | None = field(default=None, repr=False, compare=False)

    def pieces(self) -> Iterator[str]:
        """The text, streamed in pieces; nothing is read until this is iterated.

        Each call starts again from the beginning, except for a stream (stdin, a pipe), which
        can be read once unless `hold` kept all of it.
        """
        return self.open_pieces()


@dataclass(frozen=True)
class Reader:
    """A file format longchat can read, found by name in `READERS` or by file suffix."""

    name: str
    extensions: tuple[str, ...]  # lower-case suffixes it claims, like ".pdf"; () for the fallback
    summary: str                 # one line for listings and help
    open: Callable[[Path, str, Note], Document]
    """open(path, label, note) -> Document: cheap checks now (raising `Unreadable`), text later."""


class Unreadable(InputError):
    """A file a reader refuses. Named directly it fails the run; met in a directory walk it
    is skipped with a note that gives `reason`, the short form ("binary", "encrypted PDF")."""

    def __init__(self, message: str, *, reason: str):
        super().__init__(message)
        self.reason = reason


def cannot_open(label: str, error: OSError) -> Unreadable:
    """The one-line error for a file the OS would not let us read."""
    if isinstance(error, FileNotFoundError):
        return Unreadable(f"no such file or directory: {label!r}", reason="vanished")
    if isinstance(error, PermissionError):
        return Unreadable(f"cannot read {label!r}: permission denied", reason="permission denied")
    reason = (error.strerror or type(error).__name__).lower()
    return Unreadable(f"cannot read {label!r}: {reason}", reason=reason)
