"""The session core on virtual time: two cores joined in memory, no sockets, no sleeps."""

from __future__ import annotations

import struct
from dataclasses import replace

import pytest

from bgpd.fsm import (
    Connect,
    Disconnect,
    EndOfRib,
    Established,
    RouteRefreshRequested,
    RoutesReceived,
    Session,
    SessionConfig,
    SessionDown,
    SessionEvent,
    SessionState,
    UpdateErrorHandled,
)
from bgpd.messages import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    AsPath,
    CapabilityCode,
    Notification,
    PathAttributes,
    RouteRefresh,
    Update,
    decode_message,
    encode_message,
    iter_messages,
    prefix_from_text,
)

A_ID, B_ID = 0xC6120001, 0xC6120002
P = prefix_from_text("10.1.0.0/16")[1]


def config(
    local_as: int = 65001, peer_as: int = 65002, local_id: int = A_ID, **kw: object
) -> SessionConfig:
    return SessionConfig(local_as=local_as, peer_as=peer_as, local_id=local_id, **kw)  # type: ignore[arg-type]


class SessionPair:
    """Two session cores joined by an in-memory link."""

    def __init__(self, a: SessionConfig, b: SessionConfig) -> None:
        self.a = Session(a)
        self.b = Session(b)
        self.events: dict[str, list[SessionEvent]] = {"a": [], "b": []}
        self.wire: dict[str, list[bytes]] = {"a": [], "b": []}  # what each side sent
        self.link_up = False

    def drain(self) -> None:
        for name, s in (("a", self.a), ("b", self.b)):
            while (ev := s.next_event()) is not None:
                self.events[name].append(ev)

    def connect(self, now: float) -> None:
        self.a.connection_made(now, outgoing=True)
        self.b.connection_made(now, outgoing=False)
        self.link_up = True

    def pump(self, now: float, a_to_b: bool = True, b_to_a: bool = True) -> None:
        for _ in range(20):
            moved = False
            for src, dst, name, allowed in (
                (self.a, self.b, "a", a_to_b),
                (self.b, self.a, "b", b_to_a),
            ):
                data = src.data_to_send()
                if data:
                    self.wire[name].append(data)
                    if allowed and self.link_up:
                        dst.receive_data(data, now)
                        moved = True
            self.drain()
            if not moved:
                return

    def run(self, until: float, step_to_timer: bool = True, **pump: bool) -> float:
        """Advance virtual time, firing timers and pumping bytes, until ``until``."""
        now = 0.0
        while True:
            deadlines = [t for t in (self.a.get_timer(), self.b.get_timer()) if t is not None]
            nxt = min(deadlines) if deadlines else None
            if nxt is None or nxt > until:
                return until
            now = nxt
            self.a.handle_timer(now)
            self.b.handle_timer(now)
            self.pump(now, **pump)

    def establish(self, now: float = 0.0) -> None:
        self.a.start(now)
        self.b.start(now, passive=True)
        self.drain()
        self.connect(now)
        self.pump(now)
        assert self.a.state == self.b.state == SessionState.ESTABLISHED


def sent_messages(session_bytes: list[bytes]) -> list[object]:
    return [decode_message(m) for _t, m in iter_messages(b"".join(session_bytes), 65535)]


def notifications(pair: SessionPair, side: str) -> list[Notification]:
    return [m for m in sent_messages(pair.wire[side]) if isinstance(m, Notification)]


def test_start_waits_connect_delay_then_asks_the_driver_to_connect() -> None:
    s = Session(config())
    s.start(0.0)
    assert s.state == SessionState.CONNECT
    assert s.get_timer() == 2.0  # Calico's "connect delay time 2"
    assert s.next_event() is not None  # StateChanged
    s.handle_timer(2.0)
    events = [s.next_event(), s.next_event()]
    assert any(isinstance(e, Connect) for e in events)
    assert s.get_timer() == 7.0  # "connect retry time 5"


def test_passive_session_listens_and_never_dials() -> None:
    s = Session(config(passive=True))
    s.start(0.0)
    assert s.state == SessionState.ACTIVE
    assert s.get_timer() is None
    s.connection_made(1.0, outgoing=False)
    assert s.state == SessionState.OPENSENT
    assert isinstance(decode_message(s.data_to_send()), type(s.local_open))


def test_establish_and_negotiate() -> None:
    a = config(hold_time=90, families=(IPV4_UNICAST, IPV6_UNICAST))
    b = config(65002, 65001, B_ID, hold_time=30, families=(IPV4_UNICAST,))
    pair = SessionPair(a, b)
    pair.establish()
    est = [e for e in pair.events["a"] if isinstance(e, Established)]
    assert len(est) == 1
    neg = est[0].negotiated
    assert (neg.hold_time, neg.keepalive_time) == (30, 10.0)
    assert neg.families == frozenset({IPV4_UNICAST})
    assert neg.peer_as == 65002 and neg.peer_id == B_ID
    assert neg.context.four_octet_as and neg.context.extended_message
    assert neg.route_refresh and neg.enhanced_route_refresh
    assert neg.peer_graceful_restart is not None and neg.graceful_notification
    assert pair.a.get_timer() == 10.0  # the keepalive timer


def test_keepalives_keep_the_session_up_for_an_hour() -> None:
    pair = SessionPair(config(hold_time=9), config(65002, 65001, B_ID, hold_time=9))
    pair.establish()
    pair.run(3600.0)
    assert pair.a.state == pair.b.state == SessionState.ESTABLISHED
    keepalives = [m for m in sent_messages(pair.wire["a"]) if type(m).__name__ == "Keepalive"]
    assert len(keepalives) >= 3600 / 3 - 2


def test_silent_peer_hold_timer_expires_with_notification_4_0() -> None:
    pair = SessionPair(config(hold_time=9), config(65002, 65001, B_ID, hold_time=9))
    pair.establish()
    pair.run(12.0, b_to_a=False)  # B's keepalives never reach A
    assert pair.a.state == SessionState.IDLE
    assert pair.a.get_timer() == 14.0  # restarts after the error wait
    assert [(n.code, n.subcode) for n in notifications(pair, "a")] == [(4, 0)]
    down = [e for e in pair.events["a"] if isinstance(e, SessionDown)]
    assert down[0].reason == "hold timer expired" and down[0].was_established
    assert any(isinstance(e, Disconnect) for e in pair.events["a"])


def test_hold_time_zero_means_no_keepalives() -> None:
    pair = SessionPair(config(hold_time=0), config(65002, 65001, B_ID))
    pair.establish()
    assert pair.a.get_timer() is None
    pair.run(10_000.0)
    assert pair.a.state == SessionState.ESTABLISHED


def test_error_wait_grows_exponentially_to_its_maximum() -> None:
    s = Session(config(passive=True))
    s.start(0.0)
    waits = []
    now = 0.0
    for _ in range(5):
        s.connection_made(now, outgoing=False)
        s.receive_data(encode_message(Notification(6, 0)), now)
        assert s.state == SessionState.IDLE
        deadline = s.get_timer()
        assert deadline is not None
        waits.append(deadline - now)
        now = deadline
        s.handle_timer(now)  # IdleHoldTimer: restart
        assert s.state == SessionState.ACTIVE
    assert waits == [5.0, 10.0, 20.0, 30.0, 30.0]


def raw_open(
    version: int = 4, my_as: int = 65002, hold: int = 90, bgp_id: int = B_ID, params: bytes = b""
) -> bytes:
    body = struct.pack(">BHHIB", version, my_as, hold, bgp_id, len(params)) + params
    return b"\xff" * 16 + struct.pack(">HB", 19 + len(body), 1) + body


def opened(cfg: SessionConfig | None = None) -> Session:
    s = Session(cfg or config(passive=True))
    s.start(0.0)
    s.connection_made(0.0, outgoing=False)
    s.data_to_send()
    assert s.state == SessionState.OPENSENT
    return s


def answer(s: Session) -> list[Notification]:
    return [
        m
        for _t, m in iter_messages(s.data_to_send())
        for m in [decode_message(m)]
        if isinstance(m, Notification)
    ]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (raw_open(version=3), (2, 1, b"\x00\x04")),
        (raw_open(hold=2), (2, 6, b"")),
        (raw_open(my_as=65099), (2, 2, b"")),
        (raw_open(bgp_id=0), (2, 3, b"")),
        # 4-octet AS capability for 65002 next to My AS 65099 (RFC 6793 §4.1)
        (raw_open(my_as=65099, params=bytes([2, 6, 65, 4, 0, 0, 0xFD, 0xEA])), (2, 2, b"")),
    ],
)
def test_open_faults_answered_with_their_notification(
    data: bytes, code: tuple[int, int, bytes]
) -> None:
    s = opened()
    s.receive_data(data, 1.0)
    assert [(n.code, n.subcode, n.data) for n in answer(s)] == [code]
    assert s.state == SessionState.IDLE


def test_ibgp_peer_with_our_identifier_is_refused() -> None:
    s = opened(config(65001, 65001, A_ID, passive=True))
    s.receive_data(raw_open(my_as=65001, bgp_id=A_ID), 1.0)
    assert [(n.code, n.subcode) for n in answer(s)] == [(2, 3)]


def test_missing_required_capability_is_2_7_with_the_capability() -> None:
    s = opened(config(passive=True, required_capabilities=(CapabilityCode.FOUR_OCTET_AS,)))
    s.receive_data(raw_open(), 1.0)
    assert [(n.code, n.subcode, n.data) for n in answer(s)] == [(2, 7, b"\x41\x00")]


def test_update_in_opensent_is_fsm_error_1() -> None:
    s = opened()
    s.receive_data(encode_message(Update()), 1.0)
    assert [(n.code, n.subcode) for n in answer(s)] == [(5, 1)]
    assert s.state == SessionState.IDLE


def test_open_in_openconfirm_is_fsm_error_2() -> None:
    s = opened()
    peer_open = encode_message(Session(config(65002, 65001, B_ID)).local_open)
    s.receive_data(peer_open, 1.0)
    assert s.state == SessionState.OPENCONFIRM
    s.data_to_send()
    s.receive_data(peer_open, 1.0)
    assert [(n.code, n.subcode) for n in answer(s)] == [(5, 2)]


def test_open_in_established_is_fsm_error_3() -> None:
    pair = SessionPair(config(), config(65002, 65001, B_ID))
    pair.establish()
    pair.a.receive_data(encode_message(pair.b.local_open), 5.0)
    assert [(n.code, n.subcode) for n in answer(pair.a)] == [(5, 3)]


def established_pair(**kw: object) -> SessionPair:
    pair = SessionPair(config(**kw), config(65002, 65001, B_ID, **kw))  # type: ignore[arg-type]
    pair.establish()
    pair.drain()
    pair.events = {"a": [], "b": []}
    return pair


def test_updates_end_of_rib_and_route_refresh_become_events() -> None:
    pair = established_pair(families=(IPV4_UNICAST, IPV6_UNICAST))
    attrs = PathAttributes(
        origin=0, as_path=AsPath.sequence(65002), next_hop=bytes([198, 18, 0, 2])
    )
    pair.b.send_update(Update(attributes=attrs, nlri=(P,)), 1.0)
    pair.b.send_update(Update.end_of_rib(), 1.0)
    pair.b.send_update(Update.end_of_rib(IPV6_UNICAST), 1.0)
    pair.b.send_route_refresh(IPV6_UNICAST, 1.0)
    pair.b.send_encoded(encode_message(RouteRefresh(prefix_family := IPV4_UNICAST, 9)), 1.0)
    pair.pump(1.0)
    events = pair.events["a"]
    assert [type(e) for e in events] == [RoutesReceived, EndOfRib, EndOfRib, RouteRefreshRequested]
    assert events[0].update.nlri == (P,)  # type: ignore[union-attr]
    assert [e.family for e in events[1:3]] == [IPV4_UNICAST, IPV6_UNICAST]  # type: ignore[union-attr]
    assert prefix_family == IPV4_UNICAST  # the unknown subtype 9 was ignored


def test_treat_as_withdraw_keeps_the_session() -> None:
    pair = established_pair()
    bad_origin = b"\x40\x01\x01\x07"  # ORIGIN 7: RFC 7606 §7.1 treat-as-withdraw
    attrs = bad_origin + b"\x40\x02\x00" + b"\x40\x03\x04\xc6\x12\x00\x02"
    body = struct.pack(">HH", 0, len(attrs)) + attrs + P
    pair.b.send_encoded(b"\xff" * 16 + struct.pack(">HB", 19 + len(body), 2) + body, 1.0)
    pair.pump(1.0)
    assert pair.a.state == SessionState.ESTABLISHED
    kinds = [type(e) for e in pair.events["a"]]
    assert kinds == [UpdateErrorHandled, RoutesReceived]
    assert pair.events["a"][1].update.withdrawn == (P,)  # type: ignore[union-attr]


def test_malformed_update_that_needs_a_reset_sends_the_notification() -> None:
    pair = established_pair()
    body = struct.pack(">HH", 0, 0) + b"\x21\x0a\x00\x00\x00\x00"  # a /33
    pair.b.send_encoded(b"\xff" * 16 + struct.pack(">HB", 19 + len(body), 2) + body, 1.0)
    pair.pump(1.0)
    assert pair.a.state == SessionState.IDLE
    assert [(n.code, n.subcode) for n in notifications(pair, "a")] == [(3, 10)]


def test_header_fault_sends_1_x() -> None:
    pair = established_pair()
    pair.b.send_encoded(b"\xff" * 16 + b"\x00\x13\x09", 1.0)
    pair.pump(1.0)
    assert [(n.code, n.subcode, n.data) for n in notifications(pair, "a")] == [(1, 3, b"\x09")]


def test_connection_loss_is_graceful_for_a_gr_peer() -> None:
    pair = established_pair()
    pair.a.connection_lost(5.0)
    down = [e for e in (iter(pair.a.next_event, None)) if isinstance(e, SessionDown)]
    assert down and down[0].graceful


def test_connection_loss_without_gr_is_not_graceful() -> None:
    pair = established_pair(graceful_restart=False)
    pair.a.connection_lost(5.0)
    down = [e for e in iter(pair.a.next_event, None) if isinstance(e, SessionDown)]
    assert down and not down[0].graceful


@pytest.mark.parametrize(
    ("n_bit", "note", "graceful"),
    [
        (True, Notification(6, 4), True),  # RFC 8538: N bit keeps GR for a NOTIFICATION
        (True, Notification.hard_reset(Notification(6, 2)), False),
        (False, Notification(6, 4), False),  # RFC 4724 alone: a NOTIFICATION ends GR
    ],
)
def test_notification_and_graceful_restart(n_bit: bool, note: Notification, graceful: bool) -> None:
    pair = established_pair(graceful_notification=n_bit)
    pair.a.receive_data(encode_message(note), 5.0)
    down = [e for e in iter(pair.a.next_event, None) if isinstance(e, SessionDown)]
    assert down[0].received == note and down[0].graceful is graceful


def test_stop_sends_hard_reset_when_n_bit_negotiated() -> None:
    pair = established_pair()
    pair.a.stop(5.0, Notification.shutdown("maintenance"))
    (note,) = answer(pair.a)
    assert (note.code, note.subcode) == (6, 9)
    cause = note.hard_reset_cause
    assert cause is not None and cause.shutdown_communication == "maintenance"
    assert pair.a.state == SessionState.IDLE and pair.a.get_timer() is None  # no restart


def test_stop_without_n_bit_sends_admin_shutdown() -> None:
    pair = established_pair(graceful_notification=False)
    pair.a.stop(5.0)
    assert [(n.code, n.subcode) for n in answer(pair.a)] == [(6, 2)]


def test_collision_dump_sends_cease_7() -> None:
    s = opened()
    s.open_collision_dump(1.0)
    assert [(n.code, n.subcode) for n in answer(s)] == [(6, 7)]
    assert s.state == SessionState.IDLE


def test_delay_open_waits_for_the_peer() -> None:
    s = Session(config(passive=True, delay_open_time=5.0))
    s.start(0.0)
    s.connection_made(0.0, outgoing=False)
    assert s.data_to_send() == b""  # no OPEN yet
    assert s.get_timer() == 5.0
    s.receive_data(raw_open(), 1.0)
    out = [type(decode_message(m)).__name__ for _t, m in iter_messages(s.data_to_send())]
    assert out == ["Open", "Keepalive"]
    assert s.state == SessionState.OPENCONFIRM


def test_delay_open_timer_sends_open() -> None:
    s = Session(config(passive=True, delay_open_time=5.0))
    s.start(0.0)
    s.connection_made(0.0, outgoing=False)
    s.handle_timer(5.0)
    assert s.state == SessionState.OPENSENT and s.data_to_send()


def test_our_bug_ends_only_this_session_with_cease(monkeypatch: pytest.MonkeyPatch) -> None:
    pair = established_pair()
    other = established_pair()

    def broken(now: float, payload: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setitem(pair.a._handlers, "keepalive_received", broken)
    pair.b._on_send_keepalive(5.0, None)
    pair.pump(5.0)
    assert pair.a.state == SessionState.IDLE
    assert [(n.code, n.subcode) for n in notifications(pair, "a")] == [(6, 0)]
    assert "internal error" in pair.a.last_error
    other.b._on_send_keepalive(5.0, None)
    other.pump(5.0)
    assert other.a.state == SessionState.ESTABLISHED


def test_established_session_restarts_after_error_wait() -> None:
    pair = established_pair()
    pair.a.receive_data(encode_message(Notification(6, 4)), 5.0)
    assert pair.a.state == SessionState.IDLE
    assert pair.a.get_timer() == 10.0
    pair.a.handle_timer(10.0)
    assert pair.a.state == SessionState.CONNECT


def test_config_replace_keeps_validation() -> None:
    with pytest.raises(ValueError):
        replace(config(), hold_time=2)


def test_send_hold_timer_ends_a_session_whose_peer_stopped_reading() -> None:
    pair = SessionPair(config(hold_time=9), config(65002, 65001, B_ID, hold_time=9))
    pair.establish()
    pair.a.transmit_blocked(1.0)
    assert 1.0 + 480.0 in pair.a._timers.values()
    pair.run(400.0)  # B's keepalives keep arriving: only the send side is stuck
    assert pair.a.state == SessionState.ESTABLISHED
    pair.run(482.0)
    assert pair.a.state == SessionState.IDLE
    assert [(n.code, n.subcode) for n in notifications(pair, "a")][-1] == (8, 0)
    pair.drain()
    disconnects = [e for e in pair.events["a"] if isinstance(e, Disconnect)]
    assert disconnects == [Disconnect(abort=True)]
    down = [e for e in pair.events["a"] if isinstance(e, SessionDown)]
    assert "send hold" in down[0].reason and down[0].graceful  # B is GR-capable


def test_send_hold_timer_stops_when_the_peer_reads_again() -> None:
    pair = SessionPair(
        config(hold_time=9, send_hold_time=20.0), config(65002, 65001, B_ID, hold_time=9)
    )
    pair.establish()
    pair.a.transmit_blocked(1.0)
    pair.run(15.0)
    pair.a.transmit_resumed(15.0)
    pair.run(100.0)
    assert pair.a.state == SessionState.ESTABLISHED
    pair.a.transmit_blocked(100.0)
    pair.run(121.0)
    assert pair.a.state == SessionState.IDLE


def test_messages_and_updates_are_counted_both_ways() -> None:
    pair = SessionPair(config(), config(65002, 65001, B_ID))
    pair.establish()
    # OPEN and KEEPALIVE each way.
    assert (pair.a.messages_out, pair.a.messages_in) == (2, 2)
    assert pair.a.updates_out == pair.b.updates_in == 0
    update = Update()  # End-of-RIB, IPv4
    pair.a.send_update(update, 0.0)
    pair.a.send_update(update, 0.0)
    pair.pump(0.0)
    assert (pair.a.messages_out, pair.a.updates_out) == (4, 2)
    assert (pair.b.messages_in, pair.b.updates_in) == (4, 2)
