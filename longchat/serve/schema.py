"""The OpenAI chat-completions wire format: request bodies (pydantic, validated), the response
and stream-chunk objects, and the error object every failure is answered with.

Fields OpenAI clients send that longchat does not use (`user`, `metadata`, `presence_penalty`
...) are accepted and ignored; the ones that would change what the client gets back and that
longchat cannot honour (`n` > 1, `logprobs`) are refused by name.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from longchat.errors import LongchatError


class RequestError(LongchatError):
    """A request the server answers with an OpenAI-style error object and an HTTP status."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.param, self.code, self.headers = status, param, code, headers or {}
        self.type = type or ("invalid_request_error" if status < 500 else "server_error")


def error_body(message: str, type: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


TYPE_TAGS = {"str", "int", "float", "bool", "dict", "list", "none"}  # where pydantic names a union's branch


def validation_error(e: ValidationError) -> RequestError:
    """What pydantic found wrong, named by its field path (`messages.0.role`). Of the branches
    of a union (a string or a list of parts) the deepest one failed last: its message says most."""
    worst = max(e.errors(), key=lambda err: len(err["loc"]))
    param = ".".join(str(x) for x in worst["loc"] if isinstance(x, int) or (x.isidentifier() and x not in TYPE_TAGS))
    message = worst["msg"].removeprefix("Value error, ")
    return RequestError(400, f"{param}: {message}" if param else message, param=param or None, code="invalid_value")


class TextPart(BaseModel):
    """One part of a list content; only text parts are read."""

    model_config = ConfigDict(extra="ignore")
    type: str
    text: str | None = None

    @model_validator(mode="after")
    def _only_text(self) -> TextPart:
        if self.type != "text" or self.text is None:
            raise ValueError(f"content parts of type {self.type!r} are not supported (text only)")
        return self


class Message(BaseModel):
    """A chat message. `developer` is read as `system`; `tool` carries a tool's result."""

    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text or "" for part in self.content)
        return self.content or ""

    def for_template(self) -> dict:
        """The message as chat templates take it (tool-call arguments as objects, not JSON text)."""
        out: dict[str, Any] = {"role": "system" if self.role == "developer" else self.role, "content": self.text}
        if self.tool_calls:
            out["tool_calls"] = [_call_for_template(call) for call in self.tool_calls]
        if self.tool_call_id:
            out["tool_call_id"] = self.tool_call_id
        if self.name:
            out["name"] = self.name
        return out


def _call_for_template(call: dict) -> dict:
    import json

    function = dict(call.get("function") or {})
    if isinstance(function.get("arguments"), str):
        try:
            function["arguments"] = json.loads(function["arguments"] or "{}")
        except ValueError:
            pass
    return {**call, "function": function}


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class LongchatOptions(BaseModel):
    """The `longchat` body field (openai client: `extra_body={"longchat": {...}}`); unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")
    profile: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    memory: str | None = None
    session: str | None = None
    compress: float | None = Field(None, gt=0, le=1)


class ChatRequest(BaseModel):
    """POST /v1/chat/completions."""

    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = 1
    logprobs: bool | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    longchat: LongchatOptions = Field(default_factory=LongchatOptions)

    @field_validator("stop")
    @classmethod
    def _stops(cls, value):
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        return [s for s in stops if s]

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int) -> int:
        if value != 1:
            raise ValueError("only n=1 is supported (one model, one sequence at a time)")
        return value

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, value):
        if value:
            raise ValueError("logprobs are not supported")
        return value

    @property
    def max_new_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def wants_tools(self) -> bool:
        return bool(self.tools) and self.tool_choice != "none"


def parse_request(body: bytes) -> ChatRequest:
    """The request in `body`, or a 400 naming what is wrong."""
    import json

    try:
        data = json.loads(body)
    except ValueError as e:
        raise RequestError(400, f"the body is not valid JSON: {e}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise RequestError(400, "the body must be a JSON object", code="invalid_json")
    try:
        return ChatRequest.model_validate(data)
    except ValidationError as e:
        raise validation_error(e) from None


# ---------------------------------------------------------------- what goes back


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def usage(prompt: int, completion: int, cached: int, read: dict | None = None) -> dict:
    """OpenAI's usage object; `read`: how a long input was read (`Reading.info`), as `longchat`."""
    out = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
           "prompt_tokens_details": {"cached_tokens": cached}}
    if read:
        out["longchat"] = read
    return out


def completion(cid: str, model: str, result, created: int | None = None) -> dict:
    """A whole `chat.completion` object for a finished `Result`."""
    message: dict[str, Any] = {"role": "assistant", "content": result.text if not result.tool_calls else None}
    if result.tool_calls:
        message["tool_calls"] = result.tool_calls
    return {"id": cid, "object": "chat.completion", "created": created or int(time.time()), "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": result.finish_reason, "logprobs": None}],
            "usage": usage(result.prompt_tokens, result.completion_tokens, result.cached_tokens,
                           result.info.get("reading")),
            "system_fingerprint": None, "longchat": result.info}


def chunk(cid: str, model: str, created: int, delta: dict | None = None, finish_reason: str | None = None,
          usage_: dict | None = None, with_usage: bool = False) -> dict:
    """One `chat.completion.chunk`; with `usage_` the closing one that has no choices."""
    out: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                           "system_fingerprint": None}
    out["choices"] = [] if usage_ is not None else [{"index": 0, "delta": delta or {}, "finish_reason": finish_reason,
                                                     "logprobs": None}]
    if with_usage or usage_ is not None:
        out["usage"] = usage_
    return out
