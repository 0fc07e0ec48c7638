"""The CLI at its edges, as a user meets it: real signals, real files, and for each command one
real subprocess (the installed entry point, exit codes and stderr as a shell sees them); the
other argument and usage checks run the same `main` in-process (`conftest.InProcessCLI`).

Each bad input must give its documented exit code, a message on stderr (one `longchat: error:`
line, or click's usage block for a usage mistake), no traceback and nothing on stdout.
FIFOs, stdin and encodings are in test_edges_sources.py; broken memories in test_edges_memories.py;
SIGINT during `ask` in test_cli.py (test_ask_past_the_window_switches_to_infllm_and_finds_the_needle
interrupts a real process reading its long input, then checks what the rerun answers).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from conftest import one_line_error, popen_logged, sigint_when
from longchat.errors import (EXIT_CODES, EXIT_CONFIG, EXIT_ENV, EXIT_INPUT, EXIT_INTERRUPTED, EXIT_MODEL, EXIT_STORE,
                             EXIT_USAGE)

FACTS = "The lighthouse keeper of Gull Rock was Margaret Hale. She lit the lamp every night for thirty years.\n"
README = Path(__file__).resolve().parents[1] / "README.md"

# (arguments, exit code, what stderr says). {facts}, {binary}, {empty_dir} are files made per test.
CORPUS = [
    (["ask"], EXIT_USAGE, "Missing argument 'QUESTION'"),
    (["ask", "--bogus", "{facts}", "q"], EXIT_USAGE, "No such option: --bogus"),
    (["bogus"], EXIT_USAGE, "No such command 'bogus'"),
    (["ask", "-n", "abc", "{facts}", "q"], EXIT_USAGE, "Invalid value for '--max-new-tokens'"),
    (["ask", "{facts}"], EXIT_USAGE, "the question is missing"),
    (["ask", "--memory", "m", "{facts}", "q"], EXIT_USAGE, "not both"),
    (["ask", "{facts}", "q", "--device", "bogus"], EXIT_USAGE, "expected cpu, cuda, cuda:N"),
    (["compress", "{facts}", "--target-tokens", "0"], EXIT_USAGE, "--target-tokens"),
    (["ingest", "{facts}", "--checkpoint-every", "0"], EXIT_USAGE, "--checkpoint-every"),
    (["memories", "rm"], EXIT_USAGE, "Missing argument 'NAME'"),
    (["ask", "/no/such/file.txt", "q"], EXIT_INPUT, "no such file or directory: '/no/such/file.txt'"),
    (["summarize", "/no/such/file.txt"], EXIT_INPUT, "no such file or directory"),
    (["ingest", "/no/such/dir/"], EXIT_INPUT, "no such file or directory"),
    (["compress", "/no/such/file.txt"], EXIT_INPUT, "no such file or directory"),
    (["ask", "-", "-", "q"], EXIT_INPUT, "stdin ('-') can be given only once"),
    (["ask", "{binary}", "q"], EXIT_INPUT, "looks like a binary file"),
    (["ask", "{empty_dir}", "q"], EXIT_INPUT, "the input is empty"),
    (["ingest", "{facts}", "--name", "../up"], EXIT_USAGE, "bad memory name"),
    (["ask", "{facts}", "q", "-p", "nope"], EXIT_CONFIG, "unknown profile 'nope'"),
    (["ask", "{facts}", "q", "--set", "nosuch.key=1"], EXIT_CONFIG, "unknown section 'nosuch'"),
    (["ask", "{facts}", "q", "--set", "infllm.topk=-1"], EXIT_CONFIG, "topk"),
    (["ask", "{facts}", "q", "--set", "generation.top_p=2"], EXIT_CONFIG, "top_p must be"),
    (["ask", "--memory", "nope", "q"], EXIT_STORE, "no memory named 'nope'"),
    (["memories", "show", "nope"], EXIT_STORE, "no memory named 'nope'"),
    (["memories", "rm", "nope"], EXIT_STORE, "no memory named 'nope'"),
    (["sessions", "show", "nope"], EXIT_STORE, "no session named 'nope'"),
    (["sessions", "rm", "nope"], EXIT_STORE, "no session named 'nope'"),
]


@pytest.fixture
def files(tmp_path) -> dict[str, str]:
    facts = tmp_path / "facts.txt"
    facts.write_text(FACTS)
    binary = tmp_path / "image.bin"
    binary.write_bytes(bytes(range(256)) * 8)
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    return {"facts": str(facts), "binary": str(binary), "empty_dir": str(empty_dir)}


def command_of(args: list[str]) -> str:
    return args[0]


# One real process per command (the first of its cases above: a usage mistake where the command
# has one), so the installed entry point is proven for each; every case also runs in-process.
IN_A_PROCESS = [case for i, case in enumerate(CORPUS)
                if command_of(case[0]) not in {command_of(c[0]) for c in CORPUS[:i]}]


def check_bad_input(got: int, out: str, err: str, code: int, message: str) -> None:
    assert got == code, err
    assert message in err and out == "" and "Traceback" not in err
    if code == EXIT_USAGE:
        assert err.startswith("Usage: longchat") and "Error:" in err  # the usage line, then the mistake
    else:
        assert one_line_error(err) and len(err.strip().splitlines()) <= 2  # a note may come first


@pytest.mark.parametrize("args, code, message", CORPUS, ids=[" ".join(c[0]) for c in CORPUS])
def test_bad_input_corpus(cli_in, reuse_model, files, args, code, message):
    check_bad_input(*cli_in(*[a.format(**files) for a in args]), code, message)


@pytest.mark.parametrize("args, code, message", IN_A_PROCESS, ids=[" ".join(c[0]) for c in IN_A_PROCESS])
def test_bad_input_in_a_real_process(cli, files, args, code, message):
    check_bad_input(*cli(*[a.format(**files) for a in args]), code, message)


def test_every_command_in_the_corpus_has_its_real_process():
    assert {command_of(c[0]) for c in IN_A_PROCESS} == {command_of(c[0]) for c in CORPUS}
    assert len(IN_A_PROCESS) == len({command_of(c[0]) for c in CORPUS})  # one each, no more


def test_a_misspelt_source_is_reported_before_the_model_loads(tmp_path):
    """A fresh LONGCHAT_HOME has no converted model: loading it would convert for ~30 s first."""
    from conftest import InProcessCLI

    home = tmp_path / "fresh"
    got, out, err = InProcessCLI(home)("ask", str(tmp_path / "missing.txt"), "q")
    assert got == EXIT_INPUT and one_line_error(err) and "converting" not in err
    assert not (home / "cache" / "models").exists()


def test_longchat_home_that_is_a_file(tmp_path):
    from conftest import InProcessCLI

    home = tmp_path / "home-file"
    home.write_text("not a folder")
    for args in (["memories", "list"], ["ask", str(README), "q"], ["sessions", "list"]):
        got, out, err = InProcessCLI(home)(*args)
        assert got == EXIT_ENV and one_line_error(err), (args, err)
        assert f"LONGCHAT_HOME={home} is a file" in err and out == ""
    assert home.read_text() == "not a folder"


@pytest.mark.skipif(not os.path.isdir("/sys/kernel"), reason="needs Linux's /sys, which no one may write")
def test_longchat_home_that_cannot_be_written():
    from conftest import InProcessCLI

    got, out, err = InProcessCLI(Path("/sys/longchat-home"))("sessions", "list")
    assert got == EXIT_ENV and one_line_error(err) and out == ""
    assert "cannot write /sys/longchat-home" in err and "LONGCHAT_HOME" in err


def test_an_in_process_run_leaves_nothing_behind(cli_in, tmp_path, monkeypatch):
    """The in-process runner restores what a real process would have taken with it."""
    from longchat.cli import common

    monkeypatch.setenv("LONGCHAT_HOME", "/elsewhere")
    monkeypatch.setenv("LONGCHAT_DEBUG", "1")
    before = os.getcwd()
    # --quiet is set before the profile is read (and refused): a module flag a process would drop
    got, out, err = cli_in("ask", str(README), "q", "--quiet", "-p", "nope", cwd=tmp_path, LONGCHAT_PROBE="1")
    assert got == EXIT_CONFIG and one_line_error(err), err
    assert (os.environ["LONGCHAT_HOME"], os.environ["LONGCHAT_DEBUG"]) == ("/elsewhere", "1")
    assert "LONGCHAT_PROBE" not in os.environ and os.getcwd() == before and not common.QUIET
    assert not (tmp_path / "data").exists()  # the run's home was its own, not the cwd nor /elsewhere


def test_infllm_settings_reach_the_default_profile(cli_in, files, reuse_model):
    """`auto` runs infllm past the window, so the hints that name infllm.* must work under it."""
    got, out, err = cli_in("ask", files["facts"], "Who was the keeper of Gull Rock?", "-n", "12",
                           "--set", "infllm.topk=4", "--set", "infllm.disk=true", "--set", "infllm.store_bits=8")
    assert got == 0, err
    assert "Margaret" in out
    assert "prompt + longest reply =" in err  # the auto note says what it counts


def test_ask_cache_refuses_at_once_an_input_whose_blocks_do_not_fit_on_disk(home, tmp_path, capsys, monkeypatch,
                                                                             reuse_model):
    """With the ask cache on, blocks go to the cache's disk: checked before any encoding."""
    from collections import namedtuple

    from longchat.cli import main
    from longchat.context.infllm import strategy as infllm
    from longchat.memory.store import cache_root

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(infllm.shutil, "disk_usage", lambda path: usage(10**12, 10**12 - 10**6, 10**6))
    path = tmp_path / "long.txt"
    path.write_text("The grass is green. The sky is blue. " * 1200 + FACTS)
    code = main(["ask", str(path), "Who was the keeper?", "--set", "strategy.passages_past=0"])  # InfLLM's read
    out, err = capsys.readouterr()
    assert code == EXIT_INPUT and out == ""
    assert "GB of memory blocks on disk, but" in err and "set LONGCHAT_HOME to a bigger disk" in err
    assert "tokens (" not in err  # refused before any progress
    assert not cache_root().exists() or not any(cache_root().iterdir())  # nothing half-made left behind


def _long_text(path: Path, sentences: int) -> Path:
    import random

    from longchat.bench.needles import prose_sentence

    rng = random.Random(7)
    prose = [prose_sentence(rng) for _ in range(sentences)]
    prose.insert(sentences // 2, FACTS.strip())
    path.write_text(" ".join(prose))
    return path


def test_sigint_during_ingest_exits_130_and_a_rerun_resumes(cli, cli_in, reuse_model, tmp_path):
    # ~1.2k tokens read in chunks of 256: a progress line after each (~20%), a checkpoint too
    text = _long_text(tmp_path / "notes.txt", 65)
    chunks = ("--set", "context.prefill_chunk=256")  # (part of the memory's key: the ask below says it too)
    args = ("ingest", str(text), "--name", "notes", "--checkpoint-every", "256", *chunks)
    proc, err_file = popen_logged(cli, tmp_path, *args)
    # At the second progress line (~40%): the checkpoint after the first chunk is on disk (a
    # chunk's line prints before its checkpoint), and three chunks are left to interrupt.
    line = r"encoding [\d,]+/[\d,]+ tokens \(\d+%"
    err = sigint_when(proc, err_file, line + r"[\s\S]*" + line)
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert "longchat: interrupted" in err and "Traceback" not in err
    got, out, err = cli_in(*args)
    assert got == 0, err
    assert "resuming an interrupted ingest at" in err and "notes" in out
    got, out, err = cli_in("memories", "list", "--json")
    assert got == 0 and '"state": "ok"' in out and '"complete": true' in out, out
    got, out, err = cli_in("ask", "--memory", "notes", "Who was the keeper of Gull Rock?", "-n", "12", *chunks)
    assert got == 0 and out.strip(), err


def test_summarize_quiet_drops_the_progress_lines(cli_in, tmp_path, reuse_model):
    """The same log and window as test_cli.py's test_summarize_is_hierarchical_past_the_window,
    which checks the plain progress lines (one after each chunk but the last); --quiet drops them."""
    log = tmp_path / "ship.log"
    # ~880 tokens: three chunks of ~300 at this window, then the merge
    log.write_text("".join(f"Day {i}: the ship sailed {i * 3} miles north and the crew caught {i} fish.\n"
                           for i in range(1, 40)))
    got, out, err = cli_in("summarize", "-n", "8", "--set", "context.effective_window=400", "--quiet", "--stats",
                           input=log.read_bytes())
    assert got == 0 and out.strip(), err
    assert "summarising" not in err, err
    assert json.loads(err.strip().splitlines()[-1])["prompt_tokens"] > 880  # chunked: progress was due


def test_usage_lines_read_plainly(cli_in):
    got, out, err = cli_in("ask", "-h")
    assert got == 0 and "ask [OPTIONS] [SOURCE]... {QUESTION}" in out and "[[" not in out


def test_models_prints_whole_paths(cli):
    got, out, err = cli("models")
    assert got == 0, err
    from longchat.runtime.loader import default_gguf_path

    assert str(default_gguf_path()) in out  # what --model takes, never cut


def test_readme_exit_code_table_matches_the_code():
    section = README.read_text().split("### Exit codes", 1)[1].split("\n#", 1)[0]
    rows = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", section, re.M))
    assert {int(code) for code in rows} == set(EXIT_CODES), rows


@pytest.fixture
def config_only_model(tmp_path, default_model_dir) -> Path:
    """The bundled model's config.json alone: its window is known, but loading it fails (exit 5),
    so a check that answers exit 2 with it ran before the weights load."""
    folder = tmp_path / "config-only"
    folder.mkdir()
    (folder / "config.json").write_bytes((default_model_dir / "config.json").read_bytes())
    return folder


# (arguments, what stderr names): each refused as a usage mistake (exit 2) before the model loads.
BAD_OPTION_VALUES = [
    (["ask", "{facts}", "q", "-n", "99999999999"], "'--max-new-tokens' / '-n': 99999999999"),
    (["ask", "{facts}", "q", "-n", "0"], "'--max-new-tokens' / '-n': 0"),
    (["ask", "{facts}", "q", "-n", "9000", "-p", "full"], "'--max-new-tokens' / '-n': 9,000 tokens: the longest reply is 8,191"),
    (["ask", "{facts}", "q", "-n", "40000", "-p", "rope-linear"], "the longest reply is 32,767"),
    (["ask", "{facts}", "   "], "Invalid value for 'QUESTION': it is empty"),
    (["ask", "--memory", "m", ""], "Invalid value for 'QUESTION': it is empty"),
    (["ask", "{facts}", "q", "-t", "-1"], "'--temperature' / '-t': -1.0: expected a number >= 0"),
    (["ask", "{facts}", "q", "--compress", "2"], "'--compress' / '--rate': 2.0: expected the share of tokens"),
    (["summarize", "{facts}", "-n", "-5"], "'--max-new-tokens' / '-n': -5"),
    (["summarize", "{facts}", "-n", "9000", "-p", "full"], "the longest reply is 8,191"),
    (["summarize", "{facts}", "--compress", "0"], "'--compress' / '--rate': 0.0"),
    (["chat", "-t", "nan"], "'--temperature' / '-t': nan"),
    (["chat", "-n", "9000", "-p", "full"], "the longest reply is 8,191"),
    (["compress", "{facts}", "--rate", "1.5"], "'--rate' / '-r': 1.5"),
    (["compress", "{facts}", "-q", " "], "'--question' / '-q': it is empty"),
    (["serve", "--port", "70000"], "'--port'"),
    (["sessions", "show", "x", "--last", "0"], "'--last' / '-n'"),
    (["bench", "passkey", "--compress", "3"], "'--compress'"),
]


@pytest.mark.parametrize("args, message", BAD_OPTION_VALUES, ids=[" ".join(c[0]) for c in BAD_OPTION_VALUES])
def test_bad_option_values_are_usage_errors_before_the_model_loads(cli, files, config_only_model, args, message):
    """Issue 42: -n 99999999999 was "an input too long" in gigabytes, and -t -1 or --compress 2
    were refused only after the model loaded. Real processes, with a model that cannot load."""
    model = ["--model", str(config_only_model)] if args[0] in ("ask", "summarize", "chat", "serve") else []
    got, out, err = cli(*[a.format(**files) for a in args], *model, timeout=120)
    check_bad_input(got, out, err, EXIT_USAGE, message)
    assert len([line for line in err.splitlines() if line.startswith("Error:")]) == 1


def test_a_reply_that_fits_goes_on_to_load_the_model(cli, files, config_only_model):
    """The other side of the checks above: -n within the window passes them, and the load is
    what fails (no weights in the folder)."""
    got, out, err = cli("ask", files["facts"], "q", "-n", "8000", "-p", "full", "--model", str(config_only_model),
                        timeout=120)
    assert got == EXIT_MODEL and one_line_error(err), err


def test_a_bad_set_value_names_the_flag(cli, files):
    """It used to be blamed on profiles/auto.toml."""
    got, out, err = cli("ask", files["facts"], "q", "--set", "strategy.n_local=abc", timeout=120)
    assert got == EXIT_CONFIG and one_line_error(err), err
    assert "--set 'strategy.n_local=abc'" in err and "must be an integer, got 'abc'" in err
    assert "auto.toml" not in err
    got, out, err = cli("ask", files["facts"], "q", "-p", "full", "--set", "generation.max_new_tokens=99999",
                        timeout=120)
    assert got == EXIT_CONFIG and "--set 'generation.max_new_tokens=99999': 99,999 tokens" in err, err
