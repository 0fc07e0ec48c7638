"""The ask history (`longchat logs`): every answered ask recorded in SQLite with its answer,
sources, profile and timings; searched, listed, and switched off, as a user drives it."""

from __future__ import annotations

import json

import pytest

from longchat.cli import main
from test_cli import FACTS, QUESTION


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.usefixtures("reuse_model")
def test_asks_are_recorded_searched_and_can_be_left_out(home, tmp_path, capsys, cli):
    museum = tmp_path / "museum.txt"
    museum.write_text(FACTS)
    code, out, err = run(capsys, "ask", str(museum), QUESTION, "-n", "16")
    assert code == 0, err
    answer = out.strip()
    code, _, err = run(capsys, "ask", str(museum), "Who was the first curator?", "-n", "16", "--no-log")
    assert code == 0, err

    code, out, err = cli("logs", "--json")  # a real process reads what the asks wrote
    assert code == 0, err
    (asked,) = json.loads(out)
    assert asked["question"] == QUESTION and asked["answer"] == answer
    assert asked["inputs"] == [str(museum)] and asked["profile"] == "auto"
    assert asked["sources"] == [{"file": str(museum), "lines": [1, 1]}]
    assert asked["new_tokens"] > 0 and asked["seconds"] > 0 and asked["stats"]["prompt_tokens"] > 0

    code, out, _ = cli("logs", "-q", "secret code word")
    assert code == 0 and QUESTION in out and "Sources: " in out
    code, out, err = cli("logs", "-q", "zebra")
    assert code == 0 and out == "" and "no asks match" in err

    code, _, err = cli("logs", "off")
    assert code == 0 and "no longer recorded" in err
    code, _, err = run(capsys, "ask", str(museum), "When did the museum open?", "-n", "16")
    assert code == 0, err
    assert len(json.loads(cli("logs", "--json")[1])) == 1
    cli("logs", "on")
    code, out, _ = cli("logs", "path")
    assert code == 0 and out.strip().endswith("history.db")


def test_logs_before_any_ask(cli):
    code, out, err = cli("logs", "--json")
    assert code == 0 and out.strip() == "[]" and "no asks recorded yet" in err
    code, _, err = cli("logs", "-n", "0")
    assert code == 2 and "Traceback" not in err
