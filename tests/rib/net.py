"""In-memory speakers joined by in-memory links: each node is a ``Router``; a link
carries the UPDATE bytes one node produces to the other, through the real
decoder, until the network is quiet."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from bgpd.messages import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    Family,
    SessionContext,
    Update,
    iter_messages,
)
from bgpd.messages.codec import decode_message
from bgpd.rib.export import ExportTarget
from bgpd.rib.importing import ImportRules
from bgpd.rib.path import Source
from bgpd.rib.policy import ACCEPT_ALL
from bgpd.rib.router import Router
from reflector import RouteReflector, cluster_id_value, is_client

FAMILIES = frozenset({IPV4_UNICAST, IPV6_UNICAST})


@dataclass
class Node:
    name: str  # its address, 10.0.0.x
    asn: int
    rid: int
    cluster: str | None = None
    router: Router = field(init=False)
    #: (from, family, prefix) -> announcements received, for "exactly once".
    heard: Counter[tuple[str, Family, bytes]] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.router = Router(self.asn, self.rid)

    @property
    def address(self) -> bytes:
        return bytes(int(x) for x in self.name.split("."))


class Net:
    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self.links: set[frozenset[str]] = set()
        self.ctx = SessionContext()

    def add(self, name: str, asn: int = 65000, cluster: str | None = None) -> Node:
        node = Node(
            name, asn, int.from_bytes(bytes(int(x) for x in name.split(".")), "big"), cluster
        )
        self.nodes[name] = node
        return node

    def _half(self, a: Node, b: Node) -> None:
        ibgp = a.asn == b.asn
        client = is_client(a.cluster, b.cluster, ibgp)
        reflection = RouteReflector(cluster_id_value(a.cluster)) if a.cluster else None
        source = Source.peer(b.name, a.asn, b.asn, b.rid, client)
        rules = ImportRules(local_id=a.rid, policy=ACCEPT_ALL, reflection=reflection)
        target = ExportTarget(
            b.name,
            a.asn,
            b.asn,
            next_hop_self={
                IPV4_UNICAST: a.address,
                IPV6_UNICAST: b"\xfd" + b"\0" * 14 + a.address[3:],
            },
            policy=ACCEPT_ALL,
            client=client,
            reflection=reflection,
        )
        a.router.peer_up(source, rules, target, FAMILIES, self.ctx)

    def link(self, a: str, b: str) -> None:
        self.links.add(frozenset((a, b)))
        self._half(self.nodes[a], self.nodes[b])
        self._half(self.nodes[b], self.nodes[a])

    def cut(self, a: str, b: str) -> None:
        self.links.discard(frozenset((a, b)))
        self.nodes[a].router.peer_down(b)
        self.nodes[b].router.peer_down(a)

    def remove(self, name: str) -> None:
        for link in [lk for lk in self.links if name in lk]:
            other = next(iter(link - {name}))
            self.cut(name, other)
        del self.nodes[name]

    def settle(self, rounds: int = 50) -> int:
        """Deliver until quiet; returns messages delivered."""
        delivered = 0
        for _ in range(rounds):
            moved = False
            for node in list(self.nodes.values()):
                while node.router.busy:
                    node.router.work(10)
                for peer, data in node.router.take_output().items():
                    dest = self.nodes.get(peer)
                    if dest is None or node.name not in dest.router.peers:
                        continue
                    for _type, raw in iter_messages(data):
                        msg = decode_message(raw, self.ctx)
                        assert isinstance(msg, Update)
                        delivered += 1
                        moved = True
                        self._count(dest, node.name, msg)
                        if msg.end_of_rib_family is None:
                            dest.router.receive(node.name, msg)
            if not moved:
                return delivered
        raise AssertionError("the network did not settle")

    @staticmethod
    def _count(dest: Node, sender: str, msg: Update) -> None:
        for prefix in msg.nlri:
            dest.heard[(sender, IPV4_UNICAST, prefix)] += 1
        if msg.mp_reach is not None:
            for prefix in msg.mp_reach.nlri:
                dest.heard[(sender, msg.mp_reach.family, prefix)] += 1
