"""Prompt compression: budget arithmetic, units, rate control, keep-lists, ranking, a passkey.

The rate/keep/robustness tests run a tiny random-weight Llama with SmolLM2's tokenizer: its
scores are noise, which is what they need (the budget must hold whatever the scores are).
Ranking and the passkey use the real bundled model, because only a real model can rank.
"""

from __future__ import annotations

import json
import random

import pytest

from longchat.cli import main
from longchat.compress import budget
from longchat.compress.lingua import Compressor
from longchat.compress.units import assign_tokens, render, split_units
from longchat.api import open_runner
from longchat.profile import CompressSettings
from longchat.runtime.generate import Sampling

WORDS = ("river stone lantern harbour copper meadow signal winter orchard thunder velvet compass anchor "
         "ember quiet falcon").split()


def prose(n_words: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    sentences, words = [], 0
    while words < n_words:
        k = rng.randint(6, 14)
        sentences.append(" ".join(rng.choice(WORDS) for _ in range(k)).capitalize() + ".")
        words += k
    paragraphs = [" ".join(sentences[i:i + 5]) for i in range(0, len(sentences), 5)]
    return "\n\n".join(paragraphs)


# -- budget arithmetic ------------------------------------------------------------------------

def test_target_tokens_follows_rate_or_explicit_target():
    assert budget.target_tokens(1000, 0.25) == 250
    assert budget.target_tokens(1000, 0.25, target=300) == 300
    assert budget.target_tokens(1000, 0.25, target=5000) == 1000
    assert budget.target_tokens(3, 0.01) == 1
    assert budget.target_tokens(0, 0.5) == 0


def test_coarse_select_keeps_best_first_and_crosses_the_line():
    sizes = [100, 100, 100, 100]
    assert budget.coarse_select([2, 0, 3, 1], sizes, target=120, slack=1.25) == [2, 0]  # 150 >= 150
    assert budget.coarse_select([2, 0, 3, 1], sizes, target=100, slack=1.0) == [2]
    assert budget.coarse_select([1, 0], [10, 10], target=500, slack=1.25) == [1, 0]


def test_rank_offsets_run_from_plus_to_minus_dynamic():
    assert budget.rank_offsets(1, 0.3) == [0.0]
    assert budget.rank_offsets(3, 0.3) == pytest.approx([0.3, 0.0, -0.3])


@pytest.mark.parametrize("target", [50, 200, 377, 600])
def test_keep_ratios_add_up_to_the_target(target):
    free, forced = [200, 300, 100], [10, 0, 0]
    ratios = budget.keep_ratios(free, forced, budget.rank_offsets(3, 0.3), target)
    assert sum(f + r * n for f, r, n in zip(forced, ratios, free)) == pytest.approx(target, abs=0.5)
    assert ratios[0] >= ratios[1] >= ratios[2]  # better-ranked documents keep more
    assert all(0.0 <= r <= 1.0 for r in ratios)


def test_keep_ratios_when_forced_text_exceeds_the_budget():
    assert budget.keep_ratios([100], [80], [0.0], target=50) == [0.0]


def test_pick_units_lands_on_the_budget():
    keep = budget.pick_units([5.0, 1.0, 3.0, 4.0], [2, 2, 2, 2], budget=4)
    assert keep == [True, False, False, True]
    assert budget.pick_units([1.0, 2.0], [10, 1], budget=3) == [False, True]


# -- units ------------------------------------------------------------------------------------

def test_units_keep_numbers_code_lines_and_keep_strings_whole():
    text = "The pass key is 31415.\n\n```py\ndef f(x):\n    return x + 1\n```\nDr. Ada Lovelace wrote it."
    units = split_units(text, keep=["Ada Lovelace"])
    pieces = [text[u.start:u.end] for u in units]
    assert "31415." in pieces
    assert "    return x + 1" in pieces and "def f(x):" in pieces
    assert "Ada Lovelace" in pieces and [u.forced for u in units if text[u.start:u.end] == "Ada Lovelace"] == [True]
    assert [u.forced for u in units if text[u.start:u.end] == "```py"] == [True]


def test_render_keeps_line_breaks_of_what_it_drops():
    text = "one two\nthree four\n\nfive six"
    units = split_units(text)
    assert render(text, units, [True] * 6) == text
    # a dropped line break inside prose becomes a space (a token saved); a blank line stays
    assert render(text, units, [True, False, False, True, False, True]) == "one four\n\nsix"
    assert render(text, units, [True, True, False, False, False, False]) == "one two"


def test_unspaced_scripts_are_cut_at_token_bounds(default_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(default_model_dir)
    text = "长文本压缩需要在不破坏字符的情况下进行。这是第二句话，它也很长很长。"
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    units, owner = assign_tokens(split_units(text), text, enc["offset_mapping"])
    assert len(units) > 4
    assert sum(u.tokens for u in units) == len(enc["input_ids"])
    kept = render(text, units, [i % 2 == 0 for i in range(len(units))])
    kept.encode("utf-8")  # whole characters only
    assert set(kept) <= set(text)


# -- the compressor on a tiny model ------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_compressor(tiny_chat_model):
    runner = open_runner("full", str(tiny_chat_model))
    return Compressor(runner.model, CompressSettings(method="longllmlingua"))


@pytest.mark.parametrize("words,rate", [(230, 0.5), (230, 0.25), (4000, 0.3), (15000, 0.25)])
def test_rate_is_honoured_from_short_to_long_inputs(tiny_compressor, words, rate):
    result = tiny_compressor.compress([prose(words, seed=words)], question="Where is the anchor?", rate=rate)
    assert result.tokens_in >= words
    assert abs(result.ratio - rate) <= 0.1 * rate, result.as_dict()


def test_target_tokens_and_llmlingua_method(tiny_compressor):
    result = tiny_compressor.compress([prose(3000, 1)], target_tokens=700, method="llmlingua")
    assert abs(result.tokens_out - 700) <= 70
    assert result.method == "llmlingua"


def test_keep_strings_always_survive(tiny_compressor):
    text = prose(2000, 3)
    cut = len(text) // 3
    text = text[:cut] + " The vault code is 7-4-1-9 and the owner is Mirela Hasdeu. " + text[cut:]
    keep = ["7-4-1-9", "Mirela Hasdeu", "copper meadow"]
    result = tiny_compressor.compress([text], rate=0.1, keep=keep)
    for s in keep:
        assert s in result.text
    assert result.ratio < 0.2


def test_document_boundaries_and_headers_are_kept(tiny_compressor):
    docs = [prose(400, 4), prose(400, 5), "def main():\n    return 42\n"]
    result = tiny_compressor.compress(docs, labels=["a.txt", "b.txt", "c.py"], rate=0.5, question="What is c?")
    assert result.text.count("### File: ") >= 2
    for line in result.text.splitlines():
        if line.startswith("### File:"):
            assert line[len("### File: "):] in ("a.txt", "b.txt", "c.py")


def test_no_crash_on_odd_inputs(tiny_compressor):
    from longchat.errors import InputError

    with pytest.raises(InputError, match="empty"):
        tiny_compressor.compress(["", "   \n"])
    german = "Die Würde des Menschen ist unantastbar. Sie zu achten und zu schützen ist Verpflichtung. " * 20
    assert tiny_compressor.compress([german], rate=0.5).tokens_out > 0
    code = "\n".join(f"def f{i}(x):\n    return x * {i}\n" for i in range(150))
    out = tiny_compressor.compress(["```python\n" + code + "```\n"], rate=0.3)
    for line in out.text.splitlines():  # code lines are kept whole or not at all
        assert line in ("```python", "```") or line in code.splitlines()
    one_line = " ".join(["token"] * 6000)  # a single huge document without a line break
    assert abs(tiny_compressor.compress([one_line], rate=0.2).ratio - 0.2) < 0.02


def test_compress_command_prints_text_and_figures(home, tiny_chat_model, tmp_path, capsys):
    src = tmp_path / "notes.txt"
    src.write_text(prose(600, 6))
    code = main(["compress", str(src), "--rate", "0.4", "--compressor", str(tiny_chat_model), "--json",
                 "--keep", "harbour"])
    out, err = capsys.readouterr()
    assert code == 0, err
    record = json.loads(out)
    assert abs(record["ratio"] - 0.4) <= 0.04 and record["tokens_in"] > 600
    assert "compressed" in err and "kept" in err
    assert main(["compress", str(src), "--rate", "1.5", "--compressor", str(tiny_chat_model)]) != 0
    assert "expected the share of tokens to keep" in capsys.readouterr().err
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    assert main(["compress", str(empty), "--compressor", str(tiny_chat_model)]) != 0
    assert "empty" in capsys.readouterr().err


# -- the real model ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_runner(default_model_dir):
    return open_runner("full")


def test_question_aware_ranking_puts_the_answer_document_first(home, real_runner):
    docs = ["The bakery on Elm Street sells rye bread and cinnamon rolls every morning from six.",
            "Marta Quell was elected mayor of Dunmore in 1998 and served two terms.",
            "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen in plant leaves."]
    compressor = Compressor(real_runner.model, CompressSettings(method="longllmlingua"))
    result = compressor.compress(docs, question="Who was elected mayor of Dunmore?", rate=0.9)
    passage_doc = {i: d for i, d in enumerate([0, 1, 2])}
    assert passage_doc[result.ranking[0]] == 1
    assert result.text.startswith("Marta Quell")  # best first (with a question)


def test_a_passkey_survives_4x_compression(home, real_runner):
    """The benchmark's passkey prompt (1k tokens: five passages to rank), its haystack compressed
    4x, then answered; the key early and late."""
    import random as _random

    from longchat.bench.passkey import PASSKEY
    from longchat.bench.run import compress_prompt

    compressor = Compressor(real_runner.model, CompressSettings(method="longllmlingua", rate=0.25))
    for depth in (0.3, 0.8):
        prompt, key = PASSKEY.build_prompt(real_runner.tokenizer, 1024, depth, _random.Random(f"t{depth}"))
        squeezed, result = compress_prompt(compressor, PASSKEY, real_runner.tokenizer, prompt)
        assert abs(result.ratio - 0.25) <= 0.025
        assert str(key) in real_runner.tokenizer.decode(squeezed)
        real_runner.engine.reset()
        answer = real_runner.engine.generate_text(squeezed, Sampling(max_new_tokens=8))
        assert PASSKEY.score(answer, key), (answer, real_runner.tokenizer.decode(squeezed)[:400])


def test_ask_refuses_compress_with_a_memory(capsys):
    assert main(["ask", "--memory", "m", "question?", "--compress", "0.3"]) == 2  # a usage mistake
    assert "already encoded" in capsys.readouterr().err
