"""Memories at their edges: broken ones listed with their fix and removable, a damaged block
file, a full disk mid-ingest, busy locks, checkpoints that do not pile up, cache folder names.

One ingest with the bundled model (shared by the tests that read it), it and the later runs on it
through `main` in-process on the session's loaded model (a real ingest process: test_cli_edges.py);
the full-disk tests run a tiny model in-process with a write that fails.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import InProcessCLI, load_shared, one_line_error
from longchat.cli import main
from longchat.memory import cache_name, collect_sources
from longchat.memory.store import find
from test_memory import SMALL, text_file


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, default_model_dir, shared_model):
    """(cli, the folder of memory 'base'): two documents of ~700 tokens, checkpoints every 256."""
    root = tmp_path_factory.mktemp("edges")
    home = root / "home"
    (home / "cache" / "models").mkdir(parents=True)
    os.symlink(default_model_dir, home / "cache" / "models" / default_model_dir.name)
    docs = [text_file(root / f"d{i}.txt", 500, seed=i) for i in range(2)]
    cli = InProcessCLI(home)
    with pytest.MonkeyPatch.context() as mp:
        load_shared(mp, shared_model)
        rc, _, err = cli("ingest", *docs, "--name", "base", "-p", "infllm", "--checkpoint-every", "256")
    assert rc == 0, err
    return cli, home / "data" / "memories" / "base"


@pytest.fixture
def at(ingested, monkeypatch):
    """LONGCHAT_HOME of the shared memory, for in-process `main` calls."""
    cli, _ = ingested
    monkeypatch.setenv("LONGCHAT_HOME", str(cli.home))
    return cli.home / "data" / "memories"


def copy_of(ingested, name):
    _, base = ingested
    return shutil.copytree(base, base.with_name(name), ignore=shutil.ignore_patterns(".lock"))


def test_checkpoints_do_not_pile_up_and_a_changed_last_document_is_redone_alone(ingested, reuse_model):
    cli, base = ingested
    manifest = json.loads((base / "manifest.json").read_text())
    files = sorted(p.name for p in base.glob("ckpt-*.pt"))
    assert len(files) == 2 and files == sorted(c["file"] for c in manifest["checkpoints"])
    second = manifest["documents"][1]
    assert manifest["checkpoints"][0]["tokens"] <= second["start"]  # the one before the last document
    edit = copy_of(ingested, "edit")
    text_file(Path(second["path"]), 500, seed=9)
    rc, _, err = cli("ingest", *(d["path"] for d in manifest["documents"]), "--name", "edit", "-p", "infllm",
                     "--checkpoint-every", "256")
    assert rc == 0, err
    assert "d1.txt changed" in err
    encoded = int(err.split("encoded ")[1].split(" tokens")[0].replace(",", ""))
    assert encoded <= manifest["tokens"] - manifest["checkpoints"][0]["tokens"] + 64  # not from the start
    assert len(list(edit.glob("ckpt-*.pt"))) == 2


def test_a_truncated_block_file_is_a_damaged_memory(ingested, reuse_model):
    cli, _ = ingested
    broken = copy_of(ingested, "broken")
    block = broken / "blocks" / "L003.kv"
    os.truncate(block, block.stat().st_size // 2)
    rc, _, err = cli("ask", "--memory", "broken", "what?", "-p", "infllm", "-n", "3")
    assert rc == 6 and one_line_error(err), err
    assert ("memory 'broken' is damaged (blocks/L003.kv is truncated); remove it with "
            "`longchat memories rm broken` and ingest again") in err


def test_a_corrupt_manifest_is_listed_with_its_fix_and_removable(ingested, at, capsys):
    bad = copy_of(ingested, "bad")
    (bad / "manifest.json").write_text("{not json")
    assert main(["memories", "list"]) == 0
    out = capsys.readouterr().out
    assert "corrupt" in out
    assert "'bad': corrupt (manifest.json: " in out and "; remove it with `longchat memories rm bad`" in out
    assert main(["memories", "show", "bad"]) == 6
    err = capsys.readouterr().err
    assert one_line_error(err) and "`longchat memories rm bad`" in err
    assert main(["memories", "rm", "bad"]) == 0 and not bad.exists()


def test_a_folder_without_manifest_is_incomplete_and_removable(home, capsys):
    at = home / "data" / "memories"
    (at / "half" / "blocks").mkdir(parents=True)
    assert main(["memories", "list"]) == 0
    out = capsys.readouterr().out
    assert "'half': incomplete (interrupted before its first checkpoint); resume it with " \
           "`longchat ingest SOURCE... --name half`, or remove it with `longchat memories rm half`" in out
    assert main(["memories", "rm", "half"]) == 0 and not (at / "half").exists()
    assert main(["memories", "rm", ".."]) == 6  # never a folder outside the memories
    assert at.is_dir()


def test_rm_is_refused_while_the_memory_is_in_use(home, capsys):
    at = home / "data" / "memories"
    (at / "held").mkdir(parents=True)
    fd = os.open(at / "held" / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        for how, doing in ((fcntl.LOCK_EX, "written"), (fcntl.LOCK_SH, "read")):
            fcntl.flock(fd, how)
            assert main(["memories", "rm", "held"]) == 6
            err = capsys.readouterr().err
            assert one_line_error(err) and f"memory 'held' is being {doing} by another longchat process" in err
    finally:
        os.close(fd)
    assert main(["memories", "rm", "held"]) == 0 and not (at / "held").exists()


def fail_after(monkeypatch, name, calls):
    """Make os.<name> raise ENOSPC (a full disk) after `calls` calls; returns the original."""
    real, count = getattr(os, name), []

    def full(*args):
        count.append(1)
        if len(count) > calls:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*args)

    monkeypatch.setattr(os, name, full)
    return real


def tiny(model) -> list[str]:
    return ["-p", "infllm", "-m", str(model), *sum((["--set", s] for s in SMALL), [])]


def test_a_full_disk_during_ingest_leaves_the_memory_resumable(home, tiny_chat_model, tmp_path, monkeypatch, capsys):
    docs = [text_file(tmp_path / f"d{i}.txt", 500, seed=i) for i in range(2)]
    args = ["ingest", *map(str, docs), "--name", "m", "--checkpoint-every", "64", *tiny(tiny_chat_model)]
    assert main(args) == 0
    text_file(docs[1], 500, seed=7)
    real = fail_after(monkeypatch, "pwrite", 20)  # the disk fills up while d1 is re-encoded
    assert main(args) == 7
    err = capsys.readouterr().err
    folder = home / "data" / "memories" / "m"
    assert one_line_error(err) and f"no space left on the device while writing {folder}" in err
    assert "running the command again resumes" in err
    mem = find("m")
    assert not mem.complete and mem.checkpoints  # its checkpoint before d1: resumable
    monkeypatch.setattr(os, "pwrite", real)
    assert main(["memories", "list"]) == 0
    assert f"'m': incomplete (interrupted); resume it with `longchat ingest {docs[0]} {docs[1]} --name m`" \
           in capsys.readouterr().out
    assert main(args) == 0 and find("m").complete
    assert "resuming" in capsys.readouterr().err
    assert main(["ask", "--memory", "m", "what?", "-n", "2", *tiny(tiny_chat_model)]) == 0


def test_a_full_disk_at_the_first_checkpoint_leaves_a_removable_folder(home, tiny_chat_model, tmp_path,
                                                                        monkeypatch, capsys):
    doc = text_file(tmp_path / "doc.txt", 400)
    layers = json.loads((tiny_chat_model / "config.json").read_text())["num_hidden_layers"]
    fail_after(monkeypatch, "fsync", 2 * layers + 1)  # the block files and ids.bin, then the checkpoint's file
    assert main(["ingest", str(doc), "--name", "n", *tiny(tiny_chat_model)]) == 7
    err = capsys.readouterr().err
    assert one_line_error(err) and "no space left" in err
    folder = home / "data" / "memories" / "n"
    assert sorted(p.name for p in folder.iterdir()) == [".lock", "blocks", "ids.bin"]  # no half-written checkpoint
    assert main(["memories", "rm", "n"]) == 0 and not folder.exists()


def test_a_full_disk_while_caching_an_ask(home, tiny_chat_model, tmp_path, monkeypatch, capsys):
    doc = text_file(tmp_path / "doc.txt", 800)
    args = ["ask", str(doc), "what?", "-n", "2", *tiny(tiny_chat_model)]
    real = fail_after(monkeypatch, "pwrite", 20)
    assert main(args) == 7
    err = capsys.readouterr().err
    assert one_line_error(err) and f"no space left on the device while writing {home / 'cache' / 'memories'}" in err
    monkeypatch.setattr(os, "pwrite", real)
    assert main(args) == 0


def test_the_cache_folder_of_a_folder_is_named_after_it(tmp_path, monkeypatch):
    repo = tmp_path / "myrepo"
    (repo / "pkg").mkdir(parents=True)
    for rel in ("README", "pkg/__init__.py", "pkg/main.py"):
        (repo / rel).write_text(f"{rel}\n")
    monkeypatch.chdir(tmp_path)
    assert cache_name(collect_sources(["myrepo"]), {}).startswith("myrepo-3files-")
    assert cache_name(collect_sources([str(repo)]), {}).startswith("myrepo-3files-")
    assert cache_name(collect_sources(["myrepo/README", "myrepo/pkg/main.py"]), {}).startswith("myrepo-2files-")
    assert cache_name(collect_sources(["myrepo/pkg/main.py"]), {}).startswith("main.py-")
    (tmp_path / "a b.txt").write_text("x\n")
    assert cache_name(collect_sources(["a b.txt", "myrepo/README"]), {}).startswith("a_b.txt-2files-")
