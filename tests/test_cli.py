"""The CLI as a user drives it, on the real default model (SmolLM2-135M, CPU).

Answers are real model output: the checks look for a fact only the document states (a code
word, a name, a year), never a word the question already gives away. `main` runs in-process on
the session's loaded model (`reuse_model`); test_installed_entry_point_runs is the real process,
and the long ask past the window is first interrupted in a real process.
"""

from __future__ import annotations

import io
import json
import random
import re
import subprocess
import sys
import time

import pytest

from conftest import check_speeds, popen_logged, sigint_when
from longchat.bench.needles import prose_sentence
from longchat.cli import main
from longchat.errors import EXIT_CONFIG, EXIT_INPUT, EXIT_INTERRUPTED, EXIT_MODEL

FACTS = ("The museum opened in 1897. Its first curator was Helena Marsh, who collected Roman coins. "
         "The secret code word of the museum is PELICAN.\n")
QUESTION = "What is the secret code word of the museum?"

pytestmark = pytest.mark.usefixtures("reuse_model")


def run(capsys, *args, stdin: str | None = None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def make_pdf(path, pages, padding: int = 0):
    """`padding`: bytes of metadata that are no page's text (as fonts and images are)."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_subject("x" * padding)
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    pdf.output(str(path))
    return path


@pytest.fixture
def facts_file(tmp_path):
    path = tmp_path / "museum.txt"
    path.write_text(FACTS)
    return path


def tokens(reuse_model, text: str) -> int:
    return len(reuse_model.tokenizer.encode(text, add_special_tokens=False))


def test_ask_text_file_with_stats(home, facts_file, capsys, reuse_model):
    start = time.perf_counter()
    code, out, err = run(capsys, "ask", str(facts_file), QUESTION, "--max-new-tokens", "24", "--stats")
    wall_s = time.perf_counter() - start
    assert code == 0, err
    assert "PELICAN" in out.upper()
    stats = json.loads(err.strip().splitlines()[-1])
    for key in ("prompt_tokens", "prefill_s", "new_tokens", "decode_s", "peak_rss_mb", "profile", "model"):
        assert key in stats
    assert stats["profile"] == "auto" and stats["strategy_used"] == "full"
    assert "using full attention" in err  # auto says what it chose
    # The counts are the tokens really read and written: the whole document and the question
    # (plus the chat template's few dozen), and the reply on stdout (the stop token not counted).
    asked = tokens(reuse_model, FACTS) + tokens(reuse_model, QUESTION)
    assert asked < stats["prompt_tokens"] <= asked + 64 and stats["reused_tokens"] == 0
    assert stats["new_tokens"] == tokens(reuse_model, out.strip()) and stats["stop_reason"] in ("eos", "length")
    assert stats["new_tokens"] <= 24 and (stats["new_tokens"] == 24) == (stats["stop_reason"] == "length")
    assert stats["stops"] == {stats["stop_reason"]: 1}  # one reply, counted by how it ended
    # How the model was held, and what the peak is made of: the process before the weights,
    # the weights, full attention's cache (the whole prompt + reply, at its format's width), the rest.
    dec = reuse_model.decoder
    assert stats["weights"] == dec.weight_format and stats["kv"] in ("bf16", "fp32")
    mem = stats["memory_mb"]
    assert mem["weights"] == round(dec.weight_bytes / 2**20, 1) and mem["floor"] > 100
    cfg = reuse_model.cfg
    per_token = 2 * cfg.n_layers * cfg.n_kv_heads * cfg.head_dim * (2 if stats["kv"] == "bf16" else 4) / 2**20
    assert (stats["prompt_tokens"] + stats["new_tokens"]) * per_token <= mem["kv_cache"] <= 2 * (stats["prompt_tokens"] + 24) * per_token
    assert mem["working"] >= 0 and abs(sum(mem.values()) - stats["peak_rss_mb"]) < 1
    check_speeds(stats, wall_s)


def test_ask_pdf(home, tmp_path, capsys):
    pdf = make_pdf(tmp_path / "report.pdf", ["Annual report of the Harbor Museum.",
                                             FACTS.replace("\n", " ")])
    code, out, err = run(capsys, "ask", str(pdf), QUESTION, "-n", "24")
    assert code == 0, err
    assert "PELICAN" in out.upper()


def test_ask_directory(home, tmp_path, capsys):
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    (repo / "docs" / "museum.md").write_text(FACTS)
    (repo / "main.py").write_text("print('hello')\n")
    (repo / ".gitignore").write_text("secret.txt\n")
    (repo / "secret.txt").write_text("The secret code word of the museum is WALRUS.\n")
    code, out, err = run(capsys, "ask", str(repo), QUESTION, "-n", "24")
    assert code == 0, err
    assert "PELICAN" in out.upper() and "WALRUS" not in out.upper()


def test_ask_stdin_json(home, capsys, monkeypatch, reuse_model):
    # (the bundled model's answer to "Who was the first curator?" is a greedy tie here: it flips
    # between "Helena Marsh" and "not mentioned" with the attention's rounding)
    code, out, err = run(capsys, "ask", "-", QUESTION, "--json", "-n", "24", stdin=FACTS, monkeypatch=monkeypatch)
    assert code == 0, err
    record = json.loads(out)
    assert "PELICAN" in record["answer"].upper()
    assert record["stats"]["prompt_tokens"] > tokens(reuse_model, FACTS)  # stdin was read whole


def test_summarize_stdin(home, capsys, monkeypatch):
    code, out, err = run(capsys, "summarize", "-n", "48", stdin=FACTS, monkeypatch=monkeypatch)
    assert code == 0, err
    # A fact only the document holds (not "museum": a summary of nothing in particular could say it)
    assert any(fact in out for fact in ("1897", "Helena Marsh", "Roman coins", "PELICAN")), out


def test_summarize_is_hierarchical_past_the_window(home, tmp_path, capsys):
    # ~880 tokens with a 400-token effective window (chunks of ~300 tokens once the merge
    # prompt and the reply have their room): three chunk summaries, then a merge.
    text = "".join(f"Day {i}: the ship sailed {i * 3} miles north and the crew caught {i} fish.\n"
                   for i in range(1, 40))
    path = tmp_path / "log.txt"
    path.write_text(text)
    code, out, err = run(capsys, "summarize", str(path), "-n", "40", "--stats",
                         "--set", "context.effective_window=400")
    assert code == 0, err
    assert "2 chunks summarised" in err, err  # (then the last one, and the merge)
    # Progress on a stderr that is not a terminal: plain lines, each with its percent
    # (test_cli_edges.py checks that --quiet drops them).
    lines = re.findall(r"summarising [\d.,]+ [KM]?B/[\d.,]+ [KM]?B \((\d+)%, \d+ chunks? summarised", err)
    assert lines and all(0 < int(p) <= 100 for p in lines), err
    assert "()" not in err and "(10%, )" not in err
    stats = json.loads(err.strip().splitlines()[-1])
    assert stats["prompt_tokens"] > 880  # every chunk was read, plus the merge prompt
    # How the replies ended, one count each: three chunk notes and at least one merge.
    assert stats["stop_reason"] == "done" and set(stats["stops"]) <= {"eos", "repeat", "length"}
    assert sum(stats["stops"].values()) >= 4, stats["stops"]
    assert out.strip()


def test_summarize_counts_a_pdfs_progress_in_its_text(cli_in, tmp_path, reuse_model):
    """Issue 42: a PDF's progress was counted against the file's bytes (fonts, layout), so it
    said 25% and a long ETA, then finished. It counts the extracted text now."""
    from longchat.api import iter_pieces
    from longchat.memory.store import human_bytes

    days = [f"Day {i}: the ship sailed {i * 3} miles north and the crew caught {i} fish." for i in range(1, 40)]
    path = make_pdf(tmp_path / "log.pdf", ["\n".join(days[i:i + 10]) for i in range(0, len(days), 10)],
                    padding=20_000)
    text_bytes = sum(len(piece.encode()) for piece, _ in iter_pieces([str(path)]))
    assert path.stat().st_size > 3 * text_bytes  # the file's bytes say little of its text
    got, out, err = cli_in("summarize", str(path), "-n", "8", "--set", "context.effective_window=400")
    assert got == 0 and out.strip(), err
    lines = re.findall(r"summarising ([\d.,]+ [KM]?B)/([\d.,]+ [KM]?B) \((\d+)%", err)
    assert lines, err
    assert {total for _, total, _ in lines} == {human_bytes(text_bytes)}, err
    assert max(int(p) for _, _, p in lines) >= 50, err  # two of three chunks done: not 25%


def test_too_long_input_is_refused_then_truncated_with_warning(home, tmp_path, capsys):
    path = tmp_path / "long.txt"
    path.write_text("The grass is green. " * 400 + FACTS)
    code, out, err = run(capsys, "ask", str(path), QUESTION, "-p", "full", "--set", "context.window=512")
    assert code == EXIT_INPUT and out == ""
    assert "tokens but profile 'full' leaves room for" in err and "--truncate" in err
    assert len(err.strip().splitlines()) == 1
    code, out, err = run(capsys, "ask", str(path), QUESTION, "-p", "full", "--set", "context.window=512", "--truncate",
                         "-n", "8")
    assert code == 0 and "warning: the input is" in err and "dropped the rest" in err


def test_ask_refuses_at_once_an_input_whose_memory_cannot_fit(home, tmp_path, capsys, monkeypatch):
    """Past the window without the cache, the blocks go to RAM: checked before the long read."""
    from longchat import sysinfo

    monkeypatch.setattr(sysinfo, "available_ram", lambda: 1_000_000)  # 1 MB: not even a 10k-token input
    path = tmp_path / "long.txt"
    path.write_text("The grass is green. The sky is blue. " * 1200 + FACTS)
    # (passages_past=0: InfLLM reads the whole input even though the question's words match it)
    code, out, err = run(capsys, "ask", str(path), QUESTION, "--no-cache", "--set", "strategy.passages_past=0")
    assert code == EXIT_INPUT and out == ""
    assert "GB of memory blocks in RAM, but 0.0 GB is available; set infllm.disk=true" in err
    assert "using infllm" in err and "tokens (" not in err  # refused before any progress


@pytest.mark.parametrize("args, code, message", [
    (["ask", "/no/such/file.txt", "q"], EXIT_INPUT, "no such file or directory"),
    (["ask", "{empty}", "q"], EXIT_INPUT, "the input is empty"),
    (["ask", "{facts}", "q", "--profile", "nope"], EXIT_CONFIG, "unknown profile 'nope'"),
    (["ask", "{facts}", "q", "--set", "generation.top_p=2"], EXIT_CONFIG, "top_p must be"),
    (["ask", "{facts}", "q", "--model", "/no/model"], EXIT_MODEL, "no such model"),
    (["ask", "{broken_pdf}", "q"], EXIT_INPUT, "not a readable PDF"),
])
def test_bad_input_gives_one_line(home, tmp_path, capsys, facts_file, args, code, message):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"this is not a pdf at all")
    args = [a.format(empty=empty, facts=facts_file, broken_pdf=broken) for a in args]
    got, out, err = run(capsys, *args)
    assert got == code
    assert out == ""
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_installed_entry_point_runs(home):
    proc = subprocess.run([sys.executable, "-m", "longchat", "profiles"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "full" in proc.stdout


def test_ask_past_the_window_switches_to_infllm_and_finds_the_needle(home, cli, tmp_path, capsys):
    # ~4.9k tokens of varied prose, past the model's effective window (3,072): `auto` reads it
    # with InfLLM, the fact mid-way, in its memory blocks (~3.7k tokens of them, 8 retrieved
    # of ~29; the local window holds the last 1,024). Past 4,096 tokens, so progress prints.
    # (passages_past=0: the question's words would otherwise send it to BM25's passages.)
    # Retrieval from ~100k tokens: test_ask_a_100k_token_book (slow).
    rng = random.Random(1)
    prose = [prose_sentence(rng) for _ in range(260)]
    prose.insert(130, FACTS.strip())
    path = tmp_path / "long.txt"
    path.write_text(" ".join(prose))
    args = ("ask", str(path), QUESTION, "-n", "24", "--stats", "--set", "strategy.passages_past=0")
    # First a real process, sent SIGINT (Ctrl-C) once a progress line shows its read under way:
    # exit 130 and one line. What it leaves (the ask cache's folder, its lock) must not change
    # what the rerun below answers. (SIGINT during an ingest: test_cli_edges.py.)
    proc, err_file = popen_logged(cli, tmp_path, *args)
    err = sigint_when(proc, err_file, r"reading [\d,]+/")
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert "longchat: interrupted" in err and "Traceback" not in err and proc.stdout.read() == b""
    assert "using infllm" in err
    code, out, err = run(capsys, *args)
    assert code == 0, err
    assert "using infllm" in err  # the choice, then plain progress lines with percent, rate and time left
    assert re.search(r"reading [\d,]+/[\d,]+ tokens \(\d+%, [\d,]+ tokens/s, ETA \d+", err), err
    assert "PELICAN" in out.upper()
    stats = json.loads(err.strip().splitlines()[-1])
    assert stats["strategy_used"] == "infllm" and stats["prompt_tokens"] > 4500  # all of it was read


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["txt", "pdf"])
def test_ask_a_100k_token_book(home, tmp_path, capsys, kind):
    # ~100k tokens of prose with one fact in the middle: a text file, and a ~250-page PDF.
    rng = random.Random(7)
    prose = [prose_sentence(rng) for _ in range(5600)]
    prose.insert(3100, FACTS.strip())
    if kind == "txt":
        path = tmp_path / "book.txt"
        path.write_text(" ".join(prose))
    else:
        path = make_pdf(tmp_path / "book.pdf", [" ".join(prose[i : i + 22]) for i in range(0, len(prose), 22)])
    code, out, err = run(capsys, "ask", str(path), QUESTION, "-n", "24", "--stats", "--set", "strategy.passages_past=0")
    assert code == 0, err
    assert "using infllm" in err and "PELICAN" in out.upper()
    assert json.loads(err.strip().splitlines()[-1])["prompt_tokens"] > 95000
