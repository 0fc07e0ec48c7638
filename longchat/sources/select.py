"""Which files a folder walk reads: `--include` / `--exclude` patterns and the default skips.

Repositories hold much that costs tokens and tells a model little: lock files, minified
bundles, generated code, data files, vendored folders. A walk skips those by default and says
so in one summary note; `--include` patterns read them anyway, `--exclude` patterns leave out
more. Files named directly are never skipped by default (the user asked for them).

The command line sets a `Selection` for the whole command (`selecting`), so that every reader
of sources (ask, chat's files, summarize, ingest, compress) walks folders the same way.
"""

from __future__ import annotations

import contextvars
import os
import re
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from pathspec import GitIgnoreSpec

from longchat.errors import EXIT_USAGE, LongchatError
from longchat.sources.text import SNIFF_BYTES, looks_binary

# Folders of other people's code, caches and build output.
VENDORED = frozenset({
    "node_modules", "bower_components", "jspm_packages", "vendor", "third_party", "third-party", "thirdparty",
    ".venv", "venv", "site-packages", "__pycache__", ".tox", ".nox", ".eggs", ".mypy_cache", ".pytest_cache",
    ".ruff_cache", ".ipynb_checkpoints", ".gradle", ".next", ".nuxt", ".svelte-kit", ".terraform",
    "dist", "build", "_build", ".parcel-cache", ".cache",
})
LOCK_FILES = frozenset({
    "package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml", "bun.lockb", "poetry.lock",
    "pipfile.lock", "uv.lock", "pdm.lock", "cargo.lock", "gemfile.lock", "composer.lock", "go.sum", "flake.lock",
    "podfile.lock", "mix.lock", "pubspec.lock", "package.resolved", "packages.lock.json", "gradle.lockfile",
    "conan.lock", "deno.lock",
})
GENERATED_SUFFIXES = (".map", "_pb2.py", "_pb2.pyi", "_pb2_grpc.py", ".pb.go", ".pb.cc", ".pb.h", ".g.dart",
                      ".designer.cs")
MINIFIED_SUFFIXES = (".min.js", ".min.css", ".min.mjs", ".bundle.js", ".chunk.js")
# Data by their format, whatever their size.
DATA_ALWAYS = frozenset({".parquet", ".npy", ".npz", ".pkl", ".pickle", ".feather", ".arrow", ".h5", ".hdf5",
                         ".avro", ".orc", ".sqlite", ".sqlite3", ".db", ".pt", ".pth", ".ckpt", ".safetensors",
                         ".onnx", ".gguf", ".xlsx", ".xls"})
# Text formats that are data once they are big; a small one (a config, a sample) is read.
DATA_TEXT = frozenset({".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".geojson"})
DATA_TEXT_ABOVE = 32_000  # bytes: ~10k tokens; a config .json or a sample .csv is far below
# Prose where long lines are normal (a paragraph to a line): never judged minified by its lines.
PROSE = frozenset({".md", ".markdown", ".txt", ".rst", ".tex", ".org", ".adoc", ".log", ".ipynb"})
LINE_SNIFF = 65_536      # bytes read to judge line lengths and "generated" headers
LONG_LINES = 1000        # mean characters a line above which a text is a bundle, not source
GENERATED = re.compile(rb"(\bgenerated\b.{0,100}\bdo not (edit|modify)\b|@generated\b)", re.IGNORECASE)


class BadPattern(LongchatError):
    """An --include / --exclude pattern that is not valid gitignore syntax."""

    exit_code = EXIT_USAGE


def _spec(option: str, patterns: Sequence[str]) -> GitIgnoreSpec | None:
    if not patterns:
        return None
    for pattern in patterns:
        if not pattern.strip():
            raise BadPattern(f"{option} '': give a pattern, e.g. {option} '*.csv'")
        try:
            GitIgnoreSpec.from_lines([pattern])
        except ValueError as error:  # pathspec's pattern errors are ValueErrors
            raise BadPattern(f"{option} {pattern!r}: not a valid gitignore-style pattern ({error})") from None
    return GitIgnoreSpec.from_lines(patterns)


@dataclass(frozen=True)
class Selection:
    """`include`: read what matches even if skipped by default; `exclude`: never read what
    matches. Gitignore-style patterns, matched against paths relative to the walked folder
    (a named file: its path as given)."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    skip_defaults: bool = True
    _include: GitIgnoreSpec | None = field(default=None, init=False, repr=False, compare=False)
    _exclude: GitIgnoreSpec | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "include", tuple(self.include))
        object.__setattr__(self, "exclude", tuple(self.exclude))
        object.__setattr__(self, "_include", _spec("--include", self.include))
        object.__setattr__(self, "_exclude", _spec("--exclude", self.exclude))

    def excluded(self, rel: str) -> bool:
        """`rel`: a path from the walked folder, with a trailing "/" for a folder."""
        return self._exclude is not None and self._exclude.match_file(rel)

    def included(self, rel: str) -> bool:
        return self._include is not None and self._include.match_file(rel)

    def named_excluded(self, spec: str) -> bool:
        """Whether a file named directly is left out by --exclude (default skips never apply)."""
        return self.excluded(os.path.normpath(spec).lstrip("/"))


EVERYTHING = Selection(skip_defaults=False)
_current: contextvars.ContextVar[Selection] = contextvars.ContextVar("longchat_selection", default=Selection())


def current() -> Selection:
    """The selection of the command running: what `selecting` set, else the defaults."""
    return _current.get()


@contextmanager
def selecting(selection: Selection) -> Iterator[Selection]:
    """Every source read inside the block walks folders with `selection`; so does one `use`d
    inside it, until the block ends (the CLI runs each command in such a block)."""
    token = _current.set(selection)
    try:
        yield selection
    finally:
        _current.reset(token)


def use(selection: Selection) -> None:
    """The selection of the rest of this command (inside the CLI's `selecting` block)."""
    _current.set(selection)


# ------------------------------------------------------------------ default skips


def skipped_folder(name: str) -> str | None:
    """"vendored folder" for node_modules/, .venv/, build/ ..., else None."""
    return "vendored folder" if name in VENDORED or name.endswith(".egg-info") else None


def skipped_file(path: Path, size: int, text: bool = True) -> str | None:
    """The kind of file a walk skips by default ("lock file", "minified file", "generated file",
    "data file"), or None to read it. Looks at the name first, then, for a file the text reader
    would read (`text`), at most its first 64 KB."""
    name = path.name.lower()
    suffix = path.suffix.lower()
    if name in LOCK_FILES or suffix == ".lock":
        return "lock file"
    if name.endswith(MINIFIED_SUFFIXES) or name.endswith("-min.js"):
        return "minified file"
    if name.endswith(GENERATED_SUFFIXES):
        return "generated file"
    if suffix in DATA_ALWAYS or (suffix in DATA_TEXT and size > DATA_TEXT_ABOVE):
        return "data file"
    if size < 200 or not text:
        return None
    try:
        with open(path, "rb") as file:
            head = file.read(LINE_SNIFF)
    except OSError:
        return None  # the reader names the problem
    if looks_binary(head[:SNIFF_BYTES]):
        return None  # the text reader skips it, with its own note
    if GENERATED.search(head[:2048]):
        return "generated file"
    if suffix not in PROSE and len(head) >= 4096 and len(head) / (head.count(b"\n") + 1) > LONG_LINES:
        return "minified file"
    return None


def human_size(n: int) -> str:
    """Bytes as a short size for notes: "35 MB", "1.5 KB", "100 bytes"."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


@dataclass
class Skipped:
    """What walks skipped by default, for the one summary note at the end."""

    files: Counter = field(default_factory=Counter)   # kind -> files
    bytes: Counter = field(default_factory=Counter)   # kind -> bytes
    folders: list[str] = field(default_factory=list)  # labels of vendored folders

    def file(self, kind: str, size: int) -> None:
        self.files[kind] += 1
        self.bytes[kind] += size

    def summary(self) -> str | None:
        """`skipped 3 files by default (1 lock file 412 KB, ...): --include PATTERN to read them`."""
        n = sum(self.files.values())
        if not n and not self.folders:
            return None
        parts = [f"{count} {kind}{'s' if count > 1 else ''} {human_size(self.bytes[kind])}"
                 for kind, count in sorted(self.files.items(), key=lambda kv: -self.bytes[kv[0]])]
        what = [f"{n} file{'s' if n != 1 else ''}"] if n else []
        if self.folders:
            shown = ", ".join(f"{f}/" for f in self.folders[:3]) + (", ..." if len(self.folders) > 3 else "")
            parts.append(shown)
            what.append(f"{len(self.folders)} folder{'s' if len(self.folders) > 1 else ''}")
        return (f"skipped {' and '.join(what)} by default ({', '.join(parts)}): "
                f"--include PATTERN to read them (e.g. --include '*.csv')")
