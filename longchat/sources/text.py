"""Plain text, markdown and code: streamed in blocks, binaries refused by a sniff.

Text is read as UTF-8 (a leading BOM dropped), or as UTF-16 when it starts with a UTF-16 BOM.
Bytes that are not valid UTF-8 are read as cp1252 (Windows Latin-1, a superset of ISO-8859-1
for printable text), with one note per file: legacy European text then reads right instead of
as U+FFFD.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from longchat.sources.base import Document, Note, Reader, Unreadable, cannot_open

BLOCK_BYTES = 1 << 20   # ~1 MB: large enough to be fast, small enough for gigabyte logs
SNIFF_BYTES = 8192      # how much of a file decides whether it is text
_CONTROL_OK = set("\t\n\r\f\b\x1b")  # control characters real text files do contain
UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
FALLBACK = "cp1252"
_AS_CP1252 = "longchat-as-cp1252"  # the codecs error handler below, registered on first use
# cp1252 leaves 5 bytes unassigned; read them as Latin-1 (C1 controls), as browsers do.
_CP1252 = [bytes([b]).decode(FALLBACK, errors="ignore") or chr(b) for b in range(256)]


def looks_binary(head: bytes) -> bool:
    """Whether the first bytes of a file say "not text": a NUL byte (outside UTF-16), or
    mostly undecodable or control characters."""
    if head.startswith(UTF16_BOMS):
        text = head.decode("utf-16", errors="replace")
    elif b"\0" in head:
        return True
    else:
        # Counted as UTF-8 on purpose: random bytes are mostly invalid UTF-8, but would all
        # pass as cp1252.
        text = head.decode("utf-8", errors="replace")
    odd = sum(1 for ch in text if ch == "\ufffd" or (ch < " " and ch not in _CONTROL_OK))
    # 30% leaves room for Latin-1 text (an accent per word decodes as U+FFFD) and ANSI logs.
    return odd > 0.3 * len(text)


def _as_cp1252(error: UnicodeDecodeError) -> tuple[str, int]:
    """A codecs error handler: the bytes UTF-8 rejects, read one by one as cp1252."""
    bad = error.object[error.start:error.end]
    return "".join(_CP1252[b] for b in bad), error.end


def decode_blocks(stream: BinaryIO, label: str = "", note: Note = lambda m: None) -> Iterator[str]:
    """Decode a byte stream block by block, holding only one block at a time.

    The incremental decoder keeps a character split across two blocks until its last byte
    arrives. UTF-8 is decoded strictly until it first fails; from then on (with a note naming
    `label`) each invalid byte is read as cp1252 and valid UTF-8 around it stays UTF-8. A
    failed decode leaves the decoder's state as it was, so the block is simply decoded again.
    """
    block = stream.read(BLOCK_BYTES)
    if block.startswith(UTF16_BOMS):  # the "utf-16" codec reads the BOM for the byte order
        decoder = codecs.getincrementaldecoder("utf-16")(errors="replace")
    else:
        # Windows editors write a UTF-8 BOM; the model would see it as a stray character.
        block = block.removeprefix(codecs.BOM_UTF8)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    while True:
        final = not block
        try:
            text = decoder.decode(block, final=final)
        except UnicodeDecodeError:
            note(f"{label!r} is not UTF-8; read its non-UTF-8 bytes as {FALLBACK} (Windows Latin-1)")
            codecs.register_error(_AS_CP1252, _as_cp1252)
            decoder.errors = _AS_CP1252
            text = decoder.decode(block, final=final)
        if text:
            yield text
        if final:
            return
        block = stream.read(BLOCK_BYTES)


def open_text(path: Path, label: str, note: Note) -> Document:
    """A text file as a `Document`; raises `Unreadable` when it cannot be read or is binary."""
    try:
        with open(path, "rb") as file:
            head = file.read(SNIFF_BYTES)
            size = file.seek(0, 2)
    except OSError as error:
        raise cannot_open(label, error) from None
    if looks_binary(head):
        raise Unreadable(f"{label!r} looks like a binary file", reason="binary")

    def pieces() -> Iterator[str]:
        try:
            with open(path, "rb") as file:
                yield from decode_blocks(file, label, note)
        except OSError as error:
            raise cannot_open(label, error) from None

    return Document(label=label, kind="text", size=size, open_pieces=pieces)


TEXT = Reader(
    name="text",
    extensions=(),
    summary="text, markdown and code in UTF-8, UTF-16 or cp1252 (any file that does not look binary)",
    open=open_text,
)
