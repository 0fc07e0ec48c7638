"""What longchat says to the model: the chat template around a prompt, and the frames of
`ask` and `summarize`.

An `ask` prompt is [head | document | tail]: `frame` renders the chat template once around a
sentinel and splits it, so a document of any length (or an encoded memory of it) sits between
the template's head and the question's tail without the template being rendered over it.
"""

from __future__ import annotations

PREAMBLE = "Read the document below, then answer the question that follows it.\n\n"
QUESTION = "\n\nQuestion: {question}"
SENTINEL = "\x00"  # where the document goes in a rendered frame
ASK_PROMPT = PREAMBLE + "{document}" + QUESTION
SUMMARY_PROMPT = ("Summarize the following text in a short paragraph. Keep names, numbers, dates "
                  "and key facts.\n\n{text}")
MERGE_PROMPT = ("The notes below summarize consecutive parts of one long input, in order. Write one "
                "short summary of the whole input from them.\n\n{text}")
# A log is summarised from its template table (longchat.logs), never from its raw lines.
LOG_REPORT_PROMPT = ("{table}\n\nThe table above describes a log file: each numbered line is one kind of "
                     "message with its level, how many times it occurred and when. Write a short incident "
                     "report in plain sentences: what went wrong, how many times and when, what changed, "
                     "then what the log shows otherwise in one sentence. Use only figures from the table.")


def render_chat(tokenizer, messages: list[dict], tools: list[dict] | None = None) -> str:
    """The chat template applied to `messages` (and `tools`, for templates that take them),
    ready for the assistant's reply."""
    if getattr(tokenizer, "chat_template", None):
        extra = {"tools": tools} if tools else {}
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **extra)
    # Base models have no template: a plain transcript they can continue.
    return "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in messages) + "Assistant:"


def encode_rendered(tokenizer, text: str) -> list[int]:
    """Ids of a whole rendered prompt (a template brings its own special tokens)."""
    return tokenizer.encode(text, add_special_tokens=not getattr(tokenizer, "chat_template", None))


def frame(tokenizer, system: str | None, first_user: str = "") -> tuple[str, str]:
    """(head, tail): the prompt text before the document, and after `first_user`'s text."""
    messages = ([{"role": "system", "content": system}] if system else [])
    rendered = render_chat(tokenizer, messages + [{"role": "user", "content": PREAMBLE + SENTINEL + first_user}])
    head, tail = rendered.split(SENTINEL)
    return head, tail


def question_suffix(tokenizer, question: str, system: str | None = None) -> list[int]:
    """The ids after the document: the question."""
    _, tail = frame(tokenizer, system, QUESTION.format(question=question))
    return tokenizer.encode(tail, add_special_tokens=False)


def chat_ids(tokenizer, messages: list[dict], tools: list[dict] | None = None) -> list[int]:
    """Token ids of `messages` in the model's chat template, ready for the assistant's reply."""
    return encode_rendered(tokenizer, render_chat(tokenizer, messages, tools))


def ask_messages(document: str, question: str, system: str | None = None) -> list[dict]:
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": "user", "content": ASK_PROMPT.format(document=document, question=question)}]
