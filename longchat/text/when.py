"""The period a message asks about: "last week", "in March", "yesterday", "3 days ago", "the
week before my move". Session recall keeps to what was said in it (`chat/session.py`).

Periods are local calendar days, weeks (Monday first) and months, relative to the time the
message was said. A period tied to an event ("before my move") needs the event's date, which
the caller finds (`event`: words -> the time they were first said, or None). Pure Python.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december")
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
UNITS = {"day": 1, "week": 7, "month": 30, "year": 365}
_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
            "eight": 8, "nine": 9, "ten": 10, "couple of": 2, "few": 3}

_EVENT = re.compile(r"\b(?:(?:the\s+)?(day|week|month)\s+)?(before|after)\s+(?:my|our|the)\s+([a-z][a-z' -]{1,40}?)"
                    r"(?=[?.!,;]|$|\s+(?:and|or|but|when|where|what|who)\b)", re.I)
_AGO = re.compile(r"\b(\d+|an?|one|two|three|four|five|six|seven|eight|nine|ten|couple of|few)\s+"
                  r"(day|week|month|year)s?\s+ago\b", re.I)
_MONTH = re.compile(r"\b(?:in|during|back in|last|this)\s+(" + "|".join(MONTHS) + r")(?:\s+(\d{4}))?\b", re.I)
_WEEKDAY = re.compile(r"\b(?:on|last|this past)\s+(" + "|".join(DAYS) + r")\b", re.I)
_YEAR = re.compile(r"\bin\s+(\d{4})\b")


@dataclass(frozen=True)
class Period:
    start: float   # seconds since the epoch, inclusive
    end: float     # exclusive
    phrase: str    # the words that gave it, for notes ("last week")

    def holds(self, ts: float) -> bool:
        return self.start <= ts < self.end

    def __str__(self) -> str:
        last = datetime.fromtimestamp(self.end - 1)
        first = datetime.fromtimestamp(self.start)
        span = first.strftime("%Y-%m-%d") if first.date() == last.date() else \
            f"{first:%Y-%m-%d} to {last:%Y-%m-%d}"
        return f"{self.phrase} ({span})"


def period(text: str, now: float, event: Callable[[str], float | None] | None = None) -> Period | None:
    """The period `text` asks about, said at `now`; None when it names none (or names an event
    `event` cannot date)."""
    today = datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0)
    low = text.lower()

    def span(phrase: str, start: datetime, end: datetime) -> Period:
        return Period(start.timestamp(), end.timestamp(), phrase)

    if (m := _EVENT.search(low)) is not None and event is not None:
        unit, side, what = m.group(1), m.group(2), m.group(3).strip()
        when = event(what)
        if when is None:
            return None
        day = datetime.fromtimestamp(when).replace(hour=0, minute=0, second=0, microsecond=0)
        width = timedelta(days=UNITS[unit]) if unit else None
        if side == "before":
            return span(m.group(0), day - width if width else datetime(1970, 1, 2), day)
        after = day + timedelta(days=1)
        return span(m.group(0), after, after + width if width else today + timedelta(days=1))
    if "yesterday" in low:
        return span("yesterday", today - timedelta(days=1), today)
    if re.search(r"\b(?:today|this morning|tonight|this evening)\b", low):
        return span("today", today, today + timedelta(days=1))
    monday = today - timedelta(days=today.weekday())
    if re.search(r"\blast week\b", low):
        return span("last week", monday - timedelta(days=7), monday)
    if re.search(r"\bthis week\b", low):
        return span("this week", monday, today + timedelta(days=1))
    first = today.replace(day=1)
    if re.search(r"\blast month\b", low):
        return span("last month", (first - timedelta(days=1)).replace(day=1), first)
    if re.search(r"\bthis month\b", low):
        return span("this month", first, today + timedelta(days=1))
    if (m := _AGO.search(low)) is not None:
        n = int(m.group(1)) if m.group(1).isdigit() else _NUMBERS[m.group(1)]
        days = UNITS[m.group(2)]
        centre = today - timedelta(days=n * days)
        half = timedelta(days=max(days // 2, 0))
        return span(m.group(0), centre - half, centre + half + timedelta(days=1))
    if (m := _MONTH.search(low)) is not None:
        month = MONTHS.index(m.group(1)) + 1
        year = int(m.group(2)) if m.group(2) else (today.year if month <= today.month else today.year - 1)
        start = datetime(year, month, 1)
        end = datetime(year + month // 12, month % 12 + 1, 1)
        return span(m.group(0).strip(), start, end)
    if (m := _WEEKDAY.search(low)) is not None:
        back = (today.weekday() - DAYS.index(m.group(1))) % 7 or 7
        day = today - timedelta(days=back)
        return span(m.group(0), day, day + timedelta(days=1))
    if (m := _YEAR.search(low)) is not None and 1970 < int(m.group(1)) <= today.year:
        year = int(m.group(1))
        return span(m.group(0), datetime(year, 1, 1), datetime(year + 1, 1, 1))
    return None


def without_period(text: str, found: Period) -> str:
    """`text` without the words that named its period (they match nothing in what was said)."""
    return re.sub(re.escape(found.phrase), " ", text, flags=re.I).strip()


_RELATIVE = re.compile(r"\b(today|this (?:morning|afternoon|evening)|tonight|yesterday|last night|"
                       r"(?:this|last) (?:week|weekend)|on (?:" + "|".join(DAYS) + r"))\b", re.I)


def absolute(text: str, said: float) -> str:
    """`text`, said at `said`, with each relative time it names dated in brackets: "I painted
    the kitchen today [2026-03-03]". A memory is read out of its time: "today" alone would be
    read as the day it is read."""
    day = datetime.fromtimestamp(said).replace(hour=0, minute=0, second=0, microsecond=0)

    def dated(m: re.Match) -> str:
        words = m.group(1).lower()
        if words.startswith("on "):
            back = (day.weekday() - DAYS.index(words[3:])) % 7
            when = f"{day - timedelta(days=back):%Y-%m-%d}"
        elif words in ("yesterday", "last night"):
            when = f"{day - timedelta(days=1):%Y-%m-%d}"
        elif words.endswith("week") or words.endswith("weekend"):
            monday = day - timedelta(days=day.weekday() + (7 if words.startswith("last") else 0))
            when = f"week of {monday:%Y-%m-%d}"
        else:
            when = f"{day:%Y-%m-%d}"
        return f"{m.group(1)} [{when}]"
    return _RELATIVE.sub(dated, text)
