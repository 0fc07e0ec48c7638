"""Same facts, every door: does each way of handing longchat a long input find the fact that `ask` finds?

The documents and questions are those of bench/facts.py (real-text haystacks, one fact sentence
at a depth, a "shared" and a "paraphrase" question). Each door answers the same question about
the same document:

  ask         api.ask on the document file
  chat-file   a Conversation with the file attached, one question
  chat-2turn  a Conversation with a file holding two facts (the next sample's at depth+0.5):
              turn 1 asks the first (row "chat-2turn/t1"), turn 2 the second (row "chat-2turn"),
              compared with `ask` of the second question on the same document (row "ask-2fact")
  session     a SessionConversation, document and question pasted as one message
  chat-paste  a Conversation without files, document and question pasted as one message
  serve       `longchat serve` in a subprocess, the pasted message over the OpenAI API
  rag, full@2k  the baselines of bench/facts.py (the BM25 plugin; full attention on ~2k tokens)

Answers are greedy, 24 new tokens at most. The table counts correct answers per door, length
and question kind, and whether each door is within one of `ask`. To reproduce it:

    python bench/doors.py --split train --seed 0 --samples 8 --lengths 8k,32k --out bench-out/doors

Every answer is appended to OUT/doors.jsonl; `--report` prints its table and runs nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import time
import traceback
import urllib.request
from itertools import product
from pathlib import Path

BENCH = Path(__file__).resolve().parent
DOORS = ("ask", "chat-file", "ask-2fact", "chat-2turn", "session", "chat-paste", "serve", "rag", "full@2k")
# chat-2turn's second answer is compared with `ask` on the same two-fact document and question
BASELINE = {"chat-2turn": "ask-2fact"}
QKINDS = ("shared", "paraphrase")


def add_line(document: str, depth: float, line: str) -> str:
    """`line` on its own line at the line break before `depth` of `document` (as make_document places a fact)."""
    cut = round(depth * len(document))
    brk = document.rfind("\n", 0, cut)
    cut = brk + 1 if brk >= 0 else cut
    return document[:cut] + line + "\n" + document[cut:]


def start_server(profile: str, home: Path, log: Path) -> tuple[subprocess.Popen, int, str]:
    """`longchat serve` on a free port; (process, port, model id) once GET /v1/models answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(log, "ab") as err:
        proc = subprocess.Popen([sys.executable, "-m", "longchat", "serve", "--host", "127.0.0.1", "--port", str(port),
                                 "--profile", profile], env=dict(os.environ, LONGCHAT_HOME=str(home)),
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5) as r:
                    ids = [m["id"] for m in json.load(r)["data"]]
                return proc, port, next(i for i in ids if "@memory:" not in i)
            except OSError:
                time.sleep(1)
        raise RuntimeError(f"the server exited ({proc.returncode}) or did not answer within 120 s; see {log}")
    except BaseException:
        stop_server(proc)
        raise


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def table(rows: list[dict]) -> str:
    """Markdown: correct/asked per door (rows) and length x question kind (columns), and per
    column whether the door's count is within one of ask's, or above it (chat-2turn: of ask-2fact's)."""
    cols = [(n, q) for n in sorted({r["length"] for r in rows}) for q in QKINDS
            if any(r["length"] == n and r["question"] == q for r in rows)]
    order = DOORS[:3] + ("chat-2turn/t1",) + DOORS[3:]
    doors = [d for d in order if any(r["door"] == d for r in rows)]
    label = lambda n: f"{n // 1024}k" if n % 1024 == 0 else f"{n:,}"  # noqa: E731

    def count(door, n, q):
        got = [r for r in rows if r["door"] == door and r["length"] == n and r["question"] == q]
        errors = sum(r["answer"].startswith("ERROR: ") for r in got)
        return (sum(r["correct"] for r in got), len(got), errors) if got else None

    head = [f"{label(n)} {q}" for n, q in cols]
    lines = ["| door | " + " | ".join(head) + " | within 1 of ask (or better)? |", "| --- |" + " --- |" * (len(cols) + 1)]
    for door in doors:
        cells, near = [], []
        for n, q in cols:
            base = BASELINE.get(door, "ask")
            mine, ask = count(door, n, q), count(base, n, q)
            cells.append((f"{mine[0]}/{mine[1]}" + (f" ({mine[2]} raised)" if mine[2] else "")) if mine else "-")
            if mine and ask and door not in ("ask", "ask-2fact"):
                near.append(f"{label(n)} {q}: {'yes' if mine[0] >= ask[0] - 1 else 'NO'}")  # or better
        lines.append(f"| {door} | " + " | ".join(cells) + f" | {', '.join(near) or '-'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=("train", "heldout", "fresh"), default="train")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--lengths", default="8k,32k")
    parser.add_argument("--questions", default="shared,paraphrase", help="shared, paraphrase or both (comma-separated)")
    parser.add_argument("--doors", default=",".join(DOORS), help="comma-separated, of: " + ", ".join(DOORS))
    parser.add_argument("--profile", default="auto", help="the profile of every door but rag and full@2k")
    parser.add_argument("--out", default="bench-out/doors")
    parser.add_argument("--report", action="store_true", help="run nothing: the table of OUT/doors.jsonl")
    args = parser.parse_args(argv)

    out = Path(args.out)
    if args.report:
        rows = {}
        for line in (out / "doors.jsonl").read_text().splitlines():
            row = json.loads(line)
            rows[row["door"], row["length"], row["sample"], row["question"]] = row  # the latest answer
        print(table(list(rows.values())))
        return 0
    doors = [d.strip() for d in args.doors.split(",") if d.strip()]
    qkinds = [q.strip() for q in args.questions.split(",") if q.strip()]
    if bad := [d for d in doors if d not in DOORS] + [q for q in qkinds if q not in QKINDS]:
        parser.error(f"unknown door or question kind: {', '.join(bad)}")
    out.mkdir(parents=True, exist_ok=True)
    home = out.resolve() / "home"
    os.environ["LONGCHAT_HOME"] = str(home)  # before longchat is imported
    sys.path.insert(0, str(BENCH))
    import facts  # bench/facts.py: imports longchat, so only now
    import openai
    from longchat import api
    from longchat.bench.realtext import haystacks
    from longchat.bench.run import parse_lengths
    from longchat.chat.conversation import Conversation
    from longchat.chat.session import SessionConversation
    from longchat.chat.store import Store
    from longchat.runtime.generate import Sampling
    from longchat.runtime.loader import load_model

    model = load_model("default")
    texts = haystacks()
    lengths = parse_lengths(args.lengths)
    sampling = Sampling(max_new_tokens=24)
    every = list(facts.samples(args.split, args.samples + 1, args.seed))  # the last: chat-2turn's second fact
    (out / "docs").mkdir(exist_ok=True)

    def document(i: int, length: int, two: bool = False, ceiling: bool = False) -> tuple[Path, str]:
        """The sample's document at `length` as facts.py makes it (`ceiling`: room left for the
        frame at full@2k), with the next sample's fact too if `two`."""
        _, _, statement, _, source, depth = every[i]
        rng = random.Random(f"{args.split}-{args.seed}-{i}")
        doc = facts.make_document(model.tokenizer, texts[source], length - (300 if ceiling else 0), depth,
                                  statement, rng)
        if two:
            doc = add_line(doc, (depth + 0.5) % 1, every[i + 1][2])
        path = out / "docs" / f"{args.split}-{args.seed}-{i}-{length}{'-two' * two}{'-full' * ceiling}.txt"
        path.write_text(doc)
        return path, doc

    def fresh(conv_class, *a, **kw):
        runner.engine.reset(forget_base=True)  # each answer starts from nothing, as a new chat would
        return conv_class(runner, *a, sampling=sampling, **kw)

    def read() -> str | None:
        return runner.engine.stats.extra.get("read")

    def answer(door: str, i: int, length: int, qkind: str):
        """Yield (reply, read, more fields of the row) for each question `door` asks (chat-2turn: two)."""
        question = getattr(every[i][1], qkind)
        if door == "chat-2turn":
            path, doc = document(i, length, two=True)
            conv = fresh(Conversation)
            conv.attach_files([str(path)])
            yield conv.send(question), read(), None
            yield conv.send(getattr(every[i + 1][1], qkind)), read(), None
            return
        if door == "ask-2fact":  # chat-2turn's second question, asked alone
            path, doc = document(i, length, two=True)
            yield api.ask(runner, [str(path)], getattr(every[i + 1][1], qkind), sampling=sampling), read(), None
            return
        path, doc = document(i, length, ceiling=door == "full@2k")
        pasted = doc + "\n\n" + question
        if door in ("ask", "rag", "full@2k"):
            reply = api.ask(runner, [str(path)], question, sampling=sampling, cache=door != "full@2k")
        elif door == "chat-file":
            conv = fresh(Conversation)
            conv.attach_files([str(path)])
            reply = conv.send(question)
        elif door == "chat-paste":
            reply = fresh(Conversation).send(pasted)
        elif door == "session":
            name, store = f"bench-{i}-{length}-{qkind}", Store()
            if any(s["name"] == name for s in store.sessions()):
                store.remove(name)  # a rerun starts the session again
            store.close()
            conv = fresh(SessionConversation, name)
            try:
                reply = conv.send(pasted)
            finally:
                conv.close()
        else:  # serve
            resp = client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": pasted}],
                                                  max_tokens=24, temperature=0)
            info = (resp.model_extra or {}).get("longchat") or {}
            yield resp.choices[0].message.content or "", (info.get("reading") or {}).get("read"), {"longchat": info}
            return
        yield reply, read(), None

    log = open(out / "doors.jsonl", "a")
    results: list[dict] = []
    server = None
    try:
        for door in doors:
            runner = client = model_id = broken = None
            try:
                if door == "serve":
                    server, port, model_id = start_server(args.profile, home, out / "server.log")
                    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", timeout=1800,
                                           max_retries=0)
                else:
                    runner = api.open_runner({"rag": "rag", "full@2k": "full"}.get(door, args.profile), loaded=model)
            except Exception as e:  # every question of this door gets the error
                broken = e
            for length, i, qkind in product([2048] if door == "full@2k" else lengths, range(args.samples), qkinds):
                asked = [("chat-2turn/t1", i), ("chat-2turn", i + 1)] if door == "chat-2turn" else \
                    [(door, i + 1)] if door == "ask-2fact" else [(door, i)]
                replies, start = [], time.perf_counter()
                try:
                    if broken is not None:
                        raise broken
                    for reply in answer(door, i, length, qkind):
                        replies.append((*reply, time.perf_counter() - start))
                        start = time.perf_counter()
                except Exception as e:  # one broken door must not stop the others
                    tail = traceback.format_exc().strip().splitlines()[-6:]
                    print("\n".join(tail), file=sys.stderr)
                    replies += [(f"ERROR: {type(e).__name__}: {e}", None, {"error": tail}, time.perf_counter() - start)
                                ] * (len(asked) - len(replies))
                for (name, j), (reply, how, info, seconds) in zip(asked, replies):
                    _, fact, _, value, _, _ = every[j]
                    row = {"door": name, "length": length, "sample": i, "question": qkind, "kind": fact.kind,
                           "value": value, "answer": reply.strip(), "read": how, "seconds": round(seconds, 2),
                           "correct": not reply.startswith("ERROR: ") and facts.correct(fact.kind, value, reply)}
                    row.update(info or {})
                    results.append(row)
                    log.write(json.dumps(row) + "\n")
                    log.flush()
                    print(f"{name:>14} {length:>7,} #{i} {qkind:<10} {str(how):<9} {'ok ' if row['correct'] else 'MISS'} "
                          f"{seconds:>6.1f}s {row['answer'][:60]!r}", file=sys.stderr)
            if server is not None:
                stop_server(server)
                server = None
    finally:
        if server is not None:
            stop_server(server)
        log.close()
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
