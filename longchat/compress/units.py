"""What compression keeps or drops: whole words, whole code lines, whole keep-strings.

Token-level compression scores tokens, but a kept half of a number ("31" of "31415") is worse
than either. So the text is cut into *units* first: a word (a run of non-space characters;
numbers and names stay whole), a line inside a fenced code block (indentation and all), or an
occurrence of a `--keep` string (always kept). Each token belongs to one unit; a unit is kept
or dropped whole. Scripts written without spaces (Chinese, Japanese) would make one unit of a
whole sentence, so a long word that is not a number is cut at its tokens' character bounds.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Sequence

FENCE = re.compile(r"^[ \t]*(```|~~~).*?(?:^[ \t]*\1[^\n]*$|\Z)", re.M | re.S)
WORD = re.compile(r"\S+")
NUMBER = re.compile(r"^[^\w]*[-+]?\d[\d.,:/_-]*[^\w]*$")
LONG_WORD = 8  # tokens: a longer non-number word is cut at token bounds (unspaced scripts)


@dataclass
class Unit:
    start: int            # [start, end): characters of the document text
    end: int
    forced: bool = False  # a keep-string or a code fence: always kept
    line: bool = False    # a code line: never cut into pieces
    tokens: int = 0       # the document's tokens that belong to it
    score: float = 0.0    # the highest token score in it (set by the scorer)


def split_units(text: str, keep: Sequence[str] = ()) -> list[Unit]:
    """The units of `text` in order; they never overlap and cover every non-space character."""
    units: list[Unit] = []
    pos = 0
    for fence in FENCE.finditer(text):
        units += [Unit(m.start() + pos, m.end() + pos) for m in WORD.finditer(text[pos:fence.start()])]
        units += _code_lines(text, fence.start(), fence.end())
        pos = fence.end()
    units += [Unit(m.start() + pos, m.end() + pos) for m in WORD.finditer(text[pos:])]
    return _force(units, _keep_spans(text, keep))


def _code_lines(text: str, start: int, end: int) -> list[Unit]:
    """One unit per non-blank line of a fenced block (from the line start: indentation kept)."""
    out, lines = [], text[start:end].split("\n")
    offset = start
    for i, line in enumerate(lines):
        if line.strip():
            fence = i == 0 or (i == len(lines) - 1 and line.strip().startswith(("```", "~~~")))
            out.append(Unit(offset, offset + len(line), forced=fence, line=True))
        offset += len(line) + 1
    return out


def _keep_spans(text: str, keep: Sequence[str]) -> list[tuple[int, int]]:
    spans = []
    for s in keep:
        if s:
            spans += [(m.start(), m.end()) for m in re.finditer(re.escape(s), text)]
    return sorted(spans)


def _force(units: list[Unit], spans: list[tuple[int, int]]) -> list[Unit]:
    """Merge the units each keep-span touches into one forced unit."""
    if not spans:
        return units
    out: list[Unit] = []
    for unit in units:
        hit = any(a < unit.end and unit.start < b for a, b in spans)
        if hit and out and out[-1].forced and _touches(out[-1], unit, spans):
            out[-1].end = unit.end
        else:
            out.append(Unit(unit.start, unit.end, forced=unit.forced or hit, line=unit.line))
    return out


def _touches(prev: Unit, unit: Unit, spans: list[tuple[int, int]]) -> bool:
    """Whether one keep-span covers part of both units (a multi-word keep-string)."""
    return any(a < prev.end and prev.end <= b and a < unit.end and unit.start < b for a, b in spans)


def assign_tokens(units: list[Unit], text: str, offsets: Sequence[tuple[int, int]]) -> tuple[list[Unit], list[int]]:
    """Count each token into the unit holding its first non-space character.

    Returns the units (long unspaced words cut at token bounds) and, per token, its unit index.
    """
    units = _cut_long(units, text, offsets)
    starts = [u.start for u in units]
    owner = []
    for a, b in offsets:
        c = a
        while c < b and text[c].isspace():
            c += 1
        i = bisect.bisect_right(starts, c) - 1
        if i < 0 or (c >= units[i].end and i + 1 < len(units)):
            i += 1  # whitespace before a unit belongs to that unit
        i = min(max(i, 0), len(units) - 1)
        owner.append(i)
        units[i].tokens += 1
    return units, owner


def _cut_long(units: list[Unit], text: str, offsets: Sequence[tuple[int, int]]) -> list[Unit]:
    bounds = sorted({a for a, _ in offsets})
    out = []
    for u in units:
        inner = bounds[bisect.bisect_right(bounds, u.start):bisect.bisect_left(bounds, u.end)]
        if u.forced or u.line or len(inner) < LONG_WORD or NUMBER.match(text[u.start:u.end]) or "\n" in text[u.start:u.end]:
            out.append(u)
            continue
        edges = [u.start, *inner, u.end]
        out += [Unit(a, b) for a, b in zip(edges, edges[1:]) if a < b]
    return out


BREAKS = ("", " ", "\n", "\n\n")


def _break(gap: str) -> int:
    return 3 if "\n\n" in gap else 2 if "\n" in gap else 1 if gap else 0


def render(text: str, units: list[Unit], kept: Sequence[bool]) -> str:
    """The text with dropped units left out. Between kept neighbours the original spacing stays;
    where units were dropped, the spacing becomes the largest break among the gaps removed:
    a blank line, a newline (between code lines; prose gets a space), one space, or nothing
    (scripts written without spaces)."""
    parts: list[str] = []
    gap, level, dropped, last, prev_line = "", 0, False, 0, False
    for unit, keep in zip(units, kept):
        gap = text[last:unit.start]
        level = max(level, _break(gap))
        last = unit.end
        if not keep:
            dropped = True
            continue
        if parts:
            if dropped and level == 2 and not (unit.line or prev_line):
                level = 1  # a line break inside prose costs a token: a space does the same job
            parts.append(BREAKS[level] if dropped else gap)
        parts.append(text[unit.start:unit.end])
        level, dropped, prev_line = 0, False, unit.line
    return "".join(parts)
