"""IP pools as IPAM sees them: the stored IPPool resources (already validated at the
edge), reduced to what allocation needs (CALICO.md §2.4, §4.2).

A pool serves a request when it is enabled, of the request's family, allows the
``Workload`` use, is ``Automatic`` (or asked for by name), and its node selector
matches the node's labels and its namespace selector the pod namespace's labels.
"""

from __future__ import annotations

from .cidr import BITS, format_cidr, parse_cidr

TYPE_CHECKING = False  # not from typing: its import costs the CNI plugin ~4 ms

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from typing import Any

    from ..datastore.base import Datastore

POOLS = "resources/ippools/"
DEFAULT_BLOCK_SIZE = {4: 26, 6: 122}


class Pool:
    __slots__ = ("allowed_uses", "block_size", "cidr", "disabled", "family", "ipip_mode",
                 "length", "manual", "name", "namespace_selector", "nat_outgoing",
                 "network", "node_selector", "vxlan_mode")

    def __init__(self, name: str, spec: Mapping[str, Any]) -> None:
        self.name = name
        self.cidr: str = spec["cidr"]
        self.family, self.network, self.length = parse_cidr(self.cidr)
        self.block_size: int = spec.get("blockSize") or DEFAULT_BLOCK_SIZE[self.family]
        self.disabled: bool = bool(spec.get("disabled", False))
        self.node_selector: str = spec.get("nodeSelector") or "all()"
        self.namespace_selector: str = spec.get("namespaceSelector") or "all()"
        self.allowed_uses: list[str] = spec.get("allowedUses") or ["Workload", "Tunnel"]
        self.manual = spec.get("assignmentMode") == "Manual"
        self.ipip_mode: str = spec.get("ipipMode") or "Never"
        self.vxlan_mode: str = spec.get("vxlanMode") or "Never"
        self.nat_outgoing: bool = bool(spec.get("natOutgoing", False))

    def __repr__(self) -> str:
        return f"Pool({self.name!r}, {self.cidr})"

    def selects_node(self, labels: Mapping[str, str]) -> bool:
        return _matches(self.node_selector, labels)

    def selects_namespace(self, labels: Mapping[str, str]) -> bool:
        return _matches(self.namespace_selector, labels)

    @property
    def block_count(self) -> int:
        return 1 << (self.block_size - self.length)

    def block(self, index: int) -> str:
        """The CIDR of the pool's ``index``-th block."""
        step = 1 << (BITS[self.family] - self.block_size)
        return format_cidr(self.family, self.network + index * step, self.block_size)

    def blocks_from(self, start: int) -> Iterator[str]:
        """Every block CIDR, beginning at ``start`` and wrapping round: nodes that
        start at random places rarely race for the same block."""
        count = self.block_count
        for i in range(count):
            yield self.block((start + i) % count)

    def block_of(self, value: int) -> str:
        """The CIDR of the block that holds address ``value``."""
        shift = BITS[self.family] - self.block_size
        return format_cidr(self.family, value >> shift << shift, self.block_size)

    def holds(self, family: int, value: int) -> bool:
        shift = BITS[family] - self.length
        return family == self.family and value >> shift == self.network >> shift


def _matches(selector: str, labels: Mapping[str, str]) -> bool:
    if selector == "all()":
        return True  # the usual case, without loading the selector parser (~1 ms a pod)
    from ..resources.selector import parse_cached  # noqa: PLC0415

    return parse_cached(selector).matches(labels)


def load_pools(store: Datastore) -> list[Pool]:
    """Every stored pool, in name order."""
    return [Pool(r.value["metadata"]["name"], r.value["spec"]) for r in store.list(POOLS)]


def pool_for(pools: list[Pool], family: int, value: int) -> Pool | None:
    """The most specific pool that holds an address."""
    best = None
    for pool in pools:
        if pool.holds(family, value) and (best is None or pool.length > best.length):
            best = pool
    return best
