"""Logs read as logs: format detection, masking and mining per format, multi-line records, times,
the ranking, the filters, bounded memory, `summarize --no-model/--json` as a user runs it, and
generation that stops when a reply loops."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import textwrap

import pytest

from conftest import one_line_error
from longchat.errors import EXIT_INPUT, EXIT_USAGE
from longchat.logs import FORMATS, Filters, scan, sniff
from longchat.logs.detect import detect
from longchat.logs.mine import mask
from longchat.logs.parse import parse_time
from longchat.logs.report import check_figures
from longchat.runtime.generate import RepeatGuard


def _pieces(text: str, size: int = 4096):
    """Text in pieces that split lines (and records) anywhere, like real reads do."""
    return [text[i:i + size] for i in range(0, len(text), size)]


def _table(text: str, filters: Filters | None = None):
    fmt = detect(text.splitlines()[:200])
    assert fmt is not None
    return scan(_pieces(text), fmt, filters)


def _ips(rng) -> str:
    return f"10.{rng.randint(0, 9)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def syslog(rng, n=40) -> str:
    lines = []
    for i in range(n):
        ts = f"Dec  1 05:{i // 60:02d}:{i % 60:02d}"
        lines.append(f"{ts} web1 sshd[{rng.randint(100, 9999)}]: Accepted publickey for root from {_ips(rng)} port {rng.randint(1024, 65000)} ssh2")
        lines.append(f"{ts} web1 CRON[{rng.randint(100, 9999)}]: (root) CMD (/usr/bin/rotate --keep {rng.randint(1, 9)})")
    return "\n".join(lines) + "\n"


SAMPLES = {
    # name: (a line maker, templates expected, a masked template expected among them)
    "syslog": (lambda rng, i: f"Dec  1 05:22:{i % 60:02d} web1 sshd[{rng.randint(100, 9999)}]: Accepted publickey for root from {_ips(rng)} port {rng.randint(1024, 65000)} ssh2",
               "sshd[<NUM>]: Accepted publickey for root from <IP> port <NUM> ssh2"),
    "journald-short": (lambda rng, i: f"Dec 01 05:22:{i % 60:02d} host systemd[1]: Started Session {rng.randint(1, 999)} of User alice.",
                       "systemd[<NUM>]: Started Session <NUM> of User alice."),
    "journald-short-iso": (lambda rng, i: f"2026-12-01T05:22:{i % 60:02d}+0000 host kernel: usb 1-{rng.randint(1, 9)}: new device number {rng.randint(2, 99)} using xhci_hcd",
                           "kernel: usb <NUM>-<NUM>: new device number <NUM> using xhci_hcd"),
    "nginx-access": (lambda rng, i: f'{_ips(rng)} - - [01/Dec/2026:05:22:{i % 60:02d} +0000] "GET /api/users/{rng.randint(1, 99999)} HTTP/1.1" 200 {rng.randint(100, 9000)} "-" "curl/8.5"',
                     "GET <PATH> HTTP/<NUM> -> status_200"),
    "nginx-error": (lambda rng, i: f'2026/12/01 05:22:{i % 60:02d} [error] {rng.randint(100, 999)}#0: *{rng.randint(1, 9999)} open() "/var/www/html/{rng.randint(1, 99)}.png" failed (2: No such file or directory), client: {_ips(rng)}',
                    'open() "<PATH>" failed (<NUM>: No such file or directory), client: <IP>'),
    "dmesg": (lambda rng, i: f"[{i * 1.5 + rng.random():12.6f}] EXT4-fs (sda{rng.randint(1, 3)}): mounted filesystem with ordered data mode. Quota mode: none.",
              "EXT4-fs <*> mounted filesystem with ordered data mode. Quota mode: none."),
    "python": (lambda rng, i: f"2026-12-01 05:22:{i % 60:02d},{rng.randint(0, 999):03d} - app.http - INFO - GET /api/orders/{rng.randint(1, 9999)} 200 in {rng.randint(2, 400)}ms",
               "GET <PATH> <NUM> in <NUM>ms"),
    "json": (lambda rng, i: json.dumps({"time": f"2026-12-01T05:22:{i % 60:02d}Z", "level": "info", "logger": "api",
                                        "msg": f"request {rng.getrandbits(64):016x} served in {rng.randint(2, 400)}ms"}),
             "api: request <HEX> served in <NUM>ms"),
}
DETECTED = {"journald-short": "syslog", "journald-short-iso": "syslog"}


@pytest.mark.parametrize("name", list(SAMPLES))
def test_each_format_is_detected_masked_and_mined_into_one_template(name):
    make, template = SAMPLES[name]
    rng = random.Random(1)
    text = "\n".join(make(rng, i) for i in range(60)) + "\n"
    table = _table(text)
    assert table.format == DETECTED.get(name, name)
    assert table.records == 60 and table.lines == 60
    assert [t.text for t in table.templates.values()] == [template]
    (t,) = table.templates.values()
    assert t.count == 60 and t.first is not None and t.last >= t.first


def test_journald_json_uses_its_fields():
    lines = [json.dumps({"__REALTIME_TIMESTAMP": str(1764566579000000 + i * 1_000_000), "PRIORITY": "3" if i % 10 == 0 else "6",
                         "SYSLOG_IDENTIFIER": "nginx", "MESSAGE": f"worker {100 + i} exited"}) for i in range(50)]
    table = _table("\n".join(lines) + "\n")
    assert table.format == "json"
    by_level = {t.level: t for t in table.templates.values()}
    assert by_level["error"].count == 5 and by_level["info"].count == 45
    assert by_level["error"].text == "nginx: worker <NUM> exited"
    assert by_level["info"].last - by_level["info"].first == pytest.approx(48)


def test_several_log_files_read_as_one_log(tmp_path):
    from longchat.api import mine_log, open_input

    for name in ("a.log", "b.log"):
        (tmp_path / name).write_text(syslog(random.Random(name)).rstrip("\n"))  # no final newline
    fmt, pieces = open_input([str(tmp_path / "a.log"), str(tmp_path / "b.log")])
    table = mine_log(pieces, fmt)
    assert fmt.name == "syslog" and table.records == 160 and len(table.templates) == 2


def test_prose_is_not_a_log():
    prose = "The lighthouse keeper of Gull Rock was Margaret Hale.\nShe lit the lamp every night.\n" * 20
    assert detect(prose.splitlines()) is None
    fmt, pieces = sniff([(prose, True)])
    assert fmt is None and "".join(p for p, _ in pieces) == prose  # nothing lost by looking


@pytest.mark.parametrize("raw, masked", [
    ("from 10.0.0.1:8080 to fe80:0:0:0:202:b3ff:fe1e:8329", "from <IP> to <IP>"),
    ("req 123e4567-e89b-12d3-a456-426614174000 at 0x7ffdeadbeef", "req <UUID> at <HEX>"),
    ("open /var/lib/app/data.db took 12.5ms (40%)", "open <PATH> took <NUM>ms (<NUM>%)"),
    ("id=req-8f3a91 mac 00:1a:2b:3c:4d:5e at 2026-12-01T05:22:59Z", "id=req-<ID> mac <IP> at <TIME>"),
    ("sda1 and x86_64 stay", "sda1 and x86_64 stay"),
])
def test_masking(raw, masked):
    assert mask(raw) == masked


def test_a_stack_trace_stays_with_its_record():
    text = textwrap.dedent("""\
        2026-12-01 05:22:01,100 - app.db - INFO - connected to db1
        2026-12-01 05:22:02,200 - app.db - ERROR - query failed for user 17
        Traceback (most recent call last):
          File "/srv/app/db.py", line 88, in run
            cursor.execute(sql)
        psycopg2.OperationalError: server closed the connection
        2026-12-01 05:22:03,300 - app.db - INFO - connected to db2
        2026-12-01 05:22:04,400 - app.db - ERROR - query failed for user 18
        Traceback (most recent call last):
          File "/srv/app/db.py", line 88, in run
        psycopg2.OperationalError: server closed the connection
        """)
    table = _table(text)
    assert table.format == "python" and table.lines == 11 and table.records == 4
    error = next(t for t in table.templates.values() if t.level == "error")
    assert error.count == 2 and error.multiline == 2 and error.lines == 9
    assert "Traceback" in error.sample and "OperationalError" in error.sample
    assert "with a 5-line trace" in table.render()


def test_continuation_lines_attach_across_piece_boundaries():
    record = "2026-12-01 05:22:02,200 - app - ERROR - boom\n" + "".join(f"  frame {i}\n" for i in range(50))
    text = record * 20
    for size in (7, 64, 1000):
        table = scan(_pieces(text, size), FORMATS["python"])
        assert table.records == 20 and table.lines == 20 * 51


def test_times_across_formats_agree():
    want = parse_time("2026-12-01T05:22:59Z")
    for text in ("2026-12-01 05:22:59", "2026-12-01T05:22:59.000+02:00", "01/Dec/2026:05:22:59 +0000",
                 "2026/12/01 05:22:59", "Tue Dec  1 05:22:59 2026", "Dec  1 05:22:59 2026", str(int(want)), str(int(want) * 1000)):
        assert parse_time(text) == pytest.approx(want, abs=1e-6), text
    assert parse_time("2026-12-01 05:22:59,250") == pytest.approx(want + 0.25)
    assert parse_time("not a time") is None and parse_time("2026-13-01") is None


def incident_log(seed: int = 0, n: int = 3000) -> str:
    """Routine syslog traffic over ~8 hours, an error repeated 40 times in two minutes, one
    fatal line, and a burst of 30 warnings."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        s = i * 10
        ts = f"Dec  1 {s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"
        out.append(rng.choice([
            f"{ts} web1 sshd[{rng.randint(100, 9999)}]: Accepted publickey for {rng.choice(['root', 'bob'])} from {_ips(rng)} port {rng.randint(1024, 65000)} ssh2",
            f"{ts} web1 CRON[{rng.randint(100, 9999)}]: (root) CMD (/usr/bin/rotate --keep {rng.randint(1, 9)})",
            f"{ts} web1 systemd[1]: Started Session {rng.randint(1, 999)} of User alice.",
        ]))
        if 1000 <= i < 1040:
            out.append(f"{ts} web1 quotad[{rng.randint(100, 999)}]: error: disk quota exceeded on vol{rng.randint(1, 4)}")
        if i == 2000:
            out.append(f"{ts} web1 kernel: Kernel panic - not syncing: Fatal exception")
        if 2500 <= i < 2530:
            out.append(f"{ts} web1 pgbouncer[77]: warning: pool nearly exhausted ({rng.randint(90, 99)} of 100)")
    return "\n".join(out) + "\n"


def test_the_ranking_puts_the_fatal_line_and_the_error_first():
    table = _table(incident_log())
    ranked = table.ranking()
    (first, why1), (second, why2), (third, why3) = ranked[:3]
    assert first.count == 1 and first.level == "fatal" and "rare" in why1 and "panic" in first.text
    assert second.count == 40 and second.level == "error" and "quota" in second.text
    assert third.count == 30 and third.level == "warn" and "burst" in why3 and "new late" in why3
    assert all(not r for _, r in ranked[3:])  # the rest is routine
    text = table.render()
    assert "FATAL once at 2026-" in text and "ERROR 40 times" in text and "Routine: 3,000 records" in text


def test_filters():
    log = incident_log()
    assert _table(log, Filters.parse(level="warn")).records == 71
    assert _table(log, Filters.parse(level="ERROR")).records == 41
    grep = _table(log, Filters.parse(grep=r"quota|panic"))
    assert grep.records == 41 and grep.filtered == 3000 + 30
    window = _table(log, Filters.parse(since="Dec 1 02:46:40", until="02:53:10"))
    assert {t.count for t in window.templates.values() if t.level == "error"} == {40}
    assert window.records == 40 + 40
    later = _table(log, Filters.parse(since="2026-12-01 05:00"))  # syslog has no year: this year's
    if str(parse_time("Dec  1 05:00:00"))[:4] == str(parse_time("2026-12-01 05:00:00"))[:4]:
        assert later.records == 1200 + 1 + 30
    for bad in (dict(since="yesterday-ish"), dict(level="loud"), dict(grep="(unclosed")):
        with pytest.raises(ValueError):
            Filters.parse(**bad)


def test_bucket_histograms_stay_bounded_over_long_spans():
    text = "".join(f"2026-12-01T00:00:00Z INFO tick {i}\n".replace("2026-12-01T00:00:00Z",
                   f"2026-{1 + i // 2000:02d}-01T00:00:00Z") for i in range(20000))
    table = _table(text)
    assert len(table.volume) <= 64 and sum(table.volume.values()) == 20000


def test_figures_the_table_does_not_hold_are_dropped():
    table = "Log: 1,204 lines from 05:00:00 to 06:10:00.\n1. ERROR 40 times, 05:12:00 to 05:14:00: disk quota"
    report = ("The log has 1,204 lines from 05:00 to 06:10. The disk quota error came 40 times.\n"
              "1. It came 41 times at 07:30. Routine traffic otherwise.\n"
              "2. ERROR 40 times, 05:12 to 06:10.\n3. ERROR 40 times, 05:12 to 05:14.\n4.")
    kept, dropped = check_figures(report, table)
    assert dropped == ["It came 41 times at 07:30.", "ERROR 40 times, 05:12 to 06:10."]  # 06:10 is not the error's
    assert kept.endswith("3. ERROR 40 times, 05:12 to 05:14.")  # an empty list item goes
    assert "1,204 lines" in kept and "40 times" in kept and "Routine traffic otherwise." in kept


def test_repeat_guard_finds_where_a_loop_starts():
    guard, ids = RepeatGuard(4), []
    for token in [1, 2, 3, 9, 8, 7, 6, 9, 8, 7, 6, 9, 8, 7, 6]:
        ids.append(token)
        if guard.push(ids):
            break
    assert ids[: guard.cut] == [1, 2, 3, 9, 8, 7, 6]


def test_generation_stops_when_a_tiny_model_loops(tiny_chat_model, home):
    """The tiny random-weight model's greedy reply loops (checked); with stop_on_repeat it stops
    at the loop, and the reply it returns holds no repeated n-gram."""
    from longchat.api import open_runner
    from longchat.prompts import chat_ids
    from longchat.runtime.generate import Sampling

    runner = open_runner("full", str(tiny_chat_model))
    prompt = chat_ids(runner.tokenizer, [{"role": "user", "content": "Summarize: the ship sailed north."}])
    free = runner.engine.generate_text(prompt, Sampling(max_new_tokens=160, stop_on_repeat=0))  # 0: off
    assert runner.engine.stats.stop_reason == "length"
    loop = RepeatGuard(8)
    ids = runner.encode(free)
    assert any(loop.push(ids[:k]) for k in range(1, len(ids) + 1)), "the tiny model no longer loops"
    cut = runner.engine.generate_text(prompt, Sampling(max_new_tokens=160, stop_on_repeat=8))
    stats = runner.engine.stats
    assert stats.stop_reason == "repeat" and stats.new_tokens < 160 and stats.extra["repeat_cut_tokens"] > 0
    assert free.startswith(cut) and len(cut) < len(free)
    again = RepeatGuard(8)
    ids = runner.encode(cut)
    assert not any(again.push(ids[:k]) for k in range(1, len(ids) + 1))
    # Every door stops a loop by default (32 tokens: this loop is caught ~280 tokens in).
    default = runner.engine.generate_text(prompt, Sampling(max_new_tokens=400))
    stats = runner.engine.stats
    assert stats.stop_reason == "repeat" and stats.new_tokens < 400 and stats.as_dict()["stops"] == {"repeat": 1}
    assert default.startswith(cut) and len(default) > len(cut)


# ---- the command line, as a user runs it --------------------------------------------------------


def test_no_model_prints_the_table_and_says_why(cli):
    got, out, err = cli("summarize", "--no-model", input=incident_log())
    assert got == 0, err
    assert "the input looks like a log (syslog); mining templates first (--as text" in err
    assert re.search(r"mined 3,071 lines \([\d.]+ KB\) into 6 templates in [\d.]+s", err), err
    lines = out.splitlines()
    assert lines[0].startswith("Log: 3,071 lines (3,071 records) from 2026-12-01 00:00:00") or lines[0].startswith("Log: 3,071 lines")
    assert "1. FATAL once at" in out and "2. ERROR 40 times" in out and "3. WARN 30 times" in out


def test_json_table_for_scripts(cli):
    got, out, err = cli("summarize", "--no-model", "--json", "--quiet", input=incident_log())
    assert got == 0, err
    table = json.loads(out)
    assert table["format"] == "syslog" and table["lines"] == 3071 and table["records"] == 3071
    by_id = {t["id"]: t for t in table["templates"]}
    top = [by_id[r["id"]] for r in table["ranking"][:2]]
    assert [t["level"] for t in top] == ["fatal", "error"] and [t["count"] for t in top] == [1, 40]
    assert sum(top[1]["histogram"]) == 40 and len(top[1]["histogram"]) <= 64
    assert top[1]["first"].startswith("2026-12-01 02:46") and "vol" in str(top[1]["variables"])
    assert not re.search(r"mining \d", err) and "mined" not in err


def test_filters_from_the_command_line(cli):
    got, out, err = cli("summarize", "--no-model", "--json", "--level", "error", "--grep", "quota", input=incident_log())
    assert got == 0, err
    table = json.loads(out)
    assert table["records"] == 40 and table["filtered_out"] == 3031
    for args, message in ((["--since", "half past five"], "--since 'half past five': not a time"),
                          (["--level", "loud"], "--level 'loud': expected one of debug, info, warn, error, fatal"),
                          (["--grep", "(unclosed"], "--grep '(unclosed': not a valid regular expression"),
                          (["--as", "text", "--no-model"], "--no-model works on logs")):
        got, out, err = cli("summarize", "--no-model", *args, input=incident_log())
        assert got == EXIT_USAGE and message in err and out == "" and "Traceback" not in err, (args, err)
    got, out, err = cli("summarize", "--no-model", input="Just some prose.\nNothing like a log here.\nAt all.\n" * 3)
    assert got == EXIT_INPUT and one_line_error(err) and "does not look like a log" in err and "--as log" in err
    for text in ("", "\n \n\t\n"):
        for args in (["--no-model"], ["--no-model", "--as", "log"]):
            got, out, err = cli("summarize", *args, input=text)
            assert got == EXIT_INPUT and one_line_error(err) and "the input is empty" in err, (args, err)
    got, out, err = cli("summarize", "--no-model", "--as", "log", input="Just some prose.\nAn error here.\n")
    assert got == 0 and "ERROR once" in out and "no known log format" in err


def test_mining_progress_on_a_non_tty_stderr(cli, tmp_path):
    path = tmp_path / "big.log"
    path.write_text(incident_log(n=40000))  # ~3.6 MB: the 1 MB reads cross 10% marks
    got, out, err = cli("summarize", str(path), "--no-model")
    assert got == 0, err
    lines = re.findall(r"mining [\d.]+ [KM]B/[\d.]+ MB \((\d+)%, [\d,]+ lines, \d+ templates", err)
    assert len(lines) >= 2 and all(0 < int(p) <= 100 for p in lines), err
    got, out, err = cli("summarize", str(path), "--no-model", "--quiet")
    assert got == 0 and not re.search(r"mining \d", err) and "mined" not in err


def test_memory_stays_flat_on_a_large_piped_stream(tmp_path):
    """200k lines through a pipe: peak RSS grows by what the templates hold, not by the log."""
    script = textwrap.dedent("""
        import random, sys
        n = int(sys.argv[1]); rng = random.Random(0); out = sys.stdout
        for i in range(n):
            s = i // 10
            out.write(f"Dec  1 {s // 3600 % 24:02d}:{s % 3600 // 60:02d}:{s % 60:02d} web1 sshd[{rng.randint(100, 9999)}]: "
                      f"Accepted publickey for root from 10.0.{rng.randint(0, 255)}.{rng.randint(1, 254)} port {rng.randint(1024, 65000)} ssh2 "
                      f"session {rng.getrandbits(64):016x}\\n")
        """)
    reader = textwrap.dedent("""
        import sys
        from longchat.logs import sniff, scan
        from longchat.sources import iter_pieces
        from longchat.sysinfo import peak_rss_mb
        fmt, pieces = sniff(iter_pieces(["-"]))
        before = peak_rss_mb()
        table = scan((p for p, _ in pieces), fmt)
        print(table.lines, len(table.templates), peak_rss_mb() - before)
        """)
    grown = {}
    for n in (20_000, 200_000):
        gen = subprocess.Popen([sys.executable, "-c", script, str(n)], stdout=subprocess.PIPE)
        got = subprocess.run([sys.executable, "-c", reader], stdin=gen.stdout, capture_output=True, text=True,
                             timeout=300)
        gen.wait()
        assert got.returncode == 0, got.stderr
        lines, templates, mb = got.stdout.split()
        assert int(lines) == n and int(templates) == 1
        grown[n] = float(mb)
    # 200k lines are ~25 MB of text; the pass holds a 1 MB piece and its batch at a time.
    assert grown[200_000] < grown[20_000] + 15, grown


def test_model_report_with_figures_from_the_table(cli, tiny_chat_model):
    got, out, err = cli("summarize", "-m", str(tiny_chat_model), "-n", "24", "--stats", input=incident_log())
    assert got == 0, err
    report, figures = out.split("Figures (from the template table):")
    assert "- 3,071 lines (3,071 records)" in figures and "FATAL once" in figures and "ERROR 40 times" in figures
    stats = json.loads(err.strip().splitlines()[-1])
    assert stats["prefill_flops"] > 0 and stats["mined_lines"] == 3071
    assert stats["stops"].get(stats["stop_reason"], 0) >= 1  # the report's own ending, counted with the rest
    got, out, err = cli("summarize", "-m", str(tiny_chat_model), "-n", "8", "--json", "--quiet", input=incident_log())
    assert got == 0, err
    record = json.loads(out)
    assert "Figures (from the template table)" in record["report"] and record["ranking"][0]["reasons"][0] == "fatal"


def test_prose_keeps_the_hierarchical_summary_and_counts_its_flops(cli, tiny_chat_model):
    text = "".join(f"Day {i}: the ship sailed {i * 3} miles north and the crew caught {i} fish.\n" for i in range(1, 60))
    got, out, err = cli("summarize", "-m", str(tiny_chat_model), "-n", "16", "--stats",
                        "--set", "context.effective_window=400", input=text)
    assert got == 0, err
    assert "looks like a log" not in err
    stats = json.loads(err.strip().splitlines()[-1])
    assert stats["prefill_flops"] > 0 and stats["prompt_tokens"] > 1000


def test_chunk_notes_are_sized_from_the_input(tiny_chat_model, home):
    """Notes of a big file are short enough to fit one final merge; stdin's are 128 tokens."""
    from longchat.api import Summarizer, open_runner
    from longchat.runtime.generate import Sampling

    summarizer = Summarizer(open_runner("full", str(tiny_chat_model)), Sampling(max_new_tokens=256))
    assert summarizer.note_sampling.max_new_tokens == 128 and summarizer.sampling.max_new_tokens == 256
    summarizer.plan(20_000)  # ~2 chunks
    assert summarizer.note_sampling.max_new_tokens == 256
    summarizer.plan(1 << 30)  # a gigabyte: as short as allowed
    assert summarizer.note_sampling.max_new_tokens == 48
    summarizer.plan(200_000)  # ~50k tokens: all the notes fit one chunk
    n = summarizer.note_sampling.max_new_tokens
    assert 48 < n < 256 and n * (200_000 // 4 // summarizer.chunk_tokens + 1) <= summarizer.chunk_tokens
    assert summarizer.sampling.stop_on_repeat == 32 and summarizer.sampling.repetition_penalty == 1.1


# ---- ask about a log --------------------------------------------------------------------------


def test_relevance_ranking_for_a_question():
    table = _table(incident_log())
    rows = table.relevant("Why was the disk quota exceeded?")
    assert "quota" in rows[0][0].text and rows[0][1] > 0 and all(score == 0 for _, score in rows[1:])
    assert "publickey" in table.relevant("Who logged in with a publickey?")[0][0].text
    # No shared word: errors and warnings first, as in the ranking.
    assert [t.level for t, _ in table.relevant("hello there")[:3]] == ["fatal", "error", "warn"]
    entry = table.render_relevant(rows[:1])[0]
    assert entry.startswith("1. ERROR 40 times, 2026-12-01 02:46:40 to 02:53:10") and "\n   Example: Dec  1 02:46:40" in entry


def test_ask_about_a_log_reads_the_relevant_templates(cli, tiny_chat_model):
    got, out, err = cli("ask", "--as", "log", "-m", str(tiny_chat_model), "-n", "8", "--json", "-",
                        "Why was the disk quota exceeded?", input=incident_log())
    assert got == 0, err
    assert "the input looks like a log (syslog); mining templates first" in err
    assert re.search(r"the model reads \d+ of the log's 6 templates \([\d,]+ tokens\), 1 sharing words", err), err
    record = json.loads(out)
    shown = record["log"]["templates"]
    assert "quota" in shown[0]["template"] and shown[0]["count"] == 40 and shown[0]["score"] > 0
    assert shown[0]["first"] == "2026-12-01 02:46:40" and record["log"]["overview"].startswith("3,071 lines")
    assert [t["level"] for t in shown[1:3]] == ["fatal", "warn"]
    assert record["facts"] is None and set(record["figure_check"]) == {"wrong", "missing", "corrected"}
    # A counting question: the table's exact figure, added when the (random) model leaves it out.
    got, out, err = cli("ask", "--as", "log", "-m", str(tiny_chat_model), "-n", "8", "--json", "-",
                        "How often was the disk quota exceeded?", input=incident_log())
    record = json.loads(out)
    assert got == 0 and "facts from the table: 40 " in err and "disk quota exceeded records: 40," in record["facts"][0], err
    assert record["answer"].endswith("From the table: " + record["facts"][-1][len("Answer: "):])
    assert record["figure_check"]["corrected"] and "40" in record["figure_check"]["missing"]
    # Prose on stdin is still read as a document (the looked-at start is read again).
    got, out, err = cli("ask", "-m", str(tiny_chat_model), "-n", "4", "--json", "-", "What sailed?",
                        input="The ship sailed north.\nThe crew caught fish.\nThen it rained.\n")
    assert got == 0 and "looks like a log" not in err and json.loads(out)["stats"]["prompt_tokens"] > 20, err
    for text in ("", "\n\n"):
        got, out, err = cli("ask", "--as", "log", "-m", str(tiny_chat_model), "-", "What failed?", input=text)
        assert got == EXIT_INPUT and one_line_error(err) and "the input is empty" in err, err
