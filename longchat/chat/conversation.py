"""A multi-turn conversation with one model, and the slash commands of `longchat chat`.

No terminal code lives here: the CLI reads lines, hands them to `Conversation.send` or
`handle_command`, and prints what comes back.

Each turn re-sends the whole conversation; the engine keeps its KV state and only prefills
what is new since the last call. When the conversation outgrows the window, the oldest turns
are dropped, with a note.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Callable

from longchat.context.base import Question
from longchat.errors import InputError, LongchatError
from longchat.api import Note, Progress, Runner
from longchat import reading
from longchat.prompts import PREAMBLE, QUESTION, SENTINEL, chat_ids, encode_rendered, frame, render_chat
from longchat.reading import Reading
from longchat.runtime.generate import CopyGuard, GenerationStats, Sampling
from longchat.runtime.remote import RemoteError

INTERRUPTED_MARK = " [interrupted]"  # shown after a cut-off reply; never sent to the model


@dataclass
class Turn:
    """One exchange. `reply` is the model's text as generated (partial if interrupted)."""

    user: str
    reply: str
    interrupted: bool = False

    @property
    def shown_reply(self) -> str:
        return self.reply + (INTERRUPTED_MARK if self.interrupted else "")


@dataclass
class Prompt:
    """One turn's prompt and how it is read: the ids, the messages a remote engine is sent, the
    long input's reading, and what the engine is told of the question."""

    ids: list[int]
    messages: list[dict] | None
    reading: Reading | None = None
    question: Question | None = None  # the question, for strategies that retrieve by its words
    copy_guard: CopyGuard | None = None

    def generate(self, engine, sampling: Sampling, on_text=None, progress=None, **kwargs) -> str:
        """The reply, streamed to `on_text`; the reading joins the engine's stats."""
        reply = engine.generate_text(self.ids, sampling, on_text, progress, self.question, messages=self.messages,
                                     copy_guard=self.copy_guard, **kwargs)
        if self.reading is not None:
            engine.stats.extra.update(self.reading.info())
        return reply


@dataclass
class SessionTotals(GenerationStats):
    """Sums over every reply of the session (survive /reset, which only forgets the turns)."""

    replies: int = 0
    dropped_turns: int = 0

    def add(self, s: GenerationStats) -> None:
        self.replies += 1
        super().add(s)


class Conversation:
    """The message list of one chat and the logic that keeps it inside the runner's window."""

    def __init__(self, runner: Runner, system: str | None = None, sampling: Sampling | None = None, *,
                 note: Note = lambda m: None):
        self.runner = runner
        self.system = system or None
        self.sampling = sampling or runner.profile.generation
        self.note = note
        # Passed to every engine call this conversation makes: a server's request sets its own
        # `should_stop` (the client left) and `on_note` here, never on the shared engine.
        self.call: dict = {}
        self.turns: list[Turn] = []
        self.dropped = 0          # turns dropped from the front since the last reset
        self.last_stats: GenerationStats | None = None
        self.context_tokens = 0   # tokens the model held after the last reply
        self.totals = SessionTotals()
        self.memory_ids: list[int] | None = None  # an attached memory's prompt prefix
        self.memory_name: str | None = None
        self.memory = None        # the attached named memory (`longchat.memory.Memory`)
        self.documents = ""       # attached files and long messages' bodies (compressed when the profile says so)
        self.label: str | None = None  # the file the documents are, when they are one file
        self._document_ids: list[int] | None = None
        self.files: list[str] = []  # attached as they are: their encoding is the one `ask` caches
        self.pasted = False         # documents that are no file as it is (a long message, compressed files)
        self.reading: Reading | None = None  # how the last message read the long input
        self.tools: list[dict] | None = None  # function schemas the prompt offers (the server's requests)
        self.last_messages: list[dict] | None = None  # the messages the last prompt ids were made from

    # ------------------------------------------------------------ the prompt

    def messages(self, user_text: str | None = None, first_turn: int = 0) -> list[dict]:
        """System prompt, the turns from `first_turn` on, and optionally a new user message."""
        out = [{"role": "system", "content": self.system}] if self.system else []
        for turn in self.turns[first_turn:]:
            out += [{"role": "user", "content": turn.user}, {"role": "assistant", "content": turn.reply}]
        if user_text is not None:
            out.append({"role": "user", "content": user_text})
        return out

    def _prompt_ids(self, user_text: str, first_turn: int = 0, chosen: Reading | None = None) -> list[int]:
        """The prompt for `user_text` after the turns from `first_turn`, with the long input read
        as `chosen` says: the first user message carries it (whole, or the text read in its place
        for this question: passages, lines, compressed), as an `ask` prompt does, or it is
        already encoded before it all (memory)."""
        messages = self.messages(user_text, first_turn)
        how = chosen.how if chosen is not None else None
        if how != "memory":
            if how is not None:  # the first user message carries the documents (as read for this question)
                text = self.documents if how == "whole" else chosen.text
                first = next(i for i, m in enumerate(messages) if m["role"] == "user")
                content = PREAMBLE + text + QUESTION.format(question=messages[first]["content"])
                messages[first] = {"role": "user", "content": content}
            self.last_messages = messages  # what a remote engine is sent (it applies its own template)
            return chat_ids(self.runner.tokenizer, messages, self.tools)
        # With a memory, the first user message carries its documents, like an ask prompt:
        # everything before the sentinel is what the memory holds, already encoded.
        first = next(i for i, m in enumerate(messages) if m["role"] == "user")
        messages[first] = {"role": "user", "content": PREAMBLE + SENTINEL + QUESTION.format(question=messages[first]["content"])}
        rest = render_chat(self.runner.tokenizer, messages, self.tools).split(SENTINEL, 1)[1]
        return self.memory_ids + self.runner.tokenizer.encode(rest, add_special_tokens=False)

    def memory_system(self) -> str | None:
        """The system prompt an attached memory was encoded under (it is part of its prefix)."""
        return self.system

    def attach_memory(self, name: str) -> str:
        """Answer every turn from the named memory's documents (see `longchat ingest`), read by
        the policy each question (`longchat.reading`): its best passages or lines, else its
        encoded blocks."""
        from longchat import memory

        if self.documents:
            raise InputError("this chat reads attached files; a memory cannot be added to it")
        mem = memory.find(name)
        mem.lock(exclusive=False)  # held for the chat: nobody rewrites it under us
        if not mem.complete:
            mem.unlock()
            raise memory.MemoryStoreError(f"memory '{mem.name}' is incomplete (interrupted); "
                                          f"{memory.resume_hint(mem.path, mem.manifest)}")
        self.memory, self.memory_name = mem, name
        if not self._memory_passages():  # every question reads its blocks: load them now
            self._attach()
        return memory.describe(mem)

    def _memory_passages(self) -> bool:
        """Questions about the attached memory try its passages first (`auto` on a long memory)."""
        return reading.reads_passages(self.runner, self.memory.tokens - len(self._head_ids()))

    def _head_ids(self) -> list[int]:
        tok = self.runner.tokenizer
        return encode_rendered(tok, frame(tok, self.memory_system())[0])

    def _attach(self) -> None:
        from longchat import memory

        if self.memory_ids is None:
            self.memory_ids = memory.attach(self.runner, self.memory, system=self.memory_system(), note=self.note)

    def add_document(self, text: str, label: str | None = None) -> None:
        """Join `text` (the file `label`, if it is one) to the documents the chat is about (the
        turns so far stay)."""
        if self.memory is not None:
            raise InputError(f"this chat reads memory '{self.memory_name}'; files cannot be added to it")
        # Citations name the file when there is one; joined documents are cited by line only.
        self.label = None if self.documents else label
        self.documents = (self.documents + "\n\n" + text) if self.documents else text
        self._document_ids = None
        if self.memory_ids is not None:  # the documents' encoding no longer holds them all
            self.memory_ids = None
            self.runner.engine.reset(forget_base=True)

    def attach_files(self, specs: list[str], progress: Progress | None = None) -> str:
        """Put files in front of the conversation (compressed first when [compress] is on); the
        conversation starts again. Each question then reads them as `ask` would (`reading`)."""
        from longchat import compress
        from longchat.sources import read_text

        if self.memory is not None:
            raise InputError(f"this chat reads memory '{self.memory_name}'; files cannot be added to it")
        if self.runner.profile.compress.on:
            # Compressed once, before any question is known: ranked by the text itself (llmlingua).
            result = compress.compress_sources(compress.compressor_for(self.runner, self.note), specs,
                                               progress=progress, note=self.note, method="llmlingua")
            text, what = result.text, f"{compress.describe(result)}"
            self.pasted = True
        else:
            text = read_text(specs, note=self.note)
            what = f"{len(self.runner.encode(text)):,} tokens"
        if reading.whole_limit(self.runner) is None:  # read whole every turn: it must fit
            joined = (self.documents + "\n\n" + text) if self.documents else text
            need = len(self.runner.encode(joined)) + self.sampling.max_new_tokens
            if need > self.runner.window:
                raise InputError(f"the files need {need:,} tokens with a reply but the window holds "
                                 f"{self.runner.window:,}; use --profile auto, --compress RATE, or "
                                 f"`longchat ingest` and --memory")
        from longchat.sources import wants_headers

        self.add_document(text, None if wants_headers(specs) else specs[0])
        self.files += list(specs)
        self.reset()
        return what

    # ------------------------------------------------------------ how the long input is read

    def document_ids(self) -> list[int]:
        """The long input's token ids, made once: the documents', or the attached memory's stored
        ids (its template head included; it is locked for the chat and does not change)."""
        if self._document_ids is None:
            self._document_ids = self.memory.ids() if self.memory is not None else self.runner.encode(self.documents)
        return self._document_ids

    def take_long_message(self, user_text: str) -> str:
        """A message past what the model reads whole (`reading.long_message_limit`) is a document
        and a question: its body joins the documents, its last paragraph is what is asked."""
        limit = reading.long_message_limit(self.runner)
        if limit is None or self.memory is not None or len(user_text) < limit:  # >= 1 char a token
            return user_text
        n = len(self.runner.encode(user_text))
        if n <= limit:
            return user_text
        body, question = reading.split_message(user_text)
        if not question:
            return user_text
        self.note(f"the message is {n:,} tokens: its text before the last paragraph is read as a document, "
                  f"the last paragraph as the question")
        self.add_document(body)
        self.pasted = True
        return question

    def choose_reading(self, question: str, progress: Progress | None = None) -> Reading | None:
        """How this question reads the long input (None: there is none): the one policy of
        `longchat.reading`, as `ask` reads it."""
        runner = self.runner
        if self.memory is not None:
            head = len(self._head_ids())
            size = self.memory.tokens - head
            self.memory.touch()  # `memories list` shows when it was last read
            if self._memory_passages():
                docs = self.memory.documents
                chosen = reading.choose(runner, self.document_ids(), head, question, note=self.note,
                                        label=docs[0]["label"] if len(docs) == 1 else None)
                if chosen is not None:
                    return chosen
            self._attach()
            return Reading("memory", size)
        if not self.documents:
            return None
        ids = self.document_ids()
        limit = reading.whole_limit(runner)
        if limit is None:
            return Reading("whole", len(ids))
        whole = Reading("whole", len(ids))  # tried only when the documents alone leave room
        if len(ids) + self.sampling.max_new_tokens <= limit and \
                len(self._prompt_ids(question, chosen=whole)) + self.sampling.max_new_tokens <= limit:
            return whole
        if reading.reads_passages(runner, len(ids)) or runner.remote:
            budget = None
            if runner.remote:
                budget = limit - self.sampling.max_new_tokens - len(self._prompt_ids(question)) - 16
                if budget < 128:
                    raise InputError(f"the conversation leaves {max(budget, 0):,} tokens of the engine's window "
                                     f"for the documents; /reset or start a new chat")
            chosen = reading.choose(runner, ids, 0, question, note=self.note, budget=budget, label=self.label)
            if chosen is not None:
                return chosen
            if runner.remote:
                from longchat.api import compress_to

                text = compress_to(runner, self.documents, question, budget, progress=progress, note=self.note)
                return Reading("compressed", len(ids), text=text)
        return Reading("memory", len(ids), encoded=self._encode_documents(progress))

    def _encode_documents(self, progress: Progress | None) -> int:
        """The documents encoded once into InfLLM's block memory (the ask cache: a later chat or
        `ask` about the same text reuses it), and attached; returns the tokens encoded now."""
        if self.memory_ids is not None:
            return 0
        from longchat import memory
        from longchat.api import text_source

        runner, tok = self.runner, self.runner.tokenizer
        head = frame(tok, self.memory_system())[0]
        head_ids = encode_rendered(tok, head)
        total = len(head_ids) + len(self.document_ids())
        strategy, message = memory.infllm_for(runner, total + self.sampling.max_new_tokens)
        if message:
            self.note(message)
        if self.files and not self.pasted:  # the sources as `ask` reads them: one cache entry for both
            from longchat.memory.encode import collect_sources
            from longchat.sources import wants_headers

            srcs, headers, ids = collect_sources(self.files, note=self.note), wants_headers(self.files), None
        else:
            srcs, headers, ids = [text_source(self.documents, "<chat documents>")], False, [self.document_ids()]
        cached, encoded = memory.cached(runner, srcs, head, headers), 0
        if cached is None:
            strategy.prepare(total + self.sampling.max_new_tokens, folder=memory.cache_root())
            result = memory.encode_for_ask(runner, strategy, srcs, head, headers, ids, cache=True,
                                           progress=progress or (lambda d, t: None), note=self.note,
                                           head_ids=head_ids)
            cached, encoded = result.memory, result.encoded
            memory.evict_cache(memory.cache_limit(), keep=cached.path, note=self.note)
        cached.lock(exclusive=False)
        try:
            self.memory_ids = memory.attach(runner, cached, system=self.memory_system(), note=self.note)
        finally:
            cached.unlock()
        return encoded

    def prepare(self, user_text: str, progress: Progress | None = None) -> Prompt:
        """The prompt for `user_text` (already freed of a long message's document), with how the
        long input is read for it, the oldest turns dropped if it must fit a bounded window."""
        chosen = self.choose_reading(user_text, progress)
        self.reading = chosen
        ids = self.fit_prompt(user_text, chosen)
        if chosen is None or chosen.how == "whole":
            return Prompt(ids, self.last_messages, chosen)
        if chosen.how == "memory":
            return Prompt(ids, None, chosen, Question(user_text, apart=True))
        return Prompt(ids, self.last_messages, chosen, Question(user_text),
                      copy_guard=chosen.copy_guard(self.runner.tokenizer))

    def fit_prompt(self, user_text: str, chosen: Reading | None = None) -> list[int]:
        """Prompt ids for `user_text` after the history, dropping the oldest turns if needed."""
        window, reply = self.runner.window, self.sampling.max_new_tokens
        ids = self._prompt_ids(user_text, chosen=chosen)
        if len(ids) + reply <= window:
            return ids
        alone = self._prompt_ids(user_text, first_turn=len(self.turns), chosen=chosen)
        if len(alone) + reply > window:
            what = "the system prompt and this message take" if self.system else "this message takes"
            raise InputError(
                f"{what} {len(alone):,} tokens; with max_new_tokens={reply} that exceeds the window "
                f"({window:,} tokens of profile '{self.runner.profile.name}'). Shorten it, lower "
                f"--max-new-tokens, or raise context.window"
            )
        # Dropping a turn changes the start of the prompt, so the next reply re-reads all of it.
        # Free a quarter of the window at once rather than one turn at a time, so the turns that
        # follow reuse the cache instead of each paying a full prefill.
        target = min(window - reply, window * 3 // 4)
        drop = 0
        while drop < len(self.turns):
            drop += 1
            ids = self._prompt_ids(user_text, first_turn=drop, chosen=chosen)
            if len(ids) <= target:
                break
        self.turns = self.turns[drop:]
        self.dropped += drop
        self.totals.dropped_turns += drop
        oldest = "the oldest turn" if drop == 1 else f"the {drop} oldest turns"
        self.note(f"dropped {oldest} to fit the window "
                  f"({window:,} tokens); {_plural(len(self.turns), 'turn')} kept")
        return ids

    # ------------------------------------------------------------ a turn

    def send(self, user_text: str, on_text: Callable[[str], None] | None = None,
             progress: Progress | None = None) -> str:
        """Reply to `user_text`, streaming deltas to `on_text`; the turn joins the history.

        On KeyboardInterrupt the partial reply stays in the history marked interrupted (a turn
        with no reply text at all is forgotten), then the interrupt propagates to the caller.
        """
        if not user_text.strip():
            raise InputError("the message is empty")
        user_text = self.take_long_message(user_text)
        prompt = self.prepare(user_text, progress)
        engine = self.runner.engine
        engine.last_text = ""
        try:
            reply = prompt.generate(engine, self.sampling, on_text, progress, **self.call)
        except (KeyboardInterrupt, RemoteError):  # what was said before Ctrl-C, or before the engine went away
            self._finish_turn(user_text, engine.last_text, prompt.ids, interrupted=True)
            raise
        self._finish_turn(user_text, reply, prompt.ids, interrupted=False)
        return reply

    def _record_stats(self, prompt: list[int], interrupted: bool) -> None:
        """The engine's figures for the reply just made join the last-reply and session totals."""
        stats = self.runner.engine.stats
        if interrupted:
            stats.stop_reason = "interrupted"
        self.last_stats = stats
        self.totals.add(stats)
        self.context_tokens = len(prompt) + stats.new_tokens

    def _finish_turn(self, user_text: str, reply: str, prompt: list[int], interrupted: bool) -> None:
        self._record_stats(prompt, interrupted)
        if interrupted and not reply.strip():
            return  # nothing was said: keep no half turn the model would have to answer around
        self.turns.append(Turn(user_text, reply.strip(), interrupted))

    def reset(self) -> None:
        """Forget the turns (the system prompt and the session totals stay)."""
        self.turns = []
        self.dropped = 0
        self.context_tokens = 0
        self.last_stats = None
        self.runner.engine.reset()

    def handle_command(self, line: str) -> CommandResult:
        """Run the slash command on `line`, e.g. '/system Be brief.' (see COMMANDS)."""
        name, *rest = line.strip()[1:].split(None, 1) or [""]
        arg = rest[0] if rest else ""
        cmd = find_command(name.lower())
        if cmd is None:
            names = [n for c in COMMANDS.values() for n in (c.name, *c.aliases)]
            close = difflib.get_close_matches(name.lower(), names, n=1)
            hint = f"did you mean /{close[0]}? " if close else ""
            valid = ", ".join(f"/{c.name}" for c in COMMANDS.values())
            return CommandResult(f"unknown command '/{name}'; {hint}Valid commands: {valid}. Start a message "
                                 f"with // to send a literal '/'", error=True)
        return cmd.run(self, arg.strip())

    def set_system(self, text: str | None) -> None:
        """A new system prompt starts a new conversation: the old turns were answered without it."""
        if (text or None) != self.system and self.memory is None and self.memory_ids is not None:
            self.memory_ids = None  # the documents were encoded under the old system prompt
            self.runner.engine.reset(forget_base=True)
        if self.memory is not None and (text or None) != self.system:
            raise InputError(f"memory '{self.memory_name}' was encoded with the system prompt this chat started with; "
                             f"it cannot change")
        self.system = text or None
        self.reset()


# ---------------------------------------------------------------- slash commands

@dataclass
class CommandResult:
    """What a slash command asks the CLI to do: show `output`, and stop when `exit`."""

    output: str = ""
    exit: bool = False
    error: bool = False


@dataclass
class Command:
    name: str
    usage: str
    help: str
    run: Callable[[Conversation, str], CommandResult]
    aliases: tuple[str, ...] = field(default=())


COMMANDS: dict[str, Command] = {}


def command(name: str, usage: str, help: str, aliases: tuple[str, ...] = ()):
    """Register a slash command: `run(conversation, argument_text) -> CommandResult`."""
    def register(run):
        COMMANDS[name] = Command(name, usage, help, run, aliases)
        return run
    return register


def is_command(line: str) -> bool:
    """A line starting with one '/' is a command; '//' sends a message that starts with '/'."""
    return line.startswith("/") and not line.startswith("//")


def user_text(line: str) -> str:
    """The message a non-command line sends ('//x' sends '/x')."""
    return line[1:] if line.startswith("//") else line


def find_command(name: str) -> Command | None:
    for cmd in COMMANDS.values():
        if name == cmd.name or name in cmd.aliases:
            return cmd
    return None


@command("help", "/help", "list the commands")
def _help(conv: Conversation, arg: str) -> CommandResult:
    width = max(len(c.usage) for c in COMMANDS.values())
    lines = [f"  {c.usage:<{width}}  {c.help}" for c in COMMANDS.values()]
    return CommandResult("commands:\n" + "\n".join(lines) + "\n  a message starting with // sends a literal '/'")


@command("exit", "/exit", "leave the chat (also /quit)", aliases=("quit",))
def _exit(conv: Conversation, arg: str) -> CommandResult:
    return CommandResult(exit=True)


@command("reset", "/reset", "forget the conversation (the system prompt stays)")
def _reset(conv: Conversation, arg: str) -> CommandResult:
    n = len(conv.turns)
    conv.reset()
    return CommandResult(f"conversation reset ({_plural(n, 'turn')} forgotten)")


@command("stats", "/stats", "timing and token counts of the last reply and of the session")
def _stats(conv: Conversation, arg: str) -> CommandResult:
    lines = []
    s = conv.last_stats
    if s is None:
        lines.append("last reply: none yet")
    else:
        lines.append(f"last reply: {s.new_tokens:,} tokens in {s.decode_s:.2f} s ({s.decode_tok_s:.1f} tok/s), "
                     f"stop: {s.stop_reason}")
        lines.append(f"  prompt: {s.prompt_tokens:,} tokens, {s.reused_tokens:,} reused from the cache, "
                     f"{s.prompt_tokens - s.reused_tokens:,} read in {s.prefill_s:.2f} s")
    if conv.reading is not None:
        r = conv.reading
        lines.append(f"  read the long input: {r.how}, {r.read_tokens:,} of {r.input_tokens:,} tokens")
    t = conv.totals
    ended = f" (ended: {', '.join(f'{reason} {n}' for reason, n in sorted(t.stops.items()))})" if t.stops else ""
    lines.append(f"session: {_plural(t.replies, 'reply', 'replies')}{ended}, {t.prompt_tokens - t.reused_tokens:,} "
                 f"tokens read in {t.prefill_s:.1f} s, {t.new_tokens:,} generated in {t.decode_s:.1f} s")
    lines.append(f"  peak RSS {t.peak_rss_mb:,.0f} MiB, {_plural(t.dropped_turns, 'turn')} dropped to fit the window")
    lines.append(f"context: {conv.context_tokens:,} tokens (window: {conv.runner.window_label}), "
                 f"{_plural(len(conv.turns), 'turn')}")
    return CommandResult("\n".join(lines))


@command("system", "/system [TEXT]", "set the system prompt and reset; without TEXT, show it")
def _system(conv: Conversation, arg: str) -> CommandResult:
    if not arg:
        return CommandResult(f"system prompt: {conv.system}" if conv.system else
                             "no system prompt (the model's chat template default applies)")
    try:
        conv.set_system(arg)
    except InputError as e:
        return CommandResult(str(e), error=True)
    return CommandResult("system prompt set; conversation reset")


@command("file", "/file PATH...", "read files (PDF, text, folders) into the chat; it starts again with them",
         aliases=("attach",))
def _file(conv: Conversation, arg: str) -> CommandResult:
    import shlex

    if not arg:
        return CommandResult("usage: /file PATH... (the files come before the conversation)", error=True)
    try:
        what = conv.attach_files(shlex.split(arg))
    except (LongchatError, ValueError) as e:
        return CommandResult(str(e), error=True)
    return CommandResult(f"attached {arg} ({what}); conversation reset")


@command("history", "/history", "show the conversation so far")
def _history(conv: Conversation, arg: str) -> CommandResult:
    lines = [f"system: {conv.system}"] if conv.system else []
    if conv.dropped:
        lines.append(f"({_plural(conv.dropped, 'earlier turn')} dropped to fit the window)")
    for turn in conv.turns:
        lines += [f"you: {clip(turn.user)}", f"assistant: {clip(turn.shown_reply)}"]
    return CommandResult("\n".join(lines) if lines else "no turns yet")


def clip(text: str, limit: int = 500, *, one_line: bool = False) -> str:
    """`text` cut to `limit` characters: for display, saying how much was left out; `one_line`
    (for a prompt line) with its whitespace collapsed and a bare "..."."""
    if one_line:
        text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return text[:limit] + ("..." if one_line else f"... ({len(text) - limit:,} more characters)")


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else plural or word + 's'}"
