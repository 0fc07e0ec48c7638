"""Lexical candidates for memory retrieval: the blocks whose words match the question's.

Attention votes find what the question's queries resemble, which on natural text is often
not the block that holds the fact (a sentence that shares the question's key words but whose
keys look like every other sentence's). So the question-time re-ranking also tries the blocks
that Okapi BM25 ranks best: each block's text is its tokens decoded, the query is the user's
question. Nothing is stored for this: a memory's token ids are already on disk (`ids.bin`),
and scoring ~8k blocks (1M tokens) takes a fraction of a second.
"""

from __future__ import annotations

import math
import re
from collections import Counter

from longchat.context.base import QuestionText
from longchat.text.embed import meaning_scores

K1, B = 1.2, 0.75  # the usual Okapi constants
_WORD = re.compile(r"[^\W_]+")
# Function words, and the words of longchat's own ask frame ("Question: ...").
STOP_WORDS = frozenset("""a about an and any are as at be been but by can could did do does for from had has have
he her his how i if in into is it its me my no not of on or our she so than that the their them then there these
they this those to too us was we were what when where which who whom whose why will with would you your question
answer tell please""".split())


def words(text: str) -> list[str]:
    """Lower-cased words of `text` without function words; digits count as words (codes, years)."""
    return [w for w in _WORD.findall(text.lower()) if w not in STOP_WORDS]


def bm25(query: list[str], docs: list[list[str]]) -> list[float]:
    """Okapi BM25 of each doc (a list of words) for the query's words."""
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


def best_blocks(text: QuestionText, spans: list[tuple[int, int]], k: int) -> list[int]:
    """The `k` blocks with the highest BM25 score for the query (ties: earlier first), only
    those that match at all. Block b holds tokens [spans[b][0], spans[b][1]) of `text.ids`."""
    query = words(text.query)
    if k <= 0 or not query or not spans:
        return []
    scores = bm25(query, [words(t) for t in text.decode([text.ids[a:b] for a, b in spans])])
    ranked = sorted(range(len(spans)), key=lambda b: (-scores[b], b))
    return [b for b in ranked[:k] if scores[b] > 0]


def nearest_blocks(text: QuestionText, spans: list[tuple[int, int]], k: int, embedder=None) -> list[int]:
    """The `k` blocks holding the lines nearest the question's meaning (a block scores as its
    best line, by the cosine of static word vectors: `longchat.text.embed`), best first; only
    blocks scoring above 0, and none without vectors or content words in the question. The
    candidates for questions that share no word with the text that answers them."""
    if k <= 0 or not spans:
        return []
    owner, lines = [], []
    for b, block in enumerate(text.decode([text.ids[a:z] for a, z in spans])):
        for line in block.split("\n"):
            if line.strip():
                owner.append(b)
                lines.append(line)
    scores = meaning_scores(lines, text.query, embedder) if lines else None
    if scores is None:
        return []
    best: dict[int, float] = {}
    for b, score in zip(owner, scores.tolist()):
        best[b] = max(best.get(b, score), score)
    ranked = sorted(best, key=lambda b: (-best[b], b))
    return [b for b in ranked[:k] if best[b] > 0]


def best_passages(text: QuestionText, start: int, budget: int, size: int = 128,
                  cover: float = 0.0, floor: float = 0.0) -> list[tuple[int, int]]:
    """Spans of `text.ids[start:]` worth quoting before the question: windows of `size` tokens
    starting every `size // 2`, ranked by BM25 for the query's words, taken best first until
    `budget` tokens; returned in reading order, overlapping and touching spans joined. Each
    window taken is widened to whole sentences (up to `size // 4` tokens each side), and a
    window that overlaps one already taken adds only its new tokens: the best window often
    starts or ends inside the sentence that holds the answer, and its neighbour holds the rest.
    Windows scoring under `floor` times the best window's score are left out (those that match
    one common word of the question: the reader answered from them). Empty when no window shares
    a word with the query, or when the best one holds fewer than `cover` of the query's distinct
    words (a question whose words the document does not answer)."""
    query = words(text.query)
    end = len(text.ids)
    if budget < size or not query or end <= start:
        return []
    step = max(size // 2, 1)
    spans = [(a, min(a + size, end)) for a in range(start, max(end - size, start) + 1, step)]
    if spans[-1][1] < end:
        spans.append((max(end - size, start), end))
    docs = [words(t) for t in text.decode([text.ids[a:b] for a, b in spans])]
    scores = bm25(query, docs)
    best = max(range(len(spans)), key=lambda i: (scores[i], -i))
    if len(set(query) & set(docs[best])) < cover * len(set(query)):
        return []
    taken: list[tuple[int, int]] = []
    for i in sorted(range(len(spans)), key=lambda i: (-scores[i], i)):
        if scores[i] <= 0 or scores[i] < floor * scores[best]:
            break
        for span in (_whole_sentences(text, start, *spans[i], reach=size // 4), spans[i]):
            merged = _join([*taken, span])
            if sum(y - x for x, y in merged) <= budget:
                taken = merged
                break
        else:
            break  # not even the bare window fits
    return taken


_ENDS = (".", "!", "?", ":", ";")


def _whole_sentences(text: QuestionText, lo: int, a: int, b: int, reach: int) -> tuple[int, int]:
    """[a, b) widened to the nearest sentence edges within `reach` tokens (a line break, or a
    token ending in . ! ? : ;), never before `lo`; an edge with none in reach stays."""
    before = list(range(max(lo, a - reach), a))
    after = list(range(b - 1, min(len(text.ids), b + reach)))
    pieces = text.decode([[text.ids[t]] for t in before + after])
    ends = {t for t, piece in zip(before + after, pieces) if "\n" in piece or piece.rstrip().endswith(_ENDS)}
    starts = [t + 1 for t in before if t in ends]
    if starts:
        a = max(starts)
    elif a - reach <= lo:
        a = lo  # the text's own start begins the sentence
    stops = [t + 1 for t in after if t in ends]
    if stops:
        b = min(stops)
    elif b + reach >= len(text.ids):
        b = len(text.ids)
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
