"""Every class of malformed message, sent by a hand-made peer, gets the RFC's answer
(a NOTIFICATION, RFC 4271 §6; or RFC 7606 treat-as-withdraw / attribute discard)
from our speaker, while its session with BIRD 2 stays up throughout."""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass

import pytest

from bgpd.fsm import SessionConfig, SessionState
from bgpd.fsm.negotiation import build_open
from bgpd.messages import IPV4_UNICAST, encode_message, prefix_from_text
from bgpd.standalone import StandaloneSpeaker
from tests.conftest import require_programs

from .conftest import SpeakerFactory
from .lab import OUR_AS, PEER_AS, Bird, Lab, Recorder, bird_config, wait_for

pytestmark = pytest.mark.interop

MARKER = b"\xff" * 16


def msg(mtype: int, body: bytes = b"", length: int | None = None) -> bytes:
    size = 19 + len(body) if length is None else length
    return MARKER + struct.pack(">HB", size, mtype) + body


def attr(flags: int, code: int, value: bytes) -> bytes:
    return struct.pack(">BBB", flags, code, len(value)) + value


ORIGIN = attr(0x40, 1, b"\x00")
AS_PATH = attr(0x40, 2, b"\x02\x01" + struct.pack(">I", PEER_AS))
NEXT_HOP = attr(0x40, 3, bytes([198, 18, 0, 77]))
GOOD = ORIGIN + AS_PATH + NEXT_HOP


def update(attrs: bytes, nlri: bytes = b"", withdrawn: bytes = b"") -> bytes:
    body = struct.pack(">H", len(withdrawn)) + withdrawn + struct.pack(">H", len(attrs)) + attrs
    return msg(2, body + nlri)


def peer_open(router_id: int, asn: int = PEER_AS, **kw: object) -> bytes:
    cfg = SessionConfig(local_as=asn, peer_as=OUR_AS, local_id=router_id, hold_time=9)
    data = encode_message(build_open(cfg))
    if kw.get("version") is not None:
        data = data[:19] + bytes([int(kw["version"])]) + data[20:]  # type: ignore[call-overload]
    if kw.get("my_as") is not None:
        data = data[:20] + struct.pack(">H", kw["my_as"]) + data[22:]
    if kw.get("hold") is not None:
        data = data[:22] + struct.pack(">H", kw["hold"]) + data[24:]
    if kw.get("bgp_id") is not None:
        data = data[:24] + struct.pack(">I", kw["bgp_id"]) + data[28:]
    return data


def open_with_unknown_parameter(router_id: int) -> bytes:
    body = bytes([4]) + struct.pack(">HHI", PEER_AS, 9, router_id) + bytes([3, 99, 1, 0])
    return msg(1, body)


@dataclass(frozen=True)
class Case:
    name: str
    phase: str  # "connect": instead of our OPEN; "established": after a good route
    data: bytes
    expect: tuple[int, int] | str  # NOTIFICATION (code, subcode), "withdraw" or "discard"


def cases(router_id: int, nlri: bytes) -> list[Case]:
    bad_prefix = bytes([33, 10, 0, 0, 0, 0])
    mp_reach = attr(0x80, 14, struct.pack(">HBB", 2, 1, 16) + bytes(16) + b"\x00")
    return [
        Case("marker", "connect", b"\x00" * 16 + msg(4)[16:], (1, 1)),
        Case("short-length", "connect", msg(4, length=18), (1, 2)),
        Case("keepalive-too-long", "connect", msg(4, b"\x00"), (1, 2)),
        Case("unknown-type", "connect", msg(9), (1, 3)),
        Case("open-version", "connect", peer_open(router_id, version=3), (2, 1)),
        Case("open-peer-as", "connect", peer_open(router_id, asn=65099), (2, 2)),
        Case("open-as-disagree", "connect", peer_open(router_id, my_as=65099), (2, 2)),
        Case("open-bgp-id", "connect", peer_open(router_id, bgp_id=0), (2, 3)),
        Case("open-parameter", "connect", open_with_unknown_parameter(router_id), (2, 4)),
        Case("open-hold-time", "connect", peer_open(router_id, hold=2), (2, 6)),
        Case("update-in-opensent", "connect", update(GOOD, nlri), (5, 1)),
        Case("open-in-established", "established", peer_open(router_id), (5, 3)),
        Case("withdrawn-overrun", "established", msg(2, b"\x00\x09\x18\x0a"), (3, 1)),
        Case("attrs-overrun-message", "established", msg(2, b"\x00\x00\x00\x40" + GOOD), (3, 1)),
        Case(
            "unknown-well-known", "established", update(GOOD + attr(0x40, 99, b"x"), nlri), (3, 2)
        ),
        Case("bad-nlri", "established", update(GOOD, bad_prefix), (3, 10)),
        Case("mp-reach-twice", "established", update(GOOD + mp_reach + mp_reach), (3, 1)),
        Case("route-refresh-length", "established", msg(5, b"\x00\x01\x01\x01\x00"), (7, 1)),
        Case("missing-origin", "established", update(AS_PATH + NEXT_HOP, nlri), "withdraw"),
        Case(
            "bad-origin",
            "established",
            update(attr(0x40, 1, b"\x07") + AS_PATH + NEXT_HOP, nlri),
            "withdraw",
        ),
        Case(
            "origin-flags",
            "established",
            update(attr(0xC0, 1, b"\x00") + AS_PATH + NEXT_HOP, nlri),
            "withdraw",
        ),
        Case(
            "next-hop-length",
            "established",
            update(ORIGIN + AS_PATH + attr(0x40, 3, bytes(5)), nlri),
            "withdraw",
        ),
        Case(
            "as-path-overrun",
            "established",
            update(ORIGIN + attr(0x40, 2, b"\x02\x05\x00\x00") + NEXT_HOP, nlri),
            "withdraw",
        ),
        Case(
            "med-length", "established", update(GOOD + attr(0x80, 4, b"\x00\x01"), nlri), "withdraw"
        ),
        Case(
            "communities-length",
            "established",
            update(GOOD + attr(0xC0, 8, b"\x00\x01\x02"), nlri),
            "withdraw",
        ),
        Case(
            "aggregator-length",
            "established",
            update(GOOD + attr(0xC0, 7, b"\x00\x01\x02"), nlri),
            "discard",
        ),
    ]


async def read_message(reader: asyncio.StreamReader, timeout: float) -> tuple[int, bytes]:
    head = await asyncio.wait_for(reader.readexactly(19), timeout)
    length, mtype = struct.unpack(">HB", head[16:])
    return mtype, await asyncio.wait_for(reader.readexactly(length - 19), timeout)


async def notification(reader: asyncio.StreamReader, timeout: float = 5.0) -> tuple[int, int]:
    while True:
        mtype, body = await read_message(reader, timeout)
        if mtype == 3:
            return body[0], body[1]


async def test_malformed_messages_get_the_rfc_answer(lab: Lab, speaker: SpeakerFactory) -> None:
    require_programs("bird", "birdc", package="bird2")
    link = lab.link()
    raw_peers = [f"127.0.0.{10 + i}" for i in range(40)]
    peer_cfg = {"as": PEER_AS, "hold_time": 9, "passive": True, "error_wait": [30, 30]}
    app, rec = await speaker(
        [("127.0.0.1", 0), (link.our_v4, 0)],
        [
            {"address": link.peer_v4, "as": PEER_AS, "hold_time": 9, "connect_delay": 0.2},
            *({"address": a, **peer_cfg} for a in raw_peers),
        ],
    )
    bird = Bird(lab, link.ns, "peer")
    bird.start(bird_config(link, our_port=app.speaker.ports[1], routes4=("10.30.0.0/24",)))
    await wait_for(lambda: bool(rec.of("established", link.peer_v4)), 20, "the BIRD session")

    failures: list[str] = []
    for i, name in enumerate(c.name for c in cases(1, b"")):
        address = raw_peers[i]
        router_id = 0xC6120000 + 10 + i
        prefix = prefix_from_text(f"10.77.{i}.0/24")[1]
        case = {c.name: c for c in cases(router_id, prefix)}[name]
        try:
            got = await run_case(app, rec, address, router_id=router_id, prefix=prefix, case=case)
        except (AssertionError, TimeoutError, asyncio.IncompleteReadError, OSError) as e:
            got = f"error {e!r}"
        if got != case.expect:
            failures.append(f"{case.name}: expected {case.expect}, got {got}")
    assert not failures, "\n".join(failures)
    # The well-behaved session never noticed.
    assert rec.of("down", link.peer_v4) == []
    assert app.speaker.peers[link.peer_v4].driver.session.state == SessionState.ESTABLISHED
    assert bird.established()


async def run_case(
    app: StandaloneSpeaker,
    rec: Recorder,
    address: str,
    *,
    router_id: int,
    prefix: bytes,
    case: Case,
) -> tuple[int, int] | str:
    """Connect as ``address``, send the case's bytes, and say what came back."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", app.speaker.ports[0], local_addr=(address, 0)
    )
    try:
        if case.phase == "connect":
            writer.write(case.data)
            return await notification(reader)
        writer.write(peer_open(router_id))
        types = [(await read_message(reader, 5))[0] for _ in range(2)]
        assert types == [1, 4], f"expected OPEN and KEEPALIVE, got {types}"
        writer.write(msg(4))
        writer.write(update(GOOD, prefix))
        rib = app.peers[address].rib
        key = (prefix, 0)
        await wait_for(lambda: key in rib.routes(IPV4_UNICAST), 5, "the good route")
        writer.write(case.data)
        if isinstance(case.expect, tuple):
            return await notification(reader)
        if case.expect == "withdraw":
            await wait_for(lambda: key not in rib.routes(IPV4_UNICAST), 5, "treat-as-withdraw")
        try:
            mtype, body = await read_message(reader, 1.0)
        except TimeoutError:
            pass
        else:
            if mtype == 3:
                return (body[0], body[1])
        session = app.speaker.peers[address].driver.session
        assert session.state == SessionState.ESTABLISHED, session.state
        if case.expect == "discard":
            assert key in rib.routes(IPV4_UNICAST)
            assert rib.routes(IPV4_UNICAST)[key].attributes.aggregator is None
        assert rec.of("update-error", address), "the fault was not reported"
        return case.expect
    finally:
        writer.close()
