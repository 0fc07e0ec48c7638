"""Session recall by meaning (text/embed.py, Store.index/search_meaning/recall): the static
vectors that ship in the `wordllama` wheel, stored in SQLite beside the messages, fused with
full-text search by reciprocal rank. Everything here is real: the real vectors, a real SQLite
file; no model runs (recall needs none)."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

from longchat.api import open_runner
from longchat.text.embed import default_embedder
from longchat.chat.facts import extract
from longchat.chat import session as session_module
from longchat.chat.session import SessionConversation
from longchat.chat.store import MIGRATIONS, Store, _words, fuse
from longchat.db import statements as _statements

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from sessions import FILLER, PARAPHRASE  # noqa: E402  the benchmark's own paraphrase set


def session(tmp_path, embedder=None):
    store = Store(tmp_path / "s.db", embedder=embedder)
    return store, store.session_id("s", create=True)


def test_fusion_ranks_by_summed_reciprocal_rank():
    assert fuse([1, 2, 3], [3, 4]) == [3, 1, 2, 4]  # 3 is in both: 1/63 + 1/61 beats 1/61
    assert fuse([5, 6], []) == [5, 6] and fuse([], [7, 8]) == [7, 8]
    assert fuse([1, 2], [2, 1]) == [1, 2]  # a tie keeps the first ranking's order
    assert fuse([], []) == []


def test_vectors_have_unit_length_and_paraphrases_sit_closer_than_chit_chat():
    emb = default_embedder()
    assert emb is not None, "wordllama is a dependency: its wheel ships the vectors"
    fact, question, other = emb.embed(["I work as a pharmacist.", "What is my job?", "Tell me about owls."])
    assert abs(float(fact @ fact) - 1) < 1e-5
    assert float(fact @ question) > 0.2 > float(other @ question)
    assert not emb.embed([""]).any()  # nothing to embed, no direction
    assert emb.embed([]).shape == (0, emb.dim)


def test_the_paraphrase_set_shares_no_content_word():
    assert len(PARAPHRASE) >= 20
    for fact, question, _ in PARAPHRASE:
        assert not set(_words(fact)) & set(_words(question)), (fact, question)


def test_hybrid_recall_finds_paraphrased_facts_that_words_miss(tmp_path):
    store, sid = session(tmp_path)
    for fact, _, _ in PARAPHRASE:
        mid = store.add_message(sid, "user", fact)
        store.add_message(sid, "assistant", "That's nice.")
        for f in extract(fact):
            store.add_fact(sid, f.key, f.text, mid)
    for line in FILLER:
        store.add_message(sid, "user", line)

    def found(floor):
        return sum(any(key in h.content.lower() for h in store.recall(sid, "message", question, limit=3, floor=floor))
                   for _, question, key in PARAPHRASE)

    words, hybrid = found(None), found(0.2)
    assert words <= 1 and hybrid >= 0.7 * len(PARAPHRASE), (words, hybrid)


def test_the_assistants_replies_are_never_indexed_or_recalled(tmp_path):
    store, sid = session(tmp_path)
    store.add_message(sid, "user", "My bike is teal.")
    store.add_message(sid, "assistant", "In the context of the anime, your bicycle is a reference to Zelda.")
    hits = store.recall(sid, "message", "Which bicycle do I ride?", limit=5)
    assert [h.content for h in hits] == ["My bike is teal."]
    kinds = store.db.execute("SELECT kind, count(*) FROM vectors GROUP BY kind").fetchall()
    assert [tuple(r) for r in kinds] == [("message", 1)]


def test_when_both_rankings_find_the_whole_question_what_only_one_found_is_left_out(tmp_path):
    store, sid = session(tmp_path)
    for text in ("My sister's name is Alma.", "My best friend is called Tomasz.", "My dog is called Biscuit."):
        f = extract(text)[0]
        store.add_fact(sid, f.key, f.text, None)
    alone = [h.content for h in store.recall(sid, "fact", "What is my sister's name?")]
    assert alone == ["My sister's name is Alma."]
    # "called" is shared with two other facts, which do not hold "sibling": meaning keeps its say.
    fused = [h.content for h in store.recall(sid, "fact", "How is my sibling called?")]
    assert "My sister's name is Alma." in fused and len(fused) > 1


class Counting:
    """The real embedder, counting the texts it is asked to embed."""

    def __init__(self):
        self.inner = default_embedder()
        self.name, self.dim, self.texts = self.inner.name, self.inner.dim, 0

    def embed(self, texts):
        self.texts += len(texts)
        return self.inner.embed(texts)


def test_the_index_is_stored_and_grows_incrementally(tmp_path):
    counting = Counting()
    store, sid = session(tmp_path, counting)
    for i in range(5):
        store.add_message(sid, "user", f"My plant number {i} is a cactus.")
    store.recall(sid, "message", "succulent")
    assert counting.texts == 5 + 1  # the five messages, then the query
    store.add_message(sid, "user", "My flight to Oslo leaves on Friday.")
    assert store.recall(sid, "message", "Which day does my plane depart?")[0].content.startswith("My flight")
    assert counting.texts == 6 + 1 + 1  # only the new message was embedded
    store.close()
    again = Counting()
    reopened = Store(tmp_path / "s.db", embedder=again)  # a restart: the vectors come from SQLite
    assert reopened.recall(sid, "message", "Which day does my plane depart?")[0].content.startswith("My flight")
    assert again.texts == 1


def test_vectors_of_another_model_are_replaced_and_deleted_items_take_theirs_along(tmp_path):
    store, sid = session(tmp_path)
    fid, _ = store.add_fact(sid, "job", "I work as a pharmacist.", None)
    store.recall(sid, "fact", "What is my job?")
    store.db.execute("UPDATE vectors SET model = 'older-model'")
    store.close()
    store = Store(tmp_path / "s.db")
    assert store.recall(sid, "fact", "What is my job?")[0].content == "I work as a pharmacist."
    assert store.db.execute("SELECT DISTINCT model FROM vectors").fetchall()[0][0] == default_embedder().name
    store.forget_fact(sid, fid)
    assert store.db.execute("SELECT count(*) FROM vectors WHERE kind = 'fact'").fetchone()[0] == 0
    assert store.recall(sid, "fact", "What is my job?") == []


def test_an_old_store_gains_the_index_at_its_first_search_without_losing_anything(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    for migration in MIGRATIONS[:2]:  # the store as the previous release wrote it
        for statement in _statements(migration):
            db.execute(statement)
    db.execute("PRAGMA user_version=2")
    db.execute("INSERT INTO sessions(name, created, updated) VALUES ('old', 1, 1)")
    insert = "INSERT INTO messages(session_id, role, content, created) VALUES (1, ?, ?, ?)"
    db.execute(insert, ("user", "I work as a pharmacist.", 1))
    db.execute(insert, ("assistant", "Nice!", 2))
    db.execute("INSERT INTO facts(session_id, key, content, source, created) "
               "VALUES (1, 'work', 'I work as a pharmacist.', 1, 1)")
    db.execute("INSERT INTO archival(session_id, content, created) VALUES (1, 'The spare key is under the mat.', 3)")
    db.close()
    store = Store(path)
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    sid = store.session_id("old")
    assert [m.content for m in store.messages(sid)] == ["I work as a pharmacist.", "Nice!"]
    assert store.recall(sid, "fact", "What is my job?")[0].content == "I work as a pharmacist."
    assert store.recall(sid, "message", "What is my job?")[0].content == "I work as a pharmacist."
    assert store.recall(sid, "archival", "Where is the spare door key?")[0].content.startswith("The spare key")
    kinds = store.db.execute("SELECT kind, count(*) FROM vectors GROUP BY kind ORDER BY kind").fetchall()
    assert [tuple(r) for r in kinds] == [("archival", 1), ("fact", 1), ("message", 1)]
    assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_without_the_vectors_recall_falls_back_to_words(tmp_path):
    store, sid = session(tmp_path, embedder=False)
    store.add_message(sid, "user", "I work as a pharmacist.")
    assert store.embedder is None
    assert store.recall(sid, "message", "What is my job?") == []
    assert [h.content for h in store.recall(sid, "message", "Where do I work?")] == ["I work as a pharmacist."]


@pytest.fixture
def tiny_runner(home, tiny_chat_model):
    return open_runner("full", str(tiny_chat_model), overrides=["generation.max_new_tokens=16"])


@pytest.mark.parametrize("semantic, expected", [(True, True), (False, False)])
def test_the_session_setting_turns_meaning_on_and_off(tiny_runner, tmp_path, semantic, expected):
    tiny_runner.profile.sessions.semantic = semantic
    conv = SessionConversation(tiny_runner, "s", store=Store(tmp_path / "s.db"))
    uid = conv.store.add_message(conv.sid, "user", "I work as a pharmacist.")
    conv.learn("I work as a pharmacist.", uid)
    for i in range(6):
        conv.store.add_message(conv.sid, "user", f"Tell me about trains, part {i}.")
    # Not a question about the user (those also get the facts their key stands for), and no word
    # of the fact or of its key ("job")
    found = conv.relevant("Do chemists earn much?")
    assert any("pharmacist" in line for line in found) is expected
    conv.close()


# -- the copy guard: a reply may not repeat an earlier reply to another message ------------------

def test_copy_guard_bars_the_token_that_would_complete_an_earlier_n_gram():
    from longchat.runtime.generate import CopyGuard

    guard = CopyGuard([[5, 6, 7, 8, 9], [5, 6, 7, 2]], 4)
    assert guard.barred([1, 5, 6, 7]) == {8, 2}  # both earlier texts went on from 5 6 7
    assert guard.barred([6, 7, 8]) == {9}
    assert guard.barred([5, 6]) == set() and guard.barred([7, 7, 7]) == set()
    assert CopyGuard([[1, 2]], 4).next == {}  # shorter than n: nothing to copy


def test_a_guarded_reply_never_repeats_the_earlier_one(tiny_chat_model, home):
    """Greedy decoding gives the same reply twice (checked); with the first reply as the guard's
    text, the second holds none of its 4-grams."""
    from longchat.prompts import chat_ids
    from longchat.runtime.generate import CopyGuard, Sampling

    runner = open_runner("full", str(tiny_chat_model))
    prompt = chat_ids(runner.tokenizer, [{"role": "user", "content": "Tell me about the ocean."}])
    earlier = list(runner.engine.generate(prompt, Sampling(max_new_tokens=24)))
    assert list(runner.engine.generate(prompt, Sampling(max_new_tokens=24))) == earlier
    ids = list(runner.engine.generate(prompt, Sampling(max_new_tokens=24), copy_guard=CopyGuard([earlier], 4)))
    grams = {tuple(earlier[i:i + 4]) for i in range(len(earlier) - 3)}
    assert ids[:3] == earlier[:3] and ids != earlier  # barred only where the copy would complete
    assert not any(tuple(ids[i:i + 4]) in grams for i in range(len(ids) - 3))


# -- what a session places before a message: the user's words, never the assistant's --------------------

def test_copy_boost_helps_the_token_that_carries_a_favoured_text_on():
    from longchat.runtime.generate import CopyGuard

    guard = CopyGuard([], 0, favoured=[[5, 6, 7, 8, 9]], boost=3.0)
    assert guard.helped([1, 5, 6, 7]) == {8} and guard.helped([6, 7, 8]) == {9}
    assert guard.helped([6, 7]) == set() and guard.barred([5, 6, 7]) == set()
    assert CopyGuard([], 0, favoured=[[5, 6, 7, 8]]).favoured == {}  # no boost: nothing favoured
    # Never across a sentence's end: with 8 a full stop, 9 is not helped on from "6 7 8".
    ended = CopyGuard([], 0, favoured=[[5, 6, 7, 8, 9, 10]], boost=3.0, breaks={8})
    assert ended.helped([5, 6, 7]) == set() and ended.helped([6, 7, 8]) == set()
    assert ended.helped([2, 3, 4]) == set() and ended.favoured == {}


def test_sentence_breaks_are_the_tokens_that_end_a_sentence_or_a_line(tiny_runner):
    from longchat.runtime.generate import sentence_breaks

    ids = tiny_runner.encode("My code is K7-4492. Next line\nmore")
    ends = sentence_breaks(tiny_runner.tokenizer, [ids])
    assert {tiny_runner.tokenizer.decode([t]).strip() for t in ends} <= {".", "", ".\n"} and ends
    assert not any(tiny_runner.tokenizer.decode([t]).strip() in ("My", "K", "4492") for t in ends)


def test_a_boosted_reply_follows_the_favoured_text(tiny_chat_model, home):
    """Greedy decoding's reply, with a favoured text that runs as its first 3 tokens and then
    goes another way: a large boost makes the reply take that way."""
    from longchat.prompts import chat_ids
    from longchat.runtime.generate import CopyGuard, Sampling

    runner = open_runner("full", str(tiny_chat_model))
    prompt = chat_ids(runner.tokenizer, [{"role": "user", "content": "Tell me about the ocean."}])
    plain = list(runner.engine.generate(prompt, Sampling(max_new_tokens=8)))
    other = next(t for t in range(100, 200) if t != plain[3])
    favoured = CopyGuard([], 0, favoured=[plain[:3] + [other]], boost=50.0)
    boosted = list(runner.engine.generate(prompt, Sampling(max_new_tokens=8), copy_guard=favoured))
    assert boosted[:4] == plain[:3] + [other]
    weak = CopyGuard([], 0, favoured=[plain[:3] + [other]], boost=0.0)
    assert list(runner.engine.generate(prompt, Sampling(max_new_tokens=8), copy_guard=weak)) == plain


def test_a_session_places_the_users_words_only(tiny_runner, tmp_path):
    conv = SessionConversation(tiny_runner, "s", store=Store(tmp_path / "s.db"))
    uid = conv.store.add_message(conv.sid, "user", "My sister's name is Alma.")
    conv.learn("My sister's name is Alma.", uid)
    conv.store.add_message(conv.sid, "assistant", "Alma is a reference to The Legend of Zelda.")
    for i in range(6):
        conv.store.add_message(conv.sid, "user", f"Tell me about trains, part {i}.")
    conv.assemble("What is my sister's name?")
    assert conv.placed == ["My sister's name is Alma."]  # the fact; never the assistant's reply
    report = conv.memory_report()  # /memory shows what was placed, under the part it fills
    assert "relevant memories" in report and ": My sister's name is Alma.\n  new message" in report
    assert conv._copy_guard() is None  # no nudge toward them (measured, not kept: docs/settings.md)
    conv.close()


# -- the window: an invented reply to a stated fact is not shown back to the model ------------------

def test_a_reply_is_unsupported_when_it_leaves_out_most_of_a_stated_fact():
    from longchat.chat.session import unsupported

    fact = ["My sister's name is Alma."]
    assert unsupported("In the context of the anime, Alma is a reference to The Legend of Zelda.", fact)
    assert unsupported("That sounds lovely!", fact)
    assert not unsupported("Your sister's name is Alma. What a lovely name!", fact)
    assert not unsupported("A pharmacist helps many people.", ["I work as a pharmacist."])  # 1 of 2 words
    assert unsupported("Your sister is Alma.", fact + ["My dog is called Biscuit."])  # every fact counts


def test_the_window_leaves_out_an_invented_reply_and_the_store_keeps_it(tiny_runner, tmp_path, monkeypatch):
    conv = SessionConversation(tiny_runner, "s", store=Store(tmp_path / "s.db"))
    invention = "In the context of the anime, Alma is a reference to The Legend of Zelda."
    turns = [("My sister's name is Alma.", invention),
             ("My dog is called Biscuit.", "Your dog is called Biscuit, a lovely name!"),
             ("Tell me about owls.", "Owls are a reference to The Legend of Zelda.")]
    for said, reply in turns:
        uid = conv.store.add_message(conv.sid, "user", said)
        conv.learn(said, uid)
        conv.store.add_message(conv.sid, "assistant", reply)
    shown = [(m["role"], m["content"]) for m in conv._history(None)]
    assert shown == [("user", "My sister's name is Alma."), ("user", "My dog is called Biscuit."),
                     ("assistant", "Your dog is called Biscuit, a lovely name!"), ("user", "Tell me about owls."),
                     ("assistant", "Owls are a reference to The Legend of Zelda.")]  # no fact stated: shown
    assert invention in [m.content for m in conv.store.messages(conv.sid)]  # the store keeps what was said
    assert "anime" not in tiny_runner.tokenizer.decode(conv.assemble("What is my sister's name?"))
    monkeypatch.setattr(session_module, "HIDE_UNSUPPORTED", False)
    assert ("assistant", invention) in [(m["role"], m["content"]) for m in conv._history(None)]
    conv.close()


# -- the same vectors for `ask`: the lines of a document nearest a question's meaning ---------------

def test_nearest_lines_are_the_ones_nearest_in_meaning_in_the_documents_order_within_the_budget():
    from longchat.text.embed import nearest_lines
    from longchat.text.words import about_the_whole

    lines = [*FILLER[:30], "This year the annual conference is held in Lisbon.", *FILLER[30:40]]
    count = lambda x: len(x.split())  # noqa: E731
    taken = nearest_lines(lines, "Which city hosts the yearly meeting?", 3, 100, count)
    assert 30 in taken and taken == sorted(taken) and len(taken) <= 3
    assert sum(count(lines[i]) for i in taken) <= 100
    assert nearest_lines(lines, "Which city hosts the yearly meeting?", 3, 2, count) == []  # every line too long
    assert nearest_lines(lines, "What is it?", 3, 100, count) == []  # no content word
    assert about_the_whole("What is this document about?") and about_the_whole("Summarize the main points.")
    assert not about_the_whole("Which city hosts the yearly meeting?")
