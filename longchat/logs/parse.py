"""Log line formats: where each record starts, and its timestamp, level and message.

A format is a regex for a record's first line with named groups `ts`, `level` (optional)
and `msg`. A line that does not match is a continuation of the record before it (a stack
trace, an indented line). Times are wall-clock seconds as written in the log (an offset
such as +02:00 is ignored), so that `--since 05:00` means what the log shows.
"""

from __future__ import annotations

import calendar
import json
import re
import time
from dataclasses import dataclass
from typing import Callable

LEVELS = ("debug", "info", "warn", "error", "fatal")
LEVEL_RANK = {name: rank for rank, name in enumerate(LEVELS)}

# The level words logs write, in any case, mapped to LEVELS.
_LEVEL_WORDS = {
    "trace": "debug", "debug": "debug", "dbg": "debug", "verbose": "debug",
    "info": "info", "information": "info", "notice": "info", "informational": "info",
    "warn": "warn", "warning": "warn", "wrn": "warn",
    "error": "error", "err": "error", "eror": "error", "severe": "error",
    "fatal": "fatal", "critical": "fatal", "crit": "fatal", "alert": "fatal", "emerg": "fatal",
    "emergency": "fatal", "panic": "fatal",
}
# syslog / journald priorities 0-7 (JSON lines from journalctl -o json carry PRIORITY).
_PRIORITIES = ("fatal", "fatal", "fatal", "error", "warn", "info", "info", "debug")

# Formats without a level field: the level is read from the message's words.
# A word stands alone: not part of a name such as 'libgpg-error-dev' or 'error_count.c', nor a
# setting ('panic=1', 'err=0').
_FATAL_WORDS = re.compile(r"(?<![\w./-])(?:fatal|panic|emerg(?:ency)?|critical|crit|oops)(?![\w/=-])", re.I)
_ERROR_WORDS = re.compile(r"(?<![\w./-])(?:errors?|err|fail(?:ed|ure|s)?|exception|traceback|segfault|"
                          r"out of memory|oom|killed process|unable to|cannot|can't)(?![\w/=-])", re.I)
_WARN_WORDS = re.compile(r"(?<![\w./-])(?:warn(?:ing)?s?|deprecated|time[d ]? ?out|retry(?:ing)?|refused|denied|"
                         r"invalid|unreachable)(?![\w/=-])", re.I)


def level_of(word: str | None) -> str | None:
    """A level word ('WARNING', 'err', 3) as one of LEVELS, else None."""
    if word is None:
        return None
    if isinstance(word, int) or (isinstance(word, str) and word.isdigit()):
        n = int(word)
        return _PRIORITIES[n] if 0 <= n < len(_PRIORITIES) else None
    return _LEVEL_WORDS.get(str(word).strip("[]<>:").lower())


def level_from_words(message: str) -> str:
    """The level a line without a level field reads as: fatal, error or warn words, else info."""
    head = message[:300]
    if _FATAL_WORDS.search(head):
        return "fatal"
    if _ERROR_WORDS.search(head):
        return "error"
    if _WARN_WORDS.search(head):
        return "warn"
    return "info"


# ---- time ---------------------------------------------------------------------------------

_MONTHS = {m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                                       "nov", "dec"), 1)}
_ISO = re.compile(r"(\d{4})[-/](\d\d)[-/](\d\d)(?:[T ](\d\d):(\d\d)(?::(\d\d)(?:[.,](\d+))?)?)?"
                  r"\s*(?:Z|[+-]\d\d:?\d\d|UTC)?$")
_SYSLOG = re.compile(r"(?:[A-Z][a-z]{2} )?([A-Z][a-z]{2})\s+(\d{1,2})(?: (\d\d):(\d\d)(?::(\d\d)(?:\.(\d+))?)?)?"
                     r"(?: (\d{4}))?$")
_CLF = re.compile(r"(\d\d)/([A-Z][a-z]{2})/(\d{4}):(\d\d):(\d\d):(\d\d)(?: [+-]\d{4})?$")
_CLOCK = re.compile(r"(\d{1,2}):(\d\d)(?::(\d\d))?$")


def _stamp(year: int, month: int, day: int, hh=0, mm=0, ss=0, frac: str | None = None) -> float:
    seconds = calendar.timegm((year, month, day, int(hh or 0), int(mm or 0), int(ss or 0), 0, 0, 0))
    return seconds + (float("0." + frac) if frac else 0.0)


def _year_for(month: int, day: int) -> int:
    """Syslog lines carry no year: this year, unless that puts the line more than two days ahead."""
    now = time.gmtime()
    ahead = calendar.timegm((now.tm_year, month, day, 0, 0, 0, 0, 0, 0)) - calendar.timegm(now)
    return now.tm_year - 1 if ahead > 2 * 86400 else now.tm_year


_SECONDS = re.compile(r"(.*\d\d:\d\d):(\d\d)(?:[.,](\d+))?(.*)")


class TimeCache:
    """`parse_time` for a stream of timestamps: parses each minute once, then adds the seconds
    (a log has many lines per minute; strptime-like parsing per line would cost more than mining)."""

    def __init__(self, limit: int = 100_000):
        self.minutes: dict[tuple[str, str], float | None] = {}
        self.limit = limit

    def __call__(self, text: str) -> float | None:
        m = _SECONDS.match(text)
        if m is None:
            return parse_time(text)
        head, ss, frac, tail = m.groups()
        key = (head, tail)
        base = self.minutes.get(key, -1.0)
        if base == -1.0:
            base = parse_time(f"{head}:00{tail}")
            if len(self.minutes) >= self.limit:
                self.minutes.clear()
            self.minutes[key] = base
        if base is None:
            return None
        return base + int(ss) + (float("0." + frac) if frac else 0.0)


def parse_time(text: str) -> float | None:
    """Seconds (wall clock as written, as if UTC) of a timestamp in one of the forms logs use:
    ISO 8601 (T or space, fractions, Z/offsets), syslog 'Dec  1 05:22:59', nginx access
    '01/Dec/2026:05:22:59 +0000', nginx error '2026/12/01 05:22:59', `dmesg -T`
    'Tue Dec  1 05:22:59 2026', epoch seconds or milliseconds. None when it is none of them."""
    text = text.strip()
    if not text:
        return None
    if (m := _ISO.match(text)) is not None:
        y, mo, d, hh, mm, ss, frac = m.groups()
        return _checked(int(y), int(mo), int(d), hh, mm, ss, frac)
    if (m := _SYSLOG.match(text)) is not None:
        mon, d, hh, mm, ss, frac, y = m.groups()
        month = _MONTHS.get(mon.lower())
        if month is None:
            return None
        return _checked(int(y) if y else _year_for(month, int(d)), month, int(d), hh, mm, ss, frac)
    if (m := _CLF.match(text)) is not None:
        d, mon, y, hh, mm, ss = m.groups()
        month = _MONTHS.get(mon.lower())
        return None if month is None else _checked(int(y), month, int(d), hh, mm, ss, None)
    try:
        value = float(text)
    except ValueError:
        return None
    if value > 1e11:  # milliseconds since the epoch
        value /= 1000
    return value if value > 1e8 else None


def _checked(y, mo, d, hh, mm, ss, frac) -> float | None:
    if not (1 <= mo <= 12 and 1 <= d <= 31 and int(hh or 0) < 24 and int(mm or 0) < 60 and int(ss or 0) < 61):
        return None
    return _stamp(y, mo, d, hh, mm, ss, frac)


def parse_clock(text: str) -> float | None:
    """Seconds into the day of 'HH:MM[:SS]', else None."""
    m = _CLOCK.match(text.strip())
    if m is None or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        return None
    return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + int(m.group(3) or 0)


def show_time(seconds: float | None, kind: str) -> str:
    """A time for people, in the log's own clock: '2026-12-01 05:22:59', '+12.3s' after boot, or 'line N'."""
    if seconds is None:
        return "?"
    if kind == "uptime":
        return f"{seconds:.1f}s"
    if kind == "line":
        return f"line {int(seconds):,}"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds))


# ---- formats ------------------------------------------------------------------------------

_ISO_TS = r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?"
_LEVEL_RE = r"(?i:trace|debug|dbg|info|notice|warn(?:ing)?|error|err|severe|fatal|critical|crit|alert|emerg)"


@dataclass(frozen=True)
class LogFormat:
    """One line format. `clock`: what its times count: 'epoch' (dates), 'uptime' (seconds after
    boot, dmesg) or 'line' (no times: positions are line numbers)."""

    name: str
    head: re.Pattern
    clock: str = "epoch"
    split: Callable[[str], tuple[str | None, str | None, str] | None] | None = None  # instead of `head`

    def record(self, line: str) -> tuple[str | None, str | None, str] | None:
        """(timestamp text, level word, message) when `line` starts a record, else None; the
        first two are '' or None when the format has none."""
        if self.split is not None:
            return self.split(line)
        m = self.head.match(line)
        return None if m is None else m.group("ts", "level", "msg")


_JSON_TIME = ("timestamp", "time", "ts", "@timestamp", "t", "asctime", "datetime", "date",
              "__REALTIME_TIMESTAMP")
_JSON_LEVEL = ("level", "severity", "lvl", "levelname", "log.level", "loglevel", "PRIORITY")
_JSON_MESSAGE = ("message", "msg", "MESSAGE", "event", "log", "text")


def _json_split(line: str):
    if not line.startswith("{"):
        return None
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    ts = next((obj[k] for k in _JSON_TIME if k in obj), None)
    if ts is not None and not isinstance(ts, str):
        ts = str(ts / 1_000_000 if isinstance(ts, (int, float)) and ts > 1e14 else ts)  # journald: microseconds
    elif isinstance(ts, str) and ts.isdigit() and len(ts) >= 16:
        ts = str(int(ts) / 1_000_000)
    level = next((obj[k] for k in _JSON_LEVEL if k in obj), None)
    message = next((obj[k] for k in _JSON_MESSAGE if isinstance(obj.get(k), str)), None)
    if message is None:  # no message field: the other fields, as key=value
        message = " ".join(f"{k}={v}" for k, v in obj.items() if k not in _JSON_TIME and k not in _JSON_LEVEL)
    source = obj.get("logger") or obj.get("name") or obj.get("SYSLOG_IDENTIFIER")
    if isinstance(source, str) and source:
        message = f"{source}: {message}"
    return ts, None if level is None else str(level), message.replace("\n", " ")


# nginx/Apache combined: '10.1.2.3 - - [01/Dec/2026:05:22:59 +0000] "GET /x HTTP/1.1" 200 512 "-" "curl/8"'
_ACCESS = re.compile(r'\S+ \S+ \S+ \[(?P<ts>\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d(?: [+-]\d{4})?)\] '
                     r'"(?P<request>[^"]*)" (?P<status>\d{3}) ')


def _access_split(line: str):
    """The request and its status are the message ('GET /api/users ?id=42 HTTP/1.1 -> status_200':
    the query apart from the path, so endpoints stay apart; the status spelt so that masking keeps
    it). 5xx reads as an error, 4xx as a warning. The level comes with the status ('error 507'):
    templates never mix statuses."""
    m = _ACCESS.match(line)
    if m is None:
        return None
    status = m.group("status")
    level = "error" if status[0] == "5" else "warn" if status[0] == "4" else "info"
    request = m.group("request").replace("?", " ?", 1)
    return m.group("ts"), f"{level} {status}", f"{request} -> status_{status}"


FORMATS: dict[str, LogFormat] = {f.name: f for f in (
    LogFormat("json", re.compile(r"\{"), split=_json_split),
    # Python logging: '2026-12-01 05:22:59,123 - app.db - ERROR - msg', '... ERROR app.db: msg', 'ERROR:app.db:msg'
    LogFormat("python", re.compile(
        rf"(?:(?P<ts>\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d,\d{{3}})[ -]+(?:[\w.]+ - )?"
        rf"|(?=(?:DEBUG|INFO|WARNING|ERROR|CRITICAL):[\w.]+:))(?P<level>{_LEVEL_RE})\b[ :-]*(?P<msg>.*)")),
    LogFormat("nginx-access", _ACCESS, split=_access_split),
    LogFormat("nginx-error", re.compile(
        r"(?P<ts>\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) \[(?P<level>\w+)\] (?:\d+#\d+: )?(?:\*\d+ )?(?P<msg>.*)")),
    # RFC 3164 syslog and `journalctl` (short, short-iso): 'Dec  1 05:22:59 host prog[123]: msg'
    LogFormat("syslog", re.compile(
        rf"(?P<ts>[A-Z][a-z]{{2}} [ \d]\d \d\d:\d\d:\d\d|{_ISO_TS}) (?P<host>[\w.-]+) (?P<level>)"
        r"(?P<msg>[\w./@()-]+(?:\[\d+\])?: .*)")),
    LogFormat("dmesg", re.compile(r"\[\s*(?P<ts>\d+\.\d+)\] (?P<level>)(?P<msg>.*)"), clock="uptime"),
    LogFormat("dmesg-T", re.compile(r"\[(?P<ts>[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4})\] (?P<level>)(?P<msg>.*)")),
    # Anything else that starts with an ISO time, optionally a level: '2026-12-01T05:22:59Z WARN msg'
    LogFormat("iso", re.compile(
        rf"\[?(?P<ts>{_ISO_TS})\]?\s+(?:\[?(?P<level>{_LEVEL_RE})\]?\b[: ]*)?(?P<msg>.*)")),
    # No time, a level first: 'ERROR something', '[warn] something'
    LogFormat("leveled", re.compile(rf"(?P<ts>)\[?(?P<level>{_LEVEL_RE})\]?[: ]+(?P<msg>.*)"), clock="line"),
)}
# What `--as log` reads input in no known format as: every line a record.
LINES = LogFormat("lines", re.compile(r"(?P<ts>)(?P<level>)(?P<msg>.*)"), clock="line")
