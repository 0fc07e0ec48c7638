"""Lexical candidates for InfLLM's question-time re-ranking: BM25 over the blocks' words."""

from __future__ import annotations

from longchat.context.base import QuestionText
from longchat.context.infllm.lexical import best_blocks, best_passages, bm25, words
from test_strategies import IDS, make, run, tiny  # noqa: F401  (the tiny model fixture)


def test_words_drop_function_words_and_keep_codes():
    assert words("What is the access code for the North warehouse? K7-4492") == \
        ["access", "code", "north", "warehouse", "k7", "4492"]


def test_bm25_prefers_rare_matching_words():
    docs = [["the", "cat", "sat"], ["warehouse", "code", "north"], ["code", "review", "today"], []]
    scores = bm25(["north", "warehouse", "code"], docs)
    assert scores[1] > scores[2] > scores[0] == scores[3] == 0.0


def _spelled(ids: list[list[int]]) -> list[str]:
    """A made-up tokenizer: token id t reads as the word 'wT'."""
    return [" ".join(f"w{t}" for t in span) for span in ids]


def test_best_blocks_map_tokens_to_blocks_after_the_initial_tokens():
    # 8 initial tokens, then blocks of 4: block b holds ids[8 + 4b : 12 + 4b].
    ids = [0] * 8 + [1, 2, 3, 4] * 6
    ids[8 + 4 * 3 + 2] = 77  # one rare word in block 3
    ids[8 + 4 * 5] = 77      # ...and in block 5, with another query word
    ids[8 + 4 * 5 + 1] = 88
    text = QuestionText(ids, "where is w77 w88", _spelled)
    spans = [(8 + 4 * b, 12 + 4 * b) for b in range(6)]
    assert best_blocks(text, spans, k=4) == [5, 3]  # only blocks that match, best first
    assert best_blocks(text, spans, k=1) == [5]
    assert best_blocks(QuestionText(ids, "the of", _spelled), spans, k=4) == []  # no content word
    assert best_blocks(text, spans, k=0) == []
    # Blocks of other lengths (event-shaped): the spans say which tokens each holds.
    assert best_blocks(text, [(8, 23), (23, 32)], k=4) == [1, 0]
    assert best_blocks(text, [(8, 22), (22, 32)], k=4) == [1]


def test_question_candidates_add_the_lexical_blocks_after_the_voted_ones(tiny):
    cfg, decoder = tiny
    params = dict(n_init=8, n_local=32, block_size=8, topk=3, max_cached_block=8, vote_from=0.5, rerank=2)
    for lexical in (0, 2):
        s = make(cfg, "infllm", lexical=lexical, **params)
        run(decoder, s, IDS[:, :150], 16)
        assert s.begin_question()
        decoder.forward(IDS[:, 150:170], s, logits="none")
        votes = dict(s._votes)
        voted = sorted(votes, key=votes.get, reverse=True)[:2]
        # A word that only the last full block holds: the votes rarely name it.
        blocks = s.layers[0].store.count
        ids = IDS[0, :150].tolist()
        target = next(b for b in reversed(range(blocks)) if b not in voted)
        ids[8 + 8 * target] = 999
        text = QuestionText(ids, "w999", _spelled)
        got = s.question_candidates(text)
        assert got[:2] == voted
        assert got == (voted + [target] if lexical else voted)


def test_best_passages_take_the_best_windows_joined_in_reading_order():
    # 4 head tokens, then 64 filler tokens; windows of 8 tokens every 4.
    ids = [0] * 4 + [1, 2, 3, 4] * 16
    ids[4 + 50] = 77             # the best match: two query words
    ids[4 + 52] = 88
    ids[4 + 10] = 77             # a weaker one
    text = QuestionText(ids, "where is w77 w88", _spelled)
    best = best_passages(text, 4, budget=8, size=8)
    assert len(best) == 1 and best[0][1] - best[0][0] == 8
    a, b = best[0]
    assert a <= 4 + 50 and 4 + 52 < b  # both words in the one window quoted
    # A window overlapping one taken adds only its new tokens: [52, 60) and [56, 64) join.
    assert best_passages(text, 4, budget=16, size=8) == [(52, 64)]
    both = best_passages(text, 4, budget=20, size=8)
    assert both == [(8, 16), (52, 64)]  # reading order, the weaker match's window too
    assert sum(b - a for a, b in both) <= 20
    # The head (before `start`) is never quoted, and nothing is when no word matches.
    assert all(a >= 4 for a, _ in best_passages(QuestionText(ids, "w0 w77", _spelled), 4, 64, size=8))
    assert best_passages(QuestionText(ids, "the of w5", _spelled), 4, budget=64, size=8) == []
    assert best_passages(text, 4, budget=4, size=8) == []  # a budget under one window quotes nothing


def _sentences(ids: list[list[int]]) -> list[str]:
    """Like `_spelled`, but token 9 reads as a full stop: sentences end there."""
    return [" ".join("." if t == 9 else f"w{t}" for t in span) for span in ids]


def test_best_passages_widen_the_best_window_to_whole_sentences():
    """A window that starts inside the sentence holding the query's words is widened back to
    the sentence's start (the answer, before the cut, comes along), within a quarter window."""
    # A full stop at 30, then the sentence: the answer w50 at 31, w51, filler, w77 w88 at 42-43.
    ids = [1] * 30 + [9] + [50, 51] + [2] * 9 + [77, 88] + [1] * 40
    text = QuestionText(ids, "w77 w88", _sentences)
    # Windows of 16 every 8: the best, [32, 48), cuts the sentence after its first token.
    assert best_passages(text, 0, budget=24, size=16) == [(31, 48)]
    # A widened window over the budget is taken bare.
    assert best_passages(text, 0, budget=16, size=16) == [(32, 48)]
    # With no sentence end within reach the window stays; the next best, overlapping, joins it.
    flat = QuestionText(ids, "w77 w88", _spelled)
    assert best_passages(flat, 0, budget=24, size=16) == [(32, 56)]


def test_best_passages_need_the_best_window_to_cover_the_question():
    """`cover`: nothing is returned unless one window holds that share of the query's words."""
    ids = [0] * 4 + [1, 2, 3, 4] * 16
    ids[4 + 50], ids[4 + 52] = 77, 88
    text = QuestionText(ids, "where is w77 w88 w99", _spelled)  # 2 of 3 words in one window
    assert best_passages(text, 4, budget=8, size=8, cover=0.5)
    assert best_passages(text, 4, budget=8, size=8, cover=0.67) == []
    apart = list(ids)
    apart[4 + 52] = 1
    apart[4 + 10] = 88  # the same two words, never in one window: 1 of 3 at best
    assert best_passages(QuestionText(apart, "w77 w88 w99", _spelled), 4, budget=8, size=8, cover=0.5) == []
    assert best_passages(QuestionText(apart, "w77 w88 w99", _spelled), 4, budget=8, size=8, cover=0.3)


def test_best_passages_leave_out_windows_far_below_the_best():
    """`floor`: a window scoring under that share of the best window's BM25 is not taken."""
    ids = [0] * 4 + [1, 2, 3, 4] * 16
    ids[4 + 50], ids[4 + 52] = 77, 88  # the best window holds both query words
    ids[4 + 10] = 88                    # a weaker one holds one
    text = QuestionText(ids, "w77 w88", _spelled)
    everything = best_passages(text, 4, budget=64, size=8)
    assert any(a <= 4 + 10 < b for a, b in everything)
    best = best_passages(text, 4, budget=64, size=8, floor=0.9)
    assert best and not any(a <= 4 + 10 < b for a, b in best)
    assert all(a <= 4 + 52 < b or a <= 4 + 50 < b for a, b in best)


def test_nearest_blocks_rank_blocks_by_their_line_nearest_the_questions_meaning():
    """Real static vectors (the WordLlama wheel): the block with the fact's line comes first for
    a question in other words, though the line is one of many in its block."""
    from longchat.context.infllm.lexical import nearest_blocks
    from longchat.text.embed import default_embedder

    assert default_embedder() is not None, "wordllama is a dependency"
    lines = ["The parser reads tokens from the input stream.", "Each handler returns a response object.",
             "The backup servers are housed in Tromso.", "Logging levels are configured per module.",
             "The cache keeps the last hundred entries.", "Errors are raised as exceptions to the caller."]
    ids = list(range(len(lines)))
    text = QuestionText(ids, "In which city do the spare machines sit?",
                        lambda spans: ["\n".join(lines[i] for i in span) for span in spans])
    spans = [(0, 2), (2, 4), (4, 6)]  # block 1 holds the fact, with an unrelated line
    assert nearest_blocks(text, spans, k=1) == [1]
    assert nearest_blocks(text, spans, k=3)[0] == 1 and len(nearest_blocks(text, spans, k=3)) <= 3
    assert nearest_blocks(text, spans, k=0) == []
    assert nearest_blocks(QuestionText(ids, "what is it?", text.decode), spans, k=2) == []  # no content word
