"""Inputs at the edges: FIFOs and `<(cmd)`, empty stdin, text that is not UTF-8.

The CLI checks run `longchat`'s `main` in-process on the session's loaded model (`-n 8` to keep
replies short); process substitution needs a shell, so it runs a real process. The decoding
details are checked on the reader directly.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading

import pytest

from conftest import one_line_error
from longchat.errors import InputError
from longchat.memory.encode import collect_sources
from longchat.sources import iter_documents, read_text
from longchat.sources.text import BLOCK_BYTES, decode_blocks, looks_binary

SHORT = "The cat is called Tom. He sleeps on the red sofa.\n"
# About 750 tokens: past an effective window of 256, so `auto` encodes it with infllm.
LONG = " ".join(["apple river stone cloud lamp garden window paper"] * 90) + "\nThe secret code is 4417.\n"
LATIN1 = "Le café est fermé le lundi.\n".encode("latin-1")


class Notes(list):
    def __call__(self, message: str) -> None:
        self.append(message)


def fifo_with_writer(tmp_path, data: bytes):
    """A FIFO in tmp_path and a thread that writes `data` into it once a reader opens it."""
    path = tmp_path / "input.fifo"
    os.mkfifo(path)

    def write() -> None:
        with open(path, "wb") as fifo:  # blocks until the reader opens the FIFO
            fifo.write(data)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    return path, writer


# ---------------------------------------------------------------- FIFOs and process substitution

def test_ask_reads_a_fifo(cli_in, reuse_model, tmp_path):
    path, writer = fifo_with_writer(tmp_path, SHORT.encode())
    code, out, err = cli_in("ask", path, "What is the cat called?", "-n", "8")
    assert code == 0, err
    assert out.strip() and "full attention" in err
    writer.join(timeout=10)


def test_ask_reads_a_fifo_through_the_infllm_cache(cli_in, reuse_model, tmp_path):
    path, writer = fifo_with_writer(tmp_path, LONG.encode())
    code, out, err = cli_in("ask", path, "What is the secret code?", "-n", "8",
                         "--set", "context.effective_window=256")
    assert code == 0, err
    assert out.strip() and "using infllm" in err
    writer.join(timeout=10)


def test_summarize_reads_a_fifo(cli_in, reuse_model, tmp_path):
    path, writer = fifo_with_writer(tmp_path, SHORT.encode())
    code, out, err = cli_in("summarize", path, "-n", "8")
    assert code == 0, err
    assert out.strip()
    writer.join(timeout=10)


def test_ask_reads_process_substitution(cli):
    command = f"{sys.executable} -m longchat ask <(printf '{SHORT.strip()}') 'What is the cat called?' -n 8"
    proc = subprocess.run(["bash", "-c", command], capture_output=True, timeout=300, env=cli.env(),
                          stdin=subprocess.DEVNULL)
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    assert proc.stdout.strip() and "/dev/fd" not in err


def test_a_fifo_is_read_once_and_held(tmp_path):
    """A FIFO cannot be seeked or opened twice: it is read once, like stdin."""
    path, writer = fifo_with_writer(tmp_path, SHORT.encode())
    [src] = collect_sources([str(path)], read_stdin=True)
    assert (src.kind, src.path, src.data) == ("stdin", None, SHORT.encode())
    assert "".join(src.document.pieces()) == SHORT  # decoded from the held bytes
    writer.join(timeout=10)


def test_a_long_stream_is_held_one_block_ahead_then_streamed():
    data = ("a" * (BLOCK_BYTES - 1) + "é and more\n").encode()  # "é" straddles the first block's end
    [doc] = iter_documents(["-"], stdin=io.BytesIO(data))
    assert doc.hold(False) is None  # did not end within a block: it will stream
    assert "".join(doc.pieces()) == data.decode()


# ---------------------------------------------------------------- empty stdin

@pytest.mark.parametrize("command", [
    ["ask", "-", "q", "-n", "8"],                        # auto: the infllm/cache path's sources
    ["ask", "-", "q", "-n", "8", "--profile", "full"],   # full attention: read_text
    ["summarize", "-n", "8"],
    ["ingest", "-", "--name", "empty"],
])
def test_empty_stdin_is_an_input_error(cli_in, reuse_model, command):
    code, out, err = cli_in(*command, input=b" \n\t\n" if command[0] == "ingest" else b"")
    assert code == 3 and out == ""
    assert one_line_error(err) and "the input is empty" in err


def test_a_whitespace_only_stream_is_known_empty_before_encoding():
    with pytest.raises(InputError, match="^the input is empty$"):
        collect_sources(["-"], stdin=io.BytesIO(b"  \n"))


# ---------------------------------------------------------------- text that is not UTF-8

def test_latin1_file_is_read_as_cp1252_with_a_note(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(LATIN1 + "“quoted”".encode("cp1252"))
    notes = Notes()
    assert read_text([str(path)], note=notes) == "Le café est fermé le lundi.\n“quoted”"
    assert notes == [f"{str(path)!r} is not UTF-8; read its non-UTF-8 bytes as cp1252 (Windows Latin-1)"]
    assert not looks_binary(path.read_bytes())


def test_utf8_stays_utf8_around_bytes_that_are_not():
    notes = Notes()
    text = "".join(decode_blocks(io.BytesIO("naïve ".encode() + b"caf\xe9 " + "déjà".encode()), "x", notes))
    assert text == "naïve café déjà" and len(notes) == 1


def test_a_latin1_byte_at_a_block_end_is_not_lost():
    # \xe9 could start a 3-byte UTF-8 character: it is held until the next block shows it does not.
    data = b"a" * (BLOCK_BYTES - 1) + b"\xe9t caf\xc3\xa9"
    assert "".join(decode_blocks(io.BytesIO(data)))[BLOCK_BYTES - 1:] == "ét café"


def test_utf8_and_utf16_with_a_bom():
    notes = Notes()
    assert read_text(["-"], stdin=io.BytesIO("\ufeffcafé".encode()), note=notes) == "café"
    utf16 = "\ufeffcafé\n".encode("utf-16-le")
    assert not looks_binary(utf16)
    assert read_text(["-"], stdin=io.BytesIO(utf16), note=notes) == "café\n"
    assert notes == []


def test_cli_reads_a_latin1_file(cli_in, reuse_model, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(LATIN1)
    code, out, err = cli_in("ask", path, "Which day is the café closed?", "-n", "8")
    assert code == 0, err
    assert out.strip() and f"{str(path)!r} is not UTF-8; read its non-UTF-8 bytes as cp1252" in err
