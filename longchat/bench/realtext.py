"""Real text that ships with Python and Debian, for benchmarks and tests that must not be
tuned on a template: the standard library's docstrings, licence texts, standard-library source
code, and a generated service log."""

from __future__ import annotations

import importlib
import inspect
import random
import sysconfig
import time
from pathlib import Path

DOC_MODULES = ("json", "argparse", "collections", "email.message", "http.client", "logging", "pathlib",
               "subprocess", "threading", "urllib.request", "zipfile", "tarfile", "sqlite3", "datetime",
               "decimal", "fractions", "statistics", "textwrap", "difflib", "csv", "configparser", "shutil")


def docstrings(modules: tuple[str, ...] = DOC_MODULES) -> str:
    """The docstrings (over 200 characters) of the modules' own classes and functions."""
    parts = []
    for name in modules:
        module = importlib.import_module(name)
        for _, obj in sorted(vars(module).items()):
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and getattr(obj, "__module__", "") == name:
                doc = inspect.getdoc(obj)
                if doc and len(doc) > 200:
                    parts.append(doc)
    return "\n\n".join(parts)


def licenses() -> str:
    """Debian's common licences (when present) and Python's own LICENSE."""
    folder = Path("/usr/share/common-licenses")
    found = sorted(folder.glob("*")) if folder.is_dir() else []
    found.append(Path(sysconfig.get_paths()["stdlib"]) / "LICENSE.txt")
    texts = []
    for path in found:
        try:
            if path.is_file() and path.stat().st_size > 2000:
                texts.append(path.read_text(errors="replace"))
        except OSError:
            pass
    return "\n\n".join(texts)


def source_code() -> str:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = [stdlib / f"{n}.py" for n in ("argparse", "textwrap", "difflib", "configparser", "csv", "shutil",
                                          "tarfile", "zipfile", "calendar", "fractions", "statistics", "heapq")]
    return "\n\n".join(p.read_text(errors="replace") for p in files if p.is_file())


def service_log(rng: random.Random, lines: int = 60000) -> str:
    """A seeded log of a few services: timestamps, levels, routine events."""
    services = ("auth", "billing", "cache", "gateway", "scheduler", "search", "mailer")
    events = ("request served in {n} ms", "connection from 10.{a}.{b}.{c} accepted", "cache miss for key user:{n}",
              "job {n} finished with status ok", "retrying upstream call ({a}/5)", "session {n} expired",
              "queue depth is {n}", "slow query took {n} ms", "certificate check passed for host {a}.{b}")
    out = []
    t = 1_700_000_000
    for _ in range(lines):
        t += rng.randint(0, 3)
        level = rng.choices(("INFO", "WARN", "ERROR", "DEBUG"), (80, 10, 3, 7))[0]
        event = rng.choice(events).format(n=rng.randint(1, 99999), a=rng.randint(0, 255), b=rng.randint(0, 255),
                                          c=rng.randint(0, 255))
        out.append(f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(t))} {level} {rng.choice(services)}: {event}")
    return "\n".join(out)


def haystacks() -> dict[str, str]:
    """name -> text, the four kinds."""
    return {"docs": docstrings(), "licenses": licenses(), "code": source_code(), "log": service_log(random.Random(0))}
