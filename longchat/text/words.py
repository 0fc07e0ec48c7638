"""Words that carry no content, for every kind of session search (full-text, facts, vectors)."""

from longchat.text.retrieval import STOP_WORDS, WORD

# Retrieval's stop words (`longchat.text.retrieval`) less its ask-frame words "question" and
# "answer" (no frame around a chat message) and "whose", plus the words of talk about the
# conversation itself ("do you remember what I said...") and contractions' pieces ("I'm").
STOPWORDS = (STOP_WORDS - {"question", "answer", "whose"}) | frozenset("""hers him mine ours yours s t d ll re ve m
am being just remember recall know said say again some""".split())


def content_words(text: str) -> list[str]:
    """Lower-cased words of `text` that carry content (STOPWORDS left out)."""
    return [w for w in WORD.findall(text.lower()) if w not in STOPWORDS]


# A question with one of these words asks about the whole input, not one fact in it: the lines
# nearest its meaning would answer it from a corner ("What is this document about?").
WHOLE = frozenset("""document documents text file files book chapter article summary summarize summarise overview
overall gist topic topics theme themes author conclusion conclude main""".split())


def about_the_whole(question: str) -> bool:
    return any(w in WHOLE for w in content_words(question))
