"""IPAM safety over the etcd datastore: three nodes, each with its own state
directory for its local files (the IPAM lock), all sharing one etcd.

The plugins run as in ``tests/cni/test_safety.py``: the real launcher executed
inside each node's namespace (``ip netns exec``), pods in namespaces of their own,
real veths.  Only one thing differs from a real cluster: the etcd fixture listens
on the test's own loopback, which a node namespace does not share, so a relay
(``Relay``) listens on the same address and port inside every node namespace and
passes each connection on to etcd.  While etcd is stopped, the relay resets every
connection it accepts (the nearest a relay gets to a refused connection).

Scenarios: 200 ADDs at once over the three nodes, then 200 DELs; ADD and DEL
interleaved at random; etcd stopped for 30 s and started again (ADD and DEL fail
with the retryable 11 and change nothing, STATUS says 50, and afterwards the
same plugins succeed, nothing restarted); etcd SIGKILLed under 45 ADDs, the
refused ones retried.  And ``bgpctl ipam check`` judging a ``creating`` record by
its plugin's pid only on the node that wrote it.

After each scenario the whole state is read back from etcd and checked: distinct
addresses, every block claimed by exactly one node (its affinity record confirmed
and agreeing with the block), each address held once by the handle that counts
it, each node's addresses in its own blocks or borrowed (what it announces says
so), endpoint records, host veths and routes per node, and ``bgpctl ipam check``
run against etcd finding 0 problems.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bgpd.cni.endpoints import endpoint_key
from bgpd.ctl import ipam_check
from bgpd.ctl.main import main as bgpctl_main
from bgpd.datastore.etcd import EtcdStore
from bgpd.datastore.select import FIELDS
from bgpd.ipam.allocator import AFFINITIES, BLOCKS, HANDLES, announcements
from bgpd.ipam.block import Block
from bgpd.lab.etcd import EtcdCluster
from tests.cni.harness import CniNode, Result
from tests.cni.test_safety import (
    Lab,
    address_of,
    assert_error,
    handle,
    host_routes,
    pod_args,
    pod_inet,
    pod_links,
    veth_of,
)
from tests.conftest import require_programs, require_root

PREFIX = "/cluster-a/"
NODES = ("node1", "node2", "node3")
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50
#: Every variable that selects a datastore, kept out of the commands we run.
DATASTORE_VARS = {env for _, env, _, _ in FIELDS} | {"DATASTORE_TYPE"}


# -- etcd's client port inside the node namespaces ----------------------------------------

_CLONE_NEWNET = 0x40000000


def listen_in(netns: str, host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` inside the named network namespace: made
    by a short-lived thread that enters the namespace (``setns`` moves only the
    calling thread), so the test process itself stays where it is."""
    made: list[socket.socket] = []
    failed: list[BaseException] = []

    def inside() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/var/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    errno = ctypes.get_errno()
                    raise OSError(errno, f"setns {netns}: {os.strerror(errno)}")
            finally:
                os.close(fd)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.setblocking(False)
            made.append(sock)
        except BaseException as exc:  # handed to the caller
            failed.append(exc)

    thread = threading.Thread(target=inside, name=f"listen-in-{netns}")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return made[0]


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a RST rather than a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class Relay:
    """etcd's client ports (on the test's loopback) reachable at the same address
    inside node namespaces: an asyncio loop in a thread of the test process
    copying bytes both ways, one upstream connection per accepted one."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.loop = asyncio.new_event_loop()
        self.servers: list[asyncio.Server] = []
        self.writers: set[asyncio.StreamWriter] = set()
        self.accepted = 0
        self.reset = 0
        self.thread = threading.Thread(target=self.loop.run_forever, name="etcd-relay", daemon=True)
        self.thread.start()

    def expose(self, netns: str) -> None:
        for port in self.ports:
            sock = listen_in(netns, "127.0.0.1", port)
            try:
                future = asyncio.run_coroutine_threadsafe(self._serve(sock, port), self.loop)
                self.servers.append(future.result(10))
            except BaseException:
                sock.close()
                raise

    async def _serve(self, sock: socket.socket, port: int) -> asyncio.Server:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._relay(port, reader, writer)

        return await asyncio.start_server(handle, sock=sock, backlog=1024)

    async def _relay(
        self, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.accepted += 1
        self.writers.add(writer)
        try:
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                self.reset += 1
                _reset(writer)
                return
            self.writers.add(up_writer)
            try:
                tasks = [
                    asyncio.ensure_future(_copy(reader, up_writer)),
                    asyncio.ensure_future(_copy(up_reader, writer)),
                ]
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            finally:
                up_writer.transport.abort()
                self.writers.discard(up_writer)
        except OSError:
            pass
        finally:
            writer.transport.abort()
            self.writers.discard(writer)

    def close(self) -> None:
        async def stop() -> None:
            for server in self.servers:
                server.close()
            for writer in list(self.writers):
                writer.transport.abort()
            current = asyncio.current_task()
            pending = [t for t in asyncio.all_tasks() if t is not current]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

        if self.thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
        if not self.thread.is_alive():
            self.loop.close()


# -- three nodes, one etcd ----------------------------------------------------------------


class EtcdLab:
    """Three node namespaces, each with its own state directory, their plugins
    configured for the one etcd; every plugin started is killed (by PID) at
    teardown, every namespace deleted."""

    def __init__(self, tmp: Path, etcd: EtcdCluster) -> None:
        self.etcd = etcd
        self.store: EtcdStore = etcd.store(PREFIX)
        self.relay = Relay([m.client_port for m in etcd.members])
        self.nodes: list[CniNode] = []
        self.runners: dict[str, Lab] = {}
        try:
            for name in NODES:
                node = CniNode(tmp, name)
                self.nodes.append(node)
                self.runners[name] = Lab(node)
                self.relay.expose(node.ns)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        try:
            for runner in self.runners.values():
                runner.kill_all()
        finally:
            try:
                self.relay.close()
            finally:
                for node in self.nodes:
                    node.teardown()
                self.store.close()

    def config(self, node: CniNode, **overrides: Any) -> dict[str, Any]:
        """The node's network configuration, etcd chosen by its keys (the third
        node with Calico's spelling, ``datastore_type: etcdv3``)."""
        calico = node.name == NODES[2]
        chosen = {"datastore_type": "etcdv3"} if calico else {"datastore": "etcd"}
        return node.config(
            **chosen, etcd_endpoints=self.etcd.endpoints_text, etcd_prefix=PREFIX, **overrides
        )

    def pool(self, name: str, cidr: str, **spec: Any) -> None:
        self.store.put(f"resources/ippools/{name}", {
            "apiVersion": "projectcalico.org/v3", "kind": "IPPool",
            "metadata": {"name": name}, "spec": {"cidr": cidr, **spec},
        })  # fmt: skip

    def cni(self, node: CniNode, command: str, container: str = "", netns: str = "", *,
            pod: str = "", **overrides: Any) -> Result:  # fmt: skip
        ifname = "" if command in ("GC", "STATUS") else "eth0"
        args = pod_args(pod) if pod else ""
        return node.cni(command, container, netns, config=self.config(node, **overrides),
                        ifname=ifname, args=args)  # fmt: skip

    def start(self, node: CniNode, command: str, container: str, netns: str,
              pod: str) -> subprocess.Popen[bytes]:  # fmt: skip
        return self.runners[node.name].start(
            command, container, netns, args=pod_args(pod), config=self.config(node)
        )

    def records(self, node: CniNode | None = None) -> list[str]:
        return self.store.keys(f"endpoints/{node.name}/" if node else "endpoints/")

    def bgpctl(
        self, *argv: str, via: str = "options", node: CniNode | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``bgpctl`` run as an operator runs it, the datastore chosen by options
        (``via="options"``) or by the environment (``via="env"``)."""
        node = node or self.nodes[0]
        env = {k: v for k, v in os.environ.items() if k not in DATASTORE_VARS}
        command = [sys.executable, "-m", "bgpd.ctl.main", "--state-dir", str(node.state),
                   "--node-name", node.name]  # fmt: skip
        if via == "options":
            command += ["--datastore", "etcd", "--etcd-endpoints", self.etcd.endpoints_text,
                        "--etcd-prefix", PREFIX]  # fmt: skip
        else:
            env.update(BGPD_DATASTORE="etcd", ETCD_ENDPOINTS=self.etcd.endpoints_text,
                       BGPD_ETCD_PREFIX=PREFIX)  # fmt: skip
        return subprocess.run([*command, *argv], capture_output=True, text=True, env=env,
                              timeout=120, check=False)  # fmt: skip

    def ipam_check(self, via: str = "options") -> list[str]:
        """``bgpctl ipam check`` against etcd; its lines, asserted to find nothing."""
        result = self.bgpctl("ipam", "check", "--show-problem-ips", via=via)
        assert result.returncode == 0, result
        lines = result.stdout.splitlines()
        assert lines[-1] == "Check complete; found 0 problems.", result.stdout
        return lines


@pytest.fixture
def lab(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[EtcdLab]:
    require_root()
    require_programs("ip", package="iproute2")
    etcd: EtcdCluster = request.getfixturevalue("etcd")  # after the checks: none started in vain
    here = EtcdLab(tmp_path, etcd)
    try:
        yield here
    finally:
        here.close()


# -- reading the state back from etcd ----------------------------------------------------


class Allocation:
    __slots__ = ("affinity", "block", "handle", "node")

    def __init__(self, handle: str, node: str, block: str, affinity: str | None) -> None:
        self.handle = handle
        self.node = node
        self.block = block
        self.affinity = affinity


def assert_ipam_consistent(lab: EtcdLab) -> dict[str, Allocation]:
    """Blocks, affinities and handles agree, and nothing is held twice; every
    allocation (address -> who holds it, from which block)."""
    store = lab.store
    known = {f"host:{name}" for name in NODES}
    blocks: dict[str, Block] = {}
    found: dict[str, Allocation] = {}
    held: dict[str, Counter[str]] = {}
    for record in store.list(BLOCKS):
        block = Block(record.value)
        blocks[block.cidr] = block
        assert sorted(block.unallocated + [o for o, _ in block.allocated()]) == list(
            range(block.size)
        ), f"block {block.cidr}: free and used ordinals do not partition it"
        assert block.affinity in known, f"block {block.cidr}: affinity {block.affinity}"
        for ordinal, attrs in block.allocated():
            address = block.address(ordinal)
            assert address not in found, f"{address} allocated twice"
            node = (attrs.get("secondary") or {}).get("node")
            assert node in NODES, (address, attrs)
            found[address] = Allocation(attrs["handle_id"], node, block.cidr, block.affinity)
            held.setdefault(attrs["handle_id"], Counter())[block.cidr] += 1

    # Every block claimed by exactly one node, whose confirmed affinity agrees.
    claims: dict[str, list[str]] = {}
    for record in store.list(AFFINITIES):
        node = record.key.split("/")[2]
        value = record.value
        assert value.get("state") == "confirmed", (record.key, value)
        assert value.get("node") == node, (record.key, value)
        claims.setdefault(value["cidr"], []).append(node)
    for cidr, nodes in claims.items():
        assert len(nodes) == 1, f"block {cidr} claimed by {nodes}"
        assert cidr in blocks, f"{nodes[0]} claims {cidr}, which does not exist"
        assert blocks[cidr].affinity == f"host:{nodes[0]}", (cidr, blocks[cidr].affinity)
    assert sorted(claims) == sorted(blocks), "a block no node's affinity names"

    # Each handle counts exactly what the blocks hold for it; one address a pod.
    handles = {r.value["handleID"]: dict(r.value["block"]) for r in store.list(HANDLES)}
    assert {h: dict(c) for h, c in held.items()} == handles
    assert all(sum(c.values()) == 1 for c in handles.values()), handles

    # What each node announces covers its addresses: its own blocks, or borrowed /32s.
    for name in NODES:
        own_blocks, borrowed = announcements(store, name)
        assert sorted(own_blocks) == sorted(c for c, n in claims.items() if n == [name])
        for address, alloc in found.items():
            if alloc.node != name:
                continue
            if alloc.affinity == f"host:{name}":
                assert alloc.block in own_blocks, (address, name)
            else:
                assert f"{address}/32" in borrowed, (address, name, alloc.block, alloc.affinity)
        assert len(borrowed) == sum(
            1 for a in found.values() if a.node == name and a.affinity != f"host:{name}"
        )
    return found


def assert_node_state(lab: EtcdLab, node: CniNode, live: dict[str, tuple[str, str, str]]) -> None:
    """What ``node`` has matches ``live`` (container -> (netns, pod, address)):
    endpoint records in etcd, host veths and routes, and nothing in its local
    directory datastore (everything went to etcd)."""
    keys = sorted(endpoint_key(node.name, c, "eth0") for c in live)
    assert lab.records(node) == keys
    for record in lab.store.list(f"endpoints/{node.name}/"):
        assert record.value["state"] == "ready", record.value
        assert record.value["node"] == node.name
        container = record.value["containerID"]
        assert record.value["ips"] == [f"{live[container][2]}/32"]
    assert node.host_veths() == sorted(veth_of(p) for _, p, _ in live.values())
    assert host_routes(node) == {a: veth_of(p) for _, p, a in live.values()}
    assert node.store.list("") == []


# -- 1. 200 ADDs at once over three nodes, then 200 DELs -----------------------------------



def run_at_once(lab: Lab, command: str, jobs: list[Any]) -> tuple[list[Any], float]:
    """``command`` for every (node, container, netns, pod) job, all started at once;
    the results (every one must succeed) and the seconds they took together."""
    started = time.monotonic()
    procs = [lab.start(node, command, c, n, p) for node, c, n, p in jobs]
    results = [Lab.finish(proc) for proc in procs]
    seconds = time.monotonic() - started
    failed = [(c, r) for (_, c, _, _), r in zip(jobs, results, strict=True) if not r.ok]
    assert not failed, failed[:3]
    return results, seconds


def test_200_concurrent_adds_over_three_nodes_then_200_dels(lab: EtcdLab) -> None:
    """Fewer blocks than the nodes want (4 of 64 for 200 pods over 3 nodes): nodes
    race for the claims, and those left without enough borrow from the others'."""
    lab.pool("pool1", "10.90.0.0/24", blockSize=26)
    count = 200
    jobs = []  # (node, container, netns, pod)
    for i in range(count):
        node = lab.nodes[i % len(lab.nodes)]
        pod = f"pod{i:03d}"
        jobs.append((node, f"c{i:03d}", node.pod_netns(pod), pod))

    results, add_seconds = run_at_once(lab, "ADD", jobs)

    addresses = [address_of(r) for r in results]
    assert len(set(addresses)) == count
    for (_, _, netns, _), address in zip(jobs, addresses, strict=True):
        assert pod_inet(netns) == [f"{address}/32"], netns
    found = assert_ipam_consistent(lab)
    expected = {
        a: (handle(c), node.name) for (node, c, _, _), a in zip(jobs, addresses, strict=True)
    }
    assert {a: (x.handle, x.node) for a, x in found.items()} == expected
    for node in lab.nodes:
        live = {
            c: (n, p, a) for (nd, c, n, p), a in zip(jobs, addresses, strict=True) if nd is node
        }
        assert_node_state(lab, node, live)
    borrowed = Counter(x.node for x in found.values() if x.affinity != f"host:{x.node}")
    blocks = Counter(x.affinity for x in found.values())
    assert sum(borrowed.values()) > 0  # 4 blocks cannot serve 3 nodes of ~67 pods each
    lines = lab.ipam_check()
    assert f"Found {count} endpoint records ({count} ready)." in lines
    assert f"Endpoints and nodes are using {count} allocated IPs." in lines
    print(f"\n{count} concurrent ADDs over 3 nodes: {add_seconds:.1f} s;"
          f" allocations by block owner {dict(blocks)}; borrowed by {dict(borrowed)}")  # fmt: skip

    _, del_seconds = run_at_once(lab, "DEL", jobs)
    assert lab.records() == []
    assert lab.store.list(HANDLES) == []
    assert assert_ipam_consistent(lab) == {}
    for node in lab.nodes:
        assert_node_state(lab, node, {})
    for _, _, netns, _ in jobs:
        assert pod_links(netns) == ["lo"]
    lab.ipam_check(via="env")
    print(f"{count} concurrent DELs: {del_seconds:.1f} s; relay connections {lab.relay.accepted}")


# -- 2. ADD and DEL interleaved at random over the three nodes ---------------------------


def test_random_interleaving_over_three_nodes(lab: EtcdLab) -> None:
    rng = random.Random(20250611)
    lab.pool("pool1", "10.91.0.0/25", blockSize=28)  # 8 small blocks: claims and borrowing
    live: dict[str, tuple[CniNode, str, str, str]] = {}  # container -> (node, netns, pod, addr)
    gone: dict[str, tuple[CniNode, str, str]] = {}
    operations = serial = 0
    started = time.monotonic()
    while operations < 60:
        jobs: list[tuple[str, CniNode, str, str, str]] = []  # (command, node, container, ...)
        deleting: set[str] = set()
        for _ in range(rng.randint(5, 15)):
            candidates = sorted(set(live) - deleting)
            if candidates and rng.random() < 0.45:
                container = rng.choice(candidates)
                deleting.add(container)
                node, netns, pod, _ = live[container]
                jobs.append(("DEL", node, container, netns, pod))
            else:
                serial += 1
                node = rng.choice(lab.nodes)
                pod = f"pod{serial:03d}"
                jobs.append(("ADD", node, f"r{serial:03d}", node.pod_netns(pod), pod))
        rng.shuffle(jobs)
        procs = []
        for command, node, container, netns, pod in jobs:
            procs.append(lab.start(node, command, container, netns, pod))
            time.sleep(rng.random() * 0.004)
        for (command, node, container, netns, pod), proc in zip(jobs, procs, strict=True):
            result = Lab.finish(proc)
            assert result.ok, (command, node.name, container, result)
            if command == "ADD":
                live[container] = (node, netns, pod, address_of(result))
            else:
                del live[container]
                gone[container] = (node, netns, pod)
        operations += len(jobs)
    seconds = time.monotonic() - started

    found = assert_ipam_consistent(lab)
    assert {a: (x.handle, x.node) for a, x in found.items()} == {
        a: (handle(c), node.name) for c, (node, _, _, a) in live.items()
    }
    for node in lab.nodes:
        mine = {c: (n, p, a) for c, (nd, n, p, a) in live.items() if nd is node}
        assert_node_state(lab, node, mine)
    for _, netns, _, address in live.values():
        assert pod_inet(netns) == [f"{address}/32"]
    for _, netns, _ in gone.values():
        assert pod_links(netns) == ["lo"]
    lab.ipam_check()
    print(f"\n{operations} operations over 3 nodes in {seconds:.1f} s; {len(live)} pods left,"
          f" on {dict(Counter(n.name for n, _, _, _ in live.values()))}")  # fmt: skip


# -- 3. etcd stopped for 30 s and started again -------------------------------------------


OUTAGE = 30.0


def test_etcd_down_30_s_then_back(lab: EtcdLab) -> None:
    """While etcd is down, ADD fails with the retryable 11 and leaves nothing,
    DEL fails with 11 and leaves the pod as it was, STATUS says 50 (and ``bgpctl``
    fails, naming the refused endpoint); once etcd is back (nothing else
    restarted: not the relay, not the nodes), STATUS is 0 again, the refused ADDs
    succeed when retried and the pods added before the outage are deleted."""
    lab.pool("pool1", "10.92.0.0/24", blockSize=26)
    before: dict[str, tuple[CniNode, str, str, str]] = {}
    for node in lab.nodes:
        pod = f"before-{node.name}"
        netns = node.pod_netns(pod)
        result = lab.cni(node, "ADD", pod, netns, pod=pod)
        assert result.ok, result
        before[pod] = (node, netns, pod, address_of(result))
    for node in lab.nodes:
        status = lab.cni(node, "STATUS", cniVersion="1.1.0")
        assert status.ok and status.stdout == "", status
    waiting = {f"during-{node.name}": (node, node.pod_netns(f"during-{node.name}"))
               for node in lab.nodes}  # fmt: skip

    lab.etcd.stop_member(0)
    down_at = time.monotonic()
    attempts: Counter[str] = Counter()
    slowest = 0.0
    deleted_once = False
    while time.monotonic() - down_at < OUTAGE:
        for container, (node, netns) in waiting.items():
            started = time.monotonic()
            result = lab.cni(node, "ADD", container, netns, pod=container)
            slowest = max(slowest, time.monotonic() - started)
            assert_error(result, TRY_AGAIN_LATER, "datastore")
            attempts["ADD"] += 1
            assert pod_links(netns) == ["lo"]
            status = lab.cni(node, "STATUS", cniVersion="1.1.0")
            assert_error(status, NOT_AVAILABLE, "datastore")
            attempts["STATUS"] += 1
        if not deleted_once:
            node, netns, pod, address = before[f"before-{lab.nodes[0].name}"]
            result = lab.cni(node, "DEL", pod, netns, pod=pod)
            assert_error(result, TRY_AGAIN_LATER, "datastore")
            assert pod_inet(netns) == [f"{address}/32"]  # refused: nothing torn down
            # bgpctl, outside the relay, meets the refused connection itself.
            ctl = lab.bgpctl("ipam", "check")
            assert ctl.returncode == 1, ctl
            assert "bgpctl: datastore: etcd: no endpoint answers" in ctl.stderr, ctl
            deleted_once = True
        for node in lab.nodes:
            assert node.host_veths() == [veth_of(p) for n, _, p, _ in before.values() if n is node]
        time.sleep(1.0)
    outage = time.monotonic() - down_at
    assert lab.relay.reset > 0  # the plugins did reach the relay, and found etcd gone

    lab.etcd.start_member(0)
    back_at = time.monotonic()
    # As a runtime does: STATUS until the plugin says it can serve, nothing restarted.
    while True:
        status = lab.cni(lab.nodes[0], "STATUS", cniVersion="1.1.0")
        if status.ok:
            break
        assert_error(status, NOT_AVAILABLE)
        assert time.monotonic() - back_at < 30, status
        time.sleep(0.2)
    recovered = time.monotonic() - back_at

    # The refused ADDs left nothing anywhere: no record, no handle, no address.
    assert lab.records() == sorted(
        endpoint_key(n.name, c, "eth0") for c, (n, _, _, _) in before.items()
    )
    found = assert_ipam_consistent(lab)
    assert {a: x.handle for a, x in found.items()} == {
        a: handle(c) for c, (_, _, _, a) in before.items()
    }
    for node in lab.nodes:
        assert lab.cni(node, "STATUS", cniVersion="1.1.0").ok
        mine = {c: (ns, p, a) for c, (n, ns, p, a) in before.items() if n is node}
        assert_node_state(lab, node, mine)

    # Retried, the refused ADDs succeed; the pods from before the outage go.
    for container, (node, netns) in waiting.items():
        result = lab.cni(node, "ADD", container, netns, pod=container)
        assert result.ok, result
        address = address_of(result)
        assert pod_inet(netns) == [f"{address}/32"]
        before_addresses = {a for _, _, _, a in before.values()}
        assert address not in before_addresses
        check = lab.cni(node, "CHECK", container, netns, pod=container, prevResult=result.json)
        assert check.ok, check
    for container, (node, netns, pod, _) in before.items():
        result = lab.cni(node, "DEL", container, netns, pod=pod)
        assert result.ok, result
        assert pod_links(netns) == ["lo"]
    assert lab.records() == sorted(endpoint_key(n.name, c, "eth0") for c, (n, _) in waiting.items())
    found = assert_ipam_consistent(lab)
    assert sorted(x.handle for x in found.values()) == sorted(handle(c) for c in waiting)
    for node in lab.nodes:
        assert node.host_veths() == [veth_of(f"during-{node.name}")]
    lab.ipam_check()
    print(f"\netcd down {outage:.1f} s: {dict(attempts)} refused (slowest {slowest:.2f} s);"
          f" STATUS ok {recovered:.1f} s after the restart")  # fmt: skip


def test_etcd_killed_under_adds_then_retries_catch_up(lab: EtcdLab) -> None:
    """etcd SIGKILLed while 45 ADDs over the three nodes are under way: each
    either succeeds or fails with 11, a failed one leaving no interface in its pod
    and no veth on its node (its record may stay ``creating``: the undo could
    not reach etcd either); once etcd is back, retrying the failed ADDs, as the
    runtime does, attaches them all and leaves IPAM consistent."""
    lab.pool("pool1", "10.93.0.0/24", blockSize=26)
    jobs = []  # (node, container, netns, pod)
    for i in range(45):
        node = lab.nodes[i % len(lab.nodes)]
        pod = f"inflight{i:02d}"
        jobs.append((node, f"f{i:02d}", node.pod_netns(pod), pod))
    procs = [lab.start(node, "ADD", c, n, p) for node, c, n, p in jobs]
    deadline = time.monotonic() + 60
    while sum(p.poll() is not None for p in procs) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    lab.etcd.stop_member(0, kill=True)
    results = [Lab.finish(proc) for proc in procs]
    failed = []
    for job, result in zip(jobs, results, strict=True):
        if not result.ok:
            assert_error(result, TRY_AGAIN_LATER, "datastore")
            failed.append(job)
    assert failed, "etcd was killed after every ADD had finished"
    for node, _, netns, pod in failed:
        assert pod_links(netns) == ["lo"], netns
        assert veth_of(pod) not in node.host_veths()

    lab.etcd.start_member(0)
    lab.etcd.wait_ready()
    left = Counter(r.value["state"] for r in lab.store.list("endpoints/"))
    for node, container, netns, pod in failed:
        result = lab.cni(node, "ADD", container, netns, pod=pod)
        assert result.ok, result
    addresses: dict[str, str] = {}
    for node, container, netns, _ in jobs:
        record = lab.store.get(endpoint_key(node.name, container, "eth0"))
        assert record is not None and record.value["state"] == "ready", container
        (address,) = record.value["ips"]
        addresses[container] = address.removesuffix("/32")
        assert pod_inet(netns) == [address], netns
    found = assert_ipam_consistent(lab)
    assert {a: x.handle for a, x in found.items()} == {a: handle(c) for c, a in addresses.items()}
    for node in lab.nodes:
        mine = {c: (n, p, addresses[c]) for nd, c, n, p in jobs if nd is node}
        assert_node_state(lab, node, mine)
    lab.ipam_check()
    print(f"\n{len(failed)} of {len(jobs)} ADDs refused (11) when etcd was killed;"
          f" records left then: {dict(left)}; all attached on retry")  # fmt: skip


# -- ipam check: creating records of other machines ---------------------------------------


def _creating(node: str | None, container: str, pid: int) -> tuple[str, dict[str, Any]]:
    value: dict[str, Any] = {
        "containerID": container, "ifname": "eth0", "network": "k8s-pod-network",
        "handle": f"k8s-pod-network.{container}", "state": "creating", "pid": pid,
    }  # fmt: skip
    if node is not None:
        value["node"] = node
    return endpoint_key(node or "node1", container, "eth0"), value


def _check_creating(
    records: list[tuple[str, dict[str, Any]]], node: str | None, alive: Callable[[object], bool]
) -> tuple[list[str], list[dict[str, Any]]]:
    lines: list[str] = []
    checker = ipam_check.Checker(lines.append, show_problem_ips=True, alive=alive, node=node)
    checker.load_blocks([])
    checker.load_pools([])
    checker.load_handles([])
    checker.load_endpoints(records)
    checker.scan()
    return lines, checker.problems


def test_check_judges_pids_of_its_own_node_only() -> None:
    """A pid is judged only on the machine that wrote it: the checking node's
    records (and records naming no node), not other nodes'."""
    records = [
        _creating("node1", "dead1", 4001),
        _creating("node1", "live1", 4002),
        _creating("node2", "dead2", 4003),  # another machine's pid: dead here, maybe not there
        _creating(None, "old", 4004),
    ]

    def alive(pid: object) -> bool:
        return pid == 4002

    lines, problems = _check_creating(records, "node1", alive)
    assert sorted(p["detail"] for p in problems) == [
        "endpoints/node1/dead1.eth0 left creating by pid 4001",
        "endpoints/node1/old.eth0 left creating by pid 4004",
    ]
    assert {p["kind"] for p in problems} == {ipam_check.CREATING_BY_DEAD_PLUGIN}
    assert (
        "Skipped 1 endpoint records creating on other nodes "
        "(their plugins' processes are not visible from here)."
    ) in lines
    assert "Found 2 endpoint records left creating by a dead plugin." in lines
    assert lines[-1] == "Check complete; found 2 problems."

    # No node given (a datastore on this machine alone): every record is judged.
    lines, problems = _check_creating(records, None, alive)
    assert len(problems) == 3
    assert not any(line.startswith("Skipped") for line in lines)


def test_bgpctl_check_over_etcd_skips_other_nodes_creating_records(
    etcd: EtcdCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """``bgpctl ipam check`` on etcd judges only its own node's creating records."""
    for var in DATASTORE_VARS:
        monkeypatch.delenv(var, raising=False)
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    dead = proc.pid  # reaped: no process has it (PIDs are not reused this fast)
    store = etcd.store(PREFIX)
    try:
        for node in ("node1", "node2"):
            key, value = _creating(node, f"k-{node}", dead)
            store.put(key, value)
    finally:
        store.close()
    argv = ["--state-dir", str(tmp_path), "--datastore", "etcd",
            "--etcd-endpoints", etcd.endpoints_text, "--etcd-prefix", PREFIX]  # fmt: skip
    for node, other in (("node1", "node2"), ("node2", "node1")):
        assert bgpctl_main([*argv, "--node-name", node, "ipam", "check", "--show-problem-ips"]) == 0
        lines = capsys.readouterr().out.splitlines()
        gone = f"  endpoints/{node}/k-{node}.eth0 is creating, but its plugin (pid {dead}) is gone."
        assert gone in lines
        assert not any(f"endpoints/{other}/" in line for line in lines)
        assert "Skipped 1 endpoint records creating on other nodes" in " ".join(lines)
        assert lines[-1] == "Check complete; found 1 problems."
    # The directory datastore never spans machines: there, every record is judged.
    directory = tmp_path / "dir"
    from bgpd.datastore.directory import DirectoryStore  # noqa: PLC0415

    local = DirectoryStore(str(directory / "store"))
    try:
        for node in ("node1", "node2"):
            key, value = _creating(node, f"k-{node}", dead)
            local.put(key, value)
    finally:
        local.close()
    assert (
        bgpctl_main(["--state-dir", str(directory), "--node-name", "node1", "ipam", "check"]) == 0
    )
    assert capsys.readouterr().out.splitlines()[-1] == "Check complete; found 2 problems."
