"""Text helpers below every layer that reads text: retrieval by words (BM25, passages), content
words, and sentence vectors by meaning. No torch here."""
