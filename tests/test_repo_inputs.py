"""Repositories as people have them (issue 42): notebooks read as their cells, lock files,
minified bundles, data and vendored folders skipped by default with one note, --include /
--exclude, and the cost line said before a long read."""

from __future__ import annotations

import base64
import json
import os
import random

import pytest

from conftest import one_line_error
from longchat.errors import EXIT_INPUT, EXIT_USAGE, InputError
from longchat.sources import EVERYTHING, BadPattern, Selection, iter_documents, read_text, selecting
from longchat.sources.notebook import render
from longchat.sources.select import skipped_file

HAND_PY = '''"""A tiny GPT: the model in one file."""

import math

import torch
from torch import nn


class Attention(nn.Module):
    """Causal self-attention: every token reads the tokens before it."""

    def __init__(self, n_embd: int, n_head: int):
        super().__init__()
        self.qkv = nn.Linear(n_embd, 3 * n_embd)
        self.proj = nn.Linear(n_embd, n_embd)
        self.n_head = n_head

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))
        return self.proj(att.softmax(-1) @ v)


class MLP(nn.Module):
    """Two linear layers with a GELU between: the per-token half of a block."""

    def __init__(self, n_embd: int, dropout: float = 0.0):
        super().__init__()
        self.up = nn.Linear(n_embd, 4 * n_embd)
        self.down = nn.Linear(4 * n_embd, n_embd)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return self.drop(self.down(nn.functional.gelu(self.up(x))))


class Block(nn.Module):
    """Attention then MLP, each after a LayerNorm and added back to the residual stream."""

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(n_embd), nn.LayerNorm(n_embd)
        self.attn = Attention(n_embd, n_head)
        self.mlp = MLP(n_embd, dropout)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, vocab_size: int, block_size: int, n_layer: int, n_embd: int, n_head: int):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.blocks = nn.ModuleList(Block(n_embd, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)

    def forward(self, idx):
        B, T = idx.shape
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))  # (B, T, vocab_size)
'''
HAND_MD = """# tinygpt

The simplest repository for training small GPTs. `train.py` reads a text file, `model.py`
holds the model. Start with the Shakespeare example:

    python train.py config/shakespeare.py

It trains in a few minutes on one GPU and writes samples to `out/`.

## Install

    pip install torch numpy tiktoken

## Reproducing GPT-2

Prepare OpenWebText with `python data/openwebtext/prepare.py`, then train on 8 GPUs with
`torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2.py`. It takes about four
days on one node of A100s and reaches a validation loss near 2.85.
"""
NOTES_MD = "## Notes\n\nLearning rate 6e-4 with cosine decay worked best; dropout 0.2 on small data.\n"
CELLS = [
    ("markdown", "# Training curves\nLoss against steps for the small model."),
    ("code", "import matplotlib.pyplot as plt\nlosses = [4.2, 3.1, 2.5, 2.1]\nprint('final loss', losses[-1])"),
    ("code", "plt.plot(losses)\nplt.title('loss')"),
]


def notebook(cells=CELLS, image_bytes: int = 200_000, long_output: int = 0) -> dict:
    """A notebook: the cells, a short stream output, a plot as a base64 PNG of `image_bytes`."""
    rng = random.Random(0)
    png = base64.b64encode(bytes(rng.getrandbits(8) for _ in range(image_bytes * 3 // 4))).decode()
    out = []
    for kind, source in cells:
        cell = {"cell_type": kind, "metadata": {}, "source": source.splitlines(keepends=True)}
        if kind == "code":
            cell["execution_count"], cell["outputs"] = 1, []
            if "print" in source:
                cell["outputs"].append({"output_type": "stream", "name": "stdout", "text": ["final loss 2.1\n"]})
            if "plt.plot" in source:
                cell["outputs"].append({"output_type": "display_data", "metadata": {},
                                        "data": {"image/png": png, "text/plain": ["<Figure size 640x480>"]}})
                cell["outputs"].append({"output_type": "execute_result", "execution_count": 1, "metadata": {},
                                        "data": {"text/html": ["<div>" * 500], "text/plain": ["Text(0.5, 1.0, 'loss')"]}})
            if long_output:
                cell["outputs"].append({"output_type": "stream", "name": "stdout",
                                        "text": "".join(f"step {i}: loss {4 - i / 1000:.4f}\n" for i in range(long_output))})
        out.append(cell)
    return {"cells": out, "metadata": {"kernelspec": {"name": "python3"}}, "nbformat": 4, "nbformat_minor": 5}


def write(path, content) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")


@pytest.fixture
def repo(tmp_path):
    """A small real-looking repository: hand-written code and docs, and what buries them."""
    root = tmp_path / "tinygpt"
    write(root / "model.py", HAND_PY)
    write(root / "README.md", HAND_MD)
    write(root / "docs" / "notes.md", NOTES_MD)
    write(root / "config.json", {"n_layer": 6, "n_head": 6, "dropout": 0.2})
    write(root / "analysis.ipynb", notebook())
    deps = {f"node_modules/pkg{i}": {"version": f"1.{i}.0", "resolved": f"https://registry.npmjs.org/pkg{i}/-/pkg{i}-1.{i}.0.tgz",
                                     "integrity": "sha512-" + "A" * 86} for i in range(500)}
    write(root / "package-lock.json", {"name": "tinygpt", "lockfileVersion": 3, "packages": deps})
    write(root / "static" / "app.min.js", "var a=1;" * 6000)
    write(root / "static" / "bundle.js", ";".join(f"function f{i}(a,b){{return a+b*{i}}}" for i in range(3000)))
    write(root / "data" / "points.csv", "".join(f"{i},{i * i},{i % 7}\n" for i in range(5000)))
    write(root / "node_modules" / "left-pad" / "index.js", "module.exports = (s, n) => s.padStart(n);\n")
    return root


class Notes(list):
    def __call__(self, message: str) -> None:
        self.append(message)


def labels(specs, **kwargs) -> list[str]:
    return [doc.label for doc in iter_documents(specs, **kwargs)]


# ---------------------------------------------------------------- notebooks

def test_notebook_reads_as_cells_with_short_text_outputs(tmp_path):
    path = tmp_path / "nb.ipynb"
    write(path, notebook(long_output=400))
    text = read_text([str(path)])
    assert text.startswith("# %% [markdown]\n# Training curves\n")
    assert "# %%\nimport matplotlib.pyplot as plt\n" in text
    assert "# %% [output]\nfinal loss 2.1" in text
    assert "[image output]" not in text or "<Figure size 640x480>" in text  # text/plain wins over the image
    assert "Text(0.5, 1.0, 'loss')" in text and "<div>" not in text
    assert "more lines of output cut]" in text and "step 399" not in text
    assert len(text) < 3000  # of a 270 KB notebook


def test_notebook_image_only_output_is_one_marker(tmp_path):
    nb = notebook()
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            out.get("data", {}).pop("text/plain", None)
    text = "".join(render(nb))
    assert "[image output]" in text and "[html output]" in text
    assert "iVBOR" not in text and len(text) < 600


def test_broken_notebook_skipped_in_a_walk_refused_when_named(tmp_path):
    write(tmp_path / "d" / "bad.ipynb", '{"cells": [')
    write(tmp_path / "d" / "a.md", "text\n")
    notes = Notes()
    assert labels([str(tmp_path / "d")], note=notes) == [f"{tmp_path}/d/a.md"]
    assert notes == [f"skipped {tmp_path}/d/bad.ipynb (invalid notebook)"]
    with pytest.raises(InputError, match=r"bad.ipynb' is not a readable notebook") as caught:
        read_text([str(tmp_path / "d" / "bad.ipynb")])
    assert caught.value.exit_code == EXIT_INPUT and "\n" not in str(caught.value)


def test_cli_names_a_broken_notebook_in_one_line(cli_in, tmp_path):
    write(tmp_path / "bad.ipynb", "not json")
    code, out, err = cli_in("ask", str(tmp_path / "bad.ipynb"), "what?")
    assert code == EXIT_INPUT and one_line_error(err) and "not a readable notebook" in err, err


# ---------------------------------------------------------------- default skips

def test_walk_skips_what_buries_the_code_with_one_note(repo, monkeypatch):
    monkeypatch.chdir(repo.parent)
    notes = Notes()
    assert labels(["tinygpt"], note=notes) == [
        "tinygpt/README.md", "tinygpt/analysis.ipynb", "tinygpt/config.json", "tinygpt/docs/notes.md",
        "tinygpt/model.py",
    ]
    assert len(notes) == 1, notes
    note = notes[0]
    assert note.startswith("skipped 4 files and 1 folder by default (")
    for part in ("1 lock file 11", "2 minified files 15", "1 data file 7", "tinygpt/node_modules/"):
        assert part in note, note
    assert "--include" in note


def test_read_text_of_the_repo_is_close_to_its_hand_written_text(repo, default_model_dir, monkeypatch):
    from longchat.runtime.loader import load_tokenizer

    monkeypatch.chdir(repo.parent)  # labels as a user typing `tinygpt` sees them

    tok = load_tokenizer("default")
    count = lambda text: len(tok.encode(text, add_special_tokens=False))
    hand = count(HAND_PY) + count(HAND_MD) + count(NOTES_MD) + sum(count(source) for _, source in CELLS)
    read = count(read_text(["tinygpt"], note=lambda m: None))
    everything = count(read_text(["tinygpt"], note=lambda m: None,
                                 select=Selection(include=("*",))))
    print(f"hand-written {hand:,} tokens, read {read:,}, with every default skip read {everything:,}")
    assert hand <= read <= 1.5 * hand, (hand, read)
    assert everything > 10 * read


@pytest.mark.parametrize("name, content, kind", [
    ("yarn.lock", "x\n", "lock file"),
    ("Cargo.lock", "x\n", "lock file"),
    ("go.sum", "x\n", "lock file"),
    ("vendor.min.css", "a{}", "minified file"),
    ("app.js.map", "{}", "generated file"),
    ("api_pb2.py", "x = 1\n", "generated file"),
    ("gen.go", "// Code generated by protoc-gen-go. DO NOT EDIT.\n" + "var x = 1\n" * 40, "generated file"),
    ("bundle.js", "a;" * 5000, "minified file"),
    ("big.json", json.dumps([{"id": i, "name": f"row {i}"} for i in range(2000)]), "data file"),
    ("rows.jsonl", '{"a": 1}\n' * 5000, "data file"),
    ("weights.npy", b"\x93NUMPY", "data file"),
    ("config.json", '{"debug": true}', None),
    ("small.csv", "a,b\n1,2\n", None),
    ("essay.md", ("A long paragraph on one line. " * 200 + "\n") * 5, None),
    ("main.py", "def main():\n    return 1\n" * 30, None),
    ("logo.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40, None),  # binary: the reader's own note
])
def test_default_skips(tmp_path, name, content, kind):
    path = tmp_path / name
    write(path, content)
    from longchat.sources.registry import reader_for

    assert skipped_file(path, path.stat().st_size, text=reader_for(path).name == "text") == kind


def test_files_named_directly_are_always_read(repo):
    text = read_text([str(repo / "package-lock.json"), str(repo / "static" / "app.min.js")])
    assert "lockfileVersion" in text and "var a=1;" in text


@pytest.mark.parametrize("folder", ["node_modules", ".venv", "__pycache__", "dist", "vendor", "third_party",
                                    "pkg.egg-info"])
def test_vendored_folders_are_skipped(tmp_path, folder):
    write(tmp_path / "r" / folder / "x.py", "x = 1\n")
    write(tmp_path / "r" / "main.py", "y = 2\n")
    notes = Notes()
    assert labels([str(tmp_path / "r")], note=notes) == [f"{tmp_path}/r/main.py"]
    assert notes == [f"skipped 1 folder by default ({tmp_path}/r/{folder}/): --include PATTERN to read them "
                     f"(e.g. --include '*.csv')"]


# ---------------------------------------------------------------- --include / --exclude

def test_include_reads_what_is_skipped_by_default(repo, monkeypatch):
    monkeypatch.chdir(repo.parent)
    notes = Notes()
    found = labels(["tinygpt"], note=notes, select=Selection(include=("*.csv", "node_modules/")))
    assert "tinygpt/data/points.csv" in found and "tinygpt/node_modules/left-pad/index.js" in found
    assert "tinygpt/package-lock.json" not in found
    assert "1 lock file" in notes[0] and "data file" not in notes[0] and "node_modules" not in notes[0]


def test_exclude_leaves_out_more(repo, monkeypatch):
    monkeypatch.chdir(repo.parent)
    found = labels(["tinygpt"], note=lambda m: None, select=Selection(exclude=("docs/", "*.ipynb")))
    assert found == ["tinygpt/README.md", "tinygpt/config.json", "tinygpt/model.py"]
    # anchored to the walked folder, as in a .gitignore at its top
    assert labels(["tinygpt"], note=lambda m: None, select=Selection(exclude=("/model.py",))) == [
        "tinygpt/README.md", "tinygpt/analysis.ipynb", "tinygpt/config.json", "tinygpt/docs/notes.md"]
    # a named file too
    assert labels(["tinygpt/model.py", "tinygpt/README.md"], select=Selection(exclude=("*.md",))) == ["tinygpt/model.py"]


def test_exclude_beats_include(repo, monkeypatch):
    monkeypatch.chdir(repo.parent)
    found = labels(["tinygpt"], note=lambda m: None, select=Selection(include=("*.csv",), exclude=("data/",)))
    assert not any("points.csv" in f for f in found)


def test_selecting_is_what_every_reader_walks_with(repo, monkeypatch):
    from longchat.memory.encode import collect_sources

    monkeypatch.chdir(repo.parent)
    with selecting(Selection(exclude=("*.md", "*.ipynb"))):
        assert [s.label for s in collect_sources(["tinygpt"], note=lambda m: None)] == [
            "tinygpt/config.json", "tinygpt/model.py"]
        assert "### File: tinygpt/README.md" not in read_text(["tinygpt"], note=lambda m: None)
    assert "### File: tinygpt/README.md" in read_text(["tinygpt"], note=lambda m: None)
    assert len(labels(["tinygpt"], select=EVERYTHING)) == 10


@pytest.mark.parametrize("patterns", [{"exclude": ("\\",)}, {"include": ("!",)}, {"include": ("",)}])
def test_bad_pattern(patterns):
    with pytest.raises(BadPattern) as caught:
        Selection(**patterns)
    assert caught.value.exit_code == EXIT_USAGE and "\n" not in str(caught.value)


@pytest.mark.parametrize("command", [["ask", "{repo}", "q"], ["ingest", "{repo}"], ["compress", "{repo}"],
                                     ["summarize", "{repo}"], ["chat", "--file", "{repo}"]])
def test_bad_pattern_on_each_command_is_one_line_and_exit_2(cli_in, repo, command):
    args = [a.format(repo=repo) for a in command]
    code, out, err = cli_in(*args, "--exclude", "foo\\")
    assert code == EXIT_USAGE and one_line_error(err) and "--exclude 'foo\\\\'" in err, err
    code, _, err = cli_in(args[0], "--help")
    assert "--include" in err + _ and "--exclude" in err + _


def test_cli_reads_a_repository_as_its_hand_written_text(cli, repo):
    """As a user meets it: `compress --json` counts the tokens it read with the model's tokenizer."""
    code, out, err = cli("compress", str(repo), "--json", "--rate", "0.9", "--exclude", "docs/", timeout=600)
    assert code == 0, err
    read = json.loads(out)["tokens_in"]
    assert "skipped 4 files and 1 folder by default (" in err and "1 lock file" in err, err
    assert "Notes" not in json.loads(out)["text"]  # excluded
    print(f"compress --json read {read:,} tokens")
    assert read < 1500, read  # hand-written ~700; the lock file alone is ~40k, the image ~130k


# ---------------------------------------------------------------- the cost line

def test_cost_line_arithmetic():
    from longchat.memory.speed import cost_line

    assert cost_line(232_818, 95.0, 5_800_000_000, True) == \
        "reading 232,818 tokens: about 41 min at this machine's 95 tok/s, 5.8 GB on disk"
    assert cost_line(1_000_000, 95.0, 25e9, True) == \
        "reading 1,000,000 tokens: about 2 h 55 min at this machine's 95 tok/s, 25.0 GB on disk"
    assert cost_line(300, None, 1200, False) == \
        "reading 300 tokens: time unknown (speed not measured yet on this machine), 1.2 KB of blocks, not kept"


def test_ingest_says_the_cost_first_from_the_recorded_speed(cli_in, reuse_model, home, tmp_path):
    from longchat.memory import speed

    write(tmp_path / "in" / "a.md", HAND_MD)
    write(tmp_path / "in" / "model.py", HAND_PY)
    code, out, err = cli_in("ingest", str(tmp_path / "in"), "--name", "first", "--profile", "infllm")
    assert code == 0, err
    assert "time unknown (speed not measured yet on this machine)" in err, err
    records = json.loads(speed.speeds_file().read_text())
    (key, record), = records.items()
    assert key.startswith(f"{reuse_model.name}|") and record["tok_s"] > 0

    records[key] = {"tok_s": 50.0, "tokens": 10**6, "at": 0}  # a long, trusted run's speed
    speed.speeds_file().write_text(json.dumps(records))
    code, out, err = cli_in("ingest", str(tmp_path / "in"), "--name", "second", "--profile", "infllm")
    assert code == 0, err
    line = next(line for line in err.splitlines() if "reading " in line)
    tokens = int(line.split("reading ")[1].split(" tokens")[0].replace(",", ""))
    encoded = int(err.split("encoded ")[1].split(" tokens")[0].replace(",", ""))
    assert tokens == encoded
    assert f"about {max(1, round(tokens / 50))} s at this machine's 50 tok/s" in line, line
    assert line.endswith("on disk") and err.index(line) < err.index("encoded ")
    assert json.loads(speed.speeds_file().read_text())[key]["tok_s"] == 50.0  # a short run keeps the long one's


def test_stored_bytes_match_the_block_files(reuse_model, home, tmp_path):
    """The disk figure: blocks x layers x (K, V and representatives) as the block files hold them."""
    from longchat import memory
    from longchat.api import open_runner

    runner = open_runner("infllm", overrides=["infllm.n_local=64", "infllm.block_size=16", "infllm.n_init=4",
                                                  "context.prefill_chunk=32", "context.final_chunk=32"])
    write(tmp_path / "t.md", HAND_MD)
    result = memory.ingest(runner, [str(tmp_path / "t.md")], name="sized")
    strategy = runner.engine.strategy.memory_strategy(result.tokens)[0]
    blocks = sum(os.path.getsize(p) for p in (result.memory.path).rglob("*")
                 if p.suffix in (".kv", ".repr"))
    assert blocks > 0 and strategy.stored_bytes(result.tokens) == blocks
