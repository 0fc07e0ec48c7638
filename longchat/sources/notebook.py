"""Jupyter notebooks (.ipynb): the cells in order, as a script with `# %%` cell markers.

A notebook's JSON is mostly what a model should not read: base64 images, HTML tables, and
metadata. It reads as its markdown and code cells, each after a `# %%` line (`# %% [markdown]`
for markdown), then the cell's text outputs, cut short; an image or other non-text output
leaves one marker line (`[image output]`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from longchat.sources.base import Document, Note, Reader, Unreadable, cannot_open

OUTPUT_CHARS = 500  # text an output keeps (a training log's first lines say what it is)
OUTPUT_LINES = 10
# display_data / execute_result types that are text, in order of preference
TEXT_TYPES = ("text/plain", "text/markdown", "text/latex")


def _text(value) -> str:
    """A notebook string: one string, or (nbformat 4) a list of lines."""
    return "".join(value) if isinstance(value, list) else str(value or "")


def _short(text: str) -> str:
    """An output's text cut to `OUTPUT_LINES` lines and `OUTPUT_CHARS` characters, with a marker."""
    text = text.rstrip("\n")
    kept = "\n".join(text.split("\n")[:OUTPUT_LINES])[:OUTPUT_CHARS]
    if len(kept) < len(text):
        rest = text[len(kept):]
        kept += f"\n[... {rest.count(chr(10)) + 1:,} more lines of output cut]" if "\n" in rest else \
            f" [... {len(rest):,} more characters of output cut]"
    return kept


def _output(output: dict) -> str | None:
    """One output as the model reads it, or None for nothing worth a line."""
    kind = output.get("output_type")
    if kind == "stream":
        return _short(_text(output.get("text")))
    if kind == "error":
        return f"{output.get('ename', 'Error')}: {output.get('evalue', '')}".strip()
    if kind in ("display_data", "execute_result", "pyout"):
        data = output.get("data", output)  # nbformat 3 kept the types on the output itself
        for mime in TEXT_TYPES:
            if mime in data:
                return _short(_text(data[mime]))
        if any(str(mime).startswith("image/") or mime in ("png", "jpeg", "svg") for mime in data):
            return "[image output]"
        if "text/html" in data or "html" in data:
            return "[html output]"
        return "[output]" if data else None
    return None


def _cells(notebook: dict) -> list[dict]:
    if isinstance(notebook.get("cells"), list):
        return notebook["cells"]
    # nbformat 3: cells inside worksheets, a code cell's source in "input"
    sheets = notebook.get("worksheets")
    if isinstance(sheets, list):
        return [cell for sheet in sheets if isinstance(sheet, dict) for cell in sheet.get("cells", [])]
    raise ValueError("no cells")


def render(notebook: dict) -> Iterator[str]:
    """The notebook as text, one piece per cell, a blank line between cells."""
    first = True
    for cell in _cells(notebook):
        if not isinstance(cell, dict):
            continue
        kind = cell.get("cell_type", "code")
        source = _text(cell.get("source", cell.get("input", ""))).strip("\n")
        if kind == "code":
            lines = ["# %%", source] if source else ["# %%"]
            outputs = [shown for out in cell.get("outputs") or [] if isinstance(out, dict)
                       if (shown := _output(out))]
            if outputs:
                lines += ["# %% [output]", *outputs]
        elif source:
            lines = [f"# %% [{'markdown' if kind == 'heading' else kind}]", source]
        else:
            continue
        yield ("" if first else "\n") + "\n".join(lines) + "\n"
        first = False


def _load(path: Path, label: str) -> dict:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise cannot_open(label, error) from None
    try:
        notebook = json.loads(raw.decode("utf-8-sig"))
        if not isinstance(notebook, dict):
            raise ValueError("not a JSON object")
        _cells(notebook)
    except (ValueError, UnicodeDecodeError) as error:
        reason = str(error).splitlines()[0][:80] if str(error) else type(error).__name__
        raise Unreadable(f"{label!r} is not a readable notebook ({reason})", reason="invalid notebook") from None
    return notebook


def open_notebook(path: Path, label: str, note: Note) -> Document:
    """A notebook as a `Document`; raises `Unreadable` when it is not valid notebook JSON.

    The JSON is parsed here (a walk skips a broken notebook with a note) and again when read,
    so that a notebook full of images is not held between the two.
    """
    notebook = _load(path, label)
    size = path.stat().st_size
    del notebook

    def pieces() -> Iterator[str]:
        yield from render(_load(path, label))

    return Document(label=label, kind="notebook", size=size, open_pieces=pieces)


NOTEBOOK = Reader(
    name="notebook",
    extensions=(".ipynb",),
    summary="Jupyter notebooks: code and markdown cells with short text outputs (images and HTML left out)",
    open=open_notebook,
)
