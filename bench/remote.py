"""Remote-engine figures (docs/scaling.md): longchat in front of an OpenAI-compatible engine.

By default the engine is `longchat serve -p full` on the bundled model, in this process on a
free loopback port (window: the model's 8,192 tokens, reported as `max_model_len`). With
`--url openai:http://HOST:PORT/v1[#NAME]` the same checks run against any engine you started
(vLLM, llama-server, ollama ...); the local side then uses the bundled model.

    python bench/remote.py overhead --samples 5           # a 1k-token ask: remote vs local, end to end
    python bench/remote.py needles --length 32k --samples 3   # remote auto vs local rag and --compress 0.1
    python bench/remote.py all --json out.json

`overhead`: the same document and question through `api.ask` with the local model (profile
`full`, model loaded) and through the engine (`--model openai:...`, profile `auto`): taking turns,
medians of the end-to-end seconds. `needles`: the multi-needle prompts of `longchat bench
needles`, answered by the remote `auto` (past the engine's window: BM25 passages or local
compression), local `rag`, and local `auto` with `--compress 0.1`; scored as that task scores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve import needle_doc, parse_length  # noqa: E402  (bench/serve.py)

from longchat import api  # noqa: E402
from longchat.bench.needles import score_needles  # noqa: E402
from longchat.runtime.generate import Sampling  # noqa: E402


def start_engine(profile: str = "full") -> tuple[str, object]:
    """`longchat serve -p PROFILE` on a thread: (openai:URL spec, its runner)."""
    from longchat.serve import listen
    from longchat.serve.app import Server, Uvicorn
    from longchat.serve.completion import Completer
    from longchat.serve.worker import Worker

    runner = api.open_runner(profile, note=lambda m: None)
    sock = listen("127.0.0.1", 0)
    completer = Completer(runner)
    worker = Worker(completer, max_queue=16)
    server = Uvicorn(Server(completer, worker, log=lambda line: None).app(), on_signal=lambda: None)
    worker.start()
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"openai:http://127.0.0.1:{sock.getsockname()[1]}/v1", runner


def timed_ask(runner, document: str, question: str, max_tokens: int) -> dict:
    path = Path(tempfile.mkdtemp()) / "doc.txt"
    path.write_text(document)
    notes: list[str] = []
    start = time.perf_counter()
    answer = api.ask(runner, [str(path)], question, sampling=Sampling(max_new_tokens=max_tokens), cache=False,
                     note=notes.append)
    stats = runner.engine.stats
    return {"answer": answer.strip(), "seconds": round(time.perf_counter() - start, 3),
            "read": stats.extra.get("read"), "prompt_tokens": stats.prompt_tokens, "notes": notes}


def overhead(spec: str, local, samples: int, length: int) -> dict:
    remote = api.open_runner("auto", spec, note=lambda m: None)
    document, question, _ = needle_doc(local.tokenizer, length, seed=499)
    timed_ask(local, document, question, 4), timed_ask(remote, document, question, 4)  # warm-up, not counted
    rows = []
    for i in range(samples):  # taking turns, a prompt of its own each round
        document, question, expected = needle_doc(local.tokenizer, length, seed=500 + i)
        here = timed_ask(local, document, question, 16)
        there = timed_ask(remote, document, question, 16)
        rows.append({"local_s": here["seconds"], "remote_s": there["seconds"], "same_answer": here["answer"] ==
                     there["answer"], "remote_read": there["read"]})
        print(json.dumps(rows[-1]), flush=True)
    local_s = statistics.median(r["local_s"] for r in rows)
    remote_s = statistics.median(r["remote_s"] for r in rows)
    return {"figure": "overhead", "length": length, "samples": samples, "local_median_s": local_s,
            "remote_median_s": remote_s, "overhead": round(remote_s / local_s - 1, 3),
            "same_answers": sum(r["same_answer"] for r in rows), "rows": rows}


def needles(spec: str, loaded, samples: int, length: int, skip_compress: bool) -> dict:
    runs = {"remote auto": api.open_runner("auto", spec, note=lambda m: None),
            "local rag": api.open_runner("rag", loaded=loaded, note=lambda m: None)}
    if not skip_compress:
        squeezed = api.open_runner("auto", loaded=loaded, note=lambda m: None)
        from longchat.compress import with_rate

        squeezed.profile.compress = with_rate(squeezed.profile.compress, 0.1)
        runs["local --compress 0.1"] = squeezed
    found = {name: 0 for name in runs}
    rows = []
    for i in range(samples):
        document, question, expected = needle_doc(loaded.tokenizer, length, seed=900 + i)
        for name, runner in runs.items():
            r = timed_ask(runner, document, question, 32)  # "The special magic number for X is N": ~25 tokens
            ok = score_needles(r["answer"], expected)
            found[name] += ok
            rows.append({"sample": i, "run": name, "ok": ok, "expected": expected, **r})
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "notes"}), flush=True)
    return {"figure": "needles", "length": length, "samples": samples, "found": found, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["overhead", "needles", "all"])
    ap.add_argument("--url", help="openai:http://HOST:PORT/v1[#NAME]: an engine you started (default: serve here)")
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--length", default="32k", help="needles prompt length (default 32k)")
    ap.add_argument("--overhead-length", default="1k")
    ap.add_argument("--skip-compress", action="store_true", help="needles: leave out local --compress 0.1 (slow)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    # The local side has a model (and KV cache) of its own: the engine gets no reuse from it.
    spec = args.url or start_engine("full")[0]
    local = api.open_runner("full", note=lambda m: None)
    out = []
    if args.what in ("overhead", "all"):
        out.append(overhead(spec, local, args.samples, parse_length(args.overhead_length)))
        print(json.dumps({k: v for k, v in out[-1].items() if k != "rows"}), flush=True)
    if args.what in ("needles", "all"):
        out.append(needles(spec, local.model, args.samples, parse_length(args.length), args.skip_compress))
        print(json.dumps({k: v for k, v in out[-1].items() if k != "rows"}), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
