"""Shared fixtures: user dirs in tmp, the default model converted once, tiny model folders."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tiny_models import FAMILIES, make_tiny


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """The default model's converted folder in the real user cache (converted once, ~30 s)."""
    from longchat.runtime.loader import resolve_model_dir

    return resolve_model_dir("default")[1]


@pytest.fixture
def home(tmp_path, monkeypatch, default_model_dir) -> Path:
    """LONGCHAT_HOME in tmp, with the converted default model linked in so nothing re-converts."""
    root = tmp_path / "home"
    models = root / "cache" / "models"
    models.mkdir(parents=True)
    os.symlink(default_model_dir, models / default_model_dir.name)
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
        import sys

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


def interruptible() -> None:
    """Popen's preexec_fn for a child that a test sends SIGINT: a suite started in the background
    (`cmd &` in a script) runs with SIGINT ignored, which Python children inherit and keep."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def one_line_error(err: str) -> bool:
    """The standard every failure meets: one `longchat: error:` line, no traceback."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    return "Traceback" not in err and any(line.startswith("longchat: error:") for line in lines)


@pytest.fixture
def cli(home) -> CLI:
    return CLI(home)
