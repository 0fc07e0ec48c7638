"""The protocol every context strategy implements (`context.registry` finds them by name).

The decoder hands a strategy *pre-RoPE* queries and keys; the strategy decides where each one
sits (which positions to rotate at), what to keep, and how to attend. One file per strategy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch

from longchat.context.kv import kv_format
from longchat.settings import build
from longchat.runtime.config import ModelConfig
from longchat.runtime.rope import Rope


@dataclass(frozen=True)
class Question:
    """What a caller knows about the question at the end of the prompt it hands the engine."""

    text: str                             # the user's question, as text
    apart: bool = False                   # asked about a document read before it (`ask`),
                                          # not the next turn of a conversation


@dataclass
class QuestionText:
    """The prompt as text, for strategies that also retrieve by words (built by the engine and
    given to `ReadsQuestion.read_last_chunk`)."""

    ids: list[int]                        # every token id before the question's last chunk
    query: str                            # the user's question (else the last chunk's text)
    decode: Callable[[list[list[int]]], list[str]]  # token ids -> text, many spans at once
    apart: bool = False                   # as `Question.apart`


@dataclass
class StrategyParams:
    """Base for a strategy's typed parameters (the `[strategy]` table of a profile)."""

    def validate(self, where: str) -> None:
        """Raise ConfigError naming the key when a value is out of range."""

    def check_context(self, context, where: str) -> None:
        """Checks that involve the profile's [context] table (e.g. chunk vs window sizes)."""


class ContextStrategy:
    """Holds the attention state of one sequence (batch size 1) across forward calls.

    Call order per forward: `begin(positions)` once, then `attend(layer, q, k, v)` for every
    layer in order. `positions` are absolute token indices in the sequence (T,).
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type[StrategyParams]] = StrategyParams
    # Other strategies' `--set` sections whose keys this one takes in its [strategy] table
    # (`auto` runs full and infllm, so `--set infllm.topk=4` reaches it).
    runs: ClassVar[tuple[str, ...]] = ()

    def __init__(self, cfg: ModelConfig, rope: Rope, params: StrategyParams | None = None, *,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, kv: str = "auto"):
        self.cfg = cfg
        self.rope = rope
        self.params = params if params is not None else self.Params()
        self.device = torch.device(device)
        self.dtype = dtype
        self.kv = kv_format(kv, dtype, self.device)  # what `full` holds its cache as (context.kv)
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next token is position 0."""
        raise NotImplementedError  # abstract: every strategy defines its state

    _length: int = 0  # tokens consumed so far; strategies keep it in step

    @property
    def length(self) -> int:
        """Tokens consumed so far."""
        return self._length

    def begin(self, positions: torch.Tensor) -> None:
        """Prepare for a forward over `positions` (T,): rotation tables, masks, retrieval."""
        raise NotImplementedError  # abstract

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q (B, Hq, T, D), k and v (B, Hkv, T, D), all before RoPE -> output (B, Hq, T, D)."""
        raise NotImplementedError  # abstract

    def prepare(self, n_tokens: int) -> str | None:
        """Called before a prompt whose prompt + reply is `n_tokens` long is run. A strategy
        that adapts to the length (`auto`) may change itself here (dropping its state) and
        return a line for the user saying what it chose; the rest return None."""
        return None

    def memory_strategy(self, n_tokens: int) -> tuple[ContextStrategy, str | None] | None:
        """For encode-once memories (`longchat.memory`): the strategy that writes and reads
        them, switched to for a prompt + reply of `n_tokens` if need be, and a line for the
        user if it switched; None = this strategy keeps no memory."""
        return None

    def memory_params(self) -> StrategyParams | None:
        """The parameters a memory would be encoded with (switching nothing); None as above."""
        return None

    @property
    def reader(self) -> ContextStrategy:
        """The strategy that reads the prompt `prepare` was last called for: this one, or the
        one a strategy that picks per prompt (`auto`) chose. The engine runs the model through it."""
        return self

    def truncate(self, n_tokens: int) -> bool:
        """Rewind to the first `n_tokens` tokens if this strategy can; False means reset instead."""
        return False

    def memory_bytes(self) -> int:
        """Bytes held for the attention state (for stats)."""
        return 0

    def offers_native(self) -> bool:
        """Whether `native_caches` gives buffers (a one-token step can run in C)."""
        return False

    def native_caches(self) -> list[tuple[torch.Tensor, torch.Tensor, int]] | None:
        """For a one-token step in C (`runtime.native`), after `begin`: each layer's key and value
        buffers (1, Hkv, capacity, D), bf16, with room for one more token, and the tokens they
        hold. The step rotates with `self.cos`/`self.sin` and writes the token at that index.
        None (the default): this strategy attends in torch."""
        return None

    def native_appended(self, t: int) -> None:
        """The step wrote `t` more tokens into the buffers `native_caches` gave."""
        raise NotImplementedError  # only for strategies that give buffers


class ReadsQuestion:
    """The hooks of a strategy that chooses what to attend to by the question (InfLLM's memory
    retrieval). The engine calls them only on a reader that has them."""

    def read_last_chunk(self, chunk: list[int], read_aside: Callable[[list[int], str], torch.Tensor | None],
                        question: QuestionText | None) -> tuple[int, int]:
        """Called just before the prompt's last chunk (mostly the question) is read for real.
        The strategy may first read it aside, `read_aside(ids, logits)` as `forward` takes them,
        to choose what it will attend to, and must then put its state back as it was.
        `question`: the prompt's ids and the question as text, for retrieval by words (None
        without a tokenizer). Returns (tokens read aside, rows of them projected to the vocabulary)."""
        raise NotImplementedError

    def answer_aid(self) -> tuple[list[tuple[int, int]], float]:
        """After a prompt is read: the [start, end) token spans its question read most closely
        and the logit boost an `ask` answer gets for running on as they do (`CopyGuard`'s
        favoured texts); ([], 0.0) = none."""
        raise NotImplementedError


STRATEGIES: dict[str, type[ContextStrategy]] = {}


def register_strategy(cls: type[ContextStrategy]) -> type[ContextStrategy]:
    """Class decorator: make a strategy available by its `name`."""
    STRATEGIES[cls.name] = cls
    return cls


def parse_params(cls: type[ContextStrategy], values: dict[str, Any], where: str) -> StrategyParams:
    """Build a strategy's Params from a profile table; unknown keys and bad types name the key."""
    return build(cls.Params, values, f"{where} [strategy] ({cls.name})")
