"""`longchat serve` as clients meet it: the real server in a subprocess on loopback, spoken to
with the `openai` package and with plain HTTP. Two servers for the whole file (one more start
would cost more than every test here): `server` (--max-queue 2, --max-body-mb 1) and `keyed`
(--api-key; it takes over a session from the first, and is stopped with SIGTERM at the end).
Replies are short (max_tokens 8-16) and greedy, so each request takes about a second.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import threading
import time
from pathlib import Path

import openai
import pytest

from conftest import CLI, one_line_error
from served import Served
from longchat.serve.completion import StopFound, StopScanner, tool_calls_in

KEY = "sekrit-test-key"
LIGHTHOUSE = Path(__file__).resolve().parents[1] / "longchat" / "samples" / "lighthouse.md"


@pytest.fixture(scope="module")
def serve_home(tmp_path_factory, default_model_dir) -> Path:
    """One LONGCHAT_HOME for every server of this file (sessions outlive a server), with the
    converted default model linked in."""
    root = tmp_path_factory.mktemp("serve") / "home"
    (root / "cache" / "models").mkdir(parents=True)
    os.symlink(default_model_dir, root / "cache" / "models" / default_model_dir.name)
    return root


@pytest.fixture(scope="module")
def cli(serve_home) -> CLI:
    return CLI(serve_home)


@pytest.fixture(scope="module")
def server(cli):
    served = Served(cli, "--max-queue", "2", "--max-body-mb", "1")
    yield served
    assert served.stop() == 0
    assert not [line for line in served.lines if "Traceback" in line or "internal error" in line]


@pytest.fixture(scope="module")
def keyed(cli):
    served = Served(cli, "--api-key", KEY, api_key=KEY)
    yield served
    served.stop()
    assert not [line for line in served.lines if "Traceback" in line or "internal error" in line]


@pytest.fixture(scope="module")
def tokenizer(default_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(default_model_dir)


HI = [{"role": "user", "content": "Say hello to Alma."}]


# ---------------------------------------------------------------- answers


def test_models_are_listed(server):
    client = server.client()
    assert [m.id for m in client.models.list().data] == [server.model]
    assert client.models.retrieve(server.model).id == server.model


def test_a_reply_with_usage_that_matches_the_tokenizer(server, tokenizer):
    from longchat.prompts import chat_ids

    reply = server.client().chat.completions.create(model=server.model, messages=HI, max_tokens=8)
    choice, usage = reply.choices[0], reply.usage
    assert choice.message.role == "assistant" and choice.message.content.strip()
    assert usage.prompt_tokens == len(chat_ids(tokenizer, HI))
    assert usage.completion_tokens == len(tokenizer.encode(choice.message.content, add_special_tokens=False)) <= 8
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert choice.finish_reason == ("length" if usage.completion_tokens == 8 else "stop")
    assert reply.model_extra["longchat"]["strategy"] == "full"  # auto, on a prompt that fits
    assert server.logged(f"POST /v1/chat/completions 200 prompt={usage.prompt_tokens} completion={usage.completion_tokens} ")


def test_streaming_gives_the_same_reply_and_ends_with_usage(server):
    client = server.client()
    whole = client.chat.completions.create(model=server.model, messages=HI, max_tokens=8)
    chunks = list(client.chat.completions.create(model=server.model, messages=HI, max_tokens=8, stream=True,
                                                 stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == \
        [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens == whole.usage.prompt_tokens - 1  # same prompt


def test_the_next_turn_reads_only_its_new_tokens(server):
    client = server.client()
    first = client.chat.completions.create(model=server.model, messages=[{"role": "user", "content": "Name a fruit."}],
                                           max_tokens=12)
    history = [{"role": "user", "content": "Name a fruit."},
               {"role": "assistant", "content": first.choices[0].message.content},
               {"role": "user", "content": "And a colour?"}]
    second = client.chat.completions.create(model=server.model, messages=history, max_tokens=4)
    assert second.usage.prompt_tokens_details.cached_tokens >= first.usage.prompt_tokens


def test_stop_sequences_cut_the_reply(server):
    client = server.client()
    text = client.chat.completions.create(model=server.model, messages=HI, max_tokens=12).choices[0].message.content
    words = text.split()
    stop = " " + words[len(words) // 2]
    for stream in (False, True):
        kw = {"model": server.model, "messages": HI, "max_tokens": 12, "stop": [stop, "@@@"]}
        if stream:
            chunks = list(client.chat.completions.create(stream=True, **kw))
            got = "".join(c.choices[0].delta.content or "" for c in chunks)
            finish = chunks[-1].choices[0].finish_reason
        else:
            choice = client.chat.completions.create(**kw).choices[0]
            got, finish = choice.message.content, choice.finish_reason
        assert (got, finish) == (text[: text.index(stop)], "stop")


def test_a_session_lives_in_the_store_across_requests_and_a_restart(server, keyed, cli):
    def say(served, text):
        return served.client().chat.completions.create(
            model=served.model, messages=[{"role": "user", "content": text}], max_tokens=8,
            extra_body={"longchat": {"session": "family"}})

    one = say(server, "My sister is called Alma.")
    two = say(server, "Who is my sister?")
    assert two.model_extra["longchat"]["session"] == "family"
    # The client sent one message; the prompt holds the first exchange too.
    assert two.usage.prompt_tokens > one.usage.prompt_tokens + 10
    three = say(keyed, "And what is her name?")  # another server process, the same store
    assert three.usage.prompt_tokens > two.usage.prompt_tokens
    code, out, err = cli("sessions", "export", "family", "--format", "json")
    assert code == 0, err
    messages = [(m["role"], m["content"]) for m in json.loads(out)["messages"]]
    assert [r for r, _ in messages] == ["user", "assistant"] * 3
    assert messages[0][1] == "My sister is called Alma." and messages[3][1] == two.choices[0].message.content.strip()


def test_a_named_memory_is_a_model(server, cli):
    code, _, err = cli("ingest", str(LIGHTHOUSE), "--name", "lighthouse", timeout=300)
    assert code == 0, err
    memory_id = f"{server.model}@memory:lighthouse"
    client = server.client()
    assert memory_id in [m.id for m in client.models.list().data]
    question = [{"role": "user", "content": "Who was the first keeper of Gull Rock Lighthouse?"}]
    reply = client.chat.completions.create(model=memory_id, messages=question, max_tokens=16)
    assert "Margaret Hale" in reply.choices[0].message.content
    assert reply.model_extra["longchat"]["memory"] == "lighthouse"
    again = client.chat.completions.create(model=server.model, messages=question, max_tokens=16,
                                           extra_body={"longchat": {"memory": "lighthouse"}})
    assert again.choices[0].message.content == reply.choices[0].message.content
    assert again.usage.prompt_tokens_details.cached_tokens > 300  # the memory is never read again


def test_a_long_prompt_streams_reading_progress(server):
    long = " ".join(["The tide came in and the gulls called over the rocks."] * 120)  # ~1.5k tokens
    conn, response = server.open_stream({"model": server.model, "max_tokens": 2,
                                         "messages": [{"role": "user", "content": long}]})
    body = response.read().decode()
    conn.close()
    assert re.search(r"^: reading \d+%$", body, re.MULTILINE) and body.rstrip().endswith("data: [DONE]")


def test_concurrent_requests_queue_and_match_serial_ones(server):
    """Each of three requests sent at once gets the reply it gets alone. A reply depends on how
    much of its prompt the engine's cache already held (a token read alone and the same token
    read in a chunk round differently, and the 135M model's greedy picks sit on ties), so every
    request here reuses the same few tokens: each prompt differs from the others, and from the
    one before it, from its first word on."""
    prompts = [[{"role": "system", "content": f"{name} counts."}, {"role": "user", "content": f"Count to {n}."}]
               for name, n in (("Ann", 3), ("Bob", 4), ("Cy", 5), ("Dee", 6))]

    def reply(i: int) -> str:
        return server.client().chat.completions.create(model=server.model, messages=prompts[i],
                                                       max_tokens=8).choices[0].message.content

    reply(3)  # what the cache holds before each pass: never one of the three prompts
    serial = [reply(i) for i in range(3)]
    reply(3)
    together: list[str | None] = [None] * 3

    def ask(i):
        together[i] = reply(i)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert together == serial and all(serial)


# ---------------------------------------------------------------- refusals


def test_errors_are_openai_error_objects(server):
    client = server.client()
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-9", messages=HI, max_tokens=4)
    assert e.value.body["code"] == "model_not_found" and e.value.body["param"] == "model"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=server.model, messages=HI, temperature=7)
    assert e.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=server.model, messages=HI, extra_body={"longchat": {"session": "../x"}})
    assert e.value.body["param"] == "longchat.session"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=f"{server.model}@memory:nothing", messages=HI)
    with pytest.raises(openai.BadRequestError) as e:  # the bundled model's template has no tool format
        client.chat.completions.create(model=server.model, messages=HI, tools=[
            {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}])
    assert e.value.body["param"] == "tools"
    no_messages = json.dumps({"model": server.model}).encode()
    for body, param in ((b"{not json", None), (b"[1]", None), (no_messages, "messages"),
                        (json.dumps({"model": server.model, "messages": [{"role": "user", "content": [
                            {"type": "image_url", "image_url": {"url": "x"}}]}]}).encode(), "messages.0.content.0")):
        status, _, data = server.request("POST", "/v1/chat/completions", body)
        assert status == 400 and set(data["error"]) == {"message", "type", "param", "code"}, data
        assert data["error"]["param"] == param and "Traceback" not in data["error"]["message"]
    status, _, data = server.request("GET", "/v1/nothing")
    assert status == 404 and data["error"]["type"] == "invalid_request_error"


def test_a_prompt_past_the_profiles_window_is_refused_naming_one_that_takes_it(server):
    long = "word " * 9000  # past profile full's window, the model's 8,192 positions
    with pytest.raises(openai.BadRequestError) as e:
        server.client().chat.completions.create(model=server.model, messages=[{"role": "user", "content": long}],
                                                max_tokens=8, extra_body={"longchat": {"profile": "full"}})
    error = e.value.body
    assert error["code"] == "context_length_exceeded" and "8,192" in error["message"]
    assert "profile 'full'" in error["message"] and "profile 'auto' takes it" in error["message"]


def test_a_session_busy_in_a_chat_is_409(server, serve_home, monkeypatch):
    from longchat.chat.store import SessionLock

    monkeypatch.setenv("LONGCHAT_HOME", str(serve_home))
    lock = SessionLock("busy")  # as `longchat chat --session busy` holds it
    try:
        with pytest.raises(openai.ConflictError) as e:
            server.client().chat.completions.create(model=server.model, messages=HI, max_tokens=4,
                                                    extra_body={"longchat": {"session": "busy"}})
    finally:
        lock.release()
    assert "busy" in e.value.body["message"] and e.value.body["code"] == "conflict"


def test_a_body_over_the_cap_is_413(server):
    big = json.dumps({"model": server.model, "messages": [{"role": "user", "content": "x" * (1 << 20)}]}).encode()
    status, _, data = server.request("POST", "/v1/chat/completions", big)
    assert status == 413 and data["error"]["code"] == "body_too_large"


def test_a_full_queue_is_429_and_a_client_that_leaves_cancels_its_reply(server):
    long = {"model": server.model, "max_tokens": 400, "messages": [{"role": "user", "content": "Tell a long story."}]}
    conn, response = server.open_stream(long)
    assert response.readline().startswith(b"data: ")  # it runs
    waiting = []
    for _ in range(2):  # --max-queue 2
        c = server.connection()
        c.request("POST", "/v1/chat/completions", body=json.dumps({**long, "max_tokens": 2}))
        waiting.append(c)
    while server.get("/health")["waiting"] < 2:
        time.sleep(0.05)
    status, headers, data = server.request("POST", "/v1/chat/completions", long)
    assert status == 429 and int(headers["retry-after"]) >= 1 and data["error"]["code"] == "queue_full"
    conn.close()  # the streaming client leaves: its 400 tokens are not made
    for c in waiting:
        assert c.getresponse().status == 200
        c.close()
    assert server.wait_idle(timeout=30) < 30
    reply = server.client().chat.completions.create(model=server.model, messages=HI, max_tokens=4)
    assert reply.choices[0].message.content


def test_the_api_key_is_required(keyed):
    with pytest.raises(openai.AuthenticationError):
        keyed.client(api_key="wrong").models.list()
    status, _, data = keyed.request("GET", "/v1/models", headers={"Authorization": ""})
    assert status == 401 and data["error"]["code"] == "invalid_api_key"
    assert keyed.client().models.list().data[0].id == keyed.model


def test_other_hosts_need_an_api_key(cli):
    code, _, err = cli("serve", "--host", "0.0.0.0", "--port", "0", timeout=60, LONGCHAT_API_KEY="")
    assert code == 2 and one_line_error(err) and "--api-key" in err


def test_a_busy_port_fails_at_once(cli):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code, _, err = cli("serve", "--port", str(taken.getsockname()[1]), timeout=60)
    assert code == 7 and one_line_error(err) and "pick another --port" in err


def test_sigterm_during_a_stream_ends_it_and_exits_0(keyed):
    conn, response = keyed.open_stream({"model": keyed.model, "max_tokens": 400,
                                        "messages": [{"role": "user", "content": "Tell a long story."}]})
    assert response.readline().startswith(b"data: ")
    assert keyed.stop(signal.SIGTERM) == 0
    rest = response.read().decode()
    conn.close()
    assert '"code": "cancelled"' in rest and rest.rstrip().endswith("data: [DONE]")


# ---------------------------------------------------------------- pieces


def test_stop_scanner_holds_back_what_may_start_a_stop():
    out: list[str] = []
    scan = StopScanner(["END", "xy"], out.append)
    scan.push("abc E")
    assert "".join(out) == "abc "  # "E" may start "END"
    scan.push("N")
    with pytest.raises(StopFound):
        scan.push("D and more")
    assert scan.text == "".join(out) == "abc "


def test_tool_calls_are_read_from_a_reply():
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    calls = tool_calls_in('<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>', tools)
    assert calls[0]["function"] == {"name": "get_weather", "arguments": '{"city": "Oslo"}'}
    assert tool_calls_in("It is sunny.", tools) is None
    assert tool_calls_in('{"name": "other", "arguments": {}}', tools) is None


def test_should_stop_cancels_a_reply_between_forwards(tiny_chat_model):
    from longchat.api import open_runner
    from longchat.runtime.generate import Cancelled, Sampling

    runner = open_runner("full", str(tiny_chat_model))
    engine, prompt = runner.engine, list(range(100, 1300))  # 1,200 tokens: three prefill chunks
    calls = []
    stop = lambda: calls.append(1) or len(calls) >= 4  # stop before the 2nd decode forward  # noqa: E731
    with pytest.raises(Cancelled):
        list(engine.generate(prompt, Sampling(max_new_tokens=50), should_stop=stop))
    assert engine.stats.stop_reason == "interrupted" and engine.stats.new_tokens == 2
    assert len(engine.cached_ids) == len(prompt) + 1  # consistent: the next prompt reuses it
    list(engine.generate(prompt + [7, 8], Sampling(max_new_tokens=2)))
    assert engine.stats.reused_tokens >= len(prompt)
