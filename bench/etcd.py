"""IPAM through the etcd datastore next to the directory one (issue: allocations
per second through etcd versus the directory backend, and block-claim contention
with three nodes claiming at once).

"ours" is the etcd backend (``bgpd.datastore.etcd.EtcdStore`` over etcd's JSON
gateway), the "peer" the directory backend (``DirectoryStore``), the default and
the baseline; ratio = etcd / directory.  Both come from one ``StoreConfig`` each
(``bgpd.datastore.select``), as every process opens them.  etcd is a real
one-member ``etcd`` (Debian's etcd-server) on a free loopback port, its data
directory in the same temporary folder (same file system) as the directory
store's, so both pay the same fsyncs; it is stopped by PID on the way out, and
killed by the kernel should this process die first (``setpriv --pdeathsig``).

Measured, in one run:

1. in-process IPAM: one ``Ipam(store, node, lock_path)`` per backend, each with
   the pool 10.90.0.0/16 (blockSize 26).  BENCH_ETCD_WARM (50) untimed
   ``auto_assign`` calls, then BENCH_ETCD_ALLOCS (500) timed ones, one IPv4
   address per call and a distinct handle each (as one pod each); then every
   handle released with ``release_handle`` (timed; the warm-up's untimed, first).
   The backends alternate in batches of BENCH_ETCD_BATCH (100), the first of
   each round alternating too, so machine noise falls on both alike.  Reported:
   operations per second (count / the sum of the calls' own times) and the p50
   of one ``auto_assign``.  Checked: every address distinct and in the pool, no
   handle left after the releases.
2. the ``bgpd-ipam`` CNI plugin executable, as a runtime runs it (the launcher
   ``bgpd.cni.install`` writes, a fresh process per call, the ``CNI_*`` variables,
   the network configuration on stdin with the datastore's keys in it):
   BENCH_ETCD_CNI (100) ADDs per backend, then as many DELs, alternating in
   batches of 20 after one untimed ADD and DEL each.  IPAM only: no namespace is
   entered or made (``CNI_NETNS`` is required by the spec but not opened by an
   IPAM plugin).  Reported: the p50 of ADD and of DEL, wall time around each
   ``subprocess.run``.
3. block-claim contention: three processes (``multiprocessing``, fork), each one
   node with its own store connection and its own node lock file, on one shared
   backend (one directory store; one etcd key prefix) with the pool
   10.92.0.0/23 in blocks of /29 (64 blocks of 8 addresses).  Released together
   (an Event, after all three are ready), each allocates BENCH_ETCD_PER_NODE
   (128) addresses one call at a time, so 48 of the 64 blocks get claimed,
   three nodes racing for them.  Reported: wall time (first start to last end),
   aggregate allocations per second, blocks claimed, and the conflicts the
   compare-and-swaps lost (counted by a wrapper around each process's store: a
   block created only-if-absent that another node created first, an affinity,
   a block update, a handle).  Checked: all 384 addresses distinct and each held
   in its block by its handle; every block with exactly one affinity record,
   confirmed, of the node the block names; no pending claim left; the handles'
   counts match the blocks.  Borrowed addresses (from another node's block) are
   counted and reported: with free blocks left there should be none.

Detail per phase goes to stderr; the rows to stdout (``bench.report``).
"""

from __future__ import annotations

import builtins
import contextlib
import ipaddress
import json
import math
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path
from types import FrameType
from typing import Any

from bgpd.cni.install import install
from bgpd.datastore.base import Conflict, Record
from bgpd.datastore.select import StoreConfig
from bgpd.ipam.allocator import AFFINITIES, BLOCKS, CONFIG, DEFAULT_CONFIG, HANDLES, Ipam
from bgpd.ipam.block import Block
from bgpd.ipam.cidr import key_of, parse_ip
from bgpd.ipam.pools import POOLS
from bgpd.lab.etcd import EtcdCluster, EtcdMember, available

from .procs import ROOT
from .report import Row, emit

ALLOCS = int(os.environ.get("BENCH_ETCD_ALLOCS", "500"))
WARM = int(os.environ.get("BENCH_ETCD_WARM", "50"))
BATCH = int(os.environ.get("BENCH_ETCD_BATCH", "100"))
CNI_CALLS = int(os.environ.get("BENCH_ETCD_CNI", "100"))
CNI_BATCH = 20
NODES = 3
PER_NODE = int(os.environ.get("BENCH_ETCD_PER_NODE", "128"))
ALLOC_POOL = "10.90.0.0/16"
CNI_POOL = "10.91.0.0/16"
CONTENTION_POOL = "10.92.0.0/23"
CONTENTION_BLOCK = 29
PEER = "directory backend"
BACKENDS = ("directory", "etcd")  # peer, ours
FORK = multiprocessing.get_context("fork")
WAIT = 120.0  # seconds: a bound on waits for the contention processes, never a delay


class Cluster(EtcdCluster):
    """The lab's etcd, each member also killed by the kernel if this process dies
    before ``close`` (SIGKILL leaves no ``finally`` to run)."""

    def _command(self, member: EtcdMember) -> list[str]:
        # setpriv execs etcd: the PID stays etcd's own, which close() stops.
        return ["setpriv", "--pdeathsig", "KILL", *super()._command(member)]


class Counting:
    """A datastore that counts its calls and the conflicts its writes lose."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.calls: Counter[str] = Counter()
        self.conflicts: Counter[str] = Counter()

    def get(self, key: str) -> Record | None:
        self.calls["get"] += 1
        result: Record | None = self.store.get(key)
        return result

    def list(self, prefix: str) -> list[Record]:
        self.calls["list"] += 1
        result: list[Record] = self.store.list(prefix)
        return result

    def keys(self, prefix: str) -> builtins.list[str]:
        self.calls["keys"] += 1
        result: builtins.list[str] = self.store.keys(prefix)
        return result

    def put(
        self, key: str, value: dict[str, Any], expect: int | None = None, durable: bool = True
    ) -> int:
        self.calls["put"] += 1
        try:
            result: int = self.store.put(key, value, expect=expect, durable=durable)
        except Conflict:
            self.conflicts[_kind(key, expect)] += 1
            raise
        return result

    def delete(self, key: str, expect: int | None = None, durable: bool = True) -> bool:
        self.calls["delete"] += 1
        try:
            result: bool = self.store.delete(key, expect=expect, durable=durable)
        except Conflict:
            self.conflicts[_kind(key, expect)] += 1
            raise
        return result

    def revision(self) -> int:
        result: int = self.store.revision()
        return result

    def close(self) -> None:
        self.store.close()


def _kind(key: str, expect: int | None) -> str:
    if key.startswith(BLOCKS):
        return "block claim" if expect == 0 else "block update"
    if key.startswith(AFFINITIES):
        return "affinity"
    if key.startswith(HANDLES):
        return "handle"
    return "other"


def percentile(values: list[float], p: float) -> float:
    """Nearest rank: the smallest value with at least p% of them at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def log(text: str) -> None:
    print(f"etcd: {text}", file=sys.stderr, flush=True)


def put_pool(store: Any, name: str, cidr: str, **spec: Any) -> None:
    store.put(POOLS + name, {
        "apiVersion": "projectcalico.org/v3", "kind": "IPPool",
        "metadata": {"name": name}, "spec": {"cidr": cidr, **spec},
    })  # fmt: skip


def configs(tmp: Path, cluster: EtcdCluster, phase: str) -> dict[str, StoreConfig]:
    """One StoreConfig per backend for a phase: its own directory, its own etcd prefix."""
    return {
        "directory": StoreConfig({"datastore": "directory"}),
        "etcd": StoreConfig({"datastore": "etcd", "endpoints": cluster.endpoints_text,
                             "prefix": f"/bench-{phase}/"}),
    }  # fmt: skip


def state_dir(tmp: Path, phase: str, backend: str) -> str:
    """Where a phase's local files (node locks; the directory store) live."""
    return str(tmp / phase / backend)


# -- 1. in-process allocations and releases ----------------------------------------------


def rounds(total: int, batch: int) -> Iterator[tuple[tuple[str, str], range]]:
    """(backend order, indices) per batch: the backends alternate, and so does
    which goes first."""
    for round_, start in enumerate(range(0, total, batch)):
        order = BACKENDS if round_ % 2 == 0 else BACKENDS[::-1]
        yield order, range(start, min(start + batch, total))


def allocations(tmp: Path, cluster: EtcdCluster) -> dict[str, dict[str, list[float]]]:
    """Seconds per call: {backend: {"alloc"|"release": [...]}}."""
    chosen = configs(tmp, cluster, "alloc")
    stores = {b: chosen[b].open(state_dir(tmp, "alloc", b)) for b in BACKENDS}
    try:
        ipams = {
            b: Ipam(stores[b], "bench-node", f"{state_dir(tmp, 'alloc', b)}/locks/ipam.lock")
            for b in BACKENDS
        }
        for b in BACKENDS:
            put_pool(stores[b], "bench", ALLOC_POOL)
        times: dict[str, dict[str, list[float]]] = {
            b: {"alloc": [], "release": []} for b in BACKENDS
        }
        got: dict[str, list[str]] = {b: [] for b in BACKENDS}

        def assign(b: str, i: int) -> float:
            attributes = {"namespace": "bench", "pod": f"pod-{i}"}
            t0 = time.perf_counter()
            [a] = ipams[b].auto_assign(f"bench-{i}", attributes, num4=1, num6=0)
            took = time.perf_counter() - t0
            got[b].append(a.address)
            return took

        def release(b: str, i: int) -> float:
            t0 = time.perf_counter()
            freed = ipams[b].release_handle(f"bench-{i}")
            took = time.perf_counter() - t0
            if len(freed) != 1:
                raise RuntimeError(f"{b}: release of bench-{i} freed {freed}")
            return took

        for b in BACKENDS:  # warm-up: imports, connections, the first block claimed
            for i in range(ALLOCS, ALLOCS + WARM):
                assign(b, i)
        for order, indices in rounds(ALLOCS, BATCH):
            for b in order:
                times[b]["alloc"] += [assign(b, i) for i in indices]
        for b in BACKENDS:
            for i in range(ALLOCS, ALLOCS + WARM):
                release(b, i)
        for order, indices in rounds(ALLOCS, BATCH):
            for b in order:
                times[b]["release"] += [release(b, i) for i in indices]

        pool = ipaddress.ip_network(ALLOC_POOL)
        for b in BACKENDS:
            addresses = got[b]
            if len(set(addresses)) != ALLOCS + WARM:
                raise RuntimeError(f"{b}: {len(set(addresses))} distinct addresses, not "
                                   f"{ALLOCS + WARM}")  # fmt: skip
            if any(ipaddress.ip_address(a) not in pool for a in addresses):
                raise RuntimeError(f"{b}: an address outside {ALLOC_POOL}")
            left = stores[b].keys(HANDLES)
            if left:
                raise RuntimeError(f"{b}: handles left after release: {left[:3]}")
        return times
    finally:
        for store in stores.values():
            store.close()


# -- 2. the bgpd-ipam executable ---------------------------------------------------------


def cni_calls(tmp: Path, cluster: EtcdCluster) -> dict[str, dict[str, list[float]]]:
    """Seconds per invocation: {backend: {"ADD"|"DEL": [...]}}."""
    folder = tmp / "cni" / "bin"
    install(str(folder), python=str(ROOT / ".venv" / "bin" / "python"))
    chosen = configs(tmp, cluster, "cni")
    netconf: dict[str, bytes] = {}
    for b in BACKENDS:
        state = state_dir(tmp, "cni", b)
        store = chosen[b].open(state)
        try:
            put_pool(store, "bench", CNI_POOL)
        finally:
            store.close()
        netconf[b] = json.dumps({
            "cniVersion": "1.0.0", "name": "bench-etcd", "type": "bgpd-ipam",
            "nodename": "bench-node", "state_dir": state, "ipam": {"type": "bgpd-ipam"},
            **chosen[b].cni(),
        }).encode()  # fmt: skip
    times: dict[str, dict[str, list[float]]] = {b: {"ADD": [], "DEL": []} for b in BACKENDS}
    added: dict[str, list[str]] = {b: [] for b in BACKENDS}

    def call(b: str, command: str, i: int) -> float:
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command, "CNI_CONTAINERID": f"bench{i:04d}",
            "CNI_NETNS": "/var/run/netns/bench-unused", "CNI_IFNAME": "eth0",
            "CNI_PATH": str(folder),
            "CNI_ARGS": f"K8S_POD_NAMESPACE=bench;K8S_POD_NAME=pod-{i}",
        }  # fmt: skip
        t0 = time.perf_counter()
        proc = subprocess.run(
            [str(folder / "bgpd-ipam")], input=netconf[b], env=env, capture_output=True,
            check=False, timeout=60,
        )  # fmt: skip
        took = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"cni {b} {command} {i}: exit {proc.returncode}: "
                               f"{proc.stdout[:300]!r} {proc.stderr[-300:]!r}")  # fmt: skip
        if command == "ADD" and i < CNI_CALLS:
            ips = json.loads(proc.stdout)["ips"]
            added[b] += [ip["address"].partition("/")[0] for ip in ips]
        return took

    for b in BACKENDS:  # warm-up: the page cache, etcd's first block
        call(b, "ADD", 9999)
        call(b, "DEL", 9999)
    for command in ("ADD", "DEL"):
        for order, indices in rounds(CNI_CALLS, CNI_BATCH):
            for b in order:
                times[b][command] += [call(b, command, i) for i in indices]
    for b in BACKENDS:
        if len(set(added[b])) != CNI_CALLS:
            raise RuntimeError(f"cni {b}: {len(set(added[b]))} distinct addresses, not {CNI_CALLS}")
        store = chosen[b].open(state_dir(tmp, "cni", b))
        try:
            left = store.keys(HANDLES)
        finally:
            store.close()
        if left:
            raise RuntimeError(f"cni {b}: handles left after DEL: {left[:3]}")
    return times


# -- 3. three nodes claiming blocks at once ----------------------------------------------


def node_worker(
    config: StoreConfig, state: str, lock: str, node: str, *, ready: Connection, go: Event
) -> None:
    """One node: PER_NODE allocations, one a call, once ``go`` is set; sends back
    what it got and what it counted."""
    out: dict[str, Any]
    try:
        store = Counting(config.open(state))
        ipam = Ipam(store, node, lock)  # type: ignore[arg-type]
        store.get(CONFIG)  # connected before the start, as a running node is
        ready.send({"ready": True})
        if not go.wait(WAIT):
            raise TimeoutError("no start signal")
        start = time.monotonic()
        got, latencies = [], []
        for i in range(PER_NODE):
            handle = f"{node}.pod-{i}"
            t0 = time.perf_counter()
            [a] = ipam.auto_assign(handle, {"namespace": "bench", "pod": handle},
                                   num4=1, num6=0)  # fmt: skip
            latencies.append(time.perf_counter() - t0)
            got.append((handle, a.address))
        end = time.monotonic()
        out = {"start": start, "end": end, "got": got, "latencies": latencies,
               "conflicts": dict(store.conflicts), "calls": dict(store.calls)}  # fmt: skip
        store.close()
    except BaseException as exc:  # reported to the parent, which raises
        out = {"error": f"{node}: {exc!r}"}
    ready.send(out)
    ready.close()


def contention(tmp: Path, cluster: EtcdCluster, backend: str) -> dict[str, Any]:
    """Three nodes at once on one backend; the figures, after the checks."""
    config = configs(tmp, cluster, "contention")[backend]
    state = state_dir(tmp, "contention", backend)
    store = config.open(state)
    try:
        put_pool(store, "bench", CONTENTION_POOL, blockSize=CONTENTION_BLOCK)
        store.put(CONFIG, dict(DEFAULT_CONFIG))
    finally:
        store.close()
    nodes = [f"node{n}" for n in range(NODES)]
    go = FORK.Event()
    procs, pipes = [], []
    try:
        for node in nodes:
            parent, child = FORK.Pipe(duplex=False)
            lock = f"{tmp}/contention/{backend}-locks/{node}/ipam.lock"  # one per node
            proc = FORK.Process(
                target=node_worker, args=(config, state, lock, node),
                kwargs={"ready": child, "go": go}, daemon=True,
            )  # fmt: skip
            proc.start()
            child.close()
            procs.append(proc)
            pipes.append(parent)
        for node, pipe in zip(nodes, pipes, strict=True):
            if not pipe.poll(WAIT):
                raise TimeoutError(f"contention {backend}: {node} not ready")
            first = pipe.recv()
            if "error" in first:
                raise RuntimeError(f"contention {backend}: {first['error']}")
        go.set()
        results = []
        for node, pipe in zip(nodes, pipes, strict=True):
            if not pipe.poll(WAIT):
                raise TimeoutError(f"contention {backend}: {node} did not finish")
            result = pipe.recv()
            if "error" in result:
                raise RuntimeError(f"contention {backend}: {result['error']}")
            results.append(result)
    finally:
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()  # by its PID
                proc.join()
    figures = check_contention(config, state, nodes, results)
    figures["wall"] = max(r["end"] for r in results) - min(r["start"] for r in results)
    figures["latencies"] = [t for r in results for t in r["latencies"]]
    conflicts: Counter[str] = Counter()
    calls: Counter[str] = Counter()
    for r in results:
        conflicts.update(r["conflicts"])
        calls.update(r["calls"])
    figures["conflicts"] = conflicts
    figures["calls"] = calls
    return figures


def check_contention(
    config: StoreConfig, state: str, nodes: list[str], results: list[dict[str, Any]]
) -> dict[str, Any]:
    """The invariants after the race (raises on any breach); blocks per node, borrowed."""
    store = config.open(state)
    try:
        blocks = {Block(r.value).cidr: Block(r.value) for r in store.list(BLOCKS)}
        affinity_records = store.list(AFFINITIES)
        handles = {r.value["handleID"]: r.value["block"] for r in store.list(HANDLES)}
    finally:
        store.close()
    got = [(node, h, a) for node, r in zip(nodes, results, strict=True) for h, a in r["got"]]
    addresses = [a for _, _, a in got]
    if len(addresses) != NODES * PER_NODE or len(set(addresses)) != len(addresses):
        raise RuntimeError(f"contention: {len(set(addresses))} distinct addresses of "
                           f"{len(addresses)}, not {NODES * PER_NODE}")  # fmt: skip
    by_segment = {key_of(cidr): b for cidr, b in blocks.items()}
    claims: dict[str, list[tuple[str, str]]] = {}
    for record in affinity_records:
        node, _, segment = record.key.removeprefix(AFFINITIES).partition("/")
        claims.setdefault(segment, []).append((node, record.value.get("state", "")))
    for segment, holders in claims.items():
        if len(holders) != 1:
            raise RuntimeError(f"contention: block {segment} has affinities {holders}")
        node, state_ = holders[0]
        if state_ != "confirmed":
            raise RuntimeError(f"contention: block {segment}: affinity of {node} is {state_}")
        block = by_segment.get(segment)
        if block is None or block.affinity != f"host:{node}":
            raise RuntimeError(f"contention: affinity {node}/{segment} but block "
                               f"{None if block is None else block.affinity}")  # fmt: skip
    for cidr, block in blocks.items():
        if block.affinity is not None and key_of(cidr) not in claims:
            raise RuntimeError(f"contention: block {cidr} ({block.affinity}) has no affinity")
    borrowed = 0
    counts: dict[str, Counter[str]] = {}
    for node, handle, address in got:
        family, value = parse_ip(address)
        holding = [
            b for b in blocks.values() if b.family == family and b.ordinal(value) is not None
        ]
        if len(holding) != 1:
            raise RuntimeError(f"contention: {address} is in {len(holding)} blocks")
        block = holding[0]
        ordinal = block.ordinal(value)
        assert ordinal is not None
        if block.handle_of(ordinal) != handle:
            raise RuntimeError(f"contention: {address} held by {block.handle_of(ordinal)}, "
                               f"not {handle}")  # fmt: skip
        if block.affinity != f"host:{node}":
            borrowed += 1
        counts.setdefault(handle, Counter())[block.cidr] += 1
    if handles != {h: dict(c) for h, c in counts.items()}:
        raise RuntimeError("contention: the handles' counts do not match the blocks")
    per_node = Counter(b.affinity for b in blocks.values())
    return {"blocks": len(blocks), "per_node": dict(per_node), "borrowed": borrowed}


# -- the run ------------------------------------------------------------------------------


@contextlib.contextmanager
def terminated_cleanly() -> Iterator[None]:
    """SIGTERM and SIGHUP raise SystemExit here, so the ``finally`` clauses (etcd
    stopped, the temporary folder removed) run for them as for Ctrl-C."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def measure(tmp: Path) -> dict[str, Any]:
    if not available() or shutil.which("setpriv") is None:
        raise RuntimeError("etcd bench: needs etcd (Debian etcd-server) and setpriv (util-linux)")
    cluster = Cluster(tmp / "etcd", members=1)
    try:
        cluster.start()
        log(f"etcd at {cluster.endpoints_text}")
        t0 = time.monotonic()
        alloc = allocations(tmp, cluster)
        log(f"in-process phase {time.monotonic() - t0:.1f} s")
        t0 = time.monotonic()
        cni = cni_calls(tmp, cluster)
        log(f"cni phase {time.monotonic() - t0:.1f} s")
        race = {}
        for b in BACKENDS:
            t0 = time.monotonic()
            race[b] = contention(tmp, cluster, b)
            log(f"contention {b} phase {time.monotonic() - t0:.1f} s")
        return {"alloc": alloc, "cni": cni, "race": race}
    finally:
        cluster.close()


def run() -> list[Row]:
    with terminated_cleanly():
        tmp = Path(tempfile.mkdtemp(prefix="bench-etcd-"))
        try:
            got = measure(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    alloc, cni, race = got["alloc"], got["cni"], got["race"]
    for b in BACKENDS:
        for what in ("alloc", "release"):
            ms = [t * 1000 for t in alloc[b][what]]
            log(f"{b} in-process {what}: n={len(ms)} p50 {percentile(ms, 50):.2f} "
                f"p99 {percentile(ms, 99):.2f} max {max(ms):.2f} ms")  # fmt: skip
        for command in ("ADD", "DEL"):
            ms = [t * 1000 for t in cni[b][command]]
            log(f"{b} bgpd-ipam {command}: n={len(ms)} p50 {percentile(ms, 50):.1f} "
                f"p99 {percentile(ms, 99):.1f} max {max(ms):.1f} ms")  # fmt: skip
        r = race[b]
        log(f"{b} contention: {NODES}x{PER_NODE} in {r['wall']:.2f} s, blocks {r['blocks']} "
            f"{r['per_node']}, borrowed {r['borrowed']}, conflicts {dict(r['conflicts'])}, "
            f"alloc p50 {percentile(r['latencies'], 50) * 1000:.2f} ms, "
            f"datastore calls {dict(r['calls'])}")  # fmt: skip

    def rate(b: str, what: str) -> float:
        return float(len(alloc[b][what]) / sum(alloc[b][what]))

    def row(metric: str, unit: str, ours: float, peer: float) -> Row:
        return Row("etcd", metric, unit, ours, PEER, peer)

    rows = [
        row("ipam allocs/s", "ops/s", rate("etcd", "alloc"), rate("directory", "alloc")),
        row("ipam releases/s", "ops/s", rate("etcd", "release"), rate("directory", "release")),
        row("ipam alloc p50", "ms", percentile(alloc["etcd"]["alloc"], 50) * 1000,
            percentile(alloc["directory"]["alloc"], 50) * 1000),
    ]  # fmt: skip
    for command in ("ADD", "DEL"):
        rows.append(row(f"bgpd-ipam {command} p50", "ms", percentile(cni["etcd"][command], 50)
                        * 1000, percentile(cni["directory"][command], 50) * 1000))  # fmt: skip
    total = NODES * PER_NODE
    e, d = race["etcd"], race["directory"]
    claim_lost = {b: race[b]["conflicts"]["block claim"] + race[b]["conflicts"]["affinity"]
                  for b in BACKENDS}  # fmt: skip
    rows += [
        row(f"{NODES}-node claim wall", "s", e["wall"], d["wall"]),
        row(f"{NODES}-node allocs/s", "ops/s", total / e["wall"], total / d["wall"]),
        row(f"{NODES}-node alloc p50", "ms", percentile(e["latencies"], 50) * 1000,
            percentile(d["latencies"], 50) * 1000),
        row(f"{NODES}-node blocks claimed", "count", e["blocks"], d["blocks"]),
        row(f"{NODES}-node claims lost", "count", claim_lost["etcd"], claim_lost["directory"]),
        row(f"{NODES}-node block CAS lost", "count", e["conflicts"]["block update"],
            d["conflicts"]["block update"]),
        row(f"{NODES}-node borrowed", "count", e["borrowed"], d["borrowed"]),
    ]  # fmt: skip
    return rows


if __name__ == "__main__":
    emit(run())
