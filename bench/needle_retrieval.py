"""Where InfLLM's retrieval loses the multi-needle task: per prompt, which layers retrieve the
block holding the asked needle's value when the answer starts, and what the model answered.

    python bench/needle_retrieval.py --length 8k --samples 10 [--oracle] [--seed 1] [--only 1,3] [--set ...]

--oracle puts the needle's block(s) in place of the weakest retrieved ones in every layer, from
the question's chunk on: the accuracy the model reaches when retrieval is perfect, i.e. the
ceiling that better retrieval can buy. Same prompts as `longchat bench needles` (same --seed).
"""

from __future__ import annotations

import argparse
import re

from longchat.bench.run import build_prompts, parse_lengths
from longchat.bench.tasks import get_task
from longchat.api import open_runner
from longchat.runtime.generate import Sampling


def needle_blocks(tokenizer, prompt: list[int], expected: int, n_init: int, block_size: int) -> list[int]:
    """Memory block ids covering the asked needle's value ("... is 1234567."); -1 = init tokens."""
    text = tokenizer.decode(prompt)
    key = text.split("What is the special magic number for ")[1].split("?")[0]
    return value_blocks(tokenizer, text, key, expected, n_init, block_size)


def value_blocks(tokenizer, text: str, key: str, value: int, n_init: int, block_size: int) -> list[int]:
    needle = f"The special magic number for {key} is {value}."
    at = text.index(needle)
    first = len(tokenizer.encode(text[: at + needle.index(" is ")], add_special_tokens=False))
    last = len(tokenizer.encode(text[: at + len(needle)], add_special_tokens=False))
    return sorted({(pos - n_init) // block_size if pos >= n_init else -1 for pos in range(first, last)})


def other_needles(tokenizer, prompt: list[int], expected: int, n_init: int, block_size: int) -> list[list[int]]:
    """Block ids of each needle that is not the asked one."""
    text = tokenizer.decode(prompt)
    return [value_blocks(tokenizer, text, key, int(value), n_init, block_size)
            for key, value in re.findall(r"special magic number for (\w+) is (\d+)\.", text) if int(value) != expected]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--length", default="8k")
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--oracle", action="store_true")
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    ap.add_argument("--seed", type=int, default=0, help="as `longchat bench --seed`")
    ap.add_argument("--only", default="", help="comma-separated prompt indices to run (default: all)")
    args = ap.parse_args()
    [length] = parse_lengths(args.length)
    runner = open_runner("infllm", overrides=args.overrides)
    tok, engine, strategy = runner.tokenizer, runner.engine, runner.engine.strategy
    p = strategy.params
    retrieve = strategy.retrieve_blocks
    task = get_task("needles")
    correct = 0
    only = {int(i) for i in args.only.split(",") if i}
    for index, (depth, prompt, expected) in enumerate(build_prompts(task, tok, length, args.samples, args.seed)):
        if only and index not in only:
            continue
        blocks = needle_blocks(tok, prompt, expected, p.n_init, p.block_size)
        answer_start = len(prompt) - (engine.final_chunk or 1) + 1  # strategy length inside the last chunk
        at_answer: list[list[int]] = []

        def traced(layer, q_g, blocks=blocks, at_answer=at_answer, answer_start=answer_start):
            ids = retrieve(layer, q_g)
            stored = min(blocks) >= 0 and max(blocks) < strategy.layers[layer].store.count
            if strategy.length >= answer_start and args.oracle and stored:
                kept = [b for b in ids if b not in blocks][: p.topk - len(blocks)]
                ids = sorted(kept + blocks)
                strategy.layers[layer].retrieved = ids
            if strategy.length == len(prompt):  # the question's last (or only) read counts
                if layer == 0:
                    at_answer.clear()
                at_answer.append(ids)
            return ids

        strategy.retrieve_blocks = traced
        engine.reset()
        text = tok.decode(list(engine.generate(prompt, Sampling(max_new_tokens=task.max_new_tokens))))
        strategy.retrieve_blocks = retrieve
        ok = task.score(text, expected)
        correct += ok
        missed = [layer for layer, ids in enumerate(at_answer) if not set(blocks) <= set(ids)]
        in_memory = min(blocks) >= 0 and max(blocks) < strategy.layers[0].store.count
        where = "in init/window/remainder" if not in_memory else \
            f"retrieved in {len(at_answer) - len(missed)}/{len(at_answer)} layers, missed in {missed}"
        others = [sum(set(b) <= set(ids) for ids in at_answer)
                  for b in other_needles(tok, prompt, expected, p.n_init, p.block_size)]
        where += f"; the other needles in {others} layers"
        print(f"#{index} depth {depth:.2f} blocks {blocks} {'ok' if ok else 'FAIL'} answer {text.strip()[:20]!r} "
              f"(expected {expected}); {where}", flush=True)
    print(f"{'oracle' if args.oracle else 'retrieval'} {args.overrides}: {correct}/{len(only) or args.samples}")


if __name__ == "__main__":
    main()
