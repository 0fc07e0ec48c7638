"""Figures in a model's report, checked against the table it read: a sentence that states a
count or a time the table does not hold, or a count with times or a level that are not that
count's template's, is dropped (and named), so the report's figures are the table's."""

from __future__ import annotations

import re

_NUMBER = re.compile(r"(?<![\w.,:/-])\d{1,3}(?:,\d{3})+(?![\w,:/-])|(?<![\w.,:/-])\d+(?:\.\d+)?(?![\w:/-])")
_CLOCK = re.compile(r"\b\d{1,2}:\d\d(?::\d\d)?\b")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9*\-])")
_LIST_MARKER = re.compile(r"^\s*(?:[-*]\s*)?\d+[.)](?:\s|$)")
_COUNT = re.compile(r"\b(\d{1,3}(?:,\d{3})+|\d+) times\b|\b(once)\b", re.I)
_LEVEL = re.compile(r"\b(FATAL|ERROR|WARN|INFO|DEBUG)\b")
_UPTIME = re.compile(r"\b\d+\.\d+s\b")  # dmesg: seconds after boot


def _claim(text: str) -> tuple[list[str], set[str], set[str]]:
    """(counts, times, levels) a line states: '36 times' -> '36', 'once' -> '1'; clock times
    and seconds after boot; level words as the table writes them."""
    counts = ["1" if m.group(2) else m.group(1).replace(",", "") for m in _COUNT.finditer(text)]
    times = figures_in(text)[1] | set(_UPTIME.findall(text))
    return counts, times, set(_LEVEL.findall(text))


def _wrong(sentence: str, known_numbers: set[str], known_clocks: set[str],
           lines: list[tuple[list[str], set[str], set[str]]]) -> bool:
    numbers, clocks = figures_in(sentence)
    if numbers - known_numbers or clocks - known_clocks:
        return True
    counts, times, levels = _claim(sentence)
    if len(counts) != 1 or not (times or levels):
        return False
    # "ERROR 36 times, 08:53 to 08:55": one table line must have that count, level and times.
    return not any(counts[0] in c and times <= t and levels <= lv for c, t, lv in lines)


def figures_in(text: str) -> tuple[set[str], set[str]]:
    """(numbers, clock times) written in `text`, normalised ('1,234' -> '1234', '5:03' -> '05:03')."""
    numbers = {n.replace(",", "").rstrip(".") for n in _NUMBER.findall(_CLOCK.sub(" ", text))}
    clocks = {c.zfill(5)[:5] for c in _CLOCK.findall(text)}
    return numbers, clocks


def check_figures(report: str, table_text: str) -> tuple[str, list[str]]:
    """(the report without the sentences whose figures are not in `table_text`, those sentences).
    List markers ('1.', '2)') are not figures; numbers are compared without thousands separators,
    times by hour and minute; a sentence with one count ('36 times', 'once') and times or a
    level must match one table line with that count, those times and that level."""
    known_numbers, known_clocks = figures_in(table_text)
    lines = [_claim(line) for line in table_text.splitlines()]
    kept_lines, dropped = [], []
    for line in report.splitlines():
        marker = _LIST_MARKER.match(line)
        head, body = (line[: marker.end()], line[marker.end():]) if marker else ("", line)
        kept = []
        for sentence in _SENTENCE.split(body):
            if _wrong(sentence, known_numbers, known_clocks, lines):
                dropped.append(sentence.strip())
            else:
                kept.append(sentence)
        if kept and " ".join(kept).strip():
            kept_lines.append(head + " ".join(kept))
        elif not line.strip():
            kept_lines.append(line)  # a blank line; a list marker left alone goes
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept_lines)).strip(), dropped
