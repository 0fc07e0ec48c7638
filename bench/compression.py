"""Prompt compression figures: is the rate honoured from 300 to 50k tokens, and how fast is it.

    python bench/compression.py OUT_DIR [--sizes 300,1000,4000,16000,50000] [--rates 0.25,0.5]

Input: real text from this repository (README, the design notes when present, then the
Python sources), cut to each size in tokens; one document per size, with the question
"How does the InfLLM block memory choose which blocks to read?" for longllmlingua and none
for llmlingua. Writes OUT_DIR/rates.json and prints one line per run:
size, method, requested rate, achieved rate, tokens in/out, seconds, tokens/s.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from longchat import compress
from longchat.api import open_runner

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "How does the InfLLM block memory choose which blocks to read?"


def corpus() -> str:
    files = [ROOT / "README.md", ROOT.parent / "shared" / "DESIGN.md"]
    files += sorted((ROOT / "longchat").rglob("*.py"))
    return "\n\n".join(f.read_text(encoding="utf-8") for f in files if f.is_file())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--sizes", default="300,1000,4000,16000,50000")
    ap.add_argument("--rates", default="0.25,0.5")
    ap.add_argument("--methods", default="longllmlingua,llmlingua")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runner = open_runner("full")
    compressor = compress.compressor_for(runner)
    ids = runner.encode(corpus())
    records = []
    for size in [int(s) for s in args.sizes.split(",")]:
        if size > len(ids):
            print(f"skip {size}: the corpus has {len(ids)} tokens")
            continue
        text = runner.tokenizer.decode(ids[:size])
        for method in args.methods.split(","):
            for rate in [float(r) for r in args.rates.split(",")]:
                start = time.perf_counter()
                r = compressor.compress([text], question=QUESTION if method == "longllmlingua" else None,
                                        rate=rate, method=method)
                seconds = time.perf_counter() - start
                rec = {**r.as_dict(), "size": size, "rate": rate, "tok_s": round(r.tokens_in / seconds, 1),
                       "error": round(r.ratio / rate - 1, 4)}
                records.append(rec)
                print(f"{size:>6} {method:<13} rate {rate:.2f} -> {r.ratio:.3f} ({rec['error']:+.1%}) "
                      f"{r.tokens_in:,} -> {r.tokens_out:,} tokens in {seconds:.1f} s ({rec['tok_s']:.0f} tok/s)",
                      flush=True)
    (out / "rates.json").write_text(json.dumps(records, indent=2) + "\n")
    worst = max(abs(r["error"]) for r in records)
    print(f"worst relative rate error: {worst:.1%} over {len(records)} runs")


if __name__ == "__main__":
    main()
