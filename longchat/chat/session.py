"""A chat that lasts: `longchat chat --session NAME`, MemGPT-style.

Each turn the prompt is assembled inside a token budget (measured with the real tokenizer):

    system instructions (+ the memory functions, in `functions` paging)
    core memory blocks, each shown as "label (n/limit chars)"
    the recursive summary of everything that left the window
    recent messages (those still in the window)
    relevant memories: recall and archival storage searched for the new message
    the new message

Paging is done by longchat itself, for every model: when a turn's prompt would pass
`pressure` (75%) of the budget a memory-pressure step runs (a note; in `functions` paging
also a system alert asking the model to save what matters); when it would overflow, the
oldest ~75% of the window's messages (never the last `keep_last`) are summarised by the
model into the recursive summary and leave the window. Nothing is deleted: every message
stays in recall storage and can be searched. The user's message is committed before the
reply starts and the reply when it ends, so Ctrl-C or kill -9 loses at most the reply.
"""

from __future__ import annotations

import itertools
import re
import time
from dataclasses import dataclass, replace
from datetime import datetime

from longchat.chat.conversation import Conversation, Turn, clip
from longchat.context.base import Question
from longchat.errors import InputError
from longchat.api import Note, Progress, Runner
from longchat.prompts import PREAMBLE, QUESTION, SENTINEL, chat_ids, render_chat
from longchat.runtime.generate import CopyGuard, Sampling
from longchat.runtime.remote import RemoteError
from longchat.chat import functions as fn
from longchat.chat.facts import (asked_phrase, asked_words, asks_about_user, asks_or_requests, extract, fact_words, is_event,
                                 phrase_of, sentences)
from longchat.text.when import Period, absolute, period, without_period
from longchat.text.words import content_words
from longchat.chat.store import Hit, SessionLock, Store

INSTRUCTIONS = ("You are a helpful assistant talking with one user. When the user tells you a fact about their "
                "life, reply with one short sentence that acknowledges it. Answer questions briefly, using the notes "
                "and what the user told you.")
SUMMARY_PROMPT = ("Summarize the conversation below between a user and an assistant in at most five sentences. "
                  "Keep every name, number, date, preference and fact the user stated.\n\n{previous}{dialogue}")
# How each memory placed before a message is marked: who said it (then when).
# Behaviour, not settings, since issue 40 (docs/settings.md): off together, deep-memory recall
# fell from 9/10 to 7/10 (and, with the copy guard off too, to 0/10).
SEMANTIC_FLOOR = 0.2     # cosine a memory found by meaning alone needs to be placed
HIDE_UNSUPPORTED = True  # a reply that leaves out most of the facts its message stated is not shown again
# The reply to a question about the user that nothing they said supports (`_told`), given
# without the model: the bundled model invents an answer to it whatever the notes say
# (docs/sessions.md, "Abstention").
ABSTAIN = "You haven't told me that."
MARKERS = ("you told me", "you said", "a memory function returned", "noted")
PRESSURE_ALERT = ("[system] Memory pressure: the conversation fills {pct}% of the context window. Older "
                  "messages will soon be summarised; save anything important with core_memory_append or "
                  "archival_memory_insert.")


@dataclass
class Part:
    name: str
    tokens: int
    detail: str = ""


class SessionConversation(Conversation):
    """A `Conversation` whose history lives in the session store, paged MemGPT-style."""

    def __init__(self, runner: Runner, name: str, system: str | None = None, sampling: Sampling | None = None, *,
                 note: Note = lambda m: None, store: Store | None = None, paging: str | None = None):
        super().__init__(runner, system, sampling, note=note)
        self.settings = runner.profile.sessions
        self.paging = paging or self.settings.paging
        self.name = name
        self.store = store or Store()
        self.sid = self.store.session_id(name, create=True)
        self.lock = SessionLock(name)
        self.store.touch(self.sid, runner.model.name, runner.profile.name)
        window = self.settings.budget or runner.effective_window
        self.budget = window - self.sampling.max_new_tokens
        if self.budget < 256:
            raise InputError(f"the session budget ({window} tokens) leaves under 256 after max_new_tokens="
                             f"{self.sampling.max_new_tokens}; raise memory.budget or lower --max-new-tokens")
        self.parts: list[Part] = []
        self.alerted = False
        self.users_words: dict[str, str] = {}  # a placed memory's line -> the user's own words in it
        self.answers: dict[str, Hit] = {}  # a placed line that answers a question about the user directly
        self.changed: set[int] = set()  # of those, the fact that says a value changed since
        self.counting = False  # whether the last message asks how many times the user told something
        self.quoted = False  # whether the last reply is the memories themselves, not the model's words
        self.placed: list[str] = []  # the user's words placed before the last message
        self.notes: list[str] = []  # the memories placed before the last message, as the model saw them
        self._tools: list[dict] | None = None
        self.turns = self._turns()
        stored = self.store.documents(self.sid)
        self.documents = "\n\n".join(text for _, text in stored)
        if len(stored) == 1 and stored[0][0] != "message" and ", " not in stored[0][0]:
            self.label = stored[0][0]  # a resumed session cites its one file by name
        self.asked: str | None = None  # the question of the message being answered (a long one's last paragraph)
        self.now: float | None = None  # when the message being answered was said (None: now)
        self.others: list[tuple[int, str]] = []  # (id, name) of the sessions recall also reads (`--memory-from`)
        self.period: Period | None = None  # the period the last message asked about
        self.recall_s = 0.0  # how long recall took for it

    def close(self) -> None:
        self.lock.release()
        self.store.close()

    def add_document(self, text: str, label: str = "message") -> None:
        """A document joins the session for good: every later turn, resumed ones too, reads it."""
        if self.store.add_document(self.sid, label, text):
            super().add_document(text, None if label == "message" or ", " in label else label)

    def attach_files(self, specs: list[str], progress: Progress | None = None) -> str:
        """Files join the session's documents (the conversation so far stays)."""
        from longchat.sources import read_text

        if self.memory is not None:
            raise InputError(f"this session reads memory '{self.memory_name}'; files cannot be added to it")
        text = read_text(specs, note=self.note)
        self.add_document(text, ", ".join(specs))
        return f"{len(self.runner.encode(text)):,} tokens"

    def _reads_memory(self) -> bool:
        return self.reading is not None and self.reading.how == "memory" and self.memory_ids is not None

    # ------------------------------------------------------------ what the model sees

    def _turns(self) -> list[Turn]:
        """The window's messages as turns (for /history and the base class's bookkeeping)."""
        out, pending = [], None
        for m in self.store.messages(self.sid, in_context=True):
            if m.role == "user":
                pending = m.content
            elif m.role == "assistant" and pending is not None:
                out.append(Turn(pending, m.content, m.interrupted))
                pending = None
        return out

    @property
    def native_tools(self) -> bool:
        """Function calling through the chat template's own tool format (when it has one)."""
        if self.paging != "functions":
            return False
        if self.runner.remote:  # the engine's tool-calling API, when it has one for this model
            return self.runner.model.supports_tools()
        return "tools" in (getattr(self.runner.tokenizer, "chat_template", "") or "")

    def memory_system(self) -> str | None:
        return None  # the session's instructions travel in its first message, after the memory

    def system_text(self, summary: bool = True) -> str:
        """The system message: instructions, core memory and (with `summary`) the summary of
        what left the window."""
        parts = [self.system or INSTRUCTIONS]
        if self.native_tools:
            parts.append("Manage your memory with the functions you have; reply to the user with send_message.")
        elif self.paging == "functions":
            parts.append(fn.describe(self._functions(lambda m: None)))
        core = self.store.core(self.sid)
        if core and self.paging != "truncate":
            # Empty blocks are left out: a 135M model reads headings with nothing under them as topics.
            blocks = [f"{label} ({len(value)}/{limit} chars): {value}" for label, (value, limit) in core.items()
                      if value.strip()]
            if blocks:
                parts.append("Notes you keep:\n" + "\n".join(blocks))
        text, _ = self.store.summary(self.sid) if summary else ("", 0)
        if text and self.paging != "truncate":
            parts.append("Summary of the earlier conversation: " + text)
        return "\n\n".join(parts)

    def relevant(self, text: str, user_id: int | None = None) -> list[str]:
        """Memories for `text`, best first, each marked with who said it and when: the facts the
        user stated, then the user's own messages and function results, then archival passages.
        The assistant's own replies are left out: a small model's confabulation, found again by
        its shared words, would otherwise be copied into the answer (what the user said wins)."""
        n = self.settings.relevant
        self.changed, self.counting = set(), False
        if not n or self.paging == "truncate":
            return []
        started = time.perf_counter()
        # A message about a period ("last week", "before my move") recalls what was said in it.
        self.period = period(text, self.now or time.time(), self._first_said)
        span = (self.period.start, self.period.end) if self.period else None
        text = without_period(text, self.period) if self.period else text
        # Everything said before the last few messages is searched, in the window or not: a small
        # model uses a fact placed next to the question far better than one 2,000 tokens up.
        recent = self.store.messages(self.sid, in_context=True)[-(self.settings.keep_last + 1):]
        # Facts the message itself just stated are not recalled for it: placed before the very
        # sentence that said them, the bundled model replied with nonsense it then copied later.
        own = set() if user_id is None else self._facts_from(user_id)
        # Each kind is searched by words and by meaning, the two rankings fused (Store.recall).
        floor = SEMANTIC_FLOOR if self.settings.semantic else None
        about = self.reading is None and asks_about_user(text)
        # "How many concerts have I told you I went to?" counts what was said over time; "How many
        # kilometres a week do I run?" asks for one value
        counting = about and re.match(r"\s*how (?:many|often)\b", text, re.I) and \
            re.search(r"\b(?:have|had|did)\s+i\b|\bi(?:'ve| have)\b|\btold you\b", text, re.I)
        if counting:
            n *= 3  # counting needs every instance placed, not the best three (they span sessions)
            self.counting = True
        facts = [h for h in self._recall("fact", text, limit=n + len(own), floor=floor)
                 if h.id not in own]
        direct = []
        if about:  # the facts that support the question as the abstention check sees it ("job" -> work)
            wanted, have = asked_words(text), {h.id for h in facts}
            stored = self.store.facts(self.sid)
            keys = {f["id"]: f["key"] for f in stored}
            count = {f["id"]: len(wanted & fact_words(f["content"], f["key"])) for f in stored}
            matched = [Hit(f["id"], f["content"], f["created"], "fact") for f in stored
                       if f["id"] not in have and f["id"] not in own and count[f["id"]]]
            facts = matched + facts
            # the facts that hold the most of the asked words ("I run 50 kilometres a week", not
            # "Declan took over as my manager this week"), and of those, what the user is (where
            # they live, who their manager is) before what they did ("Saw Paper Comets live last
            # night" does not say where they live); another session's facts by their words alone
            held = {id(h): (count[h.id] if h.id in count else len(wanted & fact_words(h.content, "")),
                        not is_event(keys.get(h.id, ""))) for h in facts}
            most = max(held.values(), default=(0, False))
            direct = [h for h in facts if most[0] and held[id(h)] == most]
        if direct and not span and not counting:
            # Facts that hold the asked words are placed alone, the newest first: beside others
            # found by meaning ("My cousin's name is Mateo"), the bundled model answered "What is
            # my son's name?" with the cousin's (docs/sessions.md). A question about a period or a
            # count keeps everything found: its answer spans facts and messages.
            # A change said later, as something the user did or in fewer of the asked words ("I
            # sold the old car and bought a Fiat" after "My car is a Kia"; "These days my usual
            # order is a cortado instead"), holding more than half as many of them: placed first.
            newest = max(h.created for h in direct)
            changes = [h for h in facts if h not in direct and held[id(h)][0] * 2 > most[0] and
                       h.created > newest and _CHANGE.search(h.content)]
            facts = sorted(changes, key=lambda h: -h.created)[:1] + sorted(direct, key=lambda h: -h.created)
            self.changed = {h.id for h in facts[:1] if changes}
        else:
            direct = []
        facts = facts[:n]
        # A question about the user is answered from memories alone (`assemble`): the messages in
        # the window are searched too (the current one excepted).
        before = user_id if about else recent[0].id if recent else None
        hits = self._recall("message", text, limit=n, floor=floor, before=before,
                            period=span)
        if span and not hits:  # nothing in the period shares the message's words: what was said then
            hits = self.store.messages_between(self.sid, *span, limit=n, roles=("user",))[0]
        archived = self._recall("archival", text, limit=n, floor=floor)
        if direct:  # what was said after the newest of them, on the asked words, may update it
            newest = max(h.created for h in facts if h.id not in self.changed)  # (not a message told as something the user did)
            did = {f["source"] for f in stored if is_event(f["key"])}
            hits = [h for h in hits if h.created > newest and wanted & asked_words(h.content) and h.id not in did]
            archived = []
        shown = {_plain(h.content) for h in facts}
        sids = {name: sid for sid, name in self.others}
        # what a fact replaced, with its period
        earlier = {h.id: self.store.replaced(sids.get(h.session, self.sid), h.id) for h in facts}
        shown |= {_plain(e["content"]) for e in earlier.values() if e}  # its own message says no more than this line
        lines = [f"{MARKERS[0]} ({_stamp(h)}): {clip(absolute(h.content, h.created), 240, one_line=True)}" + _was(earlier[h.id])
                 for h in facts]
        self.users_words = {line: h.content for line, h in zip(lines, facts)}
        # the placed lines that answer a question about the user directly, with when each was said
        self.answers = {line: h for line, h in zip(lines, facts)} if direct or self.counting else {}
        for h in hits:
            if h.role == "user" and only_questions(h.content):
                continue  # an earlier question holds no answer, only the words that matched
            if not any(f in _plain(h.content) for f in shown):  # the fact's own message adds nothing
                who = MARKERS[1] if h.role == "user" else MARKERS[2]
                lines.append(f"{who} ({_stamp(h)}): {clip(absolute(h.content, h.created), 240, one_line=True)}")
                if h.role == "user":
                    self.users_words[lines[-1]] = h.content
                    if direct or self.counting:
                        self.answers[lines[-1]] = h
        lines += [f"{MARKERS[3]} ({_stamp(h)}): {clip(h.content, 240, one_line=True)}" for h in archived
                  if _plain(h.content) not in shown]
        self.recall_s = time.perf_counter() - started
        return lines[:n]

    def _recall(self, kind: str, query: str, *, limit: int, floor: float | None, before: int | None = None,
                period: tuple[float, float] | None = None) -> list:
        """`Store.recall` in this session, and in the sessions of `memory_from` (their items
        marked with the session's name), interleaved by rank, this session's first."""
        ranked = [self.store.recall(self.sid, kind, query, limit=limit, floor=floor, before=before, period=period)]
        for sid, name in self.others:
            ranked.append([replace(h, session=name) for h in
                           self.store.recall(sid, kind, query, limit=limit, floor=floor, period=period)])
        merged = [h for rank in itertools.zip_longest(*ranked) for h in rank if h is not None]
        return merged[:limit]

    def _first_said(self, words: str) -> float | None:
        """When the user first said something matching `words` ("my move" -> "we moved ..."),
        in this session or those it recalls from; None if never."""
        found = [h.created for sid in [self.sid, *(sid for sid, _ in self.others)]
                 for h in self.store.search_messages(sid, words, limit=1, roles=("user",))[0]]
        return min(found, default=None)

    def recall_from(self, names: list[str]) -> None:
        """Recall also from these sessions (`--memory-from`; ["all"]: every other session)."""
        if names == ["all"]:
            names = [s["name"] for s in self.store.sessions() if s["name"] != self.name]
        self.others = [(self.store.session_id(name), name) for name in names if name != self.name]

    def _facts_from(self, message_id: int) -> set[int]:
        return {f["id"] for f in self.store.facts(self.sid) if f["source"] == message_id}

    def learn(self, user_text: str, user_id: int, at: float | None = None) -> list[str]:
        """Keep the facts `user_text` states (chat/facts.py); a line for the user per fact kept."""
        if self.paging == "truncate":
            return []
        lines = []
        for fact in extract(user_text):
            kept = self.store.add_fact(self.sid, fact.key, fact.text, user_id, at)
            if kept is None:
                continue
            fid, replaced = kept
            line = f"noted fact #{fid}: {fact.text}"
            lines.append(line + (f" (replaces: {replaced})" if replaced else ""))
        for line in lines:
            self.note(line)
        return lines

    def _history(self, upto: int | None) -> list[dict]:
        """The window's messages as the model sees them. A reply to a message that stated facts
        is left out when it does not bear them out (`unsupported`): the bundled model copied one
        invented reply's pattern into every later reply, and then into its answers. It stays
        in the store as it was said. So is an `ABSTAIN` reply, with its question: after three of
        them in the window, the bundled model answered told questions with "You haven't told me
        that." too."""
        out = []
        stated: dict[int, list[str]] = {}
        for f in self.store.facts(self.sid) if HIDE_UNSUPPORTED and self.paging != "truncate" else ():
            stated.setdefault(f["source"], []).append(f["content"])
        asked = None
        for m in self.store.messages(self.sid, in_context=True):
            if upto is not None and m.id >= upto:
                break
            if m.role == "function":
                out.append({"role": "user", "content": m.content})
            elif m.role == "assistant" and m.content == ABSTAIN and asked is not None:
                out.pop()  # the question it answered (the last message shown)
            elif not (m.role == "assistant" and asked in stated and unsupported(m.content, stated[asked])):
                out.append({"role": m.role, "content": m.content})
            asked = m.id if m.role == "user" else None
        return out

    def assemble(self, user_text: str, user_id: int | None = None, extra: list[dict] = ()) -> list[int]:
        """The prompt for `user_text` within the budget, paging out old messages when needed
        (an attached memory's prefix comes first and is not counted)."""
        self.users_words, self.answers = {}, {}
        notes = self.relevant(user_text, user_id)
        # A question about the user's own life with memories placed is answered from them, not
        # in the shape of the recent turns or of their summary: after forty "tell me a fact about
        # N" exchanges the bundled model answered "Where do I live?" with "The number 1 is ..."
        # (issue 43), and the summary of such a window is a list of those facts.
        about = bool(notes) and self.reading is None and asks_about_user(user_text)
        while True:
            system = self.system_text(summary=not about)
            last = user_text
            if self.reading is not None and self.reading.how != "memory":  # the long input, as read for it
                text = self.documents if self.reading.how == "whole" else self.reading.text
                last = PREAMBLE + text + QUESTION.format(question=user_text)
            if notes:
                last = "Things from earlier in our conversation:\n" + "\n".join(f"- {x}" for x in notes) + \
                       "\n\n" + last
            history = [] if about else self._history(user_id)
            messages = [{"role": "system", "content": system}, *history, {"role": "user", "content": last},
                        *extra]
            ids = self._ids(messages)
            n_system = len(self._ids(messages[:1]))
            n_last, n_user = self._count_plain(last), self._count_plain(user_text)
            self.parts = [Part("system + core memory + summary", n_system),
                          Part("recent messages", len(ids) - n_system - n_last, f"{len(history)} messages"),
                          Part("relevant memories", max(0, n_last - n_user), f"{len(notes)} found"),
                          Part("new message", n_user)]
            if len(ids) <= self.budget:
                self._pressure(len(ids))
                self.last_messages, self.notes = messages, notes
                self.placed = [self.users_words[x] for x in notes if x in self.users_words]
                return self._prompt(ids)
            if self._page_out(user_id, len(ids)):
                continue
            if notes:  # nothing left to page out: the searched memories go first
                notes = notes[:-1]
                continue
            break
        raise InputError(f"this message needs {len(ids):,} tokens but the session budget is {self.budget:,}; "
                         f"shorten it or raise memory.budget")

    def _ids(self, messages: list[dict]) -> list[int]:
        """Prompt ids of `messages`. With an attached memory, its documents come first (already
        encoded) and the session's system text opens the first message after them; only what
        follows the memory counts against the budget."""
        tok = self.runner.tokenizer
        tools = self._tool_schemas()
        if not self._reads_memory():
            return chat_ids(tok, messages, tools)
        system, rest = messages[0]["content"], [dict(m) for m in messages[1:]]
        if not rest:
            rest = [{"role": "user", "content": ""}]
        rest[0]["content"] = PREAMBLE + SENTINEL + "\n\n" + system + "\n\n" + rest[0]["content"]
        after = render_chat(tok, rest, tools).split(SENTINEL, 1)[1]
        return tok.encode(after, add_special_tokens=False)

    def _prompt(self, ids: list[int]) -> list[int]:
        return (self.memory_ids if self._reads_memory() else []) + ids

    def _pressure(self, used: int) -> None:
        pct = round(100 * used / self.budget)
        if used > self.settings.pressure * self.budget and not self.alerted:
            self.alerted = True
            self.note(f"memory pressure: {pct}% of the session budget ({self.budget:,} tokens) used; "
                      f"older messages will be summarised when it overflows")
            if self.paging == "functions":
                self.store.add_message(self.sid, "function", PRESSURE_ALERT.format(pct=pct))

    def _page_out(self, before: int | None, used: int) -> bool:
        """Move the oldest ~75% of the window's messages out (summarised, unless truncating)."""
        window = [m for m in self.store.messages(self.sid, in_context=True) if before is None or m.id < before]
        keep = self.settings.keep_last
        if len(window) <= keep:
            if not window:
                return False
            keep = 0  # the message alone overflows with its neighbours: let them go too
        n = max(1, min(len(window) - keep, round(len(window) * 0.75)))
        out = window[:n]
        if self.paging == "truncate":
            self.store.evict(self.sid, out[-1].id)
            self.note(f"dropped the {n} oldest messages from the window (truncate paging)")
        else:
            previous, _ = self.store.summary(self.sid)
            summary = self._summarise(previous, out)
            self.store.page_out(self.sid, summary, out[-1].id)
            self.note(f"summarised the {n} oldest messages into the session summary "
                      f"(window was {used:,}/{self.budget:,} tokens); they stay searchable")
        self.alerted = False
        self.runner.engine.reset()
        return True

    def _summarise(self, previous: str, messages) -> str:
        tok = self.runner.tokenizer
        head = f"Earlier summary: {previous}\n\n" if previous else ""
        # The user's words carry the facts; a small model's own replies are clipped (they are often noise).
        lines = [f"User: {m.content}" if m.role == "user" else
                 f"{'Assistant' if m.role == 'assistant' else 'Note'}: {clip(m.content, 120, one_line=True)}" for m in messages]
        limit = self.runner.effective_window - 200 - len(tok.encode(SUMMARY_PROMPT + head, add_special_tokens=False))
        while lines and len(tok.encode("\n".join(lines), add_special_tokens=False)) > limit:
            lines = [clip(x, 300, one_line=True) for x in lines] if any(len(x) > 300 for x in lines) else lines[1:]
        messages = [{"role": "user", "content": SUMMARY_PROMPT.format(previous=head, dialogue="\n".join(lines))}]
        self.runner.engine.reset()
        cap = min(160, self.budget // 4)  # the summary never takes more than a quarter of the budget
        text = self.runner.engine.generate_text(chat_ids(tok, messages), Sampling(max_new_tokens=cap, temperature=0.0),
                                                messages=messages, **self.call)
        return text.strip() or previous

    # ------------------------------------------------------------ a turn

    def _generate(self, prompt: list[int], on_text) -> str:
        """The model's reply to `prompt`, streamed to `on_text` (on Ctrl-C, what it had said is
        the engine's `last_text`)."""
        sampling = self.sampling
        # A reply that loops is cut to one copy 16 tokens in, unless the profile sets another
        # length (0: off): a 135M model's loops, kept, were copied by its later replies.
        if sampling.stop_on_repeat == Sampling.stop_on_repeat:
            sampling = replace(sampling, stop_on_repeat=16)
        chosen = self.reading
        reply = self.runner.engine.generate_text(
            prompt, sampling, on_text,
            question=None if chosen is None else Question(self.asked, apart=chosen.how == "memory"),
            messages=self.last_messages, tools=self._tool_schemas() if self.runner.remote else None,
            copy_guard=self._copy_guard(), **self.call)
        if chosen is not None:
            self.runner.engine.stats.extra.update(chosen.info())
        return reply

    def _copy_guard(self) -> CopyGuard | None:
        """The passages or lines of a document read for this message: the reply is nudged to run
        on as they do, as an `ask` answer is. (A guard against copying earlier replies and a
        nudge toward the user's placed words were measured and removed in issue 40:
        docs/settings.md.)"""
        if self.runner.remote or self.reading is None:
            return None
        return self.reading.copy_guard(self.runner.tokenizer)

    def observe(self, user_text: str, reply: str, at: float | None = None) -> list[str]:
        """Keep one exchange that happened elsewhere (an imported history, a benchmark's
        sessions) as if it had been said here at `at`: both messages stored, the user's facts
        learned; nothing is generated. Returns the lines of the facts kept."""
        user_id = self.store.add_message(self.sid, "user", user_text, self._count(user_text), at=at)
        learned = self.learn(user_text, user_id, at)
        self.store.add_message(self.sid, "assistant", reply, self._count(reply), at=at)
        self.turns = self._turns()
        return learned

    def send(self, user_text: str, on_text=None, progress: Progress | None = None, at: float | None = None) -> str:
        """Reply to `user_text`, said now (or at `at`: a simulated clock for benchmarks)."""
        if not user_text.strip():
            raise InputError("the message is empty")
        user_text = self.take_long_message(user_text)
        self.asked = user_text
        self.now = at
        user_id = self.store.add_message(self.sid, "user", user_text, self._count(user_text), at=at)
        # A message that states facts about the user is no question about the documents.
        self.reading = None if self.learn(user_text, user_id, at) else self.choose_reading(user_text, progress)
        if self.paging == "functions":
            return self._send_with_functions(user_text, user_id, on_text)
        prompt = self.assemble(user_text, user_id)
        if self.reading is None and not self._told(user_text, user_id):
            return self._abstain(on_text)
        self.runner.engine.last_text = ""
        answers = [h for x in self.notes if (h := self.answers.get(x))]
        self.quoted = False
        try:  # a reply to be checked against them is shown once checked
            reply = self._generate(prompt, None if answers else on_text)
        except (KeyboardInterrupt, RemoteError):  # what was said before Ctrl-C, or before the engine went away
            self._keep_reply(self.runner.engine.last_text, prompt, interrupted=True)
            raise
        if self.counting:  # "How many concerts have I told you I went to?": the memories that say so, counted
            found = counted(user_text, answers)
            if found and not says_number(reply, len(found)):
                reply = f"You told me about {len(found)}: " + "; ".join(quoted(h) for h in found)
                self.quoted = True
                self.note(f"the reply did not give the {len(found)} memories that say so: replied with them instead")
        elif (best := best_answers(answers, user_text, self.changed)) and \
                not grounded(reply, told(best[0].content), user_text, self.system or INSTRUCTIONS):
            reply, self.quoted = quote(best), True
            self.note("the reply used none of the memories that answer the question: replied with them instead")
        if answers and on_text:
            on_text(reply)
        self._keep_reply(reply, prompt, interrupted=False)
        return reply

    def _told(self, question: str, user_id: int) -> bool:
        """False for a question about the user (`asks_about_user`) that nothing they said
        supports: no current fact, none of their messages (a question or a request states
        nothing), no archival passage and no core memory shares a content word with it
        (first-person, stop and frame words such as "name" aside; a fact's key counts: "We moved
        to Tampere" answers "Where do I live?").
        True for every other message, and where there is no recall to go by."""
        if self.paging == "truncate" or not self.settings.relevant or not asks_about_user(question):
            return True
        sids = [self.sid, *(sid for sid, _ in self.others)]
        asked = period(question, self.now or time.time(), self._first_said)
        if asked is not None:  # "What did I do last week?": told, if anything was said then
            return any(self.store.messages_between(sid, asked.start, asked.end, limit=1, roles=("user",))[1]
                       for sid in sids)
        wanted = asked_words(question)
        if not wanted:  # "What did I say?": about the whole conversation, nothing to check
            return True
        phrase = asked_phrase(question)
        if phrase:  # "my best friend's name": "a friend's wedding" does not say who the best friend is
            def holds(text: str) -> bool:
                return f" {phrase} " in f" {phrase_of(text)} "

            if any(holds(f"{f['content']} {f['key']}") for sid in sids for f in self.store.facts(sid)):
                return True
            return any(holds(h.content) and not only_questions(h.content) for sid in sids
                       for h in self.store.search_messages(sid, phrase, limit=20, roles=("user", "function"),
                                                           before=user_id if sid == self.sid else None)[0])
        if any(wanted & fact_words(f["content"], f["key"]) for sid in sids for f in self.store.facts(sid)):
            return True
        query = " ".join(sorted(wanted))
        for sid in sids:
            said, _ = self.store.search_messages(sid, query, limit=20, before=user_id if sid == self.sid else None,
                                                 roles=("user", "function"))
            if any(not only_questions(h.content) for h in said) or self.store.search_archival(sid, query)[1]:
                return True  # an earlier question holds no answer, only the words that matched
        # Core memory, not the summary: the summary is the model's words about both sides (of a
        # chit-chat window, "The number 28 is even ..."), and the messages it summarises are
        # searched above.
        kept = [value for value, _ in self.store.core(self.sid).values()]
        return any(wanted & asked_words(text) for text in kept if text)

    def _abstain(self, on_text) -> str:
        """Say `ABSTAIN` as the reply, without the model."""
        if on_text:
            on_text(ABSTAIN)
        self.note("nothing you said answers that: replied without the model")
        self.store.add_message(self.sid, "assistant", ABSTAIN, self._count(ABSTAIN), at=self.now)
        self.turns = self._turns()
        return ABSTAIN

    def _send_with_functions(self, user_text: str, user_id: int, on_text) -> str:
        """Steps until the model sends a message without asking for another step (or max_steps)."""
        said: list[str] = []

        def say(message: str) -> None:
            said.append(message)
            if on_text:
                on_text(message)

        table = self._functions(say)
        extra: list[dict] = []
        prompt: list[int] = []
        for _ in range(self.settings.max_steps):
            prompt = self.assemble(user_text, user_id, extra)
            text = self._generate(prompt, None).strip()
            try:
                call = fn.parse_call(text)
            except fn.CallError as e:
                result, ok, call = f"Error: {e}", False, None
            else:
                if call is None:  # plain text: the message itself (small models forget send_message)
                    say(text)
                    break
                result, ok = fn.run_call(table, call)
            extra += [{"role": "assistant", "content": text}, {"role": "user", "content": f"[function result] {result}"}]
            if ok and call.name == "send_message" and not call.heartbeat:
                break
        reply = "\n".join(said)
        for message in extra:
            role = "assistant" if message["role"] == "assistant" else "function"
            self.store.add_message(self.sid, role, message["content"], self._count(message["content"]))
        self._keep_reply(reply, prompt, interrupted=False, store=bool(reply))
        return reply

    def _keep_reply(self, reply: str, prompt: list[int], interrupted: bool, store: bool = True) -> None:
        self.runner.engine.stats.extra["memory"] = self.recall_info()
        self._record_stats(prompt, interrupted)
        if store and (reply.strip() or not interrupted):
            self.store.add_message(self.sid, "assistant", reply.strip(), self._count(reply), interrupted, at=self.now)
        self.turns = self._turns()

    def _count_plain(self, text: str) -> int:
        return len(self.runner.tokenizer.encode(text, add_special_tokens=False))

    def _count(self, text: str) -> int:
        """Tokens a stored message costs in a prompt (its text + the template's ~5 around it)."""
        return self._count_plain(text) + 5

    def _tool_schemas(self) -> list[dict] | None:
        """The functions as template tools (built once: they depend only on the store and session)."""
        if not self.native_tools:
            return None
        if self._tools is None:
            self._tools = fn.tool_schemas(self._functions(lambda m: None))
        return self._tools

    def _functions(self, say):
        """send_message, the built-in memory functions, then every plugin's."""
        from longchat import plugins

        return plugins.gather("longchat_memory_functions", list(fn.builtin_functions(self.store, self.sid, say).values()),
                              lambda f: f.name, lambda f: isinstance(f, fn.Function), "longchat memory Function",
                              store=self.store, session_id=self.sid)

    def reset(self) -> None:
        """Everything leaves the window (it stays in recall storage and the summary stays)."""
        msgs = self.store.messages(self.sid, in_context=True)
        if msgs:
            self.store.evict(self.sid, msgs[-1].id)
        self.turns = []
        self.runner.engine.reset()

    # ------------------------------------------------------------ for /memory

    def recall_info(self) -> dict:
        """What recall placed before the last message (`--stats` "memory", `/memory`): how many
        memories, their tokens, the time recall took, the period asked about, the memories."""
        placed = next((p.tokens for p in self.parts if p.name == "relevant memories"), 0)
        out = {"placed": len(self.notes), "placed_tokens": placed, "recall_ms": round(self.recall_s * 1000, 1)}
        if self.period is not None:
            out["period"] = str(self.period)
        if self.others:
            out["memory_from"] = [name for _, name in self.others]
        if self.quoted:
            out["reply"] = "the memories that answer, quoted (the model's reply used none of them)"
        return {**out, "memories": list(self.notes)}

    def memory_report(self) -> str:
        total = self.store.count_messages(self.sid)
        in_window = len(self.store.messages(self.sid, in_context=True))
        core = self.store.core(self.sid)
        summary, upto = self.store.summary(self.sid)
        used = sum(p.tokens for p in self.parts)
        lines = [f"session '{self.name}' · paging {self.paging} · budget {self.budget:,} tokens per prompt "
                 f"(+{self.sampling.max_new_tokens} for the reply)"]
        if self.parts:
            lines.append(f"last prompt: {used:,}/{self.budget:,} tokens ({100 * used // self.budget}%)")
            for p in self.parts:
                lines.append(f"  {p.name}: {p.tokens:,}" + (f" ({p.detail})" if p.detail else ""))
                if p.name == "relevant memories":  # what recall placed before the last message
                    info = self.recall_info()
                    lines.append(f"    recall took {info['recall_ms']:.0f} ms" +
                                 (f"; period {info['period']}" if "period" in info else "") +
                                 (f"; also from {', '.join(info['memory_from'])}" if self.others else "") +
                                 ("; the reply quoted them" if self.quoted else ""))
                    lines += [f"    - {x}" for x in self.notes]
        lines.append(f"recall storage: {total:,} messages, {in_window:,} in the window")
        lines.append("core memory: " + ", ".join(f"{k} {len(v)}/{lim}" for k, (v, lim) in core.items()))
        lines.append(f"summary: {len(summary):,} characters" + (f" (covers messages up to #{upto})" if upto else ""))
        archival = self.store.db.execute("SELECT count(*) FROM archival WHERE session_id = ?", (self.sid,)).fetchone()[0]
        lines.append(f"archival storage: {archival:,} passages")
        return "\n".join(lines)


def unsupported(reply: str, facts: list[str]) -> bool:
    """Whether a reply to a message that stated `facts` leaves out more than half of some
    fact's content words (an invention, or a reply about something else)."""
    said = set(content_words(reply))
    for fact in facts:
        wanted = set(content_words(fact))
        if wanted and len(wanted & said) * 2 < len(wanted):
            return True
    return False


# How people say that something changed ("I sold the old car and bought a Fiat", "These days my
# usual order is a cortado instead", "I put the other book down and started Persuasion").
_CHANGE = re.compile(r"\b(?:instead|switched|changed|new|these\s+days|nowadays|no\s+longer|any\s*more|started|"
                     r"taken\s+up|took\s+up|picked\s+up|bought|replaced|moved)\b", re.I)
_DATE_WORDS = frozenset("""monday tuesday wednesday thursday friday saturday sunday january february march april may june
july august september october november december""".split())
_QUANTITY = re.compile(r"\bhow\s+(?:old|many|much|long|often|far)\b", re.I)


def grounded(reply: str, memory: str, question: str, instructions: str = "") -> bool:
    """Whether `reply` to `question` says what the memory that answers it says: its numbers
    (for "how old/many/much ..."), else its names and numbers, else a word of it that neither
    the question nor the instructions hold ("cappuccino" of "I've switched my usual coffee to a
    cappuccino" for "What is my usual coffee order?"; not "life" of a recited "... a fact about
    their life"; not "Saturday" of "We had a party for my daughter on Saturday, she turned 7"
    for "How old is my daughter?"). The bundled model, with the one right memory placed,
    recited its instructions, apologised or named another value in 8 of 20 update questions
    (docs/sessions.md, "Sixth session")."""
    asked = asked_words(question) | asked_words(instructions)
    numbers = set(re.findall(r"\d+(?:[.,]\d+)?", memory))
    names = {w for x in sentences(memory) for w in re.findall(r"(?<=\s)[A-Z][\w'-]*", x)
             if w.lower() not in _DATE_WORDS}
    values = {v.lower() for v in (numbers if _QUANTITY.search(question) else numbers | names)} - \
        {w.lower() for w in re.findall(r"[\w'-]+", question)}
    if values:
        return bool(values & {w.lower() for w in re.findall(r"\d+(?:[.,]\d+)?|[\w'-]+", reply)})
    wanted = asked_words(memory) - asked
    return bool(wanted & asked_words(reply)) if wanted else True


def told(text: str) -> str:
    """What a message of the user's tells, its questions and requests left out ("I'm up to 50
    kilometres a week of running now. Tell me one short fact about the number 49.")."""
    return " ".join(x for x in sentences(text) if not asks_or_requests(x)) or text


def best_answers(memories: list[Hit], question: str, changed: set[int] = frozenset()) -> list[Hit]:
    """Of the memories placed to answer a question about the user, a later change (`changed`),
    then those that hold the most of its asked words, newest first; at most two: the newest
    value and the one before it. A word holds an asked word it begins with, or that begins it
    ("planted" holds "plant")."""
    wanted = asked_words(question)

    def holds(text: str) -> int:
        said = asked_words(text)
        return sum(any(w == x or (min(len(w), len(x)) > 2 and (w.startswith(x) or x.startswith(w))) for x in said)
                   for w in wanted)

    first = [h for h in memories if h.id in changed and h.role == "fact"]
    rest = [h for h in memories if h not in first]
    held = {id(h): holds(told(h.content)) for h in rest}
    most = max(held.values(), default=0)
    return (first + sorted((h for h in rest if held[id(h)] == most), key=lambda h: -h.created))[:2]


def quoted(h: Hit) -> str:
    return f'on {_stamp(h)}: "{clip(absolute(told(h.content), h.created), 240, one_line=True)}"'


def quote(memories: list[Hit]) -> str:
    """The memories themselves as the reply, newest first: 'You told me on 2026-03-14: "..."'."""
    said = [quoted(h) for h in memories]
    return "You told me " + said[0] + "".join(f" Before that, {x}" for x in said[1:])


_HOW_MANY = re.compile(r"^\s*how\s+many\s+(?:[\w'-]+\s+)*?([\w'-]+)\s+(?:have|had|did|do)\s+(?:i|we)\s+"
                       r"(?:(?:told|tell)\s+you\s+(?:that\s+)?(?:i|we)\s+)?(.*?)[?.!\s]*$", re.I)
_NUMBERS = "zero one two three four five six seven eight nine ten eleven twelve".split()


def counted(question: str, memories: list[Hit]) -> list[Hit]:
    """The memories that count toward "How many <things> have I told you I <did>?", oldest
    first: those that name the thing ("concert"; "plant" for houseplants), else those that hold
    the last word of what was done that any of them holds ("finished" for "How many books have I
    told you I finished?", "cinema" for "... I saw at the cinema?"). Empty for another question,
    or when none holds either."""
    m = _HOW_MANY.match(question)
    if not m:
        return []
    said = sorted((h for h in memories if not only_questions(h.content)), key=lambda h: h.created)
    found = [h for h in said if _holds(_singular(m.group(1)), h.content)]
    if not found:
        # the last word of what was done that any memory holds: "cinema" of "saw at the cinema"
        done = [w for w in content_words(m.group(2)) if len(w) > 2]
        found = next((held for w in reversed(done) if (held := [h for h in said if _holds(_singular(w), h.content)])), [])
    return found


def says_number(reply: str, n: int) -> bool:
    words = set(re.findall(r"\w+", reply.lower()))
    return str(n) in words or n < len(_NUMBERS) and _NUMBERS[n] in words


def _singular(word: str) -> str:
    word = word.lower()
    return word[:-3] + "y" if word.endswith("ies") and len(word) > 4 else \
        word[:-1] if word.endswith("s") and not word.endswith("ss") and len(word) > 3 else word


def _holds(word: str, text: str) -> bool:
    """Whether `text` holds `word`, or a word it begins or ends with ("houseplant": "plant"), or
    one that begins with it ("bake": "baked")."""
    for x in (_singular(w) for w in re.findall(r"[^\W\d_]+", text)):
        if x == word or len(x) >= 4 and (word.startswith(x) or word.endswith(x)) or len(word) >= 4 and x.startswith(word):
            return True
    return False


def _was(fact: dict | None) -> str:
    """What a placed fact replaced, and until when: ' (earlier: "I live in Cork", until 2026-03-09)'."""
    return f' (earlier: "{clip(fact["content"], 120, one_line=True)}", until {_day(fact["until"])})' if fact else ""


def only_questions(text: str) -> bool:
    """Whether every sentence of `text` asks or requests something ("I ran my first half marathon
    today! How do I make porridge?" also tells something, and is recalled for it; "Tell me one
    short fact about the number 89" tells nothing, and answered "What is my house number?")."""
    return all(asks_or_requests(x) for x in re.split(r"(?<=[.!?])\s+|\n+", text.strip()) if x.strip())


def _plain(text: str) -> str:
    return text.lower().strip(" .!?")


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d")


def _stamp(hit) -> str:
    """When a recalled item was said, and in which other session: "2026-03-02, session 'work'"."""
    return _day(hit.created) + (f", session '{hit.session}'" if hit.session else "")


