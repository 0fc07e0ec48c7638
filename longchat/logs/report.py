"""Figures in a model's report, checked against the table it read: a sentence that states a
count or a time the table does not hold, or a count with times that are not that count's
template's, is dropped (and named), so the report's figures are the table's."""

from __future__ import annotations

import re

_NUMBER = re.compile(r"(?<![\w.,:/-])\d{1,3}(?:,\d{3})+(?![\w,:/-])|(?<![\w.,:/-])\d+(?:\.\d+)?(?![\w:/-])")
_CLOCK = re.compile(r"\b\d{1,2}:\d\d(?::\d\d)?\b")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9*\-])")
_LIST_MARKER = re.compile(r"^\s*(?:[-*]\s*)?\d+[.)](?:\s|$)")
_COUNT = re.compile(r"\b(\d{1,3}(?:,\d{3})+|\d+) times\b|\b(once)\b", re.I)


def count_clocks(table_text: str) -> dict[str, set[str]]:
    """count ('36', '1' for once) -> the clock times written on the table's lines with that count."""
    out: dict[str, set[str]] = {}
    for line in table_text.splitlines():
        for m in _COUNT.finditer(line):
            count = "1" if m.group(2) else m.group(1).replace(",", "")
            out.setdefault(count, set()).update(figures_in(line)[1])
    return out


def _wrong(sentence: str, known_numbers: set[str], known_clocks: set[str], by_count: dict[str, set[str]]) -> bool:
    numbers, clocks = figures_in(sentence)
    if numbers - known_numbers or clocks - known_clocks:
        return True
    counts = ["1" if m.group(2) else m.group(1).replace(",", "") for m in _COUNT.finditer(sentence)]
    if len(counts) == 1 and clocks:  # "36 times, 08:53 to 08:55": those times must be that count's
        return counts[0] not in by_count or not clocks <= by_count[counts[0]]
    return False


def figures_in(text: str) -> tuple[set[str], set[str]]:
    """(numbers, clock times) written in `text`, normalised ('1,234' -> '1234', '5:03' -> '05:03')."""
    numbers = {n.replace(",", "").rstrip(".") for n in _NUMBER.findall(_CLOCK.sub(" ", text))}
    clocks = {c.zfill(5)[:5] for c in _CLOCK.findall(text)}
    return numbers, clocks


def check_figures(report: str, table_text: str) -> tuple[str, list[str]]:
    """(the report without the sentences whose figures are not in `table_text`, those sentences).
    List markers ('1.', '2)') are not figures; numbers are compared without thousands separators,
    times by hour and minute; a sentence with one count ('36 times', 'once') and times must
    give times written on a table line with that count."""
    known_numbers, known_clocks = figures_in(table_text)
    by_count = count_clocks(table_text)
    kept_lines, dropped = [], []
    for line in report.splitlines():
        marker = _LIST_MARKER.match(line)
        head, body = (line[: marker.end()], line[marker.end():]) if marker else ("", line)
        kept = []
        for sentence in _SENTENCE.split(body):
            if _wrong(sentence, known_numbers, known_clocks, by_count):
                dropped.append(sentence.strip())
            else:
                kept.append(sentence)
        if kept and " ".join(kept).strip():
            kept_lines.append(head + " ".join(kept))
        elif not line.strip():
            kept_lines.append(line)  # a blank line; a list marker left alone goes
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept_lines)).strip(), dropped
