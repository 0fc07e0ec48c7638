"""Model specs resolve to folders, or fail with one clear message."""

from __future__ import annotations

import pytest
import torch

from longchat.errors import ModelError
from longchat.runtime.loader import load_model, pick_device, resolve_model_dir


def test_hub_id_offline_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ModelError, match="not in the local cache and HF_HUB_OFFLINE=1"):
        resolve_model_dir("someone/some-model")


@pytest.mark.parametrize("spec, message", [
    ("./no/such/model", "no such model"),
    ("pyproject.toml", "neither a model folder nor a .gguf file"),
])
def test_bad_specs(spec, message):
    with pytest.raises(ModelError, match=message):
        resolve_model_dir(spec)


def test_folder_without_config(tmp_path):
    with pytest.raises(ModelError, match="has no config.json"):
        resolve_model_dir(str(tmp_path))


def test_unsupported_family(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "gpt2", "vocab_size": 10}')
    with pytest.raises(ModelError, match="model type 'gpt2' is not supported; supported: llama"):
        load_model(str(tmp_path), note=lambda m: None)


def test_device_choice():
    assert pick_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="no CUDA device"):
            pick_device("cuda")
    with pytest.raises(ModelError, match="bad --device"):
        pick_device("toaster")


def test_default_model_loads_from_cache(home):
    model = load_model("default", note=lambda m: None)
    assert model.cfg.n_layers == 30 and model.cfg.n_kv_heads == 3 and model.cfg.head_dim == 64
    assert model.decoder.dtype == torch.float32
    assert model.tokenizer.eos_token == "<|im_end|>"
