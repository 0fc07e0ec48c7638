"""Encode once, ask many times: the encode-once figures, measured end to end through the CLI.

    python bench/memories.py OUT_DIR [--sizes 16k,64k,256k] [--kills 20]

Each step is a fresh `longchat` process (model load included), in a private LONGCHAT_HOME
under OUT_DIR, on the bundled model. Run nothing else meanwhile: 2 cores are easily disturbed.
Prints a table and writes OUT_DIR/memories.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from longchat.bench.needles import prose_sentence

FACT = "The museum opened in 1897. Its first curator was Helena Marsh. The secret code word of the museum is PELICAN."
QUESTION = "What is the secret code word of the museum?"


def make_doc(path: Path, tokens: int, seed: int = 7) -> Path:
    rng = random.Random(seed)
    n = max(20, tokens // 19)  # ~19 tokens per sentence with the bundled tokenizer
    prose = [prose_sentence(rng) for _ in range(n)]
    prose.insert(n // 2, FACT)
    path.write_text(" ".join(prose) + "\n")
    return path


def longchat(env, *args, timeout=3600):
    start = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "longchat", *args], env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - start
    if p.returncode != 0:
        raise SystemExit(f"longchat {' '.join(args)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return p, wall


def stats_of(p) -> dict:
    return json.loads(p.stderr.strip().splitlines()[-1])


def parse_size(s: str) -> int:
    return int(float(s[:-1]) * 1024) if s.lower().endswith("k") else int(s)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--sizes", default="16k,64k,256k")
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--kill-doc", default="4k")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "LONGCHAT_HOME": str(a.out / "home"), "LONGCHAT_CACHE_MAX": "100GB"}
    sizes = [parse_size(s) for s in a.sizes.split(",")]
    report: dict = {"sizes": {}, "kills": {}}
    longchat(env, "ask", str(make_doc(a.out / "warm.txt", 200)), "hi", "-n", "2")  # converts the model once

    for size in sizes:
        doc = make_doc(a.out / f"doc{size // 1024}k.txt", size)
        row: dict = {}
        if size == 65536:
            # The ask cache: first question (encodes), second (reads the question only), no cache.
            first, w1 = longchat(env, "ask", str(doc), QUESTION, "-n", "24", "--stats")
            second, w2 = longchat(env, "ask", str(doc), QUESTION, "-n", "24", "--stats")
            plain, w3 = longchat(env, "ask", str(doc), QUESTION, "-n", "24", "--stats", "--no-cache")
            row.update(first_s=round(w1, 1), second_s=round(w2, 1), speedup=round(w1 / w2, 1),
                       answers=[first.stdout.strip(), second.stdout.strip(), plain.stdout.strip()],
                       same_answer=first.stdout == second.stdout == plain.stdout,
                       ask_encode_tok_s=stats_of(plain)["encode_tok_s"], cache=stats_of(second)["cache"])
        ing, wi = longchat(env, "ingest", str(doc), "--name", f"m{size // 1024}k")
        m = re.search(r"encoded ([\d,]+) tokens in ([\d.]+) s \(([\d,]+) tokens/s\)", ing.stderr)
        row.update(tokens=int(m.group(1).replace(",", "")), ingest_tok_s=int(m.group(3).replace(",", "")),
                   ingest_wall_s=round(wi, 1))
        ans, wa = longchat(env, "ask", "--memory", f"m{size // 1024}k", QUESTION, "-n", "24", "--stats")
        st = stats_of(ans)
        row.update(memory_answer=ans.stdout.strip(), memory_ask_s=round(wa, 1), peak_rss_mb=st["peak_rss_mb"],
                   memory_load_s=st["memory_load_s"])
        report["sizes"][size] = row
        print(size, json.dumps(row), flush=True)
    rows = {json.loads(l)["name"]: json.loads(l) for l in longchat(env, "memories", "list", "--json")[0].stdout.splitlines()}
    for size, row in report["sizes"].items():
        row["bytes"] = rows[f"m{size // 1024}k"]["bytes"]
        row["bytes_per_token"] = round(row["bytes"] / row["tokens"])

    # kill -9 at random points during ingests: every memory must load, or resume to completion.
    rng = random.Random(0)
    doc = make_doc(a.out / "kill.txt", parse_size(a.kill_doc), seed=3)
    ok = corrupt = resumed = finished_before_kill = 0
    _, full_wall = longchat(env, "ingest", str(doc), "--name", "kill-ref", "--checkpoint-every", "512")
    for i in range(a.kills):
        name = f"kill{i}"
        cmd = [sys.executable, "-m", "longchat", "ingest", str(doc), "--name", name, "--checkpoint-every", "512"]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, full_wall))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        check = subprocess.run([sys.executable, "-c", (
            "import sys\nfrom longchat.memory.store import Memory, named_root, MemoryStoreError\n"
            f"p = named_root() / {name!r}\n"
            "if not (p / 'manifest.json').exists(): print('none'); sys.exit(0)\n"
            "m = Memory.open(p); c = m.checkpoints[-1]; m.load_checkpoint(c); m.ids(c.tokens)\n"
            "print('complete' if m.complete else 'partial')")], env=env, capture_output=True, text=True)
        state = check.stdout.strip() if check.returncode == 0 else "corrupt"
        corrupt += state == "corrupt"
        finished_before_kill += state == "complete"
        again = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if again.returncode == 0:
            ok += 1
            resumed += "resuming" in again.stderr
        print(f"kill {i}: after kill {state}; re-run rc={again.returncode} {'resumed' if 'resuming' in again.stderr else ''}", flush=True)
    report["kills"] = dict(runs=a.kills, corrupt=corrupt, completed_after_rerun=ok, resumed_from_checkpoint=resumed,
                           finished_before_kill=finished_before_kill, full_ingest_wall_s=round(full_wall, 1))
    (a.out / "memories.json").write_text(json.dumps(report, indent=1))

    print("\n| tokens | ingest tok/s | bytes/token | ask --memory wall s | peak RSS MiB | answer |")
    print("|---|---|---|---|---|---|")
    for size, row in report["sizes"].items():
        print(f"| {row['tokens']:,} | {row['ingest_tok_s']} | {row['bytes_per_token']:,} | {row['memory_ask_s']} | "
              f"{row['peak_rss_mb']:,.0f} | {row['memory_answer'][:40]} |")
    for size, row in report["sizes"].items():
        if "speedup" in row:
            print(f"\nask cache at {row['tokens']:,} tokens: first {row['first_s']} s, second {row['second_s']} s "
                  f"({row['speedup']}x), same answer as --no-cache: {row['same_answer']}; "
                  f"ingest {row['ingest_tok_s']} tok/s vs ask --no-cache encode {row['ask_encode_tok_s']} tok/s")
    rss = [row["peak_rss_mb"] for row in report["sizes"].values()]
    if len(rss) > 1:
        print(f"peak RSS largest/smallest memory: {rss[-1] / rss[0]:.2f}")
    print(f"kill -9: {json.dumps(report['kills'])}")


if __name__ == "__main__":
    main()
