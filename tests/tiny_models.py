"""Tiny random-weight checkpoints of each supported family, saved like real HF folders."""

from __future__ import annotations

from pathlib import Path

import torch

TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=300, max_position_embeddings=512)

FAMILIES = {
    "llama": ("LlamaConfig", {}),
    "llama3-scaled": ("LlamaConfig", {"rope_parameters": {
        "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 64}}),
    "llama-bias": ("LlamaConfig", {"attention_bias": True, "mlp_bias": True}),
    "mistral": ("MistralConfig", {"sliding_window": None}),
    "qwen2": ("Qwen2Config", {}),
    "qwen3": ("Qwen3Config", {"head_dim": 16}),
    "phi3": ("Phi3Config", {"pad_token_id": 0}),
}


def make_tiny(family: str, folder: Path, **overrides) -> Path:
    """Build, randomise and save a tiny model of `family` into `folder`; returns the folder."""
    import transformers

    cls_name, extra = FAMILIES[family]
    cfg = getattr(transformers, cls_name)(**{**TINY, **extra, **overrides})
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():  # norms start at 1 and biases at 0: randomise all
            p.add_(torch.randn_like(p) * 0.05)
    model.save_pretrained(folder)
    return folder


def llama_style_tokenizer(corpus: list[str]):
    """A small Llama-style fast tokenizer (SentencePiece BPE: `▁` for a space, the first one
    stripped on decode, UTF-8 byte fallback) trained on `corpus` in milliseconds; its vocabulary
    ends with the 256 `<0xNN>` byte tokens, so any text encodes."""
    import json

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaTokenizer

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"]))
    state = json.loads(bpe.model.__getstate__())
    vocab = state["vocab"]
    for byte in range(256):
        vocab.setdefault(f"<0x{byte:02X}>", len(vocab))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    return LlamaTokenizer(vocab=vocab, merges=merges)
