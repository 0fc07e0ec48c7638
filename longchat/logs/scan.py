"""One streaming pass over a log: lines -> records -> filters -> masked -> templates -> table.

Memory holds one input piece, one batch of records, and the table (bounded by the number of
templates): never the log.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from longchat.logs.detect import CONTINUATIONS
from longchat.logs.mine import Miner, is_variable, mask_batch
from longchat.logs.parse import (LEVEL_RANK, LEVELS, LogFormat, TimeCache, level_from_words, level_of, parse_clock,
                                 parse_time)
from longchat.logs.table import EXAMPLES, TABLE_VALUES, VALUES, Clock, LogTable, Template, merge_buckets

MAX_CONTINUATION = 200   # lines a record may carry; past them, lines stand alone
SAMPLE_CHARS = 1500      # of a template's first record kept as its sample
EXAMPLE_RECORDS = 200    # examples come from a template's first records, then from every 1024th
CACHE_LIMIT = 100_000    # timestamps and levels remembered per text

Progress = Callable[[int, int, int], None]   # (bytes read, lines, templates)


@dataclass
class Filters:
    """--since/--until (seconds in the log's clock; `*_clock`: a time of day, on the log's first
    day), --level (the lowest level kept) and --grep (a regex searched in each record)."""

    since: float | None = None
    until: float | None = None
    since_clock: float | None = None
    until_clock: float | None = None
    level: str | None = None
    grep: re.Pattern | None = None

    @classmethod
    def parse(cls, since: str | None = None, until: str | None = None, level: str | None = None,
              grep: str | None = None) -> "Filters":
        """Filters from the command line's strings; ValueError with a message fit for a user."""
        out = cls()
        for name, value in (("since", since), ("until", until)):
            if value is None:
                continue
            clock = parse_clock(value)
            if clock is not None:
                setattr(out, f"{name}_clock", clock)
                continue
            seconds = parse_time(value)
            if seconds is None:
                try:
                    seconds = float(value)  # seconds after boot, for dmesg
                except ValueError:
                    raise ValueError(f"--{name} {value!r}: not a time; use e.g. 2026-12-01, '2026-12-01 05:00', "
                                     f"2026-12-01T05:00:00Z, 'Dec 1 05:00:00', 05:00, or seconds after boot") from None
            setattr(out, name, seconds)
        if level is not None:
            out.level = level_of(level)
            if out.level is None:
                raise ValueError(f"--level {level!r}: expected one of {', '.join(LEVELS)}")
        if grep is not None:
            try:
                out.grep = re.compile(grep)
            except re.error as e:
                raise ValueError(f"--grep {grep!r}: not a valid regular expression ({e})") from None
        return out

    @property
    def by_time(self) -> bool:
        return any(v is not None for v in (self.since, self.until, self.since_clock, self.until_clock))


class Record:
    __slots__ = ("line_no", "ts", "level", "msg", "head", "more")

    def __init__(self, line_no: int, ts, level, msg: str, head: str):
        self.line_no, self.ts, self.level, self.msg, self.head = line_no, ts, level, msg, head
        self.more: list[str] | None = None  # continuation lines


class LogScanner:
    """Feed text pieces, then `finish()` for the table."""

    def __init__(self, fmt: LogFormat, filters: Filters | None = None, *, max_templates: int = 5000,
                 progress: Progress | None = None):
        self.fmt = fmt
        self.filters = filters or Filters()
        self.miner = Miner(max_templates=max_templates)
        self.table = LogTable(fmt.name, Clock(fmt.clock))
        self.progress = progress
        self.rest = ""
        self.pending: list[Record] = []
        self.parse_time = TimeCache()
        self.times: dict[str, float | None] = {}
        self.levels: dict[str, str] = {}
        self.last_pos: float | None = None
        self.indexed = 0             # distinct values indexed in the whole table
        self.slots: dict[int, list[int]] = {}  # template id -> its variable word positions
        self.started = time.perf_counter()

    # ---- lines to records -----------------------------------------------------------------

    def feed(self, piece: str, size: int | None = None) -> None:
        self.table.bytes += len(piece.encode("utf-8", "replace")) if size is None else size
        lines = (self.rest + piece).replace("\r\n", "\n").split("\n")
        self.rest = lines.pop()
        self._read_lines(lines)
        if len(self.pending) > 1:  # the last record may still get continuation lines
            self._count(self.pending[:-1])
            self.pending = self.pending[-1:]
        if self.progress:
            self.progress(self.table.bytes, self.table.lines, len(self.table.templates))

    def _read_lines(self, lines: list[str]) -> None:
        pending, record_of = self.pending, self.fmt.record
        n = self.table.lines
        for line in lines:
            n += 1
            if not line or line[0] in " \t" or line.startswith(CONTINUATIONS):
                if not line or line.isspace():
                    continue
                parts = None
            else:
                parts = record_of(line)
            if parts is None:
                if pending:
                    last = pending[-1]
                    if last.more is None:
                        last.more = [line]
                        continue
                    if len(last.more) < MAX_CONTINUATION:
                        last.more.append(line)
                        continue
                parts = (None, None, line.strip())
            pending.append(Record(n, parts[0], parts[1], parts[2], line))
        self.table.lines = n

    def finish(self) -> LogTable:
        if self.rest:
            self._read_lines([self.rest])
            self.rest = ""
        self._count(self.pending)
        self.pending = []
        self.table.seconds = time.perf_counter() - self.started
        if self.progress:
            self.progress(self.table.bytes, self.table.lines, len(self.table.templates))
        return self.table

    # ---- records to templates --------------------------------------------------------------

    def _time(self, text: str) -> float | None:
        """Seconds of a timestamp's text (remembered: a busy log repeats each second's)."""
        if self.table.clock.kind == "uptime":
            try:
                pos = float(text)
            except ValueError:
                pos = None
        else:
            pos = self.parse_time(text)
        if len(self.times) >= CACHE_LIMIT:
            self.times.clear()
        self.times[text] = pos
        return pos

    def _in_time(self, pos: float | None) -> bool:
        f = self.filters
        if pos is None:
            return False
        if f.since_clock is not None or f.until_clock is not None:
            day = pos - pos % 86400  # the log's first day: a time of day means that day
            if f.since_clock is not None:
                f.since, f.since_clock = day + f.since_clock, None
            if f.until_clock is not None:
                f.until, f.until_clock = day + f.until_clock, None
        return (f.since is None or pos >= f.since) and (f.until is None or pos <= f.until)

    def _count(self, records: list[Record]) -> None:
        if not records:
            return
        f, table, clock, miner = self.filters, self.table, self.table.clock, self.miner
        if f.grep is not None:
            kept = [r for r in records if f.grep.search(r.head) or (r.more and any(map(f.grep.search, r.more)))]
            table.filtered += len(records) - len(kept)
            records = kept
        masked_all = mask_batch([r.msg for r in records])
        min_level = LEVEL_RANK[f.level] if f.level else 0
        templates, volume, levels, times = table.templates, table.volume, self.levels, self.times
        by_time, by_line = f.by_time, clock.kind == "line"
        shapes = miner.cache
        for r, masked in zip(records, masked_all):
            if by_line:
                pos = float(r.line_no)
            elif r.ts:
                pos = times.get(r.ts, -1.0)
                if pos == -1.0:
                    pos = self._time(r.ts)
                if pos is None:
                    pos = self.last_pos  # a record without a time happened after the one before it
                else:
                    self.last_pos = pos
            else:
                pos = self.last_pos
            if by_time and not self._in_time(pos):
                table.filtered += 1
                continue
            level = group = None
            if r.level:
                word, _, group = r.level.partition(" ")  # 'error 507': a level and a group (nginx)
                level = level_of(word)
            if level is None:
                level = levels.get(masked)
                if level is None:
                    level = level_from_words(masked)
                    if len(levels) >= CACHE_LIMIT:
                        levels.clear()
                    levels[masked] = level
            if LEVEL_RANK[level] < min_level:
                table.filtered += 1
                continue
            mined = f"{level} {group}" if group else level
            tid = shapes.get(f"{mined} {masked}") if not group else None
            t = None if tid is None else templates.get(tid)
            if t is None:
                tid = miner.template_id(mined, masked, r.msg)
                t = templates.get(tid)
                if t is None:
                    t = templates[tid] = Template(tid, level, ())
                    t.first_line = r.line_no
                    t.sample = "\n".join([r.head] + (r.more or [])[:20])[:SAMPLE_CHARS]
                self._retoken(t, tid)  # Drain saw this shape: the template may have new variables
            t.count += 1
            if r.more:
                t.lines += 1 + len(r.more)
                t.multiline += 1
            else:
                t.lines += 1
            if pos is not None:
                if clock.origin is None:
                    clock.start(pos)
                index, doublings = clock.bucket(pos)
                if doublings:
                    self._rebucket(doublings)
                    volume = table.volume
                hist = t.hist
                hist[index] = hist.get(index, 0) + 1
                volume[index] = volume.get(index, 0) + 1
                if t.first is None or pos < t.first:
                    t.first = pos
                if t.last is None or pos > t.last:
                    t.last = pos
            if t.count <= EXAMPLE_RECORDS or not t.count & 1023:
                self._examples(t, tid, r.msg, masked)
            slots = self.slots.get(tid)
            if slots:
                self._index(t, slots, r.msg, pos)
        table.records = sum(t.count for t in templates.values())

    def _rebucket(self, doublings: int) -> None:
        self.table.volume = merge_buckets(self.table.volume, doublings)
        for t in self.table.templates.values():
            t.hist = merge_buckets(t.hist, doublings)

    def _retoken(self, t: Template, tid: int) -> None:
        """Take the template's tokens from Drain. A word that was literal and is now a variable
        held its literal value in every record counted so far: that is its index's first value."""
        tokens = self.miner.tokens(tid)
        if tokens is None:
            return
        tokens = tokens[1:]  # the level Drain was given first
        if tokens == t.tokens:
            return
        slots = [i for i, token in enumerate(tokens) if is_variable(token)]
        if len(tokens) == len(t.tokens) and t.count:
            for i in slots:
                if i not in t.values and not is_variable(t.tokens[i]):
                    t.values[i] = {t.tokens[i][:80]: [t.count, t.first, t.last]}
                    self.indexed += 1
        t.tokens = tokens
        self.slots[tid] = slots

    def _index(self, t: Template, slots: list[int], message: str, pos: float | None) -> None:
        """Count each variable word's value, with its first and last time (bounded: VALUES a
        template, TABLE_VALUES in all)."""
        words = message.split()
        if len(words) != len(t.tokens):
            return
        for i in slots:
            value = words[i][:80]
            seen = t.values.get(i)
            if seen is None:
                seen = t.values[i] = {}
            stat = seen.get(value)
            if stat is None:
                if self.indexed >= TABLE_VALUES or t.distinct() >= VALUES:
                    t.values_capped = True
                    continue
                seen[value] = [1, pos, pos]
                self.indexed += 1
                continue
            stat[0] += 1
            if pos is not None:
                if stat[1] is None or pos < stat[1]:
                    stat[1] = pos
                if stat[2] is None or pos > stat[2]:
                    stat[2] = pos

    def _examples(self, t: Template, tid: int, message: str, masked: str) -> None:
        """Keep a few distinct raw values of each variable word (masks never span a space, so
        the raw and masked words line up)."""
        tokens = self.miner.tokens(tid)
        if tokens is None:
            return
        t.tokens = tokens[1:]  # the level Drain was given first
        words, shape = message.split(), masked.split()
        if len(words) != len(shape) or len(shape) != len(t.tokens):
            return
        for i, token in enumerate(t.tokens):
            if is_variable(token) or is_variable(shape[i]):
                values = t.examples.setdefault(i, [])
                if len(values) < EXAMPLES and words[i] not in values:
                    values.append(words[i][:80])


def scan(pieces: Iterable[str], fmt: LogFormat, filters: Filters | None = None, *,
         progress: Progress | None = None, max_templates: int = 5000) -> LogTable:
    """The table of a log given as text pieces, in one pass."""
    scanner = LogScanner(fmt, filters, max_templates=max_templates, progress=progress)
    for piece in pieces:
        scanner.feed(piece)
    table = scanner.finish()
    for t in table.templates.values():  # Drain may have generalised a template since its last example
        tokens = scanner.miner.tokens(t.id)
        if tokens is not None:
            t.tokens = tokens[1:]
        elif not t.tokens:
            t.tokens = tuple(t.sample.split())
    return table
