"""Persistent memories (ingest, the ask cache): identity, atomicity, laziness, exactness.

A tiny random-weight Llama with SmolLM2's real tokenizer runs the real pipeline in seconds;
what it says is noise, so the tests compare logits and files, never answers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from longchat import memory as memories
from longchat.context.base import Question
from longchat.context.infllm import InfLLM
from longchat.cli import main
from longchat.prompts import frame, question_suffix
from longchat.memory.store import MemoryStoreError, atomic_write, find
from longchat.api import open_runner

SMALL = ["strategy.n_init=4", "strategy.n_local=64", "strategy.block_size=16", "strategy.topk=2",
         "strategy.repr_topk=2", "strategy.max_cached_block=4", "context.prefill_chunk=32", "context.final_chunk=0"]
WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()


def runner_for(model, *extra):
    return open_runner("infllm", str(model), overrides=SMALL + list(extra))


def text_file(path, n_words, seed=0):
    import random

    rng = random.Random(seed)
    path.write_text(" ".join(rng.choice(WORDS) for _ in range(n_words)) + "\n")
    return path


def next_logits(runner, ids):
    """Logits after `ids`, continuing from the engine's cached state when it is a prefix."""
    return runner.engine.prefill(ids).clone()


def test_cache_hit_gives_the_same_logits_as_a_fresh_encode(home, tiny_chat_model, tmp_path):
    doc = text_file(tmp_path / "doc.txt", 1500)
    r = runner_for(tiny_chat_model)
    head, _ = frame(r.tokenizer, None)
    suffix = question_suffix(r.tokenizer, "what?")
    srcs = memories.collect_sources([str(doc)])
    strategy, _ = memories.infllm_for(r, 1 << 40)
    # Fresh, nothing kept:
    memories.encode_for_ask(r, strategy, srcs, head, False, memories.read_ids(r.tokenizer, srcs, 0, False), cache=False)
    fresh = next_logits(r, list(r.engine.cached_ids) + suffix)
    # Encoded into the cache, then answered from it in a new runner (a second process):
    r2 = runner_for(tiny_chat_model)
    s2, _ = memories.infllm_for(r2, 1 << 40)
    srcs2 = memories.collect_sources([str(doc)])
    result = memories.encode_for_ask(r2, s2, srcs2, head, False, memories.read_ids(r2.tokenizer, srcs2, 0, False), cache=True)
    assert result.memory.complete and result.encoded == result.tokens > 1500
    r3 = runner_for(tiny_chat_model)
    mem = memories.cached(r3, memories.collect_sources([str(doc)]), head, False)
    assert mem is not None and mem.path == result.memory.path
    prefix = memories.attach(r3, mem)
    assert r3.engine.strategy.layers[0].store.persistent
    hit = next_logits(r3, prefix + suffix)
    assert r3.engine.stats.reused_tokens == len(prefix)  # only the question was read
    assert torch.equal(fresh, hit)


def test_resume_after_an_interrupted_ingest_equals_one_pass(home, tiny_chat_model, tmp_path):
    docs = [text_file(tmp_path / f"d{i}.txt", 700, seed=i) for i in range(3)]
    specs = [str(d) for d in docs]
    one = runner_for(tiny_chat_model)
    whole = memories.ingest(one, specs, name="whole", checkpoint_every=256)
    assert whole.memory.complete and len(whole.memory.checkpoints) == 2  # the newest, and one before the last file

    # Interrupt a second ingest after a few chunks, as Ctrl-C would.
    calls = {"n": 0}

    def stop(done, total):
        calls["n"] += 1
        if calls["n"] == 20:
            raise KeyboardInterrupt

    two = runner_for(tiny_chat_model)
    with pytest.raises(KeyboardInterrupt):
        memories.ingest(two, specs, name="split", progress=stop, checkpoint_every=256)
    partial = find("split")
    assert not partial.complete and 0 < partial.tokens < whole.tokens
    with pytest.raises(MemoryStoreError, match="incomplete"):
        memories.attach(runner_for(tiny_chat_model), partial)
    resumed = memories.ingest(runner_for(tiny_chat_model), specs, name="split", checkpoint_every=256)
    assert resumed.memory.complete and resumed.tokens == whole.tokens
    assert resumed.encoded < whole.tokens  # only what the interrupted run had not made durable
    a, b = runner_for(tiny_chat_model), runner_for(tiny_chat_model)
    suffix = question_suffix(a.tokenizer, "q")
    la = next_logits(a, memories.attach(a, find("whole")) + suffix)
    lb = next_logits(b, memories.attach(b, find("split")) + suffix)
    assert torch.equal(la, lb)


def test_a_changed_source_is_reencoded_from_it_and_a_grown_log_only_its_tail(home, tiny_chat_model, tmp_path):
    docs = [text_file(tmp_path / f"d{i}.txt", 600, seed=i) for i in range(3)]
    specs = [str(d) for d in docs]
    notes = []
    memories.ingest(runner_for(tiny_chat_model), specs, name="m", checkpoint_every=200)
    again = memories.ingest(runner_for(tiny_chat_model), specs, name="m", checkpoint_every=200)
    assert again.up_to_date and again.encoded == 0
    start_d2 = find("m").documents[2]["start"]
    text_file(docs[2], 650, seed=9)  # the last document changed
    redo = memories.ingest(runner_for(tiny_chat_model), specs, name="m", note=notes.append, checkpoint_every=200)
    assert any("d2.txt changed" in n for n in notes)
    assert redo.encoded < redo.tokens - start_d2 + 200  # from the checkpoint before d2, not from the start
    # A log that grows: --append continues it.
    log = text_file(tmp_path / "app.log", 500, seed=3)
    base = memories.ingest(runner_for(tiny_chat_model), [str(log)], name="log")
    with open(log, "a") as f:
        f.write("gamma delta " * 100 + "\n")
    notes.clear()
    grown = memories.ingest(runner_for(tiny_chat_model), [str(log)], name="log", append=True, note=notes.append)
    assert any("grew" in n for n in notes)
    assert 0 < grown.encoded < 300 and grown.tokens == base.tokens + grown.encoded
    assert len(find("log").documents) == 1


def test_mismatched_or_corrupt_memories_are_refused(home, tiny_chat_model, tmp_path):
    doc = text_file(tmp_path / "doc.txt", 400)
    memories.ingest(runner_for(tiny_chat_model), [str(doc)], name="m")
    other = runner_for(tiny_chat_model, "strategy.topk=3")
    with pytest.raises(MemoryStoreError, match="other settings.*topk"):
        memories.attach(other, find("m"))
    with pytest.raises(MemoryStoreError, match="system prompt"):
        memories.attach(runner_for(tiny_chat_model), find("m"), system="Be brief.")
    mem = find("m")
    ckpt = mem.path / mem.checkpoints[-1].file
    ckpt.write_bytes(ckpt.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(MemoryStoreError, match="does not match its hash"):
        memories.attach(runner_for(tiny_chat_model), find("m"))
    (mem.path / "manifest.json").write_text("{not json")
    with pytest.raises(MemoryStoreError, match="corrupt"):
        find("m")


def test_atomic_write_keeps_the_old_file_when_the_writer_dies(tmp_path):
    target = tmp_path / "manifest.json"
    atomic_write(target, b"old")
    # A writer killed mid-write leaves only its temp file; the name still holds the old bytes.
    code = ("import os, sys; sys.path.insert(0, %r)\n"
            "from longchat.memory import store\n"
            "def die(*a, **k): os._exit(9)\n"
            "os.replace = die\n"
            "store.atomic_write(__import__('pathlib').Path(%r), b'new' * 1000)\n") % (os.getcwd(), str(target))
    assert subprocess.run([sys.executable, "-c", code]).returncode == 9
    assert target.read_bytes() == b"old"


def test_attach_reads_blocks_lazily(home, tiny_chat_model, tmp_path):
    doc = text_file(tmp_path / "doc.txt", 3000)
    memories.ingest(runner_for(tiny_chat_model), [str(doc)], name="big")
    r = runner_for(tiny_chat_model)
    read = []
    original = os.pread

    def counting(fd, n, offset):
        read.append(n)
        return original(fd, n, offset)

    os.pread = counting
    try:
        prefix = memories.attach(r, find("big"))
        next_logits(r, prefix + question_suffix(r.tokenizer, "q"))
    finally:
        os.pread = original
    store = r.engine.strategy.layers[0].store
    blocks_read = sum(n for n in read if n == store.record_bytes) // store.record_bytes
    layers = len(r.engine.strategy.layers)
    # topk=2 blocks per layer for the restored slots and each of the question's two reads,
    # plus the re-ranked candidates (at most `rerank`=8, one read each)
    rerank = r.engine.strategy.params.rerank
    assert store.count > 20 and blocks_read <= layers * (2 * 3 + rerank) < store.count


def test_eight_bit_store_halves_the_bytes_and_stays_close(tiny_chat_model):
    from longchat.context.infllm.blocks import BlockStore

    s16, s8 = BlockStore(2, 16, 32, 2), BlockStore(2, 16, 32, 2, bits=8)
    k = torch.randn(2, 16, 32)
    for s in (s16, s8):
        s.append(k, -k, k[:, :2])
    assert s8.record_bytes < 0.6 * s16.record_bytes
    k8, v8 = s8.gather([0], "cpu", torch.float32)
    assert torch.allclose(k8, k, atol=k.abs().max().item() / 100) and torch.allclose(v8, -k, atol=k.abs().max().item() / 100)


def test_cli_ingest_list_ask_and_rm(home, tiny_chat_model, tmp_path, capsys):
    doc = text_file(tmp_path / "notes.txt", 800)
    sets = sum((["--set", s] for s in SMALL), [])
    args = ["-p", "infllm", "-m", str(tiny_chat_model), *sets]
    assert main(["ingest", str(doc), "--name", "notes", *args]) == 0
    out = capsys.readouterr().out
    assert out.startswith("notes: ") and "tokens" in out
    assert main(["memories", "list", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["name"], r["kind"], r["complete"]) for r in rows] == [("notes", "named", True)] and rows[0]["bytes"] > 0
    assert main(["ask", "--memory", "notes", "what?", "-n", "3", "--stats", *args]) == 0
    stats = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert stats["cache"] == "named" and stats["reused_tokens"] > 800
    assert main(["ask", "--memory", "nope", "what?", *args]) != 0
    assert "no memory named 'nope'" in capsys.readouterr().err
    assert main(["memories", "rm", "notes"]) == 0
    assert not (home / "data" / "memories" / "notes").exists()


def test_kill_9_during_ingest_leaves_a_loadable_or_resumable_memory(home, tiny_chat_model, tmp_path):
    """SIGKILL (no handler runs) mid-ingest, once a checkpoint is on disk and a progress line shows
    the encoding under way: what is left is a whole manifest whose newest checkpoint loads, and a
    rerun resumes from it, encodes only the rest and completes the memory."""
    import re

    from conftest import InProcessCLI

    doc = text_file(tmp_path / "doc.txt", 6000)  # ~8k tokens: a checkpoint every 512
    sets = sum((["--set", s] for s in SMALL), [])
    cmd = [sys.executable, "-m", "longchat", "ingest", str(doc), "--name", "k", "-p", "infllm",
           "-m", str(tiny_chat_model), "--checkpoint-every", "512", *sets]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    folder = home / "data" / "memories" / "k"
    err_path = tmp_path / "ingest.err"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    progress = re.compile(r"encoding ([\d,]+)/([\d,]+) tokens \((\d+)%")
    deadline = time.monotonic() + 300  # a loaded machine can take a minute just to start
    try:
        while True:
            assert proc.poll() is None, f"the ingest ended before it was killed: {err_path.read_text()}"
            assert time.monotonic() < deadline, f"no checkpoint and progress line: {err_path.read_text()}"
            shown = progress.findall(err_path.read_text())
            if shown and (folder / "manifest.json").exists():
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _, total, percent = (int(x.replace(",", "")) for x in shown[-1])
    assert percent < 100 and proc.returncode == -signal.SIGKILL  # still running when the kill landed

    mem = find("k")  # the manifest that exists is whole
    assert not mem.complete and mem.checkpoints and 0 < mem.tokens < total
    newest = mem.checkpoints[-1]
    assert newest.tokens == mem.tokens and mem.load_checkpoint(newest)  # its checkpoint loads
    code, _, err = InProcessCLI(home)(*cmd[3:])  # the rerun: `main` in-process, as the entry point runs it
    assert code == 0, err
    assert f"resuming an interrupted ingest at {mem.tokens:,} tokens" in err, err
    encoded = int(re.search(r"encoded ([\d,]+) tokens", err).group(1).replace(",", ""))
    whole = find("k")
    assert whole.complete and whole.tokens >= total and encoded == whole.tokens - mem.tokens  # only the rest
    assert main(["ask", "--memory", "k", "what?", "-n", "2", "-p", "infllm", "-m", str(tiny_chat_model), *sets]) == 0


def test_the_ask_cache_evicts_least_recently_used_first(home, tiny_chat_model, tmp_path):
    from longchat.memory.store import all_memories, evict_cache

    r = runner_for(tiny_chat_model)
    head, _ = frame(r.tokenizer, None)
    made = []
    for i in range(3):
        srcs = memories.collect_sources([str(text_file(tmp_path / f"c{i}.txt", 500, seed=i))])
        strategy, _ = memories.infllm_for(r, 1 << 40)
        made.append(memories.encode_for_ask(r, strategy, srcs, head, False, None, cache=True).memory)
    for i, mem in enumerate(made):  # used in the order 1, 0, 2
        os.utime(mem.path / "used", (1000 + [1, 0, 2][i], 1000 + [1, 0, 2][i]))
    size = made[0].size()
    evict_cache(int(size * 2.5), keep=made[2].path)
    left = [p.name for kind, p in all_memories() if kind == "cache"]
    assert left == sorted([made[0].name, made[2].name])  # made[1], the least recently used, went


def test_chat_with_a_memory_reads_only_the_new_turns(home, tiny_chat_model, tmp_path):
    from longchat.chat.conversation import Conversation
    from longchat.runtime.generate import Sampling

    memories.ingest(runner_for(tiny_chat_model), [str(text_file(tmp_path / "d.txt", 900))], name="d")
    r = runner_for(tiny_chat_model)
    conv = Conversation(r, None, Sampling(max_new_tokens=4))
    conv.attach_memory("d")
    n = find("d").tokens
    conv.send("first question")
    assert r.engine.stats.reused_tokens == n
    conv.send("second question")
    assert r.engine.stats.reused_tokens >= n
    conv.reset()  # forgets the turns, not the memory: back to it by a file read
    conv.send("third")
    assert r.engine.stats.reused_tokens == n
    assert conv.handle_command("/system other").error


def test_the_key_of_default_settings_is_the_one_memories_were_written_with(home, tiny_chat_model, tmp_path):
    """Removing settings (issue 40) changed no memory's key: existing memories and ask-cache
    entries stay valid. One encoded with event-shaped blocks (`segment = "surprise"`, since
    removed) is refused in one line that says so."""
    from types import SimpleNamespace

    from longchat.context.infllm import InfLLMParams
    from longchat.memory import encode

    model = SimpleNamespace(name="m", path=None, decoder=SimpleNamespace(dtype=torch.float32, weight_format="fp32"))
    runner = SimpleNamespace(model=model, profile=SimpleNamespace(context=SimpleNamespace(prefill_chunk=512)))
    sha, encode.model_sha256 = encode.model_sha256, lambda path: "x"
    try:
        key = encode.memory_key(runner, InfLLMParams(), "head")
    finally:
        encode.model_sha256 = sha
    assert key == {"model": "m", "model_sha256": "x", "dtype": "float32", "prefill_chunk": 512, "head": "head",
                   "infllm.n_init": 128, "infllm.n_local": 1024, "infllm.block_size": 128, "infllm.topk": 8,
                   "infllm.repr_topk": 16, "infllm.store_bits": 16, "infllm.memory_positions": "ordered"}
    memories.ingest(runner_for(tiny_chat_model), [str(text_file(tmp_path / "e.txt", 300))], name="events")
    manifest = find("events").path / "manifest.json"
    written = json.loads(manifest.read_text())
    # What an ingest with `--set strategy.segment=surprise` wrote before issue 40:
    written["key"].update({"infllm.segment": "surprise", "infllm.surprise_gamma": 1.0,
                           "infllm.surprise_window": 128, "infllm.min_block": 64})
    manifest.write_text(json.dumps(written))
    with pytest.raises(MemoryStoreError, match=r"'events' was encoded with event-shaped blocks .*no longer reads; "
                                               r"remove it with `longchat memories rm events` and ingest again") as err:
        memories.attach(runner_for(tiny_chat_model), find("events"))
    assert "\n" not in str(err.value)


def test_auto_reads_the_matching_passages_alone_past_passages_past(home, tiny_chat_model, tmp_path):
    """`auto` past `passages_past` document tokens: when a passage holds the question's words,
    only BM25's best passages are read (full attention, nothing encoded); otherwise InfLLM reads
    the whole document as before, and a later matching question reads passages of the cache."""
    from longchat import api
    from longchat.runtime.generate import Sampling

    doc = text_file(tmp_path / "doc.txt", 1500)
    words = doc.read_text().split()
    words[700] = "zanzibar"
    doc.write_text(" ".join(words) + "\n")
    passages = ["context.effective_window=256", "strategy.passages_past=300", "strategy.passages_budget=128"]
    r = open_runner("auto", str(tiny_chat_model), overrides=SMALL + passages)
    two = Sampling(max_new_tokens=2)
    notes: list[str] = []
    api.ask(r, [str(doc)], "Where is zanzibar?", sampling=two, note=notes.append)
    read = r.tokenizer.decode(r.engine.cached_ids)
    assert r.engine.stats.extra["read"] == "passages" and r.engine.stats.extra["read_tokens"] == 128
    assert read.count("zanzibar") == 2 and len(r.engine.cached_ids) < 128 + 100  # the passage, the question
    assert r.engine.strategy.chosen == "full" and any("reading its best 128 tokens (1 passage" in n for n in notes)
    assert not list(memories.cache_root().glob("*"))  # nothing encoded
    notes = []
    api.ask(r, [str(doc)], "Where is timbuktu?", sampling=two, note=notes.append)
    assert "read" not in r.engine.stats.extra and r.engine.stats.extra["cache"] == "miss"
    assert r.engine.strategy.chosen == "infllm" and any("no passage holds 50%" in n for n in notes)
    api.ask(r, [str(doc)], "Where is zanzibar?", sampling=two)
    assert r.engine.stats.extra["read"] == "passages" and r.engine.stats.extra["cache"] == "hit"
    off = open_runner("auto", str(tiny_chat_model), overrides=SMALL + passages[:1] + ["strategy.passages_past=0"])
    api.ask(off, [str(doc)], "Where is zanzibar?", sampling=two)
    assert "read" not in off.engine.stats.extra and off.engine.stats.extra["cache"] == "hit"


def test_auto_nudges_the_answer_to_go_on_as_the_passages_do(home, tiny_chat_model, tmp_path, monkeypatch):
    """`FAVOUR_BOOST`: the answer read from passages is generated with the passages as favoured
    texts (their next token gets the boost once the answer runs 3 tokens as they do)."""
    from longchat import api, reading
    from longchat.runtime.generate import Sampling

    doc = text_file(tmp_path / "doc.txt", 1500)
    words = doc.read_text().split()
    words[700] = "zanzibar"
    doc.write_text(" ".join(words) + "\n")
    passages = ["context.effective_window=256", "strategy.passages_past=300", "strategy.passages_budget=128"]
    for boost in (3.0, 0.0):
        monkeypatch.setattr(reading, "FAVOUR_BOOST", boost)
        r = open_runner("auto", str(tiny_chat_model), overrides=SMALL + passages)
        seen = []
        real = r.engine.generate_text
        r.engine.generate_text = lambda *a, **k: seen.append(k.get("copy_guard")) or real(*a, **k)
        api.ask(r, [str(doc)], "Where is zanzibar?", sampling=Sampling(max_new_tokens=2))
        assert r.engine.stats.extra["read"] == "passages"
        if boost:
            guard = seen[0]
            z = r.tokenizer.encode(" zanzibar", add_special_tokens=False)
            ids = r.tokenizer.encode(doc.read_text(), add_special_tokens=False)
            at = next(i for i in range(3, len(ids)) if ids[i:i + len(z)] == z)
            assert guard.boost == 3.0 and ids[at] in guard.helped(ids[at - 3:at])
        else:
            assert seen == [None]


def test_auto_reads_the_lines_nearest_the_questions_meaning_when_no_passage_matches(home, tiny_chat_model, tmp_path):
    """`strategy.meaning_lines`: a question that shares no word with the input reads the lines
    nearest its meaning (real static vectors) with full attention, nothing encoded; a question
    about the whole input, and `meaning_lines=0`, read it all with InfLLM as before."""
    from longchat import api
    from longchat.runtime.generate import Sampling

    filler = [" ".join(WORDS[(i + j) % len(WORDS)] for j in range(8)) + "." for i in range(160)]
    filler[90] = "The annual conference will be held in Lisbon."
    doc = tmp_path / "doc.txt"
    doc.write_text("\n".join(filler) + "\n")
    over = SMALL + ["context.effective_window=256", "strategy.passages_past=300", "strategy.passages_budget=128",
                    "strategy.meaning_lines=3"]
    r = open_runner("auto", str(tiny_chat_model), overrides=over)
    two, notes = Sampling(max_new_tokens=2), []
    api.ask(r, [str(doc)], "Which city hosts the yearly meeting?", sampling=two, note=notes.append)
    read = r.tokenizer.decode(r.engine.cached_ids)
    assert r.engine.stats.extra["read"] == "meaning" and r.engine.stats.extra["read_tokens"] <= 128
    assert "held in Lisbon" in read and read.count("alpha") <= 3  # the fact line, and at most 2 others
    assert r.engine.strategy.chosen == "full" and any("lines nearest its meaning" in n for n in notes)
    assert not list(memories.cache_root().glob("*"))  # nothing encoded
    notes = []
    api.ask(r, [str(doc)], "What is this document about?", sampling=two, note=notes.append)
    assert "read" not in r.engine.stats.extra and r.engine.strategy.chosen == "infllm"
    assert any("reading all" in n and "with infllm" in n for n in notes)
    off = open_runner("auto", str(tiny_chat_model), overrides=over[:-1] + ["strategy.meaning_lines=0"])
    api.ask(off, [str(doc)], "Which city hosts the yearly meeting?", sampling=two)
    assert "read" not in off.engine.stats.extra and off.engine.strategy.chosen == "infllm"


def test_auto_reads_a_short_memory_from_the_memory(home, tiny_chat_model, tmp_path):
    """`auto` picks full attention for a prompt under its window; one that starts with an attached
    memory stays with the InfLLM that holds it (else only the question would be read), also after
    a prompt without the memory went through full attention."""
    from longchat.prompts import chat_ids
    from longchat.runtime.generate import Sampling

    memories.ingest(open_runner("auto", str(tiny_chat_model), overrides=SMALL), [str(text_file(tmp_path / "d.txt", 300))],
                    name="small")
    r = open_runner("auto", str(tiny_chat_model), overrides=SMALL)
    prefix = memories.attach(r, memories.find("small"))
    greedy = Sampling(max_new_tokens=3)
    replies = []
    for prompt in (prefix + question_suffix(r.tokenizer, "what?"), chat_ids(r.tokenizer, [{"role": "user", "content": "hi"}]),
                   prefix + question_suffix(r.tokenizer, "what?")):
        replies.append(r.engine.generate_text(prompt, greedy))
        on_memory = prompt[: len(prefix)] == prefix
        assert r.engine.stats.extra["strategy_used"] == ("infllm" if on_memory else "full")
        assert r.engine.stats.reused_tokens == (len(prefix) if on_memory else 0)
    assert replies[0] == replies[2]


def test_pinned_boost_favours_the_pinned_block_for_an_ask_answer_only(home, tiny_chat_model, tmp_path, monkeypatch):
    """`infllm.pinned_boost`: after an `ask` question re-ranks the blocks, the answer is nudged
    to run on as the pinned block (with a neighbour each side) does; never for a prompt that is
    not an `ask`, nor with the boost at 0."""
    from longchat import api
    from longchat.runtime.generate import Sampling

    doc = text_file(tmp_path / "doc.txt", 1500)
    greedy = Sampling(max_new_tokens=2)
    r = runner_for(tiny_chat_model)  # the profile's default: 3
    api.ask(r, [str(doc)], "what?", sampling=greedy)
    s = r.engine.strategy
    assert s.pinned, "the question re-ranked the blocks"
    spans = s.block_spans()[: s.layers[0].store.count]
    best = s.pinned[0]
    start, end = spans[max(best - 1, 0)][0], spans[min(best + 1, len(spans) - 1)][1]
    assert s.answer_aid() == ([(start, end)], 3.0)
    assert r.engine.stats.extra["answer_aid_tokens"] == end - start
    guard = r.engine._answer_aid()
    block = r.engine.cached_ids[spans[best][0]:spans[best][1]]
    helped = [i for i in range(len(block) - 3) if block[i + 3] in guard.helped(block[i:i + 3])]
    assert len(helped) >= len(block) // 2  # the block's own continuations (sentence ends excepted)
    assert guard.boost == 3.0

    r.engine.generate_text(r.tokenizer.encode(doc.read_text())[:600] + r.tokenizer.encode(" what?"), greedy,
                           question=Question("what?"))
    assert "answer_aid_tokens" not in r.engine.stats.extra  # not an `ask`
    monkeypatch.setattr(InfLLM, "pinned_boost", 0.0)
    off = runner_for(tiny_chat_model)
    api.ask(off, [str(doc)], "what?", sampling=greedy)
    assert off.engine.strategy.pinned and "answer_aid_tokens" not in off.engine.stats.extra


def test_focus_reads_a_decisive_pinned_block_with_its_neighbours_alone(home, tiny_chat_model, tmp_path, monkeypatch):
    """`infllm.focus`: when an `ask` question's best block is that many nats ahead of every
    other candidate, the question's second read and every answer token read that block and
    its neighbours, none of the voted rest nor the document's last tokens (the local window goes
    to memory); below the margin, or not for an `ask`, topk and the window as before."""
    from longchat import api
    from longchat.runtime.generate import Sampling

    doc = text_file(tmp_path / "doc.txt", 1500)
    greedy = Sampling(max_new_tokens=3)
    monkeypatch.setattr(InfLLM, "focus", 0.000001)  # any lead is decisive
    near = runner_for(tiny_chat_model, "strategy.topk=4")
    api.ask(near, [str(doc)], "what?", sampling=greedy)
    s = near.engine.strategy
    best, n = s.pinned[0], s.layers[0].store.count
    expect = sorted(b for b in (best - 1, best, best + 1) if 0 <= b < n)
    assert n > len(expect) + 2 and sorted(s.focused) == expect
    assert s.agreed == expect  # what the last answer token read
    window = s.window  # the question's last chunk and the answer, no document tokens

    monkeypatch.setattr(InfLLM, "focus", 1000000.0)  # no lead is decisive
    far = runner_for(tiny_chat_model, "strategy.topk=4")
    api.ask(far, [str(doc)], "what?", sampling=greedy)
    assert far.engine.strategy.focused == [] and len(far.engine.strategy.agreed) == 4
    assert window < far.engine.strategy.window == 64  # n_local: the document's end is read there

    ids = near.tokenizer.encode(doc.read_text())[:600] + near.tokenizer.encode(" what?")
    near.engine.generate_text(ids, greedy, question=Question("what?"))  # not an `ask`
    assert s.pinned and s.focused == [] and len(s.agreed) == 4
