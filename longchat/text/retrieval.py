"""Retrieval by words: one tokenizer, one stop-word list, Okapi BM25, and the passages of a
token sequence that best match a question.

Used by `auto`'s passages (`longchat.reading`), InfLLM's lexical re-ranking candidates
(`longchat.context.infllm.lexical`), the log table's ranking (`longchat.logs.table`), the
session word lists (`longchat.text.words`) and the `rag` plugin. Pure Python: reading a log or
loading a plugin must not import torch for it.

BM25 is ours, not the `bm25s` package, which is slower where we use it: we index per question
(a document's ~1,000 windows, then one query), and bm25s builds a sparse index of every word
where we count only the query's. 1,000 passages of 120 words, 8-word queries, index build
included, median of 20 runs: 14-22 ms here against 116-152 ms for bm25s 0.3.16 (same top 10).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Callable

Decode = Callable[[list[list[int]]], list[str]]  # token ids -> text, many spans at once

# A word: letters and digits (any script), cut at everything else, underscores included.
WORD = re.compile(r"[^\W_]+")
# Function words, and the words of longchat's own ask frame ("Question: ...").
STOP_WORDS = frozenset("""a about an and any are as at be been but by can could did do does for from had has have
he her his how i if in into is it its me my no not of on or our she so than that the their them then there these
they this those to too us was we were what when where which who whom whose why will with would you your question
answer tell please""".split())

# Okapi BM25's textbook defaults (Robertson et al.; Manning, Raghavan & Schuetze, IR book 11.4.3):
# term-frequency saturation k1 = 1.2, length normalisation b = 0.75.
K1, B = 1.2, 0.75


def words(text: str) -> list[str]:
    """Lower-cased words of `text` without function words; digits count as words (codes, years)."""
    return [w for w in WORD.findall(text.lower()) if w not in STOP_WORDS]


def bm25(query: list[str], docs: list[list[str]]) -> list[float]:
    """Okapi BM25 of each doc (a list of words) for the query's words (each distinct word once);
    idf = ln(1 + (N - df + 0.5) / (df + 0.5)), never negative."""
    terms = set(query)
    if not docs or not terms:
        return [0.0] * len(docs)
    avg = sum(map(len, docs)) / len(docs) or 1.0
    counts = [Counter(w for w in doc if w in terms) for doc in docs]
    df = Counter(w for c in counts for w in c)
    idf = {w: math.log(1 + (len(docs) - df[w] + 0.5) / (df[w] + 0.5)) for w in df}
    out = []
    for doc, c in zip(docs, counts):
        norm = K1 * (1 - B + B * len(doc) / avg)
        out.append(sum(idf[w] * n * (K1 + 1) / (n + norm) for w, n in c.items()))
    return out


def best_passages(ids: list[int], query: str, decode: Decode, start: int, budget: int, size: int = 128,
                  cover: float = 0.0, floor: float = 0.0) -> list[tuple[int, int]]:
    """Spans of `ids[start:]` worth reading for the question `query` (`decode` turns spans of
    token ids into text): windows of `size` tokens starting every `size // 2`, ranked by BM25
    for the query's words, taken best first until `budget` tokens; returned in reading order,
    overlapping and touching spans joined. Each window taken is widened to whole sentences (up
    to `size // 4` tokens each side), and a window that overlaps one already taken adds only its
    new tokens: the best window often starts or ends inside the sentence that holds the answer,
    and its neighbour holds the rest. Windows scoring under `floor` times the best window's
    score are left out (those that match one common word of the question: the reader answered
    from them). Empty when no window shares a word with the query, or when the best one holds
    fewer than `cover` of the query's distinct words (a question whose words the document does
    not answer)."""
    terms = words(query)
    end = len(ids)
    if budget < size or not terms or end <= start:
        return []
    step = max(size // 2, 1)
    spans = [(a, min(a + size, end)) for a in range(start, max(end - size, start) + 1, step)]
    if spans[-1][1] < end:
        spans.append((max(end - size, start), end))
    docs = [words(t) for t in decode([ids[a:b] for a, b in spans])]
    scores = bm25(terms, docs)
    best = max(range(len(spans)), key=lambda i: (scores[i], -i))
    if len(set(terms) & set(docs[best])) < cover * len(set(terms)):
        return []
    taken: list[tuple[int, int]] = []
    for i in sorted(range(len(spans)), key=lambda i: (-scores[i], i)):
        if scores[i] <= 0 or scores[i] < floor * scores[best]:
            break
        for span in (_whole_sentences(ids, decode, start, *spans[i], reach=size // 4), spans[i]):
            merged = _join([*taken, span])
            if sum(y - x for x, y in merged) <= budget:
                taken = merged
                break
        else:
            break  # not even the bare window fits
    return taken


_ENDS = (".", "!", "?", ":", ";")


def _whole_sentences(ids: list[int], decode: Decode, lo: int, a: int, b: int, reach: int) -> tuple[int, int]:
    """[a, b) widened to the nearest sentence edges within `reach` tokens (a line break, or a
    token ending in . ! ? : ;), never before `lo`; an edge with none in reach stays."""
    before = list(range(max(lo, a - reach), a))
    after = list(range(b - 1, min(len(ids), b + reach)))
    pieces = decode([[ids[t]] for t in before + after])
    ends = {t for t, piece in zip(before + after, pieces) if "\n" in piece or piece.rstrip().endswith(_ENDS)}
    starts = [t + 1 for t in before if t in ends]
    if starts:
        a = max(starts)
    elif a - reach <= lo:
        a = lo  # the text's own start begins the sentence
    stops = [t + 1 for t in after if t in ends]
    if stops:
        b = min(stops)
    elif b + reach >= len(ids):
        b = len(ids)
    return a, b


def _join(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Spans in reading order, overlapping and touching ones joined."""
    joined: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if joined and joined[-1][1] >= a:
            joined[-1] = (joined[-1][0], max(b, joined[-1][1]))
        else:
            joined.append((a, b))
    return joined
