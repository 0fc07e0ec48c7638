"""Reading a model folder without transformers (runtime.hf_folder): the same config, the same
token ids, the same chat prompt as transformers, and the default model's load never imports it."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from longchat.runtime.config import ModelConfig
from longchat.runtime.hf_folder import read_config, read_tokenizer

TEXTS = ["The keeper's log, 14 March 1872: wind NNE, café au lait.",
         "def f(x):\n    return {'a': [1, 2]}  # tabs\tand  spaces\n\n\n",
         "ünïcödé — 漢字 😀 <|im_end|> trailing ", ""]

CHATS = [
    [{"role": "user", "content": "Hello?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who kept the light?"},
     {"role": "assistant", "content": "Tom Hale."}, {"role": "user", "content": "And after him? café"}],
]


def test_the_bundled_tokenizer_reads_as_transformers_reads_it(default_model_dir):
    from transformers import AutoTokenizer

    ours, theirs = read_tokenizer(default_model_dir), AutoTokenizer.from_pretrained(default_model_dir)
    assert ours is not None
    for text in TEXTS:
        for special in (True, False):
            assert ours.encode(text, add_special_tokens=special) == theirs.encode(text, add_special_tokens=special)
        for offsets in (True, False):
            mine, hf = ours(text, return_offsets_mapping=offsets), theirs(text, return_offsets_mapping=offsets)
            assert {k: [tuple(x) if isinstance(x, (list, tuple)) else x for x in v] for k, v in mine.items()} == \
                {k: [tuple(x) if isinstance(x, (list, tuple)) else x for x in v] for k, v in hf.items()}
        ids = theirs.encode(text)
        for skip in (True, False):
            assert ours.decode(ids, skip_special_tokens=skip) == theirs.decode(ids, skip_special_tokens=skip)
    spans = [theirs.encode(t) for t in TEXTS]
    assert ours.batch_decode(spans, skip_special_tokens=True) == theirs.batch_decode(spans, skip_special_tokens=True)
    for chat in CHATS:
        for prompt in (True, False):
            assert (ours.apply_chat_template(chat, tokenize=False, add_generation_prompt=prompt)
                    == theirs.apply_chat_template(chat, tokenize=False, add_generation_prompt=prompt))
    assert ours.eos_token_id == theirs.eos_token_id and ours.get_vocab() == theirs.get_vocab()


def test_configs_read_as_transformers_reads_them(tiny_dirs):
    from transformers import AutoConfig

    read = 0
    for family, folder in tiny_dirs.items():
        ours = read_config(folder)
        if family == "llama3-scaled":
            assert ours is None  # scaled RoPE: transformers' initialisers compute it
            continue
        assert ours is not None, family
        mine, theirs = ModelConfig.from_hf(ours), ModelConfig.from_hf(AutoConfig.from_pretrained(folder))
        assert dataclasses.replace(mine, hf=None) == dataclasses.replace(theirs, hf=None), family
        read += 1
    assert read >= 5


def test_a_config_that_leaves_a_field_to_its_family_goes_to_transformers(tmp_path):
    import json

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2", "vocab_size": 10, "hidden_size": 8,
                                                      "num_hidden_layers": 1, "num_attention_heads": 2,
                                                      "intermediate_size": 16, "rms_norm_eps": 1e-6,
                                                      "max_position_embeddings": 64, "tie_word_embeddings": False,
                                                      "rope_theta": 1e6, "sliding_window": 32}))
    assert read_config(tmp_path) is None  # Qwen2's use_sliding_window defaults to off
    assert read_tokenizer(tmp_path) is None  # no tokenizer.json


def test_loading_the_default_model_never_imports_transformers(default_model_dir):
    code = ("import sys; from longchat.runtime.loader import load_model; m = load_model('default', note=print); "
            "print(type(m.tokenizer).__name__, 'transformers' in sys.modules, round(m.floor_mb))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    name, imported, floor = out.stdout.split()[-3:]
    assert name == "FastTokenizer" and imported == "False"
    assert float(floor) < 260  # torch alone is ~220 MiB; transformers' imports took it to ~330


@pytest.mark.parametrize("family", ["llama", "qwen3"])
def test_rope_of_a_plain_config_matches_transformers(tiny_dirs, family):
    import torch
    from transformers import AutoConfig

    from longchat.runtime.rope import Rope

    ours, theirs = Rope(read_config(tiny_dirs[family])), Rope(AutoConfig.from_pretrained(tiny_dirs[family]))
    positions = torch.arange(0, 300, 7)
    for a, b in zip(ours.cos_sin(positions, torch.float32), theirs.cos_sin(positions, torch.float32)):
        assert torch.equal(a, b)
