"""Where an answer's text came from: file and line range, or PDF page, for what the model read.

The model reads a long input as token ids: documents joined with a "### File: <label>" line
each (several sources or a folder) and PDF pages marked "[Page N]". A `Cursor` walks that
text as it is decoded and knows, at any point, the file, the line in it and the page; `cite`
turns token spans (BM25 passages, InfLLM's pinned block, a whole input) into `Cited` ranges,
and `cite_lines` does the same for lines chosen from the decoded text (the nearest by meaning).
Pure Python: no model, only the tokenizer's decode.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable

HEADER = re.compile(r"^### File: (.+)$")
PAGE = re.compile(r"^\[Page (\d+)\]$")
DECODE_CHUNK = 65_536  # tokens decoded at once while walking to a span (bounds memory on 1M-token inputs)


@dataclass
class Cited:
    """A range of one source that the model read."""

    file: str | None           # the label as the user gave it; None: stdin or unnamed text
    lines: tuple[int, int] | None = None   # first and last line (1-based), text files
    pages: tuple[int, int] | None = None   # first and last page, PDFs

    def as_dict(self) -> dict:
        out: dict = {"file": self.file}
        if self.pages is not None:
            out["pages"] = list(self.pages)
        elif self.lines is not None:
            out["lines"] = list(self.lines)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "Cited":
        lines, pages = d.get("lines"), d.get("pages")
        return cls(d.get("file"), tuple(lines) if lines else None, tuple(pages) if pages else None)

    def __str__(self) -> str:
        name = self.file or "<input>"
        if self.pages is not None:
            a, b = self.pages
            return f"{name} p. {a}" if a == b else f"{name} pp. {a}-{b}"
        if self.lines is not None:
            a, b = self.lines
            return f"{name}:{a}" if a == b else f"{name}:{a}-{b}"
        return name


@dataclass
class Cursor:
    """A position in the read text: its file, line and page. `feed` text in order; lines that
    hold more than whitespace are passed to `on_line(file, line, page)` once complete."""

    file: str | None = None
    line: int = 1
    page: int | None = None
    partial: str = ""          # the current line so far (a header may straddle two feeds)
    on_line: Callable[[str | None, int, int | None], None] | None = field(default=None, repr=False)

    def feed(self, text: str) -> None:
        *done, self.partial = (self.partial + text).split("\n")
        for line in done:
            self._complete(line)
        if len(self.partial) > 4096:  # no header is this long: keep only what a header check needs
            self._emit(self.partial)
            self.partial = " "  # the rest of the line: counted already, and never a header

    def flush(self) -> None:
        """End of a span: the line it stops in counts as read."""
        self._emit(self.partial)

    def _complete(self, line: str) -> None:
        if (header := HEADER.match(line)) is not None:
            self.file, self.line, self.page = header.group(1), 0, None
        elif (page := PAGE.match(line.strip())) is not None:
            self.page = int(page.group(1))
        else:
            self._emit(line)
        self.line += 1

    def _emit(self, line: str) -> None:
        if self.on_line is not None and line.strip():
            self.on_line(self.file, self.line, self.page)


def cite(decode: Callable[[list[int]], str], ids: list[int], start: int, spans: Iterable[tuple[int, int]],
         label: str | None = None) -> list[Cited]:
    """The sources of token `spans` of `ids` (the document starts at `ids[start]`; before it, a
    template head). `label`: the file when the text has no "### File:" lines (one source)."""
    spans = sorted((max(a, start), b) for a, b in spans if b > max(a, start))
    cursor, at = Cursor(file=label), start
    found = _Found()
    for a, b in spans:
        if a > at:  # walk on to the span (spans may overlap: never backwards)
            for i in range(at, a, DECODE_CHUNK):
                cursor.feed(decode(ids[i:min(i + DECODE_CHUNK, a)]))
            at = a
        reader = replace(cursor, on_line=found.add)
        for i in range(a, b, DECODE_CHUNK):
            reader.feed(decode(ids[i:min(i + DECODE_CHUNK, b)]))
        reader.flush()
    return found.ranges()


def quoted(ids: list[int], spans: Iterable[tuple[int, int]], answer: list[int], least: int = 4,
           asked: Iterable[int] = ()) -> list[tuple[int, int]]:
    """The places in `spans` of `ids` that the answer (its token ids) repeats: every run of at
    least `least` tokens that ties the best, as spans; [] when none is that long. A run counts
    its tokens the question (`asked`) does not hold: an answer restates the question ("The first
    keeper of Gull Rock Lighthouse was ...") and the title holds those words too. An answer
    that quotes its input ("... is ZX-4471") is cited at the line it quotes, not at all that was
    read."""
    starts: dict[tuple[int, ...], list[int]] = {}
    for i in range(len(answer) - least + 1):
        starts.setdefault(tuple(answer[i:i + least]), []).append(i)
    known = set(asked)
    best, found = 0, []
    for a, b in spans:
        i = a
        while i + least <= b:
            length = 0
            for j in starts.get(tuple(ids[i:i + least]), ()):
                n = least
                while i + n < b and j + n < len(answer) and ids[i + n] == answer[j + n]:
                    n += 1
                length = max(length, n)
            score = sum(t not in known for t in ids[i:i + length]) if length else 0
            if score > best:
                best, found = score, [(i, i + length)]
            elif score == best and score:
                found.append((i, i + length))
            i += max(length, 1)
    return found


def cite_lines(text: str, chosen: set[int], label: str | None = None) -> list[Cited]:
    """The sources of the lines of `text` at indexes `chosen` (of `text.split("\\n")`)."""
    found, cursor = _Found(), Cursor(file=label)
    for i, line in enumerate(text.split("\n")):
        cursor.on_line = found.add if i in chosen else None
        cursor.feed(line + "\n")
    return found.ranges()


class _Found:
    """Lines read, gathered into ranges: one per run of nearby lines (or pages) of a file."""

    GAP = 8  # lines apart that still make one range (blank lines are not counted as read)

    def __init__(self):
        self.by_file: dict[str | None, list[tuple[int, int | None]]] = {}

    def add(self, file: str | None, line: int, page: int | None) -> None:
        self.by_file.setdefault(file, []).append((line, page))

    def ranges(self) -> list[Cited]:
        out = []
        for file, seen in self.by_file.items():
            pages = [p for _, p in seen if p is not None]
            if pages:
                out += [Cited(file, pages=run) for run in _runs(pages, 1)]
            else:
                out += [Cited(file, lines=run) for run in _runs([n for n, _ in seen], self.GAP)]
        return out


def _runs(numbers: list[int], gap: int) -> list[tuple[int, int]]:
    """Sorted runs of `numbers` whose neighbours are at most `gap` apart, as (first, last)."""
    runs: list[list[int]] = []
    for n in sorted(set(numbers)):
        if runs and n - runs[-1][1] <= gap:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return [(a, b) for a, b in runs]


def describe(cited: list[Cited]) -> str:
    """One line for people: "notes.md:12-30; book.pdf p. 4"."""
    return "; ".join(map(str, cited))
