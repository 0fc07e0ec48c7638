"""`longchat serve` figures (docs/serve.md): prompt reuse, queueing, overhead, long prompts.

One process: the model is loaded once, `longchat serve`'s app runs on a thread on a free
loopback port, clients talk to it with the `openai` package, and the same runner answers the
in-process (`api.ask`) side of the comparisons while the server is idle.

    python bench/serve.py all                 # reuse, concurrent, overhead, then needles (slow)
    python bench/serve.py reuse --length 16k  # second-turn TTFT vs first, one conversation
    python bench/serve.py concurrent          # 8 clients x 2k tokens: all answered, = serial, time
    python bench/serve.py overhead            # TTFT of a 1k prompt: HTTP vs api.ask in-process
    python bench/serve.py needles --length 32k --samples 2   # answered with infllm: HTTP vs ask

Prompts are the multi-needle task's (`longchat bench needles`), so answers can be scored.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from longchat import api
from longchat.bench.needles import NEEDLES, score_needles, split_needles
from longchat.prompts import PREAMBLE, QUESTION
from longchat.runtime.generate import Sampling
from longchat.serve import listen
from longchat.serve.app import Server, Uvicorn
from longchat.serve.completion import Completer
from longchat.serve.worker import Worker


def parse_length(text: str) -> int:
    return int(float(text[:-1]) * 1024) if text.lower().endswith("k") else int(text)


def needle_doc(tokenizer, length: int, seed: int) -> tuple[str, str, int]:
    """(document, question, expected value) of a needles prompt of about `length` tokens."""
    rng = random.Random(seed)
    ids, expected = NEEDLES.build_prompt(tokenizer, length, rng.random(), rng)
    head, body, tail, _ = split_needles(tokenizer.decode(ids, skip_special_tokens=True))
    return head + body, tail.strip(), expected


def ask_text(document: str, question: str) -> str:
    """The user message `longchat ask` sends for this document and question."""
    return PREAMBLE + document + QUESTION.format(question=question)


class Bench:
    def __init__(self, profile: str):
        self.runner = api.open_runner(profile, note=lambda m: None)
        self.tok = self.runner.tokenizer
        sock = listen("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        completer = Completer(self.runner)
        self.worker = Worker(completer, max_queue=16)
        self.model = completer.model_id
        self.server = Uvicorn(Server(completer, self.worker, log=lambda line: None).app(), on_signal=lambda: None)
        self.worker.start()
        threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True).start()
        import openai

        self.client = openai.OpenAI(base_url=self.url, api_key="none", timeout=3600, max_retries=0)
        while not self.server.started:
            time.sleep(0.05)

    def close(self) -> None:
        self.server.should_exit = True
        self.worker.stop()

    def chat(self, messages: list[dict], max_tokens: int) -> dict:
        """One streamed request: reply text, seconds to the first token and in all, usage."""
        start = time.perf_counter()
        first, parts, usage = None, [], None
        for chunk in self.client.chat.completions.create(model=self.model, messages=messages, max_tokens=max_tokens,
                                                         stream=True, stream_options={"include_usage": True}):
            if chunk.choices and chunk.choices[0].delta.content:
                first = first or time.perf_counter() - start
                parts.append(chunk.choices[0].delta.content)
            if chunk.usage:
                usage = chunk.usage
        return {"text": "".join(parts), "ttft_s": round(first or 0.0, 3), "total_s": round(time.perf_counter() - start, 3),
                "prompt_tokens": usage.prompt_tokens, "cached_tokens": usage.prompt_tokens_details.cached_tokens}

    def ask(self, document: str, question: str, max_tokens: int) -> dict:
        """`longchat ask` on the same document and question, in-process, with the model loaded."""
        path = Path(tempfile.mkdtemp()) / "doc.txt"
        path.write_text(document)
        start, first = time.perf_counter(), []
        sampling = Sampling(max_new_tokens=max_tokens)
        answer = api.ask(self.runner, [str(path)], question, sampling=sampling, cache=False,
                         on_text=lambda d: first or first.append(time.perf_counter() - start))
        return {"text": answer, "ttft_s": round(first[0] if first else 0.0, 3),
                "total_s": round(time.perf_counter() - start, 3), "prompt_tokens": self.runner.engine.stats.prompt_tokens}


def reuse(b: Bench, length: int) -> dict:
    doc, question, _ = needle_doc(b.tok, length, seed=1)
    messages = [{"role": "user", "content": ask_text(doc, question)}]
    one = b.chat(messages, 16)
    messages += [{"role": "assistant", "content": one["text"]}, {"role": "user", "content": "Thank you. Say it again."}]
    two = b.chat(messages, 16)
    return {"figure": "reuse", "length": length, "first": one, "second": two,
            "ttft_ratio": round(one["ttft_s"] / max(two["ttft_s"], 1e-9), 1)}


def concurrent(b: Bench, clients: int, length: int) -> dict:
    prompts = []
    for i in range(clients):
        doc, question, _ = needle_doc(b.tok, length, seed=100 + i)
        prompts.append([{"role": "user", "content": ask_text(doc, question)}])
    start = time.perf_counter()
    serial = [b.chat(p, 16)["text"] for p in prompts]
    serial_s = time.perf_counter() - start
    together: list[str | None] = [None] * clients

    def client(i: int) -> None:
        together[i] = b.chat(prompts[i], 16)["text"]

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    together_s = time.perf_counter() - start
    return {"figure": "concurrent", "clients": clients, "length": length, "answered": sum(t is not None for t in together),
            "identical_to_serial": together == serial, "serial_s": round(serial_s, 1),
            "concurrent_s": round(together_s, 1)}


def overhead(b: Bench, length: int, samples: int) -> dict:
    http, local = [], []
    for i in range(samples):  # interleaved, each on a prompt of its own (nothing to reuse but the template head)
        doc, question, _ = needle_doc(b.tok, length, seed=200 + 2 * i)
        http.append(b.chat([{"role": "user", "content": ask_text(doc, question)}], 8)["ttft_s"])
        doc, question, _ = needle_doc(b.tok, length, seed=201 + 2 * i)
        local.append(b.ask(doc, question, 8)["ttft_s"])
    h, a = statistics.median(http), statistics.median(local)
    return {"figure": "overhead", "length": length, "samples": samples, "http_ttft_s": http, "ask_ttft_s": local,
            "http_median_s": h, "ask_median_s": a, "overhead_pct": round(100 * (h - a) / a, 1)}


def needles(b: Bench, length: int, samples: int) -> dict:
    rows = []
    for i in range(samples):
        doc, question, expected = needle_doc(b.tok, length, seed=300 + i)
        # 24 tokens: in a chat the model first repeats the question's sentence, then the 7 digits.
        served = b.chat([{"role": "user", "content": ask_text(doc, question)}], 24)
        asked = b.ask(doc, question, 24)
        rows.append({"sample": i, "expected": expected, "strategy": b.runner.engine.stats.extra.get("strategy_used"),
                     "serve": served["text"].strip(), "serve_ok": score_needles(served["text"], expected),
                     "serve_s": served["total_s"], "ask": asked["text"].strip(),
                     "ask_ok": score_needles(asked["text"], expected), "ask_s": asked["total_s"],
                     "prompt_tokens": served["prompt_tokens"]})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return {"figure": "needles", "length": length, "samples": rows,
            "serve_found": sum(r["serve_ok"] for r in rows), "ask_found": sum(r["ask_ok"] for r in rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("figure", choices=["all", "reuse", "concurrent", "overhead", "needles"])
    parser.add_argument("--profile", default="auto")
    parser.add_argument("--length", help="prompt tokens (defaults: reuse 16k, concurrent 2k, overhead 1k, needles 32k)")
    parser.add_argument("--samples", type=int, default=None, help="overhead 5, needles 2")
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    length = parse_length(args.length) if args.length else None
    b = Bench(args.profile)
    try:
        figures = ["reuse", "concurrent", "overhead", "needles"] if args.figure == "all" else [args.figure]
        for figure in figures:
            if figure == "reuse":
                result = reuse(b, length or 16 * 1024)
            elif figure == "concurrent":
                result = concurrent(b, args.clients, length or 2048)
            elif figure == "overhead":
                result = overhead(b, length or 1024, args.samples or 5)
            else:
                result = needles(b, length or 32 * 1024, args.samples or 2)
            print(json.dumps(result), flush=True)
    finally:
        b.close()


if __name__ == "__main__":
    main()
