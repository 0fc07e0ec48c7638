"""Source readers on real files made in tmp_path: text, stdin, PDF, directories."""

from __future__ import annotations

import io
import os
import re

import pytest
from fpdf import FPDF
from pypdf import PdfWriter

import longchat.sources.text as text_module
from longchat.errors import EXIT_INPUT, InputError
from longchat.sources import READERS, get_reader, iter_documents, read_text, reader_for
from longchat.sources.text import BLOCK_BYTES


# ---------------------------------------------------------------- helpers

class Notes(list):
    """A `note` callback that keeps what it was told."""

    def __call__(self, message: str) -> None:
        self.append(message)


def make_pdf(path, pages: list[str]) -> None:
    """A real PDF, one page per string; an empty string makes a page with no text."""
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        if text:
            pdf.cell(text=text)
    path.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(path))


def encrypt_pdf(source, target, user_password: str) -> None:
    writer = PdfWriter(clone_from=source)
    writer.encrypt(user_password, owner_password="owner", algorithm="RC4-128")
    writer.write(target)


def write(path, content: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)


def documents(specs, **kwargs) -> dict[str, str]:
    """label -> full text, for every document the specs name."""
    return {doc.label: "".join(doc.pieces()) for doc in iter_documents(specs, **kwargs)}


# ---------------------------------------------------------------- text and stdin

def test_stdin_decodes_a_character_split_across_blocks():
    before = "a" * (BLOCK_BYTES - 1)  # "é" is 2 bytes: its first byte ends block one
    data = (before + "é and after").encode()
    [doc] = iter_documents(["-"], stdin=io.BytesIO(data))
    assert (doc.label, doc.kind, doc.size) == ("<stdin>", "stdin", None)
    pieces = list(doc.pieces())
    assert len(pieces) == 2
    assert "".join(pieces) == before + "é and after"


def test_stdin_defaults_to_sys_stdin(monkeypatch):
    class FakeStdin:
        buffer = io.BytesIO(b"from the pipe")

    monkeypatch.setattr("sys.stdin", FakeStdin)
    assert read_text(["-"]) == "from the pipe"


def test_stdin_at_most_once():
    with pytest.raises(InputError, match="only once"):
        list(iter_documents(["-", "-"], stdin=io.BytesIO(b"x")))


def test_documents_are_lazy():
    stream = io.BytesIO(b"not read yet")
    [doc] = iter_documents(["-"], stdin=stream)
    assert stream.tell() == 0
    assert "".join(doc.pieces()) == "not read yet"


def test_text_file_streams_in_blocks(tmp_path):
    path = tmp_path / "big.log"
    write(path, "line of log text\n" * (BLOCK_BYTES // 8))  # about 2 MB
    [doc] = iter_documents([str(path)])
    assert (doc.kind, doc.size) == ("text", path.stat().st_size)
    pieces = list(doc.pieces())
    assert len(pieces) >= 2 and max(map(len, pieces)) <= BLOCK_BYTES
    assert "".join(pieces) == path.read_text()


def test_text_reads_latin1_bytes_as_cp1252_and_drops_bom(tmp_path):
    path = tmp_path / "notes.md"
    write(path, b"\xef\xbb\xbf# Title\ncaf\xe9 ok\n")
    assert read_text([str(path)]) == "# Title\ncaf\u00e9 ok\n"


def test_binary_file_named_directly_is_refused(tmp_path):
    path = tmp_path / "x.bin"
    write(path, b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")
    with pytest.raises(InputError, match=r"'.*x\.bin' looks like a binary file") as caught:
        list(iter_documents([str(path)]))
    assert caught.value.exit_code == EXIT_INPUT


def test_mostly_non_text_is_binary_even_without_nul(tmp_path):
    path = tmp_path / "noise.dat"
    write(path, bytes(range(1, 32)) * 50 + bytes(range(0x80, 0xFF)) * 20)
    with pytest.raises(InputError, match="binary"):
        list(iter_documents([str(path)]))


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"^no such file or directory: 'nope\.txt'$"):
        list(iter_documents(["nope.txt"]))


def test_permission_denied(tmp_path, monkeypatch):
    path = tmp_path / "secret.txt"
    write(path, "hidden")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    # Tests may run as root, where chmod 000 does not stop a read: make open() refuse instead.
    monkeypatch.setattr(text_module, "open", refuse, raising=False)
    with pytest.raises(InputError, match=r"^cannot read '.*secret\.txt': permission denied$"):
        list(iter_documents([str(path)]))


# ---------------------------------------------------------------- PDF

def test_pdf_pages_are_marked(tmp_path, capsys):
    path = tmp_path / "book.pdf"
    make_pdf(path, ["Chapter one begins", "The second page says hello"])
    [doc] = iter_documents([str(path)])
    assert (doc.kind, doc.size) == ("pdf", path.stat().st_size)
    pieces = list(doc.pieces())
    assert len(pieces) == 2
    assert pieces[0].startswith("[Page 1]\n") and "Chapter one begins" in pieces[0]
    assert pieces[1].startswith("[Page 2]\n") and "The second page says hello" in pieces[1]
    assert capsys.readouterr().err == ""


def test_pdf_pages_without_text_are_noted_once(tmp_path):
    path = tmp_path / "scan.pdf"
    make_pdf(path, ["cover", "", ""])
    notes = Notes()
    text = read_text([str(path)], note=notes)
    assert "[Page 3]" in text
    assert notes == [f"{path}: 2 pages had no text (scanned images?)"]


def test_encrypted_pdf_is_refused(tmp_path):
    plain, locked = tmp_path / "plain.pdf", tmp_path / "locked.pdf"
    make_pdf(plain, ["top secret"])
    encrypt_pdf(plain, locked, user_password="secret")
    with pytest.raises(InputError, match=r"^cannot read '.*locked\.pdf': the PDF is encrypted$"):
        list(iter_documents([str(locked)]))


def test_pdf_with_empty_user_password_opens(tmp_path):
    plain, locked = tmp_path / "plain.pdf", tmp_path / "owner-only.pdf"
    make_pdf(plain, ["printable but protected"])
    encrypt_pdf(plain, locked, user_password="")
    assert "printable but protected" in read_text([str(locked)])


def test_corrupt_pdf_is_refused(tmp_path):
    path = tmp_path / "broken.pdf"
    write(path, b"this is not a pdf at all " * 40)
    message = r"^'.*broken\.pdf' is not a readable PDF \(no PDF header\)$"
    with pytest.raises(InputError, match=message):
        list(iter_documents([str(path)]))


def test_truncated_pdf_is_refused(tmp_path):
    path = tmp_path / "cut.pdf"
    make_pdf(path, ["a page that will be cut off"])
    write(path, path.read_bytes()[:300])
    with pytest.raises(InputError, match=r"^'.*cut\.pdf' is not a readable PDF \(.+\)$"):
        list(iter_documents([str(path)]))


def test_pypdf_warnings_stay_quiet(tmp_path, capsys):
    path = tmp_path / "repaired.pdf"
    make_pdf(path, ["still readable"])
    # A wrong startxref offset makes pypdf log a warning while it repairs the file.
    data = re.sub(rb"startxref\s+\d+", b"startxref\n99999", path.read_bytes())
    write(path, data)
    assert "still readable" in read_text([str(path)])
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------- directories

@pytest.fixture
def tree(tmp_path):
    """A small repository: code, docs, ignored build output, a nested .gitignore, .git/."""
    root = tmp_path / "repo"
    write(root / ".gitignore", "build/\n*.log\n")
    write(root / "README.md", "# Repo\n")
    write(root / "src" / "main.py", "print('hi')\n")
    write(root / "src" / "cache.tmp", "scratch\n")
    write(root / "src" / ".gitignore", "*.tmp\n!keep.log\n")
    write(root / "src" / "keep.log", "kept by the nested rule\n")
    write(root / "src" / "drop.log", "dropped by the root rule\n")
    write(root / "build" / "out.txt", "generated\n")
    write(root / ".git" / "HEAD", "ref: refs/heads/main\n")
    make_pdf(root / "docs" / "guide.pdf", ["Guide text"])
    return root


def test_directory_walk_honours_gitignore(tree, monkeypatch):
    monkeypatch.chdir(tree.parent)
    notes = Notes()
    docs = documents(["repo"], note=notes)
    assert list(docs) == [
        "repo/.gitignore",
        "repo/README.md",
        "repo/docs/guide.pdf",
        "repo/src/.gitignore",
        "repo/src/keep.log",
        "repo/src/main.py",
    ]
    assert docs["repo/docs/guide.pdf"].startswith("[Page 1]\nGuide text")
    assert notes == []


def test_directory_label_keeps_what_the_user_typed(tree, monkeypatch):
    monkeypatch.chdir(tree)
    assert "src/main.py" in documents(["."])
    assert "src/main.py" in documents(["./"])
    assert "./src/main.py" in documents(["./src"])


def test_directory_skips_with_notes(tree, monkeypatch):
    monkeypatch.chdir(tree.parent)
    write(tree / "assets" / "logo.png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")
    write(tree / "data" / "huge.csv", "x," * 1500)
    write(tree / "data" / "small.csv", "a,b\n")
    os.symlink("..", tree / "data" / "loop")
    (tree / "data" / "dangling").symlink_to(tree / "gone")
    plain = tree / "docs" / "guide.pdf"
    encrypt_pdf(plain, tree / "docs" / "locked.pdf", user_password="pw")
    write(tree / "docs" / "broken.pdf", b"garbage" * 10)

    notes = Notes()
    docs = documents(["repo"], note=notes, max_file_bytes=2000)
    assert "repo/data/small.csv" in docs and "repo/src/main.py" in docs
    assert notes == [
        "skipped repo/assets/logo.png (binary)",
        "skipped repo/data/dangling (broken symlink)",
        "skipped repo/data/huge.csv (3 KB > 2 KB limit)",
        "skipped repo/data/loop -> .. (symlink loop)",
        "skipped repo/docs/broken.pdf (not a PDF)",
        "skipped repo/docs/locked.pdf (encrypted PDF)",
    ]


def test_notes_go_to_stderr_by_default(tmp_path, capsys):
    write(tmp_path / "d" / "blob.bin", b"\0\1\2")
    write(tmp_path / "d" / "a.txt", "text")
    read_text([str(tmp_path / "d")])
    assert capsys.readouterr().err == f"longchat: note: skipped {tmp_path}/d/blob.bin (binary)\n"


def test_second_link_to_a_folder_is_read_once(tmp_path):
    write(tmp_path / "d" / "real" / "a.txt", "once")
    os.symlink("real", tmp_path / "d" / "zlink")
    notes = Notes()
    docs = documents([str(tmp_path / "d")], note=notes)
    assert list(docs) == [f"{tmp_path}/d/real/a.txt"]
    assert notes == [f"skipped {tmp_path}/d/zlink (same folder as {tmp_path}/d/real)"]


# ---------------------------------------------------------------- read_text

def test_read_text_headers_for_several_documents(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "a.txt", "alpha")          # no final newline: one is added before the next
    write(tmp_path / "b.txt", "beta\n")
    text = read_text(["a.txt", "b.txt", "-"], stdin=io.BytesIO(b"gamma\n"))
    assert text == "### File: a.txt\nalpha\n\n### File: b.txt\nbeta\n\n### File: <stdin>\ngamma\n"


def test_read_text_single_file_has_no_header(tmp_path):
    write(tmp_path / "a.txt", "alpha\n")
    assert read_text([str(tmp_path / "a.txt")]) == "alpha\n"


def test_read_text_directory_has_headers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "d" / "only.txt", "solo\n")
    assert read_text(["d"]) == "### File: d/only.txt\nsolo\n"


def test_read_text_stops_past_max_chars():
    stream = io.BytesIO(b"x" * (3 * BLOCK_BYTES))
    text = read_text(["-"], stdin=stream, max_chars=100)
    assert text == "x" * 101
    assert stream.tell() <= BLOCK_BYTES  # stopped after the first block


def test_read_text_under_max_chars_is_whole():
    assert read_text(["-"], stdin=io.BytesIO(b"short"), max_chars=5) == "short"


@pytest.mark.parametrize("content", [b"", b"  \n\t\n"])
def test_empty_input_is_an_error(content):
    with pytest.raises(InputError, match="^the input is empty$"):
        read_text(["-"], stdin=io.BytesIO(content))


def test_files_that_are_all_empty_are_an_error(tmp_path):
    write(tmp_path / "a.txt", "")
    write(tmp_path / "b.txt", "\n")
    with pytest.raises(InputError, match="the input is empty"):
        read_text([str(tmp_path / "a.txt"), str(tmp_path / "b.txt")])


# ---------------------------------------------------------------- registry

def test_registry_by_name_and_suffix(tmp_path):
    assert get_reader("pdf") is READERS["pdf"]
    assert set(READERS) >= {"text", "pdf"}
    assert reader_for(tmp_path / "BOOK.PDF").name == "pdf"
    assert reader_for(tmp_path / "main.rs").name == "text"


def test_unknown_reader_lists_the_valid_ones():
    # the built-ins, and whatever installed plugins add (longchat-html adds "html")
    with pytest.raises(InputError, match=r"unknown reader 'docx' \(valid readers: (\w+, )*pdf, text\)"):
        get_reader("docx")
