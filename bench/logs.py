"""Realistic logs with injected incidents, and how `longchat summarize` reads them.

    python bench/logs.py generate OUT.log [--format syslog] [--size 100MB] [--seed 1]
    python bench/logs.py speed [--format syslog] [--size 100MB]    # template pass: MB/s, peak RSS
    python bench/logs.py incidents [--logs 10] [--size 2MB] [--model]  # are the incidents named?

Formats: syslog, nginx (access), python (logging, with tracebacks), json (JSON lines).
Each log holds routine traffic plus three injected incidents, each with a marker phrase:
  - an error template repeated N times within a few minutes ("disk quota exceeded"),
  - a single rare fatal line ("kernel panic"),
  - a burst of warnings ("connection pool nearly exhausted") in one short window.
`speed` pipes a generated log through `longchat summarize --no-model --json` and reads the
pass's MB/s and peak RSS; `incidents` checks that the report (the table with --no-model, or
the model's report and its figures with --model) names each incident with its exact count.
Generated logs go to a temporary folder and are deleted; none is committed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

USERS = ["root", "alice", "bob", "deploy", "backup", "www-data"]
PATHS = ["/api/users/{n}", "/api/orders/{n}", "/static/app.{h}.js", "/health", "/login", "/api/search?q={w}"]
WORDS = ["lamp", "rock", "gull", "keeper", "tide", "storm", "harbour"]


@dataclass
class Incident:
    name: str
    marker: str      # a phrase of its lines that a report must name
    count: int
    first: float
    last: float


def size_bytes(text: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMG]?)B?", text.strip().upper())
    if m is None:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a size such as 500KB, 100MB, 1GB")
    return int(float(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[m.group(2)])


def stamp(fmt: str, t: float) -> str:
    g = time.gmtime(t)
    frac = int((t % 1) * 1000)
    if fmt == "syslog":
        return time.strftime("%b %e %H:%M:%S", g)
    if fmt == "nginx":
        return time.strftime("%d/%b/%Y:%H:%M:%S +0000", g)
    if fmt == "python":
        return time.strftime("%Y-%m-%d %H:%M:%S", g) + f",{frac:03d}"
    return time.strftime("%Y-%m-%dT%H:%M:%S", g) + f".{frac:03d}Z"


def routine_line(fmt: str, t: float, rng: random.Random) -> str:
    ts, pid, ip = stamp(fmt, t), rng.randint(200, 32000), f"10.{rng.randint(0, 9)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    kind = rng.random()
    if fmt == "syslog":
        if kind < 0.35:
            return f"{ts} web1 sshd[{pid}]: Accepted publickey for {rng.choice(USERS)} from {ip} port {rng.randint(1024, 65535)} ssh2"
        if kind < 0.6:
            return f"{ts} web1 CRON[{pid}]: (root) CMD (/usr/local/bin/rotate --keep {rng.randint(1, 9)})"
        if kind < 0.8:
            return f"{ts} web1 systemd[1]: Started Session {rng.randint(1, 9999)} of User {rng.choice(USERS)}."
        if kind < 0.95:
            return f"{ts} web1 kernel: [UFW BLOCK] IN=eth0 OUT= SRC={ip} DST=10.0.0.1 LEN={rng.randint(40, 1500)} PROTO=TCP DPT={rng.randint(1, 9000)}"
        return f"{ts} web1 dhclient[{pid}]: DHCPACK of 10.0.0.1 from {ip} (xid=0x{rng.getrandbits(32):08x})"
    if fmt == "nginx":
        path = rng.choice(PATHS).format(n=rng.randint(1, 99999), h=f"{rng.getrandbits(32):08x}", w=rng.choice(WORDS))
        status = 200 if kind < 0.9 else 304 if kind < 0.97 else 404
        return (f'{ip} - - [{ts}] "GET {path} HTTP/1.1" {status} {rng.randint(100, 90000)} "-" '
                f'"Mozilla/5.0 (X11; Linux x86_64) Firefox/{rng.randint(100, 130)}.0"')
    if fmt == "python":
        if kind < 0.5:
            return f"{ts} - app.http - INFO - GET /api/orders/{rng.randint(1, 99999)} 200 in {rng.randint(2, 400)}ms"
        if kind < 0.8:
            return f"{ts} - app.worker - INFO - job {rng.getrandbits(40):010x} finished in {rng.random() * 9:.2f}s"
        return f"{ts} - app.cache - DEBUG - cache hit ratio {rng.random():.3f} over {rng.randint(100, 999)} keys"
    record = {"time": ts, "level": "info", "logger": "api",
              "msg": f"request served in {rng.randint(2, 400)}ms", "path": f"/api/orders/{rng.randint(1, 99999)}",
              "status": 200, "request_id": f"{rng.getrandbits(64):016x}"}
    if kind < 0.3:
        record.update(logger="worker", msg=f"job {rng.getrandbits(40):010x} done after {rng.randint(1, 90)} retries")
    return json.dumps(record)


def incident_line(fmt: str, which: str, t: float, rng: random.Random) -> str:
    ts, n = stamp(fmt, t), rng.randint(1, 999)
    text = {
        "error": f"disk quota exceeded on volume vol{rng.randint(1, 4)} for user {rng.choice(USERS)} ({n} MB over)",
        "fatal": "kernel panic - not syncing: fatal exception in interrupt handler",
        "warn": f"connection pool nearly exhausted: {rng.randint(90, 99)} of 100 in use",
    }[which]
    level = {"error": "ERROR", "fatal": "CRITICAL", "warn": "WARNING"}[which]
    if fmt == "syslog":
        prog = {"error": f"quotad[{rng.randint(200, 9000)}]", "fatal": "kernel", "warn": f"pgbouncer[{rng.randint(200, 9000)}]"}[which]
        return f"{ts} web1 {prog}: {'error: ' if which == 'error' else 'warning: ' if which == 'warn' else ''}{text}"
    if fmt == "nginx":
        status = {"error": 507, "fatal": 500, "warn": 429}[which]
        return f'10.0.0.{n % 250 + 1} - - [{ts}] "POST /api/upload?reason={text.split(":")[0].replace(" ", "+")} HTTP/1.1" {status} 0 "-" "curl/8.5"'
    if fmt == "python":
        line = f"{ts} - app.storage - {level} - {text}"
        if which == "error":
            line += ("\nTraceback (most recent call last):\n  File \"/srv/app/storage.py\", line 88, in write\n"
                     "    self.volume.append(chunk)\nOSError: [Errno 122] Disk quota exceeded")
        return line
    return json.dumps({"time": ts, "level": level.lower(), "logger": "storage", "msg": text})


def write_log(path: Path, fmt: str, size: int, seed: int) -> list[Incident]:
    """A log of about `size` bytes; returns the incidents injected into it."""
    rng = random.Random(seed)
    per_line = {"syslog": 88, "nginx": 136, "python": 83, "json": 196}[fmt]
    lines = max(size // per_line, 2000)
    start = 1_764_547_200.0 + rng.randint(0, 300) * 86400  # a day in 2025-2026
    step = 86400 / lines  # one day of log
    error_at, error_n = rng.uniform(0.2, 0.5), rng.randint(20, 200)
    fatal_at, warn_at, warn_n = rng.uniform(0.55, 0.7), rng.uniform(0.75, 0.9), rng.randint(30, 120)
    plan = {int(error_at * lines) + i * 3: "error" for i in range(error_n)}
    plan.update({int(warn_at * lines) + i: "warn" for i in range(warn_n)})
    plan[int(fatal_at * lines)] = "fatal"
    seen: dict[str, list[float]] = {"error": [], "fatal": [], "warn": []}
    with open(path, "w") as f:
        buf = []
        for i in range(lines):
            t = start + i * step
            buf.append(routine_line(fmt, t, rng))
            if (which := plan.get(i)) is not None:
                buf.append(incident_line(fmt, which, t, rng))
                seen[which].append(t)
            if len(buf) >= 10000:
                f.write("\n".join(buf) + "\n")
                buf = []
        f.write("\n".join(buf) + "\n" if buf else "")
    markers = {"error": "quota exceeded", "fatal": "panic", "warn": "pool nearly exhausted"}
    if fmt == "nginx":
        markers = {"error": "reason=disk+quota+exceeded", "fatal": "reason=kernel+panic",
                   "warn": "reason=connection+pool+nearly+exhausted"}
    return [Incident(k, markers[k], len(v), v[0], v[-1]) for k, v in seen.items()]


def summarize_cmd(path: Path, *args: str) -> subprocess.CompletedProcess:
    with open(path, "rb") as f:
        return subprocess.run([sys.executable, "-m", "longchat", "summarize", *args], stdin=f,
                              capture_output=True, text=True)


def cmd_generate(args) -> None:
    incidents = write_log(Path(args.out), args.format, args.size, args.seed)
    for i in incidents:
        print(f"{i.name}: {i.count} lines with {i.marker!r}", file=sys.stderr)


def cmd_speed(args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"bench.{args.format}.log"
        write_log(path, args.format, args.size, args.seed)
        size = path.stat().st_size
        start = time.perf_counter()
        # /usr/bin/time -v gives the child's peak RSS; resource.getrusage(RUSAGE_CHILDREN) as well.
        proc = summarize_cmd(path, "--no-model", "--json", "--quiet")
        wall = time.perf_counter() - start
        import resource

        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        if proc.returncode:
            sys.exit(proc.stderr)
        table = json.loads(proc.stdout)
        print(json.dumps({"format": args.format, "bytes": size, "lines": table["lines"],
                          "templates": len(table["templates"]), "pass_s": table["seconds"],
                          "pass_mb_s": round(size / 1e6 / table["seconds"], 2), "wall_s": round(wall, 2),
                          "end_to_end_mb_s": round(size / 1e6 / wall, 2), "peak_rss_mb": round(peak, 1)}))


def named(report: str, incident: Incident) -> bool:
    """The report names the incident (its marker phrase) and states its exact count and time
    range on one line (times to the second, as the table writes them)."""
    first, last = (time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) for t in (incident.first, incident.last))
    if incident.count == 1:
        facts = ["once", f"at {first}"]
    else:
        facts = [f"{incident.count:,} times", f"{first} to {last if last[:10] != first[:10] else last[11:]}"]
    marker = incident.marker.lower()
    return any(marker in line.lower() and all(f in line for f in facts) for line in report.splitlines())


def cmd_incidents(args) -> None:
    found = total = 0
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.logs):
            fmt = ("syslog", "nginx", "python", "json")[k % 4]
            path = Path(tmp) / f"incidents.{k}.{fmt}.log"
            incidents = write_log(path, fmt, args.size, seed=100 + k)
            extra = [] if args.model else ["--no-model"]
            proc = summarize_cmd(path, *extra, "--quiet", "-n", "200")
            if proc.returncode:
                sys.exit(proc.stderr)
            hits = [named(proc.stdout, i) for i in incidents]
            found, total = found + sum(hits), total + len(hits)
            missed = [i.name for i, hit in zip(incidents, hits) if not hit]
            print(f"{path.name}: {sum(hits)}/{len(hits)} incidents named" + (f" (missed: {', '.join(missed)})" if missed else ""))
    print(json.dumps({"logs": args.logs, "incidents": total, "named": found, "share": round(found / total, 3)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate")
    gen.add_argument("out")
    for p in (gen, sub.add_parser("speed")):
        p.add_argument("--format", default="syslog", choices=("syslog", "nginx", "python", "json"))
        p.add_argument("--size", type=size_bytes, default=size_bytes("100MB"))
        p.add_argument("--seed", type=int, default=1)
    inc = sub.add_parser("incidents")
    inc.add_argument("--logs", type=int, default=10)
    inc.add_argument("--size", type=size_bytes, default=size_bytes("2MB"))
    inc.add_argument("--model", action="store_true", help="the model's report, not the table alone")
    args = parser.parse_args()
    {"generate": cmd_generate, "speed": cmd_speed, "incidents": cmd_incidents}[args.command](args)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
