"""Lexical candidates for memory retrieval: the blocks whose words match the question's.

Attention votes find what the question's queries resemble, which on natural text is often
not the block that holds the fact (a sentence that shares the question's key words but whose
keys look like every other sentence's). So the question-time re-ranking also tries the blocks
that Okapi BM25 ranks best (`longchat.text.retrieval`): each block's text is its tokens
decoded, the query is the user's question. Nothing is stored for this: a memory's token ids
are already on disk (`ids.bin`), and scoring ~8k blocks (1M tokens) takes a fraction of a second.
"""

from __future__ import annotations

from longchat.context.base import QuestionText
from longchat.text.retrieval import bm25, words


def best_blocks(text: QuestionText, spans: list[tuple[int, int]], k: int) -> list[int]:
    """The `k` blocks with the highest BM25 score for the query (ties: earlier first), only
    those that match at all. Block b holds tokens [spans[b][0], spans[b][1]) of `text.ids`."""
    query = words(text.query)
    if k <= 0 or not query or not spans:
        return []
    scores = bm25(query, [words(t) for t in text.decode([text.ids[a:b] for a, b in spans])])
    ranked = sorted(range(len(spans)), key=lambda b: (-scores[b], b))
    return [b for b in ranked[:k] if scores[b] > 0]
