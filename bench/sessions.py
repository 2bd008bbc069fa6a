"""Many sessions at once, ours next to BIRD 2 (issue: 1,000 simultaneous sessions
with 3 s keepalives; establish no slower than BIRD, and at steady state use no
more than twice its CPU).

Method.  Each speaker runs alone in a fresh network namespace made for the run,
so all of 127.0.0.0/8 is local there, port 179 is free, and nothing touches the
host.  It listens on 127.0.0.1:179 with N passive eBGP peers (BENCH_SESSIONS,
default 1000) at 127.1.x.y, local AS 65000, peer AS 65100, hold time 9 and
keepalive time 3.  The load generator (``bench.loadgen``: one asyncio process,
one source address per session) runs in the same namespace and reports the
time from its first connect to its last session established, and its own CPU
time meanwhile: a generator busy near 100% means that figure is partly the
generator's pace, so the speaker is at least that fast.
After a settle period (BENCH_SESSIONS_SETTLE, 5 s) the speaker's own CPU time
(utime + stime from /proc/PID/stat) is read across a steady window
(BENCH_SESSIONS_STEADY, 30 s) in which only KEEPALIVEs flow: the CPU share is
CPU seconds over wall seconds, in percent of one core.  The generator's
KEEPALIVE counters, read at both ends of the window, give the CPU per KEEPALIVE
the speaker sent or received.  The speakers run one after the other, never
side by side, so neither steals the other's core.

Every session must still be up at the end of the window, as both the generator
and the speaker see it; a row shows the count, and a shortfall is also printed
on stderr (a run that cannot establish them all raises).  Our speaker's
figures include writing its JSON event lines (to a file), as it does in use.

BIRD's configuration differs from the issue's sketch in one word: ``multihop``.
BIRD refuses a single-hop neighbour whose address is host-scope (all of
127/8 on ``lo``: "Invalid remote address"); ``multihop`` skips that check,
and otherwise changes only the TTL it sends with and how it would resolve next
hops, neither of which matters for sessions that carry no routes.  Neither side
gets connect-delay or error-wait settings: both are passive, so no connect
timer runs, and error wait only matters after a failure, which the run reports
instead.

Connection attempts are paced, the same for both: at most
BENCH_SESSIONS_IN_FLIGHT (default 8) connections the speaker has not yet
answered with its OPEN.  BIRD 2 listens with a backlog of 8 (ours 1024); a
larger burst overflows its accept queue, the kernel drops the SYNs, and the
clients retry after 1, 2, 4 ... seconds.  With 200 in flight BIRD took 3 to 15 s
to establish 1,000 sessions, nearly all of it waiting out SYN retries: that
measures listen()'s argument, not the speaker.  The listening socket's backlog is checked against
the limit, and the namespace's ListenOverflows/ListenDrops counters are
printed on stderr, so an overflow cannot hide.

BENCH_PROFILE=1 adds one more run of our speaker under cProfile, switched on for
establishment and for the steady window only, and prints the top of each
profile on stderr (that run's figures are not reported: profiling inflates
them).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pstats
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .loadgen import source_address
from .procs import LineReader, cpu_seconds, cpu_split, namespace, process, rss_mb, wait_until
from .report import Row

SESSIONS = int(os.environ.get("BENCH_SESSIONS", "1000"))
STEADY = float(os.environ.get("BENCH_SESSIONS_STEADY", "30"))
SETTLE = float(os.environ.get("BENCH_SESSIONS_SETTLE", "5"))
IN_FLIGHT = int(os.environ.get("BENCH_SESSIONS_IN_FLIGHT", "8"))
ESTABLISH_TIMEOUT = float(os.environ.get("BENCH_SESSIONS_ESTABLISH_TIMEOUT", "60"))
PROFILE = os.environ.get("BENCH_PROFILE") == "1"

LOCAL_AS = 65000
PEER_AS = 65100
HOLD_TIME = 9
KEEPALIVE_TIME = 3
ROUTER_ID = "127.0.0.1"
#: Our speaker under a profiler that SIGUSR1 starts and SIGUSR2 stops, dumping to
#: the next of the files named after the configuration file (BENCH_PROFILE).
PROFILED_SPEAKER = """
import cProfile, signal, sys
from bgpd import standalone
prof, files = cProfile.Profile(), iter(sys.argv[2:])
def stop(*_):
    prof.disable()
    prof.dump_stats(next(files))
    prof.clear()
signal.signal(signal.SIGUSR1, lambda *_: prof.enable())
signal.signal(signal.SIGUSR2, stop)
sys.exit(standalone.main(sys.argv[1:2]))
"""
PROFILE_PHASES = ("establish", "steady")


@dataclass
class Measurement:
    """What one speaker did under the load."""

    establish_seconds: float
    establish_cpu: float
    # Of that, in the kernel: on loopback the sender's context also runs the
    # receiver's TCP work, so this part is mostly the same for any speaker.
    establish_sys: float
    generator_busy: float  # the generator's CPU seconds per second while establishing
    steady_cpu_share: float  # CPU seconds per wall second
    cpu_per_keepalive: float  # seconds per KEEPALIVE sent or received
    up_loadgen: int
    up_speaker: int
    rss_mb: float
    errors: dict[str, int]
    samples: list[str]


def listen_drops(ns: str) -> dict[str, int]:
    """The namespace's TcpExt ListenOverflows and ListenDrops (a full accept queue)."""
    out = subprocess.run(
        ["ip", "netns", "exec", ns, "cat", "/proc/net/netstat"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for names, values in zip(out[::2], out[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=True))
            return {k: int(table.get(k, 0)) for k in ("ListenOverflows", "ListenDrops")}
    return {}


def listen_backlog(ns: str) -> int | None:
    """The backlog of the socket listening on port 179 in ``ns`` (ss shows it as Send-Q)."""
    out = subprocess.run(
        ["ip", "netns", "exec", ns, "ss", "-Hltn", "sport", "=", ":179"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    return int(out[2]) if len(out) > 2 and out[2].isdigit() else None


# -- the two speakers


class Speaker:
    """How to configure, start, and ask one speaker program."""

    label: str

    def argv(self, tmp: Path) -> list[str]:
        raise NotImplementedError

    def wait_ready(self, proc: subprocess.Popen[str], tmp: Path) -> None:
        raise NotImplementedError

    def sessions_up(self, tmp: Path) -> int:
        raise NotImplementedError

    def profile(self, proc: subprocess.Popen[str], on: bool) -> None:
        """Start or stop profiling a phase (only ours, only under BENCH_PROFILE)."""


class Ours(Speaker):
    label = "ours"

    def __init__(self, profile_dir: Path | None = None) -> None:
        self.profile_dir = profile_dir

    def argv(self, tmp: Path) -> list[str]:
        doc = {
            "local_as": LOCAL_AS,
            "router_id": ROUTER_ID,
            "listen": [[ROUTER_ID, 179]],
            "log_routes": False,
            "peers": [
                {
                    "address": source_address(i),
                    "as": PEER_AS,
                    "passive": True,
                    "hold_time": HOLD_TIME,
                    "keepalive_time": KEEPALIVE_TIME,
                    "families": ["ipv4-unicast"],
                }
                for i in range(SESSIONS)
            ],
        }
        (tmp / "ours.json").write_text(json.dumps(doc))
        config = str(tmp / "ours.json")
        if self.profile_dir is None:
            return [sys.executable, "-m", "bgpd.standalone", config]
        dumps = [str(self.profile_dir / f"{phase}.prof") for phase in PROFILE_PHASES]
        return [sys.executable, "-c", PROFILED_SPEAKER, config, *dumps]

    def profile(self, proc: subprocess.Popen[str], on: bool) -> None:
        if self.profile_dir is not None:
            proc.send_signal(signal.SIGUSR1 if on else signal.SIGUSR2)

    def _events(self, tmp: Path) -> list[dict[str, Any]]:
        events = []
        with open(tmp / "speaker.out") as f:
            for line in f:
                with contextlib.suppress(ValueError):
                    events.append(json.loads(line))
        return events

    def wait_ready(self, proc: subprocess.Popen[str], tmp: Path) -> None:
        wait_until(
            "our speaker",
            lambda: any(e.get("event") == "started" for e in self._events(tmp)),
            proc,
        )

    def sessions_up(self, tmp: Path) -> int:
        up: set[str] = set()
        for e in self._events(tmp):
            if e.get("event") == "established":
                up.add(e["peer"])
            elif e.get("event") == "down":
                up.discard(e["peer"])
        return len(up)


class Bird(Speaker):
    def __init__(self) -> None:
        out = subprocess.run(["bird", "--version"], capture_output=True, text=True, check=False)
        version = (out.stdout + out.stderr).split()
        self.label = f"BIRD {version[-1]}" if version else "BIRD"

    def argv(self, tmp: Path) -> list[str]:
        lines = [
            f'log "{tmp / "bird.log"}" all;',
            f"router id {ROUTER_ID};",
            "protocol device {}",
        ]
        lines += [
            f"protocol bgp p{i} {{ local {ROUTER_ID} as {LOCAL_AS}; "
            f"neighbor {source_address(i)} as {PEER_AS}; multihop; passive on; "
            f"hold time {HOLD_TIME}; keepalive time {KEEPALIVE_TIME}; "
            "ipv4 { import all; export none; }; }"
            for i in range(SESSIONS)
        ]
        conf = tmp / "bird.conf"
        conf.write_text("\n".join(lines) + "\n")
        return ["bird", "-f", "-c", str(conf), "-s", str(tmp / "bird.ctl")]

    def _protocols(self, tmp: Path) -> str:
        out = subprocess.run(
            ["birdc", "-s", str(tmp / "bird.ctl"), "show", "protocols"],
            capture_output=True,
            text=True,
            check=False,
        )
        return out.stdout

    def wait_ready(self, proc: subprocess.Popen[str], tmp: Path) -> None:
        # BIRD refuses a connection for a protocol it has not started yet, so
        # listening is not enough: every protocol must be waiting, passively.
        wait_until(
            self.label,
            lambda: len(re.findall(r"\bPassive\b", self._protocols(tmp))) == SESSIONS,
            proc,
        )

    def sessions_up(self, tmp: Path) -> int:
        return len(re.findall(r"\bEstablished\b", self._protocols(tmp)))


# -- one measured run


def measure(speaker: Speaker, tag: str) -> Measurement:
    tmp = Path(tempfile.mkdtemp(prefix=f"bench-sessions-{tag}-"))
    try:
        with (
            namespace(tag) as ns,
            open(tmp / "speaker.out", "w") as out,
            open(tmp / "speaker.err", "w") as err,
            process(ns, speaker.argv(tmp), out, err) as proc,
        ):
            try:
                return _drive(speaker, ns, tmp, proc)
            except Exception:
                print(f"--- {speaker.label} stderr:", file=sys.stderr)
                print((tmp / "speaker.err").read_text()[-4000:], file=sys.stderr)
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _drive(speaker: Speaker, ns: str, tmp: Path, proc: subprocess.Popen[str]) -> Measurement:
    speaker.wait_ready(proc, tmp)
    pid = proc.pid
    gen_argv = [
        sys.executable,
        "-m",
        "bench.loadgen",
        "--target",
        ROUTER_ID,
        "--port",
        "179",
        "--count",
        str(SESSIONS),
        "--asn",
        str(PEER_AS),
        "--hold",
        str(HOLD_TIME),
        "--keepalive",
        str(KEEPALIVE_TIME),
        "--in-flight",
        str(IN_FLIGHT),
        "--establish-timeout",
        str(ESTABLISH_TIMEOUT),
        "--duration",
        str(ESTABLISH_TIMEOUT + SETTLE + STEADY + 60),
    ]
    backlog = listen_backlog(ns)
    if backlog is not None and backlog < IN_FLIGHT:
        print(
            f"sessions: WARNING {speaker.label} listens with backlog {backlog} < "
            f"{IN_FLIGHT} connection attempts in flight: SYNs may be dropped",
            file=sys.stderr,
        )
    user_start, sys_start = cpu_split(pid)
    speaker.profile(proc, on=True)
    with process(ns, gen_argv, subprocess.PIPE, sys.stderr) as gen:
        lines = LineReader(gen)
        est = lines.wait_for("established", ESTABLISH_TIMEOUT + 30)
        user_established, sys_established = cpu_split(pid)
        speaker.profile(proc, on=False)
        if not est["complete"]:
            raise RuntimeError(
                f"{speaker.label}: only {est['count']} of {SESSIONS} sessions established "
                f"within {ESTABLISH_TIMEOUT:.0f}s; errors {est['errors']}"
            )
        print(
            f"sessions: {speaker.label}: {SESSIONS} established in {est['seconds']:.3f}s; "
            f"load generator CPU meanwhile {est['establish_cpu_seconds']:.3f}s",
            file=sys.stderr,
        )
        time.sleep(SETTLE)
        gen.send_signal(signal.SIGUSR1)
        first = lines.wait_for("counters", 10)
        wall_a, cpu_a = time.monotonic(), cpu_seconds(pid)
        speaker.profile(proc, on=True)
        time.sleep(STEADY)
        speaker.profile(proc, on=False)
        wall_b, cpu_b = time.monotonic(), cpu_seconds(pid)
        gen.send_signal(signal.SIGUSR1)
        last = lines.wait_for("counters", 10)
        rss = rss_mb(pid)
        up_speaker = speaker.sessions_up(tmp)
        gen.send_signal(signal.SIGTERM)
        done = lines.wait_for("done", 10)
    drops = listen_drops(ns)
    print(f"sessions: {speaker.label}: listen queue {drops}", file=sys.stderr)
    if any(drops.values()):
        print(
            f"sessions: WARNING {speaker.label}: the accept queue overflowed; "
            "establish time includes SYN retries",
            file=sys.stderr,
        )
    keepalives = (last["keepalives_sent"] - first["keepalives_sent"]) + (
        last["keepalives_received"] - first["keepalives_received"]
    )
    cpu = cpu_b - cpu_a
    return Measurement(
        establish_seconds=float(est["seconds"]),
        establish_cpu=user_established + sys_established - user_start - sys_start,
        establish_sys=sys_established - sys_start,
        generator_busy=float(est["establish_cpu_seconds"]) / float(est["seconds"]),
        steady_cpu_share=cpu / (wall_b - wall_a),
        cpu_per_keepalive=cpu / keepalives if keepalives else float("nan"),
        up_loadgen=int(last["up"]),
        up_speaker=up_speaker,
        rss_mb=rss,
        errors=dict(done["errors"]),
        samples=list(done.get("samples", [])),
    )


def _profile_ours() -> None:
    """One more run of ours under cProfile; its figures are not reported."""
    with tempfile.TemporaryDirectory(prefix="bench-sessions-prof-") as d:
        measure(Ours(profile_dir=Path(d)), "prof")
        for phase in PROFILE_PHASES:
            text = io.StringIO()
            stats = pstats.Stats(str(Path(d) / f"{phase}.prof"), stream=text)
            stats.sort_stats("tottime").print_stats(20)
            stats.sort_stats("cumulative").print_stats(30)
            print(f"--- profile: our speaker, {phase}", file=sys.stderr)
            print(text.getvalue(), file=sys.stderr)


def _check(label: str, m: Measurement) -> None:
    if m.up_loadgen == SESSIONS and m.up_speaker == SESSIONS and not m.errors:
        return
    print(
        f"sessions: WARNING {label}: {m.up_loadgen} of {SESSIONS} sessions up per the load "
        f"generator, {m.up_speaker} per the speaker; errors {m.errors}",
        file=sys.stderr,
    )
    for s in m.samples:
        print(f"  {s}", file=sys.stderr)


def run() -> list[Row]:
    if os.geteuid() != 0 or shutil.which("bird") is None:
        raise RuntimeError("the sessions benchmark needs root (network namespaces) and bird2")
    bird = Bird()
    ours = measure(Ours(), "ours")
    _check("ours", ours)
    theirs = measure(bird, "bird")
    _check(bird.label, theirs)
    if PROFILE:
        _profile_ours()
    peer = bird.label

    def row(metric: str, unit: str, ours_value: float, bird_value: float) -> Row:
        return Row("sessions", metric, unit, ours_value, peer, bird_value)

    rows = [
        row(
            "establish all, goal ratio<=1",
            "ms",
            1e3 * ours.establish_seconds,
            1e3 * theirs.establish_seconds,
        ),
        row(
            "steady CPU, goal ratio<=2",
            "% core",
            100 * ours.steady_cpu_share,
            100 * theirs.steady_cpu_share,
        ),
        row(
            "CPU per KEEPALIVE in or out",
            "µs",
            1e6 * ours.cpu_per_keepalive,
            1e6 * theirs.cpu_per_keepalive,
        ),
        row("CPU to establish all", "ms", 1e3 * ours.establish_cpu, 1e3 * theirs.establish_cpu),
        row(
            "of which in the kernel",
            "ms",
            1e3 * ours.establish_sys,
            1e3 * theirs.establish_sys,
        ),
        row(
            "load generator busy, establishing",
            "%",
            100 * ours.generator_busy,
            100 * theirs.generator_busy,
        ),
        row("RSS at steady state", "MB", ours.rss_mb, theirs.rss_mb),
        row(
            "sessions up after window",
            "sessions",
            float(min(ours.up_loadgen, ours.up_speaker)),
            float(min(theirs.up_loadgen, theirs.up_speaker)),
        ),
    ]
    for r, goal in ((rows[0], 1.0), (rows[1], 2.0)):
        ratio = r.ratio
        verdict = "unknown" if ratio is None else ("met" if ratio <= goal else "NOT met")
        print(f"sessions: goal {r.metric}: {verdict}", file=sys.stderr)
    return rows
