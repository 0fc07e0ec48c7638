"""The real default model through our runtime (the session's loaded one): it finds a passkey in
a short haystack, and a chat's second turn reuses the first's cache."""

from __future__ import annotations

import re

from longchat.api import open_runner
from longchat.runtime.generate import Sampling

FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "


def passkey_prompt(key: int, before: int, after: int) -> str:
    return ("There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. "
            "I will quiz you about the important information there.\n" + FILLER * before
            + f"The pass key is {key}. Remember it. {key} is the pass key. " + FILLER * after
            + "\nWhat is the pass key? The pass key is")


def test_smollm2_finds_a_passkey(home, shared_model):
    runner = open_runner("full", loaded=shared_model)
    found = []
    for key, before, after in ((68142, 10, 30), (30917, 25, 15)):  # ~900 tokens each
        ids = runner.tokenizer.encode(passkey_prompt(key, before, after))
        runner.engine.reset()
        text = runner.engine.generate_text(ids, Sampling(max_new_tokens=8))
        match = re.search(r"\d+", text)
        found.append(int(match.group()) if match else None)
    assert found == [68142, 30917]


def test_chat_turns_reuse_the_cache(home, shared_model):
    """A second turn reads only what follows the cached prefix, and answers exactly as a fresh
    read of the whole prompt does."""
    runner = open_runner("full", loaded=shared_model)
    from longchat.prompts import chat_ids

    greedy = Sampling(max_new_tokens=6)
    messages = [{"role": "user", "content": "Name a colour."}]
    first = runner.engine.generate_text(chat_ids(runner.tokenizer, messages), greedy)
    messages += [{"role": "assistant", "content": first}, {"role": "user", "content": "Another one?"}]
    second = chat_ids(runner.tokenizer, messages)
    cached = list(runner.engine.cached_ids)
    common = next((i for i, (a, b) in enumerate(zip(cached, second)) if a != b), min(len(cached), len(second)))
    reply = runner.engine.generate_text(second, greedy)
    assert runner.engine.stats.reused_tokens == min(common, len(second) - 1) > 20
    runner.engine.reset()
    assert runner.engine.generate_text(second, greedy) == reply and runner.engine.stats.reused_tokens == 0
