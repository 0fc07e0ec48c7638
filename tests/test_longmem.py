"""The LongMemEval-style benchmark's own code (bench/longmem.py): histories, questions, scoring.

These check the benchmark, not the model; the one real run is marked slow.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))
import longmem  # the benchmark's own code
from longmem import ABILITIES, Question, captured, generate, score, says


def flat(h):
    return [(x.user, x.reply, x.at) for x in h.exchanges()], [(q.id, q.text, q.expected, q.at) for q in h.questions]


def test_history_is_the_same_for_a_seed_and_differs_between_seeds():
    assert flat(generate(1)) == flat(generate(1))
    assert flat(generate(1)) != flat(generate(2))
    # the same in another process (no hash-seeded set order leaks in)
    code = f"import sys; sys.path.insert(0, {str(BENCH)!r}); import longmem; print(len(longmem.generate(1).exchanges()), " \
           f"longmem.generate(1).exchanges()[-1].user)"
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={**os.environ, "PYTHONHASHSEED": str(n)}, check=True).stdout for n in (1, 2)}
    assert len(runs) == 1


@pytest.mark.parametrize("n", [1, 4, 10])
def test_each_ability_gets_its_questions(n):
    h = generate(2, n)
    assert Counter(q.ability for q in h.questions) == {a: n for a in ABILITIES}
    assert len(h.sessions) == 8 and h.days[0] == "2026-03-02" and h.days == sorted(h.days)
    said = " ".join(x.user for x in h.exchanges())
    last = max(x.at for x in h.exchanges())
    for q in h.questions:
        assert q.at > last
        if q.ability in ("extraction", "updates"):
            assert q.expected in said
        if q.ability == "updates":
            first = min(x.at for x in h.exchanges() if q.old in x.user)
            then = min(x.at for x in h.exchanges() if q.expected in x.user)
            assert first < then and q.old != q.expected
        if q.ability == "temporal":
            assert q.expected in h.days
        if q.ability == "multi":  # each item in its own session
            assert 2 <= int(q.expected) <= 4
        if q.ability == "abstention":  # never told: none of its slot's statements was made
            slot = next(s for s in longmem.SLOTS if s.question == q.text)
            for template in slot.says:
                assert max(template.split("{v}"), key=len) not in said
    multi = [p for p in h.planted if p.ability == "multi"]
    assert sum(int(q.expected) for q in h.questions if q.ability == "multi") == len(multi)


def test_histories_mix_chit_chat_runs_and_facts_in_passing():
    users = [x.user for x in generate(1).exchanges()]
    runs = [a.startswith("Tell me one short fact about the number") and b.startswith("Tell me one short fact about")
            for a, b in itertools.pairwise(users)]
    assert any(runs)
    assert any(u.endswith("?") and ". " in u for u in users)  # a fact said before a request


def q(ability="extraction", expected="Tampere", kind="text", old=None, candidates=()):
    return Question("x", ability, "?", expected, 0, old=old, kind=kind, candidates=list(candidates))


def test_score_numbers_as_digits_or_words():
    assert score(q("multi", "3", "number"), "You told me about three countries.")["ok"]
    assert score(q("multi", "3", "number"), "You visited 3 countries.")["ok"]
    assert not score(q("multi", "3", "number"), "You visited 13 countries.")["ok"]
    assert not score(q("multi", "3", "number"), "On 2026-03-03 you said ...")["ok"]
    assert score(q("updates", "25", "number"), "Twenty-five kilometres a week.")["ok"]
    assert score(q("updates", "900", "number"), "Your rent is 900 euros.")["ok"]


def test_score_dates_in_a_few_formats():
    d = q("temporal", "2026-03-03", "date")
    for reply in ("On March 3.", "on 3 March", "You started on Mar 3rd!", "It was 2026-03-03.", "the 3rd of March"):
        assert score(d, reply)["ok"], reply
    for reply in ("On March 13.", "On April 3.", "2026-03-30", "In March."):
        assert not score(d, reply)["ok"], reply


def test_text_is_matched_as_whole_words_case_insensitive():
    assert score(q(), "You live in TAMPERE now.")["ok"]
    assert not score(q(expected="Cork"), "You like corkscrews.")["ok"]
    assert score(q(expected="oat latte"), "An oat latte, I think.")["ok"]


def test_stale_is_the_earlier_value_without_the_later():
    up = q("updates", "Tampere", old="Cork")
    assert score(up, "You live in Cork.")["stale"] and not score(up, "You live in Cork.")["ok"]
    both = score(up, "You moved from Cork to Tampere.")
    assert both["ok"] and not both["stale"]
    assert not score(up, "You live in Paris.")["stale"]


def test_abstention_needs_a_refusal_that_names_no_candidate():
    ab = q("abstention", None, candidates=["Alma", "Maria"])
    for reply in ("I don't know your brother's name.", "You haven't told me that.", "You never mentioned a brother.",
                  "I have no information about your brother."):
        s = score(ab, reply)
        assert s["ok"] and not s["invented"] and s["abstained"], reply
    for reply in ("Your brother's name is John.", "I don't know, maybe Alma?", "Alma."):
        s = score(ab, reply)
        assert not s["ok"] and s["invented"], reply
    assert score(q(), "I don't know.")["abstained"] and not score(q(), "I don't know.")["ok"]


def test_pattern_copies_and_does_not_fit():
    assert score(q(), "The number 7 is odd and a prime number.")["pattern"]
    assert score(q(), "One interesting fact about Tampere: it is a city.")["pattern"]
    assert not score(q(), "You live in Tampere.")["pattern"]
    assert not score(q("multi", "3", "number"), "The number of countries is 3.")["pattern"]
    missing = score(q(), None)
    assert not missing["fits"] and not missing["ok"]


def test_capture_matches_planted_values_in_stored_facts():
    h = generate(1, 2)
    facts = [{"content": p.text} for p in h.planted[:3]]
    got = captured(h.planted, facts)
    assert got[:3] == [True, True, True] and len(got) == len(h.planted)
    assert not any(captured(h.planted, [{"content": "I like trains."}]))


def test_says_the_date_forms():
    assert says("2026-3-3", "2026-03-03", "date") and not says("2026-03-04", "2026-03-03", "date")
    assert datetime.strptime(generate(1).days[0], "%Y-%m-%d").weekday() == 0  # 2026-03-02, a Monday


def test_heldout_needs_fresh_seeds(capsys):
    with pytest.raises(SystemExit):
        longmem.main(["--split", "heldout"])
    with pytest.raises(SystemExit):
        longmem.main(["--split", "heldout", "--seed", "1"])
    with pytest.raises(SystemExit):
        longmem.main(["--split", "train", "--seed", "5"])
    with pytest.raises(SystemExit):
        longmem.main(["--systems", "longchat,nope"])


@pytest.mark.slow
def test_a_small_real_run(tmp_path):
    """One question per ability, longchat and words, on the bundled model."""
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(BENCH / "longmem.py"), "--split", "train",
                           "--per-ability", "1", "--systems", "longchat,words", "--out", str(out)],
                          capture_output=True, text=True, timeout=1800, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| extraction |" in proc.stdout
    result = json.loads((out / "train-1-2-n1.json").read_text())
    assert result["seeds"] == [1, 2]
    for run in result["runs"]:
        for system in ("longchat", "words"):
            answers = run["systems"][system]["answers"]
            assert [a["ability"] for a in answers] == list(ABILITIES)
            assert all(isinstance(a["reply"], str) for a in answers)
    assert result["table"]["longchat"]["capture"][1] == sum(len(r["planted"]) for r in result["runs"])
