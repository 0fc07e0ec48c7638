"""Decode speed of `infllm` answers and how often the retrieved set changes, A/B on the states
`needle_replay.py build` kept (each prompt is read once; every variant answers it).

    python bench/decode_replay.py --dir bench-out/states --seeds 0,1 \
        --variants "decode_hold=0" "decode_hold=0.25" "rerank=0,decode_hold=0"

A variant is infllm parameters or class constants (`decode_hold`), comma-separated, plus `kernel=bmm` (retrieval scores by one
batched matmul over all heads, the kernel before the per-head products). The variants take turns going first on
successive prompts (the first to read a prompt's blocks from disk pays for it). Per variant:
the median decode tokens/s, the retrieved-set changes per decode step, and the blocks loaded
into the device cache per step (summed over layers).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from needle_replay import prompts, restore_prompt  # noqa: E402

from longchat.bench.run import parse_lengths  # noqa: E402
from longchat.context.infllm import InfLLM, blocks  # noqa: E402
from longchat.api import open_runner  # noqa: E402
from longchat.runtime.generate import Sampling  # noqa: E402
from longchat.settings import parse_assignment  # noqa: E402


class Counter:
    """Counts retrieved-set changes and block loads during decode steps."""

    def __init__(self, strategy):
        self.strategy, self.decoding = strategy, False
        self.changes = self.loads = 0
        self.last = None
        begin, load = strategy.begin, strategy.load_blocks

        def counted_begin(positions):
            begin(positions)
            if self.decoding and positions.shape[0] == 1:
                self.changes += self.last is not None and strategy.agreed != self.last
                self.last = strategy.agreed

        def counted_load(layer, ids):
            if self.decoding:
                self.loads += sum(block not in strategy.layers[layer].cache for block in ids)
            return load(layer, ids)
        strategy.begin, strategy.load_blocks = counted_begin, counted_load

    def start(self) -> None:
        self.decoding, self.changes, self.loads, self.last = False, 0, 0, None


KERNELS = {"gemv": blocks.head_logits, "bmm": lambda keys, q: torch.bmm(keys, q[:, :, None])[..., 0]}


def parse_variant(text: str, params) -> dict:
    out = {"kernel": "gemv"}
    for item in filter(None, text.split(",")):
        (_, key), value = parse_assignment(f"infllm.{item}")
        if key == "kernel" and value not in KERNELS:
            raise SystemExit(f"error: kernel must be one of: {', '.join(KERNELS)}")
        if key != "kernel" and not hasattr(params, key) and not hasattr(InfLLM, key):
            raise SystemExit(f"error: infllm has no parameter or constant {key!r}")
        out[key] = value
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--length", default="32k")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--dir", type=Path, default=Path("bench-out/states"))
    ap.add_argument("--new-tokens", type=int, default=24)
    ap.add_argument("--variants", nargs="+", default=["decode_hold=0", "decode_hold=0.25"])
    args = ap.parse_args()
    [length] = parse_lengths(args.length)
    runner = open_runner("infllm")
    engine, strategy = runner.engine, runner.engine.strategy
    base = dict(vars(strategy.params))
    variants = {text: parse_variant(text, strategy.params) for text in args.variants}
    counter = Counter(strategy)
    results = {text: {"rate": [], "changes": [], "loads": []} for text in variants}
    seeds = [int(s) for s in args.seeds.split(",")]
    for i, (name, _, prompt, _) in enumerate(prompts(runner, length, seeds, args.samples)):
        if not (args.dir / name / "state.pt").exists():
            raise SystemExit(f"error: no state for {name} in {args.dir} (run needle_replay.py build first)")
        order = list(variants)[i % len(variants):] + list(variants)[: i % len(variants)]
        for text in order:
            for key, value in (base | variants[text]).items():
                if key == "kernel":
                    blocks.head_logits = KERNELS[value]
                elif hasattr(strategy.params, key):
                    setattr(strategy.params, key, value)
                else:  # a constant of the class (`decode_hold`), set on this instance
                    setattr(strategy, key, value)
            restore_prompt(engine, args.dir / name, prompt)
            counter.start()
            # stop_on_repeat off: every decode step asked for is timed, whatever the reply says
            tokens = engine.generate(prompt, Sampling(max_new_tokens=args.new_tokens, stop_on_repeat=0))
            out = [next(tokens)]  # from prefill
            counter.decoding = True
            out += list(tokens)
            steps = max(1, len(out) - 1)
            r = results[text]
            r["rate"].append(engine.stats.decode_tok_s)
            r["changes"].append(counter.changes / steps)
            r["loads"].append(counter.loads / steps)
            print(f"{name} [{text}] decode {engine.stats.decode_tok_s:.2f} tok/s, {len(out)} tokens, "
                  f"{counter.changes} set changes, {counter.loads} block loads", flush=True)
    for text, r in results.items():
        print(f"[{text}] median decode {statistics.median(r['rate']):.2f} tok/s; per step: "
              f"{statistics.mean(r['changes']):.2f} set changes, {statistics.mean(r['loads']):.1f} block loads")


if __name__ == "__main__":
    main()
