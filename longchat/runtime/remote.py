"""A model behind an OpenAI-compatible engine: `--model openai:BASE_URL[#NAME]`.

vLLM, SGLang, llama-server, ollama and `longchat serve` all speak OpenAI's chat completions
API. The engine generates; longchat reads the files, compresses, retrieves and pages sessions
locally, and sends the engine only what fits its window (see `api.ask` and docs/scaling.md).

What the engine tells us, when it can:
- its window: vLLM (and `longchat serve`) list `max_model_len` in `GET /v1/models`;
  llama-server reports `n_ctx` in `GET /props`. Else the profile's `context.window`.
- token counts: `POST /tokenize` (vLLM, llama-server, `longchat serve`). Else a conservative
  estimate from a local tokenizer (x `ESTIMATE_RATIO`), stated in `--stats`.

Every request streams, retries 429 and 5xx with backoff (the `openai` client's own retries,
which honour Retry-After), and fails with a line that names the engine.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable

from longchat.errors import ConfigError, LongchatError, ModelError
from longchat.runtime.generate import Cancelled, GenerationStats, Sampling

PREFIX = "openai:"
ESTIMATE_RATIO = 1.25   # remote tokens per local token assumed without /tokenize: tokenizers differ
                        # by ~+-20% on prose (a 32k vocabulary spends more tokens than a 128k one)
MEASURE_MARGIN = 1.05   # on a ratio measured with /tokenize: text differs from the sample
PER_MESSAGE = 8         # chat template tokens around one message (role markers, separators), generous
KEY_VARS = ("LONGCHAT_REMOTE_API_KEY", "OPENAI_API_KEY")
SAMPLE = ("The committee met on Tuesday, 14 March 2023, in the north wing of the library to review the "
          "budget. Three proposals were discussed: a new reading room, longer opening hours, and a digital "
          "archive of the town's newspapers from 1850 to 1990. def load(path):\n    return open(path).read()\n"
          "Error 0x7F3A at 12:04:55 - retrying connection to db-2.internal:5432 (attempt 3/5).")


class RemoteError(LongchatError):
    """The engine could not be reached, did not answer in time, refused, or went away."""


def is_remote(spec: str | None) -> bool:
    return bool(spec) and spec.startswith(PREFIX)


def parse_spec(spec: str) -> tuple[str, str | None]:
    """`openai:http://host:8000/v1#NAME` -> ("http://host:8000/v1", "NAME" or None)."""
    url, _, name = spec[len(PREFIX):].partition("#")
    url = url.strip().rstrip("/")
    if not re.fullmatch(r"https?://[^/\s]+(/\S*)?", url):
        raise ConfigError(f"--model {spec!r}: expected openai:http(s)://HOST[:PORT]/v1[#MODEL], "
                          f"e.g. openai:http://localhost:8000/v1")
    return url, (name.strip() or None)


def key_hint() -> str:
    """What an engine that refused the key (401, 403) is told: where the key comes from."""
    held = next((k for k in KEY_VARS if os.environ.get(k)), None)
    if held is None:
        return f"it wants an API key: set {KEY_VARS[0]} (or {KEY_VARS[1]}) to the engine's key"
    return f"it refused the key in {held}: check its value (read from {' then '.join(KEY_VARS)})"


def api_key() -> str:
    """The key from LONGCHAT_REMOTE_API_KEY or OPENAI_API_KEY; engines without one accept any."""
    return next((os.environ[k] for k in KEY_VARS if os.environ.get(k)), "none")


@dataclass
class Reply:
    text: str
    tool_calls: list[dict]
    finish: str
    prompt_tokens: int
    completion_tokens: int
    wait_s: float       # until the first token (or the whole reply without streaming)
    total_s: float


class RemoteModel:
    """One model of one engine: its name, window, token counter and the chat call.

    `tokenizer`: a local tokenizer (the bundled model's) for everything longchat does with
    tokens itself (chunking, passages, compression budgets); `ratio` converts its counts into
    the engine's tokens."""

    device = "remote"
    path = None
    decoder = None

    def __init__(self, spec: str, tokenizer, *, timeout: float = 600.0, retries: int = 3,
                 note: Callable[[str], None] = lambda m: None):
        import openai

        start = time.perf_counter()
        self.spec = spec
        self.base_url, wanted = parse_spec(spec)
        self.root = re.sub(r"/v1$", "", self.base_url)
        self.timeout, self.retries = timeout, retries
        self.tokenizer = tokenizer
        self.client = openai.OpenAI(base_url=self.base_url, api_key=api_key(), max_retries=retries, timeout=timeout)
        self.listed = self._models()
        ids = [m.get("id") for m in self.listed]
        if wanted is None and not ids:
            raise ModelError(f"the engine at {self.base_url} lists no models; name one: openai:{self.base_url}#MODEL")
        if wanted is not None and ids and wanted not in ids:
            raise ModelError(f"the engine at {self.base_url} has no model {wanted!r}; it serves: {', '.join(ids)}")
        self.model_id = wanted or ids[0]
        self.name = f"{self.model_id}@{self.base_url}"
        self.engine_window, self.window_source = self._window()
        self._tokenize: bool | None = None  # None: not tried yet
        self._tools: bool | None = None
        self.ratio, self.exact = self._ratio()
        self.load_s = time.perf_counter() - start

    # ------------------------------------------------------------ what the engine reports

    def _fail(self, e: BaseException, doing: str) -> RemoteError:
        import openai

        if isinstance(e, openai.APITimeoutError):
            return RemoteError(f"the engine at {self.base_url} did not answer {doing} within {self.timeout:.0f} s "
                               f"(--set remote.timeout=SECONDS to wait longer)")
        if isinstance(e, openai.APIConnectionError):
            cause = e.__cause__ or e
            return RemoteError(f"cannot reach the engine at {self.base_url} ({doing}): {_reason(cause)}")
        if isinstance(e, openai.RateLimitError):
            return RemoteError(f"the engine at {self.base_url} answered 429 Too Many Requests {doing}, also after "
                               f"{self.retries} retries with backoff; try again later (--set remote.retries=N)")
        if isinstance(e, openai.APIStatusError) and e.status_code in (401, 403):
            return RemoteError(f"the engine at {self.base_url} answered {e.status_code} {doing}: {_message(e)}; "
                               f"{key_hint()}")
        if isinstance(e, openai.APIStatusError):
            return RemoteError(f"the engine at {self.base_url} answered {e.status_code} {doing}: {_message(e)}")
        return RemoteError(f"the engine at {self.base_url} failed {doing}: {_reason(e)}")

    def _models(self) -> list[dict]:
        import openai

        try:
            return [m.model_dump() if hasattr(m, "model_dump") else dict(m) for m in self.client.models.list()]
        except openai.NotFoundError:
            return []  # some engines have no /v1/models: a #NAME is then needed
        except openai.OpenAIError as e:
            raise self._fail(e, "listing its models") from None

    def _get(self, path: str, body: dict | None = None) -> Any:
        """GET (or POST `body`) a JSON endpoint at the engine's root; None when it has none."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.root + path, data=data, method="GET" if body is None else "POST",
                                         headers={"Content-Type": "application/json",
                                                  "Authorization": f"Bearer {api_key()}"})
        try:
            with urllib.request.urlopen(request, timeout=min(self.timeout, 60)) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def _window(self) -> tuple[int | None, str]:
        for m in self.listed:
            if m.get("id") == self.model_id and isinstance(m.get("max_model_len"), int):
                return m["max_model_len"], "the engine's /v1/models (max_model_len)"
        props = self._get("/props")
        if isinstance(props, dict):
            n = props.get("n_ctx") or (props.get("default_generation_settings") or {}).get("n_ctx")
            if isinstance(n, int) and n > 0:
                return n, "the engine's /props (n_ctx)"
        return None, ""

    def count(self, text: str) -> tuple[int, bool]:
        """(tokens of `text` for the engine, exact?): its /tokenize when it has one."""
        if self._tokenize is not False:
            found = self._get("/tokenize", {"model": self.model_id, "prompt": text, "content": text,
                                            "add_special_tokens": False})
            if isinstance(found, dict) and ("count" in found or isinstance(found.get("tokens"), list)):
                self._tokenize = True
                return int(found["count"] if "count" in found else len(found["tokens"])), True
            self._tokenize = False
        return math.ceil(self.local_count(text) * ESTIMATE_RATIO), False

    def count_messages(self, messages: list[dict]) -> tuple[int, bool]:
        n, exact = self.count("\n".join(str(m.get("content") or "") for m in messages))
        return n + PER_MESSAGE * len(messages) + PER_MESSAGE, exact

    def local_count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def _ratio(self) -> tuple[float, bool]:
        """Engine tokens per local token: measured on a sample with /tokenize, else assumed."""
        n, exact = self.count(SAMPLE)
        if not exact:
            return ESTIMATE_RATIO, False
        return max(0.5, n / max(1, self.local_count(SAMPLE))) * MEASURE_MARGIN, True

    def supports_tools(self) -> bool:
        """Whether the engine takes OpenAI `tools` for this model (asked once, with a 1-token reply)."""
        if self._tools is None:
            import openai

            probe = {"type": "function", "function": {"name": "noop", "description": "Does nothing.",
                                                      "parameters": {"type": "object", "properties": {}}}}
            try:
                self.client.chat.completions.create(model=self.model_id, max_tokens=1, tools=[probe],
                                                    messages=[{"role": "user", "content": "hi"}])
                self._tools = True
            except openai.BadRequestError:
                self._tools = False
            except openai.OpenAIError as e:
                raise self._fail(e, "when asked whether it takes tools") from None
        return self._tools

    # ------------------------------------------------------------ a reply

    def chat(self, messages: list[dict], sampling: Sampling, on_text: Callable[[str], None] | None = None,
             tools: list[dict] | None = None, partial: Callable[[str], None] = lambda t: None) -> Reply:
        """The engine's reply to `messages`, streamed to `on_text` (whole at the end with `tools`).
        `partial(text so far)` after each delta: what was said when Ctrl-C or a failure cuts it."""
        import openai

        kwargs: dict[str, Any] = dict(model=self.model_id, messages=messages, max_tokens=sampling.max_new_tokens,
                                      temperature=sampling.temperature)
        if sampling.top_p < 1.0:
            kwargs["top_p"] = sampling.top_p
        if sampling.temperature > 0 and sampling.seed:
            kwargs["seed"] = sampling.seed
        start = time.perf_counter()
        if tools:
            try:
                r = self.client.chat.completions.create(tools=tools, tool_choice="auto", **kwargs)
            except openai.OpenAIError as e:
                raise self._fail(e, "to a chat request") from None
            choice = r.choices[0]
            calls = [{"name": c.function.name, "arguments": c.function.arguments}
                     for c in (choice.message.tool_calls or [])]
            text = choice.message.content or ""
            if text and on_text:
                on_text(text)
            took = time.perf_counter() - start
            usage = r.usage
            return Reply(text, calls, choice.finish_reason or "", getattr(usage, "prompt_tokens", 0) or 0,
                         getattr(usage, "completion_tokens", 0) or 0, took, took)
        text, finish, usage, first = "", "", None, None
        stream = None
        try:
            stream = self.client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kwargs)
            for chunk in stream:
                if getattr(chunk, "usage", None):
                    usage = chunk.usage
                for choice in chunk.choices or []:
                    delta = choice.delta.content if choice.delta else None
                    if delta:
                        first = first or time.perf_counter()
                        text += delta
                        partial(text)
                        if on_text:
                            on_text(delta)
                    finish = choice.finish_reason or finish
        except KeyboardInterrupt:
            raise
        except openai.OpenAIError as e:
            if text:
                raise RemoteError(f"the engine at {self.base_url} went away mid-answer after {len(text):,} "
                                  f"characters: {_reason(e.__cause__ or e)}") from None
            raise self._fail(e, "to a chat request") from None
        except Exception as e:  # the HTTP layer's own errors while reading the stream
            if type(e).__module__.split(".")[0] not in ("httpx", "httpx2", "httpcore", "httpcore2", "h11"):
                raise
            what = f"mid-answer after {len(text):,} characters" if text else "before answering"
            raise RemoteError(f"the engine at {self.base_url} went away {what}: {_reason(e)}") from None
        finally:
            if stream is not None:
                stream.close()  # also on Ctrl-C: the engine sees the client leave and stops generating
        end = time.perf_counter()
        if not finish:
            what = f"mid-answer after {len(text):,} characters" if text else "before answering"
            raise RemoteError(f"the engine at {self.base_url} went away {what} (the stream ended without a finish)")
        return Reply(text, [], finish, getattr(usage, "prompt_tokens", 0) or 0,
                     getattr(usage, "completion_tokens", 0) or 0, (first or end) - start, end - start)


def _message(e) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        msg = body.get("message") or (body.get("error") or {}).get("message") if isinstance(body.get("error"), dict) \
            else body.get("message")
        if msg:
            return str(msg).splitlines()[0]
    return str(getattr(e, "message", e)).splitlines()[0]


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return text or type(e).__name__


FINISH = {"stop": "eos", "length": "length", "tool_calls": "eos", "content_filter": "filtered"}


class RemoteEngine:
    """The `Engine` interface over a `RemoteModel`: `generate_text` takes the chat `messages`
    (the engine applies its own template; the local prompt ids are ignored), and `stats`
    holds the engine's token counts and the time spent waiting on it."""

    cached_ids: list[int] = []
    strategy = None

    def __init__(self, model: RemoteModel):
        self.model = model
        self.stats = GenerationStats()
        self.last_text = ""
        self.tool_calls: list[dict] = []
        self.on_note: Callable[[str], None] = lambda m: None

    def reset(self) -> None:
        """Nothing is held between requests here; the engine keeps its own prefix cache."""

    def generate_text(self, prompt_ids, sampling: Sampling, on_text=None, progress=None, question=None, *,
                      messages: list[dict] | None = None, tools: list[dict] | None = None, copy_guard=None,
                      on_note=None, should_stop: Callable[[], bool] | None = None) -> str:
        """(`copy_guard`, a local decoding constraint, has no remote equivalent and is not sent;
        `should_stop` is asked as the reply streams in, and True stops it with `Cancelled`.)"""
        if messages is None:
            raise ConfigError("this step works on the local model's tokens; a remote engine reads messages")
        import psutil

        self.last_text, self.tool_calls = "", []
        self.stats = GenerationStats(stop_reason="interrupted")
        started = time.perf_counter()
        estimate = None
        if progress:
            estimate = math.ceil(len(prompt_ids) * self.model.ratio) if prompt_ids else None
            if estimate:
                progress(0, estimate)

        def said(text: str) -> None:
            if should_stop is not None and should_stop():
                raise Cancelled()
            if progress and estimate and not self.last_text:
                progress(estimate, estimate)  # the first token: the engine has read the prompt
            self.last_text = text

        try:
            reply = self.model.chat(messages, sampling, on_text, tools=tools, partial=said)
        finally:
            self.stats.extra.update(remote=self.model.base_url, remote_model=self.model.model_id,
                                    remote_wait_s=round(time.perf_counter() - started, 3))
        self.tool_calls = reply.tool_calls
        text = reply.text
        if reply.tool_calls and not text.strip():
            call = reply.tool_calls[0]  # as text, the form the session functions' parser reads
            text = json.dumps({"name": call["name"], "arguments": _loads(call["arguments"])})
        self.last_text = text
        self.stats = GenerationStats(prompt_tokens=reply.prompt_tokens, new_tokens=reply.completion_tokens,
                                     prefill_s=reply.wait_s, decode_s=reply.total_s - reply.wait_s,
                                     stop_reason=FINISH.get(reply.finish, reply.finish),
                                     peak_rss_mb=round(psutil.Process().memory_info().rss / 2**20, 1),
                                     extra=self.stats.extra)
        self.stats.extra.update(remote_prompt_tokens=reply.prompt_tokens,
                                remote_completion_tokens=reply.completion_tokens,
                                remote_first_token_s=round(reply.wait_s, 3),
                                token_counts="engine /tokenize" if self.model.exact else
                                f"estimated (local tokenizer x {ESTIMATE_RATIO})")
        return text


def _loads(raw) -> Any:
    try:
        return json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return raw
