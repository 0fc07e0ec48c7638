"""Fact retrieval on real text that nothing was tuned on: does `ask` find one sentence?

Haystacks are real text found on any machine with Python: the standard library's docstrings
("docs"), licence texts ("licenses"), standard-library source code ("code"), and a generated
service log ("log"). One fact sentence (a code, a name, a date or a place, each phrased several
ways) is placed at a depth, and two questions are asked about it: one that shares the fact's
key words ("shared") and one that shares no content word with it ("paraphrase").

Facts come in two disjoint splits: `train` (for choosing settings) and `heldout` (run only to
report). Each row of the table is one profile at one length; `full@2k` reads the same fact in
a ~2k-token haystack from the same text with full attention (the model's own ceiling), `rag`
is the BM25 baseline plugin.

    python bench/facts.py --split train --lengths 8k,32k --samples 8 \
        --profiles auto,auto:infllm.lexical=0,rag,full@2k --out bench-out/facts-train

Answers are cached in a private LONGCHAT_HOME under --out, so profiles that differ only in how
the question retrieves (e.g. `infllm.lexical`) reuse one encoding of each haystack. Every answer
is appended to --out/SPLIT.jsonl; `--report` prints the table of all of them (several runs).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from longchat.bench.realtext import haystacks
from longchat.bench.run import parse_lengths

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
FIRST = ("Ingrid", "Tomasz", "Amara", "Kenji", "Lucia", "Farid", "Helena", "Oskar", "Priya", "Mateo", "Ilse", "Dmitri")
LAST = ("Solvang", "Okonkwo", "Varga", "Lindqvist", "Moreau", "Castellanos", "Nakamura", "Brennan", "Halvorsen",
        "Petrova", "Achterberg", "Quintero")
CITIES = ("Tromso", "Valparaiso", "Ljubljana", "Tbilisi", "Windhoek", "Hobart", "Oaxaca", "Tampere", "Cusco",
          "Trieste", "Kraków", "Dunedin")


def _code(rng: random.Random) -> str:
    return f"{rng.choice('ABCDEFGHJKLMNPRSTUVWXYZ')}{rng.randint(2, 9)}-{rng.randint(1000, 9999)}"


def _name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def _date(rng: random.Random) -> str:
    return f"{rng.randint(2, 27)} {rng.choice(MONTHS)} {rng.randint(1987, 2019)}"


def _place(rng: random.Random) -> str:
    return rng.choice(CITIES)


def correct(kind: str, value: str, answer: str) -> bool:
    """A code must appear exactly; a name by its surname; a date by day, month and year; a place by name."""
    low = answer.lower()
    if kind == "code":
        return value.lower() in low.replace(" ", "")
    if kind == "name":
        return value.split()[-1].lower() in low
    if kind == "date":
        day, month, year = value.split()
        import re

        return year in low and month.lower() in low and re.search(rf"\b{day}(st|nd|rd|th)?\b", low) is not None
    return value.lower() in low


@dataclass(frozen=True)
class Fact:
    kind: str
    statements: tuple[str, ...]  # phrasings of the fact, with {v}
    shared: str                  # a question sharing the fact's key words
    paraphrase: str              # a question sharing no content word with any phrasing


VALUES = {"code": _code, "name": _name, "date": _date, "place": _place}

SPLITS = {
    "train": [
        Fact("code", ("The access code for the north warehouse is {v}.",
                      "Staff enter the north warehouse with the access code {v}."),
             "What is the access code for the north warehouse?",
             "Which combination opens the storage depot in the northern district?"),
        Fact("code", ("The license key for the billing server is {v}.", "Use license key {v} on the billing server."),
             "What is the license key for the billing server?", "Which serial activates the invoicing machine?"),
        Fact("name", ("The release manager of the Atlas project is {v}.",
                      "{v} serves as release manager for the Atlas project."),
             "Who is the release manager of the Atlas project?",
             "Which person decides when the mapping toolkit gets published?"),
        Fact("name", ("The chief engineer of the Orion bridge was {v}.", "{v} was chief engineer of the Orion bridge."),
             "Who was the chief engineer of the Orion bridge?",
             "Which person led construction of that span over the river?"),
        Fact("date", ("The data center migration was completed on {v}.",
                      "On {v}, the data center migration was completed."),
             "When was the data center migration completed?", "On what day did the computers finish moving?"),
        Fact("date", ("The Copper Valley treaty was signed on {v}.", "On {v} the Copper Valley treaty was signed."),
             "When was the Copper Valley treaty signed?", "What day did that agreement become official?"),
        Fact("place", ("The backup servers are housed in {v}.", "{v} is where the backup servers are housed."),
             "Where are the backup servers housed?", "In which city do the spare machines sit?"),
        Fact("place", ("The annual conference will be held in {v}.", "This year the annual conference is held in {v}."),
             "Where will the annual conference be held?", "Which city hosts the yearly meeting?"),
    ],
    "heldout": [
        Fact("code", ("The door code of the east laboratory is {v}.", "The east laboratory opens with door code {v}."),
             "What is the door code of the east laboratory?", "Which combination unlocks the eastern lab?"),
        Fact("code", ("The wifi password at the Harbor Cafe is {v}.", "Guests at the Harbor Cafe use wifi password {v}."),
             "What is the wifi password at the Harbor Cafe?",
             "Which secret gets visitors online at the seaside coffee shop?"),
        Fact("name", ("The founder of the Willow Street bakery is {v}.", "{v} founded the Willow Street bakery."),
             "Who founded the Willow Street bakery?", "Which person started the bread shop on that tree-named road?"),
        Fact("name", ("The lead auditor for the Meridian account is {v}.", "{v} is lead auditor for the Meridian account."),
             "Who is the lead auditor for the Meridian account?",
             "Which person heads the financial review of that client?"),
        Fact("date", ("The museum's north wing reopened on {v}.", "On {v} the museum's north wing reopened."),
             "When did the museum's north wing reopen?",
             "What day were visitors first allowed back into that gallery section?"),
        Fact("date", ("The final firmware update was released on {v}.", "On {v} the final firmware update was released."),
             "When was the final firmware update released?", "What day did the last device patch ship?"),
        Fact("place", ("The company's new factory is being built in {v}.", "{v} is where the company's new factory is being built."),
             "Where is the company's new factory being built?", "In which town is the plant under construction?"),
        Fact("place", ("The rare manuscript is kept in {v}.", "{v} is where the rare manuscript is kept."),
             "Where is the rare manuscript kept?", "Which city holds the old handwritten book?"),
    ],
    # Written for issue 40's settings trial (seeds 31 and 32 choose, a later seed reports). Shares
    # no template with the two splits above, both of which have informed choices.
    "fresh": [
        Fact("code", ("The locker combination at the Pine Hill gym is {v}.",
                      "Members open the Pine Hill gym lockers with combination {v}."),
             "What is the locker combination at the Pine Hill gym?",
             "Which digits unlock the storage boxes where people exercise near the conifer slope?"),
        Fact("code", ("The tracking number for the Falcon shipment is {v}.",
                      "The Falcon shipment travels under tracking number {v}."),
             "What is the tracking number for the Falcon shipment?",
             "Which reference follows that parcel named after a bird of prey?"),
        Fact("name", ("The head gardener of the Ashford estate is {v}.",
                      "{v} works as head gardener of the Ashford estate."),
             "Who is the head gardener of the Ashford estate?",
             "Which person tends the plants on that country manor?"),
        Fact("name", ("The captain of the vessel Northern Star was {v}.",
                      "{v} was captain of the vessel Northern Star."),
             "Who was the captain of the vessel Northern Star?",
             "Which person commanded that ship named for a polar light?"),
        Fact("date", ("The Riverside library opened its doors on {v}.",
                      "On {v} the Riverside library opened its doors."),
             "When did the Riverside library open its doors?",
             "What day could readers first borrow books by the stream?"),
        Fact("date", ("The merger of Halden and Brook was announced on {v}.",
                      "On {v} the merger of Halden and Brook was announced."),
             "When was the merger of Halden and Brook announced?",
             "What day did those two firms say they would combine?"),
        Fact("place", ("The orchestra's summer tour begins in {v}.",
                       "{v} is where the orchestra's summer tour begins."),
             "Where does the orchestra's summer tour begin?",
             "In which city do the musicians start travelling when it gets warm?"),
        Fact("place", ("The satellite ground station is located in {v}.",
                       "{v} is where the satellite ground station is located."),
             "Where is the satellite ground station located?",
             "Which city has the dish that talks to spacecraft?"),
    ],
}


def make_document(tokenizer, text: str, tokens: int, depth: float, fact: str, rng: random.Random) -> str:
    """About `tokens` tokens of `text` from a seeded offset (wrapping), with `fact` on its own
    line at `depth` (at a line break)."""
    need_chars = tokens * 6
    while len(text) < need_chars * 2:
        text = text + "\n\n" + text
    start = rng.randrange(0, len(text) - need_chars)
    start = text.find("\n", start) + 1
    ids = tokenizer.encode(text[start:start + need_chars], add_special_tokens=False)[:tokens]
    body = tokenizer.decode(ids)
    cut = round(depth * len(body))
    line = body.rfind("\n", 0, cut)
    cut = line + 1 if line >= 0 else cut
    return body[:cut] + fact + "\n" + body[cut:]


# ------------------------------------------------------------------ running


def samples(split: str, n: int, seed: int = 0):
    """(sample index, fact, statement, value, source, depth) for `n` samples of a split."""
    facts = SPLITS[split]
    names = ("docs", "licenses", "code", "log")
    rng = random.Random(f"{split}-{seed}")
    for i in range(n):
        fact = facts[i % len(facts)]
        value = VALUES[fact.kind](rng)
        statement = fact.statements[(i // len(facts)) % len(fact.statements)].format(v=value)
        yield i, fact, statement[0].upper() + statement[1:], value, names[i % len(names)], (i + 0.5) / n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=sorted(SPLITS), default="train")
    parser.add_argument("--lengths", default="8k,32k")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", type=int, default=0,
                        help="run only the first N of the --samples prompts (same prompts, e.g. at 128k)")
    parser.add_argument("--profiles", default="auto,rag,full@2k",
                        help="comma-separated: a profile name, NAME:section.key=value[;...], or full@2k")
    parser.add_argument("--start", type=int, default=0,
                        help="skip the first N prompts (another process runs them: same --out, same answers)")
    parser.add_argument("--questions", default="shared,paraphrase",
                        help="which questions to ask: shared, paraphrase or both (comma-separated)")
    parser.add_argument("--max-new-tokens", type=int, default=24,
                        help="the answer's token limit (24: a fact fits; `ask`'s own default is 256)")
    parser.add_argument("--weights", default="auto",
                        help="the model's weight format (model.weights); auto: what a user gets without flags")
    parser.add_argument("--out", default="bench-out/facts")
    parser.add_argument("--plot", action="store_true", help="also write SPLIT.png (needs matplotlib)")
    parser.add_argument("--report", action="store_true",
                        help="run nothing: the table (and --plot) of every answer in --out's SPLIT.jsonl so far")
    args = parser.parse_args(argv)

    out = Path(args.out)
    if args.report:
        rows = {}
        for line in (out / f"{args.split}.jsonl").read_text().splitlines():
            row = json.loads(line)
            rows[row["profile"], row["length"], row["sample"], row["question"]] = row  # the latest answer
        print(table(list(rows.values())))
        if args.plot:
            plot(list(rows.values()), out / f"{args.split}.png")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    os.environ["LONGCHAT_HOME"] = str(out.resolve() / "home")
    from longchat import api
    from longchat.runtime.generate import Sampling
    from longchat.runtime.loader import load_model

    model = load_model("default", weights=args.weights)
    texts = haystacks()
    lengths = parse_lengths(args.lengths)
    sampling = Sampling(max_new_tokens=args.max_new_tokens)
    results = []
    done = set()  # answers already in the log (a run cut short goes on where it stopped)
    if (out / f"{args.split}.jsonl").exists():
        for line in (out / f"{args.split}.jsonl").read_text().splitlines():
            row = json.loads(line)
            done.add((row["profile"], row["length"], row["sample"], row["question"]))
    log = open(out / f"{args.split}.jsonl", "a")
    for spec in args.profiles.split(","):
        name, _, sets = spec.partition(":")
        ceiling = name == "full@2k"
        runner = api.open_runner("full" if ceiling else name, overrides=[s for s in sets.split(";") if s],
                                      loaded=model)
        for length in ([2048] if ceiling else lengths):
            for i, fact, statement, value, source, depth in samples(args.split, args.samples, args.seed):
                if args.only and i >= args.only:
                    break
                if i < args.start:
                    continue
                if all((spec, length, i, q) in done for q in args.questions.split(",")):
                    continue
                rng = random.Random(f"{args.split}-{args.seed}-{i}")
                # Leave room for the frame, question and answer at 2k.
                document = make_document(model.tokenizer, texts[source], length - (300 if ceiling else 0), depth,
                                         statement, rng)
                path = out / "docs" / f"{args.split}-{args.seed}-{i}-{length}.txt"
                path.parent.mkdir(exist_ok=True)
                path.write_text(document)
                for qkind, question in (("shared", fact.shared), ("paraphrase", fact.paraphrase)):
                    if qkind not in args.questions.split(",") or (spec, length, i, qkind) in done:
                        continue
                    start = time.perf_counter()
                    answer = api.ask(runner, [str(path)], question, sampling=sampling, cache=not ceiling)
                    row = {"split": args.split, "profile": spec, "length": length, "sample": i, "kind": fact.kind,
                           "source": source, "depth": round(depth, 3), "question": qkind, "value": value,
                           "answer": answer.strip(), "correct": correct(fact.kind, value, answer),
                           "read": runner.engine.stats.extra.get("read", "whole"),
                           "stop": runner.engine.stats.stop_reason, "weights": model.decoder.weight_format,
                           "pinned_holds_fact": pinned_holds(runner, value),
                           "focused": bool(getattr(infllm_of(runner), "focused", None)),  # the pinned block read alone
                           "seconds": round(time.perf_counter() - start, 2)}
                    results.append(row)
                    log.write(json.dumps(row) + "\n")
                    log.flush()
                    print(f"{spec:>24} {length:>7,} #{i} {fact.kind:<5} {source:<8} {qkind:<10} {row['read']:<8} "
                          f"{'ok ' if row['correct'] else 'MISS'} pinned={row['pinned_holds_fact']} focused={row['focused']} "
                          f"{row['answer'][:60]!r}",
                          file=sys.stderr)
    print(table(results))
    if args.plot:
        plot(results, out / f"{args.split}.png")
    return 0


def infllm_of(runner):
    """The runner's strategy, or `auto`'s inner one (the strategy that read the question)."""
    strategy = runner.engine.strategy
    return getattr(strategy, "inner", strategy)


def pinned_holds(runner, value: str) -> bool | None:
    """Whether the block InfLLM's re-ranking pinned for the last question (with the next one:
    a sentence may straddle two) holds the fact's value; None when no block was pinned (the
    answer read passages, lines or the whole prompt)."""
    strategy = infllm_of(runner)
    if not getattr(strategy, "pinned", None):
        return None
    spans = strategy.block_spans()
    block = strategy.pinned[0]
    a, b = spans[block][0], spans[min(block + 1, len(spans) - 1)][1]
    text = runner.tokenizer.decode(runner.engine.cached_ids[a:b])
    return value.lower() in text.lower()


def table(rows: list[dict]) -> str:
    """Markdown: accuracy per profile and length, for each question kind."""
    keys = sorted({(r["profile"], r["length"]) for r in rows}, key=lambda k: (k[0], k[1]))
    lines = ["| profile | length | shared key words | paraphrase | all | ended by the length limit |",
             "| --- | --- | --- | --- | --- | --- |"]
    for profile, length in keys:
        cells = []
        for q in ("shared", "paraphrase", None):
            got = [r["correct"] for r in rows if r["profile"] == profile and r["length"] == length
                   and (q is None or r["question"] == q)]
            cells.append(f"{sum(got)}/{len(got)}")
        stops = [r["stop"] for r in rows if r["profile"] == profile and r["length"] == length and "stop" in r]
        cells.append(f"{stops.count('length')}/{len(stops)}" if stops else "")
        lines.append(f"| {profile} | {length:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, q in zip(axes, ("shared", "paraphrase")):
        for profile in sorted({r["profile"] for r in rows}):
            pts = sorted({r["length"] for r in rows if r["profile"] == profile})
            acc = [sum(r["correct"] for r in rows if r["profile"] == profile and r["length"] == n and r["question"] == q)
                   / max(1, sum(1 for r in rows if r["profile"] == profile and r["length"] == n and r["question"] == q))
                   for n in pts]
            ax.plot(pts, acc, marker="o", label=profile)
        ax.set_xscale("log", base=2)
        ax.set_title(f"question: {q}")
        ax.set_xlabel("tokens")
    axes[0].set_ylabel("accuracy")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    sys.exit(main())
