"""The file formats longchat reads, keyed by name, and how a file finds its reader."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from longchat import plugins
from longchat.errors import InputError
from longchat.sources.base import Document, Note, Reader, cannot_open
from longchat.sources.stdin import open_pipe

# name -> reader: the built-ins, then the plugins' `longchat_readers` (read again whenever the
# set of plugins changes).
READERS: dict[str, Reader] = {}
FALLBACK = "text"  # the reader for every suffix that no other reader claims
_seen_plugins = -1


def _builtins() -> list[Reader]:
    from longchat.sources.notebook import NOTEBOOK
    from longchat.sources.pdf import PDF  # pypdf loads only when a file is opened
    from longchat.sources.text import TEXT

    return [TEXT, PDF, NOTEBOOK]


def _readers() -> dict[str, Reader]:
    global _seen_plugins
    if _seen_plugins != plugins.generation():
        _seen_plugins = plugins.generation()
        found = plugins.gather("longchat_readers", _builtins(), lambda r: r.name, lambda r: isinstance(r, Reader),
                               "longchat.sources.Reader")
        READERS.clear()
        READERS.update(found)
    return READERS


def get_reader(name: str) -> Reader:
    """The reader called `name`; an unknown name fails with the list of valid ones."""
    try:
        return _readers()[name]
    except KeyError:
        valid = ", ".join(sorted(_readers()))
        raise InputError(f"unknown reader {name!r} (valid readers: {valid})") from None


def reader_for(path: Path) -> Reader:
    """The reader that claims this file's suffix, else the text reader."""
    suffix = path.suffix.lower()
    for reader in _readers().values():
        if suffix in reader.extensions:
            return reader
    return _readers()[FALLBACK]


def open_file(path: Path, label: str, note: Note) -> Document:
    """One file as a `Document`, through the reader for its suffix.

    What is not a regular file (a FIFO, `<(cmd)`'s /dev/fd/63, a device) cannot be sniffed and
    read again like one: it is read once as text, like stdin.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        raise cannot_open(label, error) from None
    if not stat.S_ISREG(mode):
        return open_pipe(path, label, note)
    document = reader_for(path).open(path, label, note)
    document.path = path
    return document
