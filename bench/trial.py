"""The settings trial's table: each variant of a profile against the profile itself, per seed and length.

    python bench/trial.py bench-out/i40/base-31 bench-out/i40/base-32

Reads the `fresh.jsonl` answers `bench/facts.py` wrote under each folder (one folder per seed).
A variant is a spec with settings after the colon (`infllm:strategy.focus=0`); its baseline is
the spec before the colon. Cells are "variant / baseline" correct answers, shared-word and
paraphrased questions together, on the prompts both answered. The rule (docs/settings.md): a
setting stays only where the baseline wins by more than one prompt at a length on both seeds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def load(folder: Path, split: str) -> tuple[str, dict]:
    rows = {}
    for line in (folder / f"{split}.jsonl").read_text().splitlines():
        r = json.loads(line)
        rows[r["profile"], r["length"], r["sample"], r["question"]] = r["correct"]
    return folder.name, rows


def compare(runs: list[tuple[str, dict]]) -> str:
    specs = sorted({k[0] for _, rows in runs for k in rows if ":" in k[0]})
    lengths = sorted({k[1] for _, rows in runs for k in rows})
    head = "| variant | " + " | ".join(f"{name} {n // 1024}k" for name, _ in runs for n in lengths) + " |"
    lines = [head, "|" + " --- |" * (1 + len(runs) * len(lengths))]
    for spec in specs:
        base = spec.split(":")[0]
        cells = []
        for _, rows in runs:
            for n in lengths:
                pairs = [(ok, rows[(base, *k[1:])]) for k, ok in rows.items()
                         if k[0] == spec and k[1] == n and (base, *k[1:]) in rows]
                cells.append(f"{sum(a for a, _ in pairs)} / {sum(b for _, b in pairs)} of {len(pairs)}"
                             if pairs else "")
        lines.append(f"| `{spec}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--split", default="fresh")
    args = parser.parse_args()
    print(compare([load(f, args.split) for f in args.folders]))


if __name__ == "__main__":
    main()
