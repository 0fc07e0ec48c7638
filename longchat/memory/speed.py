"""What a long read will cost, said before it starts: tokens, time at this machine's measured
encode speed, and the memory's size on disk.

The speed is this machine's own: every encode records its tokens/s in a small JSON file in
the cache folder (`encode-speeds.json`), keyed by model and device. Until one is recorded the
time is said to be unknown, never guessed.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from longchat.paths import cache_dir

IDS_BYTES = 4          # a memory keeps its token ids as int32 (ids.bin)
TRUSTED_TOKENS = 2048  # an encode this long replaces a record; a shorter one (start-up dominated) only a shorter one


def speeds_file() -> Path:
    return cache_dir() / "encode-speeds.json"


def speed_key(runner) -> str:
    return f"{runner.model.name}|{runner.model.device}"


def _records() -> dict:
    try:
        found = json.loads(speeds_file().read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def measured_speed(runner) -> float | None:
    """This machine's last trusted encode speed for the runner's model and device, tokens/s."""
    record = _records().get(speed_key(runner))
    try:
        speed = float(record["tok_s"])
    except (TypeError, KeyError, ValueError):
        return None
    return speed if speed > 0 else None


def record_speed(runner, tokens: int, seconds: float) -> None:
    """Keep an encode's speed for the next cost line. Never fails the command that measured it."""
    if tokens <= 0 or seconds <= 0:
        return
    records = _records()
    key = speed_key(runner)
    old = records.get(key) if isinstance(records.get(key), dict) else {}
    if tokens < TRUSTED_TOKENS and tokens < int(old.get("tokens", 0) or 0):
        return
    records[key] = {"tok_s": round(tokens / seconds, 1), "tokens": tokens, "at": int(time.time())}
    path = speeds_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(records, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass


def about(seconds: float) -> str:
    """A duration for people: "about 41 min", "about 2 h 05 min", "about 20 s"."""
    if seconds < 90:
        return f"about {max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    return f"about {minutes} min" if minutes < 120 else f"about {minutes // 60} h {minutes % 60:02d} min"


def cost_line(tokens: int, tok_s: float | None, stored_bytes: int, kept: bool) -> str:
    """`reading 232,818 tokens: about 41 min at this machine's 95 tok/s, 5.8 GB on disk`."""
    from longchat.memory.store import human_bytes

    when = (f"{about(tokens / tok_s)} at this machine's {tok_s:,.0f} tok/s" if tok_s else
            "time unknown (speed not measured yet on this machine)")
    where = f"{human_bytes(stored_bytes)} on disk" if kept else f"{human_bytes(stored_bytes)} of blocks, not kept"
    return f"reading {tokens:,} tokens: {when}, {where}"


def read_cost(runner, strategy, tokens: int, total: int, kept: bool) -> str:
    """The cost line for encoding `tokens` more tokens of a memory that will hold `total`."""
    return cost_line(tokens, measured_speed(runner), strategy.stored_bytes(total) + IDS_BYTES * total, kept)
