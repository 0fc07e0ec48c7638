"""Facts the user states, found by the system after each user message (no model call).

MemGPT has the model call `core_memory_append`; small models do not. Think-in-Memory keeps
distilled statements instead of raw turns. Here a clause of the user's own message is kept as
a fact when it states something about the user or their world, or a sentence asks to be
remembered:

    "Please remember that my locker code is 4417."   -> about "locker code"
    "My sister's name is Alma."                       -> about "sister's name"
    "I work as a pharmacist."                         -> about "job" ("I work at Kestrel": "work")
    "Actually, my sister is called Maria."            -> replaces the fact about "sister's name"
    "We had a long week because we finally moved to Tampere last Friday."
                                                      -> "We finally moved to Tampere last Friday." ("live")
    "I'll skip the cake, I'm allergic to walnuts."    -> "I'm allergic to walnuts." ("allergy walnut")

People state facts in passing, inside sentences about something else, so a sentence is cut
into clauses (at commas, semicolons, dashes, and before "because/since/so/and/but/when ..."
followed by a subject) and each clause is matched against the rules below; the fact is the
clause in the user's words. A fact is always the user's own words (first person kept, a leading
"please remember that" dropped), so it is supported by what the user said by construction;
`supported` checks this again for every fact before it is stored.

Not facts: questions, hypotheticals and plans ("if I lived in Paris", "we might move"),
commands to the assistant, and statements about people who are not the user's ("her brother
lives in Oslo"; "my brother lives in Oslo" is the user's world and is kept). The `key` names
what the fact is about: a later fact with the same key replaces the earlier one (a correction,
or news: "we moved to Tampere" and "I live in Cork" share the key "live").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from longchat.text.words import STOPWORDS


@dataclass(frozen=True)
class Fact:
    key: str       # what it is about, normalised ("sister's name", "work", "born")
    text: str      # the user's clause or sentence, as they said it


_REMEMBER = re.compile(
    r"^(?:(?:please|ok|okay|so|and|also|hey)[,\s]+)*(?:(?:can|could|would|will) you\s+)?"
    r"(?:please\s+)?(?:remember|note|keep in mind|don'?t forget|never forget|make a note)"
    r"(?:\s+(?:this|that|for me|it))?\s*(?::|,|that\b)?\s*", re.I)
_CORRECTION = re.compile(r"^(?:actually|no|correction|sorry|wait|oops)\b[,:!.\s]*(?:i meant\s*)?", re.I)
_MY = re.compile(
    r"\b(?:my|our)\s+((?:[a-z'-]+\s+){0,3}?[a-z'-]+?)(?:'s\s+([a-z-]+(?:\s+[a-z-]+)?))?\s+"
    r"(?:is|are|was|were|'s|has been|have been)\s+(called\s+|named\s+)?\S", re.I)

# How many of something the user's world has ("After the reorganisation my team has 4 people"),
# kept apart from what it is ("My team at work is 5 people"; "my car has a dent" is no car).
_MY_HAS = re.compile(r"\b(?:my|our)\s+([a-z'-]+)\s+(?:now\s+)?(?:has|have)\s+(?:only\s+|just\s+|about\s+)?"
                     r"(?:\d+|two|three|four|five|six|seven|eight|nine|ten|twelve|twenty)\s+\w", re.I)
# A value someone changed ("The landlord raised my rent to 660 euros a month"; "I cut my running
# back to 40 kilometres a week"): it replaces what was said of it before.
_CHANGED = re.compile(r"\b(?:raised|increased|cut|lowered|reduced|dropped|upped|bumped|put\s+up)\s+(?:my|our)\s+"
                      r"([a-z'-]+)\s+(?:back\s+|down\s+|up\s+)?to\s+\d", re.I)

# Pieces of the rules. ADV: words that may sit between the subject and the verb.
_ADV_WORDS = (r"just|finally|recently|now|also|still|currently|actually|really|already|officially|both|all|happily|"
              r"eventually|then|basically|originally|mostly|usually|only|honestly|totally|absolutely|truly|kind of|kinda")
_ADV = rf"(?:(?:{_ADV_WORDS})\s+)*"
_HAVE = r"(?:'ve|\s+have)"
_BE_I = r"(?:i'm|i\s+am|we're|we\s+are)"
_NAME = r"(?-i:([A-Z][a-zà-ÿ'-]+))"  # a capitalised name, whatever the rule's case
_NOT_NAMES = {"I", "I'm", "I've", "I'll", "I'd", "OK", "Ok", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday",
              "Saturday", "Sunday", "The", "A", "An", "And", "But", "So", "Mr", "Mrs", "Ms", "Dr", "He", "She", "They",
              "It", "We", "You", "This", "That", "Someone", "Everyone"}
_RELATIONS = ("son|daughter|kid|child|children|boy|girl|baby|husband|wife|partner|spouse|boyfriend|girlfriend|"
              "fianc[eé]e?|brother|sister|sibling|twin|mom|mum|mother|dad|father|parents|stepson|stepdaughter|"
              "grandson|granddaughter|grandma|grandmother|granny|grandpa|grandfather|aunt|uncle|cousin|niece|"
              "nephew|friend|best friend|boss|roommate|flatmate|neighbou?r|colleague|co-?worker|dog|cat|puppy|"
              "kitten|pup|horse|pony|parrot|bird|rabbit|bunny|hamster|guinea pig|turtle|tortoise|fish|lizard|snake")
_ROLES = "manager|boss|mentor|supervisor|team lead|teacher|tutor|coach|doctor|dentist|therapist|landlord|landlady|trainer"
_AGE_WORDS = {"little", "older", "younger", "big", "baby", "eldest", "oldest", "youngest", "new", "old", "twin",
              "first", "second"}
_RELATION = rf"(?:(?:{'|'.join(sorted(_AGE_WORDS))})\s+)*({_RELATIONS})s?"
_DIETS = r"vegan|vegetarian|veggie|pescatarian|pescetarian|teetotal|gluten-free|dairy-free|keto|kosher|halal|sober"


_TALK = {"question", "point", "answer", "guess", "bad", "pleasure", "turn", "idea", "mistake", "apologies", "concern",
         "issue", "problem", "request", "main question", "last question", "next question", "reply", "message"}


def _norm(word: str) -> str:
    """A word as keys hold it: lower case, a plural's "s" and a possessive's "'s" dropped."""
    word = word.lower().removesuffix("'s")
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def _first_content(text: str, limit: int = 3) -> str | None:
    """The first content word of `text` among its first `limit` words (normalised), or None."""
    for w in WORD.findall(text.lower())[:limit]:
        if w not in STOPWORDS:
            return _norm(w)
    return None


def _key_words(text: str) -> str:
    words = [w for w in WORD.findall(text.lower()) if w not in STOPWORDS]
    return " ".join(words[:3])


def _named(m: re.Match) -> str | None:
    """"my son Eero", "a cat named Mochi": keyed by who, so two children are two facts."""
    if m.group(2) in _NOT_NAMES:
        return None
    return f"{_norm(m.group(1))} {m.group(2).lower().removesuffix(chr(39) + 's')}"


def _diet(m: re.Match) -> str | None:
    """"I can't eat gluten", "I don't drink coffee", "I eat meat again": one key per food."""
    negated, verb, food = m.group(1) or "", m.group(2).lower(), _first_content(m.group(3), 2)
    if food is None or verb == "have" and not re.search(r"n't|not|never|no longer", negated, re.I):
        return None  # "I have a car" is no food; "I can't have dairy" is
    return f"diet {food}"


def _likes(m: re.Match) -> str | None:
    """"I love hiking", "I don't like jazz": one key per thing liked or not."""
    if re.match(r"(?:it|that|this|these|those|them|you|your|how|what|when|the\s+way|the\s+idea|to\s+think)\b",
                m.group(2), re.I):
        return None  # "I love that idea!", "I like your answer": talk, not facts
    what = _first_content(m.group(2))
    return f"likes {what}" if what else None


def _work(m: re.Match) -> str:
    """What the user works as ("job") and where ("work") are two facts: a new employer does not
    replace the occupation."""
    return "job" if re.search(r"\bas\b|\bretired\b", m.group(0), re.I) else "work"


def _generic(m: re.Match) -> str | None:
    rest = m.group(0)[m.start(1) - m.start(0):] + m.string[m.end(0):]
    if re.match(r"have\s+(?:to|no idea|a (?:question|feeling|look|minute|second|moment|go|try|think|chance|"
                r"meeting|quick)|an idea|any|time|been|got to|fun)\b", rest, re.I):
        return None  # "I have to go", "I have a question": talk, not facts
    return _key_words(rest) or None


Rule = tuple[re.Pattern, "str | Callable[[re.Match], str | None]"]


def _rule(pattern: str, key) -> Rule:
    return re.compile(pattern, re.I), key


# Events: what the user did ("We climbed Triglav at the weekend", "Finally finished Jane Eyre",
# "I've taken up tennis"), a verb in the past or perfect after "I"/"we", or opening a sentence
# with no subject. Verbs of talk and thought ("I said", "I thought") state nothing.
_TALK_VERBS = (r"asked|mentioned|said|told|meant|wondered|guessed|thought|figured|noticed|forgot|forgotten|knew|"
               r"hoped|talked|discussed|chatted|wanted|needed|used|supposed|realised|realized|understood|agreed|"
               r"liked|loved|enjoyed|hated|preferred|tried\s+to|wished|replied|answered|explained|"
               r"wrote\s+(?:to\s+)?you|read\s+(?:that|your)")
_IRREGULAR = ("went|gone|saw|seen|made|had|got|gotten|bought|took|taken|ran|ate|eaten|drank|drunk|met|found|lost|"
              "left|won|began|begun|came|did|done|gave|given|read|wrote|written|sold|spent|flew|flown|drove|driven|"
              "rode|ridden|swam|swum|built|caught|fell|fallen|heard|kept|paid|put|sent|sang|sung|sat|slept|spoke|"
              "spoken|stood|taught|threw|thrown|wore|worn|broke|broken|chose|chosen|held|hit|hurt|lent|cut|dug|drew|"
              "drawn|fed|fought|grew|grown|hung|hid|hidden|laid|lit|quit|rang|rung|rose|shot|shut|sank|spun|stole|"
              "struck|tore|torn|woke|picked|bet|brought")
_DID = rf"(?!(?:{_TALK_VERBS})\b)(?:{_IRREGULAR}|[a-z]{{3,}}ed)\b"


EVENT = "did "  # an event's key begins so
# Words of an event that says nothing: "We had a long week", "I had a lovely time".
_VAGUE = frozenset("""long good bad rough busy great hard tough lovely nice fun quiet crazy chaotic strange weird
lazy slow wonderful amazing awful terrible day days week weeks night nights morning weekend time evening year month
afternoon today yesterday lot bit while""".split())


def _event(m: re.Match) -> str | None:
    """An event's key: "did" and all its content words. Events are not news about one thing
    ("I bought Catan", then "I bought Azul": two games), so only the same words told again
    share a key."""
    rest = m.group(0)[m.start(1) - m.start(0):] + m.string[m.end(0):]
    words = [w for w in WORD.findall(rest.lower()) if w not in STOPWORDS]
    if not set(words[1:]) - _VAGUE or re.match(r"\S+\s+(?:you|your|yours|it|that|this|these|those|them)\b", rest, re.I):
        return None  # "We had a long week"; "I tried your code": talk about the conversation
    return EVENT + " ".join(words)


def is_event(key: str) -> bool:
    """Whether a fact's key is an event's (what the user did, not what they are)."""
    return key.startswith(EVENT)


# Statements about the user (or their world) in the first person, singular or plural; for each
# clause the first rule that matches and gives a key wins.
_RULES: list[Rule] = [
    _rule(r"\bmy name is\b|\bi(?:'m| am) called\b|\bcall me\s+(?-i:[A-Z])", "name"),
    _rule(rf"\b(?:i'm|i\s+am|i\s+just\s+turned|i\s+turned)\s+(\d{{1,3}})\b(?!\s*(?:%|percent|min|minutes|hours|"
          rf"km|miles|feet|foot|cm|kg|pounds|dollars|euros|times|sure))", "age"),
    _rule(rf"\b(?:{_BE_I}|i{_HAVE}\s+been|i\s+was)\s+(?:\w+\s+)?allergic\s+to\s+(?:all\s+|most\s+|any\s+)?([\w-]+)",
          lambda m: f"allergy {_norm(m.group(1))}"),
    _rule(rf"\b(?:i|we)(?:{_HAVE}|\s+got|{_HAVE}\s+got)\s+(?:a|an)\s+(?:\w+\s+)??([\w-]+)\s+allergy",
          lambda m: f"allergy {_norm(m.group(1))}"),
    _rule(r"\b(?:my|our)\s+(?:\w+\s+)??([\w-]+)\s+allergy\b", lambda m: f"allergy {_norm(m.group(1))}"),
    _rule(rf"\b{_BE_I}\s+(?:\w+\s+)?([\w-]+)\s+intolerant\b", lambda m: f"intolerant {_norm(m.group(1))}"),
    _rule(rf"\b(?:{_BE_I}|i{_HAVE}\s+been|we{_HAVE}\s+been|i\s+became|i\s+went)\s+{_ADV}(?:not\s+|no\s+longer\s+)?"
          rf"(?:a\s+|an\s+|fully\s+|strictly\s+|completely\s+)?(?:{_DIETS})\b", "diet"),
    _rule(rf"\b(?:i|we)\s+((?:(?:don't|do\s+not|can't|cannot|can\s+not|can|never|no\s+longer|try\s+not\s+to|"
          rf"rarely|hardly\s+ever|{_ADV_WORDS})\s+)*)(eat|drink|have)\s+(?:any\s+|much\s+|a\s+lot\s+of\s+)?([\w\s-]+)",
          _diet),
    _rule(rf"\b(?:i|we)(?:{_HAVE})?\s+{_ADV}(?:avoid|stopped\s+eating|stopped\s+drinking|gave\s+up|cut\s+out|"
          rf"quit)\s+([\w-]+)", lambda m: f"diet {_norm(m.group(1))}"),
    _rule(rf"\b(?:i|we)\s+{_ADV}(?:don't\s+|do\s+not\s+|no\s+longer\s+)?live\s+(?:in|at|on|near|outside|by|close\s+to)\b"
          rf"|\b(?:i|we){_HAVE}\s+{_ADV}(?:lived|been\s+living)\s+(?:in|at|on|near|outside|by)\b"
          rf"|\b{_BE_I}\s+{_ADV}(?:living|based|settled)\s+(?:in|at|on|near|outside|by)\b"
          rf"|\b(?:i|we)(?:{_HAVE})?\s+{_ADV}(?:moved|relocated|emigrated|moved\s+back)\s+"
          rf"(?:(?:back|over|down|up|out|all\s+the\s+way)\s+)?to\b", "live"),
    _rule(rf"\b{_BE_I}\s+(?:originally\s+|actually\s+)?from\b", "from"),
    _rule(r"\b(?:i|we)\s+grew\s+up\s+(?:in|on|near)\b", "grew up"),
    _rule(r"\bi\s+was\s+born\b", "born"),
    _rule(rf"\b(?:i|we)\s+{_ADV}work\s+(?:as|at|for|in)\b|\bi(?:'m|\s+am)\s+{_ADV}working\s+(?:as|at|for)\b"
          rf"|\bi{_HAVE}\s+{_ADV}been\s+working\s+(?:as|at|for)\b"
          rf"|\bi(?:{_HAVE})?\s+{_ADV}(?:started|got|landed|took|began|accepted)\s+(?:a|an|my|the)\s+(?:new\s+)?"
          rf"(?:job|position|role|internship)\s+(?:at|as|with|in)\b"
          rf"|\bi(?:{_HAVE})?\s+{_ADV}retired\b|\b(?:my|that's|that\s+is|it's)\s+life\s+as\s+(?:a|an)\s+\w", _work),
    _rule(rf"\bi(?:'m|\s+am)\s+{_ADV}studying\s+\w|\bi\s+{_ADV}study\s+\w", "study"),
    _rule(rf"\b(?:i'm|i\s+am|we're|we\s+are)\s+{_ADV}learning\s+([\w-]+)|\b(?:my|our)\s+([\w-]+)\s+(?:lessons|classes|course)\b",
          lambda m: f"learn {_norm(m.group(1) or m.group(2))}"),
    _rule(rf"\b(?:{_BE_I}|i\s+got|we\s+got)\s+{_ADV}(married|engaged|divorced|separated|widowed)\b", "married"),
    _rule(rf"\b(?:my|our)\s+{_RELATION}\s+{_NAME}", _named),
    # changes said in passing: "Declan took over as my manager", "I left my old job and joined
    # Silverpine", "I've switched my usual coffee to a cappuccino", "now I'm reading Middlemarch"
    _rule(rf"{_NAME}\s+(?:took\s+over\s+as|became|is\s+now|has\s+become|started\s+as)\s+(?:my|our)\s+(?:new\s+)?"
          rf"({_ROLES})\b", lambda m: None if m.group(1) in _NOT_NAMES else f"{_norm(m.group(2))}'s name"),
    _rule(rf"\b(?:i|we)(?:{_HAVE})?\s+{_ADV}(?:left\s+[\w\s]+?\s+and\s+)?joined\s+{_NAME}", "work"),
    _rule(rf"\b(?:i|we)(?:{_HAVE})?\s+{_ADV}(?:switched|changed)\s+(?:my|our)\s+(?:usual\s+)?([\w-]+)\s+(?:order\s+)?to\b",
          lambda m: _norm(m.group(1))),
    _rule(rf"\b{_BE_I}\s+{_ADV}(?:now\s+)?reading\s+{_NAME}", "reading"),
    _rule(rf"\b(?:i|we)(?:{_HAVE}|{_HAVE}\s+got|\s+got|\s+adopted|\s+had)?\s+{_ADV}(?:got|adopted|have|had)?\s*"
          rf"(?:a|an|two|three)\s+(?:\w+\s+)?{_RELATION}\s+(?:called|named)\s+{_NAME}", _named),
    _rule(rf"\b(?:my|our)\s+{_RELATION}\s+{_ADV}(?:lives|moved|works|is\s+working|is\s+living)\b",
          lambda m: f"{_norm(m.group(1))}'s " + ("work" if "work" in m.group(0).lower() else "home")),
    _rule(r"\bi(?:'m|\s+am)\s+(?:a|an)\s+(?!bit\b|little\b|tad\b|lot\b)\w", "am a"),
    _rule(rf"\b(?:i|we)(?:{_HAVE})?\s+{_ADV}(?:went|been|travell?ed|flew|drove|visited|go)\s+(?:back\s+)?(?:to\s+)?"
          rf"{_NAME}", lambda m: f"trip {m.group(1).lower()}" if m.group(1) not in _NOT_NAMES else None),
    _rule(rf"\b(?:i|we)\s+((?:(?:do(?:n't|\s+not)|never|{_ADV_WORDS})\s+)*)(?:like|love|enjoy|adore|prefer|hate|"
          rf"dislike|loathe|can't\s+stand|cannot\s+stand)\s+(\w+(?:\s+\w+){{0,2}})",
          _likes),
    _rule(rf"\b(?:i|we)(?:{_HAVE}\s+got)?\s+{_ADV}(play|teach|speak|drive|own|collect|have|ride|knit|paint|"
          rf"volunteer|run)\s+\w", _generic),
    _rule(rf"\b(?:i|we)(?:{_HAVE}|'d|\s+had)?\s+{_ADV}({_DID}|was\s+(?:in|at)\b|were\s+(?:in|at)\b)\s*\w",
          _event),
    _rule(rf"^(?-i:(?=[A-Z])){_ADV}({_DID})\s+\w", _event),
]

# Clauses: at , ; : and dashes, and before a conjunction followed by a subject ("... because we
# finally moved to Tampere"); "since 2019" stays whole.
_CLAUSE = re.compile(r"\s*[;:]\s+|,\s+|\s+[-–—]+\s+|(?<!\bover)(?<!\bstarted)\s+(?=(?:because|'?cause|since|so|but|and|as|when|after|while|"
                     r"though|although|whereas|plus)\s+(?:i|i'm|i've|i'd|we|we're|we've|my|our|he|she|they|it|it's|"
                     r"you|there)\b)", re.I)
_LEAD = re.compile(r"^(?:(?:because|'?cause|since|so|but|and|as|when|after|while|though|although|whereas|plus|well|"
                   r"oh|ugh|yeah|yes|anyway|anyways|also|actually|honestly|btw|by the way|fyi|just so you know|"
                   r"ok|okay|sorry|hi|hey|hello)\b[,!.\s]*)+", re.I)
# A question: a wh-word before a verb, or a verb before its subject.
_ASKS = re.compile(r"^(?:(?:who|what|when|where|which|why|how|whose)(?:'s|'re|\s+(?:is|are|was|were|do|does|did|"
                   r"have|has|had|can|could|would|will|should|am)\b)|(?:do|does|did|is|are|was|were|can|could|would|"
                   r"will|should|shall|have|has|am|may|might|must)(?:n't)?\s+(?:i|you|we|my|our|he|she|it|they|the|"
                   r"your|this|that|there|anyone|someone)\b|how\s+(?:to|about)\b|what\s+if\b)", re.I)
_COMMAND = re.compile(r"^(?:please\s+)?(?:tell\s+me|explain|describe|give\s+me|write|list|show|imagine|suppose|pretend|"
                      r"let's|let\s+us|let\s+me|help\s+me|find|make|translate|summari[sz]e|recommend|suggest|compare|"
                      r"can\s+you|could\s+you|would\s+you|will\s+you)\b", re.I)
# Not a fact: a hypothetical, a wish or a plan ("if I lived in Paris", "we might move to Lisbon").
_UNREAL = re.compile(r"\b(?:if|unless|imagine|suppose|supposing|pretend|hypothetically|assuming|wish|would|could|might|"
                     r"should|shall|will|gonna|going\s+to|want\s+to|wanna|wanted\s+to|plan\s+to|planning\s+to|"
                     r"plan\s+on|planning\s+on|hope\s+to|hoping\s+to|thinking\s+of|thinking\s+about|considering|"
                     r"let's\s+say|say)\b|'d\b|'ll\b", re.I)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_ABBREVIATION = re.compile(r"\b(?:dr|mr|mrs|ms|prof|st|mt|jr|sr|vs|etc|no|e\.g|i\.e)\.$", re.I)
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'})


# A name given in the next clause to someone the clause before brought in ("We got a new
# manager at work, her name is Ruben"; "we adopted a puppy, his name is Rex").
_NAMED_AFTER = re.compile(rf"^(?:her|his|its|their)\s+name(?:'s|\s+is|\s+was)\s+{_NAME}", re.I)
# ... or their age ("We had a party for my daughter on Saturday, she turned 15")
_AGED_AFTER = re.compile(r"^(?:she|he|they)\s+(?:just\s+|finally\s+)?(?:turned|turns|is\s+now|'s\s+now)\s+\d{1,3}\b", re.I)
# A clause that opens by pointing back at a place or person the clause before named ("which
# reminds me of Utrecht, where I was born"): the fact is the two together.
_POINTS_BACK = re.compile(r"^(?:where|who|whom)\b", re.I)
_NEW_ONE = re.compile(rf"\b(?:a|an|my|our)\s+(?:new\s+|little\s+|baby\s+)?({_RELATIONS}|{_ROLES})\b", re.I)


def sentences(text: str) -> list[str]:
    """The sentences of `text` ("My doctor is Dr. Okafor." is one)."""
    out: list[str] = []
    for piece in (p.strip() for p in _SENTENCE.split(text)):
        if piece and out and _ABBREVIATION.search(out[-1]):
            out[-1] += " " + piece
        elif piece:
            out.append(piece)
    return out


def clauses(sentence: str) -> list[str]:
    """The clauses of one sentence, each a piece of it, leading conjunctions and interjections
    dropped. A piece of one or two words stays with the clause before it ("I live in Cork,
    Ireland")."""
    spans: list[list[int]] = []
    start = 0
    for cut in [*_CLAUSE.finditer(sentence), None]:
        end = len(sentence) if cut is None else cut.start()
        piece = sentence[start:end]
        lead = len(piece) - len(_LEAD.sub("", piece.lstrip(" ,;:-–—")))
        words = piece[lead:].strip(" ,;:-–—").split()
        if words and spans and len(words) <= 2:
            spans[-1][1] = end
        elif words:
            spans.append([start + lead, end])
        start = end if cut is None else cut.end()
    return [sentence[a:b].strip(" ,;:-–—") for a, b in spans]


def _about(text: str) -> str | None:
    """The key of a statement about the user in `text`, or None when it is not one."""
    m = _MY_HAS.search(text) or _CHANGED.search(text)
    if m:
        return f"{_norm(m.group(1))} has" if m.re is _MY_HAS else _norm(m.group(1))
    m = _MY.search(text)
    if m and m.group(1).lower() not in _TALK:
        owner, part = m.group(1).lower(), (m.group(2) or "").lower()
        if not part and m.group(3):  # "my sister is called Alma" is about her name
            part = "name"
        return f"{owner}'s {part}" if part else owner
    for pattern, key in _RULES:
        for m in pattern.finditer(text):
            if _UNREAL.search(text[:m.end()]):
                return None  # "we might move to Lisbon": the statement is not the user's world
            found = key if isinstance(key, str) else key(m)
            if found:
                return found
    return None


def _as_fact(text: str) -> str:
    text = text.strip(" ,:;-?")
    return text[0].upper() + text[1:] if text and text[0].islower() else text


def extract(text: str) -> list[Fact]:
    """The facts stated in one user message (empty when it states none)."""
    out: list[Fact] = []
    said = text.translate(_QUOTES)
    for sentence in sentences(said):
        if len(sentence) > 300:
            continue
        body = _CORRECTION.sub("", sentence, count=1)
        asked = _REMEMBER.match(body)
        asked = asked if asked and asked.end() > 0 else None
        if asked:  # "please remember ...": the whole rest of the sentence is the fact
            body = _as_fact(body[asked.end():])
            key = _about(body) if body else None
            if key is None and len(body.split()) >= 3 and _key_words(body):
                key = _key_words(body)  # "remember: the spare key is under the mat"
            if key and supported(body, text):
                out.append(Fact(key, body))
            continue
        parts = clauses(body)
        if not parts or _COMMAND.match(parts[0]) or _ASKS.match(parts[0]) or re.match(
                r"(?:if|unless|imagine|suppose|what if|let's say|say|in case|even if)\b", parts[0], re.I):
            continue  # a question, a request or a hypothetical, whatever its clauses say
        if sentence.rstrip().endswith("?"):
            parts = parts[:-1]  # "We just moved to Tampere, any tips?": the last clause asks
        for i, clause in enumerate(parts):
            after = parts[i + 1] if i + 1 < len(parts) else ""
            if _ASKS.match(clause) or _COMMAND.match(clause) or i and (_NAMED_AFTER.match(clause) or
                                                                       _AGED_AFTER.match(clause)):
                continue
            key = _about(clause)
            if (_NAMED_AFTER.match(after) or _AGED_AFTER.match(after)) and (new := _NEW_ONE.search(clause)):
                # "We got a new manager at work, her name is Ruben": one fact, who it is
                what = "name" if _NAMED_AFTER.match(after) else "age"
                key, clause = f"{_norm(new.group(1))}'s {what}", f"{clause}, {after}"
            elif key and i and _POINTS_BACK.match(clause):
                clause = f"{parts[i - 1]}, {clause}"
            if key is None:
                continue
            fact = _as_fact(clause)
            if not fact.endswith((".", "!")) and body.endswith((".", "!")):
                fact += "."  # a clause from inside a sentence
            if supported(fact, text):
                out.append(Fact(key, fact))
    return out


def supported(fact: str, said: str) -> bool:
    """Every content word of `fact` occurs in what the user `said`: a fact the user did not
    state (an invention, a paraphrase that adds something) is dropped."""
    words = set(WORD.findall(said.translate(_QUOTES).lower()))
    wanted = [w for w in WORD.findall(fact.translate(_QUOTES).lower()) if w not in STOPWORDS]
    return bool(wanted) and all(w in words for w in wanted)


# -- questions the user asks about themselves (the abstention guard in chat/session.py) -------

# Words a question about the user is framed with, which say nothing of what it asks for.
_FRAME = frozenset("""name names called call named tell told mention mentioned remember recall know say said again
ever anything something everything thing things don didn doesn isn wasn aren haven hasn now currently nowadays""".split())
# What a fact's key stands for, in the words a question may use ("Where do I live?" is answered
# by "We moved to Tampere", key "live").
_KEY_WORDS = {
    "live": "live home city town country address move moved based", "from": "from originally",
    "grew up": "grew grow up childhood", "born": "born birthplace birth",
    "work": "work company employer workplace office", "job": "work job occupation profession career living",
    "am a": "job occupation profession",
    "allergy": "allergic allergy allergies", "intolerant": "intolerant intolerance eat food",
    "diet": "eat food diet drink", "age": "old age", "likes": "like love enjoy hate favourite favorite",
    "trip": "trip holiday vacation travel went visit visited", "married": "married wedding husband wife spouse",
    "study": "study studies student university school", "name": "name",
    "learn": "learn learning lesson class course language", "lesson": "learn learning lesson class course language",
    "class": "learn learning lesson class course"}
_WH = re.compile(r"^(?:what|what's|who|who's|where|where's|when|when's|which|whose|how\s+(?:old|many|much|long))\b", re.I)
_AUX_I = re.compile(r"^(?:(?:did|do|does|have|had|am|was|were)\s+(?:i|we)|do\s+you\s+(?:remember|know|recall))\b", re.I)
_FIRST_PERSON = re.compile(r"\b(?:my|our|i|we|me)\b", re.I)
_TELL_ME = re.compile(r"^(?:(?:can|could|would|will)\s+you\s+)?(?:please\s+)?(?:tell|remind)\s+me\s+(?=what|who|where|"
                      r"when|which|whose|how\s+old|my|our)", re.I)
_HOW_TO = re.compile(r"\b(?:need|needs|should|could|can|would|want|best(?!\s+friend)|way|ways|help|recommend|suggest|advice|ideas|"
                     r"tips|fix|improve|mean|means|right|correct|wrong|if|whether|joke|story|poem|think|opinion)\b",
                     re.I)


def asks_or_requests(sentence: str) -> bool:
    """Whether a sentence only asks or requests something ("How do I make porridge?", "Tell me
    one short fact about the number 89"): it states nothing about the user."""
    text = _LEAD.sub("", sentence.translate(_QUOTES).strip())
    return text.rstrip().endswith("?") or bool(_COMMAND.match(text))


def asks_about_user(text: str) -> bool:
    """Whether `text` asks for something about the user's own life ("What is my brother's
    name?", "Where did I go on holiday?", "How old am I?", "Do I have pets?"): a question in the
    first person, not a request for help ("How do I fix my bike?", "What should I cook?"), not
    a question about the world, and not a request to remember something."""
    text = _TELL_ME.sub("", text.translate(_QUOTES).strip(), count=1)
    remember = _REMEMBER.match(text)
    if remember and remember.end() > 0 or _HOW_TO.search(text):
        return False
    if _WH.match(text) or text.endswith("?") and not _ASKS.match(text) and not _COMMAND.match(text):
        return bool(_FIRST_PERSON.search(text))  # "What's my dog called?", "My sister's name?"
    return bool(_AUX_I.match(text))  # "Did I tell you ...", not "Is my dog allowed on the train?"


# Phrases that say what is asked better than their words: "what do I work as" asks for an
# occupation and "which company do I work for" for an employer; "how old" for an age.
_ASKED_PHRASES = [(re.compile(r"\bwork(?:s|ed|ing)?\s+as\b", re.I), " occupation "),
                  (re.compile(r"\bwork(?:s|ed|ing)?\s+(?:for|at)\b", re.I), " employer "),
                  (re.compile(r"\bhow\s+old\b", re.I), " age ")]


def asked_words(text: str) -> set[str]:
    """What a question about the user asks about: its content words (normalised), first-person,
    stop and frame words left out; the frame words when it has nothing else ("What is my name?")."""
    for phrase, word in _ASKED_PHRASES:
        text = phrase.sub(word, text)
    words = {_norm(w) for w in re.findall(r"[^\W_]+", text.lower()) if w not in STOPWORDS and len(w) > 1}
    return words - _FRAME or words


_WHOSE = re.compile(r"\bmy\s+([a-z]+(?:\s+[a-z]+)+?)(?:'s\s+name\b|\s+(?:called|named)\b)", re.I)
_FAVOURITE = re.compile(r"\bmy\s+(?:very\s+)?(favou?rite\s+[a-z]+)\b", re.I)


def asked_phrase(question: str) -> str | None:
    """The several-word relation a question asks the name of ("What is my best friend's name?"
    -> "best friend"), or the favourite it asks for ("What is my favourite food?" -> "favourite
    food": "My favourite colour is teal" does not answer it, nor "the food was amazing"),
    normalised as `phrase_of` gives it; None for one word or none."""
    m = _FAVOURITE.search(question.translate(_QUOTES))
    if m:
        return phrase_of(m.group(1))
    m = _WHOSE.search(question.translate(_QUOTES))
    if not m:
        return None
    words = phrase_of(m.group(1)).split()
    while len(words) > 1 and words[0] in _AGE_WORDS:  # "my little brother": a brother
        words = words[1:]
    return " ".join(words) if len(words) > 1 else None


def phrase_of(text: str) -> str:
    """`text`'s words, normalised and joined by single spaces (one spelling of "favourite")."""
    return " ".join(_norm(w) for w in WORD.findall(text.translate(_QUOTES).lower().replace("favorite", "favourite")))


def fact_words(content: str, key: str) -> set[str]:
    """The words a question may share with a fact: its own, its key's and what its key stands for."""
    parts = [_norm(w) for w in key.split()]
    # a key's head is before its place: "team at work" is about a team, not an employer
    parts = parts[:next((i for i, w in enumerate(parts) if i and w in {"at", "in", "on", "for", "of", "from"}), None)]
    # what the key, its first word or its last stands for ("nut allergy", "polish lessons")
    extra = _KEY_WORDS.get(key) or next((_KEY_WORDS[w] for w in (parts[:1] + parts[-1:]) if w in _KEY_WORDS), "")
    return asked_words(f"{content} {key} {extra}")
