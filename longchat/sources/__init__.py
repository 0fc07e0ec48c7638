"""Source readers: turn files, directories, PDFs and stdin into streamed text documents.

`iter_documents` yields one lazy `Document` per file; `read_text` joins them into the one
string a context strategy consumes. File formats are found by name in `READERS`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import closing
from pathlib import Path
from typing import BinaryIO

from longchat.errors import InputError
from longchat.sources.base import Document, Note, Reader, Unreadable, note_to_stderr
from longchat.sources.directory import walk_directory
from longchat.sources.registry import READERS, get_reader, open_file, reader_for
from longchat.sources.select import EVERYTHING, BadPattern, Selection, Skipped, current, selecting
from longchat.sources.stdin import open_stdin

STDIN = "-"

__all__ = [
    "EVERYTHING", "READERS", "STDIN", "BadPattern", "Document", "Note", "Reader", "Selection", "Unreadable",
    "current", "get_reader", "selecting", "iter_documents", "iter_pieces", "read_text", "reader_for", "wants_headers",
]


def iter_documents(
    specs: Sequence[str],
    *,
    stdin: BinaryIO | None = None,
    max_file_bytes: int = 20_000_000,
    note: Note = note_to_stderr,
    select: Selection | None = None,
) -> Iterator[Document]:
    """The documents named by `specs`, in order, each read only when its pieces are.

    Each spec is a file, a directory (walked; files over `max_file_bytes` are skipped there),
    a pipe or FIFO (read once, like stdin), or "-" for `stdin` (default: `sys.stdin.buffer`),
    which may be given at most once. A missing or unreadable spec raises `InputError` when it
    is reached.

    `select` (default: the command's, `selecting`): --exclude patterns leave out files, named
    or walked; a walk also skips lock files, minified, generated and data files and vendored
    folders unless an --include pattern matches them, and says so in one note at the end.
    """
    if list(specs).count(STDIN) > 1:
        raise InputError("stdin ('-') can be given only once")
    select = select or current()
    skipped = Skipped()
    for spec in specs:
        if spec == STDIN:
            yield open_stdin(stdin if stdin is not None else sys.stdin.buffer, note)
        elif os.path.isdir(spec):
            yield from walk_directory(Path(spec), spec, note=note, max_file_bytes=max_file_bytes, select=select,
                                      skipped=skipped)
        elif not select.named_excluded(spec):
            yield open_file(Path(spec), spec, note)
    if summary := skipped.summary():
        note(summary)


def read_text(
    specs: Sequence[str],
    *,
    stdin: BinaryIO | None = None,
    max_chars: int | None = None,
    note: Note = note_to_stderr,
    select: Selection | None = None,
) -> str:
    """The whole input as one string.

    With several specs or a directory, each document starts with a "### File: <label>" line
    and documents are separated by a blank line. Reading stops once the text passes
    `max_chars`, returning max_chars + 1 characters so the caller can tell it was cut.
    Raises `InputError` when the input holds nothing but whitespace.
    """
    parts: list[str] = []
    total, has_text = 0, False
    with closing(iter_pieces(specs, stdin=stdin, note=note, select=select)) as pieces:
        for piece, is_text in pieces:
            has_text = has_text or (is_text and bool(piece) and not piece.isspace())
            if max_chars is not None and total + len(piece) > max_chars:
                parts.append(piece[: max_chars + 1 - total])
                return "".join(parts)
            parts.append(piece)
            total += len(piece)
    if not has_text:
        raise InputError("the input is empty")
    return "".join(parts)


def wants_headers(specs: Sequence[str]) -> bool:
    """Whether each document gets a "### File:" line: several specs, or a folder among them."""
    return len(specs) > 1 or any(spec != STDIN and os.path.isdir(spec) for spec in specs)


def iter_pieces(
    specs: Sequence[str],
    *,
    stdin: BinaryIO | None = None,
    note: Note = note_to_stderr,
    select: Selection | None = None,
) -> Iterator[tuple[str, bool]]:
    """The joined input of `read_text` as a stream: (piece, True when it is document text).

    For inputs too big to hold (a 2 GB log on stdin): memory stays at about one piece.
    """
    headers = wants_headers(specs)
    documents = iter_documents(specs, stdin=stdin, note=note, select=select)
    last = "\n"  # the last character so far, to end a document's final line before the next
    for index, document in enumerate(documents):
        if index:
            yield ("\n" if last == "\n" else "\n\n"), False  # then a blank line
        if headers:
            yield f"### File: {document.label}\n", False
        last = "\n"
        for piece in document.pieces():
            yield piece, True
            last = piece[-1:] or last
