"""Imports go one way, down the layers: the import graph of `longchat/` (every `import`,
function-level ones too, read with `ast`) has no cycle, and no module imports a layer above
its own."""

from __future__ import annotations

import ast
from pathlib import Path

import longchat

ROOT = Path(longchat.__file__).parent

# Top-level module or package -> layer. A module may import its own layer and those below.
LAYERS = {
    "errors": 0, "paths": 0, "settings": 0, "timing": 0, "sysinfo": 0, "locks": 0, "samples": 0, "db": 0,
    "text": 0,                                      # content words; sentence vectors; BM25 and passages
    "plugins": 1,                                   # hook specs and manager: imports only layer 0
    "sources": 2, "runtime": 2, "context": 2,       # reading files; the model; attention strategies
    "memory": 3, "compress": 3,                     # encode-once memories; prompt compression
    "logs": 3,                                      # log templates, ranking and the table
    "prompts": 2,                                   # chat templates, the ask and summarize frames
    "profile": 4, "api": 4, "reading": 4, "history": 4,                      # profiles; ask / summarize / ingest as functions
    "chat": 5,                                      # conversations and persistent sessions
    "bench": 6,                                     # benchmark tasks
    "serve": 6,                                     # the OpenAI-compatible HTTP server
    "cli": 7, "__main__": 8,                        # the command line
}


def module_names() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = ["longchat", *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the longchat modules it imports (anywhere in the file)."""
    mods = module_names()
    graph = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" for a in node.names]
            for target in targets:
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    deps.add(target)
        graph[name] = deps
    return graph


def layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else "longchat"
    return LAYERS.get(top, 0 if top == "longchat" else -1)


def test_every_module_has_a_layer():
    assert [m for m in import_graph() if layer(m) < 0] == []


def test_no_module_imports_a_layer_above_its_own():
    graph = import_graph()
    upward = [f"{m} (layer {layer(m)}) imports {d} (layer {layer(d)})"
              for m, deps in sorted(graph.items()) for d in sorted(deps) if layer(d) > layer(m)]
    assert upward == []


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                return path[path.index(d):] + [d]
            if d not in state and (cycle := visit(d)):
                return cycle
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            cycle = visit(m)
            assert cycle is None, " -> ".join(cycle)


def test_plugins_imports_only_the_leaf_modules():
    assert {d for d in import_graph()["longchat.plugins"] if layer(d) > 0} == set()


def test_the_checker_sees_function_level_and_relative_imports(tmp_path, monkeypatch):
    """The graph is only as good as its parser: a cycle hidden in a function is still one."""
    pkg = tmp_path / "longchat"
    (pkg / "sources").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "plugins.py").write_text("def f():\n    from longchat.sources import a\n")
    (pkg / "sources" / "__init__.py").write_text("")
    (pkg / "sources" / "a.py").write_text("from .. import plugins\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", pkg)
    graph = import_graph()
    assert graph["longchat.plugins"] == {"longchat.sources.a"}
    assert graph["longchat.sources.a"] == {"longchat.plugins"}
