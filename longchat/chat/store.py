"""The session store: one SQLite file in the data dir (WAL, numbered append-only migrations).

Tables: sessions; messages (recall storage: every message ever said, with its token count and
whether it is still in the model's window) and their FTS5 index; core-memory blocks with
character limits; archival passages and their FTS5 index; recursive summaries (each one
records the last message it covers). Every write commits at once, so a kill -9 loses at most
what was not yet written: the reply being generated.
"""

from __future__ import annotations

import itertools
import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from longchat import paths
from longchat.db import connect, fts_index, migrate
from longchat.errors import InputError, StoreError
from longchat.locks import Lock
from longchat.text.retrieval import WORD
from longchat.text.words import STOPWORDS

if TYPE_CHECKING:
    import numpy as np

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
CORE_LIMIT = 2000  # characters per core-memory block
# Both blocks start empty (an empty block is not shown). A persona line such as "I am longchat's
# assistant." made the bundled model reply with it to every statement the user made, and then
# copy that reply from the window for the rest of the session.
DEFAULT_CORE = {"persona": "", "human": ""}

MIGRATIONS = [
    # 1: the first schema
    """
    CREATE TABLE sessions (
        id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created REAL NOT NULL, updated REAL NOT NULL,
        model TEXT NOT NULL DEFAULT '', profile TEXT NOT NULL DEFAULT '');
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY, session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        role TEXT NOT NULL, content TEXT NOT NULL, created REAL NOT NULL, tokens INTEGER NOT NULL DEFAULT 0,
        in_context INTEGER NOT NULL DEFAULT 1, interrupted INTEGER NOT NULL DEFAULT 0);
    CREATE INDEX messages_session ON messages(session_id, id);
    """ + fts_index("messages") + """
    CREATE TABLE core_blocks (
        session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE, label TEXT NOT NULL,
        value TEXT NOT NULL DEFAULT '', char_limit INTEGER NOT NULL, PRIMARY KEY (session_id, label));
    CREATE TABLE archival (
        id INTEGER PRIMARY KEY, session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        content TEXT NOT NULL, created REAL NOT NULL);
    """ + fts_index("archival") + """
    CREATE TABLE summaries (
        id INTEGER PRIMARY KEY, session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        upto_message INTEGER NOT NULL, content TEXT NOT NULL, created REAL NOT NULL);
    """,
    # 2: facts the user stated, kept by the system (chat/facts.py), each with its source message
    """
    CREATE TABLE facts (
        id INTEGER PRIMARY KEY AUTOINCREMENT, session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        key TEXT NOT NULL, content TEXT NOT NULL, source INTEGER, created REAL NOT NULL);
    CREATE INDEX facts_session ON facts(session_id, key);
    """,
    # 3: sentence vectors of what recall searches by meaning (text/embed.py), filled in lazily:
    # a store written before this migration gains them at its first search, nothing else changes
    """
    CREATE TABLE vectors (
        kind TEXT NOT NULL, item INTEGER NOT NULL,
        session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        model TEXT NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (kind, item));
    CREATE INDEX vectors_session ON vectors(session_id, kind, item);
    CREATE TRIGGER facts_vector_ad AFTER DELETE ON facts BEGIN
        DELETE FROM vectors WHERE kind = 'fact' AND item = old.id; END;
    CREATE TRIGGER archival_vector_ad AFTER DELETE ON archival BEGIN
        DELETE FROM vectors WHERE kind = 'archival' AND item = old.id; END;
    """,
    # 4: the documents a session is about (`--file`, a long message's body): every later turn
    # reads them through the reading policy (longchat/reading.py), as `ask` reads a file
    """
    CREATE TABLE documents (
        id INTEGER PRIMARY KEY, session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        label TEXT NOT NULL, content TEXT NOT NULL, sha256 TEXT NOT NULL, created REAL NOT NULL);
    CREATE INDEX documents_session ON documents(session_id);
    """,
    # 5: a fact replaced by a newer statement of the same thing is kept, with the fact that
    # replaced it and until when it held (its replacement's time): answers use the current
    # fact, the history stays to show and search (issue 43)
    """
    ALTER TABLE facts ADD COLUMN replaced_by INTEGER;
    ALTER TABLE facts ADD COLUMN until REAL;
    CREATE INDEX facts_replaced ON facts(replaced_by);
    """,
]

# What recall searches by meaning, per kind of item: the user's own messages and function
# results (never the assistant's replies), the facts, the archival passages.
INDEXED = {"message": "SELECT id, content FROM messages WHERE session_id = ? AND role IN ('user', 'function')",
           "fact": "SELECT id, content FROM facts WHERE session_id = ? AND replaced_by IS NULL",
           "archival": "SELECT id, content FROM archival WHERE session_id = ?"}
RRF_K = 60  # reciprocal rank fusion's constant (Cormack et al. 2009)



class SessionError(StoreError):
    """A session that cannot be used: unknown, busy, or a store that cannot be opened."""


@dataclass
class Message:
    id: int
    role: str
    content: str
    created: float
    tokens: int
    in_context: bool
    interrupted: bool = False


@dataclass
class Hit:
    id: int
    content: str
    created: float
    role: str = "archival"
    session: str | None = None  # recalled from another session (`--memory-from`): its name


def when(ts: float) -> str:
    """A stored timestamp for people: local "YYYY-MM-DD HH:MM"."""
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def day(ts: float) -> str:
    """A stored timestamp's local date, "YYYY-MM-DD"."""
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d")


def store_path() -> Path:
    return paths.data_dir() / "sessions.db"


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise InputError(f"bad session name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)")
    return name


def fts_query(text: str) -> str | None:
    """An FTS5 query matching any content word of `text` (stop words left out), or None."""
    words = [w for w in WORD.findall(text.lower()) if w not in STOPWORDS and len(w) > 1]
    seen = list(dict.fromkeys(words))[:24]
    return " OR ".join(f'"{w}"' for w in seen) or None


def _words(text: str) -> list[str]:
    """Content words, a plural's "s" dropped: what fact search compares."""
    words = [w for w in WORD.findall(text.lower()) if w not in STOPWORDS and len(w) > 1]
    return [w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in words]


class Store:
    """All sessions in one SQLite database."""

    def __init__(self, path: Path | None = None, *, embedder=None):
        self.path = Path(path) if path else store_path()
        self._embedder = embedder  # None: text/embed.py's default, loaded at the first search by meaning
        self._vectors: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]] = {}
        self.db = connect(self.path, MIGRATIONS, "the session store", SessionError)

    def migrate(self) -> int:
        """Apply the migrations this file has not seen yet, each in one transaction."""
        return migrate(self.db, MIGRATIONS, self.path, SessionError)

    def close(self) -> None:
        self.db.close()

    # -- sessions --------------------------------------------------------------------------
    def session_id(self, name: str, *, create: bool = False) -> int:
        row = self.db.execute("SELECT id FROM sessions WHERE name = ?", (name,)).fetchone()
        if row:
            return row["id"]
        if not create:
            raise SessionError(f"no session named {name!r} (see `longchat sessions list`)")
        now = time.time()
        with self._tx():
            sid = self.db.execute("INSERT INTO sessions(name, created, updated) VALUES (?, ?, ?)",
                                  (check_name(name), now, now)).lastrowid
            for label, value in DEFAULT_CORE.items():
                self.db.execute("INSERT INTO core_blocks(session_id, label, value, char_limit) VALUES (?, ?, ?, ?)",
                                (sid, label, value, CORE_LIMIT))
        return sid

    def sessions(self) -> list[dict]:
        rows = self.db.execute(
            "SELECT s.name, s.created, s.updated, s.model, "
            "(SELECT count(*) FROM messages m WHERE m.session_id = s.id) AS messages, "
            "(SELECT count(*) FROM messages m WHERE m.session_id = s.id AND m.in_context) AS in_context, "
            "(SELECT count(*) FROM archival a WHERE a.session_id = s.id) AS archival "
            "FROM sessions s ORDER BY s.updated DESC").fetchall()
        return [dict(r) for r in rows]

    def remove(self, name: str) -> None:
        sid = self.session_id(name)
        with self._tx():
            self.db.execute("DELETE FROM sessions WHERE id = ?", (sid,))

    def touch(self, sid: int, model: str = "", profile: str = "") -> None:
        self.db.execute("UPDATE sessions SET updated = ?, model = COALESCE(NULLIF(?, ''), model), "
                        "profile = COALESCE(NULLIF(?, ''), profile) WHERE id = ?", (time.time(), model, profile, sid))

    # -- recall storage --------------------------------------------------------------------
    def add_message(self, sid: int, role: str, content: str, tokens: int = 0, interrupted: bool = False,
                    at: float | None = None) -> int:
        """A message, said now or at `at` (seconds since the epoch: a history imported as it happened)."""
        mid = self.db.execute(
            "INSERT INTO messages(session_id, role, content, created, tokens, interrupted) VALUES (?, ?, ?, ?, ?, ?)",
            (sid, role, content, time.time() if at is None else at, tokens, int(interrupted))).lastrowid
        self.touch(sid)
        return mid

    def messages(self, sid: int, *, in_context: bool | None = None) -> list[Message]:
        where = "" if in_context is None else f" AND in_context = {int(in_context)}"
        rows = self.db.execute(f"SELECT * FROM messages WHERE session_id = ?{where} ORDER BY id", (sid,)).fetchall()
        return [_message(r) for r in rows]

    def count_messages(self, sid: int) -> int:
        return self.db.execute("SELECT count(*) FROM messages WHERE session_id = ?", (sid,)).fetchone()[0]

    def evict(self, sid: int, upto: int) -> None:
        """Messages up to id `upto` leave the window (they stay in recall storage)."""
        self.db.execute("UPDATE messages SET in_context = 0 WHERE session_id = ? AND id <= ?", (sid, upto))

    def search_messages(self, sid: int, query: str, *, limit: int = 5, offset: int = 0,
                        outside_context: bool = False, before: int | None = None,
                        roles: tuple[str, ...] | None = None,
                        period: tuple[float, float] | None = None) -> tuple[list[Hit], int]:
        """Messages matching any content word of `query`, best first; and how many match.
        `outside_context`: only those that left the window; `before`: only ids below it;
        `roles`: only messages of these roles; `period`: only those said in [start, end)."""
        q = fts_query(query)
        if q is None:
            return [], 0
        extra = (" AND m.in_context = 0" if outside_context else "") + \
            (f" AND m.id < {int(before)}" if before is not None else "") + \
            (f" AND m.created >= {float(period[0])!r} AND m.created < {float(period[1])!r}" if period else "")
        if roles:
            extra += " AND m.role IN (" + ", ".join(f"'{r}'" for r in roles if r.isalpha()) + ")"
        # CROSS JOIN: the full-text matches drive the loop (a plain JOIN let SQLite scan the
        # session's messages and run the match per row: 1.6 s instead of 2 ms at 10,000 messages).
        base = (f"FROM messages_fts f CROSS JOIN messages m ON m.id = f.rowid "
                f"WHERE messages_fts MATCH ? AND m.session_id = ?{extra}")
        total = self.db.execute(f"SELECT count(*) {base}", (q, sid)).fetchone()[0]
        rows = self.db.execute(f"SELECT m.id, m.content, m.created, m.role {base} ORDER BY bm25(messages_fts) "
                               f"LIMIT ? OFFSET ?", (q, sid, limit, offset)).fetchall()
        return [Hit(r["id"], r["content"], r["created"], r["role"]) for r in rows], total

    def messages_between(self, sid: int, start: float, end: float, *, limit: int = 5,
                         offset: int = 0, roles: tuple[str, ...] | None = None) -> tuple[list[Hit], int]:
        args = (sid, start, end)
        where = "FROM messages WHERE session_id = ? AND created >= ? AND created < ?"
        if roles:
            where += " AND role IN (" + ", ".join(f"'{r}'" for r in roles if r.isalpha()) + ")"
        total = self.db.execute(f"SELECT count(*) {where}", args).fetchone()[0]
        rows = self.db.execute(f"SELECT id, content, created, role {where} ORDER BY id LIMIT ? OFFSET ?",
                               (*args, limit, offset)).fetchall()
        return [Hit(r["id"], r["content"], r["created"], r["role"]) for r in rows], total

    # -- core memory -----------------------------------------------------------------------
    def core(self, sid: int) -> dict[str, tuple[str, int]]:
        rows = self.db.execute("SELECT label, value, char_limit FROM core_blocks WHERE session_id = ? ORDER BY label",
                               (sid,)).fetchall()
        return {r["label"]: (r["value"], r["char_limit"]) for r in rows}

    def set_core(self, sid: int, label: str, value: str) -> None:
        blocks = self.core(sid)
        if label not in blocks:
            raise InputError(f"no core memory block {label!r}; blocks: {', '.join(blocks)}")
        limit = blocks[label][1]
        if len(value) > limit:
            raise InputError(f"core memory '{label}' would hold {len(value)} characters; its limit is {limit}")
        self.db.execute("UPDATE core_blocks SET value = ? WHERE session_id = ? AND label = ?", (value, sid, label))

    # -- documents -------------------------------------------------------------------------
    def add_document(self, sid: int, label: str, content: str) -> bool:
        """Keep a document of the session; False when the same text is kept already."""
        import hashlib

        digest = hashlib.sha256(content.encode("utf-8", "replace")).hexdigest()
        with self._tx():
            if self.db.execute("SELECT 1 FROM documents WHERE session_id = ? AND sha256 = ?", (sid, digest)).fetchone():
                return False
            self.db.execute("INSERT INTO documents(session_id, label, content, sha256, created) VALUES (?, ?, ?, ?, ?)",
                            (sid, label, content, digest, time.time()))
        return True

    def documents(self, sid: int) -> list[tuple[str, str]]:
        """(label, text) of the session's documents, oldest first."""
        rows = self.db.execute("SELECT label, content FROM documents WHERE session_id = ? ORDER BY id", (sid,))
        return [(r["label"], r["content"]) for r in rows]

    # -- archival storage ------------------------------------------------------------------
    def archive(self, sid: int, content: str) -> int:
        if not content.strip():
            raise InputError("nothing to archive: the text is empty")
        return self.db.execute("INSERT INTO archival(session_id, content, created) VALUES (?, ?, ?)",
                               (sid, content.strip(), time.time())).lastrowid

    def search_archival(self, sid: int, query: str, *, limit: int = 5, offset: int = 0) -> tuple[list[Hit], int]:
        q = fts_query(query)
        if q is None:
            return [], 0
        base = ("FROM archival_fts f CROSS JOIN archival a ON a.id = f.rowid "
                "WHERE archival_fts MATCH ? AND a.session_id = ?")
        total = self.db.execute(f"SELECT count(*) {base}", (q, sid)).fetchone()[0]
        rows = self.db.execute(f"SELECT a.id, a.content, a.created {base} ORDER BY bm25(archival_fts) LIMIT ? OFFSET ?",
                               (q, sid, limit, offset)).fetchall()
        return [Hit(r["id"], r["content"], r["created"]) for r in rows], total

    # -- facts the user stated ---------------------------------------------------------------
    def facts(self, sid: int) -> list[dict]:
        """Every current fact (none replaced): id, key, content, source (message id), created."""
        rows = self.db.execute("SELECT id, key, content, source, created FROM facts WHERE session_id = ? "
                               "AND replaced_by IS NULL ORDER BY id", (sid,)).fetchall()
        return [dict(r) for r in rows]

    def fact_history(self, sid: int, key: str) -> list[dict]:
        """The facts with `key` that newer statements replaced, oldest first: id, content,
        source, created, until (when the next one was said) and replaced_by."""
        rows = self.db.execute("SELECT id, key, content, source, created, until, replaced_by FROM facts "
                               "WHERE session_id = ? AND key = ? AND replaced_by IS NOT NULL ORDER BY created, id",
                               (sid, key)).fetchall()
        return [dict(r) for r in rows]

    def facts_with_history(self, sid: int) -> list[dict]:
        """`facts`, each with a `history` list: the facts of its key it replaced, oldest first."""
        return [{**f, "history": self.fact_history(sid, f["key"])} for f in self.facts(sid)]

    def replaced(self, sid: int, fact_id: int) -> dict | None:
        """The fact that fact `fact_id` replaced (content, created, until), or None."""
        row = self.db.execute("SELECT id, content, created, until FROM facts WHERE session_id = ? AND replaced_by = ?",
                              (sid, fact_id)).fetchone()
        return None if row is None else dict(row)

    def add_fact(self, sid: int, key: str, content: str, source: int | None,
                 at: float | None = None) -> tuple[int, str | None] | None:
        """Keep a fact; the current one with the same key is replaced (a correction, or news) and
        kept in its history until the new one's time. Returns (id, the replaced fact's text or
        None), or None when it is already held."""
        created = time.time() if at is None else at
        with self._tx():
            old = self.db.execute("SELECT id, content FROM facts WHERE session_id = ? AND key = ? "
                                  "AND replaced_by IS NULL", (sid, key)).fetchone()
            if old is not None and old["content"] == content:
                return None
            fid = self.db.execute("INSERT INTO facts(session_id, key, content, source, created) VALUES (?, ?, ?, ?, ?)",
                                  (sid, key, content, source, created)).lastrowid
            if old is not None:
                self.db.execute("UPDATE facts SET replaced_by = ?, until = ? WHERE id = ?", (fid, created, old["id"]))
                # recall searches current facts only (INDEXED); the history is read by key
                self.db.execute("DELETE FROM vectors WHERE kind = 'fact' AND item = ?", (old["id"],))
                self._vectors.pop((sid, "fact"), None)
        return fid, None if old is None else old["content"]

    def forget_fact(self, sid: int, fact_id: int) -> str:
        """Remove a current fact and the history of its key; its text."""
        row = self.db.execute("SELECT content, key FROM facts WHERE session_id = ? AND id = ? AND replaced_by IS NULL",
                              (sid, fact_id)).fetchone()
        if row is None:
            raise InputError(f"no fact #{fact_id} in this session (/facts lists them)")
        with self._tx():
            self.db.execute("DELETE FROM facts WHERE session_id = ? AND key = ? AND replaced_by IS NOT NULL",
                            (sid, row["key"]))
            self.db.execute("DELETE FROM facts WHERE id = ?", (fact_id,))
        self._vectors.pop((sid, "fact"), None)
        return row["content"]

    def search_facts(self, sid: int, query: str, *, limit: int = 5) -> list[Hit]:
        """Facts sharing a content word with `query`, most shared words first."""
        wanted = set(_words(query))
        scored = []
        for f in self.facts(sid):
            shared = len(wanted & set(_words(f["content"] + " " + f["key"])))
            if shared:
                scored.append((-shared, -f["id"], Hit(f["id"], f["content"], f["created"], "fact")))
        return [h for *_, h in sorted(scored)[:limit]]

    # -- recall by meaning, and both rankings fused ------------------------------------------
    @property
    def embedder(self):
        """The sentence embedder (text/embed.py); None when `wordllama` is not installed."""
        if self._embedder is None:
            from longchat.text.embed import default_embedder

            self._embedder = default_embedder() or False
        return self._embedder or None

    def index(self, sid: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids, unit vectors) of the session's `kind` items (`INDEXED`), in id order. What has
        no vector yet is embedded and stored first: all of a store's items at the first search
        after migration 3, afterwards only what was added since the last search."""
        import numpy as np

        emb = self.embedder
        cached = self._vectors.get((sid, kind))
        if cached is None:
            self.db.execute("DELETE FROM vectors WHERE session_id = ? AND kind = ? AND model != ?",
                            (sid, kind, emb.name))
            missing = self.db.execute(f"{INDEXED[kind]} AND id NOT IN (SELECT item FROM vectors WHERE "
                                      f"session_id = ? AND kind = ?) ORDER BY id", (sid, sid, kind)).fetchall()
            self._store_vectors(sid, kind, missing)
            rows = self.db.execute("SELECT item, vector FROM vectors WHERE session_id = ? AND kind = ? ORDER BY item",
                                   (sid, kind)).fetchall()
            ids = np.array([r[0] for r in rows], dtype=np.int64)
            mat = (np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float16).reshape(len(rows), emb.dim)
                   .astype(np.float32))
        else:
            ids, mat = cached
            new = self.db.execute(f"{INDEXED[kind]} AND id > ? ORDER BY id",
                                  (sid, int(ids[-1]) if len(ids) else 0)).fetchall()
            if new:
                ids = np.concatenate([ids, np.array([r[0] for r in new], dtype=np.int64)])
                mat = np.concatenate([mat, self._store_vectors(sid, kind, new)])
        self._vectors[(sid, kind)] = (ids, mat)
        return ids, mat

    def _store_vectors(self, sid: int, kind: str, rows) -> np.ndarray:
        """Embed `rows` (id, content) and keep their vectors (fp16) in one transaction."""
        emb = self.embedder
        vectors = emb.embed([r[1] for r in rows])
        if rows:
            with self._tx():
                self.db.executemany(
                    "INSERT OR REPLACE INTO vectors(kind, item, session_id, model, vector) VALUES (?, ?, ?, ?, ?)",
                    [(kind, r[0], sid, emb.name, v.astype("float16").tobytes()) for r, v in zip(rows, vectors)])
        return vectors

    def search_meaning(self, sid: int, kind: str, query: str, *, limit: int = 20, floor: float = 0.2,
                       before: int | None = None) -> list[tuple[int, float]]:
        """(id, cosine) of the `kind` items nearest `query` in meaning, at least `floor`, best
        first; `before`: only ids below it. Empty without an embedder."""
        import numpy as np

        if self.embedder is None:
            return []
        ids, mat = self.index(sid, kind)
        if not len(ids):
            return []
        scores = mat @ self.embedder.embed([query])[0]
        if before is not None:
            scores = np.where(ids < before, scores, -1.0)
        best = np.argsort(-scores, kind="stable")[:limit]
        return [(int(ids[i]), float(scores[i])) for i in best if scores[i] >= floor]

    def recall(self, sid: int, kind: str, query: str, *, limit: int = 5, floor: float | None = 0.2,
               before: int | None = None, period: tuple[float, float] | None = None) -> list[Hit]:
        """The session's `kind` items ("message": the user's and function results; "fact";
        "archival") for `query`, best first: the word ranking (full-text search; shared words
        for facts) and the meaning ranking (cosine >= `floor`; None: words only) fused by
        reciprocal rank. When items in both rankings hold every content word of the query, only
        they are kept: a small model reads the fact it was asked about worse with look-alike
        facts around it.
        `before`: only messages with a lower id; `period`: only items said in [start, end)."""
        pool = max(20, limit)
        if kind == "message":
            words = self.search_messages(sid, query, limit=pool, before=before, roles=("user", "function"),
                                         period=period)[0]
        elif kind == "fact":
            words = self.search_facts(sid, query, limit=pool)
        else:
            words = self.search_archival(sid, query, limit=pool)[0]
        if floor is None:
            return words[:limit]
        meaning = [i for i, _ in self.search_meaning(sid, kind, query, limit=pool, floor=floor, before=before)]
        order = fuse([h.id for h in words], meaning)
        found = {h.id: h for h in words}
        asked = set(_words(query))
        whole = [i for i in order if i in found and i in meaning and asked <= set(_words(found[i].content))]
        if whole:  # items both rankings found that hold every word of the query: only they are placed
            order = whole
        hits = (found.get(i) or self._hit(kind, i) for i in order)  # rows are read until `limit` are found
        kept = (h for h in hits if h is not None and (period is None or period[0] <= h.created < period[1]))
        return list(itertools.islice(kept, limit))

    def _hit(self, kind: str, item: int) -> Hit | None:
        table, role = {"message": ("messages", "role"), "fact": ("facts", "'fact'"),
                       "archival": ("archival", "'archival'")}[kind]
        row = self.db.execute(f"SELECT id, content, created, {role} AS role FROM {table} WHERE id = ?",
                              (item,)).fetchone()
        return None if row is None else Hit(row["id"], row["content"], row["created"], row["role"])

    # -- recursive summary -----------------------------------------------------------------
    def summary(self, sid: int) -> tuple[str, int]:
        """(the latest summary, the last message id it covers); ("", 0) before the first."""
        row = self.db.execute("SELECT content, upto_message FROM summaries WHERE session_id = ? ORDER BY id DESC LIMIT 1",
                              (sid,)).fetchone()
        return (row["content"], row["upto_message"]) if row else ("", 0)

    def page_out(self, sid: int, summary: str, upto: int) -> None:
        """A new summary covering messages up to `upto`, and those messages leave the window: one transaction."""
        with self._tx():
            self.db.execute("INSERT INTO summaries(session_id, upto_message, content, created) VALUES (?, ?, ?, ?)",
                            (sid, upto, summary, time.time()))
            self.evict(sid, upto)

    # -- export ----------------------------------------------------------------------------
    def export(self, name: str) -> dict:
        sid = self.session_id(name)
        row = dict(self.db.execute("SELECT * FROM sessions WHERE id = ?", (sid,)).fetchone())
        summary, upto = self.summary(sid)
        return {"name": row["name"], "created": row["created"], "updated": row["updated"], "model": row["model"],
                "core": {k: v for k, (v, _) in self.core(sid).items()}, "summary": summary, "summary_upto": upto,
                "messages": [vars(m) for m in self.messages(sid)],
                "archival": [dict(r) for r in self.db.execute(
                    "SELECT id, content, created FROM archival WHERE session_id = ? ORDER BY id", (sid,))],
                "facts": self.facts_with_history(sid),
                "documents": [{"label": label, "content": text} for label, text in self.documents(sid)]}

    def _tx(self):
        return _Transaction(self.db)


def fuse(*rankings: list[int], k: int = RRF_K) -> list[int]:
    """Reciprocal rank fusion: ids ranked by the sum over rankings of 1 / (k + rank), rank
    from 1; ties keep the order in which the ids first appear (the first ranking leads)."""
    score: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            score[item] = score.get(item, 0.0) + 1.0 / (k + rank)
    first = {item: n for n, item in enumerate(dict.fromkeys(i for r in rankings for i in r))}
    return sorted(score, key=lambda i: (-score[i], first[i]))


class _Transaction:
    def __init__(self, db):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, value, tb):
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


def _message(r) -> Message:
    return Message(r["id"], r["role"], r["content"], r["created"], r["tokens"], bool(r["in_context"]),
                   bool(r["interrupted"]))


class SessionLock:
    """One chat process per session: an exclusive flock, released when the process ends."""

    def __init__(self, name: str):
        folder = paths.data_dir() / "sessions"
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{name}.lock"
        self._lock = Lock(self.path)
        if not self._lock.take():
            owner = self._lock.holder()
            self._lock.release()
            raise SessionError(f"session {name!r} is busy: another longchat (pid {owner}) has it open")
        self._lock.write_pid()

    def release(self) -> None:
        self._lock.release()
