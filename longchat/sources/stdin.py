"""Standard input ("-"): decoded as UTF-8 while it streams in, never held whole as bytes."""

from __future__ import annotations

from typing import BinaryIO

from longchat.sources.base import Document
from longchat.sources.text import decode_blocks


def open_stdin(stream: BinaryIO) -> Document:
    """Standard input as a `Document`; its pieces can be iterated only once."""
    return Document(
        label="<stdin>", kind="stdin", size=None, open_pieces=lambda: decode_blocks(stream)
    )
