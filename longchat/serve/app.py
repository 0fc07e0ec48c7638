"""The HTTP side: Starlette routes, the API key, the body cap, errors as OpenAI error objects,
the access log and server-sent events. Nothing here touches the model: requests become `Job`s
for the `Worker`, and what the model thread reports comes back through each job's queue.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import sys
import time
from typing import AsyncIterator, Callable

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from longchat.errors import ConfigError, EnvError, InputError, LongchatError, ModelError, StoreError
from longchat.runtime.generate import Cancelled
from longchat.serve import schema
from longchat.serve.completion import Completer, Result
from longchat.serve.schema import RequestError
from longchat.serve.worker import Job, Worker

Log = Callable[[str], None]


def as_request_error(e: BaseException) -> RequestError:
    """The one place that maps longchat's errors (and anything else) to HTTP statuses."""
    if isinstance(e, RequestError):
        return e
    if isinstance(e, Cancelled):
        return RequestError(503, "the reply was cancelled: the server is shutting down", code="cancelled")
    message = str(e)
    if isinstance(e, (InputError, ConfigError)):
        return RequestError(400, message, code="invalid_value")
    if isinstance(e, StoreError):  # a session or memory busy, damaged or made with other settings
        return RequestError(409, message, code="conflict")
    if isinstance(e, (ModelError, EnvError, LongchatError)):
        return RequestError(500, message)
    return RequestError(500, f"internal error: {type(e).__name__}: {e}")


def error_response(e: BaseException) -> JSONResponse:
    err = as_request_error(e)
    return JSONResponse(schema.error_body(str(err), err.type, err.param, err.code), status_code=err.status,
                        headers=err.headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 past `limit` bytes (before reading it, when its length is said)."""
    too_big = RequestError(413, f"the request body is over {limit / 2**20:g} MB (--max-body-mb)",
                           code="body_too_large")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_big
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > limit:
            raise too_big
    return bytes(body)


async def next_event(job: Job, request: Request) -> tuple[str, object]:
    """The job's next event; a client that leaves meanwhile cancels the job."""
    while True:
        try:
            return await asyncio.wait_for(job.events.get(), timeout=0.5)
        except TimeoutError:
            if await request.is_disconnected():
                job.cancel("the client went away")
                raise ClientDisconnect() from None


def sse(data: dict | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


class Server:
    """The routes, over one `Completer` (the model thread's work) and its `Worker`."""

    def __init__(self, completer: Completer, worker: Worker, *, api_key: str | None = None,
                 max_body: int = 32 * 2**20, log: Log | None = None):
        self.completer, self.worker = completer, worker
        self.api_key, self.max_body = api_key, max_body
        self.log = log or (lambda line: print(f"longchat: {line}", file=sys.stderr, flush=True))

    def app(self) -> Starlette:
        routes = [Route("/health", self.health), Route("/v1/models", self.models),
                  Route("/v1/models/{model_id:path}", self.model),
                  Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
                  Route("/tokenize", self.tokenize, methods=["POST"])]

        async def http_error(request: Request, e: HTTPException) -> Response:
            return error_response(RequestError(e.status_code, f"{request.method} {request.url.path}: {e.detail}",
                                               code="not_found" if e.status_code == 404 else None))

        async def any_error(request: Request, e: Exception) -> Response:
            return error_response(e)

        # RequestError and LongchatError are answered here; any other exception is a bug: answered
        # the same way, and logged by uvicorn with its traceback.
        app = Starlette(routes=routes, exception_handlers={HTTPException: http_error, RequestError: any_error,
                                                           LongchatError: any_error, Exception: any_error})
        return AccessLog(Gate(app, self.api_key), self.log)

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "stopping" if self.worker.stopping else "ok",
                             "model": self.completer.model_id, "running": self.worker.running is not None,
                             "waiting": self.worker.waiting})

    async def models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [self._model(m) for m in self.completer.model_ids()]})

    async def model(self, request: Request) -> Response:
        wanted = request.path_params["model_id"]
        if wanted not in self.completer.model_ids():
            raise RequestError(404, f"model {wanted!r} not found", param="model", code="model_not_found")
        return JSONResponse(self._model(wanted))

    def _model(self, model_id: str) -> dict:
        # max_model_len: vLLM's field, which clients (longchat's own remote engines) read the window from.
        return {"id": model_id, "object": "model", "created": 0, "owned_by": "longchat",
                "max_model_len": self.completer.window}

    async def tokenize(self, request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        body = await read_body(request, self.max_body)
        try:
            parsed = json.loads(body)
        except ValueError:
            raise RequestError(400, "the body is not JSON") from None
        return JSONResponse(await run_in_threadpool(self.completer.tokenize, parsed))

    async def chat_completions(self, request: Request) -> Response:
        req = schema.parse_request(await read_body(request, self.max_body))
        memory = self.completer.memory_for(req)
        job = Job(req, req.model, memory, asyncio.get_running_loop())
        self.worker.submit(job)
        try:
            kind, value = await next_event(job, request)  # waits its turn; errors in the prompt come first
            if kind == "error":
                raise as_request_error(value)
            if req.stream:
                return StreamingResponse(self._stream(job, request), media_type="text/event-stream",
                                         headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
            while kind != "done":
                kind, value = await next_event(job, request)
                if kind == "error":
                    raise as_request_error(value)
        except ClientDisconnect:
            return Response(status_code=499)
        except BaseException:
            job.cancel("the request failed")
            raise
        self._count(request, value)
        return JSONResponse(schema.completion(schema.completion_id(), req.model, value))

    async def _stream(self, job: Job, request: Request) -> AsyncIterator[str]:
        """The reply as `chat.completion.chunk` events, ending with `data: [DONE]`. A client that
        leaves cancels the stream's task, and with it the job."""
        req, cid, created = job.request, schema.completion_id(), int(time.time())
        usage = bool(req.stream_options and req.stream_options.include_usage)

        def chunk(**kw) -> str:
            return sse(schema.chunk(cid, req.model, created, with_usage=usage, **kw))

        streamed = False
        try:
            yield chunk(delta={"role": "assistant", "content": ""})
            while True:
                kind, value = await job.events.get()
                if kind == "progress":
                    yield f": reading {value}%\n\n"
                elif kind == "text":
                    streamed = True
                    yield chunk(delta={"content": value})
                elif kind == "done":
                    result: Result = value
                    if result.tool_calls:
                        yield chunk(delta={"tool_calls": [{"index": i, **c} for i, c in enumerate(result.tool_calls)]})
                    elif result.text and not streamed:  # tools given, or memory functions: the reply at once
                        yield chunk(delta={"content": result.text})
                    yield chunk(finish_reason=result.finish_reason)
                    if usage:
                        yield chunk(usage_=schema.usage(result.prompt_tokens, result.completion_tokens,
                                                        result.cached_tokens, result.info.get("reading")))
                    self._count(request, result)
                    break
                elif kind == "error":
                    err = as_request_error(value)
                    yield sse(schema.error_body(str(err), err.type, err.param, err.code))
                    break
            yield sse("[DONE]")
        finally:
            job.cancel("the client went away")  # nothing left to cancel once it is done

    def _count(self, request: Request, result: Result) -> None:
        request.state.tokens = (result.prompt_tokens, result.completion_tokens)


class Gate:
    """ASGI middleware: with an API key, every route but /health needs `Authorization: Bearer KEY`."""

    def __init__(self, app, api_key: str | None):
        self.app, self.api_key = app, api_key

    async def __call__(self, scope, receive, send):
        if self.api_key and scope["type"] == "http" and scope["path"] != "/health":
            given = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.api_key}".encode()):
                response = error_response(RequestError(401, "missing or wrong API key (Authorization: Bearer KEY)",
                                                       type="authentication_error", code="invalid_api_key"))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class AccessLog:
    """ASGI middleware: one line per request on stderr once its response is sent: method, path,
    status, prompt and completion tokens, seconds."""

    def __init__(self, app, log: Log):
        self.app, self.log = app, log

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [0]

        async def sending(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            prompt, completion = scope.get("state", {}).get("tokens", ("-", "-"))
            self.log(f'{scope["method"]} {scope["path"]} {status[0] or 499} prompt={prompt} completion={completion} '
                     f'{time.perf_counter() - start:.2f}s')


class Uvicorn(uvicorn.Server):
    """uvicorn, quiet (the access log is ours), where a signal cancels the model's work at once
    and the process then ends with 0: uvicorn raises a caught signal again once it is done,
    and a SIGTERM would end it with 143."""

    def __init__(self, app, on_signal: Callable[[], None]):
        super().__init__(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                        timeout_graceful_shutdown=30))
        self.on_signal = on_signal

    def handle_exit(self, sig, frame) -> None:
        if self.should_exit:
            self.force_exit = True  # a second signal: stop waiting for open connections
        self.should_exit = True
        self.on_signal()
