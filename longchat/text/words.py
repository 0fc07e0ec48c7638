"""Words that carry no content, for every kind of session search (full-text, facts, vectors)."""

import re

_WORD = re.compile(r"[^\W_]+")

STOPWORDS = frozenset("""a an and are as at be but by can could did do does for from had has have he her hers him his how
i if in into is it its me my mine no not of on or our ours she so than that the their them then there these they
this those to too us was we were what when where which who whom why will with would you your yours s t d ll re ve
m am been being just about tell remember recall know said say please again any some""".split())


def content_words(text: str) -> list[str]:
    """Lower-cased words of `text` that carry content (STOPWORDS left out)."""
    return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


# A question with one of these words asks about the whole input, not one fact in it: the lines
# nearest its meaning would answer it from a corner ("What is this document about?").
WHOLE = frozenset("""document documents text file files book chapter article summary summarize summarise overview
overall gist topic topics theme themes author conclusion conclude main""".split())


def about_the_whole(question: str) -> bool:
    return any(w in WHOLE for w in content_words(question))
