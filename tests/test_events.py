"""InfLLM's event-shaped blocks (surprise segmentation) and contiguity buffer, on tiny models:
where blocks are cut, that their padding is never read, that the engine hands the strategy
every token's surprise, that the pinned block's neighbours are read, and that memories written
before blocks had lengths restore as fixed-size blocks."""

from __future__ import annotations

import torch

from longchat.context.infllm.events import boundaries, cut
from longchat.runtime.generate import Engine
from test_forward import _loaded
from test_strategies import IDS, TOL, make, run, tiny  # noqa: F401  (the tiny model fixture)

SURPRISE = dict(n_init=8, n_local=32, block_size=16, topk=3, max_cached_block=8, repr_topk=4,
                segment="surprise", min_block=6, surprise_window=16)


def test_a_token_far_above_its_windows_surprise_opens_an_event():
    x = 1.0 + 0.1 * torch.randn(80, generator=torch.Generator().manual_seed(5))
    x[50] = 6.0
    assert torch.nonzero(boundaries(x, window=16, gamma=3.0)).flatten().tolist() == [50]
    assert len(torch.nonzero(boundaries(x, window=16, gamma=1.0))) > 5  # mean + 1 std: ~1 token in 6
    # Too little history (fewer than 8 tokens before it) never opens an event.
    y = torch.tensor([1.0, 1.0, 9.0, 1.0])
    assert not boundaries(y, window=16, gamma=1.0).any()
    # `history` tokens are context only: the answer covers the tokens after them.
    assert boundaries(x, window=16, gamma=3.0, history=40).tolist() == [i == 10 for i in range(40)]


def test_blocks_end_at_the_first_event_past_min_len_else_at_max_len():
    opens = torch.zeros(200, dtype=torch.bool)
    opens[[10, 100, 105]] = True
    # 10 is too early in block 0 (min 32); 100 cuts block 2 (64..100); 105 is too close to 100.
    assert cut(opens, min_len=32, max_len=64) == [64, 36, 64]
    # The same cut however the tokens arrive: a block waits until it is sure.
    assert cut(opens[:90], 32, 64) == [64]
    assert cut(opens[:101], 32, 64) == [64, 36]
    assert cut(opens[:40], 32, 64) == []


def _feed(decoder, s, ids, step, spike_at):
    """Prefill in chunks, handing the strategy a flat surprise with one spike."""
    for i in range(0, ids.shape[1], step):
        chunk = ids[:, i: i + step]
        decoder.forward(chunk, s, logits="none")
        s.observe_surprise([9.0 if i + j == spike_at else 1.0 for j in range(chunk.shape[1])])


def test_a_surprising_token_starts_a_block_and_blocks_keep_their_lengths(tiny):
    cfg, decoder = tiny
    s = make(cfg, "infllm", **SURPRISE)
    _feed(decoder, s, IDS[:, :180], 20, spike_at=70)
    spans = s.block_spans()
    assert [a for a, _ in spans].count(70) == 1  # the spike starts a block
    assert all(6 <= n <= 16 for n in s.lens) and len(s.lens) == s.layers[0].store.count
    assert spans[0][0] == 8 and all(a == b for (_, a), (b, _) in zip(spans, spans[1:]))  # contiguous
    rem = 0 if s.layers[0].rem_k is None else s.layers[0].rem_k.shape[2]
    assert sum(s.lens) + rem + 8 + s.window == 180  # every token is somewhere, once
    # Layer 0's keys do not depend on retrieval: the block holds exactly tokens 70.. unrotated.
    fixed = make(cfg, "infllm", **{**SURPRISE, "segment": "fixed"})
    _feed(decoder, fixed, IDS[:, :180], 20, spike_at=70)
    b = [a for a, _ in spans].index(70)
    k, _ = s.layers[0].store.gather([b], torch.device("cpu"), torch.float32)
    k_fixed, _ = fixed.layers[0].store.gather([(70 - 8) // 16, (70 - 8) // 16 + 1], torch.device("cpu"), torch.float32)
    n, off = s.lens[b], (70 - 8) % 16
    assert torch.allclose(k[:, :n], k_fixed[:, off: off + n], atol=1e-2)  # float16 storage
    assert s.prepare(10**4) is None


def test_a_short_blocks_padding_is_never_attended(tiny):
    cfg, decoder = tiny
    outs = []
    for pad in (0.0, 1e4):
        s = make(cfg, "infllm", **SURPRISE)
        original = s._store_blocks

        def store(layer, k, v, score, lens, original=original, pad=pad, s=s):
            zeros = s.layers[layer].store.extend
            s.layers[layer].store.extend = lambda bk, bv, reprs: zeros(
                torch.where(bk == 0, torch.full_like(bk, pad), bk), torch.where(bv == 0, torch.full_like(bv, pad), bv),
                reprs)
            original(layer, k, v, score, lens)
            s.layers[layer].store.extend = zeros
        s._store_blocks = store
        _feed(decoder, s, IDS[:, :180], 20, spike_at=70)
        short = [a for a, _ in s.block_spans()].index(70) - 1  # the block the event cut short
        assert s.lens[short] < 16
        # The question path pins it (as re-ranking would), so every layer reads it, padding and all.
        assert s.begin_question()
        decoder.forward(IDS[:, 180:190], s, logits="none")
        s.question_candidates()
        s.rewind_question({short: 0.0})
        outs.append(decoder.forward(IDS[:, 180:190], s, logits="all"))
        assert short in s.agreed
    assert (outs[0] - outs[1]).abs().max() <= TOL


def test_the_engine_hands_the_strategy_every_tokens_surprise(tiny, tiny_dirs):
    cfg, decoder = tiny
    reference = decoder.forward(IDS[:, :100], make(cfg, "full"), logits="all")[0]
    nll = torch.logsumexp(reference[:-1], -1) - reference[:-1].gather(1, IDS[0, 1:100, None])[:, 0]
    # Nothing evicted yet (a 64-token window): the same numbers as full attention's logits.
    s = make(cfg, "infllm", **{**SURPRISE, "n_local": 64})
    engine = Engine(_loaded(tiny_dirs["qwen2"], cfg, decoder), s, prefill_chunk=16)
    logits = engine.prefill(IDS[0, :60].tolist())
    assert s._s_from == 0 and len(s._surprise) == 60 and s._surprise[0] == 0.0  # token 0 has none
    assert torch.allclose(torch.tensor(s._surprise[1:]), nll[:59], atol=1e-3)
    assert torch.allclose(logits, reference[59], atol=1e-3)  # the caller still gets its last row
    # Past the window: blocks are cut, and only the values a next cut needs are kept.
    s = make(cfg, "infllm", **SURPRISE)
    engine = Engine(_loaded(tiny_dirs["qwen2"], cfg, decoder), s, prefill_chunk=16)
    engine.prefill(IDS[0, :100].tolist())
    assert s._s_from + len(s._surprise) == 100 and s._s_from > 0
    assert len(s.lens) == s.layers[0].store.count > 0


def test_contiguity_reads_the_pinned_blocks_neighbours_on_top_of_topk(tiny):
    cfg, decoder = tiny
    for contiguity in (0, 1):
        s = make(cfg, "infllm", n_init=8, n_local=32, block_size=8, topk=3, max_cached_block=8,
                 vote_from=0.5, rerank=4, contiguity=contiguity)
        run(decoder, s, IDS[:, :150], 16)
        assert s.begin_question()
        decoder.forward(IDS[:, 150:170], s, logits="none")
        s.question_candidates()
        best = 5
        s.rewind_question({best: 0.0, 1: -1.0, 12: -9.0})
        decoder.forward(IDS[:, 150:170], s, logits="none")
        if contiguity:
            assert {4, 5, 6} <= set(s.agreed) and len(s.agreed) <= 5
        else:
            assert best in s.agreed and len(s.agreed) == 3
        decoder.forward(IDS[:, 170:171], s)  # answer tokens keep the neighbours
        assert best in s.agreed and (not contiguity or {4, 6} <= set(s.agreed))


def test_a_state_from_before_block_lengths_restores_as_fixed_blocks(tiny, tmp_path):
    cfg, decoder = tiny
    params = dict(n_init=8, n_local=32, block_size=8, topk=3, max_cached_block=8)
    s = make(cfg, "infllm", **params)
    s.persist(tmp_path, 0)
    run(decoder, s, IDS[:, :150], 16)
    s.sync()
    state = s.snapshot()
    for key in ("lens", "surprise", "s_from"):  # what an older memory's checkpoint lacks
        del state[key]
    old = make(cfg, "infllm", **params)
    old.restore(state, tmp_path)
    assert old.lens == [8] * s.layers[0].store.count and old.block_spans() == s.block_spans()
    a = decoder.forward(IDS[:, 150:160], s, logits="all")
    b = decoder.forward(IDS[:, 150:160], old, logits="all")
    assert (a - b).abs().max() <= TOL


def test_the_memory_key_names_the_cut_only_for_event_shaped_blocks():
    from types import SimpleNamespace

    from longchat.context.infllm import InfLLMParams
    from longchat.memory.encode import memory_key

    model = SimpleNamespace(name="m", path=None, decoder=SimpleNamespace(dtype=torch.float32, weight_format="fp32"))
    runner = SimpleNamespace(model=model, profile=SimpleNamespace(context=SimpleNamespace(prefill_chunk=512)))
    import longchat.memory.encode as encode

    sha, encode.model_sha256 = encode.model_sha256, lambda path: "x"
    try:
        fixed = memory_key(runner, InfLLMParams(), "head")
        events = memory_key(runner, InfLLMParams(segment="surprise"), "head")
    finally:
        encode.model_sha256 = sha
    assert not any(k.startswith(("infllm.segment", "infllm.min_block", "infllm.surprise")) for k in fixed)
    assert events["infllm.segment"] == "surprise" and events["infllm.min_block"] == 64
    assert "infllm.contiguity" not in fixed | events  # read at question time only
