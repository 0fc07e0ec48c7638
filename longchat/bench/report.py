"""Benchmark results as a rich table (stdout), one progress line per sample (stderr), and JSON."""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

from longchat.bench.run import BenchResult, HFComparison, LengthResult, SampleResult, format_length
from longchat.errors import LongchatError


def sample_line(task: str, s: SampleResult, samples: int) -> str:
    """One progress line: which prompt, what was expected, what came back, how long it took."""
    got = "-" if s.got is None else s.got
    squeezed = (f", compressed {s.context_tokens} -> {s.compressed_tokens} tok in {s.compress_s:.1f} s"
                if s.compress_s else "")
    return (f"{task} {format_length(s.length)} #{s.index + 1}/{samples} depth {s.depth:.2f} "
            f"expected {s.expected} got {got} {'ok' if s.ok else 'FAIL'} {s.seconds:.1f} s "
            f"({s.prompt_tokens} tok, prefill {s.prefill_tok_s:.0f} tok/s, decode {s.decode_tok_s:.1f} tok/s{squeezed})")


def hf_line(r: LengthResult) -> str:
    h: HFComparison = r.hf
    return (f"transformers {format_length(r.length)}: prefill {h.prefill_tok_s:.0f} tok/s "
            f"(ours {h.ours_prefill_tok_s:.0f}), decode {h.decode_tok_s:.1f} tok/s (ours {h.ours_decode_tok_s:.1f}), "
            f"first tokens agree {h.agree}/{h.compared}, answer {h.answer!r}")


def _times(ratio: float | None) -> str:
    return f"{ratio:.2f}x" if ratio is not None else "-"


def results_table(results: list[BenchResult]) -> Table:
    """profile | length | tokens | accuracy | prefill | MFU | decode | peak RSS, plus transformers columns if run.

    Our speeds are medians over a length's samples; the ours/hf ratios come from the back-to-back
    runs on its first prompt (see `HFComparison`). MFU: median prefill FLOP/s over the device's
    peak matmul FLOP/s (`bench.flops`).
    """
    with_hf = any(r.hf for result in results for r in result.lengths)
    squeezed = any(s.compress_s for result in results for r in result.lengths for s in r.samples)
    m = results[0].machine
    table = Table(title=f"{results[0].task} - {m['model']}, {m['device']}, {m['torch_threads']} threads, greedy")
    for name in ("profile", "length", "tokens", "accuracy", "prefill tok/s", "prefill MFU", "decode tok/s",
                 "peak RSS MiB"):
        table.add_column(name, justify="left" if name == "profile" else "right", no_wrap=True)
    if squeezed:
        for name in ("kept", "compress s", "compress tok/s", "end-to-end s"):
            table.add_column(name, justify="right", no_wrap=True)
    if with_hf:
        for name in ("hf prefill tok/s", "hf decode tok/s", "prefill ours/hf", "decode ours/hf", "same tokens",
                     "hf peak RSS MiB"):
            table.add_column(name, justify="right", no_wrap=True)
    for result in results:
        profile = result.machine["profile"]
        for r in result.lengths:
            if not r.ran:
                table.add_row(profile, format_length(r.length), "-", r.status, "-", "-", "-", "-",
                              *(["-"] * 4 if squeezed else []), *(["-"] * 6 if with_hf else []))
                continue
            prefill, decode = r.median("prefill_tok_s"), r.median("decode_tok_s")
            row = [profile, format_length(r.length), f"{r.prompt_tokens:,}", f"{r.correct}/{len(r.samples)}",
                   f"{prefill:.0f}", "-" if r.mfu is None else f"{r.mfu:.0%}", f"{decode:.1f}", f"{r.peak_rss_mb:,.0f}"]
            if squeezed:
                c = r.summary().get("compress")
                row += ([f"{c['ratio']:.0%}", f"{c['seconds']:.1f}", f"{c['tok_s']:.0f}", f"{c['end_to_end_s']:.1f}"]
                        if c else ["-"] * 4)
            if with_hf:
                h = r.hf
                row += [f"{h.prefill_tok_s:.0f}", f"{h.decode_tok_s:.1f}", _times(h.prefill_ratio),
                        _times(h.decode_ratio), f"{h.agree}/{h.compared}", f"{h.peak_rss_mb:,.0f}"] if h else ["-"] * 6
            table.add_row(*row)
    return table


def write_json(results: list[BenchResult], path: str | Path) -> None:
    """Every profile's results (settings, machine, per-length summaries, per-sample records) as one JSON file."""
    data = {"task": results[0].task, "runs": [r.as_dict() for r in results]}
    try:
        Path(path).write_text(json.dumps(data, indent=2) + "\n")
    except OSError as e:
        raise LongchatError(f"cannot write {path}: {e.strerror or e}") from None


def write_plot(results: list[BenchResult], path: str | Path) -> None:
    """A PNG: accuracy vs length (left) and prefill tokens/s vs length (right), one line per profile."""
    try:
        import matplotlib
    except ImportError:
        raise LongchatError("--plot needs matplotlib: pip install matplotlib (or longchat[bench])") from None
    matplotlib.use("Agg")  # files only: never open a window
    import matplotlib.pyplot as plt

    fig, (acc, speed) = plt.subplots(1, 2, figsize=(11, 4.2))
    for result in results:
        ran = [r for r in result.lengths if r.ran]
        if not ran:
            continue
        x = [r.length for r in ran]
        label = result.machine["profile"]
        acc.plot(x, [100 * r.correct / len(r.samples) for r in ran], marker="o", label=label)
        speed.plot(x, [r.median("prefill_tok_s") for r in ran], marker="o", label=label)
    m = results[0].machine
    for ax, ylabel in ((acc, "accuracy (%)"), (speed, "prefill tokens/s (median)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("prompt length (tokens)")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend()
    acc.set_ylim(-5, 105)
    fig.suptitle(f"{results[0].task}: {m['model']} on {m['device']} ({m['torch_threads']} threads)")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as e:
        raise LongchatError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        plt.close(fig)
