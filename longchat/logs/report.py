"""Figures in a model's report, checked against the table it read: a sentence that states a
count or a time the table does not hold is dropped (and named), so the report's figures are
the table's."""

from __future__ import annotations

import re

_NUMBER = re.compile(r"(?<![\w.,:/-])\d{1,3}(?:,\d{3})+(?![\w,:/-])|(?<![\w.,:/-])\d+(?:\.\d+)?(?![\w:/-])")
_CLOCK = re.compile(r"\b\d{1,2}:\d\d(?::\d\d)?\b")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9*\-])")
_LIST_MARKER = re.compile(r"^\s*(?:[-*]\s*)?\d+[.)]\s")


def figures_in(text: str) -> tuple[set[str], set[str]]:
    """(numbers, clock times) written in `text`, normalised ('1,234' -> '1234', '5:03' -> '05:03')."""
    numbers = {n.replace(",", "").rstrip(".") for n in _NUMBER.findall(_CLOCK.sub(" ", text))}
    clocks = {c.zfill(5)[:5] for c in _CLOCK.findall(text)}
    return numbers, clocks


def check_figures(report: str, table_text: str) -> tuple[str, list[str]]:
    """(the report without the sentences whose figures are not in `table_text`, those sentences).
    List markers ('1.', '2)') are not figures; numbers are compared without thousands separators,
    times by hour and minute."""
    known_numbers, known_clocks = figures_in(table_text)
    kept_lines, dropped = [], []
    for line in report.splitlines():
        marker = _LIST_MARKER.match(line)
        head, body = (line[: marker.end()], line[marker.end():]) if marker else ("", line)
        kept = []
        for sentence in _SENTENCE.split(body):
            numbers, clocks = figures_in(sentence)
            if numbers - known_numbers or clocks - known_clocks:
                dropped.append(sentence.strip())
            else:
                kept.append(sentence)
        if kept and " ".join(kept).strip():
            kept_lines.append(head + " ".join(kept))
        elif not body.strip():
            kept_lines.append(line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept_lines)).strip(), dropped
