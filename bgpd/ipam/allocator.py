"""Address allocation against the datastore, as Calico's IPAM does it (CALICO.md §4.2-4.3).

Stored state (keys)::

    ipam/config                         IPAMConfig: strictAffinity, autoAllocateBlocks,
                                        maxBlocksPerHost
    ipam/blocks/<cidr>                  a block (block.py)
    ipam/affinities/<node>/<cidr>       {"state": pending|confirmed, ...}: the node's claim
    ipam/handles/<handle>               {"handleID", "block": {cidr: count}}

Assigning for a node, per family:
 1. from the node's confirmed affine blocks in the eligible pools;
 2. else claim a new block: a pending affinity, the block created only-if-absent
    with ``affinity: host:<node>`` (the compare-and-swap that two nodes racing
    for one block settle on), then the affinity confirmed; at most
    ``maxBlocksPerHost`` blocks, or Calico's safeguard of 20 when that is 0;
 3. else, unless ``strictAffinity``, borrow from any existing block of the pools.

Every block update is a compare-and-swap on the block's revision, retried on
conflict, so nodes never hand out one address twice.  On one node, allocations
also take a local lock (as Calico's plugin does) so that 200 pods started at once
queue instead of retrying against each other.

The handle is counted up before the block is written, as Calico does: a process
killed between the two leaves a handle that counts an address it does not hold,
which ``ipam check`` reports and ``release`` repairs, never an address that no
handle owns.
"""

from __future__ import annotations

import fcntl
import os
import time

from ..datastore.base import Conflict
from .block import Block
from .cidr import key_of, parse_ip
from .pools import Pool, load_pools, pool_for

TYPE_CHECKING = False  # not from typing: its import costs the CNI plugin ~4 ms

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from typing import Any

    from ..datastore.base import Datastore, Record

CONFIG = "ipam/config"
BLOCKS = "ipam/blocks/"
AFFINITIES = "ipam/affinities/"
HANDLES = "ipam/handles/"
NODES = "resources/nodes/"
NAMESPACES = "resources/namespaces/"
#: Calico's cap on blocks per node when maxBlocksPerHost is 0.
SAFEGUARD_BLOCKS = 20
RETRIES = 100
DEFAULT_CONFIG: dict[str, Any] = {
    "strictAffinity": False,
    "autoAllocateBlocks": True,
    "maxBlocksPerHost": 0,
}


class IpamError(Exception):
    """An allocation that cannot be served (the message says why)."""


class PoolError(IpamError):
    """A pool asked for by name that does not exist or cannot serve this node."""


class ExhaustedError(IpamError):
    """No free address in any eligible pool."""


class BlockLimitError(ExhaustedError):
    def __init__(self) -> None:
        super().__init__("cannot allocate new block due to per host block limit")


class Assignment:
    """One address handed out: its text, the length of its block (the mask an
    IPAM result carries, as Calico's does), and the pool."""

    __slots__ = ("address", "family", "length", "pool")

    def __init__(self, family: int, address: str, length: int, pool: str) -> None:
        self.family = family
        self.address = address
        self.length = length
        self.pool = pool

    def __repr__(self) -> str:
        return f"Assignment({self.address}/{self.length} from {self.pool})"


def _random_below(n: int) -> int:
    return int.from_bytes(os.urandom(16), "big") % n


class Ipam:
    """IPAM for one node over a datastore.  ``lock_path``: the node-local lock file
    (None: rely on compare-and-swap alone)."""

    def __init__(self, store: Datastore, node: str, lock_path: str | None = None) -> None:
        self.store = store
        self.node = node
        self.lock_path = lock_path
        self._lock_fd = -1
        self._lock_pid = 0
        self._lock_depth = 0

    # -- the node-local lock -------------------------------------------------------

    def __enter__(self) -> Ipam:
        if self.lock_path is not None:
            if self._lock_depth == 0 and self._lock_pid != os.getpid():
                self.close()  # a copy made by fork: the parent's open lock is not ours
            if self._lock_fd < 0:
                os.makedirs(os.path.dirname(self.lock_path), exist_ok=True)
                self._lock_fd = os.open(
                    self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644
                )
                self._lock_pid = os.getpid()
            if self._lock_depth == 0:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        self._lock_depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock_depth -= 1
        if self._lock_depth == 0 and self._lock_fd >= 0:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    # -- configuration ---------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """IPAMConfig, created with Calico's defaults when missing (CALICO.md §4.1)."""
        record = self.store.get(CONFIG)
        if record is not None:
            return {**DEFAULT_CONFIG, **record.value}
        try:
            self.store.put(CONFIG, dict(DEFAULT_CONFIG), expect=0)
        except Conflict:
            return self.config()
        return dict(DEFAULT_CONFIG)

    def node_labels(self) -> dict[str, str]:
        record = self.store.get(NODES + self.node)
        if record is None:
            return {}
        return dict(record.value.get("metadata", {}).get("labels") or {})

    def namespace_labels(self, namespace: str | None) -> dict[str, str]:
        if not namespace:
            return {}
        record = self.store.get(NAMESPACES + namespace)
        if record is None:
            return {}
        return dict(record.value.get("metadata", {}).get("labels") or {})

    def eligible_pools(
        self, family: int, names: list[str] | None, namespace: str | None = None,
        pools: list[Pool] | None = None, use: str = "Workload",
    ) -> list[Pool]:
        """The pools that may serve this node (and pod namespace) in ``family``:
        the named ones, each of which must exist and fit, or else every enabled,
        automatic pool that selects the node and namespace."""
        pools = load_pools(self.store) if pools is None else pools
        node_labels = self.node_labels()
        ns_labels = self.namespace_labels(namespace)
        if names:
            by_name = {p.name: p for p in pools}
            by_cidr = {p.cidr: p for p in pools}
            chosen = []
            for name in names:
                pool = by_name.get(name) or by_cidr.get(name)
                if pool is None:
                    raise PoolError(f"the requested IP pool {name!r} does not exist")
                if pool.family != family:
                    raise PoolError(f"the requested IP pool {name!r} is not IPv{family}")
                if pool.disabled:
                    raise PoolError(f"the requested IP pool {name!r} is disabled")
                if use not in pool.allowed_uses:
                    raise PoolError(f"the requested IP pool {name!r} does not allow {use}")
                if not pool.selects_node(node_labels):
                    raise PoolError(
                        f"the requested IP pool {name!r} does not select node {self.node!r}"
                    )
                chosen.append(pool)
            return chosen
        return [
            p for p in pools
            if p.family == family and not p.disabled and not p.manual
            and use in p.allowed_uses
            and p.selects_node(node_labels) and p.selects_namespace(ns_labels)
        ]

    # -- assignment -------------------------------------------------------------------

    def auto_assign(
        self, handle: str, attributes: Mapping[str, str], *, num4: int, num6: int,
        pools4: list[str] | None = None, pools6: list[str] | None = None,
        namespace: str | None = None, use: str = "Workload",
    ) -> list[Assignment]:
        """``num4`` IPv4 and ``num6`` IPv6 addresses for ``handle``; all or nothing.
        ``use`` is the pool use asked for: ``Workload``, or ``Tunnel`` for a node's
        tunnel address (CALICO.md §2.4 allowedUses)."""
        secondary = {"node": self.node, "timestamp": _timestamp(), **attributes}
        with self:
            config = self.config()
            all_pools = load_pools(self.store)
            # Filled as addresses are taken, so that a failure half-way through a
            # family still knows what to give back (and gives back only those: the
            # handle may hold addresses from an earlier call).
            got: list[Assignment] = []
            try:
                for family, count, names in ((4, num4, pools4), (6, num6, pools6)):
                    if count <= 0:
                        continue
                    pools = self.eligible_pools(family, names, namespace, all_pools, use)
                    if not pools:
                        raise PoolError(f"no IPv{family} pool is usable on node {self.node!r}")
                    self._assign_family(
                        family, count, handle=handle, secondary=secondary, pools=pools,
                        config=config, got=got,
                    )
            except BaseException:
                if got:
                    self.release_ips([a.address for a in got])
                raise
            return got

    def _assign_family(
        self, family: int, count: int, *, handle: str, secondary: dict[str, str],
        pools: list[Pool], config: Mapping[str, Any], got: list[Assignment],
    ) -> None:
        """Append ``count`` addresses of ``family`` to ``got`` as they are taken."""
        count += len(got)  # from here on, the length ``got`` must reach
        affine = f"host:{self.node}"
        owned = 0
        for record in self.store.list(f"{AFFINITIES}{self.node}/"):
            cidr = record.value["cidr"]
            if record.value.get("family", 6 if ":" in cidr else 4) != family:
                continue
            owned += 1
            if record.value.get("state") != "confirmed" and not self._settle(record):
                continue
            pool = _pool_of_block(pools, cidr)
            if pool is None:
                continue
            got += self._from_block(
                    cidr, pool, count - len(got), handle=handle, secondary=secondary,
                    affinity=affine,
                )
            if len(got) == count:
                return

        limit_hit = False
        if config["autoAllocateBlocks"]:
            limit = config["maxBlocksPerHost"] or SAFEGUARD_BLOCKS
            while len(got) < count:
                if owned >= limit:
                    limit_hit = True
                    break
                claimed = self._claim(pools)
                if claimed is None:
                    break
                owned += 1
                cidr, pool = claimed
                got += self._from_block(
                    cidr, pool, count - len(got), handle=handle, secondary=secondary,
                    affinity=affine,
                )

        if len(got) < count and not config["strictAffinity"]:
            for pool in pools:
                blocks = [r for r in self._blocks() if _pool_of_block([pool], r.value["cidr"])]
                start = _random_below(len(blocks)) if blocks else 0
                for record in blocks[start:] + blocks[:start]:
                    value = record.value
                    # Our own blocks too: without the node lock, another process of
                    # this node may have claimed one since we looked.
                    if not value["unallocated"]:
                        continue
                    got += self._from_block(
                        value["cidr"], pool, count - len(got), handle=handle,
                        secondary=secondary, affinity=None,
                    )
                    if len(got) == count:
                        return

        if len(got) < count:
            if limit_hit:
                raise BlockLimitError()
            names = ", ".join(p.name for p in pools)
            raise ExhaustedError(f"no IPv{family} addresses available in pools [{names}]")

    def _blocks(self) -> list[Record]:
        return self.store.list(BLOCKS)

    def _settle(self, record: Record) -> bool:
        """Finish or undo a claim left pending (its claimer died half-way): confirmed
        when the block exists with our affinity, deleted otherwise."""
        block = self.store.get(BLOCKS + key_of(record.value["cidr"]))
        if block is not None and block.value.get("affinity") == f"host:{self.node}":
            self.store.put(record.key, {**record.value, "state": "confirmed"})
            return True
        try:
            self.store.delete(record.key, expect=record.revision)
        except Conflict:
            # Changed since we read it: the claimer is alive (a process of this node
            # without the node lock) and has just finished its claim.
            current = self.store.get(record.key)
            return current is not None and current.value.get("state") == "confirmed"
        return False

    def _claim(self, pools: list[Pool]) -> tuple[str, Pool] | None:
        """Claim a free block of the first pool that has one (CALICO.md §4.2 step 2)."""
        existing = {r.rpartition("/")[2] for r in self.store.keys(BLOCKS)}
        for pool in pools:
            for cidr in pool.blocks_from(_random_below(pool.block_count)):
                segment = key_of(cidr)
                if segment in existing:
                    continue
                affinity_key = f"{AFFINITIES}{self.node}/{segment}"
                claim = {"node": self.node, "cidr": cidr, "family": pool.family}
                try:
                    # Only if absent: another process of this node (without the node
                    # lock) may be claiming the same block, and its record is not ours
                    # to overwrite or, below, to delete.
                    pending = self.store.put(
                        affinity_key, {**claim, "state": "pending"}, expect=0
                    )
                except Conflict:
                    continue
                try:
                    self.store.put(
                        BLOCKS + segment, Block.new(cidr, f"host:{self.node}").to_json(), expect=0
                    )
                except Conflict:
                    self._unclaim(affinity_key, pending)
                    existing.add(segment)
                    continue
                self.store.put(affinity_key, {**claim, "state": "confirmed"})
                return cidr, pool
        return None

    def _unclaim(self, affinity_key: str, revision: int) -> None:
        """Drop a pending affinity of ours, unless it has changed since (a process of
        this node that settled or won the claim wrote it)."""
        try:
            self.store.delete(affinity_key, expect=revision)
        except Conflict:
            return

    def _from_block(
        self, cidr: str, pool: Pool, count: int, *, handle: str, secondary: dict[str, str],
        affinity: str | None,
    ) -> list[Assignment]:
        """Up to ``count`` addresses from one block (only while it has ``affinity``,
        when given); compare-and-swap, retried."""
        key = BLOCKS + key_of(cidr)
        for _ in range(RETRIES):
            record = self.store.get(key)
            if record is None:
                return []
            block = Block(record.value)
            if affinity is not None and block.affinity != affinity:
                return []
            ordinals = block.assign(count, handle, secondary)
            if not ordinals:
                return []
            self._count_handle(handle, cidr, len(ordinals))
            try:
                self.store.put(key, block.to_json(), expect=record.revision)
            except Conflict:
                self._count_handle(handle, cidr, -len(ordinals))
                continue
            return [
                Assignment(block.family, block.address(o), block.length, pool.name)
                for o in ordinals
            ]
        raise IpamError(f"block {cidr}: too many concurrent updates")

    def _count_handle(self, handle: str, cidr: str, delta: int) -> None:
        key = HANDLES + handle
        for _ in range(RETRIES):
            record = self.store.get(key)
            value: dict[str, Any] = (
                {"handleID": handle, "block": {}} if record is None else record.value
            )
            blocks: dict[str, int] = dict(value["block"])
            count = blocks.get(cidr, 0) + delta
            if count > 0:
                blocks[cidr] = count
            else:
                blocks.pop(cidr, None)
            try:
                if blocks:
                    self.store.put(key, {**value, "block": blocks},
                                   expect=0 if record is None else record.revision)
                elif record is not None:
                    self.store.delete(key, expect=record.revision)
                return
            except Conflict:
                continue
        raise IpamError(f"handle {handle}: too many concurrent updates")

    # -- release ----------------------------------------------------------------------

    def release_handle(self, handle: str) -> list[str]:
        """Free every address of ``handle``; the addresses freed (none when the
        handle is unknown: releasing twice is fine)."""
        with self:
            record = self.store.get(HANDLES + handle)
            if record is None:
                return []
            freed: list[str] = []
            for cidr in record.value["block"]:
                key = BLOCKS + key_of(cidr)
                for _ in range(RETRIES):
                    block_record = self.store.get(key)
                    if block_record is None:
                        break
                    block = Block(block_record.value)
                    ordinals = block.release(block.ordinals_of(handle))
                    try:
                        if ordinals:
                            self._store_block(block_record, block)
                    except Conflict:
                        continue
                    freed += [block.address(o) for o in ordinals]
                    break
                else:
                    raise IpamError(f"block {cidr}: too many concurrent updates")
            self.store.delete(HANDLES + handle)
            return freed

    def release_ips(self, addresses: list[str]) -> list[str]:
        """Free the given addresses, whatever handle holds them; those that were in use."""
        freed: list[str] = []
        with self:
            pools = load_pools(self.store)
            for text in addresses:
                family, value = parse_ip(text)
                cidr = self._block_holding(pools, family, value)
                if cidr is not None and self._release_address(cidr, value):
                    freed.append(text)
        return freed

    def _release_address(self, cidr: str, value: int) -> bool:
        key = BLOCKS + key_of(cidr)
        for _ in range(RETRIES):
            record = self.store.get(key)
            if record is None:
                return False
            block = Block(record.value)
            ordinal = block.ordinal(value)
            if ordinal is None or block.allocations[ordinal] is None:
                return False
            handle = block.handle_of(ordinal)
            block.release([ordinal])
            try:
                self._store_block(record, block)
            except Conflict:
                continue
            if handle:
                self._count_handle(handle, cidr, -1)
            return True
        raise IpamError(f"block {cidr}: too many concurrent updates")

    def _store_block(self, record: Record, block: Block) -> None:
        """Write a changed block back (compare-and-swap); an empty block that no node
        claims is deleted instead (an empty affine one is kept, CALICO.md §4.3)."""
        if block.empty() and block.affinity is None:
            self.store.delete(record.key, expect=record.revision)
        else:
            self.store.put(record.key, block.to_json(), expect=record.revision)

    def _block_holding(self, pools: list[Pool], family: int, value: int) -> str | None:
        pool = pool_for(pools, family, value)
        if pool is not None:
            cidr = pool.block_of(value)
            if self.store.get(BLOCKS + key_of(cidr)) is not None:
                return cidr
        for record in self._blocks():  # a block whose pool was deleted
            block = Block(record.value)
            if block.family == family and block.ordinal(value) is not None:
                return block.cidr
        return None

    # -- reading ----------------------------------------------------------------------

    def allocations(self, handle: str) -> list[tuple[Block, int]]:
        """(block, ordinal) of every address ``handle`` holds, read from the blocks
        its record names (the blocks, not the record's counts, are the truth)."""
        record = self.store.get(HANDLES + handle)
        if record is None:
            return []
        found = []
        for cidr in record.value["block"]:
            block_record = self.store.get(BLOCKS + key_of(cidr))
            if block_record is not None:
                block = Block(block_record.value)
                found += [(block, o) for o in block.ordinals_of(handle)]
        return found

    def handles(self) -> Iterator[Record]:
        return iter(self.store.list(HANDLES))


def _pool_of_block(pools: list[Pool], cidr: str) -> Pool | None:
    family, value = parse_ip(cidr.partition("/")[0])
    for pool in pools:
        if pool.holds(family, value):
            return pool
    return None


def _timestamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime())


def announcements(store: Datastore, node: str) -> tuple[list[str], list[str]]:
    """What the speaker announces for ``node`` (CALICO.md §1.6): its confirmed
    blocks, and the addresses it borrowed from other nodes' blocks, as host routes."""
    blocks = [
        r.value["cidr"] for r in store.list(f"{AFFINITIES}{node}/")
        if r.value.get("state") == "confirmed"
    ]
    borrowed = [a for addresses in borrowed_by_block(store, node).values() for a in addresses]
    return blocks, borrowed


def borrowed_by_block(store: Datastore, node: str) -> dict[str, list[str]]:
    """The host routes of the addresses ``node`` borrowed, by the key of the block
    they come from (a watcher needs only those blocks' changes)."""
    own = f"host:{node}"
    found: dict[str, list[str]] = {}
    for record in store.list(BLOCKS):
        if record.value.get("affinity") == own:
            continue
        block = Block(record.value)
        for ordinal, attrs in block.allocated():
            if (attrs.get("secondary") or {}).get("node") == node:
                bits = 32 if block.family == 4 else 128
                found.setdefault(record.key, []).append(f"{block.address(ordinal)}/{bits}")
    return found


__all__ = ["Assignment", "BlockLimitError", "ExhaustedError", "Ipam", "IpamError", "PoolError",
           "announcements", "borrowed_by_block"]
