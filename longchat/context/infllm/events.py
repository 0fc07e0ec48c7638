"""Event-shaped memory blocks (after EM-LLM: Fountas et al. 2024, "Human-like Episodic Memory
for Infinite Context LLMs"): cut the evicted text where the model is surprised.

A token's surprise is its negative log-likelihood under the model, known for free when the
prefill projects every position to the vocabulary. Token i opens a new event when its surprise
exceeds mean + gamma * std of the `window` tokens before it. A block is closed at the first
such boundary once it holds `min_len` tokens, else at `max_len` (the store's block size; the
rest of a short block is padding that attention masks out). So a sentence that does not fit
its surroundings (a fact placed in documentation) starts a block of its own instead of being
split across two.

The cut depends only on the surprise values, never on how the input was chunked.
"""

from __future__ import annotations

import torch

MIN_HISTORY = 8  # tokens of history a boundary needs before its statistics mean anything


def boundaries(surprise: torch.Tensor, window: int, gamma: float, history: int = 0) -> torch.Tensor:
    """bool (N,): whether each token opens an event. `surprise` (history + N,) holds `history`
    tokens of context before the N tokens asked about."""
    x = surprise.double()
    zero = x.new_zeros(1)
    c1 = torch.cat([zero, x.cumsum(0)])           # c1[i] = sum of x[:i]
    c2 = torch.cat([zero, (x * x).cumsum(0)])
    i = torch.arange(history, x.shape[0])
    lo = (i - window).clamp(min=0)
    n = (i - lo).double()
    mean = (c1[i] - c1[lo]) / n.clamp(min=1)
    var = ((c2[i] - c2[lo]) / n.clamp(min=1) - mean * mean).clamp(min=0)
    return (n >= MIN_HISTORY) & (x[i] > mean + gamma * var.sqrt())


def cut(opens: torch.Tensor, min_len: int, max_len: int) -> list[int]:
    """Lengths of the blocks that can be closed over tokens whose event starts are `opens`
    (N,): each ends at the first start >= `min_len` tokens in, else after `max_len` tokens.
    Tokens after the last closed block wait for more text (a later start may still cut them)."""
    starts = torch.nonzero(opens).flatten().tolist()
    n, s, lens = opens.shape[0], 0, []
    at = 0
    while True:
        while at < len(starts) and starts[at] < s + min_len:
            at += 1
        if at < len(starts) and starts[at] < s + max_len:
            end = starts[at]
        elif n - s >= max_len:
            end = s + max_len
        else:
            return lens
        lens.append(end - s)
        s = end
