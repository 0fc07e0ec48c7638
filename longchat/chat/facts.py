"""Facts the user states, found by the system after each user message (no model call).

MemGPT has the model call `core_memory_append`; small models do not. Think-in-Memory keeps
distilled statements instead of raw turns. Here a sentence of the user's own message is kept
as a fact when it states something about the user or their world, or asks to be remembered:

    "Please remember that my locker code is 4417."   -> about "locker code"
    "My sister's name is Alma."                       -> about "sister's name"
    "I work as a pharmacist."                         -> about "work"
    "Actually, my sister is called Maria."            -> replaces the fact about "sister"

A fact is always the user's own words (first person kept, a leading "please remember that"
dropped), so it is supported by what the user said by construction; `supported` checks this
again for every fact before it is stored. Questions, commands to the assistant and sentences
about the assistant are not facts. The `key` names what the fact is about: a later fact with
the same key replaces the earlier one (a correction).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from longchat.text.words import STOPWORDS


@dataclass(frozen=True)
class Fact:
    key: str       # what it is about, normalised ("sister's name", "work", "born")
    text: str      # the user's sentence, as they said it


_REMEMBER = re.compile(
    r"^(?:(?:please|ok|okay|so|and|also|hey)[,\s]+)*(?:(?:can|could|would|will) you\s+)?"
    r"(?:please\s+)?(?:remember|note|keep in mind|don'?t forget|never forget|make a note)"
    r"(?:\s+(?:this|that|for me|it))?\s*(?::|,|that\b)?\s*", re.I)
_CORRECTION = re.compile(r"^(?:actually|no|correction|sorry|wait|oops)\b[,:!.\s]*(?:i meant\s*)?", re.I)
_MY = re.compile(
    r"\bmy\s+((?:[a-z'-]+\s+){0,3}?[a-z'-]+?)(?:'s\s+([a-z-]+(?:\s+[a-z-]+)?))?\s+"
    r"(?:is|are|was|were|'s|has been|have been)\s+(called\s+|named\s+)?\S", re.I)
_I = [  # (pattern, key): statements about the user in the first person, the first match wins
    (re.compile(r"\bmy name is\b|\bi(?:'m| am) called\b|\bcall me\b", re.I), "name"),
    (re.compile(r"\bi(?:'m| am) (?:a|an)\s+\w", re.I), "am a"),
    (re.compile(r"\bi work (?:as|at|for|in)\b", re.I), "work"),
    (re.compile(r"\bi(?:'m| am) working (?:as|at|for)\b", re.I), "work"),
    (re.compile(r"\bi (?:live|am living|'m living) (?:in|at|on|near)\b", re.I), "live"),
    (re.compile(r"\bi(?:'m| am) from\b", re.I), "from"),
    (re.compile(r"\bi was born\b", re.I), "born"),
    (re.compile(r"\bi (?:moved|relocated) to\b", re.I), "live"),
    (re.compile(r"\bi (?:play|study|teach|speak|drive|own|have|collect)\s+\w", re.I), None),
    (re.compile(r"\bi (?:like|love|enjoy|prefer|hate|dislike|can'?t stand)\s+\w", re.I), None),
    (re.compile(r"\bi(?:'m| am) allergic to\b", re.I), "allergic"),
]
_QUESTION_START = re.compile(r"^(?:who|what|when|where|which|why|how|do|does|did|is|are|can|could|would|will|should|"
                             r"tell me|explain|describe|give me|write|list|show)\b", re.I)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


_ABBREVIATION = re.compile(r"\b(?:dr|mr|mrs|ms|prof|st|mt|jr|sr|vs|etc|no|e\.g|i\.e)\.$", re.I)


def sentences(text: str) -> list[str]:
    """The sentences of `text` ("My doctor is Dr. Okafor." is one)."""
    out: list[str] = []
    for piece in (p.strip() for p in _SENTENCE.split(text)):
        if piece and out and _ABBREVIATION.search(out[-1]):
            out[-1] += " " + piece
        elif piece:
            out.append(piece)
    return out


def _key_words(text: str) -> str:
    words = [w for w in WORD.findall(text.lower()) if w not in STOPWORDS]
    return " ".join(words[:3])


def _about(sentence: str) -> str | None:
    """The key of a statement about the user, or None when the sentence is not one."""
    m = _MY.search(sentence)
    if m:
        owner, part = m.group(1).lower(), (m.group(2) or "").lower()
        if not part and m.group(3):  # "my sister is called Alma" is about her name
            part = "name"
        return f"{owner}'s {part}" if part else owner
    for pattern, key in _I:
        m = pattern.search(sentence)
        if m:
            if key:
                return key
            rest = sentence[m.start():]
            return _key_words(rest) or None
    return None


def extract(text: str) -> list[Fact]:
    """The facts stated in one user message (empty when it states none)."""
    out: list[Fact] = []
    for sentence in sentences(text):
        if len(sentence) > 300:
            continue
        body = _CORRECTION.sub("", sentence, count=1)
        asked = _REMEMBER.match(body)
        asked = asked if asked and asked.end() > 0 else None
        if sentence.endswith("?") and not asked:
            continue
        if asked:
            body = body[asked.end():]
        body = body.strip(" ,:;-?")
        if not body or _QUESTION_START.match(body) and not asked:
            continue
        key = _about(body)
        if key is None and asked and len(body.split()) >= 3 and _key_words(body):
            key = _key_words(body)  # "remember: the spare key is under the mat"
        if key is None:
            continue
        fact = Fact(key, body[0].upper() + body[1:] if body[0].islower() else body)
        if supported(fact.text, text):
            out.append(fact)
    return out


def supported(fact: str, said: str) -> bool:
    """Every content word of `fact` occurs in what the user `said`: a fact the user did not
    state (an invention, a paraphrase that adds something) is dropped."""
    words = set(WORD.findall(said.lower()))
    wanted = [w for w in WORD.findall(fact.lower()) if w not in STOPWORDS]
    return bool(wanted) and all(w in words for w in wanted)
