"""Retrieval by words (`longchat.text.retrieval`): the tokenizer, BM25 and the best passages
of a token sequence, as `auto`, InfLLM's re-ranking, the log table and the rag plugin use them."""

from __future__ import annotations

import subprocess
import sys

from longchat.text.retrieval import STOP_WORDS, best_passages, bm25, words


def test_words_drop_function_words_and_keep_codes():
    assert words("What is the access code for the North warehouse? K7-4492") == \
        ["access", "code", "north", "warehouse", "k7", "4492"]


def test_bm25_prefers_rare_matching_words():
    docs = [["the", "cat", "sat"], ["warehouse", "code", "north"], ["code", "review", "today"], []]
    scores = bm25(["north", "warehouse", "code"], docs)
    assert scores[1] > scores[2] > scores[0] == scores[3] == 0.0


def test_the_module_imports_neither_torch_nor_the_context_package():
    """Reading a log's table or loading the rag plugin ranks by BM25 without waiting for torch."""
    code = ("import sys, longchat.text.retrieval, longchat.logs.table; "
            "print(sorted(m for m in ('torch', 'longchat.context') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_session_stop_words_extend_the_retrieval_ones():
    from longchat.text.words import STOPWORDS

    assert STOP_WORDS - STOPWORDS == {"question", "answer", "whose"}  # the ask frame's words
    assert {"remember", "said", "s", "ll"} <= STOPWORDS - STOP_WORDS


def _spelled(ids: list[list[int]]) -> list[str]:
    """A made-up tokenizer: token id t reads as the word 'wT'."""
    return [" ".join(f"w{t}" for t in span) for span in ids]


def test_best_passages_take_the_best_windows_joined_in_reading_order():
    # 4 head tokens, then 64 filler tokens; windows of 8 tokens every 4.
    ids = [0] * 4 + [1, 2, 3, 4] * 16
    ids[4 + 50] = 77             # the best match: two query words
    ids[4 + 52] = 88
    ids[4 + 10] = 77             # a weaker one
    text = (ids, "where is w77 w88", _spelled)
    best = best_passages(*text, 4, budget=8, size=8)
    assert len(best) == 1 and best[0][1] - best[0][0] == 8
    a, b = best[0]
    assert a <= 4 + 50 and 4 + 52 < b  # both words in the one window quoted
    # A window overlapping one taken adds only its new tokens: [52, 60) and [56, 64) join.
    assert best_passages(*text, 4, budget=16, size=8) == [(52, 64)]
    both = best_passages(*text, 4, budget=20, size=8)
    assert both == [(8, 16), (52, 64)]  # reading order, the weaker match's window too
    assert sum(b - a for a, b in both) <= 20
    # The head (before `start`) is never quoted, and nothing is when no word matches.
    assert all(a >= 4 for a, _ in best_passages(ids, "w0 w77", _spelled, 4, 64, size=8))
    assert best_passages(ids, "the of w5", _spelled, 4, budget=64, size=8) == []
    assert best_passages(*text, 4, budget=4, size=8) == []  # a budget under one window quotes nothing


def _sentences(ids: list[list[int]]) -> list[str]:
    """Like `_spelled`, but token 9 reads as a full stop: sentences end there."""
    return [" ".join("." if t == 9 else f"w{t}" for t in span) for span in ids]


def test_best_passages_widen_the_best_window_to_whole_sentences():
    """A window that starts inside the sentence holding the query's words is widened back to
    the sentence's start (the answer, before the cut, comes along), within a quarter window."""
    # A full stop at 30, then the sentence: the answer w50 at 31, w51, filler, w77 w88 at 42-43.
    ids = [1] * 30 + [9] + [50, 51] + [2] * 9 + [77, 88] + [1] * 40
    text = (ids, "w77 w88", _sentences)
    # Windows of 16 every 8: the best, [32, 48), cuts the sentence after its first token.
    assert best_passages(*text, 0, budget=24, size=16) == [(31, 48)]
    # A widened window over the budget is taken bare.
    assert best_passages(*text, 0, budget=16, size=16) == [(32, 48)]
    # With no sentence end within reach the window stays; the next best, overlapping, joins it.
    flat = (ids, "w77 w88", _spelled)
    assert best_passages(*flat, 0, budget=24, size=16) == [(32, 56)]


def test_best_passages_need_the_best_window_to_cover_the_question():
    """`cover`: nothing is returned unless one window holds that share of the query's words."""
    ids = [0] * 4 + [1, 2, 3, 4] * 16
    ids[4 + 50], ids[4 + 52] = 77, 88
    text = (ids, "where is w77 w88 w99", _spelled)  # 2 of 3 words in one window
    assert best_passages(*text, 4, budget=8, size=8, cover=0.5)
    assert best_passages(*text, 4, budget=8, size=8, cover=0.67) == []
    apart = list(ids)
    apart[4 + 52] = 1
    apart[4 + 10] = 88  # the same two words, never in one window: 1 of 3 at best
    assert best_passages(apart, "w77 w88 w99", _spelled, 4, budget=8, size=8, cover=0.5) == []
    assert best_passages(apart, "w77 w88 w99", _spelled, 4, budget=8, size=8, cover=0.3)


def test_best_passages_leave_out_windows_far_below_the_best():
    """`floor`: a window scoring under that share of the best window's BM25 is not taken."""
    ids = [0] * 4 + [1, 2, 3, 4] * 16
    ids[4 + 50], ids[4 + 52] = 77, 88  # the best window holds both query words
    ids[4 + 10] = 88                    # a weaker one holds one
    text = (ids, "w77 w88", _spelled)
    everything = best_passages(*text, 4, budget=64, size=8)
    assert any(a <= 4 + 10 < b for a, b in everything)
    best = best_passages(*text, 4, budget=64, size=8, floor=0.9)
    assert best and not any(a <= 4 + 10 < b for a, b in best)
    assert all(a <= 4 + 52 < b or a <= 4 + 50 < b for a, b in best)
