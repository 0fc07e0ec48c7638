"""A one-token decode step whose layers run through `torch.compile` (`[runtime] compile`).

Each layer is two compiled pieces around the strategy's attention, which stays eager (it is
the strategy's own Python: retrieval, caches, masks):
- in: the input norm and the qkv projection;
- out: the output projection, the residual, the post norm, the MLP and its residual.
The pieces take the layer's tensors as inputs (`weights.Linear.parts`), so one compiled graph
serves all layers, and inductor's on-disk cache (under longchat's cache folder) pays the
compile once per machine. Prefill chunks stay eager: they are large matmuls already.

No CUDA graphs yet (`mode="reduce-overhead"`): the pieces run 2 x layers times per step with
each one's output feeding the next, which graph trees would overwrite between replays; a graph
of the whole step needs a static KV cache, and no GPU has been lent to measure either.

The pieces are compiled when the model is loaded. If compilation is unavailable there (no C++
compiler, an unsupported backend), one line says so and the decoder runs eagerly, with the
same results.

Measured on a 2-core CPU (docs/decode.md): no faster than eager there, where a step's time is
the weight-only products and attention's reads of the KV cache, not the elementwise ops
between them. So the default is off.
"""

from __future__ import annotations

import os
from typing import Callable

import torch
import torch.nn.functional as F

from longchat.paths import cache_dir
from longchat.runtime.model import Decoder, rms_norm

MODES = ("off", "on")


def _layer_in(x, norm, eps: float, qkv_kind, qkv_parts, qkv_n: int):
    return qkv_kind.run(qkv_parts, rms_norm(x, norm, eps), qkv_n)


def _layer_out(x, heads, eps: float, o_kind, o_parts, o_n: int, post_norm,
               gu_kind, gu_parts, gu_n: int, down_kind, down_parts, down_n: int):
    x = x + o_kind.run(o_parts, heads, o_n)
    gate, up = gu_kind.run(gu_parts, rms_norm(x, post_norm, eps), gu_n).chunk(2, dim=-1)
    return x + down_kind.run(down_parts, F.silu(gate) * up, down_n)


def _linear_args(p) -> tuple:
    return type(p), p.parts(), p.out_features


class CompiledStep:
    """Set as `Decoder.step`: runs a one-token step's layers through the compiled pieces."""

    def __init__(self, decoder: Decoder):
        self.decoder = decoder
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir() / "inductor"))
        self.layer_in = torch.compile(_layer_in, dynamic=False)
        self.layer_out = torch.compile(_layer_out, dynamic=False)

    def warm_up(self) -> None:
        """Compile both pieces now, on a layer's own tensors and a zero token (no strategy
        state is touched), so a compiler failure surfaces here and not mid-answer."""
        dec = self.decoder
        w, cfg = dec.layers[0], dec.cfg
        x = torch.zeros(1, 1, cfg.hidden_size, dtype=dec.dtype, device=dec.device)
        heads = torch.zeros(1, 1, cfg.n_heads * cfg.head_dim, dtype=dec.dtype, device=dec.device)
        with torch.inference_mode():
            self.layer_in(x, w.input_norm, cfg.rms_norm_eps, *_linear_args(w.qkv))
            self._out(x, heads, w)

    def __call__(self, x: torch.Tensor, strategy) -> torch.Tensor:
        dec = self.decoder
        for i, w in enumerate(dec.layers):
            qkv = self.layer_in(x, w.input_norm, dec.cfg.rms_norm_eps, *_linear_args(w.qkv))
            x = self._out(x, dec.attend(i, w, qkv, strategy), w)
        return x

    def _out(self, x, heads, w):
        return self.layer_out(x, heads, self.decoder.cfg.rms_norm_eps, *_linear_args(w.o), w.post_norm,
                              *_linear_args(w.gate_up), *_linear_args(w.down))


def compile_step(decoder: Decoder, mode: str, note: Callable[[str], None]) -> bool:
    """Apply `[runtime] compile` to `decoder`: "on" compiles its one-token steps now (once per
    machine; later loads read inductor's cache). False, with a line for the user, when the
    compiler is unavailable: the decoder then stays eager."""
    decoder.step = None
    if mode != "on" or not decoder.layers:
        return False
    step = CompiledStep(decoder)
    note("compiling the decode step (torch.compile; once per machine, then cached) ...")
    try:
        step.warm_up()
    except Exception as e:  # whatever the compiler raises: one line, then eager decoding
        text = str(e).strip()
        reason = text.splitlines()[0][:160] if text else type(e).__name__
        note(f"torch.compile is unavailable here ({reason}); decoding without it")
        return False
    decoder.step = step
    return True
