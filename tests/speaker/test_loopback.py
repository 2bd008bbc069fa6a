"""Two speakers in one process over real TCP on loopback addresses."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import pytest

from bgpd.fsm import (
    Established,
    RoutesReceived,
    SessionConfig,
    SessionDown,
    SessionEvent,
    SessionState,
)
from bgpd.fsm.driver import Endpoint
from bgpd.fsm.negotiation import build_open
from bgpd.fsm.sockopts import save_syn, syn_ttl, ttl_acceptable
from bgpd.messages import (
    AsPath,
    PathAttributes,
    SessionContext,
    Update,
    encode_message,
    prefix_from_text,
)
from bgpd.speaker import Peer, Speaker

A, B = "127.0.0.1", "127.0.0.2"
KEEPALIVE_BYTES = b"\xff" * 16 + b"\x00\x13\x04"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Recorder:
    def __init__(self) -> None:
        self.events: list[SessionEvent] = []
        self.changed = asyncio.Event()

    def __call__(self, peer: Peer, event: SessionEvent) -> None:
        self.events.append(event)
        self.changed.set()

    async def wait_for(
        self, kind: type, timeout: float = 10.0, where: Callable[[Any], bool] = lambda e: True
    ) -> SessionEvent:
        async with asyncio.timeout(timeout):
            while True:
                for e in self.events:
                    if isinstance(e, kind) and where(e):
                        return e
                self.changed.clear()
                await self.changed.wait()


def cfg(local_as: int, peer_as: int, rid: int, **kw: object) -> SessionConfig:
    base = {
        "connect_delay": 0.05,
        "connect_retry_time": 0.5,
        "error_wait_min": 0.2,
        "error_wait_max": 1.0,
    }
    return SessionConfig(local_as=local_as, peer_as=peer_as, local_id=rid, **{**base, **kw})  # type: ignore[arg-type]


async def pair(
    a_kw: dict[str, object],
    b_kw: dict[str, object],
    a_ep: dict[str, object] | None = None,
    b_ep: dict[str, object] | None = None,
) -> tuple[Speaker, Speaker, Recorder, Recorder]:
    pa, pb = free_port(), free_port()
    ra, rb = Recorder(), Recorder()
    sa, sb = Speaker([(A, pa)], ra), Speaker([(B, pb)], rb)
    await sa.start()
    await sb.start()
    sa.add_peer(Endpoint(B, pb, local_address=A, **(a_ep or {})), cfg(65001, 65002, 1, **a_kw))  # type: ignore[arg-type]
    sb.add_peer(Endpoint(A, pa, local_address=B, **(b_ep or {})), cfg(65002, 65001, 2, **b_kw))  # type: ignore[arg-type]
    return sa, sb, ra, rb


async def test_two_speakers_establish_and_exchange_an_update() -> None:
    sa, sb, ra, rb = await pair({}, {})
    try:
        await ra.wait_for(Established)
        await rb.wait_for(Established)
        peer = sb.peers[A]
        attrs = PathAttributes(
            origin=0, as_path=AsPath.sequence(65002), next_hop=bytes([127, 0, 0, 2])
        )
        p = prefix_from_text("10.9.0.0/16")[1]
        peer.driver.send(encode_message(Update(attributes=attrs, nlri=(p,)), SessionContext()))
        got = await ra.wait_for(RoutesReceived)
        assert got.update.nlri == (p,)  # type: ignore[attr-defined]
    finally:
        await sa.close()
        await sb.close()


async def test_both_active_collide_and_one_session_survives() -> None:
    # Both sides dial at once (connect delay 0): §6.8 leaves exactly one connection.
    sa, sb, ra, rb = await pair({"connect_delay": 0.0}, {"connect_delay": 0.0})
    try:
        await ra.wait_for(Established)
        await rb.wait_for(Established)
        await asyncio.sleep(0.5)
        assert sa.peers[B].driver.session.state == SessionState.ESTABLISHED
        assert sb.peers[A].driver.session.state == SessionState.ESTABLISHED
        assert not [e for e in ra.events if isinstance(e, SessionDown) and e.was_established]
        # Each side's own connect was still pending when the other's arrived: the
        # arrival must wait as a candidate, not cancel the connect (which closed
        # both connections and cost a retry round).
        downs = [e for e in ra.events + rb.events if isinstance(e, SessionDown)]
        assert all(e.reason == "connection collision resolution" for e in downs), downs
    finally:
        await sa.close()
        await sb.close()


async def _read_message(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> bytes:
    """One whole BGP message from a raw socket."""
    data = b""
    need = 19
    while len(data) < need:
        chunk = await loop.sock_recv(sock, need - len(data))
        assert chunk, "connection closed"
        data += chunk
        if len(data) >= 19:
            need = int.from_bytes(data[16:18], "big")
    return data


async def test_an_established_session_wins_over_a_later_connection() -> None:
    """RFC 4271 §6.8: a collision with an Established connection closes the newer one,
    even when the newer one was opened by the side with the higher identifier."""
    loop = asyncio.get_running_loop()
    rec = Recorder()
    sa = Speaker([(A, free_port())], rec)
    await sa.start()
    listener, dialed = socket.socket(), socket.socket()
    listener.bind((B, 0))
    listener.listen(1)
    listener.setblocking(False)
    dialed.bind((B, 0))
    dialed.setblocking(False)
    # Non-GR: a GR-capable peer's new connection would replace the old one (§4.2).
    peer_open = encode_message(build_open(cfg(65002, 65001, 2, graceful_restart=False)))
    main: socket.socket | None = None
    try:
        sa.add_peer(Endpoint(B, listener.getsockname()[1], local_address=A), cfg(65001, 65002, 1))
        async with asyncio.timeout(5):
            main, _ = await loop.sock_accept(listener)
        main.setblocking(False)
        assert (await _read_message(loop, main))[18] == 1  # our OPEN
        # The peer dials too while the first connection waits in OpenSent.
        await loop.sock_connect(dialed, (A, sa.ports[0]))
        assert (await _read_message(loop, dialed))[18] == 1
        await loop.sock_sendall(main, peer_open + KEEPALIVE_BYTES)
        await rec.wait_for(Established)
        # Only now does the OPEN on the second connection arrive.
        await loop.sock_sendall(dialed, peer_open)
        async with asyncio.timeout(5):
            while (msg := await _read_message(loop, dialed))[18] != 3:
                pass
        assert (msg[19], msg[20]) == (6, 7)  # Cease / Connection Collision Resolution
        await asyncio.sleep(0.2)
        assert sa.peers[B].driver.session.state == SessionState.ESTABLISHED
        assert not [e for e in rec.events if isinstance(e, SessionDown)]
    finally:
        if main is not None:
            main.close()
        dialed.close()
        listener.close()
        await sa.close()


async def test_md5_matching_keys_establish() -> None:
    sa, sb, ra, _rb = await pair(
        {}, {"passive": True}, {"password": "s3cret"}, {"password": "s3cret"}
    )
    try:
        await ra.wait_for(Established)
    finally:
        await sa.close()
        await sb.close()


async def test_md5_wrong_key_never_establishes() -> None:
    sa, sb, ra, _rb = await pair(
        {}, {"passive": True}, {"password": "right"}, {"password": "wrong"}
    )
    try:
        with pytest.raises(TimeoutError):
            await ra.wait_for(Established, timeout=3.0)
        assert sa.peers[B].driver.session.state != SessionState.ESTABLISHED
    finally:
        await sa.close()
        await sb.close()


async def test_peer_removed_at_run_time_leaves_others_alone() -> None:
    sa, sb, ra, _rb = await pair({}, {})
    try:
        await ra.wait_for(Established)
        sb.remove_peer(A)
        down = await ra.wait_for(SessionDown, where=lambda e: e.was_established)
        assert down.received is not None and down.received.code == 6  # type: ignore[attr-defined]
    finally:
        await sa.close()
        await sb.close()


@pytest.mark.parametrize(("sender_ttl", "accepted"), [(255, True), (254, False), (64, False)])
def test_gtsm_checks_the_ttl_of_the_saved_syn(sender_ttl: int, accepted: bool) -> None:
    with socket.socket() as listener, socket.socket() as client:
        listener.bind(("127.0.0.1", 0))
        save_syn(listener)
        listener.listen(2)
        client.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, sender_ttl)
        client.connect(listener.getsockname())
        conn, _ = listener.accept()
        with conn:
            assert ttl_acceptable(conn, 1) is accepted
            assert syn_ttl(conn) is None  # the kernel hands the SYN out once
        with socket.socket() as second:
            second.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, sender_ttl)
            second.connect(listener.getsockname())
            conn, _ = listener.accept()
            with conn:
                assert syn_ttl(conn) == sender_ttl


async def test_a_peer_that_stops_reading_ends_only_its_own_session() -> None:
    """RFC 9687: SendHoldTimer ends the stuck session with 8/0; the other stays up."""
    events: list[tuple[str, SessionEvent]] = []
    sa = Speaker([(A, free_port())], lambda p, e: events.append((p.endpoint.peer_address, e)))
    sb = Speaker([(B, free_port())], Recorder())
    await sa.start()
    await sb.start()
    slow = "127.0.0.3"
    raw = socket.socket()
    try:
        sa.add_peer(Endpoint(B, sb.ports[0], local_address=A), cfg(65001, 65002, 1))
        sb.add_peer(Endpoint(A, sa.ports[0], local_address=B), cfg(65002, 65001, 2))
        sa.add_peer(Endpoint(slow, 179), cfg(65001, 65003, 1, passive=True, send_hold_time=2.0))
        loop = asyncio.get_running_loop()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.bind((slow, 0))
        raw.setblocking(False)
        await loop.sock_connect(raw, (A, sa.ports[0]))
        hello = encode_message(build_open(cfg(65003, 65001, 3, hold_time=9))) + KEEPALIVE_BYTES
        await loop.sock_sendall(raw, hello)

        async def keepalives() -> None:  # alive, just never reading
            while True:
                await asyncio.sleep(1.0)
                await loop.sock_sendall(raw, KEEPALIVE_BYTES)

        ticker = loop.create_task(keepalives())
        try:
            async with asyncio.timeout(10):
                while sa.peers[slow].driver.session.state != SessionState.ESTABLISHED:
                    await asyncio.sleep(0.05)
            driver = sa.peers[slow].driver
            blob = encode_message(Update.end_of_rib(), SessionContext()) * 3000
            while driver.writable:
                driver.send(blob)
                await asyncio.sleep(0)
            async with asyncio.timeout(10):
                while not any(p == slow and isinstance(e, SessionDown) for p, e in events):
                    await asyncio.sleep(0.05)
        finally:
            ticker.cancel()
        down = next(e for p, e in events if p == slow and isinstance(e, SessionDown))
        assert isinstance(down, SessionDown)
        assert down.sent is not None and (down.sent.code, down.sent.subcode) == (8, 0)
        assert sa.peers[B].driver.session.state == SessionState.ESTABLISHED
        assert not any(
            p == B and isinstance(e, SessionDown) and e.was_established for p, e in events
        ), [e for p, e in events if p == B and isinstance(e, SessionDown)]
    finally:
        raw.close()
        await sa.close()
        await sb.close()


@pytest.mark.parametrize(("theirs", "established"), [("s3cret", True), ("wrong", False)])
async def test_md5_on_a_dual_stack_listener_for_an_ipv4_peer(
    theirs: str, established: bool
) -> None:
    """An IPv4 peer reaching a ``::`` listener is keyed by its IPv4-mapped address."""
    ra, rb = Recorder(), Recorder()
    sa, sb = Speaker([("::", free_port())], ra), Speaker([(B, free_port())], rb)
    await sa.start()
    await sb.start()
    try:
        sa.add_peer(Endpoint(B, sb.ports[0], password="s3cret"), cfg(65001, 65002, 1, passive=True))
        sb.add_peer(
            Endpoint(A, sa.ports[0], local_address=B, password=theirs), cfg(65002, 65001, 2)
        )
        if established:
            await ra.wait_for(Established)
        else:
            with pytest.raises(TimeoutError):
                await ra.wait_for(Established, timeout=3.0)
    finally:
        await sa.close()
        await sb.close()


async def test_a_stop_behind_a_full_send_buffer_still_delivers_the_notification() -> None:
    """The Cease queued after UPDATEs the kernel has not taken yet goes out last,
    once the peer reads, and then the connection closes."""
    loop = asyncio.get_running_loop()
    rec = Recorder()
    sa = Speaker([(A, free_port())], rec)
    await sa.start()
    raw = socket.socket()
    try:
        sa.add_peer(Endpoint(B, 179), cfg(65001, 65002, 1, passive=True))
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.bind((B, 0))
        raw.setblocking(False)
        await loop.sock_connect(raw, (A, sa.ports[0]))
        await loop.sock_sendall(
            raw, encode_message(build_open(cfg(65002, 65001, 2))) + KEEPALIVE_BYTES
        )
        await rec.wait_for(Established)
        driver = sa.peers[B].driver
        eor = encode_message(Update.end_of_rib(), SessionContext())
        sent = 0
        while driver.writable:
            driver.send(eor * 3000)
            sent += 3000
            await asyncio.sleep(0)
        driver.stop()
        assert driver.sock is None  # the session let go of it; the close is pending
        data = bytearray()
        async with asyncio.timeout(10):
            while chunk := await loop.sock_recv(raw, 1 << 20):
                data += chunk
        # Last comes Cease / Hard Reset (RFC 8538 was negotiated) carrying 6/2.
        assert data.endswith(b"\xff" * 16 + b"\x00\x17\x03\x06\x09\x06\x02")
        assert data.count(eor) >= sent
    finally:
        raw.close()
        await sa.close()
