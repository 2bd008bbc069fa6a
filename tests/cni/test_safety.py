"""Safety of the CNI plugin (the issue's "Safety" part): pods started at once,
ADD and DEL interleaved, plugins killed with SIGKILL, bad input and failures
half-way through ADD.

Everything runs as a container runtime runs it (``tests/cni/harness.py``): the
launcher executed inside a node namespace by ``ip netns exec``, which execs, so
the PID of each ``Popen`` below *is* the plugin's Python process, and a
SIGKILL sent to that PID hits the plugin wherever it is.  Concurrent runs are
plain ``Popen``s started back to back, their configuration already waiting in
a pipe.

After each scenario the whole state is read back and compared with what should
be there: endpoint records, IPAM (every handle's counts equal to what the
blocks hold for it), host veths and routes (``ip`` in the node namespace) and
the pods' interfaces (``ip`` in each pod namespace).  The fixture deletes every
namespace and kills (by PID) every plugin still running, whatever happens.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from bgpd.cni.dataplane import host_veth_name
from bgpd.datastore.directory import DirectoryStore
from bgpd.ipam.block import Block
from tests.cni.harness import NETWORK, CniNode, Result, ip
from tests.conftest import require_programs, require_root

POD_NAMESPACE = "safety"
#: The store's own files; anything else starting with a dot is a writer's temporary.
STORE_FILES = {".lock", ".revision", ".changes"}


# -- running plugins concurrently ----------------------------------------------------


class Lab:
    """A node, and every plugin process started on it (killed at teardown)."""

    def __init__(self, node: CniNode) -> None:
        self.node = node
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self, command: str, container: str = "", netns: str = "", *,
        config: dict[str, Any] | bytes | None = None, ifname: str = "eth0", args: str = "",
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:  # fmt: skip
        """The plugin started (not waited for) with its configuration on stdin."""
        node = self.node
        if env is None:
            env = node.env(command, container, netns, ifname, args)
        if config is None:
            config = node.config()
        data = config if isinstance(config, bytes) else json.dumps(config).encode()
        read_end, write_end = os.pipe()
        try:
            os.write(write_end, data)  # far below a pipe's buffer: never blocks
        finally:
            os.close(write_end)
        try:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", node.ns, str(node.bin / "bgpd-cni")],
                stdin=read_end, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
            )  # fmt: skip
        finally:
            os.close(read_end)
        self.procs.append(proc)
        return proc

    @staticmethod
    def finish(proc: subprocess.Popen[bytes], timeout: float = 300) -> Result:
        out, err = proc.communicate(timeout=timeout)
        return Result(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))

    def run_all(self, jobs: Sequence[dict[str, Any]]) -> list[Result]:
        """Start every job (keyword arguments of ``start``) at once; their results."""
        procs = [self.start(**job) for job in jobs]
        return [self.finish(p) for p in procs]

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired, ValueError):
                proc.communicate(timeout=30)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    require_root()
    require_programs("ip", package="iproute2")
    node = CniNode(tmp_path)
    here = Lab(node)
    try:
        yield here
    finally:
        try:
            here.kill_all()
        finally:
            node.teardown()


# -- reading the state back ---------------------------------------------------------------


def pod_args(pod: str) -> str:
    return f"K8S_POD_NAMESPACE={POD_NAMESPACE};K8S_POD_NAME={pod}"


def veth_of(pod: str) -> str:
    return host_veth_name(POD_NAMESPACE, pod, "")


def handle(container: str) -> str:
    return f"{NETWORK}.{container}"


def address_of(result: Result) -> str:
    assert result.json is not None, result
    (entry,) = result.json["ips"]
    address: str = entry["address"]
    assert address.endswith("/32"), result
    return address.removesuffix("/32")


def allocations(store: DirectoryStore) -> dict[str, str]:
    """Every allocated address and the handle holding it, from the blocks."""
    out: dict[str, str] = {}
    for record in store.list("ipam/blocks/"):
        block = Block(record.value)
        for ordinal, attrs in block.allocated():
            out[block.address(ordinal)] = attrs["handle_id"]
    return out


def handles(store: DirectoryStore) -> dict[str, dict[str, int]]:
    return {r.value["handleID"]: dict(r.value["block"]) for r in store.list("ipam/handles/")}


def assert_ipam_consistent(store: DirectoryStore) -> None:
    """Each handle counts exactly what the blocks hold for it, per block, and every
    allocation belongs to a handle that exists."""
    from_blocks: dict[str, Counter[str]] = {}
    for record in store.list("ipam/blocks/"):
        block = Block(record.value)
        assert sorted(block.unallocated + [o for o, _ in block.allocated()]) == list(
            range(block.size)
        ), f"block {block.cidr}: free and used ordinals do not partition it"
        for _, attrs in block.allocated():
            from_blocks.setdefault(attrs["handle_id"], Counter())[block.cidr] += 1
    assert {h: dict(c) for h, c in from_blocks.items()} == handles(store)


def assert_store_reads(store: DirectoryStore) -> None:
    """Every record parses (``list`` raises on a damaged one), the revision reads,
    and no record is newer than the revision handed out last."""
    records = store.list("")
    revision = store.revision()
    assert all(r.revision <= revision for r in records)


def store_temporaries(store: DirectoryStore) -> list[str]:
    found = []
    for folder, _, files in os.walk(store.root):
        found += [f"{folder}/{f}" for f in files if f.startswith(".") and f not in STORE_FILES]
    return found


def snapshot(store: DirectoryStore) -> dict[str, Any]:
    return {r.key: r.value for r in store.list("")}


def host_routes(node: CniNode) -> dict[str, str]:
    """Host routes through cali* interfaces: destination -> interface."""
    out = {}
    for line in node.ip("-4", "route", "show").splitlines():
        words = line.split()
        if "dev" in words and words[words.index("dev") + 1].startswith("cali"):
            out[words[0]] = words[words.index("dev") + 1]
    return out


def pod_links(netns: str) -> list[str]:
    out = ip(netns, "-o", "link", "show")
    return sorted(line.split(": ")[1].split("@")[0] for line in out.splitlines())


def pod_inet(netns: str, ifname: str = "eth0") -> list[str]:
    out = ip(netns, "-o", "-4", "addr", "show", "dev", ifname)
    return [line.split()[3] for line in out.splitlines()]


def gc_config(node: CniNode, valid: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return node.config(cniVersion="1.1.0", **{"cni.dev/valid-attachments": valid or []})


def assert_error(result: Result, code: int, *named: str) -> dict[str, Any]:
    """A CNI error: exit status 1, ``{cniVersion, code, msg}`` on stdout."""
    assert result.rc == 1, result
    answer = result.json
    assert answer is not None, result
    assert {"cniVersion", "code", "msg"} <= answer.keys(), answer
    assert answer["code"] == code, result
    for name in named:
        assert name in answer["msg"], answer
    return answer


def assert_attached(node: CniNode, container: str, netns: str, pod: str, address: str) -> None:
    """The attachment ADD made is all there (and CHECK agrees)."""
    record = node.store.get(f"endpoints/{node.name}/{container}.eth0")
    assert record is not None
    assert record.value["state"] == "ready"
    assert record.value["ips"] == [f"{address}/32"]
    assert pod_inet(netns) == [f"{address}/32"]
    assert host_routes(node).get(address) == veth_of(pod)
    assert allocations(node.store).get(address) == handle(container)


def assert_gone(node: CniNode, container: str, netns: str | None, pod: str) -> None:
    """Nothing of an attachment remains: record, host veth, pod interface, handle,
    allocation."""
    assert node.store.get(f"endpoints/{node.name}/{container}.eth0") is None
    assert veth_of(pod) not in node.host_veths()
    if netns is not None:
        assert pod_links(netns) == ["lo"]
    assert handle(container) not in handles(node.store)
    assert handle(container) not in allocations(node.store).values()


# -- 1. pods started at once ------------------------------------------------------------


def test_200_concurrent_adds_then_200_concurrent_dels(lab: Lab) -> None:
    node = lab.node
    node.pool("pool1", "10.70.0.0/16", blockSize=26)
    count = 200
    pods = [f"pod{i:03d}" for i in range(count)]
    containers = [f"c{i:03d}" for i in range(count)]
    netns = [node.pod_netns(p) for p in pods]

    started = time.monotonic()
    results = lab.run_all([
        {"command": "ADD", "container": c, "netns": n, "args": pod_args(p)}
        for c, n, p in zip(containers, netns, pods, strict=True)
    ])  # fmt: skip
    add_seconds = time.monotonic() - started
    print(f"\n{count} concurrent ADDs: {add_seconds:.1f} s")

    failed = [r for r in results if not r.ok]
    assert not failed, failed[:3]
    addresses = [address_of(r) for r in results]
    assert len(set(addresses)) == count
    for n, address in zip(netns, addresses, strict=True):
        assert pod_inet(n) == [f"{address}/32"], n

    store = node.store
    assert_store_reads(store)
    assert store_temporaries(store) == []
    records = store.list(f"endpoints/{node.name}/")
    assert len(records) == count
    assert {r.value["state"] for r in records} == {"ready"}
    assert_ipam_consistent(store)
    allocated = allocations(store)
    assert len(allocated) == count
    assert allocated == {a: handle(c) for a, c in zip(addresses, containers, strict=True)}
    assert host_routes(node) == {a: veth_of(p) for a, p in zip(addresses, pods, strict=True)}
    assert node.host_veths() == sorted(veth_of(p) for p in pods)

    started = time.monotonic()
    results = lab.run_all([
        {"command": "DEL", "container": c, "netns": n, "args": pod_args(p)}
        for c, n, p in zip(containers, netns, pods, strict=True)
    ])  # fmt: skip
    print(f"{count} concurrent DELs: {time.monotonic() - started:.1f} s")
    failed = [r for r in results if not r.ok]
    assert not failed, failed[:3]
    assert node.host_veths() == []
    assert host_routes(node) == {}
    assert node.records() == []
    assert handles(store) == {}
    assert allocations(store) == {}
    assert_ipam_consistent(store)
    assert store_temporaries(store) == []
    for n in netns:
        assert pod_links(n) == ["lo"]


# -- 2. ADD and DEL interleaved at random -------------------------------------------------


@pytest.mark.parametrize("seed", [1, 20250611])
def test_random_interleaving_of_add_and_del(lab: Lab, seed: int) -> None:
    rng = random.Random(seed)
    node = lab.node
    node.pool("pool1", "10.71.0.0/24", blockSize=28)  # several small blocks, reused
    live: dict[str, tuple[str, str, str]] = {}  # container -> (netns, pod, address)
    gone: dict[str, tuple[str, str]] = {}  # container -> (netns, pod)
    operations = 0
    serial = 0
    while operations < 100:
        jobs: list[tuple[str, str, str, str]] = []  # (command, container, netns, pod)
        deleting = set()
        for _ in range(rng.randint(5, 20)):
            candidates = sorted(set(live) - deleting)
            if candidates and rng.random() < 0.45:
                container = rng.choice(candidates)
                deleting.add(container)
                netns, pod, _ = live[container]
                jobs.append(("DEL", container, netns, pod))
            else:
                serial += 1
                pod = f"pod{serial:03d}"
                jobs.append(("ADD", f"c{seed}x{serial:03d}", node.pod_netns(pod), pod))
        rng.shuffle(jobs)
        procs = []
        for command, container, netns, pod in jobs:
            procs.append(lab.start(command, container, netns, args=pod_args(pod)))
            time.sleep(rng.random() * 0.004)
        for (command, container, netns, pod), proc in zip(jobs, procs, strict=True):
            result = lab.finish(proc)
            assert result.ok, (command, container, result)
            if command == "ADD":
                live[container] = (netns, pod, address_of(result))
            else:
                del live[container]
                gone[container] = (netns, pod)
        operations += len(jobs)

    store = node.store
    assert_store_reads(store)
    assert_ipam_consistent(store)
    addresses = [a for _, _, a in live.values()]
    assert len(set(addresses)) == len(addresses)
    assert node.records() == sorted(f"endpoints/{node.name}/{c}.eth0" for c in live)
    assert {r.value["state"] for r in store.list(f"endpoints/{node.name}/")} <= {"ready"}
    assert node.host_veths() == sorted(veth_of(p) for _, p, _ in live.values())
    assert sorted(handles(store)) == sorted(handle(c) for c in live)
    assert allocations(store) == {a: handle(c) for c, (_, _, a) in live.items()}
    assert host_routes(node) == {a: veth_of(p) for _, p, a in live.values()}
    for container, (netns, pod, address) in live.items():
        assert_attached(node, container, netns, pod, address)
    for container, (netns, pod) in gone.items():
        assert_gone(node, container, netns, pod)
    print(f"\nseed {seed}: {operations} operations, {len(live)} pods left")


# -- 3. SIGKILL at any point, then GC ------------------------------------------------------


def _describe(node: CniNode, container: str, netns: str, pod: str) -> tuple[str, ...]:
    """What a killed plugin left: record state, host veth, pod interface, handle,
    allocation."""
    record = node.store.get(f"endpoints/{node.name}/{container}.eth0")
    return (
        "record:" + ("-" if record is None else record.value["state"]),
        "veth" if veth_of(pod) in node.host_veths() else "-",
        "eth0" if "eth0" in pod_links(netns) else "-",
        "handle" if handle(container) in handles(node.store) else "-",
        "address" if handle(container) in allocations(node.store).values() else "-",
    )


def _wait_for(path: Path, exists: bool, proc: subprocess.Popen[bytes]) -> None:
    """Until ``path`` exists (or is gone), or ``proc`` has exited; busy, since a
    plugin run takes ~0.1 s."""
    deadline = time.monotonic() + 10
    while path.exists() != exists and proc.poll() is None and time.monotonic() < deadline:
        pass


@pytest.mark.parametrize("command", ["ADD", "DEL"])
def test_sigkill_at_any_point_then_gc_frees_everything(lab: Lab, command: str) -> None:
    """Kill the plugin (SIGKILL, its own PID) at points spread over its run: a
    third of the kills timed from its start, the rest of an ADD's timed from the
    moment its ``creating`` record appears (where the work is), so that every
    step gets hit.  After each, the state directory reads and GC (no valid
    attachments) leaves nothing of the pod.  A DEL is killed as often as not
    from the moment its IPAM handle is gone (the last steps)."""
    node = lab.node
    node.pool("pool1", "10.72.0.0/24", blockSize=29)  # new blocks get claimed as we go

    # How long one run takes, to spread the kills over it.
    calibration = node.pod_netns("calibration")
    durations = {}
    for op in ("ADD", "DEL"):
        started = time.monotonic()
        assert node.cni(op, "calibration", calibration, args=pod_args("calibration")).ok
        durations[op] = time.monotonic() - started
    duration = durations[command]

    kills = 45
    outcomes: Counter[tuple[str, ...]] = Counter()
    temporaries: set[str] = set()
    for i in range(kills):
        pod = f"kill{i:02d}"
        container = f"k{command}{i:02d}"
        netns = node.pod_netns(pod)
        if command == "DEL":
            assert node.cni("ADD", container, netns, args=pod_args(pod)).ok
        store = node.state / "store"
        proc = lab.start(command, container, netns, args=pod_args(pod))
        if command == "ADD" and i % 3:
            _wait_for(store / f"endpoints/{node.name}/{container}.eth0.json", True, proc)
            time.sleep(duration * 0.6 * (i // 3) / (kills // 3))
        elif command == "DEL" and i % 2:
            _wait_for(store / f"ipam/handles/{handle(container)}.json", False, proc)
            time.sleep(0.02 * (i // 2) / (kills // 2))
        else:
            time.sleep(duration * 1.2 * i / (kills - 1))
        # The plugin itself (``ip netns exec`` execs); not reaped yet unless poll()
        # saw it exit, so its PID cannot have been reused.
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        result = lab.finish(proc)
        assert result.rc in (0, -signal.SIGKILL), result

        # The state directory still reads, whatever point the kill hit.
        assert_store_reads(node.store)
        temporaries.update(store_temporaries(node.store))
        left = _describe(node, container, netns, pod)
        outcomes[("finished" if result.rc == 0 else "killed", *left)] += 1

        gc = node.cni("GC", "", "", ifname="", config=gc_config(node))
        assert gc.ok and gc.stdout == "", gc
        assert_gone(node, container, netns, pod)
        assert node.records() == []
        assert node.host_veths() == []
        assert host_routes(node) == {}
        assert handles(node.store) == {}
        assert allocations(node.store) == {}
        assert_ipam_consistent(node.store)

    # After all that, the node still serves pods.
    netns = node.pod_netns("after")
    result = node.cni("ADD", "after", netns, args=pod_args("after"))
    assert result.ok, result
    assert_attached(node, "after", netns, "after", address_of(result))

    print(
        f"\n{command}: one run {duration * 1000:.0f} ms; {kills} kills;"
        f" writer temporaries left: {sorted(Path(t).name for t in temporaries)}"
    )
    for outcome, n in sorted(outcomes.items()):
        print(f"  {n:2d} x {' '.join(outcome)}")
    # The kills must have landed inside the work, not only before or after it.
    assert any(o[0] == "killed" and o[1] != "record:-" for o in outcomes), outcomes


# -- 4. bad input: the CNI error naming the field, and nothing changed --------------------


def test_bad_input_changes_nothing(lab: Lab, tmp_path: Path) -> None:
    node = lab.node
    node.pool("pool1", "10.73.0.0/24", blockSize=26)
    node.pool("off", "10.173.0.0/24", disabled=True)
    node.pool("pool6", "fd00:73::/120")
    # One pod already attached, which every failure below must leave alone.
    kept_ns = node.pod_netns("kept")
    kept = node.cni("ADD", "kept", kept_ns, args=pod_args("kept"))
    assert kept.ok, kept
    kept_address = address_of(kept)
    netns = node.pod_netns("victim")
    args = pod_args("victim")
    good = node.config()
    not_a_netns = tmp_path / "not-a-netns"
    not_a_netns.write_text("")

    def without(*names: str) -> dict[str, Any]:
        return {k: v for k, v in good.items() if k not in names}

    def env(drop: str = "", **changes: str) -> dict[str, str]:
        out = node.env("ADD", "victim", netns, args=args)
        out.pop(drop, None)
        return {**out, **changes}

    def ipam(**section: Any) -> dict[str, Any]:
        return node.config(ipam=section)

    # (what, env, config, code, names in msg, fails before writing anything)
    cases: list[tuple[str, dict[str, str], dict[str, Any] | bytes, int, tuple[str, ...], bool]]
    cases = [
        ("malformed JSON", env(), b'{"cniVersion": "1.0.0", "name": ', 6, ("JSON",), True),
        ("empty configuration", env(), b"", 6, ("JSON",), True),
        ("configuration not an object", env(), b"[1]", 6, ("JSON object",), True),
        ("no CNI_COMMAND", env("CNI_COMMAND"), good, 4, ("CNI_COMMAND",), True),
        ("unknown CNI_COMMAND", env(CNI_COMMAND="FROB"), good, 4, ("CNI_COMMAND",), True),
        ("no CNI_CONTAINERID", env("CNI_CONTAINERID"), good, 4, ("CNI_CONTAINERID",), True),
        ("bad CNI_CONTAINERID", env(CNI_CONTAINERID="a/b"), good, 4, ("CNI_CONTAINERID",), True),
        ("no CNI_IFNAME", env("CNI_IFNAME"), good, 4, ("CNI_IFNAME",), True),
        ("CNI_IFNAME too long", env(CNI_IFNAME="eth0123456789abc"), good, 4, ("CNI_IFNAME",),
         True),
        ("CNI_IFNAME with a slash", env(CNI_IFNAME="eth/0"), good, 4, ("CNI_IFNAME",), True),
        ("no CNI_NETNS", env("CNI_NETNS"), good, 4, ("CNI_NETNS",), True),
        ("no CNI_PATH", env("CNI_PATH"), good, 4, ("CNI_PATH",), True),
        ("malformed CNI_ARGS", env(CNI_ARGS="garbage"), good, 4, ("CNI_ARGS",), True),
        ("no cniVersion", env(), without("cniVersion"), 7, ("cniVersion",), True),
        ("unsupported cniVersion", env(), node.config(cniVersion="0.2.0"), 1,
         ("cniVersion", "0.2.0"), True),
        ("cniVersion not a version", env(), node.config(cniVersion="one"), 1,
         ("cniVersion",), True),
        ("no ipam", env(), without("ipam"), 7, ("ipam",), True),
        ("ipam without a type", env(), {**good, "ipam": {}}, 7, ("ipam.type",), True),
        ("bad network name", env(), node.config(name="-bad name"), 7, ("name",), True),
        ("MTU too large", env(), node.config(mtu=70000), 7, ("mtu",), True),
        ("MTU not a number", env(), node.config(mtu="1500"), 7, ("mtu",), True),
        ("bad assign_ipv4", env(), ipam(assign_ipv4="maybe"), 7, ("ipam.assign_ipv4",), True),
        ("no family assigned", env(), ipam(assign_ipv4=False), 7, ("assign_ipv4",), True),
        ("unknown datastore", env(), node.config(datastore="etcd"), 7, ("datastore",), True),
        ("unknown pool", env(), ipam(ipv4_pools=["nope"]), 7, ("ipam.ipv4_pools", "nope"),
         True),
        ("disabled pool", env(), ipam(ipv4_pools=["off"]), 7, ("ipam.ipv4_pools", "disabled"),
         True),
        ("IPv6 pool for IPv4", env(), ipam(ipv4_pools=["pool6"]), 7, ("ipam.ipv4_pools",),
         True),
        ("unknown IPv6 pool", env(), ipam(assign_ipv6=True, ipv6_pools=["nope6"]), 7,
         ("ipam.ipv6_pools", "nope6"), True),
        ("pools not a list", env(), ipam(ipv4_pools="pool1"), 7, ("ipam.ipv4_pools",), True),
        ("unknown IPAM plugin", env(), ipam(type="no-such-ipam"), 7, ("ipam.type",), True),
        ("netns path missing", env(CNI_NETNS="/var/run/netns/no-such-pod"), good, 8,
         ("CNI_NETNS",), True),
        ("netns not a namespace", env(CNI_NETNS=str(not_a_netns)), good, 8, ("CNI_NETNS",),
         False),
    ]  # fmt: skip

    before = snapshot(node.store)
    for what, environment, config, code, names, early in cases:
        revision = node.store.revision()
        result = node.run("bgpd-cni", environment, config)
        try:
            assert_error(result, code, *names)
        except AssertionError as exc:
            raise AssertionError(f"{what}: {exc}") from None
        if early:
            assert node.store.revision() == revision, what
        after = snapshot(node.store)
        # A failure after the record was written may have rewritten blocks (their
        # free list, released addresses going to its end), nothing else.
        assert after.keys() == before.keys(), what
        if early:
            assert after == before, what
        assert {k: v for k, v in after.items() if not k.startswith("ipam/blocks/")} == {
            k: v for k, v in before.items() if not k.startswith("ipam/blocks/")
        }, what
        assert allocations(node.store) == {kept_address: handle("kept")}, what
        assert node.host_veths() == [veth_of("kept")], what
        assert pod_links(netns) == ["lo"], what
        assert store_temporaries(node.store) == [], what

    assert_attached(node, "kept", kept_ns, "kept", kept_address)
    check = node.cni("CHECK", "kept", kept_ns, args=pod_args("kept"),
                     config=node.config(prevResult=kept.json))  # fmt: skip
    assert check.ok, check
    # And the victim, with its configuration fixed, attaches.
    result = node.cni("ADD", "victim", netns, args=args)
    assert result.ok, result
    assert_attached(node, "victim", netns, "victim", address_of(result))


# -- 5. failures half-way through ADD --------------------------------------------------------


def test_pool_exhausted_leaves_nothing(lab: Lab) -> None:
    node = lab.node
    node.pool("tiny", "10.74.0.0/30", blockSize=30)
    config = node.config(ipam={"ipv4_pools": ["tiny"]})
    attached = {}
    for i in range(4):
        pod = f"full{i}"
        netns = node.pod_netns(pod)
        result = node.cni("ADD", pod, netns, args=pod_args(pod), config=config)
        assert result.ok, result
        attached[pod] = (netns, address_of(result))
    assert sorted(a for _, a in attached.values()) == [f"10.74.0.{i}" for i in range(4)]

    netns = node.pod_netns("onetoomany")
    result = node.cni("ADD", "onetoomany", netns, args=pod_args("onetoomany"), config=config)
    assert_error(result, 100, "no IPv4 addresses available")
    assert_gone(node, "onetoomany", netns, "onetoomany")
    for pod, (pod_ns, address) in attached.items():
        assert_attached(node, pod, pod_ns, pod, address)
    assert_ipam_consistent(node.store)
    assert len(node.records()) == 4

    # One pod goes; the address it freed serves the one that failed.
    assert node.cni("DEL", "full2", attached["full2"][0], args=pod_args("full2")).ok
    result = node.cni("ADD", "onetoomany", netns, args=pod_args("onetoomany"), config=config)
    assert result.ok, result
    assert address_of(result) == attached["full2"][1]
    assert_attached(node, "onetoomany", netns, "onetoomany", address_of(result))


def test_interface_already_in_the_pod_is_refused_and_kept(lab: Lab) -> None:
    node = lab.node
    node.pool("pool1", "10.75.0.0/24", blockSize=26)
    netns = node.pod_netns("occupied")
    ip(netns, "link", "add", "eth0", "type", "veth", "peer", "name", "x")
    before = ip(netns, "-o", "link", "show", "eth0")
    revision = node.store.revision()

    result = node.cni("ADD", "occupied", netns, args=pod_args("occupied"))
    assert_error(result, 101, "eth0")
    assert node.records() == []
    assert node.host_veths() == []
    assert handles(node.store) == {}
    assert allocations(node.store) == {}
    assert host_routes(node) == {}
    assert node.store.revision() > revision  # it did get half-way
    assert ip(netns, "-o", "link", "show", "eth0") == before
    assert pod_links(netns) == ["eth0", "lo", "x"]
    assert pod_inet(netns) == []


def test_add_twice_is_refused_and_the_first_attachment_kept(lab: Lab) -> None:
    node = lab.node
    node.pool("pool1", "10.76.0.0/24", blockSize=26)
    netns = node.pod_netns("twice")
    first = node.cni("ADD", "twice", netns, args=pod_args("twice"))
    assert first.ok, first
    address = address_of(first)
    key = f"endpoints/{node.name}/twice.eth0"
    record = node.store.get(key)
    assert record is not None

    second = node.cni("ADD", "twice", netns, args=pod_args("twice"))
    assert_error(second, 101, "eth0")
    again = node.store.get(key)
    assert again is not None and (again.value, again.revision) == (record.value, record.revision)
    assert_attached(node, "twice", netns, "twice", address)
    (counts,) = handles(node.store).values()
    assert list(handles(node.store)) == [handle("twice")] and sum(counts.values()) == 1
    check = node.cni("CHECK", "twice", netns, args=pod_args("twice"),
                     config=node.config(prevResult=first.json))  # fmt: skip
    assert check.ok, check


def test_host_route_taken_by_another_interface_undoes_the_add(lab: Lab) -> None:
    """The last step of ADD fails: every earlier one is undone."""
    node = lab.node
    node.pool("single", "10.77.0.0/30", blockSize=30)  # its first address goes first
    node.ip("link", "add", "other0", "type", "veth", "peer", "name", "other1")
    node.ip("link", "set", "other0", "up")
    node.ip("link", "set", "other1", "up")
    node.ip("route", "add", "10.77.0.0/32", "dev", "other0")
    netns = node.pod_netns("clash")

    result = node.cni("ADD", "clash", netns, args=pod_args("clash"),
                      config=node.config(ipam={"ipv4_pools": ["single"]}))  # fmt: skip
    assert_error(result, 103, "10.77.0.0", "another interface")
    assert_gone(node, "clash", netns, "clash")
    assert node.records() == []
    assert allocations(node.store) == {}
    assert "10.77.0.0 dev other0" in node.ip("-4", "route", "show")


def test_ipv6_below_its_minimum_mtu_undoes_the_add(lab: Lab) -> None:
    """An MTU the kernel will not run IPv6 on (below 1280): refused with the field
    named, after IPAM, and undone."""
    node = lab.node
    node.pool("pool6", "fd00:78::/120", blockSize=122)
    netns = node.pod_netns("small")
    config = node.config(mtu=1200, ipam={"assign_ipv4": False, "assign_ipv6": True})
    revision = node.store.revision()
    result = node.cni("ADD", "small", netns, args=pod_args("small"), config=config)
    assert_error(result, 7, "mtu", "1280")
    assert node.store.revision() > revision  # refused half-way, after IPAM
    assert_gone(node, "small", netns, "small")
    assert node.records() == []
    assert allocations(node.store) == {}
    # The same with an MTU IPv6 runs on.
    config = node.config(mtu=1280, ipam={"assign_ipv4": False, "assign_ipv6": True})
    result = node.cni("ADD", "small", netns, args=pod_args("small"), config=config)
    assert result.ok, result


# -- 6. DEL is idempotent ---------------------------------------------------------------------


def test_del_twice_and_del_of_unknown_container(lab: Lab) -> None:
    node = lab.node
    node.pool("pool1", "10.79.0.0/24", blockSize=26)
    netns = node.pod_netns("p")
    assert node.cni("ADD", "c", netns, args=pod_args("p")).ok
    for _ in range(2):
        result = node.cni("DEL", "c", netns, args=pod_args("p"))
        assert result.ok and result.stdout == "", result
        assert_gone(node, "c", netns, "p")
    assert host_routes(node) == {}

    revision = node.store.revision()
    before = snapshot(node.store)
    for netns_given in (netns, ""):
        result = node.cni("DEL", "never-added", netns_given, args=pod_args("never"))
        assert result.ok and result.stdout == "", result
    assert node.store.revision() == revision
    assert snapshot(node.store) == before


def test_del_without_cni_netns_removes_the_attachment(lab: Lab) -> None:
    node = lab.node
    node.pool("pool1", "10.80.0.0/24", blockSize=26)
    netns = node.pod_netns("p")
    assert node.cni("ADD", "c", netns, args=pod_args("p")).ok
    result = node.cni("DEL", "c", "", args=pod_args("p"))  # CNI_NETNS is optional for DEL
    assert result.ok, result
    assert_gone(node, "c", netns, "p")
    assert host_routes(node) == {}


def test_del_after_the_pod_netns_is_gone(lab: Lab) -> None:
    node = lab.node
    node.pool("pool1", "10.81.0.0/24", blockSize=26)
    netns = node.pod_netns("p")
    added = node.cni("ADD", "c", netns, args=pod_args("p"))
    assert added.ok, added
    subprocess.run(["ip", "netns", "del", netns], check=True)

    for _ in range(2):
        result = node.cni("DEL", "c", netns, args=pod_args("p"))
        assert result.ok and result.stdout == "", result
        assert_gone(node, "c", None, "p")
        assert node.records() == []
        assert allocations(node.store) == {}
        assert host_routes(node) == {}
    # The address is free again: the next pod gets a working attachment.
    other = node.pod_netns("q")
    result = node.cni("ADD", "d", other, args=pod_args("q"))
    assert result.ok, result
    assert_attached(node, "d", other, "q", address_of(result))


# -- 7. a pod's new sandbox and its old one's leftovers --------------------------------------


@pytest.mark.parametrize("cleanup", ["DEL", "DEL without CNI_NETNS", "GC"])
def test_old_sandbox_cleanup_spares_the_new_sandbox(lab: Lab, cleanup: str) -> None:
    """A pod's sandboxes share the host veth name (SHA-1 of namespace.pod).  When
    the new sandbox is attached before the old one was cleaned up (its DEL failed
    or its ADD was killed, and the runtime moved on), ADD replaces the stale host
    end as Calico does; the old sandbox's late DEL or GC must then remove only
    what is its own, not the new sandbox's host end."""
    node = lab.node
    node.pool("pool1", "10.82.0.0/24", blockSize=26)
    old_ns, new_ns = node.pod_netns("old"), node.pod_netns("new")
    old = node.cni("ADD", "old", old_ns, args=pod_args("web"))
    assert old.ok, old
    new = node.cni("ADD", "new", new_ns, args=pod_args("web"))
    assert new.ok, new
    address = address_of(new)

    if cleanup == "GC":
        valid = [{"containerID": "new", "ifname": "eth0"}]
        result = node.cni("GC", "", "", ifname="", config=gc_config(node, valid))
    else:
        netns = "" if cleanup.endswith("CNI_NETNS") else old_ns
        result = node.cni("DEL", "old", netns, args=pod_args("web"))
    assert result.ok, result
    assert node.store.get(f"endpoints/{node.name}/old.eth0") is None
    assert handle("old") not in handles(node.store)
    assert pod_links(old_ns) == ["lo"]
    assert_attached(node, "new", new_ns, "web", address)
    check = node.cni("CHECK", "new", new_ns, args=pod_args("web"),
                     config=node.config(prevResult=new.json))  # fmt: skip
    assert check.ok, check
    assert node.host_veths() == [veth_of("web")]
