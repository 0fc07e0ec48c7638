"""`longchat serve` in a subprocess, for the tests that talk to it (test_serve, test_remote)."""

from __future__ import annotations

import http.client
import json
import re
import signal
import subprocess
import threading
import time

import openai

from conftest import CLI


class Served:
    """One `longchat serve` process: its URL (read from its first line), its stderr lines (drained
    by a thread, so a full pipe never blocks it) and clients for it."""

    def __init__(self, cli: CLI, *args: str, api_key: str | None = None):
        self.api_key = api_key
        self.proc = cli.popen("serve", "--port", "0", *args)
        self.lines: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()
        deadline = time.monotonic() + 180
        while not (found := [m for line in self.lines if (m := re.search(r"at (http://\S+)/v1", line))]):
            assert self.proc.poll() is None and time.monotonic() < deadline, "\n".join(self.lines)
            time.sleep(0.1)
        self.url = found[0].group(1)
        self.host, self.port = self.url.removeprefix("http://").rsplit(":", 1)
        while self.request("GET", "/health")[0] != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        self.model = self.get("/v1/models")["data"][0]["id"]

    def _drain(self) -> None:
        for raw in self.proc.stderr:
            self.lines.append(raw.decode("utf-8", "replace").rstrip())

    def client(self, **kw) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=kw.pop("api_key", self.api_key or "none"),
                             timeout=120, max_retries=0, **kw)

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, int(self.port), timeout=120)

    def request(self, method: str, path: str, body: bytes | dict | None = None, headers: dict | None = None):
        """(status, headers, parsed JSON or raw bytes) of one plain HTTP request."""
        if isinstance(body, dict):
            body = json.dumps(body).encode()
        headers = {**({"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}), **(headers or {})}
        conn = self.connection()
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        try:
            data = json.loads(data)
        except ValueError:
            pass
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data

    def get(self, path: str):
        status, _, data = self.request("GET", path)
        assert status == 200, data
        return data

    def open_stream(self, body: dict) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """A streaming request, its response open to be read line by line."""
        conn = self.connection()
        headers = {"Content-Type": "application/json",
                   **({"Authorization": f"Bearer {self.api_key}"} if self.api_key else {})}
        conn.request("POST", "/v1/chat/completions", body=json.dumps({**body, "stream": True}), headers=headers)
        response = conn.getresponse()
        assert response.status == 200
        return conn, response

    def logged(self, text: str, timeout: float = 10) -> bool:
        """Whether the server's log shows a line holding `text` (the access line is written after
        the response: it may come a moment after the client has its reply)."""
        end = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            if time.monotonic() > end:
                return False
            time.sleep(0.05)
        return True

    def wait_idle(self, timeout: float = 30) -> float:
        """Seconds until the model is idle and nobody waits."""
        start = time.monotonic()
        while (h := self.get("/health"))["running"] or h["waiting"]:
            assert time.monotonic() - start < timeout, h
            time.sleep(0.05)
        return time.monotonic() - start

    def stop(self, sig=signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
