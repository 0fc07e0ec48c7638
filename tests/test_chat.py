"""`longchat chat` on the real default model (SmolLM2-135M, CPU): the piped CLI, the window
that drops old turns, the slash commands, and the Conversation history around interrupts."""

from __future__ import annotations

import io
import json
import re

import pytest

from longchat.chat.conversation import INTERRUPTED_MARK, Conversation, Turn, is_command, user_text
from longchat.cli import main
from longchat.cli.chat import block_is_open, read_messages, unwrap_block
from longchat.errors import EXIT_INPUT, InputError
from longchat.runtime.generate import Sampling

# ~140 tokens: one fits a window of 300 with its reply, two do not.
LONG = ("Please tell me about the long history of the river Thames, the bridges of London, the old "
        "docks, the trading ships, the great frost fairs on the frozen water, the tunnels under the "
        "river, and the people who lived and worked along its banks from Roman times until today. "
        "Also describe the tides, the barges, the swans, the fish that came back after the clean-up, "
        "the flood barrier at Woolwich, and the boat race between Oxford and Cambridge every spring. "
        "Finish with the markets, the pubs, the painters who loved the fog, and the walks along the banks "
        "at dusk when the lights come on across the water.")


class Notes(list):
    """A `note` callback that keeps what it was told."""

    def __call__(self, message: str) -> None:
        self.append(message)


@pytest.fixture(autouse=True)
def user_data(tmp_path, monkeypatch):
    # Not LONGCHAT_HOME: that would move the converted-model cache too and convert again.
    monkeypatch.setattr("longchat.paths.data_dir", lambda: tmp_path / "data")
    return tmp_path / "data"


@pytest.fixture(scope="module")
def default_model():
    from longchat.runtime.loader import load_model

    return load_model("default")


@pytest.fixture(autouse=True)
def load_once(default_model, monkeypatch):
    """Every `open_runner` here, the CLI's included, gets the one loaded default model.

    Each still builds its own strategy and engine from its profile (and --set), so no state is
    shared between runs; only the ~4 s weight load is.
    """
    import longchat.api

    real = longchat.api.load_model

    def load_model(spec="default", **kwargs):
        return default_model if spec == "default" and kwargs.get("device") is None else real(spec, **kwargs)

    monkeypatch.setattr(longchat.api, "load_model", load_model)


@pytest.fixture
def conversation():
    from longchat.api import open_runner

    return Conversation(open_runner("full"), sampling=Sampling(max_new_tokens=3), note=Notes())


def chat_cli(monkeypatch, capsys, stdin: str, *args: str):
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(["chat", "--max-new-tokens", "8", *args])
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------- the CLI from a pipe

def test_piped_chat_prints_one_reply_per_message(monkeypatch, capsys):
    stdin = "What is the capital of France?\n\n/stats\n/bogus\nAnd of Germany?\n/reset\n"
    code, out, err = chat_cli(monkeypatch, capsys, stdin, "--stats")
    assert code == 0, err
    replies = out.splitlines()
    assert len(replies) == 2 and "Paris" in replies[0] and "Berlin" in replies[1]
    assert "\x1b" not in out + err  # no colours or cursor codes in a pipe
    # Commands answer on stderr only.
    assert "last reply:" in err and re.search(r"session: 1 reply \(ended: (eos|length) 1\)", err), err
    assert "conversation reset (2 turns forgotten)" in err
    assert "unknown command '/bogus'" in err and "/help" in err and "/history" in err
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert len(records) == 2
    assert records[1]["reused_tokens"] > records[0]["prompt_tokens"]  # turn 2 re-read only what was new
    assert records[0]["model"] == "SmolLM2-135M-Instruct"
    assert all(r["stops"] == {r["stop_reason"]: 1} for r in records)  # each line: its own reply


def test_piped_chat_drops_oldest_turns_then_refuses_a_message_that_cannot_fit(monkeypatch, capsys):
    too_long = " ".join([LONG] * 3)
    stdin = f"{LONG}\n{LONG}\n/stats\n{too_long}\nnever sent\n"
    code, out, err = chat_cli(monkeypatch, capsys, stdin, "--set", "context.window=300")
    assert code == EXIT_INPUT, err
    assert len(out.splitlines()) == 2  # the replies before the error stay on stdout
    assert "longchat: dropped the oldest turn to fit the window (300 tokens); 0 turns kept" in err
    assert "1 turn dropped to fit the window" in err
    assert err.strip().splitlines()[-1].startswith("longchat: error: this message takes")
    assert "exceeds the window (300 tokens" in err


def test_read_messages_skips_blank_lines_and_joins_blocks():
    lines = io.StringIO('one\n\n   \n"""\nfirst\n\nsecond\n"""\n"""inline"""\n"""start\nend\n"""\nlast\r\n')
    assert list(read_messages(lines)) == ["one", "first\n\nsecond", "inline", "start\nend", "last"]
    assert list(read_messages(['"""\n', "never closed\n"])) == ["never closed"]


def test_terminal_block_helpers():
    assert block_is_open('"""') and block_is_open('"""\nsome text')
    assert not block_is_open('"""\nsome text\n"""') and not block_is_open('"""one line"""')
    assert not block_is_open("plain")
    assert unwrap_block('"""\nline one\nline two\n"""') == "line one\nline two"
    assert unwrap_block("just text") == "just text"


# ---------------------------------------------------------------- Conversation

def test_turns_build_the_history_and_reuse_the_cache(conversation):
    conversation.send("What is the capital of France?")
    context = conversation.context_tokens
    conversation.send("And of Germany?")
    assert [t.user for t in conversation.turns] == ["What is the capital of France?", "And of Germany?"]
    assert conversation.last_stats.reused_tokens >= context - 1
    assert [m["role"] for m in conversation.messages("next")] == ["user", "assistant"] * 2 + ["user"]
    assert conversation.totals.replies == 2


def test_interrupted_reply_stays_in_history_marked(conversation):
    seen = []

    def stop_after_two(delta: str) -> None:
        seen.append(delta)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        conversation.send("Tell me a long story about a dragon.", on_text=stop_after_two)
    turn = conversation.turns[-1]
    assert turn.interrupted and turn.reply == "".join(seen).strip()
    assert turn.shown_reply.endswith(INTERRUPTED_MARK)
    assert INTERRUPTED_MARK not in str(conversation.messages())  # the model never sees the mark
    assert conversation.last_stats.stop_reason == "interrupted"
    assert "[interrupted]" in conversation.handle_command("/history").output
    # The engine is still usable, and the next turn reuses what it had cached.
    assert conversation.send("What is the capital of France?")
    assert conversation.last_stats.reused_tokens > 0 and len(conversation.turns) == 2


def test_interrupt_before_any_text_keeps_no_turn(conversation):
    def stop(done: int, total: int) -> None:  # Ctrl-C while the prompt is being read
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        conversation.send("Hello!", progress=stop)
    assert conversation.turns == [] and conversation.last_stats.stop_reason == "interrupted"
    assert conversation.send("What is the capital of France?")


def test_window_drops_oldest_turns_but_keeps_system_and_message(conversation, monkeypatch):
    monkeypatch.setattr(conversation.runner.profile.context, "window", 300)
    conversation.system = "You are terse."
    conversation.turns = [Turn(f"question {i} " + "word " * 30, f"answer {i}") for i in range(6)]
    ids = conversation.fit_prompt("the new question")
    assert len(ids) + 3 <= 300 * 3 // 4  # freed a margin so the next turns reuse the cache
    assert 0 < conversation.dropped < 6
    assert conversation.turns[-1].user.startswith("question 5")
    assert conversation.note[-1].startswith(f"dropped the {conversation.dropped} oldest turns to fit the window")
    text = conversation.runner.tokenizer.decode(ids)
    assert "You are terse." in text and text.rstrip().endswith("assistant") and "the new question" in text
    # A message that cannot fit even alone is refused, and the history is left as it was.
    kept = list(conversation.turns)
    with pytest.raises(InputError, match="exceeds the window"):
        conversation.fit_prompt("word " * 400)
    assert conversation.turns == kept


def test_slash_commands(conversation):
    conversation.turns = [Turn("hi", "hello")]
    assert conversation.handle_command("/exit").exit and conversation.handle_command("/QUIT").exit
    assert "/system [TEXT]" in conversation.handle_command("/help").output
    assert conversation.handle_command("/stats").output.startswith("last reply: none yet")
    result = conversation.handle_command("/system   Answer in French.")
    assert conversation.system == "Answer in French." and conversation.turns == [] and not result.error
    assert "Answer in French." in conversation.handle_command("/system").output
    assert conversation.handle_command("/history").output == "system: Answer in French."
    bad = conversation.handle_command("/nope now")
    assert bad.error and "unknown command '/nope'" in bad.output and "/reset" in bad.output
    assert "did you mean /history?" in conversation.handle_command("/histroy").output
    assert is_command("/stats") and not is_command("//etc/hosts is a file") and not is_command("hi /x")
    assert user_text("//etc/hosts is a file") == "/etc/hosts is a file"
