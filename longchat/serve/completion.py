"""What the model thread does for one chat request.

Pick the runner (the loaded profile, or one other profile or an attached memory, sharing the
loaded weights), build the prompt from the messages (or, with a session, from the session
store, as `chat --session` does), check it against the profile's window (never cut: a prompt
too long is refused, naming a profile that takes it), then generate with stop sequences,
cancellation and prefill progress, and read a tool call out of the reply when tools were given.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field, replace
from typing import Callable

from longchat import memory as memories
from longchat import reading
from longchat.api import Runner, open_runner
from longchat.chat.session import SessionConversation
from longchat.chat.store import check_name
from longchat.context.base import Question
from longchat.errors import ConfigError, InputError
from longchat.memory.store import NAME, Memory, all_memories, named_root
from longchat.profile import load_profile
from longchat.prompts import PREAMBLE, QUESTION, SENTINEL, chat_ids, render_chat
from longchat.runtime.generate import Sampling
from longchat.serve.schema import ChatRequest, Message, RequestError, validation_error
from longchat.serve.worker import Job

MEMORY_TAG = "@memory:"   # `MODEL@memory:NAME` answers from the named memory NAME
PROGRESS_MIN_TOKENS = 1024  # prompts with at least this many tokens to read report progress


@dataclass
class Result:
    """A finished reply, in the terms of the OpenAI response."""

    text: str
    finish_reason: str              # stop | length | tool_calls
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    tool_calls: list[dict] | None = None
    info: dict = field(default_factory=dict)  # the response's `longchat` field: profile, strategy, notes


class StopFound(Exception):
    """A stop sequence appeared in the reply: generation ends there."""


class StopScanner:
    """Passes reply text on, holding back any tail that may be the start of a stop sequence,
    and raises StopFound (the text cut before it) when one appears."""

    def __init__(self, stops: list[str], out: Callable[[str], None] | None):
        self.stops, self.out = stops, out
        self.text, self.sent = "", 0

    def push(self, delta: str) -> None:
        self.text += delta
        hits = [i for s in self.stops if (i := self.text.find(s, max(0, self.sent - len(s)))) >= 0]
        if hits:
            self.text = self.text[: min(hits)]
            self._send(len(self.text))
            raise StopFound()
        hold = max((n for s in self.stops for n in range(len(s) - 1, 0, -1) if self.text.endswith(s[:n])), default=0)
        self._send(len(self.text) - hold)

    def flush(self) -> None:
        self._send(len(self.text))

    def _send(self, upto: int) -> None:
        if upto > self.sent and self.out is not None:
            self.out(self.text[self.sent:upto])
        self.sent = max(self.sent, upto)


class Runners:
    """The loaded runner, and at most one more, sharing its weights: another profile's (per
    request), or one with a named memory attached. A new one replaces the old."""

    def __init__(self, main: Runner):
        self.main = main
        self.key: tuple | None = None
        self.extra: Runner | None = None
        self.prefix: list[int] | None = None   # the attached memory's ids

    def get(self, profile: str | None, memory: Memory | None, note) -> tuple[Runner, list[int] | None]:
        name = profile or self.main.profile.name
        if memory is None and name == self.main.profile.name:
            return self.main, None
        # A memory rewritten since (`ingest --append`) is attached again.
        stamp = (memory.path / "manifest.json").stat().st_mtime_ns if memory else None
        key = (name, memory.name if memory else None, stamp)
        if key != self.key:
            self.key = self.extra = self.prefix = None  # one extra runner at a time: free the old one first
            prof = self.main.profile if name == self.main.profile.name else load_profile(name)
            if prof.model and prof.model not in ("default", self.main.model.name):
                note(f"profile '{name}' names model {prof.model!r}; this server serves {self.main.model.name} "
                     f"(the profile's strategy and settings apply)")
            runner = open_runner(prof, loaded=self.main.model)
            self.prefix = memories.attach(runner, memory) if memory else None
            self.key, self.extra = key, runner
        return self.extra, self.prefix


class Completer:
    """Answers `Job`s on the model thread (`Worker.handle`)."""

    def __init__(self, runner: Runner):
        self.runners = Runners(runner)

    @property
    def model_id(self) -> str:
        return self.runners.main.model.name

    @property
    def window(self) -> int:
        """Tokens of prompt + reply the main runner accepts (reported as vLLM's `max_model_len`)."""
        return self.runners.main.window

    def tokenize(self, body: object) -> dict:
        """`POST /tokenize`, as vLLM and llama-server have it: the token ids of `prompt` (or
        llama-server's `content`), or of chat `messages` with the template, and their count."""
        from pydantic import ValidationError

        tok = self.runners.main.tokenizer
        if not isinstance(body, dict):
            raise RequestError(400, "expected a JSON object with `prompt` (a string) or `messages`")
        if isinstance(body.get("messages"), list):
            try:
                ids = chat_ids(tok, [Message.model_validate(m).for_template() for m in body["messages"]])
            except ValidationError as e:
                raise validation_error(e) from None
        else:
            text = body.get("prompt", body.get("content"))
            if not isinstance(text, str):
                raise RequestError(400, "`prompt` must be a string", param="prompt")
            ids = tok.encode(text, add_special_tokens=body.get("add_special_tokens", True) is not False)
        return {"count": len(ids), "max_model_len": self.window, "tokens": ids}

    def model_ids(self) -> list[str]:
        """The loaded model, then one id per named memory (`MODEL@memory:NAME`)."""
        names = [p.name for kind, p in all_memories() if kind == "named" and (p / "manifest.json").is_file()]
        return [self.model_id] + [f"{self.model_id}{MEMORY_TAG}{name}" for name in names]

    def memory_for(self, request: ChatRequest) -> str | None:
        """The named memory a request reads (from its model id or the longchat field), checked
        with the session's name before the request queues: unknown models and memories are 404s."""
        if request.longchat.session is not None:
            try:
                check_name(request.longchat.session)
            except InputError as e:
                raise RequestError(400, str(e), param="longchat.session", code="invalid_value") from None
        base, tag, from_id = request.model.partition(MEMORY_TAG)
        if base != self.model_id:
            raise RequestError(404, f"model {request.model!r} not found; this server serves {self.model_id!r} "
                               f"(GET /v1/models lists it and its memories)", param="model", code="model_not_found")
        asked = request.longchat.memory
        if tag and asked and asked != from_id:
            raise RequestError(400, f"the model id names memory {from_id!r} but longchat.memory is {asked!r}",
                               param="longchat.memory", code="invalid_value")
        name = from_id if tag else asked
        if name is None:
            return None
        param = "model" if tag else "longchat.memory"
        if not NAME.match(name):
            raise RequestError(400, f"bad memory name {name!r}: use letters, digits, '.', '_' and '-'", param=param,
                               code="invalid_value")
        if not (named_root() / name / "manifest.json").is_file():
            raise RequestError(404, f"no memory named {name!r}; `longchat ingest SOURCE --name {name}` makes one",
                               param=param, code="model_not_found")
        return name

    # ------------------------------------------------------------ one request

    def __call__(self, job: Job) -> Result:
        req, notes = job.request, job.notes
        memory = Memory.open(named_root() / job.memory) if job.memory else None
        if memory is not None:
            memory.lock(exclusive=False)  # nobody rewrites it while it is read
        try:
            runner, prefix = self.runners.get(req.longchat.profile, memory, notes.append)
            if req.longchat.session:
                text = self._session_turn(runner, job, prefix, notes)
            else:
                text = self._turn(runner, job, prefix, notes)
        finally:
            if memory is not None:
                memory.unlock()
        return self._result(runner, req, text, notes)

    def _turn(self, runner: Runner, job: Job, prefix: list[int] | None, notes: list[str]) -> str:
        req = job.request
        tools = self._tools(runner, req)
        messages = [m.for_template() for m in req.messages]
        last = _last_user(messages)
        if req.longchat.compress or runner.profile.compress.on:
            messages[last]["content"] = self._compress(runner, messages[last]["content"], req.longchat.compress, notes)
        conversation = as_conversation(runner, messages, tools, self._sampling(runner, req), notes, job.memory, prefix)
        if conversation is not None:  # a long input: read by the policy, as `ask` and `chat` read it
            conversation, question = conversation
            read = conversation.prepare(question, self._progress(runner, job))
            sampling = fit(runner, len(read.ids), conversation.sampling, requested=req.max_new_tokens is not None,
                           notes=notes)
            job.emit("started")
            return self._reply(runner, job, read.ids, sampling, read=read)
        if prefix is None:
            prompt = chat_ids(runner.tokenizer, messages, tools)
        else:
            prompt = prefix + after_memory(runner.tokenizer, messages, tools)
        sampling = fit(runner, len(prompt), self._sampling(runner, req), requested=req.max_new_tokens is not None,
                       notes=notes)
        job.emit("started")
        question = _question(messages[last]["content"])
        return self._reply(runner, job, prompt, sampling, question=Question(question) if question else None)

    def _session_turn(self, runner: Runner, job: Job, prefix: list[int] | None, notes: list[str]) -> str:
        """The last user message joins the session; the prompt comes from the session store."""
        req = job.request
        if self._tools(runner, req):
            raise RequestError(400, "tools are not supported with a session (its memory functions are the "
                               "session's own)", param="tools", code="unsupported")
        messages = [m.for_template() for m in req.messages]
        text = messages[_last_user(messages)]["content"]
        if req.longchat.compress or runner.profile.compress.on:
            text = self._compress(runner, text, req.longchat.compress, notes)
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system") or None

        def generate(prompt: list[int], on_text) -> str:
            if conversation.generations == 0:
                job.emit("started")
            conversation.generations += 1
            # With memory functions the reply is what the model sends through them, not its steps.
            return self._reply(runner, job, prompt, conversation.sampling, stream=conversation.paging != "functions")

        conversation = ServedSession(runner, req.longchat.session, system, self._sampling(runner, req),
                                     note=notes.append, generate=generate)
        conversation.call = job.call
        try:
            if prefix is not None:
                conversation.memory_ids, conversation.memory_name = prefix, job.memory
                conversation.memory = Memory.open(named_root() / job.memory)
            return conversation.send(text)
        finally:
            conversation.close()

    def _progress(self, runner: Runner, job: Job):
        """Reading progress for a streamed request: a comment line each 10% of a long prompt."""
        engine, shown = runner.engine, [-1]

        def progress(done: int, total: int) -> None:
            if job.request.stream and total - engine.stats.reused_tokens >= PROGRESS_MIN_TOKENS:
                percent = done * 100 // total
                if percent // 10 > shown[0] // 10 and percent < 100:
                    shown[0] = percent
                    job.emit("progress", percent)
        return progress

    def _reply(self, runner: Runner, job: Job, prompt_ids: list[int], sampling: Sampling,
               question: Question | None = None, stream: bool = True, *, read=None) -> str:
        """Generate, streaming deltas to the job (unless tools make it wait for the whole reply).
        `read`: the `Prompt` the reading policy made (its query, copy guard and reading)."""
        req, engine = job.request, runner.engine
        stream = stream and req.stream and not self._tools(runner, req)
        scanner = StopScanner(req.stop or [], (lambda d: job.emit("text", d)) if stream else None)
        progress = self._progress(runner, job)
        try:
            if read is not None:
                text = read.generate(engine, sampling, scanner.push, progress, **job.call)
            else:
                text = engine.generate_text(prompt_ids, sampling, on_text=scanner.push, progress=progress,
                                            question=question, **job.call)
        except StopFound:
            if read is not None and read.reading is not None:
                engine.stats.extra.update(read.reading.info())
            engine.stats.stop_reason = "stop"
            return scanner.text
        scanner.flush()
        return text

    def _result(self, runner: Runner, req: ChatRequest, text: str, notes: list[str]) -> Result:
        stats = runner.engine.stats
        finish = "length" if stats.stop_reason == "length" else "stop"  # eos, a stop string, a loop cut off
        if stats.stop_reason == "repeat":
            notes.append(f"the reply began to repeat itself; cut {stats.extra.get('repeat_cut_tokens', 0)} tokens "
                         f"(generation.stop_on_repeat)")
        calls = tool_calls_in(text, req.tools) if self._tools(runner, req) else None
        info = {"profile": runner.profile.name,
                "strategy": stats.extra.get("strategy_used", runner.profile.context.strategy),
                "memory": self.runners.key[1] if self.runners.key and runner is self.runners.extra else None,
                "session": req.longchat.session, "reading": reading_of(stats.extra),
                "prefill_s": round(stats.prefill_s, 3),
                "decode_s": round(stats.decode_s, 3), "notes": notes}
        # Tokens this request encoded into block memory are in the engine's cache by the time it
        # generates, but they were read now, not reused: they are not `cached_tokens`.
        cached = max(0, stats.reused_tokens - stats.extra.get("encoded_tokens", 0))
        return Result(text, "tool_calls" if calls else finish, stats.prompt_tokens, stats.new_tokens,
                      cached, calls, info)

    # ------------------------------------------------------------ settings

    def _sampling(self, runner: Runner, req: ChatRequest) -> Sampling:
        """The profile's [generation] with the request's values on top. Without a seed, a
        sampled reply (temperature > 0) gets a random one, as OpenAI's does."""
        values = {"max_new_tokens": req.max_new_tokens, "temperature": req.temperature, "top_p": req.top_p}
        sampling = replace(runner.profile.generation, **{k: v for k, v in values.items() if v is not None})
        if req.seed is not None:
            sampling.seed = req.seed
        elif sampling.temperature > 0:
            sampling.seed = random.getrandbits(31)
        try:
            sampling.validate("the request")
        except ConfigError as e:
            raise RequestError(400, str(e), code="invalid_value") from None
        return sampling

    def _tools(self, runner: Runner, req: ChatRequest) -> list[dict] | None:
        if not req.wants_tools:
            return None
        if "tools" not in (getattr(runner.tokenizer, "chat_template", None) or ""):
            raise RequestError(400, f"model {self.model_id}'s chat template has no tool format; send the request "
                               f"without tools (or tool_choice \"none\")", param="tools", code="unsupported")
        return req.tools

    def _compress(self, runner: Runner, text: str, rate: float | None, notes: list[str]) -> str:
        """The message compressed to `rate` of its tokens (the profile's [compress] settings);
        its last paragraph, taken as the question, is kept whole and guides LongLLMLingua."""
        from longchat import compress

        settings = compress.with_rate(runner.profile.compress, rate)
        body, _, question = text.rpartition("\n\n")
        if not body.strip():
            body, question = text, ""
        squeezer = replace(runner, profile=replace(runner.profile, compress=settings))
        result = compress.compressor_for(squeezer, note=notes.append).compress([body], question=question or None)
        notes.append(compress.describe(result))
        return result.text + (f"\n\n{question}" if question else "")


class ServedSession(SessionConversation):
    """A session whose replies come from the server's generation (stops, cancellation, progress)."""

    def __init__(self, *args, generate: Callable[[list[int], Callable | None], str], **kwargs):
        super().__init__(*args, **kwargs)
        self.generate = generate
        self.generations = 0  # model replies this turn (memory functions take several)

    def _generate(self, prompt: list[int], on_text) -> str:
        return self.generate(prompt, on_text)


# ---------------------------------------------------------------- prompts


def reading_of(extra: dict) -> dict | None:
    """How the last reply read its long input (`Reading.info`), from the engine's stats."""
    keys = ("read", "input_tokens", "read_tokens", "pieces", "sources", "encoded_tokens")
    return {k: extra[k] for k in keys if k in extra} or None


def as_conversation(runner: Runner, messages: list[dict], tools, sampling: Sampling, notes: list[str],
                    memory_name: str | None, prefix: list[int] | None):
    """(a `Conversation` holding the request's turns and long input, the question) when the
    request has a long input the reading policy reads (a user message past what the model reads
    whole, or an attached memory), as `chat` would read it; None otherwise (the messages are
    read as they are). Requests with tool messages or an assistant turn to continue are not."""
    from longchat.chat.conversation import Conversation, Turn

    limit = reading.long_message_limit(runner)
    if limit is None or any(m["role"] not in ("system", "user", "assistant") for m in messages):
        return None
    if messages[-1]["role"] != "user":
        return None
    if not memory_name and not any(m["role"] == "user" and len(m["content"]) > limit for m in messages):
        return None  # >= 1 character a token: no message is long
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system") or None
    if memory_name and system:  # a memory is encoded without one: `after_memory` places it after the memory
        return None
    conversation = Conversation(runner, system, sampling, note=notes.append)
    conversation.tools = tools
    if memory_name:
        conversation.memory, conversation.memory_name = Memory.open(named_root() / memory_name), memory_name
        conversation.memory_ids = prefix
    pending = None
    for m in messages[:-1]:
        if m["role"] == "user":
            text = conversation.take_long_message(m["content"])
            pending = text if pending is None else pending + "\n\n" + text
        elif m["role"] == "assistant":
            conversation.turns.append(Turn(pending or "", m["content"]))
            pending = None
    question = conversation.take_long_message(messages[-1]["content"])
    if pending is not None:
        question = pending + "\n\n" + question
    if not (memory_name or conversation.documents):  # no message was long after all: read as they are
        return None
    return conversation, question


def _last_user(messages: list[dict]) -> int:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i]["role"] == "user":
            if not messages[i]["content"].strip():
                raise RequestError(400, "the last user message is empty", param=f"messages.{i}.content",
                                   code="invalid_value")
            return i
    raise RequestError(400, "the messages hold no user message", param="messages", code="invalid_value")


def _question(text: str) -> str | None:
    """The question in a long message (its last paragraph, without the "Question:" of an `ask`
    frame), for strategies that retrieve by its words, as `ask` gives them its question; None
    for a short message (the text of the prompt's end stands for it)."""
    tail = text.rsplit("\n\n", 1)[-1].strip()
    tail = tail.removeprefix(QUESTION.format(question="").strip()).strip()
    return tail if len(text) > 2000 and 0 < len(tail) <= 1000 else None


def after_memory(tokenizer, messages: list[dict], tools: list[dict] | None = None) -> list[int]:
    """The ids that follow an attached memory: the first user message reads like an `ask`
    question after the documents (system text first; the memory was encoded without one)."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    first = next(i for i, m in enumerate(rest) if m["role"] == "user")
    rest[first]["content"] = (PREAMBLE + SENTINEL + (f"\n\n{system}" if system else "")
                              + QUESTION.format(question=rest[first]["content"]))
    after = render_chat(tokenizer, rest, tools).split(SENTINEL, 1)[1]
    return tokenizer.encode(after, add_special_tokens=False)


def fit(runner: Runner, prompt_tokens: int, sampling: Sampling, *, requested: bool, notes: list[str]) -> Sampling:
    """Sampling whose reply fits the window after the prompt; a prompt that does not fit is
    refused (never cut), naming the limit and a profile that would take it."""
    window = runner.window
    if prompt_tokens + sampling.max_new_tokens <= window:
        return sampling
    room = window - prompt_tokens
    if not requested and room >= 1:
        notes.append(f"max_tokens lowered to {room:,}: what is left of the window ({window:,} tokens of profile "
                     f"'{runner.profile.name}') after the prompt")
        return replace(sampling, max_new_tokens=room)
    need = prompt_tokens + sampling.max_new_tokens
    taker = profile_that_takes(need, runner)
    hint = (f"; profile '{taker}' takes it (start the server with -p {taker}, or send "
            f"{{\"longchat\": {{\"profile\": \"{taker}\"}}}})") if taker else ""
    raise RequestError(400, f"the prompt is {prompt_tokens:,} tokens; with max_tokens={sampling.max_new_tokens:,} "
                       f"that exceeds the window ({window:,} tokens) of profile '{runner.profile.name}'{hint}",
                       param="messages", code="context_length_exceeded")


def profile_that_takes(n_tokens: int, runner: Runner) -> str | None:
    """A shipped profile whose window holds `n_tokens` on the loaded model (auto first)."""
    for name in ("auto", "infllm", "self-extend"):
        if name == runner.profile.name:
            continue
        try:
            prof = load_profile(name)
        except ConfigError:
            continue
        if (prof.context.window or runner.model.cfg.max_position_embeddings) >= n_tokens:
            return name
    return None


def tool_calls_in(text: str, tools: list[dict]) -> list[dict] | None:
    """The reply as OpenAI `tool_calls` when it is a call of one of `tools` (read by the session
    functions' lenient parser), else None."""
    from longchat.chat.functions import CallError, parse_call

    try:
        call = parse_call(text)
    except CallError:
        return None
    names = {(t.get("function") or {}).get("name") for t in tools}
    if call is None or call.name not in names:
        return None
    return [{"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
             "function": {"name": call.name, "arguments": json.dumps(call.arguments)}}]
