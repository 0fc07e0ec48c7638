"""`infllm` (InfLLM): sinks + local window + retrieved memory blocks, one softmax over all.

Per layer the sequence splits into: the first `n_init` tokens (kept forever), memory blocks
of `block_size` evicted tokens, a remainder not yet a full block, and the last `n_local`
tokens. Each forward (a prefill chunk or one decoded token):
  * local part: the window plus the new tokens, causal, at their true relative distances;
  * global part: init tokens + the `topk` blocks whose representative keys best match the
    chunk's mean query + the remainder. Global keys are unrotated and the query is rotated at
    position `n_local`, so every memory token sits at one fixed distance (the trained range
    is never exceeded, however long the input).
The parts are attended separately and merged into one softmax (`merge_attention`).
While nothing has been evicted this is exactly full attention.

Consensus (`consensus`, ours): the prompt's last chunk, the question, is read twice (the
engine asks through `begin_question`); on the second read and for every answer token all
layers attend to the blocks most of the upper layers retrieved, not each to its own pick.
Re-ranking (`rerank`, after UPR: Sachan et al. 2022, "Improving Passage Retrieval with
Zero-Shot Question Generation"): between the reads the engine scores the `rerank` most-voted
blocks one at a time by the question's log-likelihood with only that block in memory; the
answer then always reads the best one and never the candidates `rerank_margin` nats behind it.
Votes cannot tell apart blocks that share the question's words ("The special magic number
for ..."); the likelihood of the question's one distinguishing word can.
Each answer token re-votes, but the blocks the last one read get a bonus (`decode_hold`):
without it the set changed on almost every token (a block reload per layer each time).

Memory tiers: blocks live in a `BlockStore` (host RAM, 16-bit, or temp files on disk);
the blocks in use sit in a bounded LRU cache on the compute device (`max_cached_block`), and
so do the representative keys of every block (they are scored at every step).
Window keys are kept rotated at their absolute positions (float64 angles), so a decode step
rotates one key, not the window; they are un-rotated when they leave it.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from longchat.context.attention import Mask, attention_lse, merge_attention
from longchat.context.base import ContextStrategy, QuestionText, ReadsQuestion, StrategyParams, register_strategy
from longchat.context.infllm.blocks import BlockStore, score_dtype
from longchat.context.infllm.lexical import best_blocks
from longchat import sysinfo
from longchat.errors import InputError, StoreError
from longchat.runtime.rope import rotate
from longchat.settings import read_time, require, stored


# A memory encoded with event-shaped blocks (`segment = "surprise"`, EM-LLM), removed in issue 40.
EVENT_SHAPED = ("infllm: this memory was encoded with event-shaped blocks (segment = \"surprise\"), which this "
                "version no longer reads (removed in issue 40); ingest it again")


@dataclass
class InfLLMParams(StrategyParams):
    # `stored`: part of a memory's key (it changes the blocks' keys and values); `read_time`: how
    # blocks are held or read, so memories stay valid across it (tests/test_profiles.py checks each).
    n_init: int = stored(128)          # initial tokens (attention sinks), always attended
    n_local: int = stored(1024)        # local window; the bundled model reads ~2-4k tokens reliably
    block_size: int = stored(128)      # tokens per memory block
    topk: int = stored(8)              # blocks retrieved per chunk and per decoded token
    repr_topk: int = stored(16)        # representative keys per block, used for retrieval (at most block_size)
    max_cached_block: int = read_time(32) # blocks the device cache may hold (LRU); must be >= topk
    disk: bool = read_time(False)         # keep blocks in temp files instead of RAM (bounded host memory)
    disk_dir: str = read_time("")         # where the disk tier writes ("" = the system temp dir)
    store_bits: int = stored(16)       # 16: blocks kept as float16; 8: int8 + a scale per token and head
    memory_positions: str = stored("ordered")  # "ordered": memory keeps its word order just before the
                                       # window; "fixed": every memory token at distance n_local
    consensus: bool = read_time(True)     # the question is read twice: the upper layers vote on blocks, then
                               # every layer (and every answer token) reads the most-voted topk
    rerank: int = read_time(8)            # with consensus: the most-voted blocks scored by the question's
                               # likelihood with each alone (one more read of the question each); 0 = off
    lexical: int = read_time(4)           # with rerank: the blocks BM25 ranks best for the question's words are
                               # scored too (attention votes miss facts phrased like their context)

    def validate(self, where: str) -> None:
        require(self.n_init >= 0, where, "n_init", "an integer >= 0")
        require(self.n_local >= 1, where, "n_local", "an integer >= 1")
        require(self.block_size >= 1, where, "block_size", "an integer >= 1")
        require(self.topk >= 1, where, "topk", "an integer >= 1")
        require(self.repr_topk >= 1, where, "repr_topk", "an integer >= 1 (capped at block_size)")
        require(self.store_bits in (8, 16), where, "store_bits", "8 or 16")
        require(self.memory_positions in ("ordered", "fixed"), where, "memory_positions", "one of: ordered, fixed")
        require(self.rerank >= 0, where, "rerank", "an integer >= 0 (0 = off)")
        require(self.lexical >= 0, where, "lexical", "an integer >= 0 (0 = attention votes only)")
        require(self.max_cached_block >= self.topk, where, "topk",
                f"<= max_cached_block ({self.max_cached_block}): retrieved blocks must fit the block cache")

    def check_context(self, context, where: str) -> None:
        require(context.prefill_chunk <= self.n_local, where, "n_local",
                f">= context.prefill_chunk ({context.prefill_chunk}): a chunk must fit the local window")


class _Window:
    """One layer's local window: rotated keys, values and retrieval scores, oldest first.

    A buffer with a moving start: appending writes after the last token, evicting moves the
    start; the live part is copied to the front only when the end is reached.
    """

    def __init__(self):
        self.k = self.v = self.score = None  # (1, Hkv, cap, D), (1, Hkv, cap, D), (Hkv, cap)
        self.start = self.size = 0

    def append(self, k_rot: torch.Tensor, v: torch.Tensor, room: int) -> None:
        t = k_rot.shape[2]
        if self.k is None or self.start + self.size + t > self.k.shape[2]:
            cap = max(self.size + t + room, 64)
            live = slice(self.start, self.start + self.size)
            new_k = k_rot.new_empty((*k_rot.shape[:2], cap, k_rot.shape[3]))
            new_v = v.new_empty(new_k.shape)
            new_s = torch.zeros(k_rot.shape[1], cap, device=k_rot.device)
            if self.k is not None:
                new_k[:, :, : self.size] = self.k[:, :, live]
                new_v[:, :, : self.size] = self.v[:, :, live]
                new_s[:, : self.size] = self.score[:, live]
            self.k, self.v, self.score, self.start = new_k, new_v, new_s, 0
        end = self.start + self.size
        self.k[:, :, end : end + t] = k_rot
        self.v[:, :, end : end + t] = v
        self.score[:, end : end + t] = 0
        self.size += t

    def live(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        sl = slice(self.start, self.start + self.size)
        return self.k[:, :, sl], self.v[:, :, sl], self.score[:, sl]

    def pop_front(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Remove the `n` oldest tokens; returns copies (the buffer is reused)."""
        sl = slice(self.start, self.start + n)
        out = self.k[:, :, sl].clone(), self.v[:, :, sl].clone(), self.score[:, sl].clone()
        self.start += n
        self.size -= n
        return out

    def nbytes(self) -> int:
        return 0 if self.k is None else 2 * self.k.numel() * self.k.element_size() + self.score.numel() * 4


@dataclass
class _Layer:
    """One layer's part of the state."""

    window: _Window
    store: BlockStore              # memory blocks (RAM, temp files, or a memory's files)
    cache: OrderedDict = field(default_factory=OrderedDict)  # block id -> (k, v) on the device, LRU
    init_k: torch.Tensor | None = None     # (1, Hkv, <= n_init, D) unrotated
    init_v: torch.Tensor | None = None
    rem_k: torch.Tensor | None = None      # (1, Hkv, < block_size, D): evicted, not yet a block
    rem_v: torch.Tensor | None = None
    rem_score: torch.Tensor | None = None  # (Hkv, < block_size)
    memory_kv: tuple | None = None   # (slot ids, K, V): init + retrieved blocks, unrotated
    memory_rot: tuple | None = None  # ((slot ids, start), K rotated): `ordered` positions, reused while valid
    retrieved: list[int] = field(default_factory=list)  # the blocks the last forward read


@register_strategy
class InfLLM(ContextStrategy, ReadsQuestion):
    name = "infllm"
    Params = InfLLMParams
    # Behaviour, not settings, since issue 40 (docs/settings.md); a subclass may change them.
    vote_from = 0.33    # layers from this fraction of the depth up vote (lower layers' own picks
                        # rarely hold what the question asks for; fewer layers score per token)
    decode_hold = 0.25  # while decoding, the blocks the last token read get this fraction of the
                        # voting layers' votes on top of their own: a new block must out-vote one
                        # by that much (the set steadies: fewer block loads, ~25% faster decode)
    # With re-ranking (`rerank`): the answer never reads a scored block this many nats (summed
    # over the question's tokens) below the best one, except its neighbours.
    rerank_margin = 4.0
    # `ask` only: when the best block beats every other scored one by this many nats, the
    # question's second read and the answer read it and its two neighbours (and the n_init
    # tokens) alone: not the topk voted, nor the local window.
    focus = 12.0
    # `ask` only: once the answer runs 3 tokens as the pinned block (or a neighbour) does, the
    # block's next token gets this added to its logit (as runtime.generate's FAVOUR_BOOST gives
    # every favoured text; a lower layer, so the value is written here too).
    pinned_boost = 3.0

    def reset(self) -> None:
        c = self.cfg
        for held in getattr(self, "layers", []):
            held.store.close()
        L = c.n_layers
        self.layers = [_Layer(_Window(), self._store()) for _ in range(L)]
        self._tables: dict = {}  # (first, end) -> (cos, sin): this forward's RoPE tables, shared by all layers
        self._length = 0
        self.window = 0              # tokens in the local window (same for every layer)
        self.evicted = 0             # tokens that have left the window so far
        # Consensus retrieval (see `begin_question`): the state before the question's first
        # read, the votes of the current forward, and the blocks every layer reads, if agreed.
        self._question: dict | None = None
        self._second_read = False
        self._votes: dict[int, float] = {}
        self.agreed: list[int] | None = None
        # Re-ranking: the first read's votes (kept across the candidates' reads), the block
        # every answer token reads, and the blocks none reads.
        self._first_votes: dict[int, float] | None = None
        self.pinned: list[int] = []
        self.barred: set[int] = set()
        self.focused: list[int] = []  # with `focus`: the only blocks read (the pinned one and its neighbours)

    def block_spans(self) -> list[tuple[int, int]]:
        """[start, end) token positions of each memory block, in order."""
        first, bs = self.params.n_init, self.params.block_size
        return [(first + i * bs, first + (i + 1) * bs) for i in range(self.layers[0].store.count)]

    def prepare(self, n_tokens: int, folder=None) -> None:
        """Refuse at once an input whose memory blocks cannot fit where they would go,
        rather than fail (or be killed) after hours of prefill.

        `folder`: where a memory's files will be written (a named memory, the ask cache): its
        disk must hold the blocks. Without it, blocks go to RAM or, with `disk`, to temp files.
        """
        p, store = self.params, self.layers[0].store
        if store.persistent and folder is None:
            return None  # blocks of an attached memory: only a question's few are added
        blocks = self.blocks_for(n_tokens) - store.count
        need = blocks * self.cfg.n_layers * store.record_bytes  # K and V (representatives are ~3% more)
        smaller = "" if p.store_bits == 8 else " or infllm.store_bits=8 (half the bytes)"
        if folder is not None or p.disk:
            where = existing_parent(folder if folder is not None else (p.disk_dir or tempfile.gettempdir()))
            have = shutil.disk_usage(where).free
            if need > have:
                fix = ("set LONGCHAT_HOME to a bigger disk, or pass --no-cache with infllm.disk=true and "
                       "infllm.disk_dir on one" if folder is not None else "set infllm.disk_dir to a bigger disk")
                raise InputError(f"infllm: {n_tokens:,} tokens leave ~{need / 1e9:.1f} GB of memory blocks on disk, "
                                 f"but {where} has {have / 1e9:.1f} GB free; {fix}{smaller}")
        else:
            have = sysinfo.available_ram()
            if have is not None and need > have:
                raise InputError(f"infllm: {n_tokens:,} tokens leave ~{need / 1e9:.1f} GB of memory blocks in RAM, "
                                 f"but {have / 1e9:.1f} GB is available; set infllm.disk=true (temp files){smaller}")
        return None

    def blocks_for(self, n_tokens: int) -> int:
        """Memory blocks (per layer) that an `n_tokens` input leaves."""
        p = self.params
        return max(0, n_tokens - p.n_init - p.n_local) // p.block_size

    def stored_bytes(self, n_tokens: int) -> int:
        """Bytes of memory blocks (K, V and representatives, every layer) an `n_tokens` input leaves:
        what a memory of it holds on disk, besides its ids and its small checkpoints."""
        return self.blocks_for(n_tokens) * self.cfg.n_layers * self.layers[0].store.block_bytes

    def memory_strategy(self, n_tokens: int):
        return self, None

    def memory_params(self) -> InfLLMParams:
        return self.params

    @property
    def n_reprs(self) -> int:
        return min(self.params.repr_topk, self.params.block_size)

    @property
    def first_voter(self) -> int:
        """The lowest layer that votes (`vote_from` of the depth)."""
        return int(self.vote_from * self.cfg.n_layers)

    def _store(self, path=None, count: int = 0) -> BlockStore:
        p, c = self.params, self.cfg
        disk = (p.disk_dir or tempfile.gettempdir()) if p.disk else None
        return BlockStore(c.n_kv_heads, p.block_size, c.head_dim, self.n_reprs, bits=p.store_bits,
                          disk_dir=disk, path=path, count=count, device=self.device,
                          dtype=score_dtype("auto", self.device))

    # -- persistence (longchat.memory): the state after a prefix, to continue from later ------

    def persist(self, directory, count: int = 0) -> None:
        """Keep memory blocks in files under `directory` (one pair per layer), of which the
        first `count` blocks are already there. Call right after `reset` or `restore`."""
        for layer, held in enumerate(self.layers):
            held.store.close()
            held.store = self._store(directory / f"L{layer:03d}", count)
            held.cache.clear()

    def sync(self) -> None:
        for held in self.layers:
            held.store.sync()

    def snapshot(self) -> dict:
        """Everything but the blocks themselves (those are in the persistent files): small."""
        return self._state("cpu")

    def restore(self, state: dict, directory) -> None:
        """Continue from `snapshot()`'s state, with the blocks in `directory`."""
        # Checkpoints written before issue 40 hold each block's length ("lens") and the tokens'
        # surprise: all block_size and none, unless the blocks were event-shaped (`segment =
        # "surprise"`, since removed). Those are refused here, before anything is changed.
        lens = state["lens"].tolist() if "lens" in state else []
        surprise = state.get("surprise")
        if any(n != self.params.block_size for n in lens) or (surprise is not None and surprise.numel()):
            raise StoreError(EVENT_SHAPED)
        self.reset()
        self.persist(directory, state["blocks"])
        self._set_state(state)

    def _state(self, device) -> dict:
        """Copies of the state but the stored blocks (of which only the count)."""
        def copy(tensors):
            return [None if t is None else t.detach().to(device, copy=True) for t in tensors]
        live = [h.window.live() if h.window.k is not None else (None, None, None) for h in self.layers]
        each = {name: copy(getattr(h, name) for h in self.layers) for name in ("init_k", "init_v", "rem_k", "rem_v",
                                                                              "rem_score")}
        return {
            "length": self._length, "window": self.window, "evicted": self.evicted,
            "blocks": self.layers[0].store.count,
            "win_k": copy(t[0] for t in live), "win_v": copy(t[1] for t in live), "win_score": copy(t[2] for t in live),
            **each,
            "slots": [None if h.memory_kv is None else list(h.memory_kv[0]) for h in self.layers],
        }

    def _set_state(self, state: dict) -> None:
        """Take `_state()`'s copies; the stores must hold at least its blocks."""
        dev = self.device

        def put(t):
            return None if t is None else t.to(dev)
        self._length, self.window, self.evicted = state["length"], state["window"], state["evicted"]
        for layer, held in enumerate(self.layers):
            held.window, held.memory_kv, held.memory_rot = _Window(), None, None
            if state["win_k"][layer] is not None:
                held.window.append(put(state["win_k"][layer]), put(state["win_v"][layer]), room=self.params.n_local)
                held.window.score[:, : held.window.size] = put(state["win_score"][layer])
            for name in ("init_k", "init_v", "rem_k", "rem_v", "rem_score"):
                setattr(held, name, put(state[name][layer]))
            slots = state["slots"][layer]
            if slots is not None:  # the memory buffer in its slot order, so sums run as before
                parts = [(held.init_k[0], held.init_v[0])] if held.init_k is not None else []
                parts += self.load_blocks(layer, slots)
                gk = torch.cat([k for k, _ in parts], dim=1)[None]
                gv = torch.cat([v for _, v in parts], dim=1)[None]
                held.memory_kv = (list(slots), gk, gv)
                held.retrieved = sorted(slots)

    # -- consensus retrieval for the question ----------------------------------------------

    def read_last_chunk(self, chunk, read_aside, question):
        """Consensus and re-ranking (see the module docstring): read the question once to let
        the upper layers vote, then once per candidate block (the most voted, and the best by
        BM25 for the question's words) with only that block in memory, scored by the
        question's log-likelihood; then back to the state before it, the best block pinned.
        With `focus`, an `ask` question and a decisive best block, the local window then goes
        to memory."""
        if not self.begin_question():
            return 0, 0
        read_aside(chunk, "none")
        scores = {}
        if len(chunk) > 1:
            for block in self.question_candidates(question):
                self.read_question_with(block)
                logits = read_aside(chunk, "all")[0]  # (T, V)
                target = torch.tensor(chunk[1:], device=logits.device)
                scores[block] = float(torch.log_softmax(logits[:-1], dim=-1).gather(1, target[:, None]).sum())
        self.rewind_question(scores, focus=len(chunk) > 1 and question is not None and question.apart)
        if self.focused:
            self.release_window()  # ...and not the document's last n_local tokens either
        return len(chunk) * (1 + len(scores)), len(chunk) * len(scores)

    def begin_question(self) -> bool:
        """The next forward is the prompt's last chunk (the question). With `consensus` and a
        memory to retrieve from, keep the state so that the chunk can be read a second time.

        Read 1: every layer retrieves its own blocks; the layers from `vote_from` up vote.
        `rewind_question`, read 2: every layer reads the topk most-voted blocks, and so does
        every answer token (voted on by the previous token's upper layers). Lower layers'
        mean queries rarely match what the question asks for; without the block there, the
        upper layers' copy of a value comes out garbled. The cost: the chunk is read twice.
        """
        self.agreed, self._first_votes, self.pinned, self.barred, self.focused = None, None, [], set(), []
        if not self.params.consensus or not self.layers[0].store.count:
            return False
        self._question = self._state(self.device)
        return True

    def question_candidates(self, text: QuestionText | None = None) -> list[int]:
        """The first read's `rerank` most-voted blocks, then the `lexical` best by BM25 for
        the question's words (given `text`), to be scored; none if there is only one block."""
        if self._first_votes is None:
            self._first_votes = dict(self._votes)
        p = self.params
        if not p.rerank or self.layers[0].store.count < 2:
            return []
        ranked = sorted(self._first_votes, key=self._first_votes.__getitem__, reverse=True)[: p.rerank]
        spans = self.block_spans()[: self.layers[0].store.count]
        if text is not None and p.lexical:
            ranked += [b for b in best_blocks(text, spans, p.lexical) if b not in ranked]
        return ranked

    def answer_aid(self) -> tuple[list[tuple[int, int]], float]:
        """The pinned block with a neighbour each side (a sentence may straddle two), as one
        span, and `pinned_boost`; none when nothing is pinned or the boost is off."""
        if not self.pinned or not self.pinned_boost:
            return [], 0.0
        spans = self.block_spans()[: self.layers[0].store.count]
        best = self.pinned[0]
        return [(spans[max(best - 1, 0)][0], spans[min(best + 1, len(spans) - 1)][1])], self.pinned_boost

    def read_spans(self, end: int, most: int = 3) -> list[tuple[int, int]]:
        """[start, end) token positions of what the answer read of a document ending at `end`,
        for citations: the pinned block and its neighbours, else the `most` most-voted blocks;
        and the document's last tokens, which the local window holds (unless `focus` moved it)."""
        count = self.layers[0].store.count
        spans = self.block_spans()[:count]
        if self.pinned:
            best = self.pinned[0]
            read = [spans[b] for b in range(max(best - 1, 0), min(best + 2, count))]
        else:
            votes = self._first_votes or self._votes
            read = [spans[b] for b in sorted(votes, key=votes.__getitem__, reverse=True)[:most] if b < count]
        held = spans[-1][1] if spans else self.params.n_init
        if not self.focused and end > held:
            read.append((held, end))
        return read

    def read_question_with(self, block: int) -> None:
        self._back_to_question()
        self._votes = {block: 1.0}

    def rewind_question(self, scores: dict[int, float] | None = None, focus: bool = False) -> None:
        """Back to the state `begin_question` kept, with the first read's votes in hand and
        the candidates' scores, if any: the best is pinned, those far behind it barred (but
        not its neighbours: a sentence may straddle two blocks). With `focus` (an `ask`
        question) and the best `focus` nats ahead of every other candidate, the best
        and its neighbours are the only blocks read from here on (`read_last_chunk` then moves
        the local window to memory too): the votes' other blocks and the document's last
        tokens are unrelated text that a small reader copies from or describes."""
        self._back_to_question()
        self._question = None
        if self._first_votes is not None:
            self._votes = self._first_votes
        if scores:
            best = max(scores, key=scores.__getitem__)
            near = {best - 1, best + 1}
            stored = sorted(b for b in near if 0 <= b < self.layers[0].store.count)
            self.pinned = [best]
            self.barred = {b for b, s in scores.items()
                           if s < scores[best] - self.rerank_margin and b not in near}
            runner_up = max((s for b, s in scores.items() if b != best), default=None)
            if focus and self.focus and runner_up is not None and scores[best] - runner_up >= self.focus:
                self.focused = [best] + stored

    def _back_to_question(self) -> None:
        state = self._question
        for held in self.layers:
            held.store.truncate(state["blocks"])
            for block in [b for b in held.cache if b >= state["blocks"]]:
                del held.cache[block]
        self._set_state(state)
        self._second_read = True

    def begin(self, positions: torch.Tensor) -> None:
        p = self.params
        t = positions.shape[0]
        if t > p.n_local:
            raise ValueError(f"chunk of {t} tokens is larger than infllm n_local={p.n_local}")
        w = self.window
        positions = positions.to(self.device)
        self.cos, self.sin = self.rope.cos_sin(positions, self.dtype, exact=True)  # local: absolute
        fixed = torch.tensor([p.n_local], device=self.device)
        self.cos_g, self.sin_g = self.rope.cos_sin(fixed, self.dtype)  # global: one fixed position
        idx = torch.arange(w + t, device=self.device)
        self.local_mask = Mask(idx[None, :] <= idx[w:, None]) if t > 1 else None  # (T, W + T) causal
        # Eviction plan for this forward: what leaves the window, and how much of it is init.
        over = max(0, w + t - p.n_local)
        self.to_init = min(over, max(0, p.n_init - self.evicted))
        self.over = over
        self.first_evicted = self._length - w  # absolute position of the window's oldest token
        self.evicted += over
        self.window = w + t - over
        self._length += t
        # Consensus: the last forward's votes choose this one's blocks, while decoding (or on
        # the question's second read), the re-ranked best block first and the barred ones
        # left out; any other forward ends it.
        on = self._second_read or (t == 1 and self.agreed is not None)
        if not on:
            self.pinned, self.barred, self.focused = [], set(), []
        if on and t == 1 and self.agreed and self.decode_hold:
            # Hysteresis: a block the last token read stays unless out-voted by a margin.
            bonus = self.decode_hold * (self.cfg.n_layers - self.first_voter)
            for block in self.agreed:
                self._votes[block] = self._votes.get(block, 0.0) + bonus
        ranked = sorted(self._votes, key=self._votes.__getitem__, reverse=True) if on else []
        if on and self.focused:
            chosen = self.focused
        else:
            chosen = self.pinned + [b for b in ranked if b not in self.barred and b not in self.pinned]
            chosen = chosen[: p.topk]
        self.agreed = sorted(chosen) or None
        self._second_read, self._votes = False, {}
        self._tables = {}

    def attend(self, layer, q, k, v):
        win = self.layers[layer].window
        win.append(rotate(k, self.cos, self.sin), v, room=self.params.n_local)
        lk, lv, _ = win.live()                                   # (1, Hkv, W+T, D)
        q_l = rotate(q, self.cos, self.sin)
        parts = [attention_lse(q_l, lk, lv, self.local_mask)]
        q_g = rotate(q, self.cos_g, self.sin_g)
        gk, gv, slots = self.memory(layer, q_g)
        rk, rv = self.layers[layer].rem_k, self.layers[layer].rem_v
        if self.params.memory_positions == "fixed":
            # The reference: unrotated memory keys, query at n_local = one distance for all.
            parts += [attention_lse(q_g, key, val) for key, val in ((gk, gv), (rk, rv)) if key is not None]
        else:
            parts += self._ordered_memory_parts(layer, q_l, gk, gv, slots, rk, rv)
        out = merge_attention(parts)
        self._update_window(layer, q_l)
        return out

    def _ordered_memory_parts(self, layer, q_l, gk, gv, slots, rk, rv):
        """Memory laid out in its original order right before the window: [init | retrieved
        blocks by id | remainder | window]. Keys are rotated at those virtual positions, so the
        query (at its absolute position) reads a ~(n_init + topk*bs + n_local)-token context
        with intact word order, still inside the trained range."""
        parts = []
        n_rem = 0 if rk is None else rk.shape[2]
        start = self.first_evicted - n_rem  # virtual position just after the retrieved blocks
        if rk is not None:
            cos, sin = self._span_tables(start, self.first_evicted)
            parts.append(attention_lse(q_l, rotate(rk, cos, sin), rv))
        if gk is not None:
            key = (tuple(slots), start)
            held = self.layers[layer].memory_rot
            if held is None or held[0] != key:
                n0, bs = self._n_init_held(layer), self.params.block_size
                cos, sin = self._span_tables(start - n0 - len(slots) * bs, start)
                rank = {block: r for r, block in enumerate(sorted(slots))}  # blocks in text order
                first = torch.tensor([n0 + rank[b] * bs for b in slots], dtype=torch.long, device=self.device)
                rows = torch.cat([torch.arange(n0, device=self.device),
                                  (first[:, None] + torch.arange(bs, device=self.device)).flatten()])
                held = (key, rotate(gk, cos[rows], sin[rows]))
                self.layers[layer].memory_rot = held
            parts.append(attention_lse(q_l, held[1], gv))
        return parts

    def _span_tables(self, first: int, end: int):
        """RoPE tables (exact angles) of positions first..end-1, computed once per forward for
        every layer: the memory's virtual positions in block-id order (each layer picks rows in
        its own slot order), the remainder's, and the evicted tokens'. Per layer, a decode step
        that changes the retrieved set rebuilt ~1k float64 angles in each (10% slower at 32k)."""
        key = (first, end)
        if key not in self._tables:
            positions = torch.arange(first, end, device=self.device)
            self._tables[key] = self.rope.cos_sin(positions, self.dtype, exact=True)
        return self._tables[key]

    def memory(self, layer: int, q_g: torch.Tensor):
        """Init tokens + the retrieved blocks, unrotated: K, V (1, Hkv, G, D) and the block id
        in each slot; (None, None, []) when there is nothing yet.

        Kept per layer as one buffer [init | block slots]; when retrieval changes its mind only
        the slots of blocks that left are overwritten (slot order is free: `fixed` puts every
        memory token at one distance, `ordered` rotates each slot at its block's rank).
        """
        store = self.layers[layer].store
        ids = self.retrieve_blocks(layer, q_g) if store.count else []
        held = self.layers[layer].memory_kv
        if held is not None and len(held[0]) == len(ids):
            slots, gk, gv = held
            wanted = set(ids)
            free = [i for i, block in enumerate(slots) if block not in wanted]
            new = [block for block in ids if block not in set(slots)]
            n0, bs = self._n_init_held(layer), self.params.block_size
            for slot, block, (k, v) in zip(free, new, self.load_blocks(layer, new)):
                gk[0, :, n0 + slot * bs : n0 + (slot + 1) * bs] = k
                gv[0, :, n0 + slot * bs : n0 + (slot + 1) * bs] = v
                slots[slot] = block
            return gk, gv, slots
        parts_k, parts_v = [], []
        if self.layers[layer].init_k is not None:
            parts_k.append(self.layers[layer].init_k[0])
            parts_v.append(self.layers[layer].init_v[0])
        for k, v in self.load_blocks(layer, ids):
            parts_k.append(k)
            parts_v.append(v)
        if not parts_k:
            return None, None, []
        gk, gv = torch.cat(parts_k, dim=1)[None], torch.cat(parts_v, dim=1)[None]  # (1, Hkv, G, D)
        # Init tokens stop changing once blocks exist, so the buffer stays valid from then on.
        slots = list(ids)
        self.layers[layer].memory_kv = (slots, gk, gv) if ids else None
        self.layers[layer].memory_rot = None
        return gk, gv, slots

    def _n_init_held(self, layer: int) -> int:
        return 0 if self.layers[layer].init_k is None else self.layers[layer].init_k.shape[2]

    def load_blocks(self, layer: int, ids: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Blocks `ids` as (k, v) (Hkv, bs, D) on the device, through the LRU block cache."""
        cache = self.layers[layer].cache
        missing = [i for i in ids if i not in cache]
        if missing:
            k, v = self.layers[layer].store.gather(missing, self.device, self.dtype)  # (Hkv, n*bs, D)
            bs = self.params.block_size
            for row, block in enumerate(missing):
                cache[block] = (k[:, row * bs : (row + 1) * bs], v[:, row * bs : (row + 1) * bs])
        for block in ids:
            cache.move_to_end(block)
        while len(cache) > self.params.max_cached_block:
            cache.popitem(last=False)
        return [cache[block] for block in ids]

    def retrieve_blocks(self, layer: int, q_g: torch.Tensor) -> list[int]:
        """Top-k blocks by the chunk's mean global query against representative keys; the
        agreed blocks instead when there are (the layer still votes if it is a voting one)."""
        c = self.cfg
        # Votes count on the question's first read and while an agreed set is in use (not
        # while a re-ranking candidate is tried: those votes would be thrown away).
        trying = self._question is not None and self._first_votes is not None
        voting = not trying and (self._question is not None or self.agreed is not None)
        voter = voting and layer >= self.first_voter
        ids = self.agreed
        if ids is None or voter:
            q_mean = q_g[0].mean(dim=1)  # (Hq, D)
            q_mean = q_mean.view(c.n_kv_heads, c.n_rep, c.head_dim).sum(dim=1)  # (Hkv, D)
            scores = self.layers[layer].store.scores(q_mean)  # (N,)
            k = min(self.params.topk, scores.shape[0])
            ranked = torch.topk(scores, k).indices.tolist()
            if voter:  # one vote per layer; a block's rank breaks ties
                for rank, block in enumerate(ranked):
                    self._votes[block] = self._votes.get(block, 0.0) + 1.0 + (k - rank) / (k * k * c.n_layers)
            ids = sorted(ranked) if ids is None else ids
        self.layers[layer].retrieved = ids
        return ids

    def _update_window(self, layer: int, q_l: torch.Tensor) -> None:
        """Score the window's keys by this forward's queries, then evict what no longer fits.

        A key's score sums, over the forwards it spends in the window, the logit of the mean
        query: the keys local queries attended to most become the block's representatives.
        """
        c = self.cfg
        win = self.layers[layer].window
        lk, _, score = win.live()
        q_mean = q_l[0].mean(dim=1).view(c.n_kv_heads, c.n_rep, c.head_dim).sum(dim=1)  # (Hkv, D)
        score += torch.einsum("hd,htd->ht", q_mean, lk[0]).float()
        if self.over:
            self._evict(layer, self.over, self.first_evicted, self.to_init)

    def _evict(self, layer: int, over: int, first: int, n_init: int) -> None:
        """Move the window's `over` oldest tokens (from absolute position `first`) to memory:
        the first `n_init` of them to the init tokens, the rest to the remainder and blocks."""
        k_rot, v, score = self.layers[layer].window.pop_front(over)
        # Un-rotate: memory keys are stored at position 0.
        cos, sin = self._span_tables(first, first + over)
        k = rotate(k_rot, cos, -sin)
        if n_init:
            self._append_init(layer, k[:, :, :n_init], v[:, :, :n_init])
        if over > n_init:
            self._append_remainder(layer, k[:, :, n_init:], v[:, :, n_init:], score[:, n_init:])

    @torch.inference_mode()
    def release_window(self) -> None:
        """Move the whole local window to memory (`focus`, after a decisive re-ranking): what
        follows reads the document only through the blocks it retrieves, as the rest of it."""
        w = self.window
        if not w:
            return
        first = self._length - w
        n_init = min(w, max(0, self.params.n_init - self.evicted))
        self.evicted += w
        self.window = 0
        for layer in range(len(self.layers)):
            self._evict(layer, w, first, n_init)

    def _append_init(self, layer, k, v):
        if self.layers[layer].init_k is None:
            self.layers[layer].init_k, self.layers[layer].init_v = k, v
        else:
            self.layers[layer].init_k = torch.cat([self.layers[layer].init_k, k], dim=2)
            self.layers[layer].init_v = torch.cat([self.layers[layer].init_v, v], dim=2)
        self.layers[layer].memory_kv = None

    def _append_remainder(self, layer, k, v, score):
        """Add evicted tokens to the remainder and store every full block it now holds."""
        bs = self.params.block_size
        if self.layers[layer].rem_k is not None:
            k = torch.cat([self.layers[layer].rem_k, k], dim=2)
            v = torch.cat([self.layers[layer].rem_v, v], dim=2)
            score = torch.cat([self.layers[layer].rem_score, score], dim=1)
        full = k.shape[2] // bs
        if full:  # every full block in one go: on a GPU, one copy to the host, not one per block
            h, d = k.shape[1], k.shape[3]
            block_k = k[0, :, : full * bs].reshape(h, full, bs, d).transpose(0, 1)  # (n, Hkv, bs, D)
            block_v = v[0, :, : full * bs].reshape(h, full, bs, d).transpose(0, 1)
            top = torch.topk(score[:, : full * bs].reshape(h, full, bs).transpose(0, 1), self.n_reprs, dim=2).indices
            reprs = torch.gather(block_k, 2, top[..., None].expand(-1, -1, -1, d))  # (n, Hkv, r, D)
            self.layers[layer].store.extend(block_k, block_v, reprs)
        rest = full * bs
        if rest < k.shape[2]:
            self.layers[layer].rem_k, self.layers[layer].rem_v, self.layers[layer].rem_score = k[:, :, rest:], v[:, :, rest:], score[:, rest:]
        else:
            self.layers[layer].rem_k = self.layers[layer].rem_v = self.layers[layer].rem_score = None

    def memory_bytes(self) -> int:
        total = 0
        for held in self.layers:
            total += sum(t.numel() * t.element_size() for t in (held.init_k, held.init_v, held.rem_k, held.rem_v)
                         if t is not None)
            total += held.window.nbytes() + held.store.nbytes_ram()
            total += sum(k.numel() * k.element_size() * 2 for k, _ in held.cache.values())
        return total


def existing_parent(path) -> Path:
    """`path`, or its nearest ancestor that exists (a memory folder not made yet)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
