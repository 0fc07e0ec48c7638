"""How long `longchat ask` takes from a shell: cold (fresh LONGCHAT_HOME) and warm.

Runs the real CLI as subprocesses, so imports, model conversion and loading are all counted.
"Cold" means an empty longchat cache (the default GGUF is converted again); the OS file cache
is left alone, so disk reads are warm in both cases.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from longchat.errors import LongchatError

DOCUMENT = "The team meeting moved to Tuesday at 10 am in room 4. Bring the budget figures.\n"
QUESTION = "When is the team meeting?"


@dataclass
class StartupRun:
    label: str
    seconds: float
    output: str  # the command's stdout, stripped


def _run(label: str, args: list[str], env: dict, cwd: Path) -> StartupRun:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "longchat", *args], env=env, cwd=cwd,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise LongchatError(f"`longchat {' '.join(args)}` failed during the {label} run (exit {proc.returncode}): {last}")
    return StartupRun(label, round(seconds, 2), proc.stdout.strip())


def time_startup(model: str | None = None, *, warm_runs: int = 2,
                 on_run: Callable[[StartupRun], None] = lambda r: None) -> list[StartupRun]:
    """Time `longchat --help`, then `ask` on a one-line file: once cold, `warm_runs` times warm."""
    with tempfile.TemporaryDirectory(prefix="longchat-startup-") as tmp:
        folder = Path(tmp)
        doc = folder / "doc.txt"
        doc.write_text(DOCUMENT)
        env = {**os.environ, "LONGCHAT_HOME": str(folder / "home"), "HF_HUB_OFFLINE": "1"}
        ask = ["ask", str(doc), QUESTION, "--max-new-tokens", "16"] + (["--model", model] if model else [])
        plan = [("help (imports only)", ["--help"]), ("ask, cold (empty cache)", ask)]
        plan += [(f"ask, warm #{i + 1}", ask) for i in range(warm_runs)]
        runs = []
        for label, args in plan:
            runs.append(_run(label, args, env, folder))
            on_run(runs[-1])
        return runs
