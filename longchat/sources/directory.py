"""Directories: walked recursively in sorted order, honouring `.gitignore` at every level and
the `Selection` (--include / --exclude, the default skips of `select.py`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pathspec import GitIgnoreSpec

from longchat.sources.base import Document, Note, Unreadable, cannot_open
from longchat.sources.registry import FALLBACK, open_file, reader_for
from longchat.sources.select import Selection, Skipped, current, human_size, skipped_file, skipped_folder

# (the .gitignore's folder relative to the walked root: "" or "sub/", its patterns)
IgnoreRules = list[tuple[str, GitIgnoreSpec]]


def walk_directory(
    root: Path, label: str, *, note: Note, max_file_bytes: int, select: Selection | None = None,
    skipped: Skipped | None = None,
) -> Iterator[Document]:
    """Every readable file under `root`, labelled "<label>/<path relative to root>".

    Skipped with a note each: binary, oversized and unreadable files, symlink loops, and anything
    that is not a regular file. Skipped by default (lock files, minified, generated, data files,
    vendored folders; `select.include` reads them): counted in `skipped`, or, without one, in one
    note at the end. Skipped silently: `.git/`, what `.gitignore` files and `select.exclude` exclude.
    """
    try:
        os.scandir(root).close()
    except OSError as error:
        raise cannot_open(label, error) from None
    own = skipped is None
    walk = _Walk(label=label, note=note, max_file_bytes=max_file_bytes, select=select or current(),
                 skipped=Skipped() if own else skipped)
    walk.seen[root.resolve()] = label
    yield from walk.folder(root, "", [])
    if own and (summary := walk.skipped.summary()):
        note(summary)


def _ignored(rules: IgnoreRules, rel: str) -> bool:
    """Whether `rel` (with a trailing "/" for folders) is excluded by a .gitignore.

    As in git, the deepest .gitignore with a matching pattern decides, so a nested one can
    re-include ("!keep.log") what a parent excludes.
    """
    for folder, spec in reversed(rules):
        excluded = spec.check_file(rel[len(folder):]).include
        if excluded is not None:
            return excluded
    return False


@dataclass
class _Walk:
    label: str
    note: Note
    max_file_bytes: int
    select: Selection
    skipped: Skipped
    # Real path of every folder entered -> its label. Following a symlink back to one of
    # these would walk forever (a loop) or read the same files twice (a second link).
    seen: dict[Path, str] = field(default_factory=dict)

    def label_of(self, rel: str) -> str:
        """The label for a path under the root: the root as the user typed it, then `rel`."""
        base = self.label.rstrip("/")
        return rel if base == "." else f"{base}/{rel}"

    def by_default(self, rel: str) -> bool:
        """Whether the default skips apply to `rel` (no --include pattern reads it)."""
        return self.select.skip_defaults and not self.select.included(rel)

    def skipped_kind(self, path: Path, size: int) -> str | None:
        return skipped_file(path, size, text=reader_for(path).name == FALLBACK)

    def folder(self, path: Path, rel: str, rules: IgnoreRules) -> Iterator[Document]:
        """The documents under one folder; `rel` is its path from the root, "" or "sub/"."""
        try:
            with os.scandir(path) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
            gitignore = path / ".gitignore"
            if gitignore.is_file():
                lines = gitignore.read_text(errors="replace").splitlines()
                rules = [*rules, (rel, GitIgnoreSpec.from_lines(lines))]
        except OSError as error:
            self.note(f"skipped {self.label_of(rel)} ({cannot_open(rel, error).reason})")
            return
        for entry in entries:
            entry_rel = rel + entry.name
            is_dir = entry.is_dir()  # follows symlinks, as is_file() below does
            as_rule = entry_rel + "/" if is_dir else entry_rel
            if entry.name == ".git" or _ignored(rules, as_rule) or self.select.excluded(as_rule):
                continue
            if is_dir:
                if self.by_default(as_rule) and skipped_folder(entry.name):
                    self.skipped.folders.append(self.label_of(entry_rel))
                    continue
                yield from self.subfolder(Path(entry.path), entry_rel, rules)
            elif entry.is_file():
                yield from self.file(entry, entry_rel)
            elif entry.is_symlink():
                self.note(f"skipped {self.label_of(entry_rel)} (broken symlink)")
            else:  # sockets and FIFOs: reading a FIFO would block forever
                self.note(f"skipped {self.label_of(entry_rel)} (not a regular file)")

    def subfolder(self, path: Path, rel: str, rules: IgnoreRules) -> Iterator[Document]:
        real = path.resolve()
        if real in self.seen:
            if path.parent.resolve().is_relative_to(real):
                target = os.readlink(path) if path.is_symlink() else real
                self.note(f"skipped {self.label_of(rel)} -> {target} (symlink loop)")
            else:
                self.note(f"skipped {self.label_of(rel)} (same folder as {self.seen[real]})")
            return
        self.seen[real] = self.label_of(rel)
        yield from self.folder(path, rel + "/", rules)

    def file(self, entry: os.DirEntry, rel: str) -> Iterator[Document]:
        label = self.label_of(rel)
        try:
            size = entry.stat().st_size
        except OSError as error:
            self.note(f"skipped {label} ({cannot_open(label, error).reason})")
            return
        if self.by_default(rel) and (kind := self.skipped_kind(Path(entry.path), size)):
            self.skipped.file(kind, size)
            return
        if size > self.max_file_bytes:
            limit = human_size(self.max_file_bytes)
            self.note(f"skipped {label} ({human_size(size)} > {limit} limit)")
            return
        try:
            document = open_file(Path(entry.path), label, self.note)
        except Unreadable as error:
            self.note(f"skipped {label} ({error.reason})")
            return
        yield document
