"""The file formats longchat reads, keyed by name, and how a file finds its reader."""

from __future__ import annotations

import os
from pathlib import Path

from longchat.errors import InputError
from longchat.sources.base import Document, Note, Reader, cannot_open
from longchat.sources.pdf import PDF
from longchat.sources.text import TEXT

READERS: dict[str, Reader] = {reader.name: reader for reader in (TEXT, PDF)}
FALLBACK = "text"  # the reader for every suffix that no other reader claims


def get_reader(name: str) -> Reader:
    """The reader called `name`; an unknown name fails with the list of valid ones."""
    try:
        return READERS[name]
    except KeyError:
        valid = ", ".join(sorted(READERS))
        raise InputError(f"unknown reader {name!r} (valid readers: {valid})") from None


def reader_for(path: Path) -> Reader:
    """The reader that claims this file's suffix, else the text reader."""
    suffix = path.suffix.lower()
    for reader in READERS.values():
        if suffix in reader.extensions:
            return reader
    return READERS[FALLBACK]


def open_file(path: Path, label: str, note: Note) -> Document:
    """One file as a `Document`, through the reader for its suffix."""
    try:
        os.stat(path)
    except OSError as error:
        raise cannot_open(label, error) from None
    document = reader_for(path).open(path, label, note)
    document.path = path
    return document
