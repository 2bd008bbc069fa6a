"""Adj-RIB-In, the graceful-restart helper and the restart deferral, on virtual time."""

from __future__ import annotations

import socket

from bgpd.fsm import SessionConfig, SessionDown
from bgpd.fsm.events import Negotiated
from bgpd.fsm.negotiation import build_open, negotiate
from bgpd.messages import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    AsPath,
    GracefulRestart,
    MpReach,
    MpUnreach,
    Notification,
    PathAttributes,
    Update,
    prefix_from_text,
)
from bgpd.rib import AdjRibIn, GracefulRestartHelper, InitialConvergence

P1 = prefix_from_text("10.1.0.0/24")[1]
P2 = prefix_from_text("10.2.0.0/24")[1]
P6 = prefix_from_text("2001:db8:1::/48")[1]
NH6 = socket.inet_pton(socket.AF_INET6, "2001:db8::1")
ATTRS = PathAttributes(origin=0, as_path=AsPath.sequence(65002), next_hop=bytes([198, 18, 0, 2]))


def announce(*prefixes: bytes) -> Update:
    return Update(attributes=ATTRS, nlri=prefixes)


def negotiated(
    families: tuple = (IPV4_UNICAST, IPV6_UNICAST),
    gr: bool = True,
    restarting: bool = False,
    forwarding: bool = True,
) -> Negotiated:
    ours = SessionConfig(local_as=65001, peer_as=65002, local_id=1, families=families)
    peer_cfg = SessionConfig(
        local_as=65002,
        peer_as=65001,
        local_id=2,
        families=families,
        graceful_restart=gr,
        restarting=restarting,
        forwarding_preserved=forwarding,
    )
    return negotiate(ours, build_open(ours), build_open(peer_cfg))


def down(now: float, graceful: bool = True, received: Notification | None = None) -> SessionDown:
    return SessionDown("connection lost", None, received, graceful, True, now)


def test_apply_announces_replaces_and_withdraws() -> None:
    rib = AdjRibIn()
    ch = rib.apply(announce(P1, P2))
    assert [c.key for c in ch] == [(P1, 0), (P2, 0)]
    assert rib.apply(announce(P1)) == []  # the same path again changes nothing
    ch = rib.apply(Update(withdrawn=(P1,)))
    assert [(c.key, c.route) for c in ch] == [((P1, 0), None)]
    ch = rib.apply(
        Update(
            attributes=PathAttributes(origin=0, as_path=AsPath.sequence(1)),
            mp_reach=MpReach(IPV6_UNICAST, NH6, (P6,)),
        )
    )
    assert rib.routes(IPV6_UNICAST)[(P6, 0)].next_hop == NH6
    assert len(rib) == 2
    rib.apply(Update(mp_unreach=MpUnreach(IPV6_UNICAST, (P6,))))
    assert len(rib) == 1


def test_graceful_down_keeps_routes_stale_until_end_of_rib() -> None:
    rib = AdjRibIn()
    gr = GracefulRestartHelper(rib)
    gr.established(negotiated(), 0.0)
    rib.apply(announce(P1, P2))
    assert gr.session_down(down(10.0)) == []
    assert len(rib) == 2 and rib.is_stale(IPV4_UNICAST, (P1, 0))
    assert gr.deadline == 10.0 + 120  # the peer's restart time
    assert gr.established(negotiated(), 20.0) == []
    rib.apply(announce(P1))  # refreshed
    assert not rib.is_stale(IPV4_UNICAST, (P1, 0))
    removed = gr.end_of_rib(IPV4_UNICAST)
    assert [c.key for c in removed] == [(P2, 0)]
    assert list(rib.routes(IPV4_UNICAST)) == [(P1, 0)]
    assert gr.deadline is None


def test_restart_time_expiry_removes_every_stale_route() -> None:
    rib = AdjRibIn()
    gr = GracefulRestartHelper(rib)
    gr.established(negotiated(), 0.0)
    rib.apply(announce(P1))
    gr.session_down(down(5.0))
    assert gr.handle_timer(100.0) == []
    assert [c.key for c in gr.handle_timer(125.0)] == [(P1, 0)]
    assert len(rib) == 0


def test_non_graceful_down_withdraws_everything() -> None:
    rib = AdjRibIn()
    gr = GracefulRestartHelper(rib)
    gr.established(negotiated(), 0.0)
    rib.apply(announce(P1, P2))
    assert len(gr.session_down(down(5.0, graceful=False))) == 2
    assert len(rib) == 0


def test_peer_without_forwarding_state_loses_stale_routes_on_return() -> None:
    rib = AdjRibIn()
    gr = GracefulRestartHelper(rib)
    gr.established(negotiated(), 0.0)
    rib.apply(announce(P1))
    gr.session_down(down(5.0))
    removed = gr.established(negotiated(forwarding=False), 6.0)
    assert [c.key for c in removed] == [(P1, 0)]


def test_stale_routes_without_end_of_rib_go_after_stale_time() -> None:
    rib = AdjRibIn()
    gr = GracefulRestartHelper(rib, stale_time=30.0)
    gr.established(negotiated(), 0.0)
    rib.apply(announce(P1))
    gr.session_down(down(5.0))
    gr.established(negotiated(), 6.0)
    assert gr.deadline == 36.0
    assert len(gr.handle_timer(36.0)) == 1


def test_deferral_waits_for_every_end_of_rib() -> None:
    conv = InitialConvergence(["a", "b"], 0.0)
    conv.established("a", negotiated())
    conv.established("b", negotiated(families=(IPV4_UNICAST,)))
    conv.end_of_rib("a", IPV4_UNICAST)
    conv.end_of_rib("b", IPV4_UNICAST)
    assert not conv.done
    assert conv.waiting_for() == {"a": [IPV6_UNICAST]}
    conv.end_of_rib("a", IPV6_UNICAST)
    assert conv.done and not conv.timed_out


def test_deferral_skips_restarting_and_non_gr_peers() -> None:
    conv = InitialConvergence(["a", "b"], 0.0)
    conv.established("a", negotiated(restarting=True))
    assert not conv.done
    conv.established("b", negotiated(gr=False))
    assert conv.done


def test_deferral_timer_bounds_the_wait_for_a_peer_that_never_comes() -> None:
    conv = InitialConvergence(["a", "down"], 0.0, deferral_time=60.0)
    conv.established("a", negotiated(families=(IPV4_UNICAST,)))
    conv.end_of_rib("a", IPV4_UNICAST)
    assert conv.waiting_for() == {"down": []}
    conv.handle_timer(59.0)
    assert not conv.done
    conv.handle_timer(60.0)
    assert conv.done and conv.timed_out


def test_gr_capability_fields_used_by_the_helper() -> None:
    neg = negotiated()
    cap = neg.peer_graceful_restart
    assert isinstance(cap, GracefulRestart) and cap.restart_time == 120
    assert dict(cap.families) == {IPV4_UNICAST: True, IPV6_UNICAST: True}


def test_afi_safi_disable_withdraws_and_ignores_the_family_until_a_new_session() -> None:
    rib = AdjRibIn()
    rib.apply(announce(P1))
    rib.apply(Update(attributes=ATTRS, mp_reach=MpReach(IPV6_UNICAST, NH6, (P6,))))
    removed = rib.disable(IPV6_UNICAST)
    assert [c.key for c in removed] == [(P6, 0)]
    rib.apply(Update(attributes=ATTRS, nlri=(P2,), mp_reach=MpReach(IPV6_UNICAST, NH6, (P6,))))
    assert set(rib.routes(IPV4_UNICAST)) == {(P1, 0), (P2, 0)}
    assert rib.routes(IPV6_UNICAST) == {}
    rib.session_reset()
    rib.apply(Update(attributes=ATTRS, mp_reach=MpReach(IPV6_UNICAST, NH6, (P6,))))
    assert (P6, 0) in rib.routes(IPV6_UNICAST)
