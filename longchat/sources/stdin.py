"""Streams that can be read only once: standard input ("-"), and pipes, FIFOs or devices named
like files (`<(cmd)` passes /dev/fd/63). Decoded while they stream in, never seeked, and held
whole only when asked (`Document.hold`): a cache key needs the bytes.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from longchat.sources.base import Document, Note, cannot_open
from longchat.sources.text import BLOCK_BYTES, decode_blocks


def open_stdin(stream: BinaryIO, note: Note = lambda m: None) -> Document:
    """Standard input as a `Document` (left open when read)."""
    return _Stream("<stdin>", lambda: stream, note, close=False).document()


def open_pipe(path: Path, label: str, note: Note) -> Document:
    """A pipe, FIFO or device named like a file, read once like stdin.

    It is opened only when first read, because opening a FIFO waits for its writer.
    """
    return _Stream(label, lambda: open(path, "rb"), note, close=True).document()


class _Stream:
    """A byte stream opened on first use; what `hold` reads ahead is handed out first."""

    def __init__(self, label: str, open_raw: Callable[[], BinaryIO], note: Note, close: bool):
        self.label, self.open_raw, self.note, self.close = label, open_raw, note, close
        self.file: BinaryIO | None = None
        self.held = b""      # read ahead and not yet handed out
        self.ended = False   # `held` is all of the stream

    def document(self) -> Document:
        return Document(label=self.label, kind="stdin", size=None, open_pieces=self.pieces, hold=self.hold)

    def hold(self, whole: bool) -> bytes | None:
        """Read ahead one block, or all of the stream when `whole`. Returns the stream's bytes
        if it ended within them (its pieces can then be read again), else None."""
        parts, size = [self.held], len(self.held)
        while not self.ended and (whole or size < BLOCK_BYTES):
            parts.append(self.read_raw(BLOCK_BYTES))
            size += len(parts[-1])
            self.ended = not parts[-1]
        self.held = b"".join(parts)
        return self.held if self.ended else None

    def read_raw(self, n: int) -> bytes:
        try:
            if self.file is None:
                self.file = self.open_raw()
            block = self.file.read(n)
        except OSError as error:
            raise cannot_open(self.label, error) from None
        if not block and self.close:
            self.file.close()
        return block

    def read(self, n: int) -> bytes:
        """What `decode_blocks` reads: the held bytes first, then the rest of the stream."""
        if self.held:
            block, self.held = self.held, b""
            return block
        return b"" if self.ended else self.read_raw(n)

    def pieces(self) -> Iterator[str]:
        # Held whole, the bytes are decoded afresh on every call; otherwise the stream is spent.
        yield from decode_blocks(io.BytesIO(self.held) if self.ended else self, self.label, self.note)


class Rewindable(io.RawIOBase):
    """A stream read once (stdin) whose start can be read again, once: what is read before
    `rewind()` is kept (a log sniff reads a few hundred KB) and handed out again after it."""

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.seen = bytearray()
        self.replay: bytearray | None = None   # None: still recording

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.replay:
            n = min(len(buffer), len(self.replay))
            buffer[:n] = self.replay[:n]
            del self.replay[:n]
            return n
        data = self.raw.read(len(buffer))
        if self.replay is None:
            self.seen += data
        buffer[: len(data)] = data
        return len(data)

    def rewind(self) -> None:
        self.replay, self.seen = self.seen, bytearray()
