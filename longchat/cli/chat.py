"""`longchat chat`: a conversation in the terminal, or one message per line from a pipe."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterable, Iterator, List, Optional

import typer

from longchat import paths
from longchat.cli.app import app
from longchat.cli.common import (CompressOpt, DeviceOpt, ExcludeOpt, IncludeOpt, MaxNewOpt, ModelOpt, ProfileOpt, SetOpt, TemperatureOpt, err,
                                 note, open_runner_cli, prefill_progress, print_stats, sampling_from, stream_out,
                                 usage_error, use_compression, use_selection)
from longchat.errors import InputError, LongchatError

if TYPE_CHECKING:
    from longchat.chat.conversation import CommandResult, Conversation

BLOCK = '"""'  # a line starting with this opens a multi-line message, a line of just this closes it
KEYS = ('Enter sends, Alt-Enter adds a line, """ opens a block that a """ line closes, /help lists commands, '
        "Ctrl-C stops a reply, Ctrl-D leaves.")


@app.command()
def chat(
    profile: str = ProfileOpt,
    model: Optional[str] = ModelOpt,
    device: Optional[str] = DeviceOpt,
    set_: Optional[List[str]] = SetOpt,
    max_new_tokens: Optional[int] = MaxNewOpt,
    temperature: Optional[float] = TemperatureOpt,
    system: Optional[str] = typer.Option(None, "--system", help="A system prompt for the conversation (/system changes it)."),
    stats: bool = typer.Option(False, "--stats", help="After each reply, print one JSON line of timing and memory figures on stderr."),
    memory: Optional[str] = typer.Option(None, "--memory", help="Chat about a memory made by `longchat ingest` (its documents come before the first message)."),
    files: Optional[List[str]] = typer.Option(None, "--file", "-f", help="A file, PDF or folder the chat is about (repeatable; /file adds more). Each question reads it as `ask` does: whole, its best passages, or its encoded memory. With --session it stays in the session."),
    include: Optional[List[str]] = IncludeOpt,
    exclude: Optional[List[str]] = ExcludeOpt,
    compress: Optional[float] = CompressOpt,
    session: Optional[str] = typer.Option(None, "--session", "-S", help="Keep this conversation in a named session: resumed next time, remembered past the window (summaries, searched memories). See `longchat sessions`."),
    paging: Optional[str] = typer.Option(None, "--paging", help="With --session: system (default: longchat pages for any model), functions (the model may also call memory functions), truncate (baseline: drop old messages)."),
    memory_from: Optional[List[str]] = typer.Option(None, "--memory-from", metavar="SESSION", help="With --session: also recall what you said in these other sessions (repeatable, or comma-separated; all: every session)."),
) -> None:
    """Chat with the model. Type /help in the chat for its commands.

    In a terminal: Enter sends, Alt-Enter (or Esc Enter) adds a line, a line starting with \"\"\"
    opens a block that a line of \"\"\" closes. Ctrl-C stops a reply, Ctrl-D or /exit leaves.

    From a pipe: one message per line (blank lines skipped); each reply is printed as one
    block of plain text on stdout. Example: printf 'Hi\\n/stats\\n' | longchat chat
    """
    # Imported here, not at the top: the conversation imports torch, which `longchat --help`
    # and a usage mistake need not wait for.
    from longchat.chat import commands as _session_commands  # noqa: F401  (registers /remember, /core ...)
    from longchat.chat.conversation import Conversation

    use_selection(include, exclude)  # /file in the chat walks folders the same way
    others = [n.strip() for value in memory_from or [] for n in value.split(",") if n.strip()]
    if others:
        if not session:
            raise usage_error("--memory-from recalls into a session: give --session NAME too")
        from longchat.chat.store import Store

        known = Store()
        try:
            for name in others if others != ["all"] else []:
                known.session_id(name)  # an unknown session is named before the model loads
        finally:
            known.close()
    runner = open_runner_cli(profile, model, device, set_, max_new_tokens)
    sampling = sampling_from(runner.profile, max_new_tokens, temperature)
    use_compression(runner, compress)
    if session:
        from longchat.chat.session import SessionConversation

        if paging not in (None, "system", "functions", "truncate"):
            raise InputError("--paging must be one of: system, functions, truncate")
        conversation = SessionConversation(runner, session, system, sampling, note=note, paging=paging)
        conversation.recall_from(others)
        told = len(conversation.store.messages(conversation.sid))
        also = f"; also recalls from {', '.join(n for _, n in conversation.others)}" if conversation.others else ""
        note(f"session '{session}': " + (f"resumed, {told} messages stored" if told else "new") +
             f" (paging: {conversation.paging}{also})")
    else:
        conversation = Conversation(runner, system, sampling, note=note)
    if memory:
        note(f"memory {conversation.attach_memory(memory)}")
    if files:
        with prefill_progress("compressing") as progress:
            note(f"attached {len(files)} source(s): {conversation.attach_files(list(files), progress)}")
    try:
        if sys.stdin.isatty():
            run_terminal(conversation, stats)
        else:
            run_piped(conversation, sys.stdin, stats)
    finally:
        if session:
            conversation.close()


def show(result: CommandResult) -> None:
    """A command's output goes to stderr: stdout carries replies only."""
    if result.error:
        note(result.output)
    elif result.output:
        err.print(result.output, markup=False, highlight=False, soft_wrap=True)


# ---------------------------------------------------------------- from a pipe

def read_messages(lines: Iterable[str]) -> Iterator[str]:
    """One message per non-blank line; a \"\"\" block is one message however many lines it has."""
    block: list[str] | None = None
    for raw in lines:
        line = raw.rstrip("\r\n")
        if block is not None:
            if line.strip() == BLOCK:
                yield "\n".join(block)
                block = None
            else:
                block.append(line)
        elif line.startswith(BLOCK):
            rest = line[len(BLOCK):]
            if rest.rstrip().endswith(BLOCK):  # """one line"""
                yield rest.rstrip()[: -len(BLOCK)]
            else:
                block = [rest] if rest.strip() else []
        elif line.strip():
            yield line
    if block:
        yield "\n".join(block)


def run_piped(conversation: Conversation, lines: Iterable[str], stats: bool) -> None:
    """Plain text in, plain text out: no prompt, no colours. An error ends the run (scripts see it)."""
    from longchat.chat.conversation import is_command, user_text

    for message in read_messages(lines):
        if is_command(message):
            result = conversation.handle_command(message)
            show(result)
            if result.exit:
                return
            continue
        with prefill_progress() as progress:  # as `ask` shows it: encoding a long input, reading a long prompt
            conversation.send(user_text(message), on_text=stream_out, progress=progress)
        stream_out("\n")
        if stats:
            print_stats(conversation.runner, conversation.last_stats)


# ---------------------------------------------------------------- in a terminal

def run_terminal(conversation: Conversation, stats: bool) -> None:
    """The REPL: prompt-toolkit for input, rich for streamed Markdown replies."""
    from rich.console import Console

    from longchat.chat.conversation import is_command, user_text

    runner = conversation.runner
    session = prompt_session(conversation)
    out = Console(highlight=False)  # stdout
    err.print(f"longchat chat · {runner.model.name} · profile {runner.profile.name} (window: {runner.window_label})"
              f"\n{KEYS}", style="dim", markup=False, highlight=False)
    while True:
        try:
            line = session.prompt()
        except KeyboardInterrupt:
            if not session.default_buffer.text.strip():
                err.print("(Ctrl-D or /exit leaves)", style="dim", markup=False)
            continue
        except EOFError:
            return
        if not line.strip():
            continue
        if is_command(line.strip()):
            result = conversation.handle_command(line.strip())
            show(result)
            if result.exit:
                return
            if line.strip() == "/help":
                err.print(KEYS, style="dim", markup=False, highlight=False)
            continue
        message = user_text(unwrap_block(line))
        try:
            stream_reply(conversation, message, out)
        except LongchatError as e:
            note(f"error: {e}")
            continue
        if stats and conversation.last_stats is not None:
            print_stats(runner, conversation.last_stats)


def unwrap_block(text: str) -> str:
    """'\"\"\"\\nline one\\nline two\\n\"\"\"' -> 'line one\\nline two' (other text is left alone)."""
    stripped = text.strip()
    if stripped.startswith(BLOCK) and stripped.endswith(BLOCK) and len(stripped) >= 2 * len(BLOCK):
        return stripped[len(BLOCK): -len(BLOCK)].strip("\n")
    return text


def block_is_open(text: str) -> bool:
    """Inside a \"\"\" block that no line of \"\"\" has closed yet: Enter adds a line."""
    if not text.startswith(BLOCK):
        return False
    lines = text.split("\n")
    closed = len(lines) > 1 and lines[-1].strip() == BLOCK
    one_line = len(lines) == 1 and len(text.rstrip()) > len(BLOCK) and text.rstrip().endswith(BLOCK)
    return not (closed or one_line)


def prompt_session(conversation: Conversation):
    from prompt_toolkit import PromptSession
    from prompt_toolkit.completion import WordCompleter
    from prompt_toolkit.filters import is_searching
    from prompt_toolkit.history import FileHistory
    from prompt_toolkit.key_binding import KeyBindings
    from prompt_toolkit.output import create_output

    from longchat.chat.conversation import COMMANDS

    keys = KeyBindings()

    @keys.add("enter", filter=~is_searching)
    def _enter(event) -> None:
        buffer = event.current_buffer
        if block_is_open(buffer.text):
            buffer.insert_text("\n")
        else:
            buffer.validate_and_handle()

    @keys.add("escape", "enter")  # Alt-Enter arrives as Esc Enter in most terminals
    def _newline(event) -> None:
        event.current_buffer.insert_text("\n")

    runner = conversation.runner

    def toolbar() -> str:
        return (f" {runner.model.name} · {runner.profile.name} · context {conversation.context_tokens:,} tokens "
                f"({runner.window_label}) · Alt-Enter new line · /help · Ctrl-D quit")

    folder = paths.data_dir()
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"/{name}" for c in COMMANDS.values() for name in (c.name, *c.aliases)]
    return PromptSession(
        message=[("bold", "> ")],
        multiline=True,  # Enter is ours (above): it sends unless a """ block is open
        prompt_continuation=lambda width, line, soft: (" " if soft else ".") * (width - 1) + " ",
        key_bindings=keys,
        history=FileHistory(str(folder / "history")),
        bottom_toolbar=toolbar,
        completer=WordCompleter(names, sentence=True),
        complete_while_typing=False,  # Tab completes a /command; a menu in the way of Enter does not
        # With stdout redirected (`longchat chat > log`) the prompt goes to the terminal on stderr.
        output=None if sys.stdout.isatty() else create_output(stdout=sys.stderr),
    )


def stream_reply(conversation: Conversation, message: str, out) -> str:
    """Send `message`; stream the reply as Markdown on a terminal, as plain text otherwise."""
    if not out.is_terminal:
        try:
            return conversation.send(message, on_text=stream_out)
        except KeyboardInterrupt:
            err.print("[interrupted]", style="dim")
            return ""
        finally:
            stream_out("\n")

    from rich.console import Group
    from rich.live import Live
    from rich.markdown import Markdown
    from rich.spinner import Spinner
    from rich.text import Text

    text = ""
    spinner = Spinner("dots", Text("thinking", style="dim"), style="dim")
    # Notes on a terminal stderr (e.g. turns dropped) print above the live reply, not through it.
    live = Live(spinner, console=out, refresh_per_second=8, redirect_stderr=err.is_terminal)

    def on_text(delta: str) -> None:
        nonlocal text
        text += delta
        live.update(Tail(text))

    def on_prefill(done: int, total: int) -> None:
        if total >= 1024:
            spinner.update(text=Text(f"reading {done:,}/{total:,} tokens", style="dim"))

    interrupted = False
    with quiet_keys():
        live.start()
        try:
            conversation.send(message, on_text=on_text, progress=on_prefill)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            # The final frame is drawn in full (Live lets it overflow the screen on stop).
            mark = Text("[interrupted]" if interrupted else "" if text else "(empty reply)", style="dim")
            live.update(Group(Markdown(text), mark) if text else mark)
            live.stop()
    return text


@contextmanager
def quiet_keys() -> Iterator[None]:
    """Turn off the terminal's echo while a reply streams.

    The echoed '^C' (or typed-ahead keys) would move the cursor under rich's Live display,
    which then redraws one line too low and leaves a stale copy of the reply above it.
    Ctrl-C still raises KeyboardInterrupt; keys typed meanwhile reach the next prompt.
    """
    try:
        import termios

        fd = sys.stdin.fileno()
        saved = termios.tcgetattr(fd)
    except Exception:  # no termios (Windows) or stdin is no terminal: nothing to silence
        saved = None
    if saved is None:
        yield
        return
    quiet = termios.tcgetattr(fd)
    quiet[3] &= ~(termios.ECHO | termios.ECHOCTL)  # [3]: the local-mode flags
    termios.tcsetattr(fd, termios.TCSANOW, quiet)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, saved)


class Tail:
    """Markdown cut to the lines that fit the terminal, so a long reply streams at the bottom."""

    def __init__(self, text: str):
        self.text = text

    def __rich_console__(self, console, options):
        from rich.markdown import Markdown
        from rich.segment import Segment

        lines = console.render_lines(Markdown(self.text), options, pad=False)
        for i, line in enumerate(lines[-max(console.height - 2, 1):]):
            if i:
                yield Segment.line()  # between lines only: a trailing one would throw Live's height off
            yield from line
