"""The default profile finds one fact in ~8k tokens of real documentation prose (not the
needles template it was first tuned on): the bundled model, the real `ask` path. Both of
`auto`'s long-input readings answer it: BM25's best passages (the default when the question's
words match) and InfLLM's block memory over the whole input (`passages_past=0`).

Known limit, kept out of this test on purpose: in this haystack, "Who is the release manager
of the Harbor toolkit?" gets its block retrieved and pinned, yet the 135M reader answers
"Hugging Face" (from the chat template's default system prompt, which sits in the always-read
initial tokens); full attention over a 2k cut answers it right."""

from __future__ import annotations

import pytest

from longchat.bench.realtext import docstrings
from longchat.cli import main

FACT = "The backup servers of the archive team are housed in Tromso."
QUESTION = "Where are the backup servers of the archive team housed?"


@pytest.mark.parametrize("sets, says", [([], "reading its best"),
                                        (["--set", "strategy.passages_past=0"], "using infllm")])
def test_default_profile_finds_a_fact_in_8k_tokens_of_documentation(home, tmp_path, capsys, default_model_dir,
                                                                    sets, says):
    from transformers import AutoTokenizer

    text = docstrings(("argparse", "logging", "subprocess", "pathlib", "zipfile", "decimal"))
    tokenizer = AutoTokenizer.from_pretrained(default_model_dir)
    body = tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)[:8000])
    cut = body.find("\n\n", len(body) * 3 // 10) + 2
    path = tmp_path / "docs.txt"
    path.write_text(body[:cut] + FACT + "\n\n" + body[cut:])
    code = main(["ask", str(path), QUESTION, "-n", "24", "--no-cache", *sets])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert says in err  # past the effective window: passages, or the block memory, answered
    assert "Tromso" in out, out
