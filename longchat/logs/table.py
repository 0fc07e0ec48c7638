"""The template table: per template its count, level, first and last time, a histogram over
time buckets and a few example values per variable; the ranking of what matters; its text
for the model (and for people, with `--no-model`) and its JSON for scripts.

Ranking, most important first: fatal, error and warning templates; then rare templates (seen
a few times in a large log); then bursts (a template whose rate in one bucket jumps well
above its average); then templates first seen late; the rest is routine, told as counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from longchat.logs.mine import TAGS, WILDCARD
from longchat.logs.parse import LEVEL_RANK, show_time
from longchat.text.retrieval import bm25, words

EXAMPLES = 3          # distinct example values kept per variable
VALUES = 4096         # distinct values indexed per template (count, first and last time of each) ...
TABLE_VALUES = 200_000  # ... and in the whole table: past these, new values are not indexed (memory stays bounded)
BUCKETS = 64          # histogram buckets at most: the width doubles when time runs past them
RARE_MAX = 3          # a template seen at most this often ...
RARE_MIN_RECORDS = 100  # ... in a log of at least this many records ...
RARE_MIN_MEAN = 20    # ... whose templates hold this many records on average is rare (where most
                      # templates are seen once, as in a boot log, once means nothing)
LATE_SHARE = 0.8      # first seen after this share of the log's span: new late
CATEGORIES = ("fatal", "error", "warn", "rare", "burst", "new late", "routine")


@dataclass
class Template:
    """One mined template and what was counted for it. Positions (`first`, `last`) are seconds
    (or line numbers in a log without times)."""

    id: int
    level: str
    tokens: tuple[str, ...]           # the template's words; variables hold tags or <*>
    count: int = 0
    lines: int = 0                    # physical lines, continuation lines included
    first: float | None = None
    last: float | None = None
    first_line: int = 0
    hist: dict[int, int] = field(default_factory=dict)      # bucket -> count
    examples: dict[int, list[str]] = field(default_factory=dict)  # word position -> values
    sample: str = ""                  # the first record as written, stack trace included
    multiline: int = 0                # records that had continuation lines
    # word position -> value -> [records, first, last]: every distinct value of each variable word
    # up to VALUES per template (`values_capped` once one was left out), for exact answers.
    values: dict[int, dict[str, list]] = field(default_factory=dict)
    values_capped: bool = False

    @property
    def text(self) -> str:
        return " ".join(self.tokens)

    def example(self) -> str:
        """The template with its first example value in each variable word: a message as a
        log writes it (what a small model reads best). Tags without an example stay."""
        words = list(self.tokens)
        for i, values in self.examples.items():
            if i < len(words) and values and "<" in words[i]:
                words[i] = values[0]
        return " ".join(words)

    def distinct(self) -> int:
        return sum(len(v) for v in self.values.values())

    def variables(self) -> list[tuple[int, list[str]]]:
        """(word position, example values) of the words that are wholly a variable."""
        return [(i, self.examples[i]) for i in sorted(self.examples) if i < len(self.tokens)
                and (self.tokens[i] == WILDCARD or self.tokens[i] in TAGS)]


@dataclass
class Clock:
    """Time buckets shared by every template: `origin` + i * `width` for i < BUCKETS."""

    kind: str                         # 'epoch', 'uptime' or 'line'
    origin: float | None = None
    width: float = 0.0
    limit: int = BUCKETS

    def start(self, position: float) -> None:
        self.origin = position
        self.width = {"epoch": 60.0, "uptime": 1.0}.get(self.kind, 1000.0)

    def bucket(self, position: float) -> tuple[int, int]:
        """(bucket index, times the width doubled to make room for it)."""
        index = max(int((position - self.origin) // self.width), 0)
        doublings = 0
        while index >= self.limit:
            self.width *= 2
            index //= 2
            doublings += 1
        return index, doublings

    def span(self, index: int) -> str:
        a = self.origin + index * self.width
        return f"{show_time(a, self.kind)} to {short_time(a, a + self.width, self.kind)}"


def merge_buckets(hist: dict[int, int], doublings: int) -> dict[int, int]:
    out: dict[int, int] = {}
    for index, n in hist.items():
        key = index >> doublings
        out[key] = out.get(key, 0) + n
    return out


def short_time(a: float | None, b: float | None, kind: str) -> str:
    """`b` for people, without the date when it is `a`'s."""
    shown = show_time(b, kind)
    if kind == "epoch" and a is not None and b is not None and show_time(a, kind)[:10] == shown[:10]:
        return shown[11:]
    return shown


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


@dataclass
class LogTable:
    """What one pass over a log found."""

    format: str
    clock: Clock
    templates: dict[int, Template] = field(default_factory=dict)
    volume: dict[int, int] = field(default_factory=dict)   # bucket -> records
    lines: int = 0
    records: int = 0          # records counted (after the filters)
    filtered: int = 0         # records the filters left out
    bytes: int = 0
    seconds: float = 0.0      # the pass's wall time

    # ---- ranking ------------------------------------------------------------------------

    @property
    def first(self) -> float | None:
        return min((t.first for t in self.templates.values() if t.first is not None), default=None)

    @property
    def last(self) -> float | None:
        return max((t.last for t in self.templates.values() if t.last is not None), default=None)

    def reasons(self, t: Template) -> list[str]:
        """Why a template matters, most important first ([] for routine ones)."""
        out = [t.level] if LEVEL_RANK[t.level] >= LEVEL_RANK["warn"] else []
        if (t.count <= RARE_MAX and self.records >= RARE_MIN_RECORDS
                and self.records >= RARE_MIN_MEAN * len(self.templates)):
            out.append("rare")
        if self.peak_ratio(t) >= 6 and max(t.hist.values()) >= 8:
            out.append("burst")
        first, last = self.first, self.last
        if (t.first is not None and first is not None and last > first and self.records >= RARE_MIN_RECORDS
                and t.first >= first + LATE_SHARE * (last - first)):
            out.append("new late")
        return out

    def peak_ratio(self, t: Template) -> float:
        """The template's count in its busiest bucket over its average per bucket of the log."""
        if not t.hist or len(self.volume) < 2:
            return 0.0
        span = max(self.volume) - min(self.volume) + 1
        if span < 8:
            return 0.0  # too few buckets to call anything a burst
        return max(t.hist.values()) / (t.count / span)

    def ranking(self) -> list[tuple[Template, list[str]]]:
        """Every template with its reasons, most important first; routine ones last, by count."""
        rows = [(t, self.reasons(t)) for t in self.templates.values()]

        def key(row):
            t, reasons = row
            category = CATEGORIES.index(reasons[0]) if reasons else len(CATEGORIES) - 1
            if reasons and reasons[0] == "rare":
                return category, t.count, t.first_line
            if reasons and reasons[0] == "burst":
                return category, -self.peak_ratio(t), t.first_line
            return category, -t.count, t.first_line

        return sorted(rows, key=key)

    def relevant(self, question: str) -> list[tuple[Template, float]]:
        """Every template with its BM25 score for the question's words, most relevant first.
        A template's text is its words (tags left out), its example values and its first
        record; ties (a question that shares no word with the log scores 0 everywhere) go to
        the more severe level, then to the ranking's order."""
        tags = set(words(" ".join(TAGS)))
        docs = []
        for t in self.templates.values():
            values = " ".join(v for vs in t.examples.values() for v in vs)
            docs.append([w for w in words(f"{t.text} {values} {t.sample[:400]}") if w not in tags])
        scores = dict(zip(self.templates, bm25(words(question), docs)))
        order = {t.id: i for i, (t, _) in enumerate(self.ranking())}
        rows = sorted(self.templates.values(), key=lambda t: (-scores[t.id], -LEVEL_RANK[t.level], order[t.id]))
        return [(t, scores[t.id]) for t in rows]

    # ---- text -----------------------------------------------------------------------------

    def overview(self) -> str:
        span = ""
        if self.first is not None:
            span = f" from {show_time(self.first, self.clock.kind)} to {short_time(self.first, self.last, self.clock.kind)}"
            if self.clock.kind == "uptime":
                span = f" from {self.first:.1f}s to {self.last:.1f}s after boot"
        filtered = f", {self.filtered:,} left out by the filters" if self.filtered else ""
        return (f"{plural(self.lines, 'line')} ({plural(self.records, 'record')}{filtered}){span}; "
                f"{self.format} format; {plural(len(self.templates), 'template')}")

    def describe(self, t: Template, reasons: list[str], concrete: bool = False) -> str:
        """One line: level, count, time range, peak, the template and example values
        (`concrete`: a message as written, for the model, instead of the template)."""
        kind = self.clock.kind
        when = ""
        if t.first is not None:
            when = (f" at {show_time(t.first, kind)}" if t.count == 1 or t.first == t.last
                    else f", {show_time(t.first, kind)} to {short_time(t.first, t.last, kind)}")
        peak = ""
        if "burst" in reasons and t.hist:
            index = max(t.hist, key=t.hist.get)
            peak = f" (peak {t.hist[index]:,} in {self.clock.span(index)})"
        values = "" if concrete else "; ".join(", ".join(v) for _, v in t.variables() if len(v) > 1)
        times = "once" if t.count == 1 else f"{t.count:,} times"
        tags = f" [{', '.join(r for r in reasons if r not in ('fatal', 'error', 'warn'))}]" if len(reasons) > (
            1 if reasons and reasons[0] in ("fatal", "error", "warn") else 0) else ""
        trace = f" (with a {t.sample.count(chr(10)) + 1}-line trace)" if t.multiline else ""
        return (f"{t.level.upper()} {times}{when}{peak}{tags}: {t.example() if concrete else t.text}{trace}"
                + (f" (e.g. {values})" if values else ""))

    def render(self, max_items: int = 30, routine_items: int = 5, concrete: bool = False) -> str:
        """The table as text: overview, the ranked incidents and unusual templates, routine counts
        (`concrete`: example messages instead of templates, for the model)."""
        ranked = self.ranking()
        notable = [(t, r) for t, r in ranked if r]
        routine = [t for t, r in ranked if not r]
        out = [f"Log: {self.overview()}.", ""]
        if notable:
            out.append("Incidents and unusual templates, most important first:")
            out += [f"{i}. {self.describe(t, r, concrete)}" for i, (t, r) in enumerate(notable[:max_items], 1)]
            if len(notable) > max_items:
                rest = notable[max_items:]
                out.append(f"... and {plural(len(rest), 'more template')} ({plural(sum(t.count for t, _ in rest), 'record')}).")
        else:
            out.append("No errors, warnings or unusual templates.")
        if routine:
            n = sum(t.count for t in routine)
            common = "; ".join(f"{t.example() if concrete else t.text} ({t.count:,})" for t in routine[:routine_items])
            out += ["", f"Routine: {plural(n, 'record')} in {plural(len(routine), 'template')}; most common: {common}."]
        if (change := self.volume_change()) is not None:
            out += ["", change]
        return "\n".join(out)

    def render_relevant(self, rows: list[tuple[Template, float]], example_chars: int = 300) -> list[str]:
        """One entry per template of `rows` (from `relevant`): the line `describe` writes, then
        its first record as written (cut to `example_chars`), for a question's reader."""
        ranked = dict((t.id, r) for t, r in self.ranking())
        out = []
        for i, (t, _) in enumerate(rows, 1):
            example = t.sample if len(t.sample) <= example_chars else t.sample[:example_chars] + " ..."
            out.append(f"{i}. {self.describe(t, ranked[t.id])}\n   Example: {example}")
        return out

    def volume_change(self) -> str | None:
        """The busiest time bucket, when it holds well over the typical one's records."""
        if len(self.volume) < 8:
            return None
        counts = sorted(self.volume.values())
        median = counts[len(counts) // 2]
        index = max(self.volume, key=self.volume.get)
        if self.volume[index] < 3 * max(median, 1):
            return None
        return (f"Volume: the busiest stretch, {self.clock.span(index)}, had {self.volume[index]:,} records "
                f"(typical: {median:,} per {self.bucket_words()}).")

    def bucket_words(self) -> str:
        w = self.clock.width
        if self.clock.kind == "line":
            return f"{w:,.0f} lines"
        return f"{w / 60:g} min" if w >= 60 else f"{w:g} s"

    def figures(self, items: int = 8) -> str:
        """The exact figures, for under the model's report."""
        ranked = [(t, r) for t, r in self.ranking() if r][:items]
        lines = [f"- {self.overview()}"] + [f"- {self.describe(t, r)}" for t, r in ranked]
        return "Figures (from the template table):\n" + "\n".join(lines)

    # ---- JSON ---------------------------------------------------------------------------

    def as_json(self) -> dict:
        kind = self.clock.kind
        span = None if self.clock.origin is None else self.clock.width
        return {
            "format": self.format, "clock": kind, "lines": self.lines, "records": self.records,
            "filtered_out": self.filtered, "bytes": self.bytes, "seconds": round(self.seconds, 3),
            "first": show_time(self.first, kind) if self.first is not None else None,
            "last": show_time(self.last, kind) if self.last is not None else None,
            "bucket_width": span, "bucket_origin": None if self.clock.origin is None else show_time(self.clock.origin, kind),
            "volume": self._series(self.volume),
            "ranking": [{"id": t.id, "reasons": r} for t, r in self.ranking() if r],
            "templates": [self.template_json(t) for t, _ in self.ranking()],
        }

    def template_json(self, t: Template) -> dict:
        kind = self.clock.kind
        return {
            "id": t.id, "template": t.text, "level": t.level, "count": t.count, "lines": t.lines,
            "first": show_time(t.first, kind) if t.first is not None else None,
            "last": show_time(t.last, kind) if t.last is not None else None,
            "histogram": self._series(t.hist),
            "variables": [{"word": i, "values": v} for i, v in t.variables()],
            "sample": t.sample,
        }

    def _series(self, hist: dict[int, int]) -> list[int]:
        """A bucket dict as a list over the log's buckets."""
        if not self.volume:
            return []
        return [hist.get(i, 0) for i in range(max(self.volume) + 1)]
