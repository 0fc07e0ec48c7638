"""A longchat reader for HTML pages: visible text only, block elements on their own lines.

Scripts, styles, templates and comments are dropped; headings, paragraphs, list items, table
rows and <br> become line breaks; the page <title> comes first. Parsing is BeautifulSoup's
with Python's built-in html.parser, so nothing needs compiling.
"""

from __future__ import annotations

from pathlib import Path

from longchat.plugins import hookimpl
from longchat.sources import Document, Reader
from longchat.sources.base import Unreadable, cannot_open

DROP = ("script", "style", "noscript", "template", "svg", "head")
BLOCKS = ("p", "div", "section", "article", "header", "footer", "main", "aside", "nav", "li", "tr", "pre",
          "blockquote", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "dl", "dt", "dd", "figure")


def html_to_text(markup: str) -> str:
    from bs4 import BeautifulSoup, Comment

    soup = BeautifulSoup(markup, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup(DROP):
        tag.decompose()
    for comment in soup.find_all(string=lambda s: isinstance(s, Comment)):
        comment.extract()
    for br in soup.find_all("br"):
        br.replace_with("\n")
    for tag in soup.find_all(BLOCKS):
        tag.insert_before("\n")
        tag.insert_after("\n")
    lines = [" ".join(line.split()) for line in soup.get_text().splitlines()]
    body = "\n".join(line for line in lines if line)
    if title and body.split("\n", 1)[0] != title:
        body = f"{title}\n\n{body}"
    return body + ("\n" if body else "")


def open_html(path: Path, label: str, note) -> Document:
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise cannot_open(label, error) from None
    if b"\x00" in raw[:8192]:
        raise Unreadable(f"{label!r} does not look like an HTML page (binary data)", reason="binary")

    def pieces():
        yield html_to_text(raw.decode("utf-8", errors="replace"))

    return Document(label=label, kind="html", size=len(raw), open_pieces=pieces)


HTML = Reader(name="html", extensions=(".html", ".htm", ".xhtml"), summary="HTML pages as visible text",
              open=open_html)


@hookimpl
def longchat_readers():
    return [HTML]
