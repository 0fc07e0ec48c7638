"""Does the input look like a log, and in which format: read from its first lines."""

from __future__ import annotations

from longchat.logs.parse import FORMATS, LogFormat

SAMPLE_LINES = 200
SHARE = 0.6  # of the sampled record lines that must start a record in one format


CONTINUATIONS = ("Traceback (most recent call last)", "Caused by:", "During handling of the above", "}")


def is_continuation(line: str) -> bool:
    """Lines that carry on the record before them in any format: indented lines, tracebacks."""
    return line[:1] in (" ", "\t") or line.startswith(CONTINUATIONS)


def detect(lines: list[str]) -> LogFormat | None:
    """The format most of `lines` (the first non-empty lines of the input) start a record in,
    or None when no format reaches SHARE of them: the input reads as prose."""
    sample = [line for line in lines if line.strip()][:SAMPLE_LINES]
    heads = [line for line in sample if not is_continuation(line)]
    if len(heads) < 3:  # a few lines prove nothing
        return None
    best, hits = None, 0
    for fmt in FORMATS.values():
        n = sum(fmt.record(line) is not None for line in heads)
        if n > hits:
            best, hits = fmt, n
    return best if hits >= SHARE * len(heads) else None
