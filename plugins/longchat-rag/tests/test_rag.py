"""The rag plugin: BM25 ranking, the budget, keep-strings, and `ask --profile rag` end to end."""

from __future__ import annotations

import random

from longchat import plugins
from longchat.cli import main
from longchat.compress import methods
from longchat.profile import CompressSettings, load_profile
from longchat_rag import RagCompressor, bm25, words


def test_bm25_ranks_the_matching_passage_first():
    passages = [words(t) for t in ("The bakery sells rye bread.", "Marta Quell was elected mayor of Dunmore.",
                                   "Plants turn light into sugar.")]
    scores = bm25(words("Who was elected mayor of Dunmore?"), passages)
    assert scores.index(max(scores)) == 1 and scores[0] == scores[2] == 0


def test_registered_through_the_entry_point():
    assert "rag" in methods()
    profile = load_profile("rag")
    assert profile.compress.method == "rag" and profile.context.strategy == "full"
    assert any(p.name == "rag" and p.error is None for p in plugins.loaded())


class _Tok:
    """Whitespace 'tokenizer' for the budget test (the plugin only counts tokens)."""

    def encode(self, text, add_special_tokens=False):
        return text.split()


class _Model:
    tokenizer = _Tok()


def test_budget_keep_strings_and_reading_order():
    rng = random.Random(0)
    filler = ["river stone lantern harbour copper meadow signal winter".split()]
    paras = [" ".join(rng.choice(filler[0]) for _ in range(40)) + "." for _ in range(60)]
    paras[17] = "The vault code is 7419 and the owner is Mirela."
    paras[44] = "Remember the word zebra-crossing."
    rag = RagCompressor(_Model(), CompressSettings(method="rag", passage_tokens=50, target_tokens=300))
    result = rag.compress(["\n\n".join(paras)], question="What is the vault code?", keep=["zebra-crossing"])
    assert "7419" in result.text and "zebra-crossing" in result.text
    assert result.tokens_out <= 320
    assert result.text.index("7419") < result.text.index("zebra-crossing")  # reading order


def test_ask_with_the_rag_profile_answers_from_a_long_text(tmp_path, monkeypatch, capsys):
    import os

    from longchat.runtime.loader import resolve_model_dir

    folder = resolve_model_dir("default")[1]  # converted once per machine; linked into a fresh home
    models = tmp_path / "home" / "cache" / "models"
    models.mkdir(parents=True)
    os.symlink(folder, models / folder.name)
    monkeypatch.setenv("LONGCHAT_HOME", str(tmp_path / "home"))
    rng = random.Random(1)
    sentences = ["The ferry left the harbour at dawn.", "Gulls circled over the old pier.",
                 "A baker sold bread in the square.", "Rain fell on the slate roofs.", "The mill wheel turned slowly."]
    lines = [rng.choice(sentences) for _ in range(900)]
    lines.insert(600, "The secret password for the archive is BLUEHERON.")
    doc = tmp_path / "town.txt"
    doc.write_text("\n".join(lines) + "\n")
    code = main(["ask", str(doc), "What is the secret password for the archive?", "--profile", "rag", "-n", "16"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "rag" in err and "compressed" in err
    assert "BLUEHERON" in out.upper()
