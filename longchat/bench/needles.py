"""The multi-needle task (RULER-style): several key/value needles in natural text, ask one.

    <instruction>
    <narrative prose ...>
    The special magic number for tiger is 4829163.
    <prose ...>
    The special magic number for piano is 7301558.
    ...
    What is the special magic number for piano? The special magic number for piano is

The haystack is varied narrative prose made from sentence templates and word lists (seeded,
so every prompt is reproducible without shipping a corpus); unlike the passkey's repeated
filler, every stretch of it is different, so retrieval cannot key on "the odd sentence out".
The needles sit at evenly spread depths around the asked one, whose depth is the sample's.
Completion style, like the passkey: the bundled 135M model answers reliably that way.
"""

from __future__ import annotations

import random

from longchat.bench.base import Task, fit_to_length
from longchat.bench.passkey import first_integer

N_NEEDLES = 4
INSTRUCTION = ("A special magic number is hidden for each of several names in the long text below. "
               "Memorize them. I will ask you for one of them.")
NEEDLE = "The special magic number for {key} is {value}."
QUESTION = "What is the special magic number for {key}? The special magic number for {key} is"

# Keys are single everyday words: a 135M model matches those reliably at short length, while
# made-up compounds ("amber-falcon") get mixed up with each other even at 2k tokens.
_KEYS = ("apple", "tiger", "piano", "rocket", "castle", "garden", "pepper", "dragon", "silver", "ocean", "yellow",
         "winter", "camera", "forest", "butter", "planet", "hammer", "violet", "pirate", "cookie")

_PEOPLE = ("Mara", "Tomas", "Elena", "the old ferryman", "the schoolteacher", "Jonah", "the miller's daughter",
           "Captain Reyes", "Ada", "the baker", "Felix", "the innkeeper", "Priya", "the night watchman")
_PLACES = ("the harbor", "the market square", "the northern road", "the orchard", "the lighthouse", "the mill",
           "the chapel on the hill", "the train station", "the riverbank", "the library", "the old bridge")
_TIMES = ("In the morning", "By noon", "Late that evening", "Before dawn", "After the storm", "On Sunday",
          "That autumn", "Years later", "At midnight", "During the long winter")
_VERBS = ("walked to", "wrote a letter about", "remembered", "painted", "argued about", "repaired the roof of",
          "sold apples near", "told a story about", "searched", "waited outside", "sang quietly near")
_DETAILS = ("while the wind rose over the water", "as the bells rang twice", "without telling anyone why",
            "though the rain had not stopped", "because the harvest had been poor",
            "and the gulls circled overhead", "with a basket of bread and cheese", "as lamps were lit one by one",
            "while children chased a dog along the fence", "before the ferry left for the islands")


def prose_sentence(rng: random.Random) -> str:
    """One sentence of narrative prose."""
    return (f"{rng.choice(_TIMES)}, {rng.choice(_PEOPLE)} {rng.choice(_VERBS)} {rng.choice(_PLACES)} "
            f"{rng.choice(_DETAILS)}.")


def render_needles(needles: list[tuple[str, int]], positions: list[int], asked: str, sentences: list[str]) -> str:
    """Instruction, prose with needle i after sentence positions[i], the question for `asked`."""
    parts = [INSTRUCTION]
    for i in range(len(sentences) + 1):
        for pos, (key, value) in zip(positions, needles):
            if pos == i:
                parts.append(NEEDLE.format(key=key, value=value))
        if i < len(sentences):
            parts.append(sentences[i])
    return " ".join(parts) + "\n" + QUESTION.format(key=asked)


def build_needles_prompt(tokenizer, length: int, depth: float, rng: random.Random) -> tuple[list[int], int]:
    """A prompt of at most `length` tokens with N_NEEDLES needles; returns (ids, the asked value)."""
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must be in [0, 1], got {depth}")
    names = rng.sample(_KEYS, N_NEEDLES)
    needles = [(name, rng.randint(1_000_000, 9_999_999)) for name in names]
    asked = rng.randrange(N_NEEDLES)
    # The asked needle at `depth`; the others spread evenly over the rest of the text.
    others = [(i + 0.5) / (N_NEEDLES - 1) for i in range(N_NEEDLES - 1)]
    depths = others[:asked] + [depth] + others[asked:]
    seed = rng.random()

    def render(n: int) -> str:
        r = random.Random(seed)  # the same prose for every n, so longer prompts extend shorter ones
        sentences = [prose_sentence(r) for _ in range(n)]
        return render_needles(needles, [round(d * n) for d in depths], needles[asked][0], sentences)

    ids, _ = fit_to_length(tokenizer, render, length, what="needles prompt")
    return ids, needles[asked][1]


def score_needles(text: str, expected: int) -> bool:
    """Correct when the first integer the model wrote is the asked value."""
    return first_integer(text) == expected


def split_needles(text: str) -> tuple[str, str, str, str]:
    """(instruction, haystack, question line, question) of a needles prompt."""
    head = INSTRUCTION + " "
    body, tail = text[len(head):].rsplit("\n", 1)
    return head, body, "\n" + tail, tail.split("?")[0] + "?"


NEEDLES = Task(
    name="needles",
    description=f"{N_NEEDLES} key/value needles in varied narrative prose; ask one, the first integer answered must match.",
    build_prompt=build_needles_prompt,
    score=score_needles,
    parse=first_integer,
    max_new_tokens=12,
    split=split_needles,
)
