"""Two builds of longchat on the same `longchat bench` run, taking turns: same answers? same speed?

    python bench/ab.py --old /work/old/.venv/bin/longchat --new .venv/bin/longchat --rounds 3 \
        -- bench passkey -p infllm --lengths 8k --samples 1

Each round runs the old build, then the new one (the order alternates every round, so neither
always runs on a cooler machine). Prints, per length, the median prefill and decode tok/s of
each build and new/old, and whether every sample's generated token ids are identical.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def run(binary: str, args: list[str], out: Path) -> dict:
    subprocess.run([binary, *args, "--json", str(out)], check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())["runs"][0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", required=True, help="the old build's `longchat` executable")
    parser.add_argument("--new", required=True, help="the new build's `longchat` executable")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("args", nargs=argparse.REMAINDER, help="-- then the `longchat bench ...` arguments")
    opts = parser.parse_args(argv)
    args = [a for a in opts.args if a != "--"] if opts.args[:1] == ["--"] else opts.args
    runs: dict[str, list[dict]] = {"old": [], "new": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(opts.rounds):
            order = ("old", "new") if r % 2 == 0 else ("new", "old")
            for name in order:
                got = run(getattr(opts, name), args, Path(tmp) / f"{name}-{r}.json")
                runs[name].append(got)
                for row in got["lengths"]:
                    print(f"round {r + 1} {name}: {row['length']:,} tokens, prefill {row.get('prefill_tok_s')} tok/s, "
                          f"decode {row.get('decode_tok_s')} tok/s, {row.get('correct')}/{row.get('total')}",
                          file=sys.stderr, flush=True)
    print("| length | build | prefill tok/s (median) | decode tok/s (median) | correct |")
    print("| --- | --- | --- | --- | --- |")
    lengths = [row["length"] for row in runs["new"][0]["lengths"]]
    for length in lengths:
        med = {}
        for name in ("old", "new"):
            rows = [row for run_ in runs[name] for row in run_["lengths"] if row["length"] == length]
            med[name] = (statistics.median(r["prefill_tok_s"] for r in rows),
                         statistics.median(r["decode_tok_s"] for r in rows))
            print(f"| {length:,} | {name} | {med[name][0]:.1f} | {med[name][1]:.2f} | "
                  f"{rows[0]['correct']}/{rows[0]['total']} |")
        print(f"| {length:,} | new/old | {med['new'][0] / med['old'][0]:.2f} | {med['new'][1] / med['old'][1]:.2f} | |")
    same = [a["token_ids"] == b["token_ids"] for a, b in zip(runs["old"][0]["samples"], runs["new"][0]["samples"])]
    print(f"\nidentical generated tokens: {sum(same)}/{len(same)} samples")
    return 0 if all(same) else 1


if __name__ == "__main__":
    sys.exit(main())
