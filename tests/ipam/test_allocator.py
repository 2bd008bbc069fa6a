"""Calico IPAM over the directory datastore (CALICO.md §4): claiming blocks, pool
choice, block limits, borrowing, nodes and processes allocating at once, release,
claims left half-done by a killed process, what the speaker announces, and
all-or-nothing assignment."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import pytest

from bgpd.datastore.directory import DirectoryStore
from bgpd.ipam.allocator import (
    AFFINITIES,
    BLOCKS,
    CONFIG,
    DEFAULT_CONFIG,
    HANDLES,
    NAMESPACES,
    NODES,
    Assignment,
    BlockLimitError,
    ExhaustedError,
    Ipam,
    PoolError,
    announcements,
)
from bgpd.ipam.block import Block
from bgpd.ipam.cidr import contains, key_of, parse_cidr, parse_ip
from bgpd.ipam.pools import POOLS

FORK = multiprocessing.get_context("fork")
WAIT = 60.0  # seconds: a bound on waits for other processes, never a delay
POD = {"namespace": "default", "pod": "web-0"}


# -- the stored world ----------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> DirectoryStore:
    store = DirectoryStore(str(tmp_path / "state"))
    add_node(store, "n1", zone="a")
    add_node(store, "n2", zone="a")
    return store


@pytest.fixture
def ipam(store: DirectoryStore, tmp_path: Path) -> Callable[[str], Ipam]:
    """An Ipam for a node, with that node's own lock file."""
    return lambda node: Ipam(store, node, str(tmp_path / "locks" / node))


def add_pool(store: DirectoryStore, name: str, cidr: str, **spec: Any) -> None:
    store.put(POOLS + name, {
        "apiVersion": "projectcalico.org/v3", "kind": "IPPool",
        "metadata": {"name": name}, "spec": {"cidr": cidr, **spec},
    })


def add_node(store: DirectoryStore, name: str, **labels: str) -> None:
    store.put(NODES + name, {"apiVersion": "projectcalico.org/v3", "kind": "Node",
                             "metadata": {"name": name, "labels": labels}, "spec": {}})


def set_config(store: DirectoryStore, **config: Any) -> None:
    store.put(CONFIG, {**DEFAULT_CONFIG, **config})


def blocks(store: DirectoryStore) -> dict[str, Block]:
    return {Block(r.value).cidr: Block(r.value) for r in store.list(BLOCKS)}


def affinities(store: DirectoryStore, node: str) -> dict[str, str]:
    return {r.value["cidr"]: r.value["state"] for r in store.list(f"{AFFINITIES}{node}/")}


def handle_counts(store: DirectoryStore, handle: str) -> dict[str, int] | None:
    record = store.get(HANDLES + handle)
    return None if record is None else dict(record.value["block"])


def block_of(store: DirectoryStore, address: str) -> Block:
    family, value = parse_ip(address)
    for block in blocks(store).values():
        if block.family == family and block.ordinal(value) is not None:
            return block
    raise AssertionError(f"{address} is in no block")


def attributes_at(store: DirectoryStore, address: str) -> dict[str, Any] | None:
    block = block_of(store, address)
    ordinal = block.ordinal(parse_ip(address)[1])
    assert ordinal is not None
    return block.attributes_of(ordinal)


def holder(store: DirectoryStore, address: str) -> str | None:
    attributes = attributes_at(store, address)
    return None if attributes is None else attributes["handle_id"]


def check_consistent(store: DirectoryStore) -> dict[str, str]:
    """Cross-check blocks, handles and affinities; every allocated address and
    its handle."""
    held: dict[str, str] = {}
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for record in store.list(BLOCKS):
        block = Block(record.value)
        assert record.key == BLOCKS + key_of(block.cidr)
        for ordinal, attributes in block.allocated():
            held[block.address(ordinal)] = attributes["handle_id"]
            counts[attributes["handle_id"]][block.cidr] += 1
        if block.affinity is not None:
            node = block.affinity.removeprefix("host:")
            affinity = store.get(f"{AFFINITIES}{node}/{key_of(block.cidr)}")
            assert affinity is not None and affinity.value["state"] == "confirmed", block.cidr
    stored = {r.value["handleID"]: r.value["block"] for r in store.list(HANDLES)}
    assert stored == {h: dict(c) for h, c in counts.items()}
    claimed: dict[str, str] = {}
    for record in store.list(AFFINITIES):
        node, segment = record.key.removeprefix(AFFINITIES).split("/")
        assert segment not in claimed, f"{segment} claimed by {claimed[segment]} and {node}"
        claimed[segment] = node
        assert record.value["state"] == "confirmed"
        block_record = store.get(BLOCKS + segment)
        assert block_record is not None and block_record.value["affinity"] == f"host:{node}"
    return held


def addresses(assignments: list[Assignment]) -> list[str]:
    return [a.address for a in assignments]


def within(address: str, cidr: str) -> bool:
    return contains(parse_cidr(cidr), *parse_ip(address))


# -- claiming and using blocks ---------------------------------------------------------


def test_the_first_allocation_claims_a_block_and_later_ones_use_it(
    store: DirectoryStore, ipam: Callable[[str], Ipam],
) -> None:
    add_pool(store, "p4", "10.65.0.0/24", blockSize=28)
    n1 = ipam("n1")
    [first] = n1.auto_assign("h0", POD, num4=1, num6=0)
    assert (first.family, first.length, first.pool) == (4, 28, "p4")
    cidr = block_of(store, first.address).cidr
    assert first.address == cidr.partition("/")[0], "ordinal 0 first, as Calico does"
    assert affinities(store, "n1") == {cidr: "confirmed"}
    assert blocks(store)[cidr].affinity == "host:n1"
    assert handle_counts(store, "h0") == {cidr: 1}
    attributes = blocks(store)[cidr].attributes_of(0)
    assert attributes is not None and attributes["handle_id"] == "h0"
    assert attributes["secondary"]["node"] == "n1"
    assert {k: attributes["secondary"][k] for k in POD} == POD
    assert "timestamp" in attributes["secondary"]
    assert store.get(CONFIG) is not None, "IPAMConfig is created when missing"

    rest = [n1.auto_assign(f"h{i}", POD, num4=1, num6=0)[0] for i in range(1, 16)]
    assert all(within(a.address, cidr) for a in rest)
    assert len(set(addresses(rest)) | {first.address}) == 16
    assert affinities(store, "n1") == {cidr: "confirmed"}
    # The block is full: the next one claims a second block.
    [seventeenth] = n1.auto_assign("h16", POD, num4=1, num6=0)
    second = block_of(store, seventeenth.address).cidr
    assert second != cidr
    assert affinities(store, "n1") == {cidr: "confirmed", second: "confirmed"}
    assert len(check_consistent(store)) == 17


def test_one_request_may_fill_several_blocks(
    store: DirectoryStore, ipam: Callable[[str], Ipam],
) -> None:
    add_pool(store, "p4", "10.65.0.0/24", blockSize=30)
    got = ipam("n1").auto_assign("many", POD, num4=10, num6=0)
    assert len(set(addresses(got))) == 10
    assert sorted(handle_counts(store, "many").values()) == [2, 4, 4]  # type: ignore[union-attr]
    assert len(affinities(store, "n1")) == 3
    check_consistent(store)


def test_ipv4_and_ipv6_in_one_request(
    store: DirectoryStore, ipam: Callable[[str], Ipam],
) -> None:
    add_pool(store, "p4", "10.65.0.0/24", blockSize=28)
    add_pool(store, "p6", "fd00:10::/120", blockSize=122)
    got = ipam("n1").auto_assign("dual", POD, num4=1, num6=2)
    assert [(a.family, a.length, a.pool) for a in got] == [
        (4, 28, "p4"), (6, 122, "p6"), (6, 122, "p6")]
    assert within(got[1].address, "fd00:10::/120") and got[1].address != got[2].address
    counts = handle_counts(store, "dual")
    assert counts is not None and sorted(counts.values()) == [1, 2]
    assert {parse_cidr(c)[0] for c in affinities(store, "n1")} == {4, 6}
    check_consistent(store)


def test_config_is_read_with_defaults(store: DirectoryStore, ipam: Callable[[str], Ipam]) -> None:
    assert ipam("n1").config() == DEFAULT_CONFIG
    record = store.get(CONFIG)
    assert record is not None and record.value == DEFAULT_CONFIG
    store.put(CONFIG, {"strictAffinity": True})
    assert ipam("n1").config() == {**DEFAULT_CONFIG, "strictAffinity": True}


# -- which pools ------------------------------------------------------------------------


@pytest.fixture
def pools(store: DirectoryStore) -> None:
    add_pool(store, "p4", "10.65.0.0/24", blockSize=28)
    add_pool(store, "other4", "10.66.0.0/24", blockSize=28)
    add_pool(store, "off", "10.67.0.0/24", disabled=True)
    add_pool(store, "v6", "fd00:10::/120", blockSize=122)
    add_pool(store, "elsewhere", "10.68.0.0/24", nodeSelector="zone == 'b'")
    add_pool(store, "manual", "10.69.0.0/24", blockSize=28, assignmentMode="Manual")
    add_pool(store, "tunnel", "10.70.0.0/24", allowedUses=["Tunnel"])
    add_pool(store, "team", "10.71.0.0/24", blockSize=28, namespaceSelector="team == 'x'")
    store.put(NAMESPACES + "ns-x", {"kind": "Namespace",
                                    "metadata": {"name": "ns-x", "labels": {"team": "x"}}})


@pytest.mark.usefixtures("pools")
@pytest.mark.parametrize("asked, expected", [
    (["other4"], "other4"),
    (["10.66.0.0/24"], "other4"),  # by CIDR too
    (["manual"], "manual"),  # a Manual pool serves when named
    (["team"], "team"),
])
def test_pools_chosen_by_name(
    ipam: Callable[[str], Ipam], asked: list[str], expected: str,
) -> None:
    [got] = ipam("n1").auto_assign("h", POD, num4=1, num6=0, pools4=asked)
    assert got.pool == expected


@pytest.mark.usefixtures("pools")
@pytest.mark.parametrize("family, name, why", [
    (4, "nope", "does not exist"),
    (4, "off", "is disabled"),
    (4, "v6", "is not IPv4"),
    (6, "p4", "is not IPv6"),
    (4, "elsewhere", "does not select node 'n1'"),
    (4, "tunnel", "does not allow Workload"),
])
def test_a_pool_named_that_cannot_serve_is_an_error(
    store: DirectoryStore, ipam: Callable[[str], Ipam], family: int, name: str, why: str,
) -> None:
    v4 = family == 4
    with pytest.raises(PoolError, match=why) as caught:
        ipam("n1").auto_assign("h", POD, num4=int(v4), num6=int(not v4),
                               pools4=[name] if v4 else None, pools6=None if v4 else [name])
    assert repr(name) in str(caught.value)
    assert handle_counts(store, "h") is None and blocks(store) == {}


@pytest.mark.usefixtures("pools")
def test_automatic_choice_filters_pools(store: DirectoryStore, ipam: Callable[[str], Ipam]) -> None:
    n1 = ipam("n1")
    assert [p.name for p in n1.eligible_pools(4, None)] == ["other4", "p4"]
    assert [p.name for p in n1.eligible_pools(4, None, "ns-x")] == ["other4", "p4", "team"]
    assert [p.name for p in n1.eligible_pools(4, None, "ns-unknown")] == ["other4", "p4"]
    assert [p.name for p in n1.eligible_pools(6, None)] == ["v6"]
    add_node(store, "n1", zone="b")
    assert [p.name for p in n1.eligible_pools(4, None)] == ["elsewhere", "other4", "p4"]


def test_only_a_pool_that_fits_serves_automatically(
    store: DirectoryStore, ipam: Callable[[str], Ipam],
) -> None:
    add_pool(store, "off", "10.67.0.0/24", disabled=True)
    add_pool(store, "elsewhere", "10.68.0.0/24", nodeSelector="zone == 'b'")
    add_pool(store, "manual", "10.69.0.0/24", assignmentMode="Manual")
    add_pool(store, "tunnel", "10.70.0.0/24", allowedUses=["Tunnel"])
    add_pool(store, "team", "10.71.0.0/24", namespaceSelector="team == 'x'")
    store.put(NAMESPACES + "ns-x", {"metadata": {"name": "ns-x", "labels": {"team": "x"}}})
    n1 = ipam("n1")
    with pytest.raises(PoolError, match="no IPv4 pool is usable on node 'n1'"):
        n1.auto_assign("h", POD, num4=1, num6=0)
    assert [a.pool for a in n1.auto_assign("h", POD, num4=3, num6=0, namespace="ns-x")] == [
        "team"] * 3
    add_node(store, "n2", zone="b")
    assert [a.pool for a in ipam("n2").auto_assign("h2", POD, num4=1, num6=0)] == ["elsewhere"]
    check_consistent(store)


# -- block limits -----------------------------------------------------------------------


def test_max_blocks_per_host_with_strict_affinity(
    store: DirectoryStore, ipam: Callable[[str], Ipam],
) -> None:
    add_pool(store, "p4", "10.65.0.0/24", blockSize=30)
    set_config(store, strictAffinity=True, maxBlocksPerHost=2)
    n1 = ipam("n1")
    with pytest.raises(BlockLimitError) as caught:
        n1.auto_assign("big", POD, num4=9, num6=0)
    assert str(caught.value) == "cannot allocate new block due to per host block limit"
    assert handle_counts(store, "big") is None, "nothing kept of a request that failed"
    assert check_consistent(store) == {}
    assert len(n1.auto_assign("fits", POD, num4=8, num6=0)) == 8
    with pytest.raises(BlockLimitError):
        n1.auto_assign("one-more", POD, num4=1, num6=0)
    assert len(affinities(store, "n1")) == 2
    assert len(check_consistent(store)) == 8


def test_safeguard_of_twenty_blocks(store: DirectoryStore, ipam: Callable[[str], Ipam]) -> None:
    add_pool(store, "p4", "10.65.0.0/24", blockSize=30)
    set_config(store, strictAffinity=True)
    n1 = ipam("n1")
    assert len(n1.auto_assign("twenty", POD, num4=80, num6=0)) == 80
    assert len(affinities(store, "n1")) == 20
    with pytest.raises(BlockLimitError, match="per host block limit"):
        n1.auto_assign("one-more", POD, num4=1, num6=0)
    assert len(affinities(store, "n1")) == 20 and len(blocks(store)) == 20
    # Another node has its own twenty.
    assert len(ipam("n2").auto_assign("n2", POD, num4=1, num6=0)) == 1
    check_consistent(store)


# -- borrowing --------------------------------------------------------------------------


def test_borrowing_from_another_nodes_block(
    store: DirectoryStore, ipam: Callable[[str], Ipam],
) -> None:
    add_pool(store, "two-blocks", "10.65.0.0/29", blockSize=30)
    [a1] = ipam("n1").auto_assign("a1", POD, num4=1, num6=0)
    # While there is a free block, a node claims rather than borrows.
    [b1] = ipam("n2").auto_assign("b1", POD, num4=1, num6=0)
    assert len(affinities(store, "n1")) == len(affinities(store, "n2")) == 1
    assert block_of(store, b1.address).affinity == "host:n2"
    # None is free now: n2 fills its own block, then borrows from n1's.
    got = ipam("n2").auto_assign("b2", POD, num4=5, num6=0)
    n1_block = block_of(store, a1.address)
    borrowed = [a for a in addresses(got) if within(a, n1_block.cidr)]
    assert len(borrowed) == 2
    assert block_of(store, borrowed[0]).affinity == "host:n1", "borrowing claims nothing"
    assert len(affinities(store, "n2")) == 1
    attributes = attributes_at(store, borrowed[0])
    assert attributes is not None and attributes["secondary"]["node"] == "n2"
    check_consistent(store)


def test_no_borrowing_under_strict_affinity(
    store: DirectoryStore, ipam: Callable[[str], Ipam],
) -> None:
    add_pool(store, "one-block", "10.65.0.0/30", blockSize=30)
    set_config(store, strictAffinity=True)
    ipam("n1").auto_assign("a1", POD, num4=1, num6=0)
    with pytest.raises(ExhaustedError) as caught:
        ipam("n2").auto_assign("b1", POD, num4=1, num6=0)
    assert not isinstance(caught.value, BlockLimitError)
    assert "one-block" in str(caught.value)
    assert handle_counts(store, "b1") is None
    set_config(store, strictAffinity=False)
    [b1] = ipam("n2").auto_assign("b1", POD, num4=1, num6=0)
    assert block_of(store, b1.address).affinity == "host:n1"
    check_consistent(store)


# -- concurrency ------------------------------------------------------------------------


PER_NODE = 14


def run_all(workers: list[Any], go: Event) -> list[int | None]:
    """Start the processes, let them go at once, wait for all (under one deadline);
    their exit codes."""
    for worker in workers:
        worker.start()
    go.set()
    deadline = time.monotonic() + WAIT
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
    return [worker.exitcode for worker in workers]


def _allocate_as_node(root: str, lock_path: str, node: str, go: Event, out: Connection) -> None:
    ipam = Ipam(DirectoryStore(root, create=False), node, lock_path)
    assert go.wait(WAIT)
    got = [ipam.auto_assign(f"{node}-{i}", POD, num4=1, num6=0)[0].address
           for i in range(PER_NODE)]
    out.send(got)


def test_nodes_allocating_at_once_never_share_a_block_or_an_address(
    store: DirectoryStore, tmp_path: Path,
) -> None:
    add_pool(store, "small", "10.65.0.0/26", blockSize=29)  # 8 blocks of 8
    for node in ("n3", "n4"):
        add_node(store, node)
    go = FORK.Event()
    nodes = ("n1", "n2", "n3", "n4")
    pipes = [FORK.Pipe(duplex=False) for _ in nodes]
    workers = [FORK.Process(target=_allocate_as_node, args=(
        store.root, str(tmp_path / "locks" / node), node, go, sending))
        for node, (_, sending) in zip(nodes, pipes, strict=True)]
    assert run_all(workers, go) == [0] * 4
    got = {node: receiving.recv() for node, (receiving, _) in zip(nodes, pipes, strict=True)}
    everything = [address for some in got.values() for address in some]
    assert len(everything) == len(set(everything)) == 4 * PER_NODE
    held = check_consistent(store)  # one node per block, handles match blocks
    assert held == {a: f"{node}-{i}" for node, a_list in got.items()
                    for i, a in enumerate(a_list)}


def _allocate_one(ipam: Ipam, handle: str, go: Event) -> None:
    assert go.wait(WAIT)
    [got] = ipam.auto_assign(handle, {"pod": handle}, num4=1, num6=0)
    # What we were told is what the block says.
    os._exit(0 if holder(ipam.store, got.address) == handle else 1)  # type: ignore[arg-type]


def test_two_hundred_pods_at_once_on_one_node(
    store: DirectoryStore, ipam: Callable[[str], Ipam],
) -> None:
    add_pool(store, "p4", "10.65.0.0/24")  # blocks of 64
    n1 = ipam("n1")
    # Used (its lock file open) before the fork: each child must still lock for itself.
    [first] = n1.auto_assign("parent", POD, num4=1, num6=0)
    go = FORK.Event()
    workers = [FORK.Process(target=_allocate_one, args=(n1, f"pod-{i}", go))
               for i in range(200)]
    assert run_all(workers, go) == [0] * 200
    held = check_consistent(store)
    assert sorted(held.values()) == sorted(["parent", *(f"pod-{i}" for i in range(200))])
    assert held[first.address] == "parent"
    # The node lock queued them: exactly the four blocks 201 addresses need.
    assert len(affinities(store, "n1")) == 4 and len(blocks(store)) == 4


def test_one_nodes_processes_without_the_node_lock(store: DirectoryStore) -> None:
    """Compare-and-swap alone (no lock path): the processes of one node race for the
    same blocks, and the loser of a claim must not undo the winner's affinity."""
    add_pool(store, "p4", "10.65.0.0/24", blockSize=28)  # 16 blocks of 16
    n1 = Ipam(store, "n1", None)
    go = FORK.Event()
    workers = [FORK.Process(target=_allocate_one, args=(n1, f"pod-{i}", go))
               for i in range(60)]
    assert run_all(workers, go) == [0] * 60
    held = check_consistent(store)  # every block of n1's has its confirmed affinity
    assert sorted(held.values()) == sorted(f"pod-{i}" for i in range(60))
    own, _ = announcements(store, "n1")
    assert sorted(own) == sorted(blocks(store))


def test_a_block_claimed_meanwhile_by_another_process_of_the_node_is_used(
    store: DirectoryStore, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The interleaving the node lock prevents, played out by hand: between our look
    at the node's blocks and our claim, a sibling process claims the last free block."""
    add_pool(store, "one-block", "10.65.0.0/30", blockSize=30)
    ours, sibling = Ipam(store, "n1", None), Ipam(store, "n1", None)
    real_claim = ours._claim

    def claim_after_the_sibling(pools: Any) -> Any:
        sibling.auto_assign("sibling", POD, num4=1, num6=0)
        return real_claim(pools)  # finds no free block now

    monkeypatch.setattr(ours, "_claim", claim_after_the_sibling)
    [got] = ours.auto_assign("ours", POD, num4=1, num6=0)
    assert within(got.address, "10.65.0.0/30")
    assert affinities(store, "n1") == {"10.65.0.0/30": "confirmed"}
    assert sorted(check_consistent(store).values()) == ["ours", "sibling"]


# -- release ----------------------------------------------------------------------------


def test_release_handle_frees_its_addresses_and_may_be_repeated(
    store: DirectoryStore, ipam: Callable[[str], Ipam],
) -> None:
    add_pool(store, "p4", "10.65.0.0/24", blockSize=28)
    n1 = ipam("n1")
    mine = addresses(n1.auto_assign("h", POD, num4=3, num6=0))
    kept = addresses(n1.auto_assign("keep", POD, num4=1, num6=0))
    assert sorted(n1.release_handle("h")) == sorted(mine)
    assert handle_counts(store, "h") is None
    assert check_consistent(store) == {kept[0]: "keep"}
    assert n1.release_handle("h") == [] and n1.release_handle("never") == []
    # The freed addresses go to the back of the queue.
    again = addresses(n1.auto_assign("next", POD, num4=1, num6=0))
    assert again[0] not in mine


def test_release_ips_counts_the_handle_down(
    store: DirectoryStore, ipam: Callable[[str], Ipam],
) -> None:
    add_pool(store, "p4", "10.65.0.0/24", blockSize=28)
    n1 = ipam("n1")
    a1, a2 = addresses(n1.auto_assign("h", POD, num4=2, num6=0))
    cidr = block_of(store, a1).cidr
    assert n1.release_ips([a1]) == [a1]
    assert handle_counts(store, "h") == {cidr: 1}
    assert n1.release_ips([a1]) == [], "already free"
    assert n1.release_ips([a2, "10.99.0.1", "fd00:99::1"]) == [a2]
    assert handle_counts(store, "h") is None
    assert check_consistent(store) == {}
    assert cidr in blocks(store), "an empty affine block stays"


def test_an_empty_block_without_affinity_is_deleted(
    store: DirectoryStore, ipam: Callable[[str], Ipam],
) -> None:
    add_pool(store, "p4", "10.65.0.0/24", blockSize=30)
    set_config(store, autoAllocateBlocks=False)
    orphan = Block.new("10.65.0.8/30", None)  # its node's affinity was released
    orphan.assign(1, "old", POD)
    store.put(BLOCKS + key_of(orphan.cidr), orphan.to_json())
    n1 = ipam("n1")
    got = addresses(n1.auto_assign("h", POD, num4=2, num6=0))
    assert all(within(a, orphan.cidr) for a in got)
    assert affinities(store, "n1") == {}
    assert n1.release_ips([got[0]]) == [got[0]]
    assert n1.release_handle("h") == [got[1]]
    assert orphan.cidr in blocks(store), "not empty yet"
    assert n1.release_ips([orphan.address(0)]) == [orphan.address(0)]
    assert blocks(store) == {}
    assert check_consistent(store) == {}


def test_an_empty_borrowed_block_stays_with_its_owner(
    store: DirectoryStore, ipam: Callable[[str], Ipam],
) -> None:
    add_pool(store, "one-block", "10.65.0.0/30", blockSize=30)
    [a1] = addresses(ipam("n1").auto_assign("a1", POD, num4=1, num6=0))
    [b1] = addresses(ipam("n2").auto_assign("b1", POD, num4=1, num6=0))
    ipam("n1").release_handle("a1")
    assert ipam("n2").release_handle("b1") == [b1]
    block = blocks(store)["10.65.0.0/30"]
    assert block.empty() and block.affinity == "host:n1"
    assert affinities(store, "n1") == {"10.65.0.0/30": "confirmed"}
    assert a1 != b1


# -- claims left half-done ------------------------------------------------------------


def _claim_and_die(ipam: Ipam, before_block: bool) -> None:
    """Claim a block and be killed at the block write: before it or just after."""
    store = ipam.store
    real_put = store.put

    def put(key: str, value: dict[str, Any], expect: int | None = None) -> int:
        if key.startswith(BLOCKS) and before_block:
            os.kill(os.getpid(), signal.SIGKILL)
        revision = real_put(key, value, expect)
        if key.startswith(BLOCKS):
            os.kill(os.getpid(), signal.SIGKILL)
        return revision

    store.put = put  # type: ignore[method-assign]
    ipam.auto_assign("doomed", POD, num4=1, num6=0)
    os._exit(3)


def claim_and_die(ipam: Ipam, before_block: bool) -> None:
    claimer = FORK.Process(target=_claim_and_die, args=(ipam, before_block))
    claimer.start()
    claimer.join(WAIT)
    assert claimer.exitcode == -signal.SIGKILL


def test_a_pending_claim_whose_block_exists_is_confirmed(
    store: DirectoryStore, ipam: Callable[[str], Ipam],
) -> None:
    add_pool(store, "p4", "10.65.0.0/24", blockSize=28)
    claim_and_die(ipam("n1"), before_block=False)
    [(cidr, state)] = affinities(store, "n1").items()
    assert state == "pending" and blocks(store)[cidr].affinity == "host:n1"
    assert announcements(store, "n1") == ([], []), "a pending block is not announced"
    [got] = ipam("n1").auto_assign("h", POD, num4=1, num6=0)
    assert within(got.address, cidr)
    assert affinities(store, "n1") == {cidr: "confirmed"}
    check_consistent(store)


def test_a_pending_claim_without_its_block_is_dropped(
    store: DirectoryStore, ipam: Callable[[str], Ipam],
) -> None:
    add_pool(store, "one-block", "10.65.0.0/30", blockSize=30)
    claim_and_die(ipam("n1"), before_block=True)
    assert affinities(store, "n1") == {"10.65.0.0/30": "pending"} and blocks(store) == {}
    # Meanwhile another node claims the block n1 never created.
    ipam("n2").auto_assign("b1", POD, num4=1, num6=0)
    [got] = ipam("n1").auto_assign("a1", POD, num4=1, num6=0)  # borrowed
    assert affinities(store, "n1") == {}
    assert affinities(store, "n2") == {"10.65.0.0/30": "confirmed"}
    assert holder(store, got.address) == "a1"
    check_consistent(store)


# -- what the speaker announces ---------------------------------------------------------


def test_announcements_are_confirmed_blocks_and_borrowed_host_routes(
    store: DirectoryStore, ipam: Callable[[str], Ipam],
) -> None:
    add_pool(store, "p4", "10.65.0.0/29", blockSize=30)  # two blocks
    add_pool(store, "p6", "fd00:20::/126", blockSize=126)  # one block
    ipam("n1").auto_assign("a", POD, num4=5, num6=1)
    store.put(f"{AFFINITIES}n1/10.99.0.0-30", {"node": "n1", "cidr": "10.99.0.0/30",
                                               "family": 4, "state": "pending"})
    got = ipam("n2").auto_assign("b", POD, num4=1, num6=1)
    own, borrowed = announcements(store, "n1")
    assert sorted(own) == ["10.65.0.0/30", "10.65.0.4/30", "fd00:20::/126"]
    assert borrowed == []
    assert announcements(store, "n2") == ([], [f"{got[0].address}/32", f"{got[1].address}/128"])
    assert announcements(store, "n3") == ([], [])


# -- all or nothing ---------------------------------------------------------------------


def test_a_request_that_fails_in_ipv6_keeps_nothing(
    store: DirectoryStore, ipam: Callable[[str], Ipam],
) -> None:
    add_pool(store, "p4", "10.65.0.0/24", blockSize=28)
    add_pool(store, "p6", "fd00:30::/126", blockSize=126)  # four addresses
    set_config(store, strictAffinity=True)
    n1 = ipam("n1")
    n1.auto_assign("filler", POD, num4=0, num6=4)
    [tunnel] = n1.auto_assign("tunnel", POD, num4=1, num6=0)
    with pytest.raises(ExhaustedError, match="IPv6"):
        n1.auto_assign("h", POD, num4=1, num6=1)
    assert handle_counts(store, "h") is None
    with pytest.raises(ExhaustedError):  # the same handle asking for more
        n1.auto_assign("tunnel", POD, num4=2, num6=1)
    # Only what the failed requests took is given back: the handle keeps its address.
    assert check_consistent(store).get(tunnel.address) == "tunnel"
    assert sorted(check_consistent(store).values()) == ["filler"] * 4 + ["tunnel"]


def test_a_request_that_fails_half_way_through_a_family_keeps_nothing(
    store: DirectoryStore, ipam: Callable[[str], Ipam],
) -> None:
    add_pool(store, "one-block", "10.65.0.0/30", blockSize=30)
    with pytest.raises(ExhaustedError, match=r"IPv4 addresses available in pools \[one-block\]"):
        ipam("n1").auto_assign("h", POD, num4=5, num6=0)
    assert handle_counts(store, "h") is None
    assert check_consistent(store) == {}
    assert len(ipam("n1").auto_assign("h", POD, num4=4, num6=0)) == 4
