"""Shared fixtures: user dirs in tmp, the default model converted once and loaded once, tiny
model folders; `longchat` run as a real process (`CLI`) or in-process (`InProcessCLI`)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from tiny_models import FAMILIES, make_tiny


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """The default model's converted folder in the real user cache (converted once, ~30 s)."""
    from longchat.runtime.loader import resolve_model_dir

    return resolve_model_dir("default")[1]


@pytest.fixture(scope="session")
def shared_model(default_model_dir):
    """The bundled model loaded once per session (~5 s a load saved per test that reuses it).
    Its weights are only read in use; runners, engines and strategies stay per test."""
    from longchat.runtime.loader import load_model

    return load_model("default", note=lambda m: None)


def load_shared(monkeypatch, shared_model) -> None:
    """In-process loads of the bundled model (`open_runner` -> `load_model("default")`, as the CLI
    does) return `shared_model` until `monkeypatch` undoes it; the spec is still resolved in the
    LONGCHAT_HOME of the moment. Another model, device, dtype or weight format loads as usual."""
    import longchat.api
    from longchat.runtime import loader

    real = loader.load_model

    def load(spec="default", *, device=None, dtype=None, weights="auto", note=lambda m: None):
        if spec == "default" and device is None and dtype is None and weights == "auto":
            loader.resolve_model_dir(spec, note)
            return shared_model
        return real(spec, device=device, dtype=dtype, weights=weights, note=note)

    monkeypatch.setattr(longchat.api, "load_model", load)
    monkeypatch.setattr(loader, "load_model", load)


@pytest.fixture
def reuse_model(shared_model, monkeypatch):
    """This test's in-process loads of the bundled model get the session's `shared_model`."""
    load_shared(monkeypatch, shared_model)
    step = shared_model.decoder.step
    yield shared_model
    shared_model.decoder.step = step  # (a `runtime.compile=on` run compiles onto the decoder)


@pytest.fixture(scope="session")
def native_dir() -> Path:
    """The C decode step built once (runtime/native.py), in the real user cache."""
    from longchat.paths import cache_dir
    from longchat.runtime import native

    native.built()
    return cache_dir() / "native"


@pytest.fixture
def home(tmp_path, monkeypatch, default_model_dir, native_dir) -> Path:
    """LONGCHAT_HOME in tmp, with the converted default model and the built C decode step
    linked in so nothing re-converts or recompiles."""
    root = tmp_path / "home"
    models = root / "cache" / "models"
    models.mkdir(parents=True)
    os.symlink(default_model_dir, models / default_model_dir.name)
    if native_dir.is_dir():
        os.symlink(native_dir, root / "cache" / "native")
    monkeypatch.setenv("LONGCHAT_HOME", str(root))
    return root


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory) -> dict[str, Path]:
    """family -> folder of a tiny random-weight checkpoint."""
    base = tmp_path_factory.mktemp("tiny")
    return {family: make_tiny(family, base / family) for family in FAMILIES}


@pytest.fixture(scope="session")
def tiny_chat_model(tmp_path_factory, default_model_dir):
    """A tiny Llama with the bundled model's tokenizer: the whole pipeline, in seconds."""
    folder = make_tiny("llama", tmp_path_factory.mktemp("tinychat") / "tiny", vocab_size=49152,
                       max_position_embeddings=4096)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (default_model_dir / name).is_file():
            shutil.copy(default_model_dir / name, folder / name)
    return folder


class CLI:
    """`longchat` as a user meets it: a real subprocess, stdin closed unless given, LONGCHAT_HOME in tmp."""

    def __init__(self, home: Path):
        self.home = home

    def env(self, **extra: str) -> dict[str, str]:
        env = {**os.environ, "LONGCHAT_HOME": str(self.home), "PYTHONUNBUFFERED": "1", **extra}
        env.pop("LONGCHAT_DEBUG", None)
        return env

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "longchat", *map(str, args)]

    def __call__(self, *args: str, input: bytes | str | None = None, timeout: float = 300, cwd=None, **env: str):
        """(returncode, stdout, stderr) of one run."""
        import subprocess

        data = input.encode() if isinstance(input, str) else input
        proc = subprocess.run(self.argv(*args), input=data if data is not None else b"",
                              capture_output=True, timeout=timeout, env=self.env(**env), cwd=cwd)
        return proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")

    def popen(self, *args: str, **env: str):
        import subprocess

        return subprocess.Popen(self.argv(*args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=self.env(**env), preexec_fn=interruptible)


class InProcessCLI(CLI):
    """`longchat` run in this process: `longchat.cli.main` (what the entry point exits with) under
    Typer's `CliRunner` isolation, so stdin, stdout, stderr and the environment (LONGCHAT_HOME,
    no LONGCHAT_DEBUG) are this run's alone and restored after it; so are the cwd and `--quiet`.
    For argument, usage and early-error checks: milliseconds, not a process start (and with
    `reuse_model`, not a model load either). `CLI` (a real subprocess) stays for one run per
    command and for what needs a process (signals, a shell). `timeout` is not enforced here.

    As in the real process, a `SystemExit` is the exit code; any other exception escaping `main`
    (a traceback a user would see) fails the test."""

    def __call__(self, *args: str, input: bytes | str | None = None, timeout: float = 300, cwd=None, **env: str):
        """(returncode, stdout, stderr) of one run, as `CLI` gives them."""
        from typer.testing import CliRunner

        from longchat.cli import common, main

        before, quiet = os.getcwd(), common.QUIET
        runner = CliRunner()
        with runner.isolation(input=input, env={"LONGCHAT_HOME": str(self.home), "LONGCHAT_DEBUG": None,
                                                **env}) as (out, err, _):
            try:
                if cwd is not None:
                    os.chdir(cwd)
                try:
                    code = main([str(a) for a in args])
                except SystemExit as e:
                    code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os.chdir(before)
                common.QUIET = quiet
            return code, out.getvalue().decode("utf-8", "replace"), err.getvalue().decode("utf-8", "replace")


def interruptible() -> None:
    """Popen's preexec_fn for a child that a test sends SIGINT: a suite started in the background
    (`cmd &` in a script) runs with SIGINT ignored, which Python children inherit and keep."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def popen_logged(cli: CLI, folder: Path, *args: str):
    """A real `longchat` process (stdin closed, stdout piped) whose stderr goes to a file in
    `folder`, to be read while it runs: (process, that file)."""
    import subprocess
    import time

    err_file = folder / f"stderr-{time.monotonic_ns()}.txt"
    with open(err_file, "wb") as err:
        proc = subprocess.Popen(cli.argv(*args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                env=cli.env(), preexec_fn=interruptible)
    return proc, err_file


def sigint_when(proc, stderr_file: Path, pattern: str, timeout: float = 240) -> str:
    """Send SIGINT once `pattern` shows on the process's stderr; its whole stderr after exit."""
    import re
    import signal
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if re.search(pattern, stderr_file.read_text(errors="replace")):
            proc.send_signal(signal.SIGINT)
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail(f"never saw {pattern!r}: {stderr_file.read_text(errors='replace')}")
    proc.wait(timeout=120)
    return stderr_file.read_text(errors="replace")


def check_speeds(stats: dict, wall_s: float) -> None:
    """Speed figures checked so that a real defect fails them, never a slow machine: each rate is
    its own token count over its own seconds (to their rounding), and the seconds lie inside the
    wall-clock time measured around the whole run. (Speed targets belong in benchmarks.)"""
    def rate(tokens: int, seconds: float):
        return pytest.approx(tokens / seconds, rel=0.0006 / seconds + 0.001, abs=0.06)

    read = stats["prompt_tokens"] - stats.get("reused_tokens", 0)
    assert stats["prefill_s"] > 0 and stats["prefill_s"] + stats["decode_s"] <= wall_s, (stats, wall_s)
    assert stats["prefill_tok_s"] == rate(read, stats["prefill_s"]), stats
    steps = stats["new_tokens"] - 1  # the first new token comes out of the prefill
    if steps <= 0:
        assert stats["decode_tok_s"] == 0, stats
    elif stats["decode_s"] >= 0.001:  # (shown in ms: a faster decode rounds to 0)
        assert stats["decode_tok_s"] == rate(steps, stats["decode_s"]), stats


def one_line_error(err: str) -> bool:
    """The standard every failure meets: one `longchat: error:` line, no traceback."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    return "Traceback" not in err and any(line.startswith("longchat: error:") for line in lines)


@pytest.fixture
def cli(home) -> CLI:
    return CLI(home)


@pytest.fixture
def cli_in(home) -> InProcessCLI:
    return InProcessCLI(home)
