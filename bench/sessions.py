"""Session figures: deep memory retrieval, store overhead at 10,000 messages, two processes.

    python bench/sessions.py OUT_DIR [--only deep,store,dual]

deep: a scripted 60-turn conversation on the bundled model through `chat --session`'s own code:
10 facts stated in turns 1-10, 40 turns of chit-chat (the model's replies push the facts out
of the window), then 10 questions; the last 5 are asked by a *new process* that resumes the
session. Run with paging "system" and with the "truncate" baseline. A fact counts as recalled
when the reply contains its keyword.
store: the extra time a turn's store work (search + prompt assembly, no generation) takes in
a session holding 10,000 messages against an empty one (median of 30).
dual: two `longchat chat --session` processes on one session: the second must be refused
cleanly, and the store must pass SQLite's integrity check.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

FACTS = [
    ("My sister's name is Alma.", "What is my sister's name?", "alma"),
    ("My dog is called Biscuit.", "What is my dog called?", "biscuit"),
    ("I was born in Lisbon.", "Where was I born?", "lisbon"),
    ("My favourite colour is teal.", "What is my favourite colour?", "teal"),
    ("I work as a pharmacist.", "What do I work as?", "pharmacist"),
    ("My car is a red Volvo.", "What car do I have?", "volvo"),
    ("My wife's birthday is on March 14.", "When is my wife's birthday?", "march"),
    ("I play the cello in an orchestra.", "Which instrument do I play?", "cello"),
    ("My best friend is called Tomasz.", "What is my best friend called?", "tomasz"),
    ("My favourite food is lasagna.", "What is my favourite food?", "lasagna"),
]
TOPICS = ("the ocean", "volcanoes", "honey bees", "the moon", "trains", "chess", "coffee", "penguins", "rainbows",
          "bridges", "clouds", "pyramids", "whales", "deserts", "lighthouses", "maple trees", "comets", "owls",
          "glaciers", "bicycles")
FILLER = [f"Tell me one short fact about {t}." for t in TOPICS] + [f"Why do people like {t}?" for t in TOPICS]


def script() -> list[str]:
    return [f for f, _, _ in FACTS] + FILLER + [q for _, q, _ in FACTS]


OVERRIDES = ["generation.max_new_tokens=48"]


def run_part(name: str, paging: str, lines: list[str], first: int) -> list[dict]:
    """Send `lines` in this process; the answers to the questions among them."""
    from longchat.api import open_runner
    from longchat.chat.session import SessionConversation

    runner = open_runner("auto", overrides=OVERRIDES + [x for x in os.environ.get("ISSUE6_SET", "").split(";") if x])
    conv = SessionConversation(runner, name, paging=paging, note=lambda m: print("  note:", m, file=sys.stderr))
    out = []
    questions = {q: k for _, q, k in FACTS}
    stated = {f: k for f, _, k in FACTS}
    try:
        for i, line in enumerate(lines, start=first):
            start = time.perf_counter()
            reply = conv.send(line)
            took = time.perf_counter() - start
            if line in stated:  # the model's reply to a fact: an acknowledgement, or an invention
                out.append({"turn": i, "fact": line, "reply": reply.strip(), "echoed": stated[line] in reply.lower()})
            if line in questions:
                ok = questions[line] in reply.lower()
                out.append({"turn": i, "question": line, "reply": reply.strip(), "ok": ok, "seconds": round(took, 2),
                            "pid": os.getpid()})
                print(f"  turn {i} {paging}: {line} -> {reply.strip()[:80]!r} {'ok' if ok else 'MISS'}", file=sys.stderr)
    finally:
        conv.close()
    return out


def deep(out: Path, home: Path) -> dict:
    lines = script()
    results = {}
    for paging in os.environ.get("ISSUE6_PAGING", "system,truncate").split(","):
        name = f"deep-{paging}"
        first = run_part(name, paging, lines[:55], 1)
        # The last five questions come from a new process resuming the session.
        code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import sessions; "
                f"print(json.dumps(sessions.run_part({name!r}, {paging!r}, sessions.script()[55:], 56)))")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env={**os.environ, "LONGCHAT_HOME": str(home)})
        if proc.returncode:
            raise SystemExit(proc.stderr[-2000:])
        sys.stderr.write(proc.stderr)
        second = json.loads(proc.stdout.strip().splitlines()[-1])
        replies = [a for a in first if "fact" in a]
        answers = [a for a in first + second if "question" in a]
        second = [a for a in second if "question" in a]
        recalled = sum(a["ok"] for a in answers)
        invented = sum(not a["echoed"] for a in replies)
        results[paging] = {"recalled": recalled, "of": len(answers), "after_restart": sum(a["ok"] for a in second),
                           "fact_replies_without_the_fact": invented, "answers": answers, "fact_replies": replies}
        print(f"deep memory, paging {paging}: {recalled}/{len(answers)} facts recalled "
              f"({sum(a['ok'] for a in second)}/5 after the restart); the model's reply to {invented}/{len(replies)} "
              f"facts did not repeat the fact (inventions or generic replies)")
    (out / "deep.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def store_overhead(out: Path) -> dict:
    import random

    from longchat.api import open_runner
    from longchat.chat.session import SessionConversation

    runner = open_runner("auto", overrides=["generation.max_new_tokens=48"])
    rng = random.Random(0)
    words = ("river stone lantern harbour copper meadow signal winter orchard thunder velvet compass anchor ember "
             "quiet falcon train bridge garden coffee ocean moon glacier owl comet desert").split()
    big = SessionConversation(runner, "store-big")
    db = big.store.db
    db.execute("BEGIN")
    for i in range(10_000):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(8, 30)))
        db.execute("INSERT INTO messages(session_id, role, content, created, tokens, in_context) VALUES (?,?,?,?,?,?)",
                   (big.sid, "user" if i % 2 == 0 else "assistant", text, time.time() - 10_000 + i, 30,
                    int(i >= 9_980)))
    db.execute("COMMIT")
    big.store.page_out(big.sid, "The user talked about rivers, trains and gardens.", 0)
    empty = SessionConversation(runner, "store-empty")
    query = "What did I say about the copper lantern near the harbour?"

    def timed(conv) -> float:
        times = []
        for _ in range(30):
            start = time.perf_counter()
            conv.assemble(query)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    t_empty, t_big = timed(empty), timed(big)
    result = {"empty_ms": round(1000 * t_empty, 2), "big_ms": round(1000 * t_big, 2),
              "extra_ms": round(1000 * (t_big - t_empty), 2), "messages": big.store.count_messages(big.sid),
              "in_window": len(big.store.messages(big.sid, in_context=True))}
    big.close()
    empty.close()
    print(f"store work per turn: empty {result['empty_ms']} ms, 10,000 messages {result['big_ms']} ms "
          f"(+{result['extra_ms']} ms; search + assembly, median of 30)")
    (out / "store.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def dual(out: Path, home: Path) -> dict:
    env = {**os.environ, "LONGCHAT_HOME": str(home)}
    cmd = [sys.executable, "-m", "longchat", "chat", "--session", "dual", "-n", "8"]
    first = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env)
    first.stdin.write("Hello from the first process.\n")
    first.stdin.flush()
    time.sleep(20)  # it has loaded the model and holds the session
    second = subprocess.run(cmd, input="Hello from the second process.\n", capture_output=True, text=True, env=env)
    first_out, first_err = first.communicate(timeout=300)  # closes its stdin: it ends
    from longchat.chat.store import Store

    store = Store(home / "data" / "sessions.db")
    integrity = store.db.execute("PRAGMA integrity_check").fetchone()[0]
    n = store.count_messages(store.session_id("dual"))
    result = {"first_exit": first.returncode, "second_exit": second.returncode,
              "second_stderr": second.stderr.strip().splitlines()[-1:], "integrity": integrity, "messages": n}
    print(f"two processes: first exit {first.returncode}, second exit {second.returncode} "
          f"({result['second_stderr']}), integrity {integrity}, {n} messages stored")
    (out / "dual.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--only", default="store,dual,deep")
    args = ap.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    home = out / "home"
    os.environ["LONGCHAT_HOME"] = str(home)
    models = home / "cache" / "models"
    if not models.exists():  # reuse the converted default model
        from longchat.runtime.loader import resolve_model_dir

        os.environ.pop("LONGCHAT_HOME")
        folder = resolve_model_dir("default")[1]
        os.environ["LONGCHAT_HOME"] = str(home)
        models.mkdir(parents=True)
        os.symlink(folder, models / folder.name)
    for part in args.only.split(","):
        {"deep": lambda: deep(out, home), "store": lambda: store_overhead(out), "dual": lambda: dual(out, home)}[part]()


if __name__ == "__main__":
    main()
