"""Timing small pieces of work: the median of repeated runs, with the device's queue drained."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def sync(device: torch.device | None) -> None:
    """Wait for the device's queued work (timings on a GPU are otherwise launch times)."""
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(call: Callable[[], object], runs: int, *, warmup: int = 1,
                   device: torch.device | None = None) -> float:
    """Median wall time of `runs` calls, after `warmup` untimed ones (allocation, kernel choice)."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        sync(device)
        start = time.perf_counter()
        call()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)
