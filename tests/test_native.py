"""The C decode step (runtime/native.py): the torch step's tokens and logits for every family
and weight format it takes, a cache the torch path reads on, the torch path where it does not
apply, and one line (not a traceback) where it cannot be built."""

from __future__ import annotations

import pytest
import torch
from tiny_models import make_tiny

from longchat.context import strategy_class
from longchat.runtime import native
from longchat.runtime.config import ModelConfig
from longchat.runtime.loader import load_decoder
from longchat.runtime.rope import Rope

pytestmark = pytest.mark.skipif(native.library() is None, reason=f"no C decode step here: {native.unavailable}")


def run(decoder, cfg, prompt: torch.Tensor, steps: int, kv: str = "bf16") -> tuple[list[int], torch.Tensor]:
    """Prefill `prompt` in two chunks, `steps` one-token steps, then a 3-token chunk through the
    torch layers (which read the cache the steps wrote): the greedy tokens and every logit row."""
    strategy = strategy_class("full")(cfg, Rope(cfg.hf), kv=kv)
    half = prompt.shape[1] // 2
    decoder.forward(prompt[:, :half], strategy, logits="none")
    rows = [decoder.forward(prompt[:, half:], strategy)]
    tokens = [int(rows[-1].argmax())]
    for _ in range(steps):
        rows.append(decoder.forward(torch.tensor([[tokens[-1]]]), strategy))
        tokens.append(int(rows[-1].argmax()))
    rows.append(decoder.forward(torch.tensor([tokens[-3:]]), strategy))
    return tokens, torch.cat(rows)


def tiny(family: str, fmt: str, tmp_path, **overrides):
    import transformers

    folder = make_tiny(family, tmp_path / family, **overrides)
    cfg = ModelConfig.from_hf(transformers.AutoConfig.from_pretrained(folder))
    return cfg, load_decoder(folder, cfg, torch.device("cpu"), torch.float32, fmt)


@pytest.mark.parametrize("family,fmt,overrides", [
    ("llama", "int4", {}),                                                     # head_dim 16
    ("llama", "int4", dict(hidden_size=256, intermediate_size=512)),           # head_dim 64
    ("llama-bias", "int8", {}),                                                # every bias
    ("qwen2", "int4", {}),                                                     # qkv bias
    ("mistral", "bf16", dict(num_attention_heads=8, num_key_value_heads=2)),   # 4 query heads a KV head
])
def test_the_native_step_gives_the_torch_steps_tokens(family, fmt, overrides, tmp_path):
    cfg, decoder = tiny(family, fmt, tmp_path, **overrides)
    prompt = torch.randint(0, cfg.vocab_size, (1, 300), generator=torch.Generator().manual_seed(1))
    torch_tokens, torch_rows = run(decoder, cfg, prompt, 12)
    decoder.step = native.native_step(decoder)
    assert isinstance(decoder.step, native.NativeStep)
    tokens, rows = run(decoder, cfg, prompt, 12)
    assert tokens == torch_tokens
    # bf16 products either way; the C attention keeps its scores in fp32, torch's rounds them
    assert torch.allclose(rows, torch_rows, rtol=0, atol=0.02 * float(torch_rows.abs().max()))


def test_where_it_does_not_apply_the_torch_step_runs(tmp_path):
    cfg, decoder = tiny("qwen3", "int4", tmp_path)
    assert native.native_step(decoder) is None                        # per-head q/k norms: not in C
    cfg, decoder = tiny("llama", "fp32", tmp_path)
    assert native.native_step(decoder) is None                        # fp32 products take fp32
    cfg, decoder = tiny("llama", "int4", tmp_path)
    prompt = torch.randint(0, cfg.vocab_size, (1, 40), generator=torch.Generator().manual_seed(2))
    expected = run(decoder, cfg, prompt, 6, kv="fp32")
    decoder.step = native.native_step(decoder)
    assert not strategy_class("full")(cfg, Rope(cfg.hf), kv="fp32").offers_native()
    tokens, rows = run(decoder, cfg, prompt, 6, kv="fp32")            # an fp32 cache: torch attends
    assert tokens == expected[0] and torch.equal(rows, expected[1])


def test_the_bundled_model_decodes_natively_and_answers(cli):
    """The Quick start's question, natively and in torch: the same answer."""
    from pathlib import Path

    sample = Path(__file__).resolve().parent.parent / "longchat" / "samples" / "lighthouse.md"
    ask = ("ask", sample, "Who was the first keeper of Gull Rock Lighthouse?", "-n", "24", "--stats")
    code, out, err = cli(*ask)
    assert code == 0, err
    assert '"decode": "native"' in err and "Margaret Hale" in out
    code, torch_out, err = cli(*ask, LONGCHAT_NATIVE="0")
    assert code == 0, err
    assert '"decode": "torch"' in err and torch_out == out


def test_without_a_compiler_the_load_says_so_in_one_line(cli, tmp_path, home):
    (home / "cache" / "native").unlink()  # nothing built: this run must compile, and cannot
    doc = tmp_path / "doc.txt"
    doc.write_text("The boat is green. " * 10)
    code, out, err = cli("ask", doc, "What colour is the boat?", "-n", "8", "--stats", CC=str(tmp_path / "no-cc"))
    assert code == 0, err
    lines = [line for line in err.splitlines() if "C decode step is unavailable" in line]
    assert len(lines) == 1 and "no-cc" in lines[0] and "decoding with torch" in lines[0]
    assert '"decode": "torch"' in err and "Traceback" not in err


def test_the_c_source_ships_in_the_package():
    import tomllib
    from fnmatch import fnmatch
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["longchat"]
    shipped = native.SOURCE.relative_to(root / "longchat").as_posix()
    assert any(fnmatch(shipped, pattern) for pattern in data)
