"""Streaming detokenisation (`runtime.generate.Detokenizer`): the deltas join up to the whole
reply's decode for the byte-level BPE of the bundled SmolLM2 (as Qwen's) and for a Llama-style
SentencePiece tokenizer, on both paths (a fast tokenizer's `DecodeStream`, the generic window
for any other), and each token costs the same however long the reply already is."""

from __future__ import annotations

import pytest

from longchat.runtime.generate import Detokenizer
from tiny_models import llama_style_tokenizer

# Multi-byte characters of every length (accents, CJK, emoji with a skin tone, a ZWJ family, a
# flag), leading spaces, blank lines, tabs and indentation.
TEXT = (" Héllo wörld! Ça va? naïve café — déjà vu.\n\n  indented line\tand a tab\n"
        "日本語のテキストと中文。 👍🏽 😀 👩‍👩‍👧 🇫🇷 done.\n   trailing")


@pytest.fixture(scope="module")
def smollm2(default_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(default_model_dir)


@pytest.fixture(scope="module")
def llama():
    # Trained without the CJK and emoji: they are spelt in byte tokens, several to a character.
    return llama_style_tokenizer(["The quick brown fox jumps over the lazy dog.", "Ça va? naïve café, déjà vu.",
                                  "Hello world: an indented line and a tab, then trailing spaces."] * 8)


@pytest.fixture(params=["smollm2", "llama"])
def tokenizer(request):
    return request.getfixturevalue(request.param)


class PlainDecode:
    """A tokenizer that only decodes (no fast backend: the generic scheme), counting the ids
    each call receives."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.sizes: list[int] = []

    def decode(self, ids, skip_special_tokens=False):
        self.sizes.append(len(ids))
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)


def reply_ids(tok) -> list[int]:
    """A reply as a model writes it: text, a special token inside it, the end-of-turn token."""
    special = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    words = tok.encode(TEXT, add_special_tokens=False)
    return words[:20] + [special] + words[20:] + [tok.eos_token_id]


@pytest.mark.parametrize("path", ["fast", "generic"])
def test_deltas_join_up_to_the_whole_decode(tokenizer, path):
    ids = reply_ids(tokenizer)
    whole = tokenizer.decode(ids, skip_special_tokens=True)
    assert whole in (TEXT, TEXT[1:])  # (a Llama-style decode drops the first space)
    detok = Detokenizer(tokenizer if path == "fast" else PlainDecode(tokenizer))
    deltas = [detok.push(i) for i in ids]
    assert "".join(deltas) == detok.emitted == whole
    assert detok.ids == ids
    assert not any("\ufffd" in d for d in deltas)  # no character split across deltas


def test_each_token_costs_the_same_however_long_the_reply(smollm2, monkeypatch):
    ids = reply_ids(smollm2) * 40  # 3,360 tokens
    plain = PlainDecode(smollm2)
    detok = Detokenizer(plain)
    for i in ids:
        detok.push(i)
    whole = smollm2.decode(ids, skip_special_tokens=True)
    assert detok.emitted == whole
    # Two decodes a token, each of the few ids since the last delta (here at most 6: a flag
    # or a ZWJ emoji spans several byte-level tokens), never of the reply so far.
    assert len(plain.sizes) == 2 * len(ids) and max(plain.sizes) <= 12

    # A fast tokenizer streams in `tokenizers` and never decodes through transformers at all.
    def whole_decode(*args, **kwargs):
        raise AssertionError("decoded through transformers")

    monkeypatch.setattr(type(smollm2), "decode", whole_decode)
    detok = Detokenizer(smollm2)
    assert "".join(detok.push(i) for i in ids) == whole


def test_a_stray_byte_does_not_stop_the_stream(llama):
    """An ASCII byte token then a lone UTF-8 lead byte: byte fallback respells the pair as two
    U+FFFD once the next token comes, after "A" went out; `DecodeStream` gives up there and the
    generic scheme carries on from the last delta, spacing intact."""
    vocab = llama.get_vocab()
    ids = [vocab["<0x41>"], vocab["<0xF0>"], vocab["é"], *llama.encode(" the lazy dog", add_special_tokens=False)]
    detok = Detokenizer(llama)
    assert "".join(detok.push(i) for i in ids) == "A\ufffdé the lazy dog"
    assert llama.decode(ids) == "\ufffd\ufffdé the lazy dog"  # (what the whole decode says instead)
