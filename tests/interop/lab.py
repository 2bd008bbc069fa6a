"""Network namespaces, links and peer daemons for the interop tests.

Our speaker runs in the test process (root namespace) or as a subprocess; each
peer daemon (BIRD 2, GoBGP) runs in a namespace of its own, joined to the root
namespace by a veth pair with addresses from 198.18.0.0/15 and 2001:2::/48.
Everything a ``Lab`` creates is tracked and removed by ``teardown`` (processes
by PID, then namespaces, whose deletion also removes the veth pairs), even
when a test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_counter = itertools.count(1)

OUR_AS = 65001
PEER_AS = 65002
GOBGP_API_PORT = 50051


def _subnet() -> tuple[int, int]:
    """A fresh counter value and the 198.18.<subnet>.0/24 it maps to."""
    n = next(_counter)
    return n, (os.getpid() + n) % 200 + 20


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=30)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {res.stderr.strip()}")
    return res


@dataclass
class Link:
    """A veth pair between the root namespace (``.1``) and a peer namespace (``.2``)."""

    ns: str
    subnet: int
    root_if: str

    @property
    def our_v4(self) -> str:
        return f"198.18.{self.subnet}.1"

    @property
    def peer_v4(self) -> str:
        return f"198.18.{self.subnet}.2"

    @property
    def our_v6(self) -> str:
        return f"2001:2:0:{self.subnet:x}::1"

    @property
    def peer_v6(self) -> str:
        return f"2001:2:0:{self.subnet:x}::2"


@dataclass
class Lab:
    """What one test created; ``teardown`` removes all of it."""

    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bgpd-interop-")))
    namespaces: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def namespace(self) -> str:
        ns = f"bgpi-{os.getpid()}-{next(_counter)}"
        sh("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        return ns

    def link(self, ns: str | None = None) -> Link:
        """A namespace (new unless given) joined to the root namespace by veth."""
        ns = ns or self.namespace()
        n, subnet = _subnet()
        root_if, peer_if = f"bi{os.getpid() % 10000}x{n}", "eth0"
        sh("ip", "link", "add", root_if, "type", "veth", "peer", "name", peer_if, "netns", ns)
        link = Link(ns, subnet, root_if)
        sh("ip", "link", "set", root_if, "addrgenmode", "none")
        sh("ip", "addr", "add", f"{link.our_v4}/24", "dev", root_if)
        sh("ip", "-6", "addr", "add", f"{link.our_v6}/64", "dev", root_if, "nodad")
        sh("ip", "link", "set", root_if, "up")
        sh("ip", "-n", ns, "addr", "add", f"{link.peer_v4}/24", "dev", peer_if)
        sh("ip", "-n", ns, "-6", "addr", "add", f"{link.peer_v6}/64", "dev", peer_if, "nodad")
        sh("ip", "-n", ns, "link", "set", peer_if, "up")
        return link

    def join(self, ns_a: str, ns_b: str, if_a: str = "up0", if_b: str = "eth0") -> Link:
        """A veth pair between two namespaces: ``our_*`` addresses in ``ns_a``."""
        _n, subnet = _subnet()
        link = Link(ns_b, subnet, "")
        sh("ip", "-n", ns_a, "link", "add", if_a, "type", "veth", "peer", "name", if_b,
           "netns", ns_b)  # fmt: skip
        for ns, dev, v4, v6 in ((ns_a, if_a, link.our_v4, link.our_v6),
                                (ns_b, if_b, link.peer_v4, link.peer_v6)):  # fmt: skip
            sh("ip", "-n", ns, "addr", "add", f"{v4}/24", "dev", dev)
            sh("ip", "-n", ns, "-6", "addr", "add", f"{v6}/64", "dev", dev, "nodad")
            sh("ip", "-n", ns, "link", "set", dev, "up")
        return link

    def spawn(self, ns: str | None, cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
        prefix = ["ip", "netns", "exec", ns] if ns else []
        with open(log, "ab") as fh:
            proc = subprocess.Popen(
                [*prefix, *cmd], stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)  # a stopped process cannot die of SIGTERM
                os.kill(proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)

    def teardown(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(Exception):
                self.kill(proc, signal.SIGTERM)
        self.procs.clear()
        for ns in reversed(self.namespaces):
            sh("ip", "netns", "del", ns, check=False)
        self.namespaces.clear()
        subprocess.run(["rm", "-rf", str(self.workdir)], check=False)


# ----------------------------------------------------------------- BIRD 2


@dataclass
class Bird:
    lab: Lab
    ns: str
    name: str
    proc: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.lab.workdir / f"{self.name}.ctl"

    @property
    def config(self) -> Path:
        return self.lab.workdir / f"{self.name}.conf"

    def start(self, text: str, recovery: bool = False) -> None:
        self.config.write_text(text)
        cmd = ["bird", "-f", "-c", str(self.config), "-s", str(self.socket)]
        if recovery:
            cmd.append("-R")  # graceful restart recovery: the R bit in its OPENs
        self.proc = self.lab.spawn(self.ns, cmd, self.lab.workdir / f"{self.name}.out")
        wait_sync(self.socket.exists, 10, "BIRD's control socket")

    def cli(self, *args: str) -> str:
        res = sh("ip", "netns", "exec", self.ns, "birdc", "-s", str(self.socket), *args)
        return res.stdout

    def routes(self, protocol: str = "ours") -> str:
        return self.cli("show", "route", "protocol", protocol)

    def established(self, protocol: str = "ours") -> bool:
        return "Established" in self.cli("show", "protocols", protocol)


def bird_config(
    link: Link,
    *,
    peer_as: int = PEER_AS,
    our_port: int,
    v6_transport: bool = False,
    routes4: tuple[str, ...] = (),
    routes6: tuple[str, ...] = (),
    extra: str = "",
    hold: int = 9,
) -> str:
    """A BIRD peer that announces ``routes4``/``routes6`` and imports everything."""
    local = link.peer_v6 if v6_transport else link.peer_v4
    neighbor = link.our_v6 if v6_transport else link.our_v4
    static4 = "".join(f"  route {r} blackhole;\n" for r in routes4)
    static6 = "".join(f"  route {r} blackhole;\n" for r in routes6)
    return f"""
log stderr all;
router id {link.peer_v4};
protocol device {{}}
protocol direct {{ ipv4; ipv6; }}
protocol static s4 {{ ipv4;
{static4}}}
protocol static s6 {{ ipv6;
{static6}}}
protocol bgp ours {{
  local {local} as {peer_as};
  neighbor {neighbor} port {our_port} as {OUR_AS};
  hold time {hold};
  connect delay time 1;
  connect retry time 2;
  error wait time 1, 2;
  graceful restart on;
{extra}
  ipv4 {{ import all; export where proto = "s4"; next hop address {link.peer_v4}; }};
  ipv6 {{ import all; export where proto = "s6"; next hop address {link.peer_v6}; }};
}}
"""


# ----------------------------------------------------------------- GoBGP


@dataclass
class Gobgp:
    lab: Lab
    ns: str
    proc: subprocess.Popen[bytes] | None = None

    def start(self, text: str) -> None:
        conf = self.lab.workdir / f"{self.ns}-gobgpd.toml"
        conf.write_text(text)
        self.proc = self.lab.spawn(
            self.ns,
            [
                "gobgpd",
                "-f",
                str(conf),
                "-t",
                "toml",
                "--api-hosts",
                f"127.0.0.1:{GOBGP_API_PORT}",
                "--pprof-disable",
            ],
            self.lab.workdir / f"{self.ns}-gobgpd.out",
        )
        wait_sync(lambda: self.cli_result("global").returncode == 0, 15, "the GoBGP API")

    def cli_result(self, *args: str) -> subprocess.CompletedProcess[str]:
        return sh(
            "ip", "netns", "exec", self.ns,
            "gobgp", "-u", "127.0.0.1", "-p", str(GOBGP_API_PORT), *args,
            check=False,
        )  # fmt: skip

    def cli(self, *args: str) -> str:
        res = self.cli_result(*args)
        if res.returncode != 0:
            raise RuntimeError(f"gobgp {' '.join(args)}: {res.stderr.strip()}")
        return res.stdout

    def rib(self, family: str) -> str:
        return self.cli("global", "rib", "-a", family)


def gobgp_config(
    link: Link, *, peer_as: int = PEER_AS, our_port: int, v6_transport: bool = False
) -> str:
    local = link.peer_v6 if v6_transport else link.peer_v4
    neighbor = link.our_v6 if v6_transport else link.our_v4
    lines = [
        "[global.config]",
        f"  as = {peer_as}",
        f'  router-id = "{link.peer_v4}"',
        "  port = 179",
        "[[neighbors]]",
        "  [neighbors.config]",
        f'    neighbor-address = "{neighbor}"',
        f"    peer-as = {OUR_AS}",
        "  [neighbors.transport.config]",
        f'    local-address = "{local}"',
        f"    remote-port = {our_port}",
        "  [neighbors.timers.config]",
        "    connect-retry = 1",
        "    hold-time = 9",
        "    keepalive-interval = 3",
        "  [neighbors.graceful-restart.config]",
        "    enabled = true",
        "    restart-time = 120",
    ]
    for fam in ("ipv4-unicast", "ipv6-unicast"):
        lines += [
            "  [[neighbors.afi-safis]]",
            "    [neighbors.afi-safis.config]",
            f'      afi-safi-name = "{fam}"',
            "    [neighbors.afi-safis.mp-graceful-restart.config]",
            "      enabled = true",
        ]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------- waiting


def wait_sync(pred: Callable[[], bool], timeout: float, what: str, step: float = 0.1) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


async def wait_for(pred: Callable[[], bool], timeout: float, what: str, step: float = 0.05) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(step)


async def wait_thread(pred: Callable[[], bool], timeout: float, what: str) -> None:
    """Like ``wait_for`` for a predicate that blocks (a CLI call), off the loop."""
    end = time.monotonic() + timeout
    while not await asyncio.to_thread(pred):
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.1)


class Recorder:
    """Collects the standalone speaker's event records."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def __call__(self, event: str, record: dict[str, Any]) -> None:
        self.records.append(record)

    def of(self, event: str, peer: str | None = None) -> list[dict[str, Any]]:
        return [
            r
            for r in self.records
            if r["event"] == event and (peer is None or r.get("peer") == peer)
        ]
