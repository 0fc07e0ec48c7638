"""The HTML reader plugin through longchat's real hooks and entry points."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

from longchat import plugins
from longchat.sources import read_text, reader_for

PAGE = """<!doctype html><html><head><title>Gull Rock</title><style>p{color:red}</style>
<script>var secret = "do not show";</script></head><body>
<h1>Gull Rock Lighthouse</h1><!-- a comment -->
<p>The first keeper was <b>Margaret Hale</b>.</p><ul><li>Built 1871</li><li>Automated 1968</li></ul>
<p>Line one<br>Line two</p></body></html>"""


def test_entry_point_is_found_and_loaded():
    names = [ep.name for ep in entry_points(group=plugins.GROUP)]
    assert "html" in names
    assert any(p.name == "html" and p.error is None for p in plugins.loaded())


def test_html_files_read_as_visible_text(tmp_path: Path):
    page = tmp_path / "rock.html"
    page.write_text(PAGE)
    assert reader_for(page).name == "html"
    text = read_text([str(page)])
    assert text.startswith("Gull Rock\n\nGull Rock Lighthouse")
    assert "The first keeper was Margaret Hale." in text
    assert "Built 1871\nAutomated 1968" in text and "Line one\nLine two" in text
    assert "secret" not in text and "color" not in text and "comment" not in text


def test_a_folder_walk_uses_the_reader(tmp_path: Path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.htm").write_text(PAGE)
    text = read_text([str(tmp_path / "site")])
    assert "### File:" in text and "Margaret Hale" in text and "<p>" not in text
