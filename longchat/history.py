"""The ask history, as `llm logs` keeps one: every answered `ask` (question, answer, sources,
profile, model, timings) in one SQLite file in the data dir, searchable with FTS5.

`longchat logs off` leaves a marker file that stops recording; `ask --no-log` skips one ask.
A record is one INSERT, committed at once: a crash or Ctrl-C loses at most the ask in flight.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from longchat import paths
from longchat.db import connect, fts_index
from longchat.errors import StoreError

MIGRATIONS = [
    # 1: the first schema
    """
    CREATE TABLE asks (
        id INTEGER PRIMARY KEY, created REAL NOT NULL, question TEXT NOT NULL, answer TEXT NOT NULL,
        inputs TEXT NOT NULL DEFAULT '[]', sources TEXT NOT NULL DEFAULT '[]',
        profile TEXT NOT NULL DEFAULT '', model TEXT NOT NULL DEFAULT '',
        prompt_tokens INTEGER NOT NULL DEFAULT 0, new_tokens INTEGER NOT NULL DEFAULT 0,
        seconds REAL NOT NULL DEFAULT 0, stats TEXT NOT NULL DEFAULT '{}');
    """ + fts_index("asks", ("question", "answer")),
]


class HistoryError(StoreError):
    """The history file could not be opened or read."""


def history_path() -> Path:
    return paths.data_dir() / "history.db"


def _off_marker() -> Path:
    return paths.data_dir() / "history-off"


def recording() -> bool:
    """Whether asks are recorded (`longchat logs off` turns it off)."""
    return not _off_marker().exists()


def set_recording(on: bool) -> None:
    marker = _off_marker()
    if on:
        marker.unlink(missing_ok=True)
    else:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()


@dataclass
class Ask:
    id: int
    created: float
    question: str
    answer: str
    inputs: list[str]
    sources: list[dict]
    profile: str
    model: str
    prompt_tokens: int
    new_tokens: int
    seconds: float
    stats: dict

    def as_dict(self) -> dict:
        return dict(vars(self))


class History:
    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path else history_path()
        self.db = connect(self.path, MIGRATIONS, "the ask history", HistoryError)

    def close(self) -> None:
        self.db.close()

    def record(self, question: str, answer: str, *, inputs: list[str], sources: list[dict], profile: str,
               model: str, stats: dict, seconds: float) -> int:
        cur = self.db.execute(
            "INSERT INTO asks (created, question, answer, inputs, sources, profile, model, prompt_tokens, new_tokens,"
            " seconds, stats) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (time.time(), question, answer, json.dumps(inputs), json.dumps(sources), profile, model,
             int(stats.get("prompt_tokens", 0)), int(stats.get("new_tokens", 0)), round(seconds, 3),
             json.dumps(stats)))
        return int(cur.lastrowid)

    def latest(self, count: int = 10, query: str | None = None) -> list[Ask]:
        """The `count` latest asks, newest first; with `query`, those whose question or answer
        holds all of its words (FTS5, stemmed)."""
        if query:
            words = [w for w in query.replace('"', " ").split() if w]
            if not words:
                return []
            match = " AND ".join(f'"{w}"' for w in words)
            rows = self.db.execute("SELECT asks.* FROM asks JOIN asks_fts ON asks_fts.rowid = asks.id "
                                   "WHERE asks_fts MATCH ? ORDER BY asks.id DESC LIMIT ?", (match, count))
        else:
            rows = self.db.execute("SELECT * FROM asks ORDER BY id DESC LIMIT ?", (count,))
        return [_ask(r) for r in rows]

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM asks").fetchone()[0])


def _ask(row) -> Ask:
    return Ask(row["id"], row["created"], row["question"], row["answer"], json.loads(row["inputs"]),
               json.loads(row["sources"]), row["profile"], row["model"], row["prompt_tokens"],
               row["new_tokens"], row["seconds"], json.loads(row["stats"]))
