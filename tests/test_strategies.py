"""Context strategies on tiny models: equal to `full` where the method says they must be,
positions/distances as specified, memory tiers exact, bad parameters named."""

from __future__ import annotations

import pytest
import torch
import transformers

from longchat.context import strategy_class
from longchat.context.infllm.blocks import BlockStore
from longchat.errors import ConfigError
from longchat.profile import load_profile
from longchat.runtime.config import ModelConfig
from longchat.runtime.loader import load_decoder
from longchat.runtime.rope import Rope, rotate

TOL = 1e-4


@pytest.fixture(scope="module")
def tiny(tiny_dirs):
    folder = tiny_dirs["qwen2"]
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    cfg = ModelConfig.from_hf(hf.config)
    return cfg, load_decoder(folder, cfg, torch.device("cpu"), torch.float32)


def make(cfg, name, kv="fp32", **params):
    """A strategy (`full`'s cache in fp32 unless `kv` says otherwise: the exact reference);
    keywords that are not settings but constants of its class (`InfLLM.vote_from`) are set on
    the instance."""
    cls = strategy_class(name)
    constants = {k: params.pop(k) for k in list(params) if k not in cls.Params.__dataclass_fields__ and hasattr(cls, k)}
    strategy = cls(cfg, Rope(cfg.hf), cls.Params(**params), kv=kv)
    for key, value in constants.items():
        setattr(strategy, key, value)
    return strategy


def run(decoder, strategy, ids, step):
    return torch.cat([decoder.forward(ids[:, i : i + step], strategy, logits="all")
                      for i in range(0, ids.shape[1], step)], dim=1)


IDS = torch.randint(0, 300, (1, 200), generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize("name, params", [
    ("infllm", dict(n_init=8, n_local=256, block_size=16, topk=4)),
    ("streaming", dict(n_sink=4, n_local=196)),  # 4 + 196 = 200: the window never fills
    ("lm-infinite", dict(local_branch=200, global_branch=4)),
    ("self-extend", dict(neighbor_window=200, group_size=4)),
    ("rope-scaled", dict(rope_type="dynamic", factor=2.0, original_max_position_embeddings=512)),
])
def test_equals_full_while_the_input_fits(tiny, name, params):
    cfg, decoder = tiny
    reference = run(decoder, make(cfg, "full"), IDS, 200)
    for step in (200, 50, 1):
        got = run(decoder, make(cfg, name, **params), IDS[:, :120] if step == 1 else IDS, step)
        assert (got - reference[:, : got.shape[1]]).abs().max() <= TOL


def test_relative_rotation_depends_only_on_distance(tiny):
    cfg, _ = tiny
    rope = Rope(cfg.hf)
    q, k = torch.randn(1, 1, 1, cfg.head_dim), torch.randn(1, 1, 1, cfg.head_dim)

    def logit(qpos, kpos):
        cq, sq = rope.cos_sin(torch.tensor([qpos]), torch.float32)
        ck, sk = rope.cos_sin(torch.tensor([kpos]), torch.float32)
        return (rotate(q, cq, sq) * rotate(k, ck, sk)).sum()

    assert torch.allclose(logit(90, 40), logit(50, 0), atol=1e-4)
    # InfLLM: memory keys stay unrotated (= position 0) and the query sits at n_local, so
    # every memory token is at distance n_local from every query.
    cos0, sin0 = rope.cos_sin(torch.tensor([0]), torch.float32)
    assert torch.allclose(rotate(k, cos0, sin0), k)


def test_infllm_evicts_into_blocks_and_keeps_init_tokens(tiny):
    cfg, decoder = tiny
    s = make(cfg, "infllm", n_init=8, n_local=64, block_size=16, topk=2, max_cached_block=4)
    run(decoder, s, IDS, 32)
    # 200 tokens, window 64: 136 evicted = 8 init + 8 blocks of 16.
    assert s.length == 200 and s.window == 64 and s.evicted == 136
    assert s.layers[0].init_k.shape[2] == 8 and s.layers[0].store.count == 8 and s.layers[0].rem_k is None
    assert len(s.layers[0].retrieved) == 2
    assert s.layers[0].store.representatives().shape == (8, cfg.n_kv_heads, s.params.repr_topk, cfg.head_dim)


def test_infllm_retrieves_the_block_its_query_matches(tiny):
    cfg, _ = tiny
    s = make(cfg, "infllm", n_init=0, n_local=64, block_size=4, topk=1, repr_topk=1, max_cached_block=4)
    store = s.layers[0].store
    for b in range(5):
        keys = torch.zeros(cfg.n_kv_heads, 4, cfg.head_dim)
        keys[:, :, b] = 1.0  # block b points along axis b
        store.append(keys, keys, keys[:, :1])
    q = torch.zeros(1, cfg.n_heads, 3, cfg.head_dim)
    q[..., 3] = 2.0
    assert s.retrieve_blocks(0, q) == [3]


def test_streaming_keeps_sinks_and_recent(tiny):
    cfg, decoder = tiny
    s = make(cfg, "streaming", n_sink=4, n_local=32)
    run(decoder, s, IDS, 16)
    assert s.length == 200 and s.k[0].shape[2] == 36
    # The last query saw the 4 sinks and the last 32 tokens (itself included), nothing else.
    row = s.mask[-1]
    assert row[:4].all() and row[-32:].all() and not row[4:-32].any()


@pytest.mark.parametrize("disk", [False, True])
def test_block_store_round_trips_exactly(tmp_path, disk):
    store = BlockStore(3, 8, 16, 2, disk_dir=str(tmp_path) if disk else None)
    blocks = [torch.randn(3, 8, 16).half() for _ in range(20)]
    for b in blocks:
        store.append(b, -b, b[:, :2].float())
    k, v = store.gather([2, 17], "cpu", torch.float16)
    want = torch.cat([blocks[2], blocks[17]], dim=1)
    assert torch.equal(k, want) and torch.equal(v, -want)
    assert store.representatives().shape == (20, 3, 2, 16)
    if disk:  # the blocks live in (already unlinked) temp files; RAM holds representatives only
        assert store.nbytes_ram() == store.reprs.numel() * store.reprs.element_size()


@pytest.mark.parametrize("bits", [16, 8])
@pytest.mark.parametrize("disk", [False, True])
def test_block_store_extend_equals_appends(tmp_path, disk, bits):
    """Several blocks written at once (one host copy on a GPU) store exactly what one at a
    time does, across the RAM tier's growth (16 -> 32 rows) and in the files."""
    blocks = torch.randn(21, 3, 8, 16)
    reprs = blocks[:, :, :2]
    one, many = (BlockStore(3, 8, 16, 2, bits=bits, disk_dir=str(tmp_path) if disk else None) for _ in range(2))
    for b, r in zip(blocks, reprs):
        one.append(b, -b, r)
    many.extend(blocks[:5], -blocks[:5], reprs[:5])
    many.extend(blocks[5:], -blocks[5:], reprs[5:])
    assert many.count == one.count == 21
    ids = [0, 4, 5, 15, 16, 20]
    for a, b in zip(many.gather(ids, "cpu", torch.float32), one.gather(ids, "cpu", torch.float32)):
        assert torch.equal(a, b)
    assert torch.equal(many.representatives(), one.representatives())
    assert torch.equal(many.scores(blocks[0, :, 0]), one.scores(blocks[0, :, 0]))


def test_block_store_scores_in_its_dtype_and_its_files_stay_float16(tmp_path):
    """Representatives are rounded to float16 (the file format) and then held in the scoring
    dtype, so a memory reopened from its files scores exactly as it did while encoded."""
    from longchat.context.infllm.blocks import score_dtype

    blocks = torch.randn(5, 3, 8, 16)
    live = BlockStore(3, 8, 16, 2, path=tmp_path / "L000", dtype=torch.bfloat16)
    live.extend(blocks, -blocks, blocks[:, :, :2])
    assert live.representatives().dtype == torch.bfloat16
    assert (tmp_path / "L000.repr").stat().st_size == 5 * 3 * 2 * 16 * 2  # float16 on disk
    reopened = BlockStore(3, 8, 16, 2, path=tmp_path / "L000", count=5, dtype=torch.bfloat16)
    q = torch.randn(3, 16)
    assert torch.equal(reopened.representatives(), live.representatives())
    assert torch.equal(reopened.scores(q), live.scores(q))
    exact = BlockStore(3, 8, 16, 2, dtype=torch.float32)
    exact.extend(blocks, -blocks, blocks[:, :, :2])
    assert torch.allclose(live.scores(q), exact.scores(q), rtol=0.02, atol=0.1)  # bfloat16's rounding
    assert score_dtype("float32", "cpu") == torch.float32
    assert score_dtype("auto", "cuda") == torch.float16  # decided without touching a GPU
    assert score_dtype("auto", "cpu") in (torch.float16, torch.bfloat16)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_head_logits_is_each_heads_product(dtype):
    from longchat.context.infllm.blocks import head_logits

    keys, q = torch.randn(3, 40, 16).to(dtype), torch.randn(3, 16).to(dtype)
    want = torch.stack([keys[h].float() @ q[h].float() for h in range(3)])
    got = head_logits(keys, q)
    assert got.shape == (3, 40) and got.dtype == dtype
    assert torch.allclose(got.float(), want, rtol=0.02, atol=0.05)


def test_infllm_disk_tier_matches_ram_tier(tiny, tmp_path):
    cfg, decoder = tiny
    params = dict(n_init=8, n_local=64, block_size=16, topk=2, max_cached_block=4)
    ram = run(decoder, make(cfg, "infllm", **params), IDS, 32)
    disk = run(decoder, make(cfg, "infllm", **params, disk=True, disk_dir=str(tmp_path)), IDS, 32)
    assert torch.equal(ram, disk)


@pytest.mark.parametrize("override, words", [
    ("infllm.block_size=0", ["block_size must be"]),
    ("infllm.topk=64", ["topk must be <= max_cached_block (32)"]),
    ("infllm.n_local=256", ["n_local must be >= context.prefill_chunk (512)"]),
    ("infllm.repr_topk=0", ["repr_topk"]),
    ("infllm.rerank=-1", ["rerank"]),
    ("infllm.rerank_margin=-0.5", ["'rerank_margin' was removed in issue 40"]),
    ("infllm.focus=-1", ["'focus' was removed in issue 40"]),
    ('infllm.score_dtype="int8"', ["'score_dtype' was removed in issue 40"]),
    ("streaming.n_local=0", ["n_local must be an integer >= 1"]),
])
def test_bad_parameters_name_the_key(override, words):
    with pytest.raises(ConfigError) as err:
        load_profile(override.split(".")[0], [override])
    for word in words:
        assert word in str(err.value)


def test_lm_infinite_mask_is_lambda_shaped(tiny):
    cfg, decoder = tiny
    s = make(cfg, "lm-infinite", local_branch=32, global_branch=4, top_k=0)
    run(decoder, s, IDS[:, :100], 100)
    s.begin(torch.tensor([100]))  # a decode step at position 100
    # The local slice starts 31 back; 4 global tokens sit apart; the rest is the masked middle.
    assert s.lo == 69 and s.g == 4 and s.n_middle == 65
    assert s.local_mask.allowed.shape == (1, 32) and s.local_mask.allowed.all()


def test_lm_infinite_top_k_middle_only_for_the_last_query(tiny):
    cfg, decoder = tiny
    s = make(cfg, "lm-infinite", local_branch=32, global_branch=4, top_k=3, top_k_from_layer=0)
    run(decoder, s, IDS[:, :100], 100)
    q = torch.randn(1, cfg.n_heads, cfg.head_dim)
    keys = torch.zeros(1, cfg.n_kv_heads, 10, cfg.head_dim)
    keys[:, :, 7] = q.view(cfg.n_kv_heads, cfg.n_rep, cfg.head_dim).sum(1)  # the best match
    m_k, _ = s.select_middle(q, keys, keys)
    assert m_k.shape == (1, cfg.n_kv_heads, 3, cfg.head_dim)
    assert torch.equal(m_k[:, :, 0], keys[:, :, 7])


def test_self_extend_positions(tiny):
    cfg, _ = tiny
    s = make(cfg, "self-extend", neighbor_window=8, group_size=4)
    pos = torch.arange(0, 40)
    s.begin(pos)
    # Grouped query position: pos // G + w - w // G; the largest grouped distance shrinks ~G times.
    q_pos = pos // 4 + 8 - 2
    assert int(q_pos[-1] - 0) == 15  # vs 39 with plain positions
    assert s.mask_n[-1].sum() == 8 and s.mask_g[-1].sum() == 32
    assert not (s.mask_n & s.mask_g).any()


def test_rope_scaled_matches_a_checkpoint_with_that_scaling(tmp_path):
    from tiny_models import make_tiny

    plain = make_tiny("llama", tmp_path / "plain")
    scaled = make_tiny("llama", tmp_path / "scaled", rope_parameters={
        "rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0})
    hf = transformers.AutoModelForCausalLM.from_pretrained(scaled, dtype=torch.float32)
    with torch.no_grad():
        reference = hf(IDS[:, :150]).logits
    cfg = ModelConfig.from_hf(transformers.AutoConfig.from_pretrained(plain))
    decoder = load_decoder(plain, cfg, torch.device("cpu"), torch.float32)
    got = run(decoder, make(cfg, "rope-scaled", rope_type="linear", factor=4.0), IDS[:, :150], 50)
    assert (got - reference).abs().max() <= TOL


# ---------------------------------------------------------------- attention parts

def test_merged_parts_equal_one_softmax_over_all_keys():
    from longchat.context.attention import Mask, attention_lse, merge_attention

    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 6, 5, 16, generator=g)
    k = torch.randn(1, 2, 12, 16, generator=g)
    v = torch.randn(1, 2, 12, 16, generator=g)
    allowed = torch.rand(5, 12, generator=g) > 0.4
    allowed[:, 0] = True
    reference = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed, enable_gqa=True)
    a, b = allowed[:, :7].clone(), allowed[:, 7:].clone()
    b[2] = False  # a row that sees nothing in one part must weigh nothing there
    reference_b2 = torch.nn.functional.scaled_dot_product_attention(
        q[:, :, 2:3], k[:, :, :7], v[:, :, :7], attn_mask=a[2:3], enable_gqa=True)
    got = merge_attention([attention_lse(q, k[:, :, :7], v[:, :, :7], Mask(a)),
                           attention_lse(q, k[:, :, 7:], v[:, :, 7:], Mask(b))])
    keep = [0, 1, 3, 4]
    assert (got[:, :, keep] - reference[:, :, keep]).abs().max() <= 1e-5
    assert (got[:, :, 2:3] - reference_b2).abs().max() <= 1e-5


def test_cpu_kernel_and_fallback_agree(monkeypatch):
    from longchat.context import attention

    q, k, v = torch.randn(1, 4, 6, 8), torch.randn(1, 2, 9, 8), torch.randn(1, 2, 9, 8)
    mask = attention.Mask(torch.ones(6, 9, dtype=torch.bool).tril(3))
    fast = attention.attention_lse(q, k, v, mask)
    monkeypatch.setattr(attention, "_cpu_flash", None)
    slow = attention.attention_lse(q, k, v, attention.Mask(mask.allowed))
    assert (fast[0] - slow[0]).abs().max() <= 1e-5 and (fast[1] - slow[1]).abs().max() <= 1e-5


# ---------------------------------------------------------------- infllm internals

def test_infllm_memory_keys_come_back_unrotated(tiny):
    cfg, _ = tiny
    s = make(cfg, "infllm", n_init=4, n_local=16, block_size=4, topk=2, max_cached_block=4)
    k = torch.randn(1, cfg.n_kv_heads, 40, cfg.head_dim)
    for start in range(0, 40, 8):  # layer 0 only: the eviction plan is per forward
        s.begin(torch.arange(start, start + 8))
        q = torch.randn(1, cfg.n_heads, 8, cfg.head_dim)
        s.attend(0, q, k[:, :, start : start + 8], k[:, :, start : start + 8])
    # 40 tokens, window 16: 4 init + 5 blocks of 4 evicted, stored as the pre-RoPE keys.
    assert torch.allclose(s.layers[0].init_k, k[:, :, :4], atol=1e-5)
    blocks, _ = s.layers[0].store.gather(list(range(5)), "cpu", torch.float32)
    assert torch.allclose(blocks, k[0, :, 4:24], atol=2e-3)  # fp16 storage


def test_infllm_decode_slots_hold_exactly_the_retrieved_blocks(tiny):
    cfg, decoder = tiny
    s = make(cfg, "infllm", n_init=8, n_local=32, block_size=8, topk=3, max_cached_block=4)
    run(decoder, s, IDS[:, :150], 16)
    for token in IDS[0, 150:180]:
        decoder.forward(token.view(1, 1), s)
        for layer in (0, cfg.n_layers - 1):
            slots, gk, gv = s.layers[layer].memory_kv
            assert sorted(slots) == s.layers[layer].retrieved
            for slot, block in enumerate(slots):
                want_k, want_v = s.layers[layer].store.gather([block], "cpu", torch.float32)
                got = slice(8 + slot * 8, 8 + (slot + 1) * 8)
                assert torch.equal(gk[0, :, got], want_k) and torch.equal(gv[0, :, got], want_v)
            assert len(s.layers[layer].cache) <= 4


def test_infllm_ordered_memory_sits_in_block_order_right_before_the_remainder(tiny):
    cfg, decoder = tiny
    s = make(cfg, "infllm", n_init=8, n_local=32, block_size=8, topk=3, max_cached_block=4)
    run(decoder, s, IDS[:, :150], 16)
    seen_unsorted = False
    for token in IDS[0, 150:190]:  # decode steps change the retrieved set; slots get reused
        n_rem = 0 if s.layers[0].rem_k is None else s.layers[0].rem_k.shape[2]
        end = s.length - s.window - n_rem  # evicted, not yet a block: right after the last block
        decoder.forward(token.view(1, 1), s)
        for layer in (0, cfg.n_layers - 1):
            slots, gk, _ = s.layers[layer].memory_kv
            seen_unsorted |= slots != sorted(slots)
            rotated = s.layers[layer].memory_rot[1]
            want = [rotate(gk[:, :, :8], *s.rope.cos_sin(torch.arange(8) + end - 8 - 3 * 8, torch.float32, exact=True))]
            for slot, block in enumerate(slots):
                rank = sorted(slots).index(block)  # the j-th smallest id is the j-th block in the text
                first = end - (3 - rank) * 8
                cos, sin = s.rope.cos_sin(torch.arange(first, first + 8), torch.float32, exact=True)
                want.append(rotate(gk[:, :, 8 + slot * 8 : 16 + slot * 8], cos, sin))
            assert torch.allclose(rotated, torch.cat(want, dim=2), atol=1e-6)
    assert seen_unsorted  # the case where slot order and text order differ was exercised


def _same_state(a: dict, b: dict) -> bool:
    def same(x, y):
        if isinstance(x, torch.Tensor):
            return isinstance(y, torch.Tensor) and torch.equal(x, y)
        if isinstance(x, list):
            return isinstance(y, list) and len(x) == len(y) and all(same(i, j) for i, j in zip(x, y))
        return x == y
    return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)


def test_infllm_question_is_reread_with_the_blocks_the_upper_layers_voted_for(tiny):
    cfg, decoder = tiny
    s = make(cfg, "infllm", n_init=8, n_local=32, block_size=8, topk=3, max_cached_block=4, vote_from=0.5)
    run(decoder, s, IDS[:, :150], 16)
    before = s.snapshot()
    question = IDS[:, 150:170]  # 20 tokens past a full window: the first read makes new blocks
    assert s.begin_question()
    first = decoder.forward(question, s, logits="all")
    assert s.layers[0].store.count > before["blocks"]
    votes: dict[int, int] = {}
    for layer in range(cfg.n_layers // 2, cfg.n_layers):
        for block in s.layers[layer].retrieved:
            votes[block] = votes.get(block, 0) + 1
    s.rewind_question()
    assert _same_state(s.snapshot(), before)  # exactly where the first read started
    second = decoder.forward(question, s, logits="all")
    agreed = s.agreed
    assert len(agreed) == 3 and min(votes.get(b, 0) for b in agreed) >= max(
        (n for b, n in votes.items() if b not in agreed), default=0)
    assert all(s.layers[layer].retrieved == agreed for layer in range(cfg.n_layers))
    assert s.length == 170 and not torch.equal(first, second)
    # Answer tokens keep one agreed set for all layers; the next prompt's chunk ends it.
    decoder.forward(IDS[:, 170:171], s)
    assert s.agreed is not None and all(s.layers[layer].retrieved == s.agreed for layer in range(cfg.n_layers))
    decoder.forward(IDS[:, 171:180], s)
    assert s.agreed is None


def test_infllm_rerank_pins_the_likeliest_block_and_bars_those_far_behind(tiny):
    cfg, decoder = tiny
    s = make(cfg, "infllm", n_init=8, n_local=32, block_size=8, topk=3, max_cached_block=8,
             vote_from=0.5, rerank=4, rerank_margin=2.0)
    run(decoder, s, IDS[:, :150], 16)
    before = s.snapshot()
    question = IDS[:, 150:170]
    assert s.begin_question()
    decoder.forward(question, s, logits="none")
    votes = dict(s._votes)
    candidates = s.question_candidates()
    assert candidates == sorted(votes, key=votes.get, reverse=True)[:4]
    for block in candidates:  # each read starts where the first did, with that block alone
        s.read_question_with(block)
        assert _same_state(s.snapshot(), before)
        decoder.forward(question, s, logits="all")
        assert all(s.layers[layer].retrieved == [block] for layer in range(cfg.n_layers))
    assert s.question_candidates() == candidates  # still the first read's votes
    best = candidates[-1]  # the least voted of them, to see the pin at work
    scores = {b: -10.0 for b in candidates} | {best: 0.0}
    s.rewind_question(scores)
    assert _same_state(s.snapshot(), before)
    barred = {b for b in candidates if abs(b - best) > 1}
    assert s.pinned == [best] and s.barred == barred
    decoder.forward(question, s, logits="all")
    assert best in s.agreed and not barred & set(s.agreed)
    for t in range(170, 175):  # answer tokens keep the pin and the bar
        decoder.forward(IDS[:, t : t + 1], s)
        assert best in s.agreed and not barred & set(s.agreed)
        assert all(s.layers[layer].retrieved == s.agreed for layer in range(cfg.n_layers))
    decoder.forward(IDS[:, 175:180], s)  # the next prompt's text ends them
    assert s.agreed is None and s.pinned == [] and not s.barred


def _decode_set_changes(decoder, s, steps: int) -> int:
    """Read a prompt and its question (two reads, as the engine does), then decode `steps`
    tokens; how many times the agreed set of blocks changed."""
    run(decoder, s, IDS[:, :150], 16)
    assert s.begin_question()
    decoder.forward(IDS[:, 150:170], s, logits="none")
    s.rewind_question()
    logits = decoder.forward(IDS[:, 150:170], s, logits="last")
    changes, last = 0, list(s.agreed)
    for _ in range(steps):
        logits = decoder.forward(logits.argmax(-1, keepdim=True), s, logits="last")
        changes += s.agreed != last
        last = list(s.agreed)
    return changes


def test_infllm_answer_tokens_keep_their_blocks_unless_out_voted_by_the_hold(tiny):
    cfg, decoder = tiny
    params = dict(n_init=8, n_local=32, block_size=8, topk=3, max_cached_block=8, vote_from=0.5)
    free = _decode_set_changes(decoder, make(cfg, "infllm", decode_hold=0.0, **params), 30)
    # One voting layer here: a block gets at most ~1 vote, so a hold of 2 layers' votes is never beaten.
    held = _decode_set_changes(decoder, make(cfg, "infllm", decode_hold=2.0, **params), 30)
    assert free > 10 and held == 0


def test_infllm_question_is_read_once_without_consensus_or_memory(tiny):
    cfg, decoder = tiny
    off = make(cfg, "infllm", n_init=8, n_local=32, block_size=8, topk=3, max_cached_block=4, consensus=False)
    run(decoder, off, IDS[:, :150], 16)
    assert not off.begin_question()
    empty = make(cfg, "infllm", n_init=8, n_local=256, block_size=8, topk=3, max_cached_block=4)
    run(decoder, empty, IDS[:, :150], 16)
    assert not empty.begin_question()  # nothing evicted yet: the question reads the whole input


def test_infllm_refuses_at_once_an_input_whose_blocks_cannot_fit(tiny, tmp_path, monkeypatch):
    """The check runs before any prefill: memory blocks of n tokens against the RAM (or the
    disk) they would fill, with the settings that would make them fit named."""
    from collections import namedtuple

    from longchat import sysinfo
    from longchat.context.infllm import strategy as infllm
    from longchat.errors import InputError

    cfg, _ = tiny
    params = dict(n_init=8, n_local=64, block_size=16, topk=2, max_cached_block=4)
    s = make(cfg, "infllm", **params)
    per_block = cfg.n_layers * s.layers[0].store.record_bytes  # 2 layers x (2 x 2 heads x 16 x 16 x 2 B)
    monkeypatch.setattr(sysinfo, "available_ram", lambda: 10 * per_block)
    assert s.prepare(8 + 64 + 10 * 16) is None  # exactly 10 blocks: fits
    with pytest.raises(InputError, match=r"GB of memory blocks in RAM.*infllm.disk=true .*or infllm.store_bits=8"):
        s.prepare(8 + 64 + 11 * 16)
    with pytest.raises(InputError) as e:
        make(cfg, "infllm", **params, store_bits=8).prepare(10**6)
    assert "infllm.disk=true" in str(e.value) and "store_bits" not in str(e.value)
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(infllm.shutil, "disk_usage", lambda where: Usage(0, 0, 5 * per_block))
    with pytest.raises(InputError, match=r"on disk, but .* GB free; set infllm.disk_dir"):
        make(cfg, "infllm", **params, disk=True, disk_dir=str(tmp_path)).prepare(8 + 64 + 6 * 16)
    auto = make(cfg, "auto", **params)
    auto.params.full_up_to = 100  # the profile's context.effective_window
    with pytest.raises(InputError, match="memory blocks in RAM"):
        auto.prepare(10**6)  # auto checks for the infllm it switches to
    assert auto.prepare(90) is not None  # and full attention has nothing to check


# ---------------------------------------------------------------- auto

def test_auto_picks_full_inside_the_window_and_infllm_past_it(tiny):
    cfg, decoder = tiny
    s = make(cfg, "auto", n_init=8, n_local=64, block_size=16, topk=2, max_cached_block=4)
    s.params.full_up_to = 100  # the profile's context.effective_window
    assert "using full attention" in s.prepare(90) and s.chosen == "full"
    assert s.prepare(95) is None  # same choice: nothing new to say
    reference = run(decoder, make(cfg, "full"), IDS[:, :90], 90)
    assert s.reader is s.inner  # the engine runs the model through the strategy auto picked
    assert torch.equal(run(decoder, s.reader, IDS[:, :90], 90), reference)
    message = s.prepare(200)
    assert "200 tokens is past the effective window (100); using infllm" in message
    assert s.chosen == "infllm" and s.reader.length == 0
    run(decoder, s.reader, IDS, 32)
    assert s.inner.evicted == 136


def test_auto_window_defaults_to_the_profiles_effective_window():
    prof = load_profile("auto", ["context.effective_window=1500"])
    assert prof.context.strategy == "auto" and prof.strategy.full_up_to == 1500
    with pytest.raises(ConfigError, match="'full_up_to' was removed in issue 40: `auto` reads with full attention "
                                          "up to context.effective_window"):
        load_profile("auto", ["auto.full_up_to=700"])


def attention_flops(decoder, strategy, ids, step) -> int:
    from longchat.context.attention import AttentionFlops, counting

    with counting(AttentionFlops()) as counter:
        run(decoder, strategy, ids, step)
    return counter.flops


@pytest.mark.parametrize("name, params", [
    ("full", {}),
    ("infllm", dict(n_init=8, n_local=256, block_size=16, topk=4)),
    ("streaming", dict(n_sink=4, n_local=196)),
])
def test_attention_flops_are_the_causal_pairs_while_the_input_fits(tiny, name, params):
    cfg, decoder = tiny
    per_pair = 4 * cfg.n_layers * cfg.n_heads * cfg.head_dim
    t = IDS.shape[1]
    for step in (200, 50, 1):
        assert attention_flops(decoder, make(cfg, name, **params), IDS, step) == per_pair * t * (t + 1) // 2


def test_infllm_attention_flops_are_bounded_past_the_window(tiny):
    # Each query attends to at most init + topk blocks + a partial block + the local window.
    cfg, decoder = tiny
    p = dict(n_init=8, n_local=64, block_size=16, topk=2, max_cached_block=4)
    per_pair = 4 * cfg.n_layers * cfg.n_heads * cfg.head_dim
    counted = attention_flops(decoder, make(cfg, "infllm", **p), IDS, 32)
    bound = 8 + 2 * 16 + 16 + 64
    assert counted <= per_pair * IDS.shape[1] * bound
    assert counted < per_pair * 200 * 201 // 2  # less than full attention
    assert counted > per_pair * (200 - 64) * 64  # every query past the window sees at least the window



def test_full_holds_a_prepared_prompt_and_reply_in_one_allocation(tiny):
    cfg, decoder = tiny
    reference = run(decoder, make(cfg, "full"), IDS, 50)
    s = make(cfg, "full")
    assert s.prepare(IDS.shape[1] + 10) is None
    got = run(decoder, s, IDS, 50)
    assert torch.equal(got, reference)
    assert {buf.k.shape[2] for buf in s.layers} == {210}  # not doubled past it (256+)
    s.reset()  # a new sequence for the same prompt + reply keeps the size
    run(decoder, s, IDS[:, :60], 60)
    assert {buf.k.shape[2] for buf in s.layers} == {210}
    run(decoder, s, IDS, 50)  # past the reservation: doubles as before
    assert s.layers[0].k.shape[2] >= 2 * 260


def test_infllm_release_window_moves_the_document_to_memory(tiny):
    """`focus` (a decisive re-ranking): the window's tokens become memory blocks (and
    remainder) at their own positions; read back with every block retrieved, the text after
    them sees what full attention sees."""
    cfg, decoder = tiny
    s = make(cfg, "infllm", n_init=8, n_local=32, block_size=8, topk=32, max_cached_block=32, consensus=False)
    run(decoder, s, IDS[:, :150], 16)
    before = s.layers[0].store.count
    s.release_window()
    n_rem = 0 if s.layers[0].rem_k is None else s.layers[0].rem_k.shape[2]
    assert s.window == 0 and s.length == 150 and s.evicted == 150
    assert s.layers[0].store.count == before + 4 and 8 + 8 * s.layers[0].store.count + n_rem == 150
    assert all(held.window.size == 0 and held.store.count == s.layers[0].store.count for held in s.layers)
    s.release_window()  # nothing left to move
    assert s.layers[0].store.count == before + 4
    got = run(decoder, s, IDS[:, 150:170], 20)
    want = decoder.forward(IDS[:, :170], make(cfg, "full"), logits="all")[:, 150:]
    assert torch.allclose(got, want, atol=1e-3)  # blocks are stored as float16


def test_infllm_restores_older_states_of_fixed_blocks_and_refuses_event_shaped_ones(tiny, tmp_path):
    """A memory's state from before issue 40 holds each block's length and the tokens' surprise
    (before that, neither): with fixed-size blocks both restore as they were; one of
    event-shaped blocks (`segment = "surprise"`, since removed) is refused in one line, before
    anything is changed."""
    from longchat.errors import StoreError

    cfg, decoder = tiny
    params = dict(n_init=8, n_local=32, block_size=8, topk=3, max_cached_block=8)
    s = make(cfg, "infllm", **params)
    s.persist(tmp_path, 0)
    run(decoder, s, IDS[:, :150], 16)
    s.sync()
    state = s.snapshot()
    assert not {"lens", "surprise", "s_from"} & set(state)
    n = s.layers[0].store.count
    written = {**state, "lens": torch.full((n,), 8, dtype=torch.int16), "surprise": torch.zeros(0), "s_from": 0}
    want = decoder.forward(IDS[:, 150:160], s, logits="all")
    for old_state in (state, written):
        old = make(cfg, "infllm", **params)
        old.restore(old_state, tmp_path)
        assert old.block_spans() == [(8 + 8 * b, 16 + 8 * b) for b in range(n)]
        assert (decoder.forward(IDS[:, 150:160], old, logits="all") - want).abs().max() <= TOL
    for events in ({"lens": torch.tensor([8] * (n - 1) + [5], dtype=torch.int16)},
                   {"surprise": torch.ones(40), "s_from": 110}):
        fresh = make(cfg, "infllm", **params)
        with pytest.raises(StoreError, match=r"event-shaped blocks .*no longer reads .*ingest it again") as err:
            fresh.restore({**written, **events}, tmp_path)
        assert "\n" not in str(err.value) and fresh.length == 0 and fresh.layers[0].store.count == 0
