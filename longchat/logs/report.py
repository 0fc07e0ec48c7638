"""Figures in a model's report or answer, checked against the table it read: a sentence that
states a count, a time, a date or an identifier (a version, a package) the table does not hold,
or a count with times or a level that are not that count's template's, is dropped (and named),
so the report's figures are the table's."""

from __future__ import annotations

import calendar
import re

from longchat.logs.mine import MASKS

_NUMBER = re.compile(r"(?<![\w.,:/-])\d{1,3}(?:,\d{3})+(?![\w,:/-])|(?<![\w.,:/-])\d+(?:\.\d+)?(?![\w:/-])")
_CLOCK = re.compile(r"\b\d{1,2}:\d\d(?::\d\d)?\b")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9*\-])")
_LIST_MARKER = re.compile(r"^\s*(?:[-*]\s*)?\d+[.)](?:\s|$)")
_COUNT = re.compile(r"\b(\d{1,3}(?:,\d{3})+|\d+) times\b|\b(once)\b", re.I)
_LEVEL = re.compile(r"\b(FATAL|ERROR|WARN|INFO|DEBUG)\b")
_UPTIME = re.compile(r"\b\d+\.\d+s\b")  # dmesg: seconds after boot
_DATE = re.compile(r"\b(\d{4})-(\d\d)-(\d\d)\b")
_MONTH = r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
_DATE_WORDS = re.compile(rf"\b{_MONTH}\s+(\d{{1,2}})(?:st|nd|rd|th)?(?:,?\s+(\d{{4}}))?\b"
                         rf"|\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH}(?:,?\s+(\d{{4}}))?\b", re.I)
_MONTHS = {m.lower(): i for i, m in enumerate(calendar.month_abbr) if m}
_PATTERNS = dict(MASKS)
_EDGES = "()[]{}<>,;:!?\"'`*."
_PLAIN = re.compile(r"\d+(?:\.\d+)?[a-zA-Z]{0,3}|\d+(?:st|nd|rd|th)|[a-zA-Z]+")  # '12ms', '2nd', words
_PIECES = re.compile(r"[:+~/-]")


def _claim(text: str) -> tuple[list[str], set[str], set[str]]:
    """(counts, times, levels) a line states: '36 times' -> '36', 'once' -> '1'; clock times
    and seconds after boot; level words as the table writes them."""
    counts = ["1" if m.group(2) else m.group(1).replace(",", "") for m in _COUNT.finditer(text)]
    times = figures_in(text)[1] | set(_UPTIME.findall(text))
    return counts, times, set(_LEVEL.findall(text))


def _wrong(sentence: str, known_numbers: set[str], known_clocks: set[str],
           lines: list[tuple[list[str], set[str], set[str]]], known_ids: set[str] = frozenset(),
           known_dates: set[str] = frozenset()) -> bool:
    numbers, clocks = figures_in(_DATE.sub(" ", " ".join(w for w in sentence.split()
                                                           if w.strip(_EDGES) not in identifiers_in(w))))
    if numbers - known_numbers or clocks - known_clocks:
        return True
    if identifiers_in(sentence) - known_ids or dates_in(sentence) - known_dates:
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


def sentences(text: str) -> list[str]:
    return _SENTENCE.split(text)


def identifiers_in(text: str) -> set[str]:
    """Versions and packages written in `text` ('252.38-1~deb12u1', 'libc6:amd64'), and words
    that mix letters and digits ('deb12u2', 'libssl3'); not '12ms', '2nd' or dates."""
    out = set()
    for word in text.split():
        word = word.strip(_EDGES)
        if len(word) < 3 or _DATE.fullmatch(word) or _PLAIN.fullmatch(word) or not any(c.isdigit() for c in word):
            continue
        if (_PATTERNS["<VER>"].fullmatch(word) or _PATTERNS["<PKG>"].fullmatch(word)
                or (any(c.isalpha() for c in word) and not _CLOCK.fullmatch(word))):
            out.add(word)
    return out


def known_identifiers(text: str, values=()) -> set[str]:
    """What an answer may name: each identifier of `text` and of `values`, whole and in its pieces
    ('252.38-1~deb12u1' -> '252.38', '1', 'deb12u1'; 'nodejs:amd64' -> 'nodejs')."""
    out = set()
    for word in [w.strip(_EDGES) for w in text.split()] + list(values):
        out.add(word)
        out.update(_PIECES.split(word))
    return out


def dates_in(text: str) -> set[str]:
    """Dates written in `text` as ISO days: '2026-09-22', 'September 22, 2026' ('09-22' without a year)."""
    out = {m.group(0) for m in _DATE.finditer(text)}
    for m in _DATE_WORDS.finditer(text):
        month = _MONTHS[(m.group(1) or m.group(5))[:3].lower()]
        day, year = int(m.group(2) or m.group(4)), m.group(3) or m.group(6)
        out.add(f"{year}-{month:02d}-{day:02d}" if year else f"{month:02d}-{day:02d}")
    return out


def wrong_figures(answer: str, known_text: str, values=()) -> list[str]:
    """The figures of `answer` that `known_text` (the table the model read, the question, the
    facts) and `values` (the table's indexed values) do not hold: numbers compared exactly
    ('621' is not '661'), clock times by hour and minute, dates by day, identifiers as whole
    words or their pieces ('deb12u2' is not 'deb12u1')."""
    ids = identifiers_in(answer)
    known_ids = known_identifiers(known_text, values)
    wrong = sorted(i for i in ids if i not in known_ids)
    known_dates = dates_in(known_text)
    days = known_dates | {d[5:] for d in known_dates}
    dates = dates_in(answer)
    wrong += sorted(d for d in dates if d not in days)
    rest = _DATE_WORDS.sub(" ", _DATE.sub(" ", " ".join(w for w in answer.split() if w.strip(_EDGES) not in ids)))
    numbers, clocks = figures_in(rest)
    known_numbers, known_clocks = figures_in(known_text)
    known_numbers |= {p.lstrip("0") or "0" for d in known_dates for p in d.split("-")} | {
        p for d in known_dates for p in d.split("-")}
    wrong += sorted(numbers - known_numbers) + sorted(clocks - known_clocks)
    return wrong


def check_figures(report: str, table_text: str) -> tuple[str, list[str]]:
    """(the report without the sentences whose figures are not in `table_text`, those sentences).
    List markers ('1.', '2)') are not figures; numbers are compared without thousands separators,
    times by hour and minute, dates by day, versions and packages as whole words or their pieces
    (`wrong_figures`); a sentence with one count ('36 times', 'once') and times or a
    level must match one table line with that count, those times and that level."""
    known_numbers, known_clocks = figures_in(table_text)
    known_ids, known_dates = known_identifiers(table_text), dates_in(table_text)
    known_dates |= {d[5:] for d in known_dates}
    lines = [_claim(line) for line in table_text.splitlines()]
    kept_lines, dropped = [], []
    for line in report.splitlines():
        marker = _LIST_MARKER.match(line)
        head, body = (line[: marker.end()], line[marker.end():]) if marker else ("", line)
        kept = []
        for sentence in _SENTENCE.split(body):
            if _wrong(sentence, known_numbers, known_clocks, lines, known_ids, known_dates):
                dropped.append(sentence.strip())
            else:
                kept.append(sentence)
        if kept and " ".join(kept).strip():
            kept_lines.append(head + " ".join(kept))
        elif not line.strip():
            kept_lines.append(line)  # a blank line; a list marker left alone goes
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept_lines)).strip(), dropped
