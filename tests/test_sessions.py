"""Persistent sessions: the SQLite store, budget assembly, paging, memory functions, restarts.

Tests of the function machinery drive the conversation with `ScriptedModel`, a stand-in that
returns fixed replies: it tests longchat's parsing, dispatch and chaining, not any model.
The restart test uses the real bundled model.
"""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import sys

import pytest

from longchat.cli import main
from longchat.api import open_runner
from longchat.chat import functions as fn
from longchat.chat.session import SessionConversation
from longchat.runtime.generate import Sampling
from longchat.chat.store import MIGRATIONS, SessionError, Store, fts_query


class ScriptedModel:
    """NOT a model: replays fixed replies in order and records the prompts it was given."""

    def __init__(self, *replies: str):
        self.replies = list(replies)
        self.prompts: list[list[int]] = []

    def __call__(self, prompt, on_text):
        self.prompts.append(prompt)
        reply = self.replies.pop(0) if self.replies else "ok"
        if on_text:
            on_text(reply)
        return reply


@pytest.fixture
def tiny_runner(home, tiny_chat_model):
    return open_runner("full", str(tiny_chat_model), overrides=["generation.max_new_tokens=16"])


def session(runner, name="s", **kw):
    return SessionConversation(runner, name, **kw)


# -- store --------------------------------------------------------------------------------------

def test_migrations_run_from_empty_and_only_once(tmp_path):
    path = tmp_path / "s.db"
    store = Store(path)
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    sid = store.session_id("a", create=True)
    store.add_message(sid, "user", "hello there")
    store.close()
    again = Store(path)  # re-opening applies nothing twice and keeps the data
    assert [m.content for m in again.messages(again.session_id("a"))] == ["hello there"]
    again.db.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    again.close()
    with pytest.raises(SessionError, match="newer longchat"):
        Store(path)


def test_search_finds_words_and_pages(tmp_path):
    store = Store(tmp_path / "s.db")
    sid = store.session_id("a", create=True)
    for i in range(12):
        store.add_message(sid, "user", f"note {i} about the harbour ferry")
    store.add_message(sid, "user", "My sister's name is Alma.")
    hits, total = store.search_messages(sid, "What is my sister's name?")
    assert total == 1 and hits[0].content == "My sister's name is Alma."
    hits, total = store.search_messages(sid, "ferries", limit=5, offset=10)  # porter stemming
    assert total == 12 and len(hits) == 2
    assert fts_query("what is the") is None


def test_bad_session_names_and_unknown_sessions(tmp_path):
    from longchat.errors import InputError

    store = Store(tmp_path / "s.db")
    with pytest.raises(InputError, match="bad session name"):
        store.session_id("../x", create=True)
    with pytest.raises(SessionError, match="no session named"):
        store.session_id("nope")


# -- assembly and paging ------------------------------------------------------------------------

def test_assembly_stays_in_budget_and_eviction_keeps_recall(tiny_runner):
    tiny_runner.profile.sessions.budget = 600
    conv = session(tiny_runner)
    model = ScriptedModel(*[f"reply number {i} with a few words" for i in range(40)])
    conv._generate = model
    for i in range(40):
        conv.send(f"message {i}: the weather was mild and the river was calm near the old mill")
    assert all(len(p) <= conv.budget for p in model.prompts)
    stored = conv.store.messages(conv.sid)
    assert len(stored) == 80  # every message is still in recall storage
    assert any(not m.in_context for m in stored)  # ... though some left the window
    summary, upto = conv.store.summary(conv.sid)
    assert upto > 0
    in_window = [m for m in stored if m.in_context]
    assert len(in_window) >= tiny_runner.profile.sessions.keep_last
    assert "budget" in conv.memory_report()
    conv.close()


def test_relevant_memories_are_searched_and_placed_before_the_message(tiny_runner):
    tiny_runner.profile.sessions.budget = 300
    conv = session(tiny_runner, "r")
    conv._generate = ScriptedModel()
    conv.send("My sister's name is Alma and she lives in Porto.")
    for i in range(30):
        conv.send(f"filler message {i} about trains and weather")
    assert not conv.store.messages(conv.sid)[0].in_context  # the fact left the window
    notes = conv.relevant("What is my sister's name?")
    assert notes and "Alma" in notes[0]
    conv._generate = model = ScriptedModel("Alma")
    conv.send("What is my sister's name?")
    assert "Alma" in tiny_runner.tokenizer.decode(model.prompts[0])
    conv.close()


def test_truncate_paging_drops_without_summary(tiny_runner):
    tiny_runner.profile.sessions.budget = 300
    conv = session(tiny_runner, "t", paging="truncate")
    conv._generate = ScriptedModel()
    conv.send("My sister's name is Alma.")
    for i in range(30):
        conv.send(f"filler message {i} about trains and weather")
    assert conv.store.summary(conv.sid) == ("", 0)
    assert conv.relevant("What is my sister's name?") == []
    assert len(conv.store.messages(conv.sid)) == 62
    conv.close()


def test_interrupted_reply_keeps_the_user_message(tiny_runner):
    """Ctrl-C while the model streams its reply (raised from the terminal's on_text, as the
    chat loop sees it): the user's message and what was said so far are stored, marked."""
    conv = session(tiny_runner, "i")
    conv.sampling = Sampling(max_new_tokens=40, temperature=1.0, top_k=0, seed=3)  # no early stop
    shown: list[str] = []

    def terminal(delta: str) -> None:
        shown.append(delta)
        if len(shown) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        conv.send("Remember the number 4711.", on_text=terminal)
    stored = conv.store.messages(conv.sid)
    assert [(m.role, m.content, m.interrupted) for m in stored] == [
        ("user", "Remember the number 4711.", False), ("assistant", "".join(shown).strip(), True)]
    assert stored[1].content and tiny_runner.engine.stats.stop_reason == "interrupted"
    conv.close()


def test_session_replies_stop_at_a_16_token_loop_unless_the_profile_sets_one(tiny_runner, monkeypatch):
    """Every reply stops at a loop (`stop_on_repeat`, 32 by default); a session's at 16, unless
    the profile sets a length of its own (0: off)."""
    from dataclasses import replace

    asked: list[int] = []

    def reply(prompt, sampling, *args, **kwargs):
        asked.append(sampling.stop_on_repeat)
        return "ok"

    monkeypatch.setattr(tiny_runner.engine, "generate_text", reply)
    conv = session(tiny_runner, "r")
    assert conv.sampling.stop_on_repeat == Sampling().stop_on_repeat == 32
    for profile in (32, 0, 24):
        conv.sampling = replace(conv.sampling, stop_on_repeat=profile)
        conv.send("Hello there.")
    assert asked == [16, 0, 24]
    conv.close()


def test_a_second_process_on_a_session_is_told_it_is_busy(tiny_runner):
    first = session(tiny_runner, "busy")
    with pytest.raises(SessionError, match="busy"):
        session(tiny_runner, "busy")
    first.close()
    session(tiny_runner, "busy").close()  # free again once the first has gone


# -- memory functions (scripted model) ----------------------------------------------------------

def test_functions_chain_with_heartbeat_and_reach_the_store(tiny_runner):
    conv = session(tiny_runner, "f", paging="functions")
    conv._generate = ScriptedModel(
        '{"name": "core_memory_append", "arguments": {"label": "human", "content": "Likes green tea.", '
        '"request_heartbeat": true}}',
        '{"name": "archival_memory_insert", "arguments": {"content": "Tea order: sencha", "request_heartbeat": true}}',
        '{"name": "send_message", "arguments": {"message": "Noted, green tea!"}}')
    assert conv.send("I like green tea.") == "Noted, green tea!"
    assert "Likes green tea." in conv.store.core(conv.sid)["human"][0]
    assert conv.store.search_archival(conv.sid, "sencha")[1] == 1
    roles = [m.role for m in conv.store.messages(conv.sid)]
    assert roles.count("function") == 3 and roles[-1] == "assistant"
    conv.close()


def test_bad_calls_go_back_to_the_model_as_errors(tiny_runner):
    conv = session(tiny_runner, "b", paging="functions")
    model = ScriptedModel('{"name": "delete_files", "arguments": {}}',
                          '{"name": "core_memory_replace", "arguments": {"label": "human", "old_content": "absent", '
                          '"new_content": "x"}}',
                          '{"name": "send_message", "arguments": {"message": "sorry"',  # unclosed: repaired
                          )
    conv._generate = model
    tiny_runner.profile.sessions.max_steps = 4
    assert conv.send("hello") == "sorry"
    results = [m.content for m in conv.store.messages(conv.sid) if m.role == "function"]
    assert "no function named 'delete_files'" in results[0]
    assert "must match exactly" in results[1]
    conv.close()


def test_each_function_good_and_bad_arguments(tmp_path):
    store = Store(tmp_path / "s.db")
    sid = store.session_id("x", create=True)
    said = []
    table = fn.builtin_functions(store, sid, said.append)

    def call(name, **args):
        return fn.run_call(table, fn.Call(name, args))

    assert call("send_message", message="hi") == ("Message sent.", True) and said == ["hi"]
    assert call("send_message")[1] is False
    assert call("core_memory_append", label="human", content="Name: Ana")[1]
    assert call("core_memory_append", label="nope", content="x")[1] is False
    assert call("core_memory_append", label="human", content="x" * 3000)[1] is False  # over the char limit
    assert call("core_memory_replace", label="human", old_content="Ana", new_content="Ann")[1]
    assert store.core(sid)["human"][0] == "Name: Ann"
    assert call("core_memory_replace", label="human", old_content="Bob", new_content="x")[1] is False
    for i in range(7):
        assert call("archival_memory_insert", content=f"garden fact {i}")[1]
    assert call("archival_memory_insert", content="  ")[1] is False
    text, ok = call("archival_memory_search", query="garden", page=1)
    assert ok and text.startswith("Showing 2 of 7 results (page 2/2)")
    assert call("archival_memory_search", query="garden", page="two")[1] is False
    store.add_message(sid, "user", "the garden needs water")
    assert call("conversation_search", query="garden")[0].startswith("Showing 1 of 1 results (page 1/1)")
    from datetime import date
    today = date.today().isoformat()
    assert "Showing 1 of 1" in call("conversation_search_date", start_date=today, end_date=today)[0]
    assert call("conversation_search_date", start_date="yesterday", end_date=today)[1] is False
    assert call("archival_memory_search", query="garden", bogus=1)[1] is False


@pytest.mark.parametrize("text,name,args", [
    ('{"name": "send_message", "arguments": {"message": "hi"}}', "send_message", {"message": "hi"}),
    ("```json\n{'name': 'send_message', 'arguments': {'message': 'hi',},}\n```", "send_message", {"message": "hi"}),
    ('<tool_call>{"function": "archival_memory_search", "parameters": {"query": "x"}}</tool_call>',
     "archival_memory_search", {"query": "x"}),
    ('{"type": "function", "function": {"name": "send_message", "arguments": "{\\"message\\": \\"hi\\"}"}}',
     "send_message", {"message": "hi"}),
    ('Sure! {"name": "send_message", "arguments": {"message": "a {brace}", "request_heartbeat": true}}',
     "send_message", {"message": "a {brace}", "request_heartbeat": True}),
])
def test_lenient_parsing(text, name, args):
    call = fn.parse_call(text)
    assert call.name == name and call.arguments == args


def test_parse_gives_plain_text_back_and_explains_broken_calls():
    assert fn.parse_call("Hello, how can I help?") is None
    with pytest.raises(fn.CallError):
        fn.parse_call('{"name": send_message "arguments": }')


# -- CLI ------------------------------------------------------------------------------------------

def test_piped_session_cli_and_sessions_commands(home, tiny_chat_model, monkeypatch, capsys, tmp_path):
    def chat(lines):
        monkeypatch.setattr("sys.stdin", io.StringIO(lines))
        return main(["chat", "--session", "notes", "-m", str(tiny_chat_model), "-n", "4"])

    assert chat("first message\n/remember the spare key is under the mat\n") == 0
    assert chat("second message\n/search spare key\n/core human Name: Ana\n/memory\n") == 0
    out, err = capsys.readouterr()
    assert "resumed, 2 messages stored" in err and "1 archival passage(s) match" in err
    assert "recall storage: 4 messages" in err
    assert main(["sessions", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["name"] == "notes" and rows[0]["messages"] == 4 and rows[0]["archival"] == 1
    assert main(["sessions", "export", "notes", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["core"]["human"] == "Name: Ana" and [m["content"] for m in data["messages"]][::2] == [
        "first message", "second message"]
    assert main(["sessions", "export", "notes", "-o", str(tmp_path / "s.md")]) == 0
    assert "# Session notes" in (tmp_path / "s.md").read_text()
    assert main(["sessions", "show", "nope"]) != 0
    assert "no session named" in capsys.readouterr().err
    assert main(["sessions", "rm", "notes", "--yes"]) == 0
    assert main(["sessions", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_store_survives_a_corrupt_file_with_a_clear_error(home, tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not a database at all" * 100)
    with pytest.raises(SessionError, match="cannot open the session store"):
        Store(bad)
    assert sqlite3.sqlite_version


# -- the real model -------------------------------------------------------------------------------

def test_a_fact_survives_a_restart_with_the_real_model(home):
    runner = open_runner("auto", overrides=["generation.max_new_tokens=24"])
    first = SessionConversation(runner, "life")
    first.send("Hello! My sister's name is Alma.")
    first.close()
    runner.engine.reset()
    second = SessionConversation(runner, "life")  # a new process would see the same store
    assert len(second.store.messages(second.sid)) == 2
    reply = second.send("What is my sister's name?")
    second.close()
    assert "Alma" in reply


def test_a_fact_survives_chit_chat_and_a_restart_in_two_real_processes(home):
    """As a user meets it: one `chat --session` process is told two facts among chit-chat; a new
    process is asked about them, once with the fact's words and once without any of them. The
    first must be answered. For the second, recall by meaning must place the fact before the
    question (`/memory` shows it); whether the bundled model then names it is measured by the
    paraphrase benchmark (15/25, docs/sessions.md), not asserted here: in this very dialogue it
    answered "My job is a profession that involves the safe and healthy use of medicines."."""
    def chat(lines: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "longchat", "chat", "--session", "life", "-n", "24"],
                              input=lines, capture_output=True, text=True, timeout=300)

    first = chat("My sister's name is Alma.\nTell me one short fact about the moon.\n"
                 "Why do people like trains?\nI work as a pharmacist.\nTell me one short fact about owls.\n")
    assert first.returncode == 0, first.stderr
    assert "noted fact #1: My sister's name is Alma." in first.stderr
    second = chat("What is my sister's name?\nWhat is my job?\n/memory\n")
    assert second.returncode == 0, second.stderr
    assert "Alma" in second.stdout.splitlines()[0], second.stdout
    assert "relevant memories" in second.stderr, second.stderr  # piped: command output goes to stderr
    placed = second.stderr.split("relevant memories", 1)[1].split("new message", 1)[0]
    assert "- you told me (" in placed and "I work as a pharmacist." in placed, second.stderr


# -- tool templates and attached memories ---------------------------------------------------------

TOOL_TEMPLATE = ("{% if tools %}<tools>{{ tools | tojson }}</tools>{% endif %}"
                 "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}<|assistant|>")


def test_functions_use_the_chat_templates_tool_format_when_it_has_one(tiny_runner):
    tiny_runner.tokenizer.chat_template = TOOL_TEMPLATE
    conv = session(tiny_runner, "tools", paging="functions")
    assert conv.native_tools
    conv._generate = model = ScriptedModel(
        '<tool_call>{"name": "send_message", "arguments": {"message": "hi there"}}</tool_call>')
    assert conv.send("hello") == "hi there"
    prompt = tiny_runner.tokenizer.decode(model.prompts[0])
    assert "<tools>" in prompt and '"core_memory_append"' in prompt
    assert "reply with only a JSON object" not in prompt  # no JSON instructions: the template has a format
    conv.close()


def test_a_session_can_read_an_ingested_memory(home, tiny_chat_model, tmp_path):
    from longchat import memory as memories
    from test_memory import SMALL, text_file

    runner = open_runner("infllm", str(tiny_chat_model), overrides=SMALL + ["generation.max_new_tokens=4"])
    memories.ingest(runner, [str(text_file(tmp_path / "d.txt", 900))], name="doc")
    runner = open_runner("infllm", str(tiny_chat_model), overrides=SMALL + ["generation.max_new_tokens=4"])
    runner.profile.sessions.budget = 600
    conv = session(runner, "withdoc")
    conv.attach_memory("doc")
    n = memories.find("doc").tokens
    conv._generate = model = ScriptedModel("first reply", "second reply")
    conv.send("What does the document say?")
    conv.send("And then?")
    assert all(p[:n] == conv.memory_ids for p in model.prompts)  # the memory first, already encoded
    assert all(len(p) - n <= conv.budget for p in model.prompts)  # the budget counts what follows it
    assert "What does the document say?" in runner.tokenizer.decode(model.prompts[1][n:])
    conv.close()


def test_kill_9_mid_reply_loses_only_the_reply(home, tiny_chat_model):
    import os
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "longchat", "chat", "--session", "k", "-m", str(tiny_chat_model),
                             "-p", "full", "-n", "2000", "--set", "sessions.budget=4000",
                             "--set", "generation.stop_on_repeat=2000"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
    proc.stdin.write(b"remember this line\n")
    proc.stdin.flush()
    db = home / "data" / "sessions.db"
    deadline = time.time() + 120
    seen = []
    while time.time() < deadline and not seen:
        time.sleep(0.2)
        if db.exists():
            try:
                store = Store(db)
                seen = [m.content for m in store.messages(store.session_id("k"))]
                store.close()
            except SessionError:
                seen = []
    alive = proc.poll() is None
    proc.send_signal(signal.SIGKILL)  # while the 2000-token reply is being generated
    _, err = proc.communicate()
    assert alive and seen == ["remember this line"], err.decode()[-500:]
    store = Store(db)
    assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert [m.role for m in store.messages(store.session_id("k"))] == ["user"]
    store.close()
    resumed = session(open_runner("full", str(tiny_chat_model), overrides=["generation.max_new_tokens=4"]), "k")
    resumed._generate = ScriptedModel("fine")
    resumed.send("still there?")
    assert [m.content for m in resumed.store.messages(resumed.sid)] == ["remember this line", "still there?", "fine"]
    resumed.close()


def test_markdown_export_keeps_the_facts(cli):
    """Issue 42: `sessions export --format md` left out the facts the session keeps (JSON had
    them). A real process reads the store the chat writes."""
    from longchat.chat.store import Store

    store = Store()  # in the process's LONGCHAT_HOME (the `home` fixture)
    sid = store.session_id("trip", create=True)
    store.add_fact(sid, "bike", "my bike is the red one by the door", None)
    store.add_fact(sid, "train", "the train leaves at 07:40", None)
    store.db.close()
    got, out, err = cli("sessions", "export", "trip", "--format", "md", timeout=60)
    assert got == 0, err
    facts = out.split("## Facts", 1)[1].split("\n## ", 1)[0]
    assert "- my bike is the red one by the door" in facts and "- the train leaves at 07:40" in facts
    got, out, err = cli("sessions", "export", "trip", "--format", "json", timeout=60)
    assert [f["content"] for f in json.loads(out)["facts"]] == ["my bike is the red one by the door",
                                                                "the train leaves at 07:40"]
