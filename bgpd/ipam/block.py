"""An allocation block, as Calico stores it (CALICO.md §4.1), and the pure
operations on it.

A block is a pool's block-sized CIDR.  ``allocations[i]`` is None when the i-th
address is free, else an index into ``attributes`` (whose entry names the handle
and the pod); ``unallocated`` lists the free ordinals in the order they will be
handed out: allocation takes from the front and release appends at the back, so
an address just freed is the last to be reused (a pod's address lingers in caches
and conntrack for a while after it dies).  Identical attribute entries are shared
and compacted away when nothing refers to them.

The JSON shape is Calico's ``AllocationBlock`` so that ``calicoctl``-minded
operators read it unchanged.
"""

from __future__ import annotations

from .cidr import BITS, format_ip, parse_cidr

TYPE_CHECKING = False  # not from typing: its import costs the CNI plugin ~4 ms

if TYPE_CHECKING:
    from typing import Any


class Block:
    """A mutable working copy of one stored block."""

    __slots__ = ("affinity", "allocations", "attributes", "cidr", "family", "length",
                 "network", "sequence", "unallocated")

    def __init__(self, value: dict[str, Any]) -> None:
        self.cidr: str = value["cidr"]
        self.family, self.network, self.length = parse_cidr(self.cidr)
        self.affinity: str | None = value.get("affinity")
        self.allocations: list[int | None] = list(value["allocations"])
        self.unallocated: list[int] = list(value["unallocated"])
        self.attributes: list[dict[str, Any]] = [dict(a) for a in value.get("attributes") or ()]
        self.sequence: int = value.get("sequenceNumber", 0)

    @classmethod
    def new(cls, cidr: str, affinity: str | None) -> Block:
        family, _, length = parse_cidr(cidr)
        size = 1 << (BITS[family] - length)
        return cls({"cidr": cidr, "affinity": affinity, "allocations": [None] * size,
                    "unallocated": list(range(size)), "attributes": []})

    def to_json(self) -> dict[str, Any]:
        return {
            "cidr": self.cidr,
            "affinity": self.affinity,
            "strictAffinity": False,
            "allocations": self.allocations,
            "unallocated": self.unallocated,
            "attributes": self.attributes,
            "sequenceNumber": self.sequence,
            "deleted": False,
        }

    @property
    def size(self) -> int:
        return len(self.allocations)

    @property
    def free(self) -> int:
        return len(self.unallocated)

    @property
    def in_use(self) -> int:
        return self.size - self.free

    def empty(self) -> bool:
        return not self.in_use

    def address(self, ordinal: int) -> str:
        return format_ip(self.family, self.network + ordinal)

    def ordinal(self, value: int) -> int | None:
        """The ordinal of an address (an integer) in this block, or None."""
        offset = value - self.network
        return offset if 0 <= offset < self.size else None

    def _attribute_index(self, handle: str, secondary: dict[str, str]) -> int:
        for i, existing in enumerate(self.attributes):
            if existing.get("handle_id") == handle and existing.get("secondary") == secondary:
                return i
        self.attributes.append({"handle_id": handle, "secondary": secondary})
        return len(self.attributes) - 1

    def assign(self, count: int, handle: str, secondary: dict[str, str]) -> list[int]:
        """Take up to ``count`` free addresses for ``handle``; their ordinals."""
        taken = self.unallocated[:count]
        if not taken:
            return []
        del self.unallocated[: len(taken)]
        index = self._attribute_index(handle, secondary)
        for ordinal in taken:
            self.allocations[ordinal] = index
        self.sequence += 1
        return taken

    def assign_ordinal(self, ordinal: int, handle: str, secondary: dict[str, str]) -> bool:
        """Take one given address (a fixed IP); False when it is in use."""
        if self.allocations[ordinal] is not None:
            return False
        self.unallocated.remove(ordinal)
        self.allocations[ordinal] = self._attribute_index(handle, secondary)
        self.sequence += 1
        return True

    def handle_of(self, ordinal: int) -> str | None:
        index = self.allocations[ordinal]
        return None if index is None else self.attributes[index].get("handle_id")

    def attributes_of(self, ordinal: int) -> dict[str, Any] | None:
        index = self.allocations[ordinal]
        return None if index is None else self.attributes[index]

    def ordinals_of(self, handle: str) -> list[int]:
        owned = {i for i, a in enumerate(self.attributes) if a.get("handle_id") == handle}
        return [o for o, index in enumerate(self.allocations) if index in owned]

    def release(self, ordinals: list[int]) -> list[int]:
        """Free these addresses; those that were in use."""
        freed = []
        for ordinal in ordinals:
            if self.allocations[ordinal] is not None:
                self.allocations[ordinal] = None
                self.unallocated.append(ordinal)
                freed.append(ordinal)
        if freed:
            self._compact()
            self.sequence += 1
        return freed

    def _compact(self) -> None:
        """Drop attribute entries no allocation points at any more, renumbering."""
        used = sorted({i for i in self.allocations if i is not None})
        if len(used) == len(self.attributes):
            return
        remap = {old: new for new, old in enumerate(used)}
        self.attributes = [self.attributes[i] for i in used]
        self.allocations = [None if i is None else remap[i] for i in self.allocations]

    def allocated(self) -> list[tuple[int, dict[str, Any]]]:
        """(ordinal, attribute entry) of every address in use."""
        return [(o, self.attributes[i]) for o, i in enumerate(self.allocations) if i is not None]
