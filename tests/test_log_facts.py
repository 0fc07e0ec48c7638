"""Logs answered from the table: dpkg's record kinds mined into one template each, exact facts
for counting, time and "which" questions, and the figure check on an answer (issue 42)."""

from __future__ import annotations

import json
import random

import pytest

from longchat.logs import detect, scan
from longchat.logs.facts import find_facts, question_kind
from longchat.logs.report import check_figures, wrong_figures

INSTALLS, UPGRADES, REMOVES = 23, 17, 5
NODEJS_UPGRADE = "2026-03-03 10:15:42"
ARCHES = ("amd64", "amd64", "all", "arm64")


def _version(rng: random.Random) -> str:
    """Debian-style versions: epochs, +debXuY and ~debXuY suffixes, native ones, a plain number."""
    a, b, c = rng.randint(0, 40), rng.randint(0, 99), rng.randint(1, 12)
    return rng.choice((f"{a}.{b}-{c}+deb12u{rng.randint(1, 9)}", f"1:{a}.{b}.{c}-5+deb12u{c}",
                       f"2:8.2.{rng.randint(1000, 9999)}-1+deb12u{c}", f"{a}.{b}-{c}~deb12u1", f"{a}.{b}.{c}-{c}",
                       f"2025b-0+deb12u{c}", f"{a}-{c}", f"{a}.{b}", f"{a}.{b}.{c}+dfsg-{c}~bpo12+1"))


def dpkg_log(seed: int = 0) -> tuple[str, dict]:
    """Three days of /var/log/dpkg.log: INSTALLS installs on day 1, UPGRADES upgrades on day 2
    (nodejs among them, at NODEJS_UPGRADE), REMOVES removes on day 3, with dpkg's status lines,
    triggers and startup lines. (the text, the kinds' record counts)"""
    rng = random.Random(seed)
    names = [f"lib{w}{rng.randint(1, 9)}" for w in ("ssl", "curl", "xml", "gnutls", "glib", "cap", "icu", "x11",
                                                     "pam", "udev", "systemd", "gpg", "zstd", "lzma", "ffi")]
    names += ["git", "curl", "less", "gpgv", "tzdata", "perl-base", "python3.11", "openjdk-17-jre", "netbase",
              "ca-certificates", "dirmngr", "gnupg", "zlib1g", "bash", "coreutils", "nodejs"]
    rng.shuffle(names)
    names.remove("nodejs")
    lines: list[str] = []
    clock = [0]

    def at(day: int, t: str | None = None) -> str:
        if t is not None:
            return t
        clock[0] += rng.randint(0, 3)
        return f"2026-03-0{day} {9 + clock[0] // 3600:02d}:{clock[0] // 60 % 60:02d}:{clock[0] % 60:02d}"

    def trigger(day):
        ts = at(day)
        lines.extend([f"{ts} startup packages configure", f"{ts} trigproc libc-bin:amd64 2.36-9+deb12u10 <none>",
                      f"{ts} status half-configured libc-bin:amd64 2.36-9+deb12u10",
                      f"{ts} status installed libc-bin:amd64 2.36-9+deb12u10"])

    for name in names[:INSTALLS]:
        p, v, ts = f"{name}:{rng.choice(ARCHES)}", _version(rng), at(1)
        lines += [f"{ts} startup archives unpack", f"{ts} install {p} <none> {v}",
                  f"{ts} status half-installed {p} {v}", f"{ts} status triggers-pending libc-bin:amd64 2.36-9+deb12u10",
                  f"{ts} status unpacked {p} {v}", f"{ts} startup packages configure", f"{ts} configure {p} {v} <none>",
                  f"{ts} status unpacked {p} {v}", f"{ts} status half-configured {p} {v}", f"{ts} status installed {p} {v}"]
    trigger(1)
    clock[0] = 0
    upgraded = names[INSTALLS - 10: INSTALLS - 10 + UPGRADES - 1] + ["nodejs"]
    for name in upgraded:
        old, new = _version(rng), _version(rng)
        p = f"{name}:amd64"
        ts = at(2, NODEJS_UPGRADE if name == "nodejs" else None)
        lines += [f"{ts} startup archives unpack", f"{ts} upgrade {p} {old} {new}",
                  f"{ts} status half-configured {p} {old}", f"{ts} status unpacked {p} {old}",
                  f"{ts} status half-installed {p} {old}", f"{ts} status unpacked {p} {new}",
                  f"{ts} startup packages configure", f"{ts} configure {p} {new} {new}",
                  f"{ts} status unpacked {p} {new}", f"{ts} status half-configured {p} {new}",
                  f"{ts} status installed {p} {new}"]
    trigger(2)
    clock[0] = 0
    for name in names[:REMOVES]:
        p, v, ts = f"{name}:amd64", _version(rng), at(3)
        lines += [f"{ts} startup packages remove", f"{ts} status installed {p} {v}", f"{ts} remove {p} {v} <none>",
                  f"{ts} status half-configured {p} {v}", f"{ts} status half-installed {p} {v}",
                  f"{ts} status config-files {p} {v}", f"{ts} status not-installed {p} <none>"]
    trigger(3)
    kinds: dict[str, int] = {}
    for line in lines:
        words = line.split()[2:]
        kind = " ".join(words[:2]) if words[0] == "status" else words[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    return "\n".join(lines) + "\n", kinds


def _table(text: str):
    fmt = detect(text.splitlines()[:200])
    return scan([text[i:i + 4096] for i in range(0, len(text), 4096)], fmt)


def test_each_dpkg_record_kind_is_one_template():
    text, kinds = dpkg_log()
    table = _table(text)
    assert table.format == "iso"
    assert kinds["install"] == INSTALLS and kinds["upgrade"] == UPGRADES and kinds["remove"] == REMOVES
    # startup, install, upgrade, configure, trigproc, remove and seven status kinds.
    assert len(kinds) == 13 and len(table.templates) == 13, sorted(t.text for t in table.templates.values())
    by_kind = {}
    for t in table.templates.values():
        kind = " ".join(t.tokens[:2]) if t.tokens[0] == "status" else t.tokens[0]
        by_kind[kind] = t
    assert {k: t.count for k, t in by_kind.items()} == kinds
    # Versions are <VER>, or <*> where Drain met a plain number ('6.4') in the same place.
    assert by_kind["upgrade"].text in ("upgrade <PKG> <VER> <VER>", "upgrade <PKG> <*> <*>")
    assert by_kind["install"].text.startswith("install <PKG> <VER> ")  # '<none>' is a <VER>
    # The value index: every upgraded package, with its time.
    up = by_kind["upgrade"]
    assert len(up.values[1]) == UPGRADES and up.values[1]["nodejs:amd64"][0] == 1


def test_other_formats_keep_their_templates():
    """The new masks leave non-version numbers alone: 'usb 1-3:', dates, durations, IPs."""
    from longchat.logs.mine import mask

    assert mask("usb 1-3: new device on 2026-12-01 took 12.5ms from 10.0.0.1:8080") == \
        "usb <NUM>-<NUM>: new device on <NUM>-<NUM>-<NUM> took <NUM>ms from <IP>"
    assert mask("upgrade libc6:amd64 2.36-9+deb12u9 1:2.36-9+deb12u10 <none> 1.0~rc1") == \
        "upgrade <PKG> <VER> <VER> <VER> <VER>"
    assert mask("python3.11 x86_64 sda1 version 1.2.3") == "python3.11 x86_64 sda1 version <NUM>"


def test_facts_from_the_table():
    table = _table(dpkg_log()[0])
    assert [question_kind(q) for q in ("How many packages were upgraded?", "When was nodejs upgraded?",
                                       "Which packages were removed?", "Why?")] == ["count", "time", "which", None]
    for question, number in (("How many packages were upgraded?", UPGRADES), ("How many packages were installed?",
                             INSTALLS), ("How many packages were removed?", REMOVES)):
        facts = find_facts(table, question)
        assert facts.key == [str(number)] and facts.answer.startswith(f"{number} packages"), facts.block()
    facts = find_facts(table, "When was nodejs upgraded?")
    assert facts.key == ["2026-03-03", "10:15"] and NODEJS_UPGRADE in facts.answer and "nodejs:amd64" in facts.answer
    facts = find_facts(table, "Which packages were removed?")
    assert facts.answer.startswith(f"{REMOVES} packages: ")
    assert find_facts(table, "Why did the disk fill up?") is None


def test_the_figure_check_flags_a_wrong_count_and_a_wrong_version():
    table = ("Log: 4,891 lines.\n1. INFO 661 times, 2025-06-24 14:36:25 to 2026-10-16 23:03:59: "
             "configure libc6:amd64 252.38-1~deb12u1 <none>")
    assert wrong_figures("621 packages were configured.", table) == ["621"]
    assert wrong_figures("libc6 went to 252.38-1~deb12u2.", table) == ["252.38-1~deb12u2"]
    assert wrong_figures("It used deb12u2.", table) == ["deb12u2"]
    assert wrong_figures("On September 22, 2026.", table) == ["2026-09-22"]
    assert wrong_figures("661 packages, libc6:amd64 at 252.38-1~deb12u1, on June 24, 2025 at 14:36; "
                         "the 2nd took 12ms.", table) == []
    kept, dropped = check_figures("It ran 661 times. There were 621 configure records. Version deb12u2 was set.", table)
    assert kept == "It ran 661 times." and len(dropped) == 2


def test_ask_drops_wrong_figures_and_adds_the_facts():
    from longchat.api import check_log_answer

    table = _table(dpkg_log()[0])
    facts = find_facts(table, "How many packages were upgraded?")
    known = facts.block() + "\nHow many packages were upgraded?"
    text, check = check_log_answer("18 packages were upgraded. It went well.", known, [(facts.template, 1.0)], facts)
    assert check == {"wrong": ["18"], "missing": ["17"], "corrected": True}
    assert text == "It went well.\nFrom the table: 17 packages (17 upgrade records)."
    text, check = check_log_answer("17 packages were upgraded.", known, [(facts.template, 1.0)], facts)
    assert text == "17 packages were upgraded." and not check["corrected"]


# ---- the bundled model, through the CLI --------------------------------------------------------

def _ask(cli, tmp_path, question: str):
    path = tmp_path / "dpkg.log"
    if not path.exists():
        path.write_text(dpkg_log()[0])
    got, out, err = cli("ask", "--json", str(path), question)
    assert got == 0, err
    return json.loads(out), err


def test_the_model_answers_how_many_upgraded_from_the_table(cli, tmp_path):
    record, err = _ask(cli, tmp_path, "How many packages were upgraded?")
    assert str(UPGRADES) in record["answer"], (record, err)
    assert record["facts"][-1] == f"Answer: {UPGRADES} packages ({UPGRADES} upgrade records)."
    assert record["figure_check"]["wrong"] == [] or record["figure_check"]["corrected"]


def test_the_model_answers_when_nodejs_was_upgraded(cli, tmp_path):
    record, err = _ask(cli, tmp_path, "When was nodejs upgraded?")
    assert "2026-03-03" in record["answer"] and "10:15" in record["answer"], (record, err)


@pytest.mark.slow
@pytest.mark.parametrize("question, number", [("How many packages were installed?", INSTALLS),
                                              ("How many packages were removed?", REMOVES)])
def test_the_model_answers_other_counts(cli, tmp_path, question, number):
    record, err = _ask(cli, tmp_path, question)
    assert str(number) in record["answer"], (record, err)
    # The plain answer on stdout (not --json) holds it too.
    got, out, err = cli("ask", str(tmp_path / "dpkg.log"), question)
    assert got == 0 and str(number) in out, err
