"""Citations: where an answer's text came from (file and lines, PDF pages), from `ask --json`'s
`sources`, `ask --cite` and the reading's info, on the real bundled model and real files."""

from __future__ import annotations

import json
import random

import pytest

from longchat.cli import main
from longchat.text.cite import Cited, cite, cite_lines, describe, quoted
from test_cli import make_pdf

CODE = "The vault access code assigned to Marlow Quigley is ZX-4471."
CODE_Q = "What is the vault access code assigned to Marlow Quigley?"


@pytest.fixture(scope="module")
def tok():
    from longchat.runtime.loader import load_tokenizer

    return load_tokenizer()


def decode(tok):
    return lambda ids: tok.decode(ids, skip_special_tokens=True)


JOINED = ("### File: src/a.py\nimport os\n\ndef f():\n    return 1\n\n"
          "### File: book.pdf\n[Page 1]\nhello world\n[Page 2]\nthe secret is 42\nmore text\n[Page 3]\nend\n")


def span_of(tok, ids, words: str) -> tuple[int, int]:
    """The token span of `ids` whose text first holds `words`."""
    for end in range(len(ids) + 1):
        if words in tok.decode(ids[:end]):
            start = end
            while words not in tok.decode(ids[start:end]):
                start -= 1
            return start, end
    raise AssertionError(words)


def test_spans_are_cited_by_file_line_and_page(tok):
    ids = tok.encode(JOINED, add_special_tokens=False)
    assert describe(cite(decode(tok), ids, 0, [span_of(tok, ids, "secret is 42")])) == "book.pdf p. 2"
    assert describe(cite(decode(tok), ids, 0, [span_of(tok, ids, "return 1")])) == "src/a.py:4"
    assert describe(cite(decode(tok), ids, 0, [(0, len(ids))])) == "src/a.py:1-4; book.pdf pp. 1-3"


def test_one_unnamed_source_takes_the_label_and_far_lines_are_two_ranges(tok):
    text = "".join(f"line {i}\n" for i in range(1, 101))
    ids = tok.encode(text, add_special_tokens=False)
    spans = [span_of(tok, ids, "line 3\n"), span_of(tok, ids, "line 90\n")]
    got = cite(decode(tok), ids, 0, spans, label="x.txt")
    assert [c.as_dict() for c in got] == [{"file": "x.txt", "lines": [3, 3]}, {"file": "x.txt", "lines": [90, 90]}]
    assert Cited.from_dict(got[1].as_dict()) == got[1]


def test_chosen_lines_are_cited(tok):
    assert describe(cite_lines(JOINED, {3, 11})) == "src/a.py:3; book.pdf p. 2"


def test_quoted_finds_the_line_the_answer_repeats(tok):
    text = "alpha beta gamma.\nThe code is ZX-4471 for the vault.\nomega psi.\n"
    ids = tok.encode(text, add_special_tokens=False)
    answer = tok.encode("The vault code is ZX-4471.", add_special_tokens=False)
    (a, b), = quoted(ids, [(0, len(ids))], answer)
    assert "ZX-4471" in tok.decode(ids[a:b])
    assert quoted(ids, [(0, len(ids))], tok.encode("nothing alike here", add_special_tokens=False)) == []


# ---------------------------------------------------------------- the real model, as a user asks


def prose(n_lines: int, seed: int) -> list[str]:
    from longchat.bench.realtext import docstrings

    rng = random.Random(seed)
    lines = [line.strip() for line in docstrings().splitlines() if len(line.strip()) > 40]
    start = rng.randrange(len(lines) - n_lines)
    return lines[start:start + n_lines]


def ask_json(capsys, *args) -> dict:
    code = main(["ask", *args, "--json", "--max-new-tokens", "24"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


@pytest.mark.usefixtures("reuse_model")
def test_ask_json_cites_the_file_and_line_of_a_planted_fact(home, tmp_path, capsys):
    folder = tmp_path / "proj"
    folder.mkdir()
    for i in range(3):
        lines = prose(120, i)
        if i == 1:
            lines.insert(70, CODE)  # line 71 of notes1.md
        (folder / f"notes{i}.md").write_text("\n".join(lines) + "\n")
    reply = ask_json(capsys, str(folder), CODE_Q)
    assert "ZX-4471" in reply["answer"]
    assert reply["sources"], reply
    hit = [s for s in reply["sources"] if s["file"].endswith("proj/notes1.md")]
    assert hit and any(s["lines"][0] <= 71 <= s["lines"][1] for s in hit), reply["sources"]


@pytest.mark.usefixtures("reuse_model")
def test_ask_json_and_cite_name_the_pdf_page_of_a_planted_fact(home, tmp_path, capsys):
    pages = [" ".join(prose(30, 10 + p)) for p in range(12)]
    pages[6] = pages[6][:1500] + "\n" + CODE + "\n" + pages[6][1500:]  # page 7, a line of its own
    pdf = make_pdf(tmp_path / "manual.pdf", pages)
    reply = ask_json(capsys, str(pdf), CODE_Q)
    assert "ZX-4471" in reply["answer"]
    assert {"file": str(pdf), "pages": [7, 7]} in reply["sources"], reply["sources"]
    code = main(["ask", str(pdf), CODE_Q, "--cite", "--max-new-tokens", "24"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.rstrip().endswith(f"Sources:\n  {pdf} p. 7"), out


def test_the_question_restated_in_the_answer_does_not_decide_the_citation(tok):
    text = "# The Log of Gull Rock Lighthouse\n\nIntro line.\nThe first keeper was Margaret Hale.\n"
    ids = tok.encode(text, add_special_tokens=False)
    answer = tok.encode("The first keeper of Gull Rock Lighthouse was Margaret Hale.", add_special_tokens=False)
    question = tok.encode("Who was the first keeper of Gull Rock Lighthouse?", add_special_tokens=False)
    runs = quoted(ids, [(0, len(ids))], answer, asked=question)
    assert describe(cite(decode(tok), ids, 0, runs, label="log.md")) == "log.md:4"
