"""Our decoder forward against transformers' own, for every family, on tiny random models.

Tolerance: max |logit difference| <= 1e-4 in fp32 (observed: ~1e-6; the fused projections and
chunked attention reorder float sums, nothing more).
"""

from __future__ import annotations

import pytest
import torch
import transformers

from longchat.context import strategy_class
from longchat.runtime.config import ModelConfig
from longchat.runtime.generate import Engine, Sampling
from longchat.runtime.loader import load_decoder
from longchat.runtime.rope import Rope
from tiny_models import FAMILIES

TOL = 1e-4


def load_both(folder):
    hf = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    cfg = ModelConfig.from_hf(hf.config)
    ours = load_decoder(folder, cfg, torch.device("cpu"), torch.float32)
    return hf, cfg, ours


def full(cfg, kv="fp32"):
    """Full attention, its cache in fp32 unless `kv` says otherwise: the exact reference."""
    return strategy_class("full")(cfg, Rope(cfg.hf), kv=kv)


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request, tiny_dirs):
    return request.param, load_both(tiny_dirs[request.param])


def test_logits_match_transformers(family):
    _, (hf, cfg, ours) = family
    ids = torch.randint(0, cfg.vocab_size, (1, 150), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = hf(ids).logits
    got = ours.forward(ids, full(cfg), logits="all")
    assert (got - ref).abs().max().item() <= TOL


def test_chunked_prefill_and_kv_cache_match(family):
    _, (hf, cfg, ours) = family
    ids = torch.randint(0, cfg.vocab_size, (1, 130), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = hf(ids).logits
    strategy = full(cfg)
    chunks = [ours.forward(ids[:, i : i + 37], strategy, logits="all") for i in range(0, 100, 37)]
    steps = [ours.forward(ids[:, i : i + 1], strategy, logits="all") for i in range(111, 130)]
    got = torch.cat(chunks + steps, dim=1)
    assert strategy.length == 130
    assert (got - ref).abs().max().item() <= TOL


@pytest.mark.parametrize("kv", ["bf16", "int8"])
def test_a_smaller_kv_cache_stays_close_to_fp32(family, kv):
    """The cache held as bf16 or int8 (context.kv): prefill chunks and decode steps, the folded
    bf16 decode path included, stay within the rounding of the cache of the fp32 reference."""
    _, (hf, cfg, ours) = family
    ids = torch.randint(0, cfg.vocab_size, (1, 130), generator=torch.Generator().manual_seed(2))

    def logits(strategy):
        chunks = [ours.forward(ids[:, i : i + 37], strategy, logits="all") for i in range(0, 100, 37)]
        steps = [ours.forward(ids[:, i : i + 1], strategy, logits="all") for i in range(111, 130)]
        return torch.cat(chunks + steps, dim=1)

    small, ref = full(cfg, kv), full(cfg)
    got, want = logits(small), logits(ref)
    assert small.kv.name == kv
    assert small.memory_bytes() <= ref.memory_bytes() // 2 + 1024 * cfg.n_layers
    assert (got - want).abs().max().item() <= 0.02 * want.abs().max().item()
    assert (got.argmax(-1) == want.argmax(-1)).float().mean() >= 0.95


def test_greedy_generation_matches_transformers_generate(family, tiny_dirs):
    name, (hf, cfg, ours) = family
    ids = torch.randint(0, cfg.vocab_size, (1, 20), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = hf.generate(ids, max_new_tokens=12, min_new_tokens=12, do_sample=False)[0, 20:].tolist()
    engine = Engine(_loaded(tiny_dirs[name], cfg, ours), full(cfg), prefill_chunk=8)
    engine.stop_ids = set()  # random weights: run the full 12 tokens like min_new_tokens does
    got = list(engine.generate(ids[0].tolist(), Sampling(max_new_tokens=12)))
    assert got == ref


def test_engine_reuses_prefix_with_identical_logits(tiny_dirs):
    hf, cfg, ours = load_both(tiny_dirs["llama"])
    engine = Engine(_loaded(tiny_dirs["llama"], cfg, ours), full(cfg), prefill_chunk=16)
    first = list(range(5, 45))
    engine.prefill(first)
    second = first + list(range(50, 60))
    warm = engine.prefill(second)
    assert engine.stats.reused_tokens == len(first)
    # FLOPs of the 10 new tokens: every weight twice per token, the vocabulary once, and
    # attention over 40 cached + 10 causal keys.
    per_layer = sum(p.numel for p in ours.layers[0].projections())
    weights = 2 * per_layer * cfg.n_layers * 10 + 2 * cfg.vocab_size * cfg.hidden_size
    attention = 4 * cfg.n_layers * cfg.n_heads * cfg.head_dim * (10 * 40 + 10 * 11 // 2)
    assert engine.stats.prefill_flops == weights + attention
    fresh = Engine(_loaded(tiny_dirs["llama"], cfg, ours), full(cfg), prefill_chunk=16).prefill(second)
    assert torch.allclose(warm, fresh, atol=TOL)
    # A prompt that diverges early rewinds the cache instead of starting over.
    third = first[:10] + [7, 7, 7]
    engine.prefill(third)
    assert engine.stats.reused_tokens == 10


def test_engine_reads_the_question_twice_when_infllm_agrees_on_blocks(tiny_dirs):
    hf, cfg, ours = load_both(tiny_dirs["llama"])
    cls = strategy_class("infllm")

    def infllm():
        return cls(cfg, Rope(cfg.hf), cls.Params(n_init=8, n_local=32, block_size=8, topk=3, max_cached_block=4))
    engine = Engine(_loaded(tiny_dirs["llama"], cfg, ours), infllm(), prefill_chunk=16, final_chunk=8)
    prompt = list(range(3, 103))
    got = engine.prefill(prompt)
    assert engine.cached_ids == prompt and engine.strategy.length == 100 and engine.strategy.agreed
    by_hand = infllm()
    *body, (i, j) = engine.chunk_bounds(100)
    for a, b in body:
        ours.forward(torch.tensor([prompt[a:b]]), by_hand, logits="none")
    question = torch.tensor([prompt[i:j]])
    assert by_hand.begin_question()
    ours.forward(question, by_hand, logits="none")
    # Re-ranking: each candidate block alone, scored by the question's log-likelihood.
    candidates = by_hand.question_candidates()
    assert 1 < len(candidates) <= 8  # the default `rerank`: up to 8 of the voted blocks
    scores = {}
    for block in candidates:
        by_hand.read_question_with(block)
        logp = torch.log_softmax(ours.forward(question, by_hand, logits="all")[0, :-1], dim=-1)
        scores[block] = float(logp[torch.arange(7), question[0, 1:]].sum())
    by_hand.rewind_question(scores)
    assert torch.equal(got, ours.forward(question, by_hand, logits="last")[0])
    assert engine.strategy.pinned == [max(scores, key=scores.get)] == by_hand.pinned
    # Every read's weights are counted: 100 + 8 (first read) + 8 per candidate tokens, of
    # which 1 + 8 per candidate rows were projected to the vocabulary.
    n = len(candidates)
    weights = ours.matmul_flops(108 + 8 * n, 1 + 8 * n)
    assert weights < engine.stats.prefill_flops < weights + ours.matmul_flops(100, 0)


def test_engine_question_is_read_twice_without_rerank(tiny_dirs):
    hf, cfg, ours = load_both(tiny_dirs["llama"])
    cls = strategy_class("infllm")
    params = cls.Params(n_init=8, n_local=32, block_size=8, topk=3, max_cached_block=4, rerank=0)
    engine = Engine(_loaded(tiny_dirs["llama"], cfg, ours), cls(cfg, Rope(cfg.hf), params),
                    prefill_chunk=16, final_chunk=8)
    engine.prefill(list(range(3, 103)))
    assert engine.strategy.agreed and engine.strategy.pinned == []
    weights = ours.matmul_flops(108, 1)
    assert weights < engine.stats.prefill_flops < weights + ours.matmul_flops(100, 0)


def test_sampling_is_seeded(tiny_dirs):
    hf, cfg, ours = load_both(tiny_dirs["qwen2"])
    loaded = _loaded(tiny_dirs["qwen2"], cfg, ours)
    s = Sampling(max_new_tokens=10, temperature=1.0, top_p=0.9, top_k=50, seed=7)
    runs = []
    for _ in range(2):
        engine = Engine(loaded, full(cfg))
        engine.stop_ids = set()
        runs.append(list(engine.generate([1, 2, 3], s)))
    assert runs[0] == runs[1] and len(runs[0]) == 10


def _loaded(folder, cfg, decoder):
    from longchat.runtime.loader import LoadedModel

    class NoTokenizer:  # tiny checkpoints ship no tokenizer; stop ids are set by the tests
        eos_token_id = None

        def get_vocab(self):
            return {}

    return LoadedModel("tiny", folder, cfg, decoder, NoTokenizer(), 0.0)
