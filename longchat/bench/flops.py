"""The machine's peak matmul rate, the yardstick for model FLOP utilisation (MFU).

MFU of a prefill = (weight-matmul FLOPs + the attention FLOPs the strategy asked for) / seconds,
over the best rate a plain square matmul reaches on the same device, dtype and threads.
"""

from __future__ import annotations

import functools

import torch

from longchat.timing import median_seconds


@functools.cache
def peak_matmul_flops(device: torch.device, dtype: torch.dtype, *, repeats: int = 3) -> float:
    """FLOP/s of `torch.mm` on square matrices: the best size's median over `repeats` runs.
    Measured once per process, so profiles compared in one run share one yardstick."""
    sizes = (2048, 4096, 8192) if device.type == "cuda" else (1024, 2048, 3072)
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        best = max(best, 2 * n**3 / median_seconds(lambda: torch.mm(a, b), repeats, device=device))
    return best
