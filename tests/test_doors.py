"""Every door reads a long input as `ask` does (longchat/reading.py), through real processes on
the bundled model: `chat --file`, `/file`, and a long message to `longchat serve`.

One ~8k-token document of real prose (the standard library's docstrings, cut as
bench/facts.py's `make_document` cuts its haystacks) holds two facts far apart. Past `auto`'s
~4k tokens, a question sharing a fact's words reads BM25's best passage (~200 tokens), so
each reply costs a short prefill, not 8k tokens of InfLLM.
"""

from __future__ import annotations

import importlib.util
import json
import random
import shlex
import sys
from pathlib import Path

import pytest

from test_serve import cli, serve_home, server, tokenizer  # noqa: F401  (module-scoped fixtures)

DOOR = "The door code of the east laboratory is P8-1212."
DOOR_Q = "What is the door code of the east laboratory?"
BAKERY = "The founder of the Willow Street bakery is Helena Solvang."
BAKERY_Q = "Who founded the Willow Street bakery?"
N = "24"  # --max-new-tokens: the answer sentence takes ~16


def bench_facts():
    """bench/facts.py (a script, not a package module), for its `make_document`."""
    path = Path(__file__).resolve().parents[1] / "bench" / "facts.py"
    spec = importlib.util.spec_from_file_location("bench_facts", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_facts", module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def document(tmp_path_factory, tokenizer) -> Path:  # noqa: F811
    """~8k tokens of docstrings, the door code half-way, the bakery's founder at 80%."""
    from longchat.bench.realtext import docstrings  # = haystacks()["docs"], without the other three

    text = bench_facts().make_document(tokenizer, docstrings(), 8000, 0.5, DOOR, random.Random(0))
    cut = text.find("\n", round(0.8 * len(text))) + 1  # at a line break, as make_document places a fact
    text = text[:cut] + BAKERY + "\n" + text[cut:]
    assert 7500 < len(tokenizer.encode(text, add_special_tokens=False)) < 8500
    path = tmp_path_factory.mktemp("doors") / "doc.txt"
    path.write_text(text)
    return path


def stats_lines(err: str) -> list[dict]:
    """The --stats JSON lines on stderr, one a reply."""
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def reads_passages(stats: dict) -> bool:
    return stats["read"] == "passages" and stats["input_tokens"] > 7000 and stats["read_tokens"] < 2000


# ---------------------------------------------------------------- chat


@pytest.fixture(scope="module")
def file_chat(cli, document):  # noqa: F811
    """`chat --file` from a pipe, two questions (one process: the model loads once):
    (stdout, stderr)."""
    code, out, err = cli("chat", "--file", document, "--stats", "--max-new-tokens", N,
                         input=f"{DOOR_Q}\n{BAKERY_Q}\n")
    assert code == 0, err
    return out, err


def test_chat_file_reads_the_best_passage_as_ask_does(file_chat):
    out, err = file_chat
    assert "P8-1212" in out.split("\n", 1)[0]  # the first reply (one line)
    assert "reading its best" in err and "(1 passage, BM25)" in err, err
    first = stats_lines(err)[0]
    assert reads_passages(first), first
    assert first["strategy_used"] == "full" and first["prompt_tokens"] < 2000


def test_chat_file_second_question_reads_its_own_passage(file_chat):
    out, err = file_chat
    second = stats_lines(err)[-1]
    assert len(stats_lines(err)) == 2 and reads_passages(second), err
    reply = out.partition("P8-1212")[2]  # what follows the first reply's answer
    assert "Solvang" in reply, out


def test_slash_file_reads_the_best_passage(cli, document):  # noqa: F811
    code, out, err = cli("chat", "--max-new-tokens", N, input=f"/file {shlex.quote(str(document))}\n{DOOR_Q}\n")
    assert code == 0, err
    assert "attached" in err and "reading its best" in err, err
    assert "P8-1212" in out


# ---------------------------------------------------------------- serve


@pytest.fixture(scope="module")
def long_message(document) -> list[dict]:
    return [{"role": "user", "content": document.read_text() + "\n\n" + DOOR_Q}]


@pytest.fixture(scope="module")
def served_reply(server, long_message):  # noqa: F811
    return server.client().chat.completions.create(model=server.model, messages=long_message, max_tokens=24,
                                                   temperature=0)


def test_serve_reads_a_long_message_as_ask_does(served_reply):
    reply = served_reply
    assert "P8-1212" in reply.choices[0].message.content
    read = reply.model_extra["longchat"]["reading"]
    assert reads_passages(read), read
    assert read["pieces"] == 1
    assert read["sources"] and all(s["file"] is None and s["lines"] for s in read["sources"])  # lines of the message
    assert reply.usage.model_extra["longchat"] == read
    assert reply.usage.prompt_tokens < 2000  # the passage, not the 8k tokens


def test_serve_streams_the_reading_in_the_usage_chunk(server, long_message, served_reply):  # noqa: F811
    chunks = list(server.client().chat.completions.create(
        model=server.model, messages=long_message, max_tokens=24, temperature=0, stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "P8-1212" in text
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.model_extra["longchat"] == served_reply.model_extra["longchat"]["reading"]
    assert last.usage.model_extra["longchat"]["read"] == "passages"
    # The same request again reads nothing new (issue 42: "cached_tokens 0" for a 9k request sent twice)
    assert last.usage.prompt_tokens_details.cached_tokens >= last.usage.prompt_tokens - 1, last.usage
