"""What the machine and this process have: available RAM, peak resident memory."""

from __future__ import annotations

import resource

import psutil


def available_ram() -> int | None:
    """Bytes of RAM that can be had without swapping (the kernel's MemAvailable on Linux)."""
    try:
        return int(psutil.virtual_memory().available)
    except (OSError, RuntimeError, AttributeError):
        return None


def peak_rss_mb() -> float:
    """Peak resident memory of this process, in MiB: Linux's VmHWM (which `reset_peak_rss`
    restarts), else the lifetime peak from getrusage."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """This process's resident memory now, in MiB."""
    try:
        return psutil.Process().memory_info().rss / 2**20
    except (OSError, psutil.Error):
        return 0.0


def reset_peak_rss() -> None:
    """Restart the VmHWM counter (Linux), so a benchmark can measure each case on its own."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def return_free_heap() -> None:
    """Give the C heap's free pages back to the OS (glibc's malloc_trim). Loading quantised
    weights frees many fp32 blocks of a few MB; without this they stay resident as heap
    fragments (~3-5 MB per projection here: 2x the int4 weights themselves)."""
    import ctypes
    import ctypes.util

    global _trim
    if _trim is None:
        try:
            _trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to do
            _trim = False
    if _trim:
        _trim(0)


_trim = None
