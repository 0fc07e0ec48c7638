"""Weight formats: how a projection is held in memory and multiplied.

A decode step reads every weight once, so its speed on a CPU follows the bytes held per
weight: fp32 4, fp16/bf16 2, int8 ~1, int4 ~0.56. The quantised formats run through torch's
own weight-only kernels (`_weight_int8pack_mm`, `_weight_int4pack_mm_for_cpu`), which read the
int8/int4 weights as they are and take bf16 activations; everything around the projections
(norms, RoPE, attention, the KV cache) stays in the model's dtype.

- `auto`: the model's dtype (fp32 on a CPU, bf16 on a GPU), as before formats existed.
- `fp32`: exact.
- `fp16`: held in fp16, widened to the activations' dtype for each product: the same results
  as fp32 for a checkpoint whose weights are fp16 (half the memory, not faster).
- `bf16`: held and multiplied in bf16 (fast on CPUs with AVX512-BF16/AMX and on GPUs).
- `int8`: symmetric int8 per output row.
- `int4`: asymmetric 4-bit in groups of 32 along the input (the layout of GGUF's Q4_1), the
  embedding and output projection in int8 (as llama.cpp keeps them in Q8_0/Q6_K).
On a device without these kernels the int formats are widened per product: the memory saving
stays, the speed does not.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from longchat.errors import ConfigError

FORMATS = ("auto", "fp32", "bf16", "fp16", "int8", "int4")
GROUP = 32  # int4 group size along the input dimension


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown weight format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return fmt


def _fast_kernels(device: torch.device) -> bool:
    return device.type == "cpu"


# From this many rows (prefill chunks, not decode steps), an int product on a CPU with bf16
# matmuls (AVX512-BF16, AMX) widens its weights to bf16 for the chunk and multiplies densely:
# at 512 rows that is ~2x faster than the weight-only kernels, and the activations were bf16 in
# those kernels anyway (docs/decode.md).
WIDEN_ROWS = 16


@functools.cache
def bf16_matmuls() -> bool:
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # an older or other build: keep the weight-only kernels
        return False


def _widen_chunk(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and x.numel() >= WIDEN_ROWS * x.shape[-1] and bf16_matmuls()


class Linear:
    """y = x W^T + b for one projection; subclasses hold W differently."""

    fmt = "fp32"
    out_features: int
    in_features: int
    bias: torch.Tensor | None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(self.parts(), x, self.out_features)

    def parts(self) -> tuple[torch.Tensor | None, ...]:
        """The tensors the product reads, for `run`: a compiled decode step (runtime/step.py)
        takes them as inputs, so one compiled graph serves every layer."""
        raise NotImplementedError

    @staticmethod
    def run(parts: tuple, x: torch.Tensor, n: int) -> torch.Tensor:
        """y (..., n) for x (..., K): a pure function of `parts`."""
        raise NotImplementedError

    @property
    def numel(self) -> int:
        return self.out_features * self.in_features

    @property
    def nbytes(self) -> int:
        """Bytes held for this projection (weights, scales, bias)."""
        return sum(t.numel() * t.element_size() for t in self._tensors())

    def _tensors(self) -> list[torch.Tensor]:
        return [t for t in self.parts() if t is not None]

    def dense(self) -> torch.Tensor:
        """W widened to fp32 (tests, reference checks)."""
        raise NotImplementedError

    def bf16_product(self):
        """A function from x (1, K) bf16 to x W^T (1, N) bf16 without the bias, through one
        kernel call, for the native decode step (`runtime.native`); None where there is none."""
        return None


def _with_bias(y: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return y if bias is None else y + bias


class Dense(Linear):
    """W in fp32 / bf16 / fp16. fp16 is widened per product (exact against fp32); bf16 is
    multiplied as bf16."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        self.weight = weight
        self.bias = bias
        self.out_features, self.in_features = weight.shape
        self.fmt = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(weight.dtype, str(weight.dtype))

    def parts(self):
        return self.weight, self.bias

    @staticmethod
    def run(parts, x, n):
        w, bias = parts
        if w.dtype == x.dtype:
            return F.linear(x, w, bias)
        if w.dtype == torch.bfloat16:
            return _with_bias(F.linear(x.to(w.dtype), w).to(x.dtype), bias)
        return F.linear(x, w.to(x.dtype), bias)

    def dense(self) -> torch.Tensor:
        return self.weight.float()

    def bf16_product(self):
        if self.weight.dtype != torch.bfloat16 or self.weight.device.type != "cpu":
            return None
        return functools.partial(F.linear, weight=self.weight)


def _row_blocks(n: int, size: int = 4096) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _rows(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, x.shape[-1])


class Int8(Linear):
    """W ~ q * scale[row], q int8 in [-127, 127]."""

    fmt = "int8"

    def __init__(self, q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None = None):
        self.q = q                      # (N, K) int8
        self.scale = scale              # (N,) fp32
        self.scale_bf16 = scale.to(torch.bfloat16)
        self.bias = bias
        self.out_features, self.in_features = q.shape

    @classmethod
    def quantize(cls, w: torch.Tensor, bias: torch.Tensor | None = None) -> "Int8":
        q = torch.empty(w.shape, dtype=torch.int8, device=w.device)
        scale = torch.empty(w.shape[0], dtype=torch.float32, device=w.device)
        for rows in _row_blocks(w.shape[0]):  # a block at a time: fp32 temporaries stay small
            part = w[rows].float()
            scale[rows] = (part.abs().amax(1) / 127).clamp(min=1e-12)
            q[rows] = torch.round(part / scale[rows, None]).clamp_(-127, 127).to(torch.int8)
        return cls(q, scale, bias)

    def parts(self):
        return self.q, self.scale, self.scale_bf16, self.bias

    @staticmethod
    def run(parts, x, n):
        q, scale, scale_bf16, bias = parts
        if _widen_chunk(x):
            y = F.linear(x.to(torch.bfloat16), q.to(torch.bfloat16) * scale_bf16[:, None]).to(x.dtype)
        elif _fast_kernels(x.device):
            y = torch._weight_int8pack_mm(_rows(x).to(torch.bfloat16), q, scale_bf16)
            y = y.to(x.dtype).view(*x.shape[:-1], n)
        else:
            y = F.linear(x, q.to(x.dtype) * scale.to(x.dtype)[:, None])
        return _with_bias(y, bias)

    def bf16_product(self):
        if not _fast_kernels(self.q.device):
            return None
        kernel, q, scale = torch._weight_int8pack_mm, self.q, self.scale_bf16
        return lambda x: kernel(x, q, scale)

    def rows(self, ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Rows `ids` of W, widened: the embedding lookup when W is the tied embedding."""
        return self.q[ids].to(dtype) * self.scale[ids].to(dtype)[..., None]

    def dense(self) -> torch.Tensor:
        return self.q.float() * self.scale[:, None]


class Int4(Linear):
    """W ~ (q - 8) * scale[row, group] + zero[row, group], q in 0..15, groups of 32 inputs.

    On a CPU it is held only in the kernel's layout (`_convert_weight_to_int4pack_for_cpu`,
    with bf16 scales and zeros); elsewhere as q (uint8) and fp32 scales and zeros, widened
    for each product."""

    fmt = "int4"

    def __init__(self, q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bias: torch.Tensor | None = None):
        n, k = q.shape
        self.out_features, self.in_features = n, k
        self.bias = bias
        if q.device.type == "cpu":
            self.packed = torch._convert_weight_to_int4pack_for_cpu(q.to(torch.int32), 1)
            # The kernel's layout: (K / group, N, 2) of (scale, zero), in the activations' dtype.
            self.scales_zeros = torch.stack([scale, zero], -1).transpose(0, 1).contiguous().to(torch.bfloat16)
            self.q = self.scale = self.zero = None
        else:
            self.packed = self.scales_zeros = None
            self.q, self.scale, self.zero = q.to(torch.uint8), scale, zero   # (N, K), (N, K / 32) x 2

    @classmethod
    def quantize(cls, w: torch.Tensor, bias: torch.Tensor | None = None) -> "Int4":
        n, k = w.shape
        if k % GROUP:
            raise ConfigError(f"int4 weights need an input size divisible by {GROUP} (this model has {k}); use int8")
        q = torch.empty((n, k), dtype=torch.uint8, device=w.device)
        scale = torch.empty((n, k // GROUP), dtype=torch.float32, device=w.device)
        lo = torch.empty_like(scale)
        for rows in _row_blocks(n):  # a block at a time: fp32 temporaries stay small
            g = w[rows].float().view(-1, k // GROUP, GROUP)
            lo[rows] = g.amin(-1)
            scale[rows] = ((g.amax(-1) - lo[rows]) / 15).clamp(min=1e-12)
            q[rows] = torch.round((g - lo[rows, :, None]) / scale[rows, :, None]).clamp_(0, 15).to(torch.uint8).view(-1, k)
        return cls(q, scale, lo + 8 * scale, bias)

    def parts(self):
        return self.packed, self.scales_zeros, self.q, self.scale, self.zero, self.bias

    @staticmethod
    def run(parts, x, n):
        packed, scales_zeros, q, scale, zero, bias = parts
        if packed is not None and n % 64 == 0 and _widen_chunk(x) and _int4_layout_known():
            y = F.linear(x.to(torch.bfloat16), _unpack_int4_bf16(packed, scales_zeros, n)).to(x.dtype)
        elif packed is not None:  # on the CPU
            y = torch._weight_int4pack_mm_for_cpu(_rows(x).to(torch.bfloat16), packed, GROUP, scales_zeros)
            y = y.to(x.dtype).view(*x.shape[:-1], n)
        else:
            y = F.linear(x, _widen_int4(q, scale, zero).to(x.dtype))
        return _with_bias(y, bias)

    def dense(self) -> torch.Tensor:
        if self.q is not None:
            return _widen_int4(self.q, self.scale, self.zero)
        # unpack through the kernel: W = int4mm(I) for the identity
        eye = torch.eye(self.in_features, dtype=torch.bfloat16)
        return torch._weight_int4pack_mm_for_cpu(eye, self.packed, GROUP, self.scales_zeros).float().T.contiguous()

    def bf16_product(self):
        if self.packed is None:
            return None
        kernel, packed, scales_zeros = torch._weight_int4pack_mm_for_cpu, self.packed, self.scales_zeros
        return lambda x: kernel(x, packed, GROUP, scales_zeros)


def _unpack_int4_bf16(packed: torch.Tensor, scales_zeros: torch.Tensor, n: int) -> torch.Tensor:
    """W (N, K) in bf16 from the CPU kernel's layout: rows in blocks of 64, each byte of a
    block's column k holding row j (low nibble) and row 32 + j (high nibble), j < 32. Checked
    against the kernel itself once per process (`_int4_layout_known`)."""
    k = packed.shape[1] * 2
    blocks = packed.view(n // 64, k, 32)
    q = torch.cat([blocks & 15, blocks >> 4], dim=2).transpose(1, 2).reshape(n, k // GROUP, GROUP)
    scale, zero = scales_zeros[..., 0].t(), scales_zeros[..., 1].t()  # (N, K / 32)
    return ((q.to(torch.bfloat16) - 8) * scale[..., None] + zero[..., None]).view(n, k)


@functools.cache
def _int4_layout_known() -> bool:
    """The kernel's packed layout is torch's own: check `_unpack_int4_bf16` against the kernel
    (W = int4mm(I)) on a small matrix before trusting it."""
    q = torch.randint(0, 16, (128, 64), generator=torch.Generator().manual_seed(0), dtype=torch.int32)
    packed = torch._convert_weight_to_int4pack_for_cpu(q, 1)
    scales_zeros = torch.ones(64 // GROUP, 128, 2, dtype=torch.bfloat16)
    scales_zeros[..., 1] = 8  # W = q exactly
    ours = _unpack_int4_bf16(packed, scales_zeros, 128)
    return torch.equal(ours, q.to(torch.bfloat16))


def _widen_int4(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    n, k = q.shape
    g = q.float().view(n, k // GROUP, GROUP) - 8
    return (g * scale[..., None] + zero[..., None]).view(n, k)


def make_linear(weight: torch.Tensor, bias: torch.Tensor | None, fmt: str, dtype: torch.dtype) -> Linear:
    """`weight` (fp32 or the checkpoint's dtype) held as `fmt`; the bias in the model dtype."""
    bias = None if bias is None else bias.to(dtype)
    if fmt == "int8":
        return Int8.quantize(weight, bias)
    if fmt == "int4":
        return Int4.quantize(weight, bias)
    held = {"auto": dtype, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[fmt]
    return Dense(weight.to(held), bias)


class Embedding:
    """The token embedding, and the output projection when it is tied to it: one copy."""

    def __init__(self, table: Linear, dtype: torch.dtype):
        self.table = table
        self.dtype = dtype

    def __call__(self, ids: torch.Tensor) -> torch.Tensor:
        t = self.table
        if isinstance(t, Int8):
            return t.rows(ids, self.dtype)
        if isinstance(t, Dense):
            return F.embedding(ids, t.weight).to(self.dtype)
        raise TypeError(f"an embedding held as {t.fmt}")


def bytes_per_weight(fmt: str, dtype: torch.dtype) -> float:
    """Bytes held per weight (scales included) by a projection in `fmt`."""
    sizes = {"fp32": 4, "bf16": 2, "fp16": 2, "int8": 1, "int4": 0.5 + 4 / GROUP}
    return sizes[fmt] if fmt in sizes else torch.empty(0, dtype=dtype).element_size()


def embedding_format(fmt: str) -> str:
    """The embedding (and a tied output projection) is held as int8 under int4: a 4-bit
    vocabulary projection costs accuracy for little speed (llama.cpp keeps it at 6-8 bits)."""
    return "int8" if fmt == "int4" else fmt


def resident_mib(shapes: dict[str, tuple[int, ...]], tied: bool) -> dict[str, int]:
    """MiB the weights take in memory per format, from a checkpoint's tensor shapes (names as
    in transformers): projections in the format, the embedding and output projection in
    `embedding_format`, vectors (norms, biases) in fp32."""
    sizes = {}
    for fmt in ("fp32", "bf16", "int8", "int4"):
        total = 0.0
        for name, shape in shapes.items():
            n = 1
            for d in shape:
                n *= d
            if len(shape) < 2:
                total += 4 * n
            elif "embed_tokens" in name or "lm_head" in name:
                total += 0 if (tied and "lm_head" in name) else n * bytes_per_weight(embedding_format(fmt), torch.float32)
            else:
                total += n * bytes_per_weight(fmt, torch.float32)
        sizes[fmt] = round(total / 2**20)
    return sizes
