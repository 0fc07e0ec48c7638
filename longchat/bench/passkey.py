"""The passkey task (LM-Infinite, LongLM): find a 5-digit key hidden in repeated filler text.

Completion style, no chat template: the default SmolLM2-135M answers reliably only that way
(in a chat template it tends to describe "a magical key" instead of quoting the number).

    There is an important info hidden inside a lot of irrelevant text. Find it and ...
    The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. ...
    The pass key is 48213. Remember it. 48213 is the pass key.
    The grass is green. ...
    What is the pass key? The pass key is
"""

from __future__ import annotations

import random
import re

from longchat.bench.base import Task, fit_to_length

INSTRUCTION = ("There is an important info hidden inside a lot of irrelevant text. "
               "Find it and memorize it. I will quiz you about the important information there.")
FILLER = ("The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.", "There and back again.")
NEEDLE = "The pass key is {key}. Remember it. {key} is the pass key."
QUESTION = "What is the pass key? The pass key is"


def filler(start: int, count: int) -> str:
    """`count` filler sentences, cycling through FILLER from sentence `start`."""
    return " ".join(FILLER[(start + i) % len(FILLER)] for i in range(count))


def render_passkey(key: int, depth: float, n_sentences: int) -> str:
    """The prompt text with the needle after round(depth * n_sentences) filler sentences."""
    before = round(depth * n_sentences)
    lines = [INSTRUCTION, filler(0, before), NEEDLE.format(key=key), filler(before, n_sentences - before), QUESTION]
    # The needle sits on its own line, as in LM-Infinite's template; empty filler lines vanish
    # at depth 0 and 1 so the needle then touches the instruction or the question.
    return "\n".join(line for line in lines if line)


def build_passkey_prompt(tokenizer, length: int, depth: float, rng: random.Random) -> tuple[list[int], int]:
    """A passkey prompt of at most `length` tokens (short by less than one filler sentence).

    Returns (prompt_ids, key); the key is a 5-digit integer drawn from `rng`.
    """
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must be in [0, 1], got {depth}")
    key = rng.randint(10000, 99999)
    ids, _ = fit_to_length(tokenizer, lambda n: render_passkey(key, depth, n), length, what="passkey prompt")
    return ids, key


def first_integer(text: str) -> int | None:
    """The first run of digits in `text`, as an int; None when there is none."""
    match = re.search(r"\d+", text)
    return int(match.group()) if match else None


def score_passkey(text: str, expected: int) -> bool:
    """Correct when the first integer the model wrote is the key."""
    return first_integer(text) == expected


def split_passkey(text: str) -> tuple[str, str, str, str]:
    """(instruction line, haystack, question line, question) of a passkey prompt."""
    head, rest = text.split("\n", 1)
    body, tail = rest.rsplit("\n", 1)
    return head + "\n", body, "\n" + tail, tail.split("?")[0] + "?"


PASSKEY = Task(
    name="passkey",
    description="A 5-digit pass key hidden in repeated filler text; the first integer answered must match.",
    build_prompt=build_passkey_prompt,
    score=score_passkey,
    parse=first_integer,
    max_new_tokens=8,
    split=split_passkey,
)
