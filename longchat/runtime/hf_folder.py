"""A transformers model folder read without importing transformers: `config.json` and a fast
tokenizer (`tokenizer.json`, `tokenizer_config.json`, the chat template).

Why: importing transformers' config and tokenizer classes pulls in torch.distributed, sympy and
its hub-kernel integrations, ~100 MiB of resident memory and ~1.5 s of start-up that every
command paid before reading a weight (docs/decode.md). What longchat asks of a config is a dozen
fields and of a tokenizer five calls, so it reads them itself where that is exact, and leaves
the rest to transformers (`read_config` and `read_tokenizer` return None): scaled RoPE
(transformers' initialisers compute the frequencies), configs that leave a field to a family
default, tokenizers without a `tokenizer.json`, templates with transformers-only tags.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

# What `ModelConfig.from_hf` and `Rope` read; a config.json without one of these leaves it to a
# family default in transformers, so the folder goes to transformers instead.
_NEEDED = ("model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
           "intermediate_size", "rms_norm_eps", "max_position_embeddings", "tie_word_embeddings")
# Fields whose absence transformers fills the same way for every family we run.
_DEFAULTS = {"hidden_act": "silu", "attention_bias": False, "mlp_bias": False, "sliding_window": None}


def read_config(folder: Path) -> SimpleNamespace | None:
    """config.json as attributes, in the shape of a transformers config (`rope_parameters`),
    or None where transformers should read it (see the module's doc)."""
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or any(key not in data for key in _NEEDED):
        return None
    if data.get("sliding_window") and "use_sliding_window" not in data and data["model_type"] != "mistral":
        return None  # Qwen's default is off, Mistral's on: leave it to the family's class
    rope = data.get("rope_parameters") or {}
    scaling = data.get("rope_scaling") or {}
    kind = rope.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    theta = rope.get("rope_theta", data.get("rope_theta"))
    if kind != "default" or theta is None or float(rope.get("partial_rotary_factor", 1.0) or 1.0) != 1.0:
        return None
    cfg = SimpleNamespace(**{**_DEFAULTS, **data})
    cfg.rope_parameters = {"rope_type": "default", "rope_theta": float(theta)}
    return cfg


def as_transformers(cfg):
    """A transformers config with `cfg`'s fields (for transformers' RoPE initialisers); a
    transformers config is returned as it is."""
    if not isinstance(cfg, SimpleNamespace):
        return cfg
    from transformers import AutoConfig

    fields = dict(vars(cfg))
    return AutoConfig.for_model(fields.pop("model_type"), **fields)


def _token(value) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or {"content": ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


class FastTokenizer:
    """The part of a transformers fast tokenizer longchat uses, over `tokenizers.Tokenizer`.

    `backend_tokenizer` is the `tokenizers.Tokenizer` itself (streaming detokenisation steps it).
    """

    def __init__(self, backend, config: dict, chat_template: str | None):
        self.backend_tokenizer = backend
        self.chat_template = chat_template
        self.clean_up_tokenization_spaces = bool(config.get("clean_up_tokenization_spaces", False))
        self.special = {name: _token(config.get(name)) for name in
                        ("bos_token", "eos_token", "unk_token", "pad_token")}
        self.eos_token = self.special["eos_token"]
        self.eos_token_id = backend.token_to_id(self.eos_token) if self.eos_token else None
        self._template = None

    def __len__(self) -> int:
        return self.backend_tokenizer.get_vocab_size(with_added_tokens=True)

    def __call__(self, text: str, add_special_tokens: bool = True, return_offsets_mapping: bool = False) -> dict:
        """{"input_ids", "attention_mask"[, "offset_mapping"]} of one text, as transformers gives them."""
        enc = self.backend_tokenizer.encode(text, add_special_tokens=add_special_tokens)
        out = {"input_ids": enc.ids, "attention_mask": enc.attention_mask}
        if return_offsets_mapping:
            out["offset_mapping"] = enc.offsets
        return out

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self.backend_tokenizer.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        text = self.backend_tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)
        return _clean_up(text) if self.clean_up_tokenization_spaces else text

    def batch_decode(self, sequences, skip_special_tokens: bool = False) -> list[str]:
        if self.clean_up_tokenization_spaces:
            return [self.decode(s, skip_special_tokens) for s in sequences]
        return self.backend_tokenizer.decode_batch([list(s) for s in sequences], skip_special_tokens=skip_special_tokens)

    def get_vocab(self) -> dict[str, int]:
        return self.backend_tokenizer.get_vocab(with_added_tokens=True)

    def get_added_tokens_decoder(self) -> dict:
        return self.backend_tokenizer.get_added_tokens_decoder()

    def apply_chat_template(self, messages: list[dict], tokenize: bool = False, add_generation_prompt: bool = False,
                            **extra) -> str | list[int]:
        """The chat template rendered as transformers renders it (a sandboxed Jinja2
        environment, trimmed blocks, `raise_exception`, `strftime_now`, `tojson`)."""
        if not self.chat_template:
            raise ValueError("this tokenizer has no chat template")
        if self._template is None:
            self._template = _environment().from_string(self.chat_template)
        text = self._template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                     **{k: v for k, v in self.special.items() if v is not None}, **extra)
        return self.encode(text, add_special_tokens=False) if tokenize else text


def read_tokenizer(folder: Path) -> FastTokenizer | None:
    """The folder's fast tokenizer, or None where transformers should load it (no
    tokenizer.json; a tokenizer class that rebuilds its pipeline; a template with tags only
    transformers knows)."""
    path = folder / "tokenizer.json"
    if not path.is_file():
        return None
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict) or config.get("tokenizer_class") not in _PLAIN_CLASSES:
        return None
    template = config.get("chat_template")
    jinja = folder / "chat_template.jinja"
    if template is None and jinja.is_file():
        template = jinja.read_text(encoding="utf-8")
    if template is not None and (not isinstance(template, str) or "{% generation" in template
                                 or "{%- generation" in template):
        return None  # a list of named templates, or assistant-mask tags
    from tokenizers import Tokenizer

    try:
        backend = Tokenizer.from_file(str(path))
    except Exception:  # a tokenizer.json this tokenizers release cannot read: transformers may
        return None
    return FastTokenizer(backend, config, template)


# Tokenizer classes whose transformers load uses tokenizer.json as it is (checked against
# transformers' own encodings and templates in tests/test_hf_folder.py). Family classes (Llama,
# GPT-2, Qwen2 ...) may rebuild their normaliser, pre-tokeniser or post-processor from
# tokenizer_config.json (add_bos_token, legacy SentencePiece spacing): transformers loads those.
_PLAIN_CLASSES = {"PreTrainedTokenizerFast", "TokenizersBackend"}


def _clean_up(text: str) -> str:
    # transformers' clean_up_tokenization: no space before punctuation and common contractions.
    for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                 (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(a, b)
    return text


def _environment():
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        from jinja2.exceptions import TemplateError

        raise TemplateError(message)

    def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env
