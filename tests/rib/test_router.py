"""The RIB end to end: packing, End-of-RIB, refresh, churn in slices, and
in-memory multi-speaker topologies (full mesh, reflection, eBGP loops)."""

from __future__ import annotations

from bgpd.messages import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    AsPath,
    PathAttributes,
    RouteRefresh,
    SessionContext,
    Update,
    iter_messages,
    prefix_from_text,
)
from bgpd.messages.codec import decode_message
from bgpd.rib import router as router_module
from bgpd.rib.export import ExportTarget
from bgpd.rib.importing import ImportRules
from bgpd.rib.path import Source
from bgpd.rib.policy import ACCEPT_ALL
from bgpd.rib.router import Router

from .net import Net

US = 65000
ATTRS = PathAttributes(origin=0)
CTX = SessionContext()


def v4(i: int, length: int = 24) -> bytes:
    return prefix_from_text(f"10.{i >> 8 & 255}.{i & 255}.0/{length}")[1]


def decode_all(data: bytes) -> list[object]:
    return [decode_message(raw, CTX) for _t, raw in iter_messages(data, 65535)]


def up(
    r: Router, name: str, peer_as: int = US, families=frozenset({IPV4_UNICAST}), ctx=CTX
) -> None:  # type: ignore[no-untyped-def]
    r.peer_up(
        Source.peer(name, US, peer_as, int(name.rsplit(".", maxsplit=1)[-1])),
        ImportRules(policy=ACCEPT_ALL),
        ExportTarget(
            name,
            US,
            peer_as,
            {IPV4_UNICAST: bytes([10, 0, 0, 1]), IPV6_UNICAST: b"\xfd" + b"\0" * 15},
            policy=ACCEPT_ALL,
        ),
        families,
        ctx,
    )
    while r.busy:
        r.work()


def test_prefixes_with_one_attribute_set_pack_into_few_full_updates() -> None:
    r = Router(US, 1)
    for i in range(3000):
        r.originate(IPV4_UNICAST, v4(i), ATTRS)
    up(r, "10.0.0.2", 7)
    data = r.take_output()["10.0.0.2"]
    msgs = decode_all(data)
    updates = [m for m in msgs if isinstance(m, Update) and m.nlri]
    got = [p for u in updates for p in u.nlri]  # type: ignore[attr-defined]
    assert sorted(got) == sorted(v4(i) for i in range(3000))
    # 3000 x 4 octets = 12,000 octets of NLRI: four 4,096-octet messages at most.
    assert len(updates) <= 4
    assert all(len(raw) <= 4096 for _t, raw in iter_messages(data))
    assert msgs[-1] == Update.end_of_rib()
    u = updates[0]
    assert u.attributes.as_path == AsPath.sequence(US)  # type: ignore[attr-defined]
    assert u.attributes.next_hop == bytes([10, 0, 0, 1])  # type: ignore[attr-defined]


def test_ipv6_packs_into_mp_reach_and_withdraws_into_mp_unreach() -> None:
    r = Router(US, 1)
    v6 = [prefix_from_text(f"fd00:{i:x}::/48")[1] for i in range(1000)]
    for p in v6:
        r.originate(IPV6_UNICAST, p, ATTRS)
    up(r, "10.0.0.2", 7, frozenset({IPV6_UNICAST}))
    msgs = decode_all(r.take_output()["10.0.0.2"])
    reach = [m.mp_reach for m in msgs if isinstance(m, Update) and m.mp_reach is not None]
    assert sorted(p for m in reach for p in m.nlri) == sorted(v6)
    assert len(reach) <= 3
    assert msgs[-1] == Update.end_of_rib(IPV6_UNICAST)
    for p in v6[:500]:
        r.withdraw(IPV6_UNICAST, p)
    msgs = decode_all(r.take_output()["10.0.0.2"])
    gone = [p for m in msgs for p in m.mp_unreach.withdrawn]  # type: ignore[attr-defined]
    assert sorted(gone) == sorted(v6[:500]) and len(msgs) == 1


def test_the_same_routes_to_many_peers_are_encoded_once() -> None:
    r = Router(US, 1)
    for n in range(2, 12):
        up(r, f"10.0.0.{n}", 7)
    r.take_output()
    for i in range(100):
        r.originate(IPV4_UNICAST, v4(i), ATTRS)
    out = r.take_output()
    assert len(out) == 10
    assert len(set(out.values())) == 1
    # One encoding, shared: the peers' batches are built from the same message objects.
    assert len(r.encoder._memo) == 1


def test_changes_between_batches_collapse_and_withdrawals_batch() -> None:
    r = Router(US, 1)
    up(r, "10.0.0.2", 7)
    r.take_output()
    r.originate(IPV4_UNICAST, v4(1), ATTRS)
    r.withdraw(IPV4_UNICAST, v4(1))
    assert r.take_output() == {}  # never sent, nothing to withdraw
    for i in range(50):
        r.originate(IPV4_UNICAST, v4(i), ATTRS)
    r.take_output()
    for i in range(50):
        r.withdraw(IPV4_UNICAST, v4(i))
    msgs = decode_all(r.take_output()["10.0.0.2"])
    assert len(msgs) == 1 and len(msgs[0].withdrawn) == 50  # type: ignore[attr-defined]


def test_route_refresh_resends_and_enhanced_brackets_with_borr_eorr() -> None:
    r = Router(US, 1)
    r.originate(IPV4_UNICAST, v4(1), ATTRS)
    up(r, "10.0.0.2", 7)
    r.take_output()
    r.refresh("10.0.0.2", IPV4_UNICAST)
    msgs = decode_all(r.take_output()["10.0.0.2"])
    assert [m.nlri for m in msgs] == [(v4(1),)]  # type: ignore[attr-defined]
    r.refresh("10.0.0.2", IPV4_UNICAST, enhanced=True)
    msgs = decode_all(r.take_output()["10.0.0.2"])
    assert msgs[0] == RouteRefresh(IPV4_UNICAST, 1)
    assert msgs[-1] == RouteRefresh(IPV4_UNICAST, 2)
    assert len(msgs) == 3


def test_a_peer_going_down_is_taken_apart_in_slices(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(router_module, "SLICE", 100)
    r = Router(US, 1)
    up(r, "10.0.0.2", 7)
    up(r, "10.0.0.3", 8)
    attrs = PathAttributes(origin=0, as_path=AsPath.sequence(7), next_hop=bytes([10, 0, 0, 2]))
    update = Update(attributes=attrs, nlri=tuple(v4(i) for i in range(1000)))
    changes = r.receive("10.0.0.2", update)
    assert len(changes) == 1000 and len(r.loc) == 1000
    r.take_output()
    r.peer_down("10.0.0.2")
    slices = 0
    gone = 0
    while r.busy:
        gone += len(r.work(1))
        slices += 1
    assert gone == 1000 and len(r.loc) == 0
    assert slices >= 10
    msgs = decode_all(r.take_output()["10.0.0.3"])
    assert sum(len(m.withdrawn) for m in msgs) == 1000  # type: ignore[attr-defined]


def test_the_initial_dump_does_not_undo_a_newer_change() -> None:
    r = Router(US, 1)
    for i in range(10):
        r.originate(IPV4_UNICAST, v4(i), ATTRS)
    r.peer_up(
        Source.peer("10.0.0.2", US, 7, 2),
        ImportRules(policy=ACCEPT_ALL),
        ExportTarget("10.0.0.2", US, 7, {IPV4_UNICAST: bytes([10, 0, 0, 1])}, policy=ACCEPT_ALL),
        frozenset({IPV4_UNICAST}),
        CTX,
    )
    r.withdraw(IPV4_UNICAST, v4(3))  # before the dump job ran
    while r.busy:
        r.work()
    msgs = decode_all(r.take_output()["10.0.0.2"])
    sent = {p for m in msgs for p in m.nlri}  # type: ignore[attr-defined]
    assert v4(3) not in sent and len(sent) == 9


def test_two_octet_peer_gets_as4_path() -> None:
    r = Router(400000, 1)
    ctx2 = SessionContext(four_octet_as=False)
    r.peer_up(
        Source.peer("10.0.0.2", 400000, 7, 2),
        ImportRules(policy=ACCEPT_ALL),
        ExportTarget(
            "10.0.0.2", 400000, 7, {IPV4_UNICAST: bytes([10, 0, 0, 1])}, policy=ACCEPT_ALL
        ),
        frozenset({IPV4_UNICAST}),
        ctx2,
        four_octet=False,
    )
    r.originate(IPV4_UNICAST, v4(1), ATTRS)
    while r.busy:
        r.work()
    data = r.take_output()["10.0.0.2"]
    msg = next(decode_message(raw, ctx2) for _t, raw in iter_messages(data))
    assert msg.attributes.as_path == AsPath.sequence(23456)  # type: ignore[attr-defined]
    assert msg.attributes.as4_path == AsPath.sequence(400000)  # type: ignore[attr-defined]


# --------------------------------------------------------------- topologies


def test_full_mesh_every_node_hears_a_route_exactly_once_and_withdrawals_spread() -> None:
    net = Net()
    names = [f"10.0.0.{i}" for i in range(1, 6)]
    for n in names:
        net.add(n)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            net.link(a, b)
    net.settle()
    p = v4(42)
    net.nodes[names[0]].router.originate(IPV4_UNICAST, p, ATTRS)
    net.settle()
    for n in names[1:]:
        node = net.nodes[n]
        best = node.router.loc.best(IPV4_UNICAST, p)
        assert best is not None and best.source.name == names[0]
        assert best.next_hop == net.nodes[names[0]].address
        heard = {k: v for k, v in node.heard.items() if k[2] == p}
        assert heard == {(names[0], IPV4_UNICAST, p): 1}  # iBGP split horizon
    net.nodes[names[0]].router.withdraw(IPV4_UNICAST, p)
    net.settle()
    assert all(net.nodes[n].router.loc.best(IPV4_UNICAST, p) is None for n in names)


def test_reflector_pair_reflects_cuts_loops_and_survives_losing_one() -> None:
    net = Net()
    rr = ["10.0.0.1", "10.0.0.2"]
    clients = ["10.0.0.11", "10.0.0.12", "10.0.0.13"]
    for n in rr:
        net.add(n, cluster="244.0.0.1")
    for n in clients:
        net.add(n)
    net.link(rr[0], rr[1])
    for c in clients:
        for r in rr:
            net.link(c, r)
    net.settle()
    p = v4(7)
    net.nodes[clients[0]].router.originate(IPV4_UNICAST, p, ATTRS)
    net.settle()
    origin = net.nodes[clients[0]]
    for c in clients[1:]:
        node = net.nodes[c]
        best = node.router.loc.best(IPV4_UNICAST, p)
        assert best is not None
        assert best.attributes.originator_id == origin.rid
        assert best.next_hop == origin.address  # iBGP keeps the next hop
        # Once from each reflector, never more.
        heard = {k: v for k, v in node.heard.items() if k[2] == p}
        assert heard == {(r, IPV4_UNICAST, p): 1 for r in rr}
    # Each reflector dropped the other's reflection (our cluster ID in CLUSTER_LIST).
    for r in rr:
        entry = net.nodes[r].router.loc.entry(IPV4_UNICAST, p)
        assert entry is not None and set(entry.paths) == {(clients[0], 0)}
    # The originator ignores its own route coming back (ORIGINATOR_ID).
    assert origin.router.loc.entry(IPV4_UNICAST, p).paths.keys() == {("local", 0)}  # type: ignore[union-attr]
    net.remove(rr[0])
    net.settle()
    for c in clients[1:]:
        best = net.nodes[c].router.loc.best(IPV4_UNICAST, p)
        assert best is not None and best.source.name == rr[1]
    origin.router.withdraw(IPV4_UNICAST, p)
    net.settle()
    assert all(net.nodes[c].router.loc.best(IPV4_UNICAST, p) is None for c in clients)


def test_ebgp_ring_cuts_the_loop_and_prefers_the_shorter_path() -> None:
    net = Net()
    for i, asn in ((1, 65001), (2, 65002), (3, 65003)):
        net.add(f"10.0.0.{i}", asn)
    net.link("10.0.0.1", "10.0.0.2")
    net.link("10.0.0.2", "10.0.0.3")
    net.link("10.0.0.3", "10.0.0.1")
    net.settle()
    p = v4(9)
    net.nodes["10.0.0.1"].router.originate(IPV4_UNICAST, p, ATTRS)
    delivered = net.settle()
    assert delivered < 20
    for n in ("10.0.0.2", "10.0.0.3"):
        best = net.nodes[n].router.loc.best(IPV4_UNICAST, p)
        assert best is not None and best.attributes.as_path == AsPath.sequence(65001)
    # AS 65001 never accepted its own route back.
    entry = net.nodes["10.0.0.1"].router.loc.entry(IPV4_UNICAST, p)
    assert entry is not None and set(entry.paths) == {("local", 0)}


def _learn(r: Router, name: str, count: int, asn: int = 7) -> None:
    attrs = PathAttributes(origin=0, as_path=AsPath.sequence(asn), next_hop=bytes([10, 0, 0, 2]))
    r.receive(name, Update(attributes=attrs, nlri=tuple(v4(i) for i in range(count))))


def test_a_suspended_peer_keeps_its_routes_and_is_sent_nothing() -> None:
    r = Router(US, 1)
    up(r, "10.0.0.2", 7)
    up(r, "10.0.0.3", 8)
    _learn(r, "10.0.0.2", 10)
    r.take_output()
    rib = r.peers["10.0.0.2"].adj_in
    r.peer_suspend("10.0.0.2")  # graceful restart: the routes stay candidates
    assert len(r.loc) == 10 and not r.busy
    r.originate(IPV4_UNICAST, v4(500), ATTRS)
    out = r.take_output()
    assert "10.0.0.2" not in out and "10.0.0.3" in out
    # The helper sweeps two stale routes while the peer is away.
    rib.mark_stale([IPV4_UNICAST])
    for i in range(2, 10):
        rib.stale[IPV4_UNICAST].discard((v4(i), 0))
    swept = rib.sweep_stale()
    assert len(swept) == 2
    assert len(r.apply("10.0.0.2", swept)) == 2
    assert len(r.loc) == 9  # 8 kept and our own
    # The peer comes back: same Adj-RIB-In, and the whole table is sent again.
    up(r, "10.0.0.2", 7)
    assert r.peers["10.0.0.2"].adj_in is rib
    msgs = decode_all(r.take_output()["10.0.0.2"])
    sent = {p for m in msgs for p in getattr(m, "nlri", ())}
    assert v4(500) in sent and msgs[-1] == Update.end_of_rib()


def test_a_quick_reconnect_keeps_what_the_new_session_announced(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(router_module, "SLICE", 10)
    r = Router(US, 1)
    up(r, "10.0.0.2", 7)
    _learn(r, "10.0.0.2", 100)
    r.peer_down("10.0.0.2")  # removal queued, not yet run
    r.work(1)
    up_now = Source.peer("10.0.0.2", US, 7, 2)
    r.peer_up(
        up_now,
        ImportRules(policy=ACCEPT_ALL),
        ExportTarget("10.0.0.2", US, 7, {IPV4_UNICAST: bytes([10, 0, 0, 1])}, policy=ACCEPT_ALL),
        frozenset({IPV4_UNICAST}),
        CTX,
    )
    _learn(r, "10.0.0.2", 50)  # the new session announces the first 50 again
    while r.busy:
        r.work(1)
    assert len(r.loc) == 50
    assert all(r.loc.best(IPV4_UNICAST, v4(i)) is not None for i in range(50))
    assert len(r.peers["10.0.0.2"].adj_in) == 50


def test_output_waits_for_a_peer_that_is_not_ready_and_coalesces() -> None:
    r = Router(US, 1)
    up(r, "10.0.0.2", 7)
    r.take_output()
    r.originate(IPV4_UNICAST, v4(1), ATTRS)
    r.originate(IPV4_UNICAST, v4(2), ATTRS)
    assert r.take_output(lambda name: False) == {}
    r.withdraw(IPV4_UNICAST, v4(2))  # changed again while held: never sent at all
    msgs = decode_all(r.take_output(lambda name: True)["10.0.0.2"])
    assert [p for m in msgs for p in m.nlri] == [v4(1)]  # type: ignore[attr-defined]
    assert not any(m.withdrawn for m in msgs)  # type: ignore[attr-defined]


def test_a_peer_whose_own_path_becomes_best_is_sent_a_withdrawal() -> None:
    r = Router(US, 1)
    up(r, "10.0.0.2", 7)
    up(r, "10.0.0.3", 8)
    _learn(r, "10.0.0.3", 1, asn=8)  # B's path, sent to A
    msgs = decode_all(r.take_output()["10.0.0.2"])
    assert [p for m in msgs for p in m.nlri] == [v4(0)]  # type: ignore[attr-defined]
    # A announces a shorter path: it wins, and A must no longer hold ours.
    attrs = PathAttributes(origin=0, as_path=AsPath.sequence(7), next_hop=bytes([10, 0, 0, 2]))
    r.receive("10.0.0.2", Update(attributes=attrs, nlri=(v4(0),)))
    assert r.loc.best(IPV4_UNICAST, v4(0)).source.name == "10.0.0.2"  # type: ignore[union-attr]
    out = r.take_output()
    msgs = decode_all(out["10.0.0.2"])
    assert [p for m in msgs for p in m.withdrawn] == [v4(0)]  # type: ignore[attr-defined]
    assert "10.0.0.3" in out  # and B is told A's path
