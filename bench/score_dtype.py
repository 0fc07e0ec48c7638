"""Time InfLLM's retrieval scoring (`BlockStore.scores`) per representative dtype and length.

    python bench/score_dtype.py [--lengths 32k,64k,128k] [--threads N]

One call scores every block of one layer against one query, as each voting layer does on each
decode step; the bundled model's shape (3 key/value heads, head_dim 64) and the infllm
profile's block_size 128 and repr_topk 16. Prints the median ms per call of 200 (and, in
brackets, that of one batched matmul over all heads, the kernel `scores` used before), and
the dtype `score_dtype = "auto"` picks on this machine.
"""

from __future__ import annotations

import argparse

import torch

from longchat.bench.run import format_length, parse_lengths
from longchat.context.infllm.blocks import SCORE_DTYPES, BlockStore, score_dtype
from longchat.timing import median_seconds


def median_ms(call) -> float:
    return median_seconds(call, 200, warmup=5) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", default="32k,64k,128k")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    heads, block, reprs, dim = 3, 128, 16, 64
    print(f"auto picks {str(score_dtype('auto', 'cpu')).removeprefix('torch.')} here ({args.threads} threads)")
    for length in parse_lengths(args.lengths):
        n = length // block
        keys = torch.randn(n, heads, reprs, dim)
        q = torch.randn(heads, dim)
        row = []
        for name, dtype in SCORE_DTYPES.items():
            store = BlockStore(heads, block, dim, reprs, dtype=dtype)
            store.reprs = keys.permute(1, 0, 2, 3).to(dtype).contiguous()  # (Hkv, N, r, D), as extend leaves it
            store.count = n
            flat, col = store.reprs.reshape(heads, n * reprs, dim), q.to(dtype)[:, :, None]
            row.append(f"{name} {median_ms(lambda: store.scores(q)):.3f} ms "
                       f"(bmm {median_ms(lambda: torch.bmm(flat, col)):.3f})")
        print(f"{format_length(length)} ({n} blocks): " + ", ".join(row))


if __name__ == "__main__":
    main()
