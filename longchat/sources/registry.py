"""The file formats longchat reads, keyed by name, and how a file finds its reader."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from longchat.errors import InputError
from longchat.sources.base import Document, Note, Reader, cannot_open
from longchat.sources.stdin import open_pipe

# name -> reader, filled from the plugins' `longchat_readers` hook (the built-ins first).
READERS: dict[str, Reader] = {}
FALLBACK = "text"  # the reader for every suffix that no other reader claims


def reload() -> None:
    """(Re)read the readers every plugin registers; a later plugin does not replace a name."""
    from longchat import plugins

    found: dict[str, Reader] = {}
    for plugin, reader in plugins.collect("longchat_readers"):
        if not isinstance(reader, Reader):
            plugins.warn(f"plugin {plugin!r} registered a reader that is not a longchat.sources.Reader; skipped")
        elif reader.name in found:
            plugins.warn(f"plugin {plugin!r}: a reader named {reader.name!r} exists already; skipped")
        else:
            found[reader.name] = reader
    READERS.clear()
    READERS.update(found)


def _readers() -> dict[str, Reader]:
    if not READERS:
        reload()
    return READERS


def get_reader(name: str) -> Reader:
    """The reader called `name`; an unknown name fails with the list of valid ones."""
    try:
        return _readers()[name]
    except KeyError:
        valid = ", ".join(sorted(READERS))
        raise InputError(f"unknown reader {name!r} (valid readers: {valid})") from None


def reader_for(path: Path) -> Reader:
    """The reader that claims this file's suffix, else the text reader."""
    suffix = path.suffix.lower()
    for reader in _readers().values():
        if suffix in reader.extensions:
            return reader
    return READERS[FALLBACK]


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
