"""What a benchmark task is: a prompt builder and a scorer, nothing model-specific."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable

from longchat.errors import InputError

# build_prompt(tokenizer, length, depth, rng) -> (prompt_ids, expected)
BuildPrompt = Callable[[Any, int, float, random.Random], "tuple[list[int], Any]"]


@dataclass(frozen=True)
class Task:
    """A retrieval task over a synthetic haystack, runnable with any tokenizer and model.

    `build_prompt` makes a prompt of at most `length` tokens (and close to it) with the answer
    placed at `depth` (0 = start of the haystack, 1 = just before the question); `expected` must
    be JSON-serialisable. `score(text, expected)` judges the generated text; `parse(text)` is what
    the model answered, for reports (`None` when it answered nothing usable).
    """

    name: str
    description: str
    build_prompt: BuildPrompt
    score: Callable[[str, Any], bool]
    parse: Callable[[str], Any]
    max_new_tokens: int = 8
    # split(prompt_text) -> (head, context, tail, question): what compression may shrink (the
    # context) and what it must keep; the question guides question-aware compression.
    split: Callable[[str], "tuple[str, str, str, str]"] | None = None


def encode_prompt(tokenizer, text: str) -> list[int]:
    """Token ids of a raw completion prompt, with the model's own BOS if it uses one."""
    return tokenizer(text)["input_ids"]


def fit_to_length(tokenizer, render: Callable[[int], str], length: int, *, what: str = "prompt") -> tuple[list[int], int]:
    """The largest `n` whose `render(n)` (n filler units) tokenises to at most `length` tokens.

    Returns (ids, n). The text is tokenised whole, so the ids are what the model would get from
    the text itself; the count is reached by a few secant steps, then unit steps, because the
    token cost of a filler unit is near constant but not exact across tokenizers.
    """
    ids = encode_prompt(tokenizer, render(0))
    if len(ids) > length:
        raise InputError(f"a {what} needs at least {len(ids)} tokens, more than {length}")
    probe = 100
    per_unit = max((len(encode_prompt(tokenizer, render(probe))) - len(ids)) / probe, 1e-3)
    n = 0
    for _ in range(6):
        gap = length - len(ids)
        step = int(gap / per_unit)
        if step == 0:
            break
        n = max(n + step, 0)
        ids = encode_prompt(tokenizer, render(n))
    while len(ids) > length and n > 0:
        n -= 1
        ids = encode_prompt(tokenizer, render(n))
    while True:
        more = encode_prompt(tokenizer, render(n + 1))
        if len(more) > length:
            return ids, n
        ids, n = more, n + 1
