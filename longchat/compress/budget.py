"""Budget arithmetic: how many tokens each stage may keep. Pure functions, no model.

The budget is for the *context* only (instructions and the question are never compressed):
`target = round(rate * context_tokens)`, or `target_tokens` when given. The coarse stage keeps
whole documents in rank order until it holds `COARSE_SLACK` times the target (the document that
crosses the line included, so the token stage can always reach the target); the token stage
then gives each kept document a keep ratio, higher for better-ranked ones (LongLLMLingua's
dynamic ratio: +dynamic for the best, -dynamic for the worst, linear in between), shifted as
one so that the kept tokens add up to the target exactly.
"""

from __future__ import annotations

from typing import Sequence


def target_tokens(context_tokens: int, rate: float, target: int = 0) -> int:
    """Tokens of context to keep: `target` when given (>0), else rate x context, at least 1."""
    if context_tokens <= 0:
        return 0
    want = target if target > 0 else round(rate * context_tokens)
    return max(1, min(context_tokens, want))


def coarse_select(order: Sequence[int], sizes: Sequence[int], target: int, slack: float) -> list[int]:
    """Documents (indices, in `order` = best first) kept until they hold slack x target tokens."""
    kept, total = [], 0
    goal = target * slack
    for i in order:
        if total >= goal:
            break
        kept.append(i)
        total += sizes[i]
    return kept


def rank_offsets(n: int, dynamic: float) -> list[float]:
    """Keep-ratio offsets by rank: +dynamic for the best of n documents down to -dynamic."""
    if n <= 1:
        return [0.0] * n
    return [dynamic - 2 * dynamic * r / (n - 1) for r in range(n)]


def keep_ratios(free: Sequence[int], forced: Sequence[int], offsets: Sequence[float], target: int) -> list[float]:
    """Per document, the share of its droppable tokens to keep, so that forced tokens plus
    sum(ratio_i x free_i) equals `target` (as near as clamping to [0, 1] allows).

    `free[i]`: droppable tokens of document i; `forced[i]`: tokens it must keep;
    `offsets[i]`: its rank offset. One shift s is found by bisection: ratio_i = clamp(s + offset_i).
    """
    budget = target - sum(forced)
    if budget <= 0 or not sum(free):
        return [0.0 if budget <= 0 else 1.0] * len(free)

    def kept(s: float) -> float:
        return sum(min(1.0, max(0.0, s + o)) * f for o, f in zip(offsets, free))

    lo, hi = -1.0 - max(offsets, default=0), 1.0 - min(offsets, default=0)
    for _ in range(60):
        mid = (lo + hi) / 2
        if kept(mid) < budget:
            lo = mid
        else:
            hi = mid
    return [min(1.0, max(0.0, hi + o)) for o in offsets]


def pick_units(scores: Sequence[float], sizes: Sequence[int], budget: float) -> list[bool]:
    """Keep the best-scoring units while they fit `budget` tokens; then, if a unit would
    overshoot, keep it only when that lands nearer the budget than stopping short."""
    keep = [False] * len(scores)
    total = 0
    for i in sorted(range(len(scores)), key=lambda i: -scores[i]):
        if total >= budget:
            break
        if total + sizes[i] <= budget or (total + sizes[i] - budget) < (budget - total):
            keep[i] = True
            total += sizes[i]
    return keep
