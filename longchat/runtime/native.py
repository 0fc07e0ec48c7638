"""A decode step with the work between the weight products in C (`native/decode.c`).

At 1k tokens a one-token step of the bundled model spent as long in ~25 small torch operations
a layer (norms, RoPE, the cache append, the attention matmuls, dtype conversions) as in the
weight products themselves. Here each layer is four weight products (torch's own kernels, as
before) and four calls into C: the norm, attention (RoPE, the cache append, softmax over the
bf16 cache), the gated activation, and the residual with the next norm (docs/decode.md).

The C file is compiled once per machine with the system's C compiler into longchat's cache
folder (`cc -O3 -march=native`, OpenMP where the compiler has it; about a second). Without a
compiler, or when it fails, the load says so in one line and decode runs the torch path, with
the same answers up to rounding; `--stats` says which one ran (`decode`). `LONGCHAT_NATIVE=0`
turns it off (to compare, or to rule it out).

It runs where its inputs are what the kernels take, else the step is the torch one: a CPU, an
fp32 residual stream, one sequence, weight products that take and return bf16 (int4, int8 or
bf16 weights), and a strategy that offers its cache to it (`full` with a bf16 cache).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from longchat.paths import cache_dir
from longchat.runtime.model import Decoder

SOURCE = Path(__file__).parent / "native" / "decode.c"
_P, _L, _I, _F = ctypes.c_void_p, ctypes.c_long, ctypes.c_int, ctypes.c_float
_SIGNATURES = {
    "lc_norm": ([_P, _P, _P, _I, _F], None),
    "lc_add_norm": ([_P, _P, _P, _P, _P, _I, _F], None),
    "lc_silu_mul": ([_P, _P, _P, _I], None),
    "lc_attend": ([_P, _P, _P, _P, _P, _P, _L, _L, _I, _I, _I, _F, _I, _P], _I),
}
MAX_REP, MAX_DIM = 16, 256  # decode.c's limits
# Why the C kernels are not in use in this process, once known ("" when they are).
unavailable = ""


def _cpu_key() -> str:
    """What the compiled file depends on: the source, the compiler, and this CPU (-march=native)."""
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features", "model name")):
                flags += line
    except OSError:
        flags = platform.processor()
    return "\n".join([SOURCE.read_text(), platform.machine(), flags, _compiler() or ""])


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def _build(target: Path) -> str:
    """Compile decode.c to `target`; '' on success, else why not (one line)."""
    cc = _compiler()
    if cc is None:
        return "no C compiler (cc) found"
    target.parent.mkdir(parents=True, exist_ok=True)
    base = [cc, "-O3", "-ffp-contract=off", "-fno-math-errno", "-shared", "-fPIC", str(SOURCE), "-lm"]
    march = ["-march=native"] if platform.machine() in ("x86_64", "AMD64") else ["-mcpu=native"]
    error = ""
    # With OpenMP and this CPU's instructions first; then without each, for compilers that lack them.
    for extra in (march + ["-fopenmp"], march, []):
        with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".so", delete=False) as tmp:
            out = Path(tmp.name)
        try:
            done = subprocess.run(base[:1] + extra + base[1:] + ["-o", str(out)], capture_output=True, text=True)
        except OSError as exc:  # CC names no program
            out.unlink(missing_ok=True)
            return f"cannot run the C compiler {cc}: {exc.strerror}"
        if done.returncode == 0:
            os.replace(out, target)  # atomic: a concurrent build or reader sees a whole file
            return ""
        out.unlink(missing_ok=True)
        error = (done.stderr.strip().splitlines() or ["failed"])[-1]
    return f"{Path(cc).name} could not compile {SOURCE.name}: {error}"


def built() -> Path | None:
    """The compiled file in longchat's cache folder, compiled now if it is not there; None (with
    `unavailable` set) when it cannot be."""
    global unavailable
    key = hashlib.sha256(_cpu_key().encode()).hexdigest()[:16]
    target = cache_dir() / "native" / f"decode-{key}.so"
    if not target.exists():
        why = _build(target)
        if why:
            unavailable = why
            return None
    return target


@functools.cache
def library() -> ctypes.CDLL | None:
    """The compiled kernels, built on first use; None (with `unavailable` set) when they cannot be."""
    global unavailable
    if os.environ.get("LONGCHAT_NATIVE", "1") == "0":
        unavailable = "turned off (LONGCHAT_NATIVE=0)"
        return None
    target = built()
    if target is None:
        return None
    try:
        lib = ctypes.CDLL(str(target))
    except OSError as exc:
        unavailable = f"could not load {target.name}: {exc}"
        return None
    for name, (args, res) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, res
    return lib


def failed() -> bool:
    """The kernels would apply but could not be built or loaded (not: turned off, or not fitting)."""
    return bool(unavailable) and not unavailable.startswith(("turned off", "this model"))


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


class NativeStep:
    """Set as `Decoder.step`: a one-token step through the C kernels where they apply, else
    the decoder's own layers."""

    name = "native"

    def __init__(self, decoder: Decoder, lib: ctypes.CDLL):
        self.decoder = decoder
        self.lib = lib
        cfg = decoder.cfg
        self.eps = float(cfg.rms_norm_eps)
        self.c = cfg.hidden_size
        self.hq, self.hkv, self.d = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.scale = self.d ** -0.5
        self.layers = []
        for w in decoder.layers:
            norms = [w.input_norm.float().contiguous(), w.post_norm.float().contiguous()]
            biases = [None if p.bias is None else p.bias.float().contiguous() for p in w.projections()]
            self.layers.append((norms, biases, [p.bf16_product() for p in w.projections()]))
        self.h = torch.empty(1, self.c, dtype=torch.bfloat16)                                  # a norm's output
        self.heads = torch.empty(1, self.hq * self.d, dtype=torch.bfloat16)                    # attention's
        self.act = torch.empty(1, cfg.intermediate_size, dtype=torch.bfloat16)                 # the MLP's

    @staticmethod
    def fits(decoder: Decoder) -> bool:
        """The decoder's shapes and formats are what the kernels take."""
        cfg = decoder.cfg
        layers = decoder.layers
        return (decoder.device.type == "cpu" and decoder.dtype == torch.float32 and bool(layers)
                and all(w.q_norm is None for w in layers) and cfg.head_dim % 2 == 0 and cfg.head_dim <= MAX_DIM
                and cfg.n_heads % cfg.n_kv_heads == 0 and cfg.n_heads // cfg.n_kv_heads <= MAX_REP
                and all(p.bf16_product() is not None for w in layers for p in w.projections()))

    def __call__(self, x: torch.Tensor, strategy) -> torch.Tensor:
        caches = strategy.native_caches() if x.shape[0] == 1 else None
        if caches is None:
            return self.decoder.run_layers(x, strategy)
        lib, c, eps, h, heads, act = self.lib, self.c, self.eps, self.h, self.heads, self.act
        x = x.reshape(1, c).float().contiguous()
        xp, hp, headsp, actp = x.data_ptr(), h.data_ptr(), heads.data_ptr(), act.data_ptr()
        cos, sin = (t.reshape(-1).float().contiguous() for t in (strategy.cos, strategy.sin))
        cosp, sinp = cos.data_ptr(), sin.data_ptr()
        n_act, threads = act.shape[1], torch.get_num_threads()  # attention splits its keys over them
        pos = caches[0][2]
        lib.lc_norm(xp, self.layers[0][0][0].data_ptr(), hp, c, eps)
        for i, ((norms, biases, (qkv, o, gate_up, down)), (k, v, _)) in enumerate(zip(self.layers, caches)):
            y = qkv(h)
            if lib.lc_attend(y.data_ptr(), _ptr(biases[0]), cosp, sinp, k.data_ptr(), v.data_ptr(), k.shape[2], pos,
                             self.hq, self.hkv, self.d, self.scale, threads, headsp):
                raise RuntimeError("native attention refused its shapes")  # `fits` checks them first
            y = o(heads)
            lib.lc_add_norm(xp, y.data_ptr(), _ptr(biases[1]), norms[1].data_ptr(), hp, c, eps)
            y = gate_up(h)
            lib.lc_silu_mul(y.data_ptr(), _ptr(biases[2]), actp, n_act)
            y = down(act)
            nxt = self.layers[i + 1][0][0] if i + 1 < len(self.layers) else None
            lib.lc_add_norm(xp, y.data_ptr(), _ptr(biases[3]), _ptr(nxt), hp, c, eps)
        strategy.native_appended(1)
        return x.view(1, 1, c)


def native_step(decoder: Decoder) -> NativeStep | None:
    """The native step for `decoder`, or None where it does not apply (with `unavailable` set)."""
    global unavailable
    if not NativeStep.fits(decoder):
        unavailable = "this model's formats or shapes are not the kernels' (torch decodes)"
        return None
    lib = library()
    return None if lib is None else NativeStep(decoder, lib)


if __name__ == "__main__":  # python -m longchat.runtime.native: build and say where
    print("built" if library() is not None else f"unavailable: {unavailable}", file=sys.stderr)
