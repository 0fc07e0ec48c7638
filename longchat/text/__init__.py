"""Text helpers below every layer that reads text: content words, and sentence vectors by meaning."""
