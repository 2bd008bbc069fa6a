"""Writing routes into the kernel: ours next to ``ip -batch`` and BIRD 2's kernel
protocol (issue: within 1.5x of ``ip -batch`` and faster than BIRD 2).

Method.  Each writer gets a fresh network namespace with a veth pair up and
198.18.5.1/24 on it, and installs BENCH_KERNEL_ROUTES (100,000) /24 routes via
198.18.5.2 with protocol 12, then removes them all.

- ours: ``bgpd.kernel`` in this process: a ``Fib`` wanting every route, its
  ``KernelSync`` driver (with its event socket) sending them; the time runs
  from the first route wanted until the driver is idle.  Removal: every route
  unwanted after convergence, until idle again.
- ``ip -batch``: one file of ``route add`` lines, then one of ``route del``;
  the time of each ``ip`` run.
- BIRD 2: a static protocol holding the routes, disabled at start, and a
  kernel protocol exporting everything; the time runs from ``birdc enable``
  until the kernel has announced every route (counted from the namespace's
  route events, protocol 12), and from ``birdc disable`` until it announced
  every deletion.

Every writer's result is checked (the route count in the kernel after each
phase), so a fast wrong answer cannot pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bgpd.kernel import rtnl
from bgpd.kernel.channel import RouteChannel, group_mask, open_socket
from bgpd.kernel.fib import Fib
from bgpd.kernel.rtnl import NextHop
from bgpd.kernel.sync import KernelSync
from bgpd.runtime import tune_gc

from .procs import namespace, process
from .report import Row

ROUTES = int(os.environ.get("BENCH_KERNEL_ROUTES", "100000"))
GATEWAY = "198.18.5.2"


def _prefix(i: int) -> bytes:
    n = (10 << 24) + (i << 8)
    return n.to_bytes(4, "big")


def _text(i: int) -> str:
    return socket.inet_ntoa(_prefix(i)) + "/24"


@contextlib.contextmanager
def lab(tag: str) -> Iterator[str]:
    with namespace(tag) as ns:
        for cmd in (
            ["link", "add", "up0", "type", "veth", "peer", "name", "up1"],
            ["link", "set", "up0", "up"],
            ["link", "set", "up1", "up"],
            ["addr", "add", "198.18.5.1/24", "dev", "up0"],
        ):
            subprocess.run(["ip", "-n", ns, *cmd], check=True)
        yield ns


def count_ours(ns: str) -> int:
    ch = RouteChannel(ns)
    try:
        return sum(1 for r in ch.dump_routes(socket.AF_INET) if r.protocol == rtnl.RTPROT_BIRD)
    finally:
        ch.close()


def ours(ns: str) -> tuple[float, float]:
    async def main() -> tuple[float, float]:
        tune_gc()  # as every bgpd daemon runs
        fib = Fib()
        sync = KernelSync(fib, ns)
        await sync.start()
        hop = (NextHop(socket.inet_aton(GATEWAY)),)
        routes = [fib.route(socket.AF_INET, _prefix(i), 24, nexthops=hop) for i in range(ROUTES)]
        try:
            t0 = time.perf_counter()
            for r in routes:
                sync.want(r)
            while not sync.idle:
                await asyncio.sleep(0)
            add = time.perf_counter() - t0
            _check(ns, ROUTES, "ours after adding")
            sync.converge()
            t0 = time.perf_counter()
            for r in routes:
                sync.unwant(r.dest)
            while not sync.idle:
                await asyncio.sleep(0)
            remove = time.perf_counter() - t0
            _check(ns, 0, "ours after removing")
            print(
                f"kernel: ours sent {sync.requests} requests, {sync.failures} refused, "
                f"{sync.resyncs} table reads",
                file=sys.stderr,
            )
            return add, remove
        finally:
            sync.close()

    return asyncio.run(main())


def ip_batch(ns: str, tmp: Path) -> tuple[float, float]:
    adds, dels = tmp / "add.batch", tmp / "del.batch"
    adds.write_text(
        "".join(f"route add {_text(i)} via {GATEWAY} proto bird\n" for i in range(ROUTES))
    )
    dels.write_text(
        "".join(f"route del {_text(i)} via {GATEWAY} proto bird\n" for i in range(ROUTES))
    )
    out = []
    for path, want in ((adds, ROUTES), (dels, 0)):
        t0 = time.perf_counter()
        subprocess.run(["ip", "-n", ns, "-batch", str(path)], check=True)
        out.append(time.perf_counter() - t0)
        _check(ns, want, f"ip -batch {path.name}")
    return out[0], out[1]


def bird(ns: str, tmp: Path) -> tuple[float, float]:
    routes = "\n".join(f"  route {_text(i)} via {GATEWAY};" for i in range(ROUTES))
    config = tmp / "bird.conf"
    config.write_text(
        "router id 198.18.5.1;\nprotocol device {}\n"
        f"protocol static feed {{ disabled; ipv4;\n{routes}\n}}\n"
        "protocol kernel { ipv4 { export all; import none; }; }\n"
    )
    ctl = tmp / "bird.ctl"
    events = open_socket(ns, group_mask(rtnl.RTNLGRP_IPV4_ROUTE))
    # Room for every event of the run (about 1 KiB of kernel memory each), so
    # counting never loses one even if this process falls behind.
    events.setsockopt(socket.SOL_SOCKET, 33, 512 * 1024 * 1024)  # SO_RCVBUFFORCE
    try:
        with process(ns, ["bird", "-f", "-c", str(config), "-s", str(ctl)], None, None):
            deadline = time.monotonic() + 60
            while not _birdc(ctl, "show", "status").startswith("BIRD"):
                if time.monotonic() > deadline:
                    raise RuntimeError("BIRD did not start")
                time.sleep(0.05)
            t0 = time.perf_counter()
            _birdc(ctl, "enable", "feed")
            add = _events(events, rtnl.RTM_NEWROUTE, ROUTES) - t0
            _check(ns, ROUTES, "BIRD after enable")
            t0 = time.perf_counter()
            _birdc(ctl, "disable", "feed")
            remove = _events(events, rtnl.RTM_DELROUTE, ROUTES) - t0
            _check(ns, 0, "BIRD after disable")
            return add, remove
    finally:
        events.close()


def _birdc(ctl: Path, *args: str) -> str:
    res = subprocess.run(
        ["birdc", "-s", str(ctl), *args], check=False, capture_output=True, text=True
    )
    return res.stdout.split("\n", 1)[1] if "\n" in res.stdout else ""


def _events(sock: socket.socket, kind: int, count: int, timeout: float = 300) -> float:
    """The time at which the ``count``-th event of ``kind`` for protocol 12 arrived."""
    seen = 0
    deadline = time.monotonic() + timeout
    while seen < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{seen} of {count} route events")
        select.select([sock], [], [], 1.0)
        while True:
            try:
                data = sock.recv(1 << 20)
            except BlockingIOError:
                break
            except OSError as exc:  # ENOBUFS: events lost; the count cannot finish
                raise RuntimeError("route events overflowed the socket") from exc
            for got, _flags, _seq, body in rtnl.split(data):
                if got == kind and body[5] == rtnl.RTPROT_BIRD:
                    seen += 1
    return time.perf_counter()


def _check(ns: str, want: int, what: str) -> None:
    got = count_ours(ns)
    if got != want:
        raise RuntimeError(f"{what}: {got} routes of protocol 12 in the kernel, not {want}")


def run() -> list[Row]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-kernel-"))
    try:
        with lab("kernel-ours") as ns:
            our_add, our_del = ours(ns)
        with lab("kernel-ip") as ns:
            ip_add, ip_del = ip_batch(ns, tmp)
        peers = [("ip -batch", ip_add, ip_del)]
        if shutil.which("bird"):
            with lab("kernel-bird") as ns:
                bird_add, bird_del = bird(ns, tmp)
            peers.append(("BIRD 2", bird_add, bird_del))
        else:
            print("kernel: bird not installed, BIRD 2 left out", file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = []
    for metric, mine, index in (("install", our_add, 0), ("remove", our_del, 1)):
        for name, *figures in peers:
            rows.append(
                Row("kernel", f"{metric} {ROUTES:,} routes", "s", mine, name, figures[index])
            )
    for metric, mine, index in (("install", our_add, 0), ("remove", our_del, 1)):
        for name, *figures in peers:
            rate, peer_rate = ROUTES / mine, ROUTES / figures[index]
            rows.append(Row("kernel", f"{metric} rate", "routes/s", rate, name, peer_rate))
    return rows
