"""PDF files through pypdf: one piece per page, each starting with a "[Page N]" line."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError

from longchat.sources.base import Document, Note, Reader, Unreadable, cannot_open


@contextmanager
def _quiet_pypdf() -> Iterator[None]:
    """Hide pypdf's log lines ("Ignoring wrong pointing object ...") while it works.

    They describe harmless repairs and would reach the user through logging's last-resort
    handler. Scoped rather than set once at import, so that importing longchat changes nothing.
    """
    logger = logging.getLogger("pypdf")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    reason = text[0] if text else type(error).__name__
    return reason if len(reason) <= 80 else reason[:77] + "..."


def _load(file: BinaryIO, label: str) -> PdfReader:
    """Parse the PDF's structure and unlock it with the empty password if it has one."""
    # Without this check pypdf tries to parse any bytes, and fails with an obscure reason.
    if b"%PDF-" not in file.read(1024):
        raise Unreadable(f"{label!r} is not a readable PDF (no PDF header)", reason="not a PDF")
    file.seek(0)
    try:
        reader = PdfReader(file)
        unlocked = not reader.is_encrypted or reader.decrypt("") != PasswordType.NOT_DECRYPTED
        if unlocked:
            len(reader.pages)  # walks the page tree, where broken files usually show
    except DependencyError as error:  # AES needs the optional `cryptography` package
        raise Unreadable(
            f"cannot read {label!r}: the PDF is encrypted ({_first_line(error)})",
            reason="encrypted PDF",
        ) from None
    # pypdf signals damage with many exception types (PdfReadError, KeyError, ValueError, ...).
    except Exception as error:
        raise Unreadable(
            f"{label!r} is not a readable PDF ({_first_line(error)})", reason="unreadable PDF"
        ) from None
    if not unlocked:
        raise Unreadable(f"cannot read {label!r}: the PDF is encrypted", reason="encrypted PDF")
    return reader


def open_pdf(path: Path, label: str, note: Note) -> Document:
    """A PDF as a `Document`; raises `Unreadable` when it is encrypted or damaged.

    The file is parsed once here, so that a directory walk can skip a bad PDF with a note,
    and again when its pages are read, so that no file stays open in between.
    """
    try:
        with open(path, "rb") as file, _quiet_pypdf():
            _load(file, label)
            size = file.seek(0, 2)
    except OSError as error:
        raise cannot_open(label, error) from None

    def pieces() -> Iterator[str]:
        empty, failed = 0, 0
        with open(path, "rb") as file:
            with _quiet_pypdf():
                reader = _load(file, label)
            for number, page in enumerate(reader.pages, start=1):
                try:
                    with _quiet_pypdf():
                        text = page.extract_text().strip()
                except Exception:  # one damaged page should not lose the rest of the book
                    text, failed = "", failed + 1
                else:
                    empty += not text
                yield f"[Page {number}]\n{text}\n" if text else f"[Page {number}]\n"
        if empty:
            note(f"{label}: {empty} page{'s' if empty > 1 else ''} had no text (scanned images?)")
        if failed:
            note(f"{label}: {failed} page{'s' if failed > 1 else ''} could not be read (damaged?)")

    return Document(label=label, kind="pdf", size=size, open_pieces=pieces)


PDF = Reader(
    name="pdf",
    extensions=(".pdf",),
    summary="PDF documents (text layer only; pages are marked [Page N])",
    open=open_pdf,
)
