"""The baseline most users reach for: retrieve the best passages (BM25), read them whole.

Registered as the compression method "rag" (so `ask`, `compress`, `chat --file` and
`longchat bench ... --compress` can all use it) and as the profile `rag`, which pairs it with
full attention: `longchat ask --profile rag book.txt "..."`, and
`longchat bench needles -p rag,infllm` compares it with InfLLM on the same prompts.

Documents are cut into passages of about `compress.passage_tokens` tokens at paragraph, line
or sentence breaks; each passage is scored by Okapi BM25 against the question's words (the
words, stop words and BM25 of `longchat.text.retrieval`, which `auto`'s passages use too); the
best passages are kept until the budget (`compress.target_tokens`, else `rate` x the input)
and put back in reading order.
Passages holding a `--keep` string always stay. Without a question there is nothing to
retrieve by: the start of the input is kept, with a note.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from longchat.compress import budget
from longchat.errors import InputError
from longchat.plugins import hookimpl
from longchat.text.retrieval import bm25, words

if TYPE_CHECKING:
    from longchat.compress import Result

BREAK = re.compile(r"\n\s*\n|\n|(?<=[.!?])\s+")


class RagCompressor:
    def __init__(self, model, settings, note=lambda m: None):
        self.tok = model.tokenizer
        self.s = settings
        self.note = note

    def _count(self, text: str) -> int:
        return len(self.tok.encode(text, add_special_tokens=False))

    def passages(self, text: str) -> list[tuple[str, int]]:
        """(text, tokens) pieces of about passage_tokens tokens, cut at the strongest break available."""
        pieces, out, buf, size = [], [], "", 0
        pos = 0
        for m in BREAK.finditer(text):
            pieces.append(text[pos:m.end()])
            pos = m.end()
        pieces.append(text[pos:])
        for piece in pieces:
            n = self._count(piece)
            if buf and size + n > self.s.passage_tokens:
                out.append((buf, size))
                buf, size = "", 0
            buf += piece
            size += n
        if buf.strip():
            out.append((buf, size))
        return [(p, n) for p, n in out if p.strip()]

    def compress(self, docs, *, question=None, labels=None, keep=(), rate=None, target_tokens=None, method=None,
                 progress=lambda done, total: None) -> Result:
        from longchat.compress import Result  # here: it imports torch, which loading the plugin need not

        start = time.perf_counter()
        found = [(d, p, n) for d, text in enumerate(docs) for p, n in self.passages(text)]
        items = [(d, p) for d, p, _ in found]
        sizes = [n for _, _, n in found]  # summed piece counts: within a token or two of the passage's
        total = sum(sizes)
        if not total:
            raise InputError("the input is empty")
        rate = self.s.rate if rate is None else rate
        target = budget.target_tokens(total, rate, self.s.target_tokens if target_tokens is None else target_tokens)
        if question and question.strip():
            scores = bm25(words(question), [words(p) for _, p in items])
            order = sorted(range(len(items)), key=lambda i: (-scores[i], i))
        else:
            self.note("rag without a question keeps the start of the input")
            order = list(range(len(items)))
        must = [i for i, (_, p) in enumerate(items) if any(k and k in p for k in keep)]
        chosen, used = set(must), sum(sizes[i] for i in must)
        for i in order:
            if used >= target:
                break
            if i not in chosen and used + sizes[i] <= target * 1.05:
                chosen.add(i)
                used += sizes[i]
        progress(total, total)
        parts, prev_doc = [], None
        for i in sorted(chosen):
            d, p = items[i]
            if d != prev_doc:
                parts.append(("\n\n" if parts else "") + (f"### File: {labels[d]}\n" if labels else ""))
                prev_doc = d
            else:
                parts.append("\n\n")
            parts.append(p.strip())
        text = "".join(parts)
        return Result(text=text, tokens_in=total, tokens_out=self._count(text), target=target,
                      seconds=time.perf_counter() - start, method="rag", passages_in=len(items),
                      passages_kept=len(chosen), ranking=order)


@hookimpl
def longchat_compressors():
    return [("rag", RagCompressor)]


@hookimpl
def longchat_profiles():
    return [Path(__file__).with_name("rag.toml")]
