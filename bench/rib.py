"""The RIB under load, ours next to BIRD 2 and GoBGP (issue: ingest no slower than
BIRD 2 and faster than GoBGP with peak RSS at most 3x BIRD 2's; reflect and
churn no slower than BIRD 2).

Method.  Two network namespaces made for the run, joined by a veth pair: the
speaker's (198.18.0.1/24) and the peers' (198.18.0.2, .3, .10-.59).  The peers
are ``bench.bgpclient`` processes: no RIB of their own, they send prepared
UPDATE files (``bench.ribdata``) and keep what they are sent.  Each speaker
runs alone, one after the other, as AS 65000 with every peer passive.

1. ingest: the feeder (eBGP, AS 65001) sends BENCH_RIB_PREFIXES (1,000,000)
   full-table-shaped prefixes and End-of-RIB.  Time from the first byte sent
   until the speaker's Loc-RIB holds them all: for ours its ``end-of-rib``
   event line, which it writes after every UPDATE before it went through the
   RIB; for BIRD ``show route count`` and for GoBGP ``global rib summary``,
   polled every 50 ms.  Peak RSS is the speaker's VmHWM after the ingest; memory
   per prefix is the RSS it grew by, over the prefixes.
2. churn: then a receiver (eBGP, AS 65002) connects and is sent the whole table
   (the time that takes is reported too).  The feeder withdraws every tenth
   prefix and announces it again with a marker community; the time runs from
   the feeder's first byte until the receiver holds the full table again with
   every churned prefix marked.
3. reflect: a new speaker as route reflector with BENCH_RIB_CLIENTS (50) iBGP
   clients; client 0 announces BENCH_RIB_REFLECT_PREFIXES (10,000); the time
   runs from its first byte until every other client holds all of them.

BENCH_RIB_SPEAKERS picks the speakers (default ``ours,bird,gobgp``); a speaker
whose program is missing is left out with a note on stderr.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import ribdata
from .procs import LineReader, namespace, peak_rss_mb, process, rss_mb
from .report import Row

PREFIXES = int(os.environ.get("BENCH_RIB_PREFIXES", "1000000"))
CLIENTS = int(os.environ.get("BENCH_RIB_CLIENTS", "50"))
REFLECT_PREFIXES = int(os.environ.get("BENCH_RIB_REFLECT_PREFIXES", "10000"))
SPEAKERS = os.environ.get("BENCH_RIB_SPEAKERS", "ours,bird,gobgp").split(",")
TIMEOUT = float(os.environ.get("BENCH_RIB_TIMEOUT", "600"))

US = "198.18.0.1"
FEEDER = "198.18.0.2"
RECEIVER = "198.18.0.3"
LOCAL_AS, FEEDER_AS, RECEIVER_AS = 65000, 65001, 65002
GOBGP_API = "127.0.0.1:50051"
POLL = 0.05


def client_address(i: int) -> str:
    return f"198.18.0.{10 + i}"


@contextlib.contextmanager
def lab() -> Iterator[tuple[str, str]]:
    """The speaker's namespace and the peers', joined by veth."""
    with namespace("rib-s") as s, namespace("rib-c") as c:
        run = subprocess.run
        run(["ip", "-n", s, "link", "add", "s0", "type", "veth", "peer", "name", "c0",
             "netns", c], check=True)  # fmt: skip
        run(["ip", "-n", s, "addr", "add", f"{US}/24", "dev", "s0"], check=True)
        run(["ip", "-n", s, "link", "set", "s0", "up"], check=True)
        peers = [FEEDER, RECEIVER, *(client_address(i) for i in range(CLIENTS))]
        batch = "".join(f"addr add {a}/24 dev c0\n" for a in peers)
        run(["ip", "-n", c, "-batch", "-"], input=batch, text=True, check=True)
        run(["ip", "-n", c, "link", "set", "c0", "up"], check=True)
        yield s, c


# -- the speakers


@dataclass
class Speaker:
    label: str
    program: str
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bench-rib-")))

    def available(self) -> bool:
        return shutil.which(self.program) is not None

    def argv(self, peers: list[dict[str, Any]], reflector: bool) -> list[str]:
        raise NotImplementedError

    def wait_ready(self, proc: subprocess.Popen[str]) -> None:
        """Until the speaker listens."""

    def loc_count(self) -> int | None:
        """Prefixes in the Loc-RIB, or None when not known yet."""
        raise NotImplementedError

    def loc_reached(self, count: int, proc: subprocess.Popen[str], timeout: float) -> float:
        """Wall time at which the Loc-RIB first held ``count`` prefixes (polled)."""
        deadline = time.monotonic() + timeout
        while True:
            if (self.loc_count() or 0) >= count:
                return time.time()
            if proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited with code {proc.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.label}: Loc-RIB short of {count} after {timeout}s")
            time.sleep(POLL)


class Ours(Speaker):
    def __init__(self) -> None:
        super().__init__("ours", sys.executable)

    def argv(self, peers: list[dict[str, Any]], reflector: bool) -> list[str]:
        doc: dict[str, Any] = {
            "local_as": LOCAL_AS,
            "router_id": US,
            "listen": [[US, 179]],
            "log_routes": False,
            "peers": [
                {
                    "address": p["address"],
                    "as": p["as"],
                    "passive": True,
                    "hold_time": 90,
                    "graceful_restart": False,
                    "export": "none" if p.get("feeder") else "all",
                    "route_reflector_client": reflector,
                }
                for p in peers
            ],
        }
        if reflector:
            doc["cluster_id"] = US
        config = self.tmp / "ours.json"
        config.write_text(json.dumps(doc))
        self.events = self.tmp / "ours.events"
        self.events.write_text("")
        return [sys.executable, "-m", "bgpd.standalone", str(config)]

    def _records(self) -> Iterator[dict[str, Any]]:
        for line in self.events.read_text().splitlines():
            with contextlib.suppress(ValueError):
                yield json.loads(line)

    def wait_ready(self, proc: subprocess.Popen[str]) -> None:
        deadline = time.monotonic() + 30
        while not any(r["event"] == "started" for r in self._records()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("our speaker did not start")
            time.sleep(POLL)

    def loc_reached(self, count: int, proc: subprocess.Popen[str], timeout: float) -> float:
        # The end-of-rib line comes after every UPDATE before it went through the
        # RIB: its own timestamp is the moment, with no polling delay.
        deadline = time.monotonic() + timeout
        while True:
            for r in self._records():
                if r["event"] == "end-of-rib" and r.get("loc_rib", 0) >= count:
                    return float(r["t"])
            if proc.poll() is not None:
                raise RuntimeError(f"ours exited with code {proc.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"ours: Loc-RIB short of {count} after {timeout}s")
            time.sleep(0.2)


class Bird(Speaker):
    def __init__(self) -> None:
        super().__init__("BIRD 2", "bird")

    def argv(self, peers: list[dict[str, Any]], reflector: bool) -> list[str]:
        lines = [f"router id {US};", "protocol device {}"]
        for i, p in enumerate(peers):
            ibgp = p["as"] == LOCAL_AS
            export = "none" if p.get("feeder") else "all"
            lines.append(
                f"protocol bgp p{i} {{ local {US} as {LOCAL_AS}; neighbor {p['address']} as "
                f"{p['as']}; passive on; hold time 90;"
                + (f" rr client; rr cluster id {US};" if reflector else "")
                + (" direct;" if ibgp else "")  # single hop: next hops on the link
                + f" ipv4 {{ import all; export {export}; }}; }}"
            )
        config = self.tmp / "bird.conf"
        config.write_text("\n".join(lines) + "\n")
        self.socket = self.tmp / "bird.ctl"
        self.socket.unlink(missing_ok=True)  # wait_ready waits for a new one
        return ["bird", "-f", "-c", str(config), "-s", str(self.socket)]

    def wait_ready(self, proc: subprocess.Popen[str]) -> None:
        deadline = time.monotonic() + 30
        while self.loc_count() is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("BIRD did not start")
            time.sleep(POLL)

    def loc_count(self) -> int | None:
        if not self.socket.exists():
            return None
        out = subprocess.run(
            ["birdc", "-s", str(self.socket), "show", "route", "count"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        m = re.search(r"(\d+) of \d+ routes", out)
        return int(m.group(1)) if m else None


class Gobgp(Speaker):
    def __init__(self) -> None:
        super().__init__("GoBGP", "gobgpd")
        self.ns = ""

    def argv(self, peers: list[dict[str, Any]], reflector: bool) -> list[str]:
        lines = [
            "[global.config]",
            f"  as = {LOCAL_AS}",
            f'  router-id = "{US}"',
            "  port = 179",
            f'  local-address-list = ["{US}"]',
        ]
        for p in peers:
            lines += [
                "[[neighbors]]",
                "  [neighbors.config]",
                f'    neighbor-address = "{p["address"]}"',
                f"    peer-as = {p['as']}",
                "  [neighbors.transport.config]",
                "    passive-mode = true",
                "  [neighbors.timers.config]",
                "    hold-time = 90",
                "    keepalive-interval = 30",
                "  [[neighbors.afi-safis]]",
                "    [neighbors.afi-safis.config]",
                '      afi-safi-name = "ipv4-unicast"',
            ]
            if reflector:
                lines += [
                    "  [neighbors.route-reflector.config]",
                    "    route-reflector-client = true",
                    f'    route-reflector-cluster-id = "{US}"',
                ]
            if p.get("feeder"):
                lines += [
                    "  [neighbors.apply-policy.config]",
                    '    default-export-policy = "reject-route"',
                ]
        config = self.tmp / "gobgpd.toml"
        config.write_text("\n".join(lines) + "\n")
        return ["gobgpd", "-f", str(config), "-t", "toml", "--api-hosts", GOBGP_API,
                "--pprof-disable"]  # fmt: skip

    def _cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        host, port = GOBGP_API.split(":")
        return subprocess.run(
            ["ip", "netns", "exec", self.ns, "gobgp", "-u", host, "-p", port, *args],
            capture_output=True,
            text=True,
            check=False,
        )

    def wait_ready(self, proc: subprocess.Popen[str]) -> None:
        deadline = time.monotonic() + 30
        while self._cli("global").returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("GoBGP did not start")
            time.sleep(POLL)

    def loc_count(self) -> int | None:
        m = re.search(r"Destination: (\d+)", self._cli("global", "rib", "summary").stdout)
        return int(m.group(1)) if m else None


# -- one run


@dataclass
class Figures:
    ingest: float = 0.0
    peak_rss: float = 0.0
    bytes_per_prefix: float = 0.0
    dump: float = 0.0
    churn: float = 0.0
    reflect: float = 0.0


@dataclass
class Clients:
    """A running ``bench.bgpclient``: commands in, JSON lines out."""

    proc: subprocess.Popen[str]
    lines: LineReader

    def command(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()


@contextlib.contextmanager
def clients(ns: str, asn: int, sources: list[str], log: Path) -> Iterator[Clients]:
    """``bench.bgpclient`` in the peers' namespace, its sessions established."""
    argv = [sys.executable, "-m", "bench.bgpclient", "--target", US, "--asn", str(asn)]
    for source in sources:
        argv += ["--source", source]
    with (
        open(log, "w") as err,
        process(ns, argv, subprocess.PIPE, err, stdin=subprocess.PIPE) as proc,
    ):
        c = Clients(proc, LineReader(proc, "bench.bgpclient"))
        for _ in sources:
            c.lines.wait_for("established", 60)
        yield c
        with contextlib.suppress(BrokenPipeError):
            c.command("quit")


@contextlib.contextmanager
def speaker_process(
    sp: Speaker, ns: str, peers: list[dict[str, Any]], reflector: bool
) -> Iterator[subprocess.Popen[str]]:
    argv = sp.argv(peers, reflector)
    with contextlib.ExitStack() as files:
        out = files.enter_context(open(sp.events, "w")) if isinstance(sp, Ours) else None
        err = files.enter_context(open(sp.tmp / "stderr", "w"))
        with process(ns, argv, out or subprocess.DEVNULL, err) as proc:
            if isinstance(sp, Gobgp):
                sp.ns = ns
            sp.wait_ready(proc)
            yield proc


def ingest_and_churn(sp: Speaker, s_ns: str, c_ns: str, figures: Figures) -> None:
    table, churn = ribdata.streams(PREFIXES)
    peers = [
        {"address": FEEDER, "as": FEEDER_AS, "feeder": True},
        {"address": RECEIVER, "as": RECEIVER_AS},
    ]
    with (
        speaker_process(sp, s_ns, peers, False) as proc,
        clients(c_ns, FEEDER_AS, [FEEDER], sp.tmp / "feeder.log") as feeder,
    ):
        base = rss_mb(proc.pid)
        feeder.command(f"send 0 {table}")
        start = feeder.lines.wait_for("sent", 60)["start"]
        done = sp.loc_reached(PREFIXES, proc, TIMEOUT)
        figures.ingest = done - start
        figures.peak_rss = peak_rss_mb(proc.pid)
        figures.bytes_per_prefix = (rss_mb(proc.pid) - base) * 1024 * 1024 / PREFIXES
        with clients(c_ns, RECEIVER_AS, [RECEIVER], sp.tmp / "receiver.log") as receiver:
            t0 = time.time()
            receiver.command(f"expect {PREFIXES} 0 0")
            figures.dump = receiver.lines.wait_for("reached", TIMEOUT)["t"] - t0
            receiver.command(f"expect {PREFIXES} {ribdata.churned(PREFIXES)} 0")
            feeder.command(f"send 0 {churn}")
            start = feeder.lines.wait_for("sent", 60)["start"]
            figures.churn = receiver.lines.wait_for("reached", TIMEOUT)["t"] - start


def reflect(sp: Speaker, s_ns: str, c_ns: str, figures: Figures) -> None:
    stream = ribdata.ibgp_stream(REFLECT_PREFIXES)
    sources = [client_address(i) for i in range(CLIENTS)]
    peers = [{"address": a, "as": LOCAL_AS} for a in sources]
    with (
        speaker_process(sp, s_ns, peers, True),
        clients(c_ns, LOCAL_AS, sources, sp.tmp / "clients.log") as cl,
    ):
        time.sleep(1)  # every session past its initial End-of-RIB
        others = " ".join(str(i) for i in range(1, CLIENTS))
        cl.command(f"expect {REFLECT_PREFIXES} 0 {others}")
        cl.command(f"send 0 {stream}")
        start = cl.lines.wait_for("sent", 60)["start"]
        figures.reflect = cl.lines.wait_for("reached", TIMEOUT)["t"] - start


def measure(sp: Speaker) -> Figures:
    figures = Figures()
    with lab() as (s_ns, c_ns):
        ingest_and_churn(sp, s_ns, c_ns, figures)
    with lab() as (s_ns, c_ns):
        reflect(sp, s_ns, c_ns, figures)
    shutil.rmtree(sp.tmp, ignore_errors=True)
    return figures


def run() -> list[Row]:
    ribdata.streams(PREFIXES)  # build the files before any clock runs
    ribdata.ibgp_stream(REFLECT_PREFIXES)
    chosen: list[Speaker] = []
    for name, make in (("ours", Ours), ("bird", Bird), ("gobgp", Gobgp)):
        sp: Speaker = make()
        if name not in SPEAKERS:
            continue
        if not sp.available():
            print(f"rib: {sp.label} left out: {sp.program} is not installed", file=sys.stderr)
            continue
        chosen.append(sp)
    results = {sp.label: measure(sp) for sp in chosen}
    for label, f in results.items():
        print(f"rib: {label}: {f}", file=sys.stderr)
    ours = results.get("ours")
    if ours is None:
        return []
    rows: list[Row] = []
    metrics: list[tuple[str, str, Callable[[Figures], float]]] = [
        (f"ingest {PREFIXES:,}", "s", lambda f: f.ingest),
        ("ingest peak RSS", "MB", lambda f: f.peak_rss),
        ("memory per prefix", "B", lambda f: f.bytes_per_prefix),
        (f"send {PREFIXES:,} to a new peer", "s", lambda f: f.dump),
        (f"churn 10% of {PREFIXES:,}", "s", lambda f: f.churn),
        (f"reflect {REFLECT_PREFIXES:,} to {CLIENTS - 1}", "s", lambda f: f.reflect),
    ]
    for metric, unit, get in metrics:
        for label, f in results.items():
            if label != "ours":
                rows.append(Row("rib", metric, unit, get(ours), label, get(f)))
        if len(results) == 1:
            rows.append(Row("rib", metric, unit, get(ours), "-", None))
    return rows
