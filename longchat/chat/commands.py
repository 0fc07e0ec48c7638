"""Slash commands of a session: /remember, /core, /search, /memory, /sessions, /facts, /forget."""

from __future__ import annotations


from longchat.chat.conversation import CommandResult, Conversation, command
from longchat.errors import InputError
from longchat.chat.store import day as _day, when as _when


def _session(conv: Conversation):
    from longchat.chat.session import SessionConversation

    if not isinstance(conv, SessionConversation):
        raise InputError("this needs a session: start the chat with --session NAME")
    return conv


def _run(conv: Conversation, action) -> CommandResult:
    try:
        return CommandResult(action(_session(conv)))
    except InputError as e:
        return CommandResult(str(e), error=True)


@command("remember", "/remember TEXT", "save TEXT to the session's archival memory (searched every turn)")
def _remember(conv: Conversation, arg: str) -> CommandResult:
    def act(s):
        s.store.archive(s.sid, arg)
        return "saved to archival memory"
    return _run(conv, act)


@command("core", "/core [LABEL [TEXT]]", "show core memory; with LABEL and TEXT, set that block")
def _core(conv: Conversation, arg: str) -> CommandResult:
    def act(s):
        label, _, text = arg.partition(" ")
        if label and text.strip():
            s.store.set_core(s.sid, label, text.strip())
            return f"core memory '{label}' set ({len(text.strip())} characters)"
        blocks = s.store.core(s.sid)
        if label and label not in blocks:
            raise InputError(f"no core memory block {label!r}; blocks: {', '.join(blocks)}")
        return "\n".join(f"[{k} {len(v)}/{lim}] {v}" for k, (v, lim) in blocks.items() if not label or k == label)
    return _run(conv, act)


@command("search", "/search QUERY", "search everything said in this session and its archival memory")
def _search(conv: Conversation, arg: str) -> CommandResult:
    def act(s):
        if not arg.strip():
            raise InputError("usage: /search QUERY")
        hits, total = s.store.search_messages(s.sid, arg, limit=10)
        notes, n_notes = s.store.search_archival(s.sid, arg, limit=5)
        lines = [f"{total} message(s) match" + (f", showing {len(hits)}" if total > len(hits) else "")]
        lines += [f"  #{h.id} {_when(h.created)} {h.role}: {h.content[:200]}" for h in hits]
        lines.append(f"{n_notes} archival passage(s) match")
        lines += [f"  {_when(h.created)} {h.content[:200]}" for h in notes]
        return "\n".join(lines)
    return _run(conv, act)


@command("memory", "/memory", "how the session's prompt budget is spent, and what its memory holds")
def _memory(conv: Conversation, arg: str) -> CommandResult:
    return _run(conv, lambda s: s.memory_report())


@command("sessions", "/sessions", "list the stored sessions")
def _sessions(conv: Conversation, arg: str) -> CommandResult:
    from longchat.chat.store import Store

    store = Store()
    try:
        rows = store.sessions()
    finally:
        store.close()
    if not rows:
        return CommandResult("no sessions yet (longchat chat --session NAME starts one)")
    return CommandResult("\n".join(f"{r['name']}: {r['messages']} messages ({r['in_context']} in the window), "
                                   f"last used {_when(r['updated'])}" for r in rows))


def facts_lines(facts: list[dict]) -> list[str]:
    """One line per stored fact: id, its text and the message it came from; under it, the
    facts it replaced ("was: ...", from when to when), when the dicts carry a `history`."""
    lines = []
    for f in facts:
        lines.append(f"#{f['id']} {f['content']}  (from message #{f['source']}, {_when(f['created'])})")
        lines += [f"    was: {h['content']} ({_day(h['created'])} to {_day(h['until'])})" for h in f.get("history", ())]
    return lines


@command("facts", "/facts", "the facts the session keeps from what you said, with their sources")
def _facts(conv: Conversation, arg: str) -> CommandResult:
    def act(s):
        facts = s.store.facts_with_history(s.sid)
        return "\n".join(facts_lines(facts)) if facts else "no facts kept yet (say e.g. 'please remember ...')"
    return _run(conv, act)


@command("forget", "/forget ID", "remove a kept fact (its id from /facts)")
def _forget(conv: Conversation, arg: str) -> CommandResult:
    def act(s):
        text = arg.strip().lstrip("#")
        if not text.isdigit():
            raise InputError("usage: /forget ID (the fact's number from /facts)")
        return f"forgot fact #{text}: {s.store.forget_fact(s.sid, int(text))}"
    return _run(conv, act)
