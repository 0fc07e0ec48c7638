"""Lexical candidates for InfLLM's question-time re-ranking: BM25 over the blocks' words (the
words, BM25 and passages themselves: tests/test_retrieval.py)."""

from __future__ import annotations

from longchat.context.base import QuestionText
from longchat.context.infllm.lexical import best_blocks
from test_strategies import IDS, make, run, tiny  # noqa: F401  (the tiny model fixture)


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
