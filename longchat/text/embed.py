"""Sentence vectors for session recall, offline: WordLlama's static token embeddings.

The `wordllama` wheel ships a 32,000 x 256 token-embedding table (trained so that averaged
rows compare sentences) and its tokenizer. A sentence's vector is the mean of the rows of its
content words' tokens (stop words left out), scaled to unit length, so cosine similarity is a
dot product. No model runs: embedding a message takes microseconds, which is what lets every
turn index what is new. The package is read as data (its two files); it is never imported.

Measured on the session paraphrase set (`python bench/sessions.py OUT --only recall`;
docs/sessions.md): questions that share no content word with the fact they ask about find it
in the top 3 for 23 of 25 with these vectors, against 6 of 25 for the bundled SmolLM2's best
mean-pooled layer.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

from longchat.text.retrieval import WORD
from longchat.text.words import STOPWORDS, content_words

WEIGHTS = "weights/l2_supercat_256.safetensors"
TOKENIZER = "tokenizers/l2_supercat_tokenizer_config.json"


class StaticEmbedder:
    """Unit-length vectors of texts: the mean token embedding of their content words."""

    name = "wordllama-l2-supercat-256/content-words"

    def __init__(self, folder: Path):
        from safetensors import safe_open
        from tokenizers import Tokenizer

        with safe_open(str(folder / WEIGHTS), framework="np") as f:
            self.table = f.get_tensor("embedding.weight").astype(np.float32)
        self.tokenizer = Tokenizer.from_file(str(folder / TOKENIZER))
        self.special = set(self.tokenizer.get_added_tokens_decoder())  # <unk>, <s>, </s>: no meaning
        self.dim = self.table.shape[1]

    def embed(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) float32, each row of unit length (zeros for a text with no tokens)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        for row, enc in enumerate(self.tokenizer.encode_batch([_content(t) for t in texts])):
            ids = [i for i in enc.ids if i not in self.special]
            if ids:
                v = self.table[ids].mean(axis=0)
                norm = float(np.linalg.norm(v))
                if norm > 0:
                    out[row] = v / norm
        return out


def _content(text: str) -> str:
    """The text's content words (the whole text when it has none): "What is my job?" -> "job"."""
    words = [w for w in WORD.findall(text) if w.lower() not in STOPWORDS]
    return " ".join(words) if words else text


def package_folder() -> Path | None:
    """Where the installed `wordllama` package keeps its files, or None (found without importing it)."""
    spec = importlib.util.find_spec("wordllama")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0])
    return folder if (folder / WEIGHTS).is_file() and (folder / TOKENIZER).is_file() else None


@lru_cache(maxsize=1)
def default_embedder() -> StaticEmbedder | None:
    """The embedder recall uses, loaded once per process (~0.2 s); None when `wordllama` is missing."""
    folder = package_folder()
    return StaticEmbedder(folder) if folder is not None else None


def meaning_scores(lines: list[str], question: str, embedder=None) -> np.ndarray | None:
    """The cosine of each line's static vector with the question's; None without vectors
    installed or without content words in the question."""
    embedder = embedder or default_embedder()
    if embedder is None or not content_words(question):
        return None
    return embedder.embed(lines) @ embedder.embed([question])[0]


def nearest_lines(lines: list[str], question: str, k: int, budget: int, count, embedder=None) -> list[int]:
    """Indexes, in the input's order, of up to `k` of `lines` nearest `question` by meaning
    (cosine of static vectors), best first until `budget` tokens (`count(line)`) are used; a
    line longer than what is left is passed over. [] without vectors or content words."""
    scores = meaning_scores(lines, question, embedder)
    if scores is None:
        return []
    taken, used = [], 0
    for i in np.argsort(-scores, kind="stable"):
        if len(taken) == k or scores[i] <= 0:
            break
        n = count(lines[i])
        if used + n <= budget:
            taken.append(int(i))
            used += n
    return sorted(taken)
