"""How a long input is read for one question: the one policy every door uses.

`ask`, `chat` (--file, /file, --memory, a pasted document), sessions, the server and remote
engines all hand the long input (its token ids) and the question to `choose`, which says
what the model reads:

    whole     the input fits what the model reads reliably (`auto`: the effective window; a remote
              engine's window): it is read in full, with full attention;
    passages  one passage holds `COVER` of the question's words: BM25's best
              passages (`passages_budget` tokens) are read alone with full attention;
    meaning   no passage does: the lines nearest the question's meaning (static word
              vectors), unless the question is about the whole input;
    memory    otherwise the whole input through InfLLM's block memory (encoded once, cached)
              with the question-time re-ranking, or for a remote engine, compressed.

The caller builds the prompt from the `Reading` (the text read in place of the input, and
the spans the answer is nudged to follow) and generates; nothing here runs the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from longchat.prompts import QUESTION
from longchat.runtime.generate import FAVOUR_BOOST, CopyGuard, sentence_breaks
from longchat.text.cite import Cited, cite, cite_lines
from longchat.text.embed import nearest_lines
from longchat.text.retrieval import best_passages
from longchat.text.words import about_the_whole

Note = Callable[[str], None]

GAP = "\n\n[...]\n\n"  # between passages read in place of the input
# Behaviour, not settings, since issue 40 (docs/settings.md: off, `auto` lost 2 prompts of 48 at
# 32k on both seeds of a fresh split): passages are read when one holds COVER of the question's
# content words, and those scoring under FLOOR of the best one's BM25 are left out.
COVER = 0.5
FLOOR = 0.5


@dataclass
class Reading:
    """What the model reads of a long input for one question."""

    how: str                    # whole | passages | meaning | memory | compressed | truncated
    input_tokens: int           # the long input's size (local tokenizer's tokens)
    text: str = ""              # passages / meaning: what is read in place of the input
    pieces: list[list[int]] = field(default_factory=list)  # their token ids (the answer is nudged to follow them)
    cited: list[Cited] = field(default_factory=list)       # where the text read came from
    encoded: int = 0            # memory: tokens encoded into blocks for this question (none when cached)
    spans: list[tuple[int, int]] = field(default_factory=list)  # passages: where they are in the input's ids

    @property
    def read_tokens(self) -> int:
        return sum(len(p) for p in self.pieces) if self.pieces else self.input_tokens

    def info(self) -> dict:
        """For `--stats`, the server's `longchat` field and `usage`."""
        out = {"read": self.how, "input_tokens": self.input_tokens, "read_tokens": self.read_tokens}
        if self.pieces:
            out["pieces"] = len(self.pieces)
        if self.cited:
            out["sources"] = [c.as_dict() for c in self.cited]
        if self.encoded:
            out["encoded_tokens"] = self.encoded
        return out

    def copy_guard(self, tokenizer) -> CopyGuard | None:
        """Once the answer runs 3 tokens as a piece read does, that piece's next token is nudged
        (the bundled model dropped a code's first letter: "9-9396" for "T9-9396")."""
        if not self.pieces or not FAVOUR_BOOST:
            return None
        return CopyGuard([], 0, favoured=self.pieces, boost=FAVOUR_BOOST,
                         breaks=sentence_breaks(tokenizer, self.pieces))


def params_of(runner):
    """The profile's [strategy] settings (auto's passages keys live there, local or remote)."""
    return runner.profile.strategy


def keeps_memory(runner) -> bool:
    """The profile reads past its window through InfLLM's block memory (auto, infllm)."""
    return not runner.remote and runner.engine.strategy.memory_params() is not None


def whole_limit(runner) -> int | None:
    """Prompt + reply tokens read whole; None when the profile has no other reading (full,
    streaming, the RoPE scalings: the input is read as it is, within the window)."""
    if runner.remote:
        return runner.window
    if not keeps_memory(runner):
        return None
    return getattr(params_of(runner), "full_up_to", 0)


def long_message_limit(runner) -> int | None:
    """A user message longer than this many tokens is a document in its own right: its body is
    read by the policy like an attached file, its last paragraph is the question. None: never
    (profiles without another reading)."""
    limit = whole_limit(runner)
    if limit is None:
        return None
    if not runner.remote:  # infllm reads whole what its local window holds
        limit = max(limit, getattr(params_of(runner), "n_local", 0))
    return max(256, limit - runner.profile.generation.max_new_tokens)


def split_message(text: str) -> tuple[str, str]:
    """(document, question) of a long message: the question is its last paragraph (without an
    `ask` frame's "Question:"), or its last line when that paragraph is long."""
    body, _, tail = text.rstrip().rpartition("\n\n")
    tail = tail.strip().removeprefix(QUESTION.format(question="").strip()).strip()
    if len(tail) > 1000 or not body.strip():
        body, _, tail = text.rstrip().rpartition("\n")
        tail = tail.strip()
    if not tail or len(tail) > 1000 or not body.strip():
        return text, ""
    return body, tail


def choose(runner, ids: list[int], start: int, question: str, *, note: Note = lambda m: None,
           budget: int | None = None, label: str | None = None) -> Reading | None:
    """Passages or the nearest lines of the input `ids[start:]` (a template head before it) for
    `question`, or None when neither is read (the caller reads the whole input with InfLLM, or
    compresses it for a remote engine). Says which on `note`. Only for inputs past
    `passages_past` (callers check `reads_passages`). `budget`: tokens at most (a remote
    engine's room). `label`: the source's name when the input has no "### File:" lines, for
    the citations (`Reading.cited`)."""
    params, tok = params_of(runner), runner.tokenizer
    budget = min(params.passages_budget, budget or params.passages_budget)
    decode = lambda spans: tok.batch_decode(spans, skip_special_tokens=True)  # noqa: E731
    size = len(ids) - start
    spans = best_passages(ids, question, decode, start, budget,
                          cover=COVER, floor=FLOOR)
    missed = f"auto: no passage holds {COVER:.0%} of the question's words"
    how, other = ("sending", "") if runner.remote else \
        ("reading", " (--set strategy.passages_past=0 reads it all with infllm)")
    if spans:
        pieces = [ids[a:b] for a, b in spans]
        n = sum(map(len, pieces))
        note(f"auto: the question's words match the {size:,}-token input; {how} its best {n:,} tokens "
             f"({len(spans)} passage{'s' * (len(spans) != 1)}, BM25) with full attention, as `rag` does{other}")
        cited = cite(lambda x: tok.decode(x, skip_special_tokens=True), ids, start, spans, label)
        return Reading("passages", size, GAP.join(e.strip() for e in decode(pieces)), pieces, cited, spans=spans)
    if (lines := _nearest_lines(runner, ids[start:], question, budget, label)):
        lines, cited = lines
        pieces = [encoded for _, encoded in lines]
        n = sum(map(len, pieces))
        note(f"{missed}; {how} the {len(lines)} lines nearest its meaning ({n:,} tokens of {size:,}, static "
             f"word vectors) with full attention" + ("" if runner.remote else
                                                     " (--set strategy.meaning_lines=0 reads it all with infllm)"))
        return Reading("meaning", size, "\n".join(text for text, _ in lines), pieces, cited)
    note(f"{missed}; " + (f"reading all {size:,} tokens with infllm" if not runner.remote else
                          f"the {size:,}-token input is past the engine's window"))
    return None


def reads_passages(runner, input_tokens: int) -> bool:
    """Whether `choose` is tried for an input this long (`passages_past`; 0 = never)."""
    past = getattr(params_of(runner), "passages_past", 0)
    return bool(past) and input_tokens > past


def _nearest_lines(runner, ids: list[int], question: str, budget: int,
                   label: str | None = None) -> tuple[list[tuple[str, list[int]]], list[Cited]] | None:
    """The input's lines nearest the question's meaning (`strategy.meaning_lines` of them, within
    `budget` tokens, in the input's order), each with its token ids, and where they are; None when that reading is
    off, the question asks about the whole input, or no vectors are installed. Found on the
    train split of bench/facts.py: with questions that share no word with the fact, InfLLM
    answered 1/8 at 8k and 32k; these lines, 8/16, 8/16 and 7/16 at 8k, 32k and 128k."""
    params, tok = params_of(runner), runner.tokenizer
    if not getattr(params, "meaning_lines", 0) or about_the_whole(question):
        return None
    text = tok.decode([int(t) for t in ids], skip_special_tokens=True)
    raw = text.split("\n")
    at = [i for i, x in enumerate(raw) if x.strip()]  # each kept line's index in the text
    lines = [raw[i] for i in at]
    encoded: dict[str, list[int]] = {}

    def count(line: str) -> int:  # each candidate line is encoded once; the chosen ones are read as such
        encoded[line] = tok.encode(line, add_special_tokens=False)
        return len(encoded[line])
    taken = nearest_lines(lines, question, params.meaning_lines, budget, count)
    if not taken:
        return None
    return [(lines[i], encoded[lines[i]]) for i in taken], cite_lines(text, {at[i] for i in taken}, label)
