"""Where longchat keeps its files. `LONGCHAT_HOME` moves all of them under one folder."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from longchat.errors import EnvError


def _home() -> Path | None:
    home = os.environ.get("LONGCHAT_HOME")
    if not home:
        return None
    path = Path(home).expanduser()
    if path.exists() and not path.is_dir():
        raise EnvError(f"LONGCHAT_HOME={home} is a file, not a folder; point it at a folder (it is made if missing)")
    return path


def cache_dir() -> Path:
    """Converted models and other things that can be rebuilt."""
    home = _home()
    return home / "cache" if home else Path(platformdirs.user_cache_dir("longchat"))


def data_dir() -> Path:
    """Things a user would miss: chat history, sessions, named memories."""
    home = _home()
    return home / "data" if home else Path(platformdirs.user_data_dir("longchat"))


def config_dir() -> Path:
    """User profiles (`profiles/*.toml`) that extend or shadow the shipped ones."""
    home = _home()
    return home / "config" if home else Path(platformdirs.user_config_dir("longchat"))
