"""Session figures: deep memory retrieval, store overhead at 10,000 messages, two processes.

    python bench/sessions.py OUT_DIR [--only deep,store,dual,paraphrase,recall]

deep: a scripted 60-turn conversation on the bundled model through `chat --session`'s own code:
10 facts stated in turns 1-10, 40 turns of chit-chat (the model's replies push the facts out
of the window), then 10 questions; the last 5 are asked by a *new process* that resumes the
session. Run with paging "system" and with the "truncate" baseline. A fact counts as recalled
when the reply contains its keyword.
paraphrase: 25 facts, 10 chit-chat turns, then in a new process 25 questions that share no
content word with their fact; recall by words only against words + meaning (`sessions.semantic`).
recall: no generation; which memories recall places before each paraphrased question, by the
static vectors against the bundled model's mean-pooled states, and per `semantic_floor`.
With ISSUE6_CONFABULATE=N, the stored replies to the first N facts are replaced by an invention
that shares the fact's key word ("In the context of the anime, Alma is a reference to The Legend of Zelda.").
store: the extra time a turn's store work (search + prompt assembly + copy guard, no generation) takes in
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


# paraphrase: each question shares no content word with its fact (tests/test_recall.py checks it)
PARAPHRASE = [
    ("I work as a pharmacist.", "What is my job?", "pharmacist"),
    ("My sister's name is Alma.", "How is my sibling called?", "alma"),
    ("My dog is called Biscuit.", "What name did I give my puppy?", "biscuit"),
    ("I was born in Lisbon.", "Which city is my birthplace?", "lisbon"),
    ("My favourite colour is teal.", "Which hue do I prefer?", "teal"),
    ("My car is a red Volvo.", "What vehicle do I drive?", "volvo"),
    ("My wife's birthday is on March 14.", "On what date does my spouse turn a year older?", "march"),
    ("I play the cello in an orchestra.", "Which musical instrument do I perform with?", "cello"),
    ("My best friend is called Tomasz.", "Who is my closest buddy?", "tomasz"),
    ("My favourite food is lasagna.", "Which dish do I enjoy eating most?", "lasagna"),
    ("I live in Rotterdam.", "In which town is my home?", "rotterdam"),
    ("I am allergic to peanuts.", "Which nut makes me ill?", "peanut"),
    ("My daughter studies medicine in Vienna.", "What subject is my child learning at university?", "medicine"),
    ("My husband is a firefighter.", "What does my spouse do for a living?", "firefighter"),
    ("My bike is a green Gazelle.", "Which bicycle do I ride?", "gazelle"),
    ("My mother grows tomatoes in her garden.", "Which vegetables does mom cultivate?", "tomato"),
    ("I speak Portuguese at home.", "Which language do I use with family?", "portuguese"),
    ("My flight to Oslo leaves on Friday.", "Which day does my plane depart?", "friday"),
    ("My doctor is Dr. Okafor.", "Who is my physician?", "okafor"),
    ("My cat sleeps on the radiator.", "Where does my kitty nap?", "radiator"),
    ("My son plays football every Saturday.", "Which sport does my boy practise?", "football"),
    ("I hate mushrooms.", "Which ingredient do I dislike?", "mushroom"),
    ("I collect vintage stamps.", "What is my hobby?", "stamp"),
    ("My apartment is on the fourth floor.", "Which storey is my flat on?", "fourth"),
    ("My grandfather was a sailor.", "What did grandpa do for work?", "sailor"),
]
TABLES = {"deep": FACTS, "paraphrase": PARAPHRASE}


def script() -> list[str]:
    return [f for f, _, _ in FACTS] + FILLER + [q for _, q, _ in FACTS]


OVERRIDES = ["generation.max_new_tokens=48"]


def run_part(name: str, paging: str, lines: list[str], first: int, table: str = "deep",
             sets: list[str] = ()) -> list[dict]:
    """Send `lines` in this process; the answers to the questions among them (`table`: which
    facts they ask about; `sets`: more --set overrides)."""
    from longchat.api import open_runner
    from longchat.chat.session import SessionConversation

    runner = open_runner("auto", overrides=OVERRIDES + list(sets) +
                         [x for x in os.environ.get("ISSUE6_SET", "").split(";") if x])
    conv = SessionConversation(runner, name, paging=paging, note=lambda m: print("  note:", m, file=sys.stderr))
    out = []
    questions = {q: k for _, q, k in TABLES[table]}
    stated = {f: k for f, _, k in TABLES[table]}
    try:
        for i, line in enumerate(lines, start=first):
            start = time.perf_counter()
            reply = conv.send(line)
            took = time.perf_counter() - start
            if line in stated and sum("fact" in a for a in out) < int(os.environ.get("ISSUE6_CONFABULATE") or 0):
                reply = confabulate(conv, stated[line])
            if line in stated:  # the model's reply to a fact: an acknowledgement, or an invention
                out.append({"turn": i, "fact": line, "reply": reply.strip(), "echoed": stated[line] in reply.lower()})
            if line in questions:
                ok = questions[line] in reply.lower()
                placed = questions[line] in conv.last_messages[-1]["content"].lower()  # in the memories before it
                out.append({"turn": i, "question": line, "reply": reply.strip(), "ok": ok, "placed": placed,
                            "seconds": round(took, 2), "pid": os.getpid()})
                print(f"  turn {i} {paging}: {line} -> {reply.strip()[:80]!r} {'ok' if ok else 'MISS'}", file=sys.stderr)
    finally:
        conv.close()
    return out


def confabulate(conv, keyword: str) -> str:
    """Replace the model's stored reply to a fact with the invention the issue saw the bundled
    model make, sharing the fact's key word (ISSUE6_CONFABULATE=N: the first N facts)."""
    text = f"In the context of the anime, {keyword.capitalize()} is a reference to The Legend of Zelda."
    conv.store.db.execute("UPDATE messages SET content = ? WHERE id = (SELECT max(id) FROM messages "
                          "WHERE session_id = ? AND role = 'assistant')", (text, conv.sid))
    conv.runner.engine.reset()
    return text


def run_part_resumed(home: Path, name: str, paging: str, lines: list[str], first: int, table: str = "deep",
                     sets: list[str] = ()) -> list[dict]:
    """`run_part` in a new process that resumes the session (a restart)."""
    args = json.dumps([name, paging, lines, first, table, list(sets)])
    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import sessions; "
            f"print(json.dumps(sessions.run_part(*json.loads({args!r}))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "LONGCHAT_HOME": str(home)})
    if proc.returncode:
        raise SystemExit(proc.stderr[-2000:])
    sys.stderr.write(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def deep(out: Path, home: Path) -> dict:
    lines = script()
    results = {}
    for paging in os.environ.get("ISSUE6_PAGING", "system,truncate").split(","):
        name = f"deep-{paging}"
        first = run_part(name, paging, lines[:55], 1)
        second = run_part_resumed(home, name, paging, lines[55:], 56)  # the last five questions
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


def paraphrase(out: Path, home: Path) -> dict:
    """The 25 PARAPHRASE facts stated, 10 chit-chat turns, then (a new process) the 25
    questions that share no content word with their fact: recall by words only
    (`sessions.semantic=false`) against words and meaning fused. `placed`: the fact was among
    the memories put before the question; `ok`: the reply holds its keyword."""
    results = {}
    for mode, sets in (("words", ["sessions.semantic=false"]), ("hybrid", [])):
        name = f"para-{mode}"
        stated = run_part(name, "system", [f for f, _, _ in PARAPHRASE] + FILLER[:10], 1, "paraphrase", sets)
        answers = run_part_resumed(home, name, "system", [q for _, q, _ in PARAPHRASE], 36, "paraphrase", sets)
        results[mode] = {"placed": sum(a["placed"] for a in answers), "answered": sum(a["ok"] for a in answers),
                         "of": len(answers), "fact_replies_without_the_fact": sum(not a["echoed"] for a in stated),
                         "answers": answers}
        print(f"paraphrase, {mode}: the fact placed before {results[mode]['placed']}/{len(answers)} questions, "
              f"answered {results[mode]['answered']}/{len(answers)} (after a restart)")
    (out / "paraphrase.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def recall(out: Path) -> dict:
    """No reply is generated: which memories recall would place before each PARAPHRASE question
    (top 3, facts and messages), among the 25 facts and 40 chit-chat lines. First the sentence
    vectors alone (cosine top 3 over all 65 lines): the static vectors against mean-pooled hidden
    states of the bundled model per layer; then the session's fused recall per `semantic_floor`,
    with how many of 50 chit-chat messages would get a memory placed before them."""
    import tempfile

    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from longchat.text.embed import default_embedder
    from longchat.chat.facts import extract
    from longchat.chat.store import Store
    from longchat.runtime.loader import resolve_model_dir

    lines, questions = [f for f, _, _ in PARAPHRASE] + FILLER, [q for _, q, _ in PARAPHRASE]

    def top3(vectors, queries) -> int:
        v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        scores = q @ v.T
        return sum(int((scores[i] > scores[i, i]).sum()) < 3 for i in range(len(questions)))

    emb = default_embedder()
    result = {"vectors_top3": {"static (wordllama, content words)": top3(emb.embed(lines), emb.embed(questions))}}
    folder = resolve_model_dir("default")[1]
    tok, model = AutoTokenizer.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder)

    def pooled(texts, layer):
        with torch.no_grad():
            return np.stack([model(**tok(t, return_tensors="pt"), output_hidden_states=True)
                             .hidden_states[layer][0].mean(0).numpy() for t in texts])

    for layer in (0, 4, 8, 12, 16, 20, model.config.num_hidden_layers):
        result["vectors_top3"][f"bundled model, layer {layer} mean-pooled"] = top3(pooled(lines, layer),
                                                                                    pooled(questions, layer))
    store = Store(Path(tempfile.mkdtemp()) / "s.db")
    sid = store.session_id("recall", create=True)
    for fact, _, _ in PARAPHRASE:
        mid = store.add_message(sid, "user", fact)
        store.add_message(sid, "assistant", "That's nice.")
        for f in extract(fact):
            store.add_fact(sid, f.key, f.text, mid)
    before = store.add_message(sid, "user", "(the questions start here)")
    chit = FILLER + ["How are you today?", "Tell me a joke.", "What is the capital of France?", "Thanks, that helped.",
                     "Can you write a poem about spring?", "What should I cook tonight?", "Is it going to rain?",
                     "Explain how rainbows form.", "Recommend a good book.", "What time is it in Tokyo?"]

    def placed(text, floor):
        hits = store.recall(sid, "fact", text, limit=3, floor=floor) + \
            store.recall(sid, "message", text, limit=3, floor=floor, before=before)
        return hits[:3]

    result["fused_top3"] = {}
    for floor in (None, 0.1, 0.15, 0.2, 0.25, 0.3):
        found = sum(any(k in h.content.lower() for h in placed(q, floor)) for _, q, k in PARAPHRASE)
        noisy = sum(bool(placed(c, floor)) for c in chit)
        result["fused_top3"]["words only" if floor is None else f"floor {floor}"] = [found, noisy]
    print(f"recall of {len(questions)} paraphrased questions, top 3 by vectors alone:")
    for name, n in result["vectors_top3"].items():
        print(f"  {name}: {n}/{len(questions)}")
    print(f"fused recall (facts + messages, top 3), and chit-chat messages (of {len(chit)}) given a memory:")
    for name, (n, noisy) in result["fused_top3"].items():
        print(f"  {name}: {n}/{len(questions)}, {noisy}/{len(chit)}")
    (out / "recall.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


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
            conv._copy_guard()  # built for each reply from the window's earlier replies
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    start = time.perf_counter()
    big.assemble(query)  # the first search embeds the 5,000 user messages (a store from before migration 3)
    t_first = time.perf_counter() - start
    t_empty, t_big = timed(empty), timed(big)
    result = {"first_search_ms": round(1000 * t_first, 1), "empty_ms": round(1000 * t_empty, 2),
              "big_ms": round(1000 * t_big, 2),
              "extra_ms": round(1000 * (t_big - t_empty), 2), "messages": big.store.count_messages(big.sid),
              "in_window": len(big.store.messages(big.sid, in_context=True))}
    big.close()
    empty.close()
    print(f"store work per turn: empty {result['empty_ms']} ms, 10,000 messages {result['big_ms']} ms "
          f"(+{result['extra_ms']} ms; search + assembly + copy guard, median of 30); the first search, which indexes "
          f"the 5,000 user messages by meaning, {result['first_search_ms']} ms")
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


def use_home(home: Path) -> Path:
    """Make `home` this process's LONGCHAT_HOME (its sessions, locks, data), with the converted
    default model of the real one linked into its cache, so nothing is converted again."""
    home = Path(home)
    models = home / "cache" / "models"
    if not models.exists():
        from longchat.runtime.loader import resolve_model_dir

        os.environ.pop("LONGCHAT_HOME", None)
        folder = resolve_model_dir("default")[1]
        models.mkdir(parents=True)
        os.symlink(folder, models / folder.name)
    os.environ["LONGCHAT_HOME"] = str(home)
    return home


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--only", default="store,dual,deep")
    args = ap.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    home = use_home(out / "home")
    for part in args.only.split(","):
        {"deep": lambda: deep(out, home), "store": lambda: store_overhead(out), "dual": lambda: dual(out, home),
         "paraphrase": lambda: paraphrase(out, home), "recall": lambda: recall(out)}[part]()


if __name__ == "__main__":
    main()
