"""MemGPT-style memory functions for models that can call them, and a lenient call parser.

The functions touch only the session store: there is no file, shell or network function, and
nothing a document or a user message says can add one. A call the parser cannot read, an
unknown function or a bad argument goes back to the model as an error message (and forces
another step), because small local models emit broken JSON all the time.
"""

from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from longchat.errors import InputError
from longchat.chat.store import when as _when

PAGE = 5


@dataclass
class Call:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)

    @property
    def heartbeat(self) -> bool:
        value = self.arguments.get("request_heartbeat", False)
        return value is True or str(value).lower() == "true"


@dataclass
class Function:
    name: str
    description: str
    params: dict[str, str]            # name -> "type: description"
    run: Callable[..., str]
    required: tuple[str, ...] = ()


def _page(hits, total: int, page: int, show) -> str:
    pages = max(1, math.ceil(total / PAGE))
    if not hits:
        return f"No results (page {page + 1}/{pages})."
    lines = [f"Showing {len(hits)} of {total} results (page {page + 1}/{pages}):"]
    lines += [show(h) for h in hits]
    return "\n".join(lines)


def _date(text: str, end: bool = False) -> float:
    try:
        day = datetime.strptime(str(text).strip()[:10], "%Y-%m-%d")
    except ValueError:
        raise InputError(f"dates must be YYYY-MM-DD, got {text!r}") from None
    return day.timestamp() + (86400 if end else 0)


def _int(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be an integer, got {value!r}") from None


def builtin_functions(store, sid: int, say: Callable[[str], None]) -> dict[str, Function]:
    """The memory functions bound to one session; `say` delivers send_message to the user."""

    def send_message(message: str) -> str:
        say(str(message))
        return "Message sent."

    def core_memory_append(label: str, content: str) -> str:
        value = store.core(sid).get(label, ("", 0))[0]
        store.set_core(sid, label, (value + "\n" + str(content)).strip())
        return f"Appended to core memory '{label}'."

    def core_memory_replace(label: str, old_content: str, new_content: str) -> str:
        value = store.core(sid).get(label, (None, 0))[0]
        if value is None:
            raise InputError(f"no core memory block {label!r}")
        if str(old_content) not in value:
            raise InputError(f"'{old_content}' is not in core memory '{label}' (old_content must match exactly)")
        store.set_core(sid, label, value.replace(str(old_content), str(new_content), 1))
        return f"Replaced in core memory '{label}'."

    def conversation_search(query: str, page: Any = 0) -> str:
        p = _int(page, "page")
        hits, total = store.search_messages(sid, str(query), limit=PAGE, offset=p * PAGE)
        return _page(hits, total, p, lambda h: f"- [{_when(h.created)}] {h.role}: {h.content}")

    def conversation_search_date(start_date: str, end_date: str, page: Any = 0) -> str:
        p = _int(page, "page")
        hits, total = store.messages_between(sid, _date(start_date), _date(end_date, end=True),
                                             limit=PAGE, offset=p * PAGE)
        return _page(hits, total, p, lambda h: f"- [{_when(h.created)}] {h.role}: {h.content}")

    def archival_memory_insert(content: str) -> str:
        store.archive(sid, str(content))
        return "Inserted into archival memory."

    def archival_memory_search(query: str, page: Any = 0) -> str:
        p = _int(page, "page")
        hits, total = store.search_archival(sid, str(query), limit=PAGE, offset=p * PAGE)
        return _page(hits, total, p, lambda h: f"- [{_when(h.created)}] {h.content}")

    heartbeat = "request_heartbeat: bool: true to run another step after this one"
    table = [
        Function("send_message", "Send a message to the user.", {"message": "str: the message"}, send_message,
                 ("message",)),
        Function("core_memory_append", "Append to a core memory block (persona or human).",
                 {"label": "str: persona or human", "content": "str: text to add", "request_heartbeat": heartbeat},
                 core_memory_append, ("label", "content")),
        Function("core_memory_replace", "Replace text in a core memory block; old_content must match exactly.",
                 {"label": "str: persona or human", "old_content": "str: exact text to replace",
                  "new_content": "str: replacement", "request_heartbeat": heartbeat},
                 core_memory_replace, ("label", "old_content", "new_content")),
        Function("conversation_search", "Search the whole past conversation.",
                 {"query": "str: words to look for", "page": "int: result page, from 0",
                  "request_heartbeat": heartbeat}, conversation_search, ("query",)),
        Function("conversation_search_date", "Messages between two dates.",
                 {"start_date": "str: YYYY-MM-DD", "end_date": "str: YYYY-MM-DD (inclusive)",
                  "page": "int: result page, from 0", "request_heartbeat": heartbeat},
                 conversation_search_date, ("start_date", "end_date")),
        Function("archival_memory_insert", "Save a passage to long-term archival memory.",
                 {"content": "str: the passage", "request_heartbeat": heartbeat}, archival_memory_insert,
                 ("content",)),
        Function("archival_memory_search", "Search archival memory.",
                 {"query": "str: words to look for", "page": "int: result page, from 0",
                  "request_heartbeat": heartbeat}, archival_memory_search, ("query",)),
    ]
    return {f.name: f for f in table}


def describe(functions: dict[str, Function]) -> str:
    """The functions for a system prompt, and how to call them (one JSON object)."""
    lines = ["You can call these functions. To call one, reply with only a JSON object like "
             '{"name": "send_message", "arguments": {"message": "Hello!"}}. Everything you want the '
             "user to read must go through send_message."]
    for f in functions.values():
        args = ", ".join(f"{k} ({v})" for k, v in f.params.items())
        lines.append(f"- {f.name}: {f.description} Arguments: {args}")
    return "\n".join(lines)


def tool_schemas(functions: dict[str, Function]) -> list[dict]:
    """The functions as JSON-schema tools, for chat templates that take `tools`."""
    kinds = {"str": "string", "int": "integer", "bool": "boolean"}
    out = []
    for f in functions.values():
        props = {k: {"type": kinds.get(v.split(":")[0], "string"), "description": v.split(":", 1)[-1].strip()}
                 for k, v in f.params.items()}
        out.append({"type": "function", "function": {"name": f.name, "description": f.description,
                                                      "parameters": {"type": "object", "properties": props,
                                                                     "required": list(f.required)}}})
    return out


# -- parsing ----------------------------------------------------------------------------------

class CallError(ValueError):
    """What was wrong with a call, worded for the model."""


def parse_call(text: str) -> Call | None:
    """The first function call in `text`, read leniently; None when the text holds no call.

    Accepts {"name", "arguments"}, {"function", "parameters"|"args"}, OpenAI-style
    {"function": {"name", "arguments": "<json>"}}, <tool_call> tags, ```json fences, single
    quotes, Python literals and trailing commas. Raises CallError when something looks like a
    call but cannot be read.
    """
    candidates = _objects(text)
    if not candidates:
        if re.search(r'"(name|function)"\s*:', text):
            raise CallError("your function call is not valid JSON; reply with one JSON object "
                            '{"name": ..., "arguments": {...}}')
        return None
    for raw in candidates:
        data = _load(raw)
        if not isinstance(data, dict):
            continue
        if isinstance(data.get("function"), dict):
            data = data["function"]
        name = data.get("name") or data.get("function") or data.get("tool")
        args = data.get("arguments", data.get("parameters", data.get("args", {})))
        if isinstance(args, str):
            args = _load(args) if args.strip() else {}
        if isinstance(name, str) and isinstance(args, dict):
            return Call(name.strip(), args)
    raise CallError('a function call needs a "name" and an "arguments" object')


def _objects(text: str) -> list[str]:
    """Balanced {...} substrings, outermost first (quotes respected)."""
    out, depth, start, quote, escape = [], 0, None, None, False
    for i, ch in enumerate(text):
        if quote:
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == quote:
                quote = None
            continue
        if ch in "\"'" and depth:
            quote = ch
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0:
                out.append(text[start:i + 1])
    if depth and start is not None:  # an unclosed object at the end: close it
        out.append(text[start:] + "}" * depth)
    return out


def _load(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        pass
    fixed = re.sub(r",\s*([}\]])", r"\1", raw)
    try:
        return json.loads(fixed)
    except json.JSONDecodeError:
        pass
    try:
        return ast.literal_eval(re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False",
                                                                   re.sub(r"\bnull\b", "None", fixed))))
    except (ValueError, SyntaxError):
        raise CallError("your function call is not valid JSON; reply with one JSON object "
                        '{"name": ..., "arguments": {...}}') from None


def run_call(functions: dict[str, Function], call: Call) -> tuple[str, bool]:
    """(what the function returned or the error, ok)."""
    f = functions.get(call.name)
    if f is None:
        return f"Error: no function named {call.name!r}. Functions: {', '.join(functions)}.", False
    args = {k: v for k, v in call.arguments.items() if k != "request_heartbeat"}
    unknown = sorted(set(args) - set(f.params))
    missing = [k for k in f.required if k not in args]
    if unknown or missing:
        what = (f"unknown argument(s) {', '.join(unknown)}" if unknown else "") + \
               ("; " if unknown and missing else "") + (f"missing {', '.join(missing)}" if missing else "")
        return f"Error in {f.name}: {what}. Arguments: {', '.join(f.params)}.", False
    try:
        return f.run(**args), True
    except InputError as e:
        return f"Error in {f.name}: {e}", False
