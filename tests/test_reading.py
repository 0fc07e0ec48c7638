"""The reading policy (`longchat/reading.py`) as the chat doors use it: which reading a question
gets, where the text read goes in the prompt, and how a long message is split. A tiny Llama with
the bundled model's tokenizer: BM25 and the prompt depend only on the tokenizer; the real model's
answers through every door are in tests/test_doors.py and bench/doors.py."""

from __future__ import annotations

import pytest

from longchat import reading
from longchat.api import open_runner
from longchat.bench.realtext import docstrings
from longchat.chat.conversation import Conversation
from longchat.chat.session import SessionConversation
from longchat.prompts import PREAMBLE

FACT = "The door code of the east laboratory is P8-1212."
QUESTION = "What is the door code of the east laboratory?"


class Scripted:
    """Stands in for the model's reply (the tests check prompts and readings, not answers)."""

    def __init__(self):
        self.prompts: list[list[int]] = []

    def __call__(self, prompt, on_text=None):
        self.prompts.append(prompt)
        return "noted."


@pytest.fixture
def runner(home, tiny_chat_model):
    return open_runner("auto", str(tiny_chat_model), overrides=["generation.max_new_tokens=16"])


@pytest.fixture(scope="module")
def document() -> str:
    text = docstrings()[:40_000]  # ~9k tokens of real prose
    middle = text.find("\n", len(text) // 2) + 1
    return text[:middle] + FACT + "\n" + text[middle:]


def test_split_message_takes_the_last_paragraph_as_the_question():
    assert reading.split_message("a long text\n\nmore text\n\nWhat is it?") == ("a long text\n\nmore text", "What is it?")
    assert reading.split_message("body\n\nQuestion: Who?") == ("body", "Who?")  # an ask frame's label goes
    assert reading.split_message("body line\nWho?") == ("body line", "Who?")  # no paragraphs: the last line
    assert reading.split_message("no question at all") == ("no question at all", "")
    assert reading.split_message("body\n\n" + "x" * 1200) == ("body\n\n" + "x" * 1200, "")  # too long to be one


def test_limits_follow_the_profile(home, tiny_chat_model, runner):
    assert reading.whole_limit(runner) == runner.profile.strategy.full_up_to
    assert reading.long_message_limit(runner) == runner.profile.strategy.full_up_to - 16
    infllm = open_runner("infllm", str(tiny_chat_model), overrides=["generation.max_new_tokens=16"])
    assert reading.whole_limit(infllm) == 0  # infllm reads every long input through its memory
    assert reading.long_message_limit(infllm) == infllm.profile.strategy.n_local - 16
    full = open_runner("full", str(tiny_chat_model))
    assert reading.whole_limit(full) is None and reading.long_message_limit(full) is None


def test_a_chat_file_question_reads_the_passage_that_holds_its_words(runner, document, tmp_path):
    path = tmp_path / "doc.txt"
    path.write_text(document)
    notes: list[str] = []
    conv = Conversation(runner, note=notes.append)
    conv.attach_files([str(path)])
    prompt = conv.prepare(QUESTION)
    assert prompt.reading.how == "passages" and FACT in prompt.reading.text
    assert prompt.reading.input_tokens > 8000 and prompt.reading.read_tokens <= runner.profile.strategy.passages_budget
    assert prompt.question.text == QUESTION and prompt.copy_guard is not None
    assert any("reading its best" in n for n in notes)  # the line `ask` prints
    # The text read stands where `ask` puts the document: the first user message, question after it.
    first = next(m for m in prompt.messages if m["role"] == "user")
    assert first["content"].startswith(PREAMBLE) and first["content"].endswith(QUESTION)
    assert len(prompt.ids) < 2000


def test_a_follow_up_gets_its_own_reading_with_the_turns_in_view(runner, document, tmp_path):
    second = "The founder of the Willow Street bakery is Helena Solvang."
    path = tmp_path / "doc.txt"
    path.write_text(document.replace(FACT, FACT + "\n" + "filler line of text\n" * 200 + second))
    conv = Conversation(runner)
    conv.attach_files([str(path)])
    first = conv.prepare(QUESTION)
    conv._finish_turn(QUESTION, "The code is P8-1212.", first.ids, interrupted=False)
    follow = conv.prepare("Who founded the Willow Street bakery?")
    assert second in follow.reading.text and FACT not in follow.reading.text
    roles = [m["role"] for m in follow.messages]
    assert roles == ["user", "assistant", "user"]  # the earlier turn stays
    assert follow.messages[1]["content"] == "The code is P8-1212."
    assert second in follow.messages[0]["content"]


def test_a_pasted_document_is_split_and_the_question_alone_is_a_turn(runner, document):
    conv = Conversation(runner)
    question = conv.take_long_message(document + "\n\n" + QUESTION)
    assert question == QUESTION and FACT in conv.documents and QUESTION not in conv.documents
    assert conv.prepare(question).reading.how == "passages"
    assert conv.take_long_message("A short message.") == "A short message."


def test_a_session_keeps_a_pasted_document_for_later_turns(runner, document):
    conv = SessionConversation(runner, "docs")
    conv._generate = Scripted()
    conv.send(document + "\n\n" + QUESTION)
    assert conv.reading.how == "passages"
    stored = [m.content for m in conv.store.messages(conv.sid) if m.role == "user"]
    assert stored == [QUESTION]  # the body is a document of the session, not a message in its window
    conv.close()
    again = SessionConversation(runner, "docs")  # resumed: the document is still read
    again._generate = Scripted()
    again.send("Which combination opens the east laboratory door?")
    assert again.reading is not None and again.reading.input_tokens > 8000
    assert again.store.export("docs")["documents"][0]["label"] == "message"
    again.close()
