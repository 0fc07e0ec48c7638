"""The compiled one-token step (runtime/step.py, `[runtime] compile = "on"`): the same tokens as
the eager step, and a one-line fallback where torch.compile cannot compile."""

from __future__ import annotations

import pytest
import torch
from tiny_models import make_tiny

from longchat.context import strategy_class
from longchat.profile import load_profile
from longchat.runtime.config import ModelConfig
from longchat.runtime.loader import load_decoder
from longchat.runtime.rope import Rope
from longchat.runtime.step import compile_step


def greedy(decoder, cfg, prompt: torch.Tensor, n: int) -> tuple[list[int], torch.Tensor]:
    """Prefill `prompt` in two chunks, then `n` one-token steps: the tokens and their logits."""
    strategy = strategy_class("full")(cfg, Rope(cfg.hf))
    half = prompt.shape[1] // 2
    decoder.forward(prompt[:, :half], strategy, logits="none")
    logits = [decoder.forward(prompt[:, half:], strategy)]
    tokens = [int(logits[-1].argmax())]
    for _ in range(n):
        logits.append(decoder.forward(torch.tensor([[tokens[-1]]]), strategy))
        tokens.append(int(logits[-1].argmax()))
    return tokens, torch.cat(logits)


@pytest.mark.parametrize("family,fmt", [("llama-bias", "fp32"), ("qwen3", "int4")])
def test_the_compiled_step_gives_the_eager_tokens(family, fmt, tmp_path, monkeypatch):
    import transformers

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    folder = make_tiny(family, tmp_path / family)
    cfg = ModelConfig.from_hf(transformers.AutoConfig.from_pretrained(folder))
    decoder = load_decoder(folder, cfg, torch.device("cpu"), torch.float32, fmt)
    prompt = torch.randint(0, cfg.vocab_size, (1, 40), generator=torch.Generator().manual_seed(1))
    eager_tokens, eager_logits = greedy(decoder, cfg, prompt, 12)
    notes = []
    assert compile_step(decoder, "on", notes.append), notes
    assert decoder.step is not None and "compiling the decode step" in notes[0]
    tokens, logits = greedy(decoder, cfg, prompt, 12)
    assert tokens == eager_tokens
    assert torch.allclose(logits, eager_logits, rtol=1e-4, atol=1e-4 if fmt == "fp32" else 2e-2)
    compile_step(decoder, "off", notes.append)
    assert decoder.step is None


def test_compile_is_a_profile_setting_with_a_short_form():
    assert load_profile("auto").runtime.compile == "off"
    assert load_profile("auto", ["model.compile=on"]).runtime.compile == "on"


def test_without_a_compiler_ask_says_so_in_one_line_and_answers_the_same(cli, tiny_chat_model, tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_text("The lighthouse keeper's boat is painted green. " * 20)
    ask = ("ask", doc, "What colour is the boat?", "--model", tiny_chat_model, "--profile", "full", "-n", "8")
    code, eager, err = cli(*ask)
    assert code == 0, err
    code, out, err = cli(*ask, "--set", "model.compile=on", timeout=600, CXX=str(tmp_path / "no-such-compiler"),
                         TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "inductor"))
    assert code == 0, err
    unavailable = [line for line in err.splitlines() if "torch.compile is unavailable here" in line]
    assert len(unavailable) == 1 and "decoding without it" in unavailable[0]
    assert "Traceback" not in err
    assert out == eager
