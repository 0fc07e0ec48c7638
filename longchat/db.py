"""SQLite files of longchat's own (the session store, the ask history): opened in WAL mode,
with numbered, append-only migrations recorded in `PRAGMA user_version`, and FTS5 indexes kept
in step by triggers."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from longchat.errors import StoreError


def fts_index(table: str, columns: tuple[str, ...] = ("content",)) -> str:
    """An FTS5 index over `table`'s text `columns` (Porter stemming), kept in step by triggers."""
    fts, cols = f"{table}_fts", ", ".join(columns)
    new, old = ", ".join(f"new.{c}" for c in columns), ", ".join(f"old.{c}" for c in columns)
    return f"""
    CREATE VIRTUAL TABLE {fts} USING fts5({cols}, content='{table}', content_rowid='id',
                                         tokenize='porter unicode61');
    CREATE TRIGGER {table}_ai AFTER INSERT ON {table} BEGIN
        INSERT INTO {fts}(rowid, {cols}) VALUES (new.id, {new}); END;
    CREATE TRIGGER {table}_ad AFTER DELETE ON {table} BEGIN
        INSERT INTO {fts}({fts}, rowid, {cols}) VALUES ('delete', old.id, {old}); END;
    CREATE TRIGGER {table}_au AFTER UPDATE OF {cols} ON {table} BEGIN
        INSERT INTO {fts}({fts}, rowid, {cols}) VALUES ('delete', old.id, {old});
        INSERT INTO {fts}(rowid, {cols}) VALUES (new.id, {new}); END;
    """


def connect(path: Path, migrations: list[str], what: str, error: type[StoreError] = StoreError) -> sqlite3.Connection:
    """Open (or make) the database at `path` and bring it to the latest migration; a file that
    is not a database, or one from a newer longchat, is `error` naming `what` it is."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        db = sqlite3.connect(path, timeout=10, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        migrate(db, migrations, path, error)
    except sqlite3.DatabaseError as e:
        raise error(f"cannot open {what} {path}: {e}") from None
    return db


def migrate(db: sqlite3.Connection, migrations: list[str], path: Path, error: type[StoreError] = StoreError) -> int:
    """Apply the migrations this file has not seen yet, each in one transaction."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > len(migrations):
        raise error(f"{path} was written by a newer longchat (schema {version}); upgrade longchat")
    for number in range(version, len(migrations)):
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("PRAGMA user_version").fetchone()[0] == number:  # another process may have done it
                for statement in statements(migrations[number]):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version={number + 1}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return len(migrations)


def statements(script: str) -> list[str]:
    """Split a migration into statements (CREATE TRIGGER bodies hold ';' before their END)."""
    out, buf = [], ""
    for part in script.split(";"):
        buf += part + ";"
        if buf.strip() == ";":
            buf = ""
            continue
        if "BEGIN" in buf.upper() and not buf.rstrip().upper().endswith("END;"):
            continue
        out.append(buf.strip())
        buf = ""
    return out
