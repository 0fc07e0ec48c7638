"""`longchat profiles`: list or show the context strategy profiles."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from longchat.cli.app import app
from longchat.cli.common import out

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
