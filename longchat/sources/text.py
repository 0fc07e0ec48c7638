"""Plain text, markdown and code: UTF-8, streamed in blocks, binaries refused by a sniff."""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from longchat.sources.base import Document, Note, Reader, Unreadable, cannot_open

BLOCK_BYTES = 1 << 20   # ~1 MB: large enough to be fast, small enough for gigabyte logs
SNIFF_BYTES = 8192      # how much of a file decides whether it is text
_CONTROL_OK = set("\t\n\r\f\b\x1b")  # control characters real text files do contain


def looks_binary(head: bytes) -> bool:
    """Whether the first bytes of a file say "not text": a NUL byte, or mostly undecodable."""
    if b"\0" in head:
        return True
    text = head.decode("utf-8", errors="replace")
    odd = sum(1 for ch in text if ch == "\ufffd" or (ch < " " and ch not in _CONTROL_OK))
    # 30% leaves room for Latin-1 text (an accent per word decodes as U+FFFD) and ANSI logs.
    return odd > 0.3 * len(text)


def decode_blocks(stream: BinaryIO) -> Iterator[str]:
    """Decode a byte stream as UTF-8 block by block, holding only one block at a time.

    The incremental decoder keeps a multibyte character that is split across two blocks
    until its last byte arrives. "utf-8-sig" is plain UTF-8 that also drops a leading BOM,
    which Windows editors write and the model would otherwise see as a stray character.
    """
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
    while block := stream.read(BLOCK_BYTES):
        if text := decoder.decode(block):
            yield text
    if tail := decoder.decode(b"", final=True):
        yield tail


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
                yield from decode_blocks(file)
        except OSError as error:
            raise cannot_open(label, error) from None

    return Document(label=label, kind="text", size=size, open_pieces=pieces)


TEXT = Reader(
    name="text",
    extensions=(),
    summary="UTF-8 text, markdown and code (any file that does not look binary)",
    open=open_text,
)
