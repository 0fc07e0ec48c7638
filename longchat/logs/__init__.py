"""Logs read as logs: detect the format, mine templates in one streaming pass, rank what
matters, and hand a compact table (not the raw log) to the model.

    fmt, pieces = sniff(iter_pieces(sources))   # None: the input reads as prose
    table = scan(pieces, fmt, Filters.parse(level="warn"))
    print(table.render())
"""

from __future__ import annotations

import itertools
from typing import Iterable, Iterator

from longchat.logs.detect import SAMPLE_LINES, detect
from longchat.logs.parse import FORMATS, LINES, LogFormat
from longchat.logs.scan import Filters, LogScanner, scan
from longchat.logs.table import LogTable, Template

__all__ = ["FORMATS", "LINES", "Filters", "LogFormat", "LogScanner", "LogTable", "Template", "scan", "sniff"]

SNIFF_CHARS = 256 * 1024


def sniff(pieces: Iterable[tuple[str, bool]]) -> tuple[LogFormat | None, Iterator[tuple[str, bool]]]:
    """The format of the input's first lines (None: not a log), and the same pieces again,
    from the start (stdin cannot be read twice: what was looked at is held and replayed)."""
    pieces = iter(pieces)
    head: list[tuple[str, bool]] = []
    chars = 0
    text = ""
    for piece in pieces:
        head.append(piece)
        if piece[1]:
            text += piece[0][: SNIFF_CHARS - len(text)]
        chars += len(piece[0])
        if text.count("\n") > SAMPLE_LINES or chars >= SNIFF_CHARS:
            break
    lines = text.split("\n")[:SAMPLE_LINES + 50]
    return detect(lines), itertools.chain(head, pieces)
