"""Attention helpers shared by the strategies."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def two_part_attention(q_a: torch.Tensor, k_a: torch.Tensor, v_a: torch.Tensor, mask_a: torch.Tensor,
                       q_b: torch.Tensor, k_b: torch.Tensor, v_b: torch.Tensor, mask_b: torch.Tensor) -> torch.Tensor:
    """One softmax over two key sets, each seen through its own rotation of the query.

    q_* (B, Hq, T, D); k_*, v_* (B, Hkv, S_*, D); mask_* (T, S_*) bool, True = attend.
    Queries [q_a | q_b] (2D wide) against keys [k_a | 0] and [0 | k_b] give exactly
    q_a.k_a and q_b.k_b as logits, so a single fused SDPA call does the merged softmax.
    """
    d = q_a.shape[-1]
    q = torch.cat([q_a, q_b], dim=-1)                                        # (B, Hq, T, 2D)
    k = torch.cat([torch.cat([k_a, torch.zeros_like(k_a)], dim=-1),
                   torch.cat([torch.zeros_like(k_b), k_b], dim=-1)], dim=2)  # (B, Hkv, Sa+Sb, 2D)
    v = torch.cat([v_a, v_b], dim=2)                                         # (B, Hkv, Sa+Sb, D)
    mask = torch.cat([mask_a, mask_b], dim=1)                                # (T, Sa+Sb)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True, scale=d ** -0.5)
