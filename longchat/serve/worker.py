"""The one thread that owns the model: jobs in arrival order, one at a time, a bounded queue.

torch and the Engine are used from this thread only. The asyncio side submits a `Job` and
reads what happens to it from the job's asyncio queue, fed through `loop.call_soon_threadsafe`:
("started", info) once its prompt is built and checked, ("progress", percent) while a long
prompt is read, ("text", delta) as the reply streams, then ("done", Result) or ("error", exc).
Setting `job.cancelled` (the client left, the server stops) ends it at the next token or
prefill chunk; a job still waiting is skipped when its turn comes.
"""

from __future__ import annotations

import asyncio
import math
import os
import queue
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from longchat.errors import LongchatError
from longchat.serve.schema import ChatRequest, RequestError


@dataclass
class Job:
    """One request on its way through the model thread."""

    request: ChatRequest
    model: str                      # the model id the client asked for
    memory: str | None              # from `MODEL@memory:NAME` or the longchat field
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    cancel_reason: str = ""
    notes: list[str] = field(default_factory=list)  # what longchat tells the client about this request

    @property
    def call(self) -> dict:
        """What every engine call for this request is given: where notes go, and when to stop."""
        return {"on_note": self.notes.append, "should_stop": self.cancelled.is_set}

    def emit(self, kind: str, value: Any = None) -> None:
        """Hand an event to the asyncio side (from any thread)."""
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))
        except RuntimeError:  # the loop is closed: the server is gone, nobody listens
            pass

    def cancel(self, reason: str) -> None:
        self.cancel_reason = self.cancel_reason or reason
        self.cancelled.set()


class Worker:
    """Runs `handle(job)` for each submitted job on one thread, in arrival order.

    At most `max_queue` jobs wait (the running one is not counted); one more is refused with
    429 and a Retry-After guessed from how long recent jobs took.
    """

    def __init__(self, handle: Callable[[Job], Any], max_queue: int = 16):
        self.handle = handle
        self.max_queue = max_queue
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._waiting: list[Job] = []
        self._lock = threading.Lock()
        self.running: Job | None = None
        self.stopping = False
        self.mean_s = 5.0  # a running mean of job times, for Retry-After
        self._thread = threading.Thread(target=self._run, name="longchat-model", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def submit(self, job: Job) -> None:
        with self._lock:
            if self.stopping:
                raise RequestError(503, "the server is shutting down", code="shutting_down")
            if len(self._waiting) >= self.max_queue:
                wait = max(1, math.ceil(self.mean_s * (len(self._waiting) + 1)))
                raise RequestError(429, f"{len(self._waiting)} requests are waiting for the model (--max-queue "
                                   f"{self.max_queue}); retry in about {wait} s", code="queue_full",
                                   type="rate_limit_error", headers={"Retry-After": str(wait)})
            self._waiting.append(job)
            self._jobs.put(job)

    def stop(self, reason: str = "the server is shutting down", wait: bool = True, timeout: float = 30.0) -> None:
        """Take no more jobs, cancel the waiting ones and the running one, end the thread
        (`wait`: and wait for it, at most `timeout` seconds)."""
        with self._lock:
            if not self.stopping:
                self.stopping = True
                self._jobs.put(None)
            for job in [*self._waiting, *([self.running] if self.running else [])]:
                job.cancel(reason)
        if wait and self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            with self._lock:
                self._waiting.remove(job)
                self.running = job
            if job.cancelled.is_set():
                job.emit("error", RequestError(499, job.cancel_reason or "cancelled", code="cancelled"))
            else:
                self._do(job)
            with self._lock:
                self.running = None

    def _do(self, job: Job) -> None:
        start = time.perf_counter()
        try:
            job.emit("done", self.handle(job))
        except BaseException as e:  # every failure goes back to its client; the thread lives on
            if isinstance(e, (SystemExit, GeneratorExit)):
                raise
            job.emit("error", e)
            if not isinstance(e, (LongchatError, KeyboardInterrupt)):  # a bug: one line, the traceback with --debug
                print(f"longchat: internal error in a request: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
                if os.environ.get("LONGCHAT_DEBUG") == "1":
                    traceback.print_exc(file=sys.stderr)
        finally:
            self.mean_s = 0.7 * self.mean_s + 0.3 * (time.perf_counter() - start)
