"""Convergence of a 20-node mesh: from a new block claimed on one node to its
route in every other node's kernel (issue goal: under 200 ms at the median;
Calico's BIRD reads the kernel every 2 s), ours next to BIRD 2 in the same
topology, with the CPU and memory of each node's agent.

Method.  Each side gets a fresh lab of BENCH_CONV_NODES (20) node namespaces
on one bridge (``bgpd.lab.topology``, addresses 198.18.1.<n>/24), a full iBGP
mesh (190 sessions), and one route-event socket (NETLINK_ROUTE, group
RTNLGRP_IPV4_ROUTE) per node namespace, opened before the first trial.  A
trial claims a block on one node, reads the sockets until every other node
has announced the block's route (RTM_NEWROUTE with that destination), and
takes the last arrival; then the block is given up and the same is timed until
every other node has deleted it (RTM_DELROUTE).  BENCH_CONV_TRIALS (40)
trials, the claiming node rotating through the nodes.

- ours: ``bgpd.lab.Lab`` (``python -m bgpd node`` per node, mesh, pool
  10.65.0.0/16 without encapsulation, no pods).  The claim is Calico's IPAM
  claim, ``Ipam.auto_assign`` for a node that holds no block, with a new
  handle: pending affinity, block, confirmed affinity, handle, block, each a
  durable write.  The clock starts when the confirmed affinity is written (the
  claim is committed; the agents learn it by watching the datastore); the time
  from the start of the whole IPAM call is printed as well.  Giving it up: the
  handle released, then the affinity (the clock starts here) and the empty
  block deleted, as IPAM garbage collection does.
- peer: BIRD 2.0.12 per node with a configuration shaped like the one confd
  renders (CALICO.md §1.2-1.7): kernel protocol with ``learn``, ``persist``,
  ``scan time 2``, ``merge paths``, graceful restart; device and direct
  protocols; a ``bgp_template`` (AS 64512, ``gateway recursive``, ``add paths``,
  graceful restart) and one ``Mesh_<ip>`` per other node, ``passive`` on the
  side with the lower address string; the export filter accepting the node's own
  blocks as aggregates and the pool.  The claim is confd's path once confd has
  the change: the node's included ``static`` protocol and ``calico_aggr``
  function rewritten with a blackhole for the block, then SIGHUP (``sv hup
  bird``, CALICO.md §1.1), which BIRD answers by reconfiguring; the clock starts
  before the file is written.  Giving it up is the same without the block.

Per agent (the median over the nodes): CPU over IDLE_SECONDS (5) of the idle,
converged mesh (% of one core); CPU per trial (one claim and one withdrawal,
user+system ms); RSS at the end.  Starting the mesh is not timed (BIRD's
connect delay is 2 s).
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bgpd.datastore.directory import DirectoryStore
from bgpd.ipam.allocator import AFFINITIES, BLOCKS, Ipam
from bgpd.ipam.cidr import key_of
from bgpd.kernel import rtnl
from bgpd.kernel.channel import group_mask, open_socket
from bgpd.lab.cluster import Lab
from bgpd.lab.topology import NodeNet, Topology, wait_for

from .procs import cpu_seconds, process, rss_mb
from .report import Row

NODES = int(os.environ.get("BENCH_CONV_NODES", "20"))
TRIALS = int(os.environ.get("BENCH_CONV_TRIALS", "40"))
TRIAL_TIMEOUT = 30.0
IDLE_SECONDS = 5.0
GOAL_MS = 200.0
PEER = "BIRD 2.0.12"
AS_NUMBER = 64512
POOL = "10.65.0.0/16"
BLOCK_PREFIX = 26


def percentile(values: list[float], p: float) -> float:
    """Nearest rank: the smallest value with at least p% of them at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def median(values: list[float]) -> float:
    return percentile(values, 50)


class RouteWatch:
    """One route-event socket per node namespace; ``wait`` reads them until every
    named node has announced (or deleted) a destination."""

    def __init__(self, namespaces: dict[str, str]) -> None:
        self.socks: dict[str, socket.socket] = {}
        try:
            for node, ns in namespaces.items():
                self.socks[node] = open_socket(ns, group_mask(rtnl.RTNLGRP_IPV4_ROUTE))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for sock in self.socks.values():
            sock.close()
        self.socks.clear()

    def drain(self) -> None:
        for sock in self.socks.values():
            with contextlib.suppress(BlockingIOError):
                while sock.recv(1 << 20):
                    pass

    def wait(self, cidr: str, kind: int, nodes: set[str], timeout: float) -> dict[str, float]:
        """The monotonic time at which each of ``nodes`` reported a ``kind``
        (RTM_NEWROUTE or RTM_DELROUTE) message for ``cidr``."""
        net = ipaddress.ip_network(cidr)
        dst, dst_len = net.network_address.packed, net.prefixlen
        seen: dict[str, float] = {}
        by_fd = {sock.fileno(): node for node, sock in self.socks.items() if node in nodes}
        deadline = time.monotonic() + timeout
        while len(seen) < len(nodes):
            left = deadline - time.monotonic()
            if left <= 0:
                missing = sorted(nodes - set(seen))
                raise RuntimeError(f"convergence: {cidr} not seen on {missing} in {timeout} s")
            ready, _, _ = select.select(list(by_fd), [], [], left)
            now = time.monotonic()
            for fd in ready:
                node = by_fd[fd]
                sock = self.socks[node]
                with contextlib.suppress(BlockingIOError):
                    while True:
                        data = sock.recv(1 << 20)
                        for msg_kind, _flags, _seq, body in rtnl.split(data):
                            if msg_kind != kind or node in seen:
                                continue
                            route = rtnl.decode_route(body)
                            if route is not None and route.dst == dst and route.dst_len == dst_len:
                                seen[node] = now
        return seen


@dataclass
class Measured:
    claim_ms: list[float] = field(default_factory=list)
    withdraw_ms: list[float] = field(default_factory=list)
    idle_pct: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _idle(pids: dict[str, int], out: Measured) -> None:
    """Each agent's CPU over IDLE_SECONDS of an idle, converged mesh (a
    measurement window, not a wait for anything)."""
    before = {node: cpu_seconds(pid) for node, pid in pids.items()}
    start = time.monotonic()
    time.sleep(IDLE_SECONDS)
    wall = time.monotonic() - start
    out.idle_pct = [(cpu_seconds(pid) - before[node]) / wall * 100 for node, pid in pids.items()]


def _usage(pids: dict[str, int], before: dict[str, float], out: Measured) -> None:
    """Each agent's CPU per trial (a claim and a withdrawal), and its RSS now."""
    for node, pid in pids.items():
        out.cpu_ms.append((cpu_seconds(pid) - before[node]) / TRIALS * 1000)
        out.rss_mb.append(rss_mb(pid))


# ----------------------------------------------------------------- ours


class TimedStore(DirectoryStore):
    """The datastore, noting when an affinity is written ``confirmed`` (the
    moment the claim is committed and visible to every reader; the IPAM's other
    writes, before and after it, are the allocation's, not the agents') and
    when one is deleted (the block given up)."""

    confirmed_at = 0.0
    deleted_at = 0.0

    def put(
        self, key: str, value: dict[str, Any], expect: int | None = None, durable: bool = True
    ) -> int:
        revision = super().put(key, value, expect, durable)
        if key.startswith(AFFINITIES) and value.get("state") == "confirmed":
            self.confirmed_at = time.monotonic()
        return revision

    def delete(self, key: str, expect: int | None = None, durable: bool = True) -> bool:
        done = super().delete(key, expect, durable)
        if key.startswith(AFFINITIES):
            self.deleted_at = time.monotonic()
        return done


def _release(store: TimedStore, ipam: Ipam, node: str, handle: str, cidr: str) -> None:
    """Give the block up as IPAM GC does: its address, its affinity, the empty block."""
    ipam.release_handle(handle)
    store.delete(f"{AFFINITIES}{node}/{key_of(cidr)}")
    store.delete(BLOCKS + key_of(cidr))


def run_ours() -> Measured:
    out = Measured()
    with tempfile.TemporaryDirectory(prefix="bench-conv-") as tmp, Lab(
        nodes=NODES, mode="mesh", encap="direct", state_dir=tmp, pods_per_node=0,
        start_timeout=600,
    ) as lab:  # fmt: skip
        names = lab.node_names
        watch = RouteWatch({name: lab.net(name).ns for name in names})
        store = TimedStore(str(lab.state / "store"))
        try:
            pids = {name: int(lab.agent(name).pid or 0) for name in names}
            _idle(pids, out)
            before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            claim_s: list[float] = []
            from_call: list[float] = []
            for trial in range(TRIALS):
                node = names[trial % len(names)]
                others = set(names) - {node}
                ipam = Ipam(store, node)
                handle = f"bench-conv-{trial}"
                watch.drain()
                t0 = time.monotonic()
                got = ipam.auto_assign(handle, {}, num4=1, num6=0)
                claim_s.append(time.monotonic() - t0)
                cidr = str(ipaddress.ip_network(f"{got[0].address}/{BLOCK_PREFIX}", strict=False))
                seen = watch.wait(cidr, rtnl.RTM_NEWROUTE, others, TRIAL_TIMEOUT)
                out.claim_ms.append((max(seen.values()) - store.confirmed_at) * 1000)
                from_call.append((max(seen.values()) - t0) * 1000)
                _release(store, ipam, node, handle, cidr)
                seen = watch.wait(cidr, rtnl.RTM_DELROUTE, others, TRIAL_TIMEOUT)
                out.withdraw_ms.append((max(seen.values()) - store.deleted_at) * 1000)
            _usage(pids, before, out)
            out.notes.append(
                f"the IPAM call (5 durable writes) took {median(claim_s) * 1000:.1f} ms at the "
                f"median; from its start to the 19th kernel {median(from_call):.1f} ms"
            )
        finally:
            store.close()
            watch.close()
    return out


# ----------------------------------------------------------------- BIRD


def bird_aggr(blocks: list[str]) -> str:
    """What confd renders for the node's blocks: the static blackholes and
    ``calico_aggr`` (CALICO.md §1.6)."""
    routes = "".join(f"  route {b} blackhole;\n" for b in blocks)
    tests = "".join(
        f"  if ( net = {b} ) then {{ accept; }}\n  if ( net ~ {b} ) then {{ reject; }}\n"
        for b in blocks
    )
    return (
        f"protocol static static_ipam {{\n  ipv4;\n{routes}}}\n"
        f"function calico_aggr() {{\n{tests}}}\n"
    )


def bird_config(me: NodeNet, nodes: list[NodeNet], aggr: Path) -> str:
    """A Calico-shaped bird.cfg for a mesh node (CALICO.md §1.2-1.7)."""
    peers = []
    for peer in nodes:
        if peer.name == me.name:
            continue
        passive = "  passive on;\n" if me.address < peer.address else ""  # string comparison
        peers.append(
            f"protocol bgp Mesh_{peer.address.replace('.', '_')} from bgp_template {{\n"
            f"  neighbor {peer.address} as {AS_NUMBER};\n"
            f"  source address {me.address};\n{passive}}}\n"
        )
    return f"""\
router id {me.address};
include "{aggr}";
filter calico_kernel_programming {{
  if ( net ~ {POOL} ) then {{ accept; }}
  accept;
}}
function calico_export_to_bgp_peers(bool internal_peer) {{
  calico_aggr();
  if ( net ~ {POOL} ) then {{ accept; }}
}}
protocol kernel {{
  learn;
  persist;
  scan time 2;
  merge paths on;
  graceful restart;
  ipv4 {{ import all; export filter calico_kernel_programming; }};
}}
protocol device {{ debug {{ states }}; scan time 2; }}
protocol direct {{ debug {{ states }}; ipv4; interface -"cali*", -"kube-ipvs*", "*"; }}
template bgp bgp_template {{
  debug {{ states }};
  local as {AS_NUMBER};
  ipv4 {{
    gateway recursive; add paths on; import all;
    export filter {{ calico_export_to_bgp_peers(true); reject; }};
  }};
  graceful restart;
  connect delay time 2;
  connect retry time 5;
  error wait time 5,30;
}}
{"".join(peers)}"""


def _established(sock: Path) -> int:
    res = subprocess.run(
        ["birdc", "-s", str(sock), "show", "protocols"], capture_output=True, text=True,
        timeout=10, check=False,
    )  # fmt: skip
    return sum(1 for line in res.stdout.splitlines() if "Established" in line)


@contextlib.contextmanager
def bird_lab(tmp: Path) -> Iterator[tuple[Topology, dict[str, subprocess.Popen[str]]]]:
    topo = Topology(NODES, "direct")
    try:
        nets = topo.build()
        with contextlib.ExitStack() as stack:
            procs = {}
            for net in nets:
                aggr = tmp / f"{net.name}-aggr.conf"
                aggr.write_text(bird_aggr([]))
                conf = tmp / f"{net.name}.conf"
                conf.write_text(bird_config(net, nets, aggr))
                log = stack.enter_context(open(tmp / f"{net.name}.log", "w"))
                argv = ["bird", "-f", "-c", str(conf), "-s", str(tmp / f"{net.name}.ctl")]
                procs[net.name] = stack.enter_context(process(net.ns, argv, log, log))
            yield topo, procs
    finally:
        topo.teardown()


def run_bird() -> Measured:
    out = Measured()
    with tempfile.TemporaryDirectory(prefix="bench-conv-bird-") as tmpdir:
        tmp = Path(tmpdir)
        with bird_lab(tmp) as (topo, procs):
            nets = topo.node_nets
            names = [net.name for net in nets]

            def meshed() -> bool:
                for net in nets:
                    if procs[net.name].poll() is not None:
                        log = (tmp / f"{net.name}.log").read_text()[-2000:]
                        raise RuntimeError(f"convergence: BIRD on {net.name} exited:\n{log}")
                return all(_established(tmp / f"{net.name}.ctl") == len(nets) - 1 for net in nets)

            wait_for(meshed, 120, "BIRD's mesh Established", step=0.5)
            watch = RouteWatch({net.name: net.ns for net in nets})
            try:
                pids = {name: proc.pid for name, proc in procs.items()}
                _idle(pids, out)
                before = {name: cpu_seconds(pid) for name, pid in pids.items()}
                for trial in range(TRIALS):
                    net = nets[trial % len(nets)]
                    others = set(names) - {net.name}
                    cidr = f"10.65.{trial // 4}.{(trial % 4) * 64}/{BLOCK_PREFIX}"
                    aggr = tmp / f"{net.name}-aggr.conf"
                    watch.drain()
                    t0 = time.monotonic()
                    aggr.write_text(bird_aggr([cidr]))
                    os.kill(pids[net.name], signal.SIGHUP)
                    seen = watch.wait(cidr, rtnl.RTM_NEWROUTE, others, TRIAL_TIMEOUT)
                    out.claim_ms.append((max(seen.values()) - t0) * 1000)
                    t1 = time.monotonic()
                    aggr.write_text(bird_aggr([]))
                    os.kill(pids[net.name], signal.SIGHUP)
                    seen = watch.wait(cidr, rtnl.RTM_DELROUTE, others, TRIAL_TIMEOUT)
                    out.withdraw_ms.append((max(seen.values()) - t1) * 1000)
                _usage(pids, before, out)
            finally:
                watch.close()
    return out


# ----------------------------------------------------------------- report


def _summary(name: str, m: Measured) -> None:
    for what, values in (("claim", m.claim_ms), ("withdraw", m.withdraw_ms)):
        print(
            f"convergence: {name} {what}: n={len(values)} min {min(values):.1f} "
            f"p50 {median(values):.1f} p90 {percentile(values, 90):.1f} "
            f"max {max(values):.1f} ms",
            file=sys.stderr,
        )
    print(
        f"convergence: {name} per agent: idle CPU median {median(m.idle_pct):.2f} % "
        f"(max {max(m.idle_pct):.2f}); CPU per trial median {median(m.cpu_ms):.1f} ms "
        f"(max {max(m.cpu_ms):.1f}); RSS median {median(m.rss_mb):.1f} MB "
        f"(max {max(m.rss_mb):.1f})",
        file=sys.stderr,
    )
    for note in m.notes:
        print(f"convergence: {name}: {note}", file=sys.stderr)


def rows(ours: Measured, bird: Measured) -> list[Row]:
    result = []
    for what, mine, theirs in (
        ("claim", ours.claim_ms, bird.claim_ms),
        ("withdraw", ours.withdraw_ms, bird.withdraw_ms),
    ):
        for p in (50, 90):
            result.append(
                Row("convergence", f"{what}->{NODES - 1} kernels p{p}", "ms",
                    percentile(mine, p), PEER, percentile(theirs, p))
            )  # fmt: skip
    result.append(
        Row("convergence", f"claim->{NODES - 1} kernels p50", "ms", median(ours.claim_ms),
            "goal", GOAL_MS)
    )  # fmt: skip
    result.append(
        Row("convergence", "agent CPU idle", "% core", median(ours.idle_pct), PEER,
            median(bird.idle_pct))
    )  # fmt: skip
    result.append(
        Row("convergence", "agent CPU per trial", "ms", median(ours.cpu_ms), PEER,
            median(bird.cpu_ms))
    )  # fmt: skip
    result.append(
        Row("convergence", "agent RSS", "MB", median(ours.rss_mb), PEER, median(bird.rss_mb))
    )
    return result


def run() -> list[Row]:
    ours = run_ours()
    _summary("ours", ours)
    bird = run_bird()
    _summary("BIRD", bird)
    return rows(ours, bird)


def main() -> int:
    from .report import emit  # noqa: PLC0415

    emit(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
