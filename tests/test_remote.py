"""`--model openai:URL`: longchat's long-input machinery in front of an OpenAI-compatible engine.

The engine is `longchat serve` running the bundled model as a real subprocess on 127.0.0.1,
with a bounded window (`-p full --set context.window=2048`, reported as vLLM's
`max_model_len`). A small proxy in this process sits in front of it when a test needs an engine
that reports no window and has no /tokenize (like ollama), answers 429, or drops a stream
mid-answer. Every request goes to loopback and asks for few tokens.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import CLI, one_line_error
from served import Served

WINDOW = 2048
FACT = "The launch code for the blue rocket is Z9-4471."


@pytest.fixture(scope="module")
def remote_home(tmp_path_factory, default_model_dir) -> Path:
    root = tmp_path_factory.mktemp("remote") / "home"
    (root / "cache" / "models").mkdir(parents=True)
    os.symlink(default_model_dir, root / "cache" / "models" / default_model_dir.name)
    return root


@pytest.fixture(scope="module")
def cli(remote_home) -> CLI:
    return CLI(remote_home)


@pytest.fixture(scope="module")
def engine(cli):
    served = Served(cli, "-p", "full", "--set", f"context.window={WINDOW}")
    yield served
    served.stop()
    assert not [line for line in served.lines if "Traceback" in line or "internal error" in line]


class Proxy:
    """An engine in front of `upstream` on loopback. `hide`: no window in /v1/models, no /props
    and no /tokenize (what ollama offers). `mode`: "forward", "429" (chat requests answered
    429 Too Many Requests) or "drop" (a streamed reply cut after a few chunks, the connection closed)."""

    def __init__(self, upstream: Served, hide: bool = False):
        self.upstream, self.hide, self.mode = upstream, hide, "forward"
        self.hits: Counter = Counter()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                proxy.handle(self)

            def do_POST(self):
                proxy.handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path
        self.hits[path] += 1
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        if self.hide and path in ("/tokenize", "/props"):
            return self._send(h, 404, b'{"error": {"message": "not found"}}')
        if self.mode == "429" and path.endswith("/chat/completions"):
            return self._send(h, 429, b'{"error": {"message": "busy", "type": "rate_limit"}}', {"Retry-After": "0"})
        conn = http.client.HTTPConnection(self.upstream.host, int(self.upstream.port), timeout=120)
        conn.request(h.command, path, body=body or None, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        if response.getheader("Content-Type", "").startswith("text/event-stream"):
            h.send_response(response.status)
            h.send_header("Content-Type", "text/event-stream")
            h.end_headers()
            chunks = 0
            for line in response:
                h.wfile.write(line)
                h.wfile.flush()
                chunks += line.startswith(b"data:")
                if self.mode == "drop" and chunks >= 4:
                    break  # the engine goes away: the connection closes with the reply half sent
            conn.close()
            h.close_connection = True
            return
        data = response.read()
        conn.close()
        if self.hide and path == "/v1/models":
            listed = json.loads(data)
            for m in listed["data"]:
                m.pop("max_model_len", None)
            data = json.dumps(listed).encode()
        self._send(h, response.status, data)

    @staticmethod
    def _send(h, status: int, data: bytes, headers: dict | None = None) -> None:
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)


@pytest.fixture(scope="module")
def proxy(engine):
    p = Proxy(engine)
    yield p
    p.close()


@pytest.fixture
def bare(engine):
    """An engine that reports no window and has no /tokenize."""
    p = Proxy(engine, hide=True)
    yield p
    p.close()


def remote(url: str) -> str:
    return f"openai:{url}/v1"


def stats_of(err: str) -> dict:
    return json.loads([line for line in err.splitlines() if line.startswith("{")][-1])


def haystack(tokens_wanted: int, fact: str | None = FACT) -> str:
    """Natural text (standard-library docstrings) of about `tokens_wanted` tokens, the fact in the middle."""
    from longchat.bench.realtext import docstrings

    text = docstrings()[: tokens_wanted * 4]
    if fact:
        mid = text.index("\n", len(text) // 2)
        text = text[:mid] + "\n" + fact + "\n" + text[mid:]
    return text


# ---------------------------------------------------------------- ask


def test_a_fitting_input_is_read_whole_and_answered_as_the_local_model_does(cli, engine, tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_text("Notes from the launch meeting.\n" + FACT + "\nThe weather was fine.\n")
    question = "What is the launch code for the blue rocket?"
    code, out, err = cli("ask", "--model", remote(engine.url), doc, question, "-n", "24", "--stats")
    assert code == 0, err
    assert "Z9-4471" in out
    assert f"window {WINDOW:,} tokens from the engine's /v1/models (max_model_len)" in err
    assert "tokens counted by the engine (/tokenize)" in err and "the engine reads the whole input" in err
    stats = stats_of(err)
    assert stats["device"] == "remote" and stats["read"] == "whole" and stats["document_tokens_exact"] is True
    assert stats["remote_prompt_tokens"] > 20 and 0 < stats["remote_completion_tokens"] <= 24
    assert stats["remote_wait_s"] > 0
    # The same messages through the engine's template: the same greedy reply as the local model.
    code, local, err = cli("ask", "-p", "full", doc, question, "-n", "24")
    assert code == 0, err
    assert local.strip() == out.strip()


def test_past_the_window_auto_sends_the_passages_that_match_the_question(cli, engine, tmp_path):
    doc = tmp_path / "long.txt"
    doc.write_text(haystack(8000, fact="The backup servers are housed in Tromsø."))
    code, out, err = cli("ask", "--model", remote(engine.url), doc, "Where are the backup servers housed?",
                         "-n", "24", "--stats")
    assert code == 0, err
    assert "Tromsø" in out
    assert "the question's words match the" in err and "sending its best" in err
    stats = stats_of(err)
    assert stats["read"] == "passages" and stats["document_tokens"] > WINDOW
    assert stats["remote_prompt_tokens"] + 24 <= WINDOW


def test_chat_about_a_file_past_the_window_reads_what_ask_reads(cli, engine, tmp_path):
    doc = tmp_path / "long.txt"
    doc.write_text(haystack(8000, fact="The backup servers are housed in Tromsø."))
    code, out, err = cli("chat", "--model", remote(engine.url), "--file", doc, "-n", "24", "--stats",
                         input="Where are the backup servers housed?\n")
    assert code == 0, err
    assert "Tromsø" in out
    assert "the question's words match the" in err and "sending its best" in err
    stats = stats_of(err)
    assert stats["read"] == "passages" and stats["input_tokens"] > WINDOW and stats["read_tokens"] < WINDOW


def test_past_the_window_auto_compresses_when_no_passage_matches(cli, bare, tmp_path):
    doc = tmp_path / "long.txt"  # a small window (the profile's: this engine reports none) keeps it quick
    doc.write_text(haystack(500))
    code, out, err = cli("ask", "--model", remote(bare.url), "--set", "context.window=384", doc,
                         "What is the main topic of the text?", "-n", "16", "--stats")
    assert code == 0, err  # about the whole input: no passage and no nearest lines, as for a local model
    assert "compressing it question-aware with the local compressor" in err and "compressed " in err
    stats = stats_of(err)
    assert stats["read"] == "compressed" and stats["document_tokens"] > 384
    assert stats["remote_prompt_tokens"] + 16 <= 384


def test_other_profiles_refuse_an_input_past_the_window_or_keep_its_start(cli, engine, tmp_path):
    doc = tmp_path / "long.txt"
    doc.write_text(haystack(3000))
    code, out, err = cli("ask", "-p", "full", "--model", remote(engine.url), doc, "What is it about?")
    assert code == 3 and one_line_error(err) and out == ""
    assert f"the engine's window ({WINDOW:,}) leaves room for" in err and "--profile auto" in err
    code, out, err = cli("ask", "-p", "full", "--truncate", "--model", remote(engine.url), doc, "What is it about?",
                         "-n", "8", "--stats")
    assert code == 0, err
    assert "warning: the input is" in err and "(--truncate)" in err
    assert stats_of(err)["read"] == "truncated"


def test_kv_strategies_memories_and_bad_engines_are_refused_clearly(cli, engine, tmp_path, monkeypatch):
    from longchat import api, memory
    from longchat.errors import ConfigError, ModelError

    doc = tmp_path / "doc.txt"
    doc.write_text(FACT)
    url = remote(engine.url)
    code, _, err = cli("ask", "-p", "infllm", "--model", url, doc, "What is the code?")
    assert code == 4 and one_line_error(err)
    assert "works inside the local model's attention" in err and "--profile auto" in err
    code, _, err = cli("ask", "--model", "openai:http://127.0.0.1:9/v1", "--set", "remote.retries=0", doc, "q")
    assert code == 1 and one_line_error(err) and "cannot reach the engine at http://127.0.0.1:9/v1" in err
    code, _, err = cli("serve", "--model", url)
    assert code == 2 and "serve runs a local model" in err
    # The rest in-process (the same errors the CLI prints as one line).
    monkeypatch.setenv("LONGCHAT_HOME", str(cli.home))
    runner = api.open_runner("auto", url)
    with pytest.raises(ConfigError, match="remote engine"):
        api.ask(runner, [], "What is the code?", memory="book")
    with pytest.raises(ConfigError, match="remote engine"):
        memory.ingest(runner, [str(doc)])
    with pytest.raises(ConfigError, match=r"openai:http\(s\)://HOST"):
        api.open_runner("auto", "openai:localhost")
    with pytest.raises(ModelError, match="has no model 'no-such-model'; it serves: "):
        api.open_runner("auto", f"{url}#no-such-model")


def test_the_profile_window_and_local_estimates_when_the_engine_reports_neither(cli, bare, tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_text(FACT)
    code, out, err = cli("ask", "--model", remote(bare.url), "-p", "full", "--set", "context.window=1024", doc,
                         "What is the launch code for the blue rocket?", "-n", "24", "--stats")
    assert code == 0, err
    assert "Z9-4471" in out
    assert "window 1,024 tokens from the profile's context.window" in err
    assert "estimated locally (x1.25; the engine has no /tokenize)" in err
    assert stats_of(err)["token_counts"].startswith("estimated") and stats_of(err)["document_tokens_exact"] is False
    assert bare.hits["/tokenize"] >= 1 and bare.hits["/props"] == 1  # asked, found missing
    code, out, err = cli("ask", "--model", remote(bare.url), doc, "What is the code?", "-n", "4")
    assert code == 0, err
    assert "window 8,192 tokens from a default: the engine reports none (--set context.window=N" in err


# ---------------------------------------------------------------- summarize, compress


def test_summarize_cuts_chunks_that_fit_the_engine(cli, proxy, tmp_path):
    doc = tmp_path / "long.txt"
    doc.write_text(haystack(3200, fact=None))
    before = proxy.hits["/v1/chat/completions"]
    code, out, err = cli("summarize", "--model", remote(proxy.url), doc, "-n", "24", "--stats")
    assert code == 0, err
    assert out.strip()
    assert proxy.hits["/v1/chat/completions"] - before >= 3  # chunks and a merge, each inside the window
    stats = stats_of(err)
    assert stats["remote_prompt_tokens"] > 0
    # Every reply the engine gave is counted by how it ended (OpenAI's finish_reason: stop -> eos).
    assert sum(stats["stops"].values()) == proxy.hits["/v1/chat/completions"] - before
    assert set(stats["stops"]) <= {"eos", "length"}, stats["stops"]


def test_compress_for_an_engine_fits_its_window_and_runs_locally(cli, engine, bare, tmp_path):
    doc = tmp_path / "long.txt"
    doc.write_text(haystack(450))  # a small window keeps it quick
    code, out, err = cli("compress", "--model", remote(bare.url), "--set", "context.window=384", "--set",
                         "generation.max_new_tokens=64", doc, "-q", "What is the launch code?")
    assert code == 0, err
    assert "what fits the engine's window (384 of its tokens) with a 64-token reply" in err
    count = engine.request("POST", "/tokenize", {"prompt": out})[2]["count"]
    assert 100 < count and count + 64 <= 384 < engine.request("POST", "/tokenize", {"prompt": doc.read_text()})[2]["count"]
    code, _, err = cli("compress", "--model", "default", doc)
    assert code == 2 and "compress --model takes an engine" in err


# ---------------------------------------------------------------- sessions, failures


def test_a_session_through_the_engine_survives_a_restart_and_the_engine_going_away(cli, proxy):
    url = remote(proxy.url)
    code, out, err = cli("chat", "--session", "trip", "--model", url, "-n", "24",
                         input="My sister Ilse lives in Ghent.\n")
    assert code == 0, err
    assert "session 'trip': new" in err and out.strip()
    code, out, err = cli("chat", "--session", "trip", "--model", url, "-n", "24", input="Where does Ilse live?\n")
    assert code == 0, err
    assert "resumed, 2 messages stored" in err
    # functions paging asks the engine whether it takes `tools` (this model's template has no tool
    # format: 400), then describes the functions in the prompt instead.
    before = proxy.hits["/v1/chat/completions"]
    code, out, err = cli("chat", "--session", "fn", "--paging", "functions", "--model", url, "-n", "24",
                         input="Remember that my locker is number 12.\n")
    assert code == 0, err
    assert out.strip() and proxy.hits["/v1/chat/completions"] - before >= 2  # the probe, then the turn
    proxy.mode = "drop"
    try:
        code, out, err = cli("chat", "--session", "trip", "--model", url, "-n", "64",
                             input="Tell me a long story about a lighthouse keeper.\n")
    finally:
        proxy.mode = "forward"
    assert code == 1 and one_line_error(err)
    assert f"the engine at {proxy.url}/v1 went away mid-answer" in err
    code, shown, err = cli("sessions", "show", "trip")
    assert code == 0, err
    assert "user: My sister Ilse lives in Ghent." in shown and "user: Where does Ilse live?" in shown
    assert "user: Tell me a long story about a lighthouse keeper." in shown  # the user's message is kept


def test_429_is_retried_with_backoff_then_reported(cli, proxy, tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_text(FACT)
    proxy.mode = "429"
    before = proxy.hits["/v1/chat/completions"]
    try:
        code, out, err = cli("ask", "--model", remote(proxy.url), "--set", "remote.retries=2", doc, "What is the code?")
    finally:
        proxy.mode = "forward"
    assert code == 1 and one_line_error(err) and out == ""
    assert "answered 429 Too Many Requests" in err and "after 2 retries" in err
    assert proxy.hits["/v1/chat/completions"] - before == 3


def test_tokenize_and_the_window_as_vllm_reports_them(engine, default_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(default_model_dir)
    status, _, found = engine.request("POST", "/tokenize", {"prompt": FACT, "add_special_tokens": False})
    assert status == 200 and found["tokens"] == tok.encode(FACT, add_special_tokens=False)
    assert found["count"] == len(found["tokens"]) and found["max_model_len"] == WINDOW
    assert engine.get("/v1/models")["data"][0]["max_model_len"] == WINDOW
    status, _, found = engine.request("POST", "/tokenize", {"prompt": 3})
    assert status == 400 and found["error"]["param"] == "prompt"


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_names_where_the_key_comes_from(cli, tmp_path, status):
    """Issue 42: a 401 gave no hint about the key. An engine on loopback that refuses every request."""
    hits = Counter()

    class Refuse(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            hits[self.headers.get("Authorization")] += 1
            body = json.dumps({"error": {"message": "Invalid API key", "type": "invalid_request_error"}}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    doc = tmp_path / "doc.txt"
    doc.write_text(FACT)
    url = remote(f"http://127.0.0.1:{server.server_address[1]}")
    try:
        code, out, err = cli("ask", "--model", url, doc, "What is the code?", timeout=120,
                             OPENAI_API_KEY="", LONGCHAT_REMOTE_API_KEY="")
        assert code == 1 and one_line_error(err) and out == "", err
        assert f"answered {status}" in err and "Invalid API key" in err
        assert "set LONGCHAT_REMOTE_API_KEY (or OPENAI_API_KEY) to the engine's key" in err
        code, out, err = cli("ask", "--model", url, doc, "What is the code?", timeout=120,
                             OPENAI_API_KEY="sk-wrong", LONGCHAT_REMOTE_API_KEY="")
        assert code == 1 and "refused the key in OPENAI_API_KEY" in err, err
        assert hits["Bearer sk-wrong"] >= 1
    finally:
        server.shutdown()
        server.server_close()
