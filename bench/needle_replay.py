"""Fast what-ifs for InfLLM's answer to the needles task: read each prompt once, replay the
question many times.

    python bench/needle_replay.py build --length 32k --seeds 0,1,2 --dir bench-out/states
    python bench/needle_replay.py run   --length 32k --seeds 0,1,2 --dir bench-out/states --variant base

`build` reads each needles prompt (the same prompts as `longchat bench needles --seed S`) up to
its last chunk with `infllm` and keeps the encoded memory in files plus a snapshot of the rest
of the state (~790 MB per 32k prompt; ~80 s each on a 2-core CPU). `run` restores each state and
lets the engine read only the question and the answer (~3 s per prompt instead of ~90), under a
variant; it prints, per prompt, the blocks holding the asked needle and the other needles, the
answer, and the vote ranking the answer was read with. Variants:
  base              the profile as it is (`--set infllm.x=y` applies as usual; the default
                    re-ranks, `--set infllm.rerank=0` is consensus alone)
  votes-order       the agreed blocks laid out by votes, most-voted nearest the window
                    (runs of consecutive blocks stay together, in text order)
  oracle-exclusive  the agreed set without the other needles' blocks (and with the asked
                    one's): what the reader does when retrieval tells the needles apart
  oracle-nearest    the agreed set as voted, the asked needle's block(s) nearest the window
"""

from __future__ import annotations

import argparse
import sys
import time
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from needle_retrieval import needle_blocks, other_needles  # noqa: E402

from longchat.bench.run import build_prompts, parse_lengths  # noqa: E402
from longchat.bench.tasks import get_task  # noqa: E402
from longchat.api import open_runner  # noqa: E402
from longchat.runtime.generate import Sampling  # noqa: E402


def prompts(runner, length: int, seeds: list[int], samples: int):
    task = get_task("needles")
    for seed in seeds:
        for index, (depth, prompt, expected) in enumerate(build_prompts(task, runner.tokenizer, length, samples, seed)):
            yield f"s{seed}_{index}", depth, prompt, expected


def build(args, length: int) -> None:
    runner = open_runner("infllm", overrides=["infllm.consensus=false"])
    engine, strategy = runner.engine, runner.engine.strategy
    for name, _, prompt, _ in prompts(runner, length, args.seeds, args.samples):
        where = args.dir / name
        if (where / "state.pt").exists():
            continue
        where.mkdir(parents=True, exist_ok=True)
        start = time.time()
        engine.reset()
        strategy.persist(where)
        bounds = engine.chunk_bounds(len(prompt))[:-1]  # every chunk but the question's
        for i, j in bounds:
            engine._forward(prompt[i:j], "none")
        strategy.sync()
        torch.save({"state": strategy.snapshot(), "body": bounds[-1][1]}, where / "state.pt")
        print(f"built {name} in {time.time() - start:.0f}s", flush=True)


# -- variants: each patches one InfLLM instance -------------------------------------------

def _with_votes(strategy, after_begin) -> None:
    """Call after_begin(strategy, votes) after each `begin`, with the votes it chose by; keep
    the ranking the question's second read used in `strategy.ranking`."""
    begin = strategy.begin

    def patched(self, positions):
        votes, second = dict(self._votes), self._second_read
        begin(positions)
        if second:
            self.ranking = [(b, round(v, 1)) for b, v in sorted(votes.items(), key=lambda kv: -kv[1])[:10]]
        after_begin(self, votes)
    strategy.begin = types.MethodType(patched, strategy)


def _ordered_by(strategy, order) -> None:
    """Lay the agreed blocks out in order(strategy, votes) (last = nearest the window)."""
    layout = strategy._ordered_memory_parts

    def after_begin(self, votes):
        self.layout_order = order(self, votes) if self.agreed else None
    _with_votes(strategy, after_begin)

    def parts(self, layer, q_l, gk, gv, slots, rk, rv):
        wanted = self.layout_order
        if gk is None or not wanted or set(wanted) != set(slots):
            return layout(layer, q_l, gk, gv, slots, rk, rv)
        # Relabel slots so that sorting them gives the wanted order, then lay out as usual.
        label = {block: rank for rank, block in enumerate(wanted)}
        self.layers[layer].memory_rot = None  # keyed by slot ids, and labels 0..k-1 repeat across sets
        return layout(layer, q_l, gk, gv, [label[b] for b in slots], rk, rv)
    strategy.layout_order = None
    strategy._ordered_memory_parts = types.MethodType(parts, strategy)


def _runs_by_votes(strategy, votes) -> list[int]:
    runs: list[list[int]] = []
    for block in sorted(strategy.agreed):
        if runs and block == runs[-1][-1] + 1:
            runs[-1].append(block)
        else:
            runs.append([block])
    runs.sort(key=lambda run: max(votes.get(b, 0) for b in run))
    return [b for run in runs for b in run]


def _exclusive(strategy) -> None:
    def after_begin(self, votes):
        if not self.agreed:
            return
        keep = [b for b in self.needle if 0 <= b < self.layers[0].store.count]
        for block in sorted(votes, key=lambda b: -votes[b]):
            if len(keep) < self.params.topk and block not in keep and block not in self.others:
                keep.append(block)
        self.agreed = sorted(keep)
    _with_votes(strategy, after_begin)


VARIANTS = {
    "base": lambda s: _with_votes(s, lambda self, votes: None),
    "votes-order": lambda s: _ordered_by(s, _runs_by_votes),
    "oracle-exclusive": _exclusive,
    "oracle-nearest": lambda s: _ordered_by(s, lambda self, votes: sorted(self.agreed, key=lambda b: (b in self.needle, b))),
}


def restore_prompt(engine, where: Path, prompt: list[int]) -> None:
    """Put the engine where `build` left this prompt: all of it read but the question."""
    saved = torch.load(where / "state.pt")
    engine.strategy.restore(saved["state"], where)
    engine.cached_ids = list(prompt[: saved["body"]])


def run(args, length: int) -> None:
    runner = open_runner("infllm", overrides=args.overrides)
    engine, strategy = runner.engine, runner.engine.strategy
    tok, p, task = runner.tokenizer, strategy.params, get_task("needles")
    VARIANTS[args.variant](strategy)
    correct = total = 0
    for name, depth, prompt, expected in prompts(runner, length, args.seeds, args.samples):
        restore_prompt(engine, args.dir / name, prompt)
        strategy.needle = needle_blocks(tok, prompt, expected, p.n_init, p.block_size)
        others = other_needles(tok, prompt, expected, p.n_init, p.block_size)
        strategy.others = {b for blocks in others for b in blocks}
        strategy.ranking = None
        text = tok.decode(list(engine.generate(prompt, Sampling(max_new_tokens=task.max_new_tokens))))
        ok = task.score(text, expected)
        correct, total = correct + ok, total + 1
        print(f"{name} depth {depth:.2f} needle {strategy.needle} others {others} {'ok  ' if ok else 'FAIL'} "
              f"{text.strip()[:12]!r} (expected {expected}); votes {strategy.ranking}", flush=True)
    print(f"{args.variant} {args.overrides}: {correct}/{total}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=["build", "run"])
    ap.add_argument("--length", default="32k")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--dir", type=Path, default=Path("bench-out/states"))
    ap.add_argument("--variant", choices=sorted(VARIANTS), default="base")
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    args = ap.parse_args()
    args.seeds = [int(s) for s in args.seeds.split(",")]
    [length] = parse_lengths(args.length)
    (build if args.command == "build" else run)(args, length)


if __name__ == "__main__":
    main()
