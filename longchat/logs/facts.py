"""Exact answers from the template table for counting, time and "which" questions about a log.

The model phrases; the table decides the numbers. A question's kind is read from its words
(how many / when / which), the template it is about from the literal words it shares with the
question (lightly stemmed: 'upgraded' finds 'upgrade'), and a value it names ('nodejs') from
that template's value index. The figure is computed here and handed to the model as a short
"Facts from the table" block, with the sentence that answers it.

    facts = find_facts(table, "How many packages were upgraded?")
    facts.answer   # '41 packages were upgraded (41 upgrade records, ...).'
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from longchat.logs.mine import WILDCARD, is_variable
from longchat.logs.parse import show_time
from longchat.logs.table import LogTable, Template, plural
from longchat.text.retrieval import bm25, words

_COUNT = re.compile(r"\b(?:how many|how often|number of|count|how much|total)\b", re.I)
_TIME = re.compile(r"\b(?:when|what time|which time|what date|which date|which day|what day|date)\b", re.I)
_FIRST = re.compile(r"\b(?:first|earliest|start(?:ed)?)\b", re.I)
_LAST = re.compile(r"\b(?:last|latest|most recent|recent)\b", re.I)
_WHICH = re.compile(r"\b(?:which|what|list|name)\b", re.I)
# What a question calls a tag's values, and what the answer calls them.
NOUNS = {"<PKG>": "package", "<VER>": "version", "<IP>": "address", "<PATH>": "path", "<UUID>": "id",
         "<ID>": "id", "<HEX>": "id", "<NUM>": "number", "<TIME>": "time"}
_NOUN_WORDS = {"package": "<PKG>", "version": "<VER>", "address": "<IP>", "ip": "<IP>", "host": "<IP>",
               "client": "<IP>", "path": "<PATH>", "file": "<PATH>", "id": "<ID>", "number": "<NUM>"}
LISTED = 20  # values a "which" answer names at most


def stem(word: str) -> str:
    """A light stem, enough to meet a log's verb: 'upgraded', 'upgrades' -> 'upgrad' = 'upgrade'."""
    for suffix in ("ing", "ed", "es", "e", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


_NOUN_STEMS = {stem(w): tag for w, tag in _NOUN_WORDS.items()}


def noun_tag(word: str) -> str | None:
    """The tag a question's noun names: 'packages' -> '<PKG>'."""
    return _NOUN_WORDS.get(word) or _NOUN_STEMS.get(stem(word))


def question_kind(question: str) -> str | None:
    """'count', 'time' or 'which' (checked in that order), else None."""
    if _COUNT.search(question):
        return "count"
    if _TIME.search(question):
        return "time"
    if _WHICH.search(question):
        return "which"
    return None


@dataclass
class Facts:
    """What the table says to a question: `lines` for the model, `answer` (one sentence with the
    exact figures) and `key` (the figures an answer must state)."""

    kind: str
    template: Template
    lines: list[str] = field(default_factory=list)
    answer: str = ""
    key: list[str] = field(default_factory=list)

    def block(self) -> str:
        return "Facts from the table (exact; answer with these figures):\n" + "\n".join(
            f"- {line}" for line in self.lines + [f"Answer: {self.answer}"])


def kind_name(t: Template) -> str:
    """A template's literal words, the name of its records ('upgrade', 'status installed'), or
    its text when it has none."""
    literal = [w for w in t.tokens if not is_variable(w)]
    return " ".join(literal[:4]) or t.text


def _doc(t: Template) -> list[str]:
    return [stem(w) for w in words(" ".join(w for w in t.tokens if not is_variable(w)))]


def about(table: LogTable, question: str) -> list[tuple[Template, float]]:
    """The templates whose literal words the question shares, best first (BM25 over stemmed words;
    a shorter kind wins a tie: 'installed' is the 'install' records before 'status installed')."""
    rows = list(table.templates.values())
    scores = bm25([stem(w) for w in words(question)], [_doc(t) for t in rows])
    ranked = sorted(zip(rows, scores), key=lambda r: (-r[1], len(_doc(r[0])), -r[0].count))
    return [(t, s) for t, s in ranked if s > 0]


def _names(value: str) -> set[str]:
    """How a question may name a value: as written, and without an ':arch' ('nodejs:amd64')."""
    value = value.lower()
    return {value, value.split(":", 1)[0]}


def named_values(t: Template, question: str) -> list[tuple[int, str]]:
    """(word position, value) of the template's indexed values the question names as a word."""
    said = {w.strip("?.,;!'\"()").lower() for w in question.split()}
    said = {w for w in said if w and stem(w) not in _NOUN_STEMS and w not in _NOUN_WORDS}
    return [(i, v) for i, seen in t.values.items() if is_variable(t.tokens[i]) for v in seen if _names(v) & said]


def _slot(t: Template, question: str) -> int | None:
    """The variable word a question asks about: the one its noun names ('packages' -> <PKG>),
    else the first variable word with more than one value."""
    nouns = {noun_tag(w) for w in words(question)}
    slots = [i for i in sorted(t.values) if i < len(t.tokens) and is_variable(t.tokens[i])]
    for i in slots:
        if t.tokens[i] in nouns:
            return i
    return next((i for i in slots if len(t.values[i]) > 1), None)


def _noun(t: Template, i: int) -> str:
    return NOUNS.get(t.tokens[i], "value") if t.tokens[i] != WILDCARD else "value"


def find_facts(table: LogTable, question: str) -> Facts | None:
    """The exact facts a counting, time or "which" question asks of the table, or None when the
    question is none of these or shares no literal word with any template."""
    kind = question_kind(question)
    rows = about(table, question)
    if kind is None or not rows:
        return None
    top = rows[0][1]
    candidates = [t for t, s in rows if s >= top * 0.999]
    named = [(t, i, v) for t in candidates for i, v in named_values(t, question)]
    if not named:  # a value the best templates lack but others hold ('nodejs' never upgraded)
        holders = [t for t in table.templates.values() if named_values(t, question)]
        if holders:
            t = candidates[0]
            shown = sorted({v for h in holders for _, v in named_values(h, question)})[:3]
            facts = Facts(kind, t)
            facts.answer = f"No {kind_name(t)} record names {', '.join(shown)}."
            facts.lines = [f"{kind_name(t)} records: {t.count:,}; none of them names {', '.join(shown)}."]
            return facts
    clock = table.clock.kind
    if named:
        t, i, value = named[0]
        n, first, last = t.values[i][value]
        facts = Facts(kind, t)
        name = kind_name(t)
        when = _when(first, last, n, clock, question)
        facts.lines = [f"{name} records naming {value}: {n:,}{when}."]
        if kind == "count":
            facts.answer = f"{value}: {plural(n, name + ' record')}{when}."
            facts.key = [str(n)]
        else:
            facts.answer = f"the {name} of {value} was{when}." if n == 1 else f"{value}: {plural(n, name + ' record')}{when}."
            facts.key = _times(first, last, n, clock, question)
        return facts
    t = candidates[0]
    name = kind_name(t)
    facts = Facts(kind, t)
    span = _when(t.first, t.last, t.count, clock, question)
    facts.lines = [f"{name} records: {t.count:,}{span}."]
    slot = _slot(t, question)
    distinct = None
    if slot is not None:
        distinct = len(t.values[slot])
        noun = _noun(t, slot)
        more = "at least " if t.values_capped else ""
        facts.lines.append(f"distinct {noun}s in them: {more}{distinct:,}.")
    if kind == "count":
        if slot is not None and any(noun_tag(w) == t.tokens[slot] for w in words(question)):
            facts.answer = f"{plural(distinct, _noun(t, slot))} ({plural(t.count, name + ' record')})."
            facts.key = [str(distinct)]
        else:
            facts.answer = f"{plural(t.count, name + ' record')}{span}."
            facts.key = [str(t.count)]
    elif kind == "time":
        facts.answer = f"{plural(t.count, name + ' record')}{span}."
        facts.key = _times(t.first, t.last, t.count, clock, question)
    else:
        if slot is None:
            facts.answer = f"{plural(t.count, name + ' record')}{span}."
        else:
            seen = sorted(t.values[slot].items(), key=lambda kv: (kv[1][1] is None, kv[1][1] or 0, kv[0]))
            names = [v for v, _ in seen[:LISTED]]
            rest = f" and {distinct - LISTED:,} more" if distinct > LISTED else ""
            facts.answer = f"{plural(distinct, _noun(t, slot))}: {', '.join(names)}{rest}."
            facts.lines.append(f"the {_noun(t, slot)}s: {', '.join(names)}{rest}.")
            facts.key = names[:1]
    return facts


def _when(first, last, n: int, clock: str, question: str) -> str:
    if first is None:
        return ""
    if n == 1 or first == last:
        return f" at {show_time(first, clock)}"
    if _FIRST.search(question) and not _LAST.search(question):
        return f", first at {show_time(first, clock)}"
    if _LAST.search(question) and not _FIRST.search(question):
        return f", last at {show_time(last, clock)}"
    return f", first at {show_time(first, clock)}, last at {show_time(last, clock)}"


def _times(first, last, n: int, clock: str, question: str) -> list[str]:
    """The dates an answer about these times must state ('2026-09-22')."""
    if first is None:
        return []
    if n == 1 or first == last:  # one time: its day and its clock
        return [show_time(first, clock)[:10], show_time(first, clock)[11:16]] if clock == "epoch" else []
    shown = {show_time(first, clock)[:10], show_time(last, clock)[:10]}
    if _FIRST.search(question) and not _LAST.search(question):
        shown = {show_time(first, clock)[:10]}
    elif _LAST.search(question) and not _FIRST.search(question):
        shown = {show_time(last, clock)[:10]}
    return sorted(shown) if clock == "epoch" else []



