"""Every package the code imports is one its pyproject.toml declares, so a plain `pip install`
(no test extras, which bring pytest and its pluggy) gets all of them."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECTS = [ROOT, *sorted(p.parent for p in (ROOT / "plugins").glob("*/pyproject.toml"))]


def imported_modules(project: Path) -> dict[str, str]:
    """Top-level modules imported by the project's packages -> one file that does."""
    meta = tomllib.loads((project / "pyproject.toml").read_text())
    tops = {name.split(".")[0] for name in meta["tool"]["setuptools"]["packages"]}
    found = {}
    for top in sorted(tops):
        for path in sorted((project / top).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], str(path.relative_to(project)))
    return found


def declared(project: Path) -> set[str]:
    meta = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    specs = list(meta.get("dependencies", []))
    for extra in meta.get("optional-dependencies", {}).values():
        specs += extra
    return {normal(re.match(r"[A-Za-z0-9._-]+", spec).group()) for spec in specs} | {normal(meta["name"])}


# Optional extras that are not installed here: packages_distributions() cannot name their
# distribution, whose name differs from the module's.
NOT_INSTALLED = {"llama_cpp": ["llama-cpp-python"]}


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.parametrize("project", PROJECTS, ids=lambda p: p.name)
def test_every_imported_package_is_declared(project):
    dists = packages_distributions()
    ours = {"longchat", "longchat_html", "longchat_rag"}
    wanted = declared(project)
    missing = []
    for module, where in sorted(imported_modules(project).items()):
        if module in sys.stdlib_module_names or module in ours:
            continue
        names = {normal(d) for d in dists.get(module, NOT_INSTALLED.get(module, [module]))}
        if not names & wanted:
            missing.append(f"{module} (imported by {where}; distribution {', '.join(sorted(names))})")
    assert not missing, f"{project.name}/pyproject.toml does not declare: " + "; ".join(missing)


def test_every_package_directory_is_listed():
    """A package left out of `[tool.setuptools] packages` is missing from a non-editable install."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "longchat").rglob("__init__.py")}
    assert not found - listed, f"pyproject.toml [tool.setuptools] packages lacks: {sorted(found - listed)}"
