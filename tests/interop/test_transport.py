"""Transport security and liveness against BIRD 2: TCP-MD5 (RFC 2385), GTSM
(RFC 5082), and the hold timer against a frozen peer."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from tests.conftest import require_programs

from .conftest import SpeakerFactory
from .lab import PEER_AS, Bird, Lab, bird_config, sh, wait_for

pytestmark = pytest.mark.interop

QUIET = 6.0  # long enough for several connect attempts from both sides


def _peer(address: str, **extra: object) -> dict[str, object]:
    return {
        "address": address,
        "as": PEER_AS,
        "hold_time": 9,
        "connect_delay": 0.2,
        "connect_retry": 1,
        "error_wait": [0.5, 1],
        **extra,
    }


@pytest.mark.parametrize("matching", [True, False], ids=["same-key", "wrong-key"])
async def test_tcp_md5(lab: Lab, speaker: SpeakerFactory, matching: bool) -> None:
    require_programs("bird", "birdc", package="bird2")
    link = lab.link()
    password = "bgpd-secret" if matching else "not-the-key"
    app, rec = await speaker([(link.our_v4, 0)], [_peer(link.peer_v4, password=password)])
    bird = Bird(lab, link.ns, "peer")
    bird.start(bird_config(link, our_port=app.speaker.ports[0], extra='  password "bgpd-secret";'))
    if matching:
        await wait_for(lambda: bool(rec.of("established")), 15, "the signed session")
        assert bird.established()
    else:
        await asyncio.sleep(QUIET)
        assert not rec.of("established")
        assert not bird.established()
        # The peer did try: its unsigned or wrongly signed segments were dropped.
        assert "ours" in bird.cli("show", "protocols", "ours")


@pytest.mark.parametrize(
    ("hops", "gtsm", "expected"),
    [(1, True, True), (2, False, True), (2, True, False)],
    ids=["direct-gtsm", "two-hops-plain", "two-hops-gtsm-refused"],
)
async def test_gtsm(
    lab: Lab, speaker: SpeakerFactory, hops: int, gtsm: bool, expected: bool
) -> None:
    require_programs("bird", "birdc", package="bird2")
    link = lab.link()
    if hops == 1:
        peer_ns, peer_link, extra = link.ns, link, "  ttl security on;"
    else:
        # root -- router namespace -- peer namespace: the peer is one router away.
        peer_ns = lab.namespace()
        peer_link = lab.join(link.ns, peer_ns)
        sh("ip", "netns", "exec", link.ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        sh("ip", "route", "add", f"198.18.{peer_link.subnet}.0/24", "via", link.peer_v4)
        sh("ip", "-n", peer_ns, "route", "add", "default", "via", peer_link.our_v4)
        extra = "  multihop 2;"
    app, rec = await speaker(
        [(link.our_v4, 0)],
        [
            _peer(
                peer_link.peer_v4,
                ttl_security=1 if gtsm else None,
                multihop=None if gtsm else (2 if hops == 2 else None),
            )
        ],
    )
    conf = bird_config(peer_link, our_port=app.speaker.ports[0], extra=extra)
    # The peer's side of a two-hop lab reaches us at our root-side address.
    conf = conf.replace(f"neighbor {peer_link.our_v4} ", f"neighbor {link.our_v4} ")
    bird = Bird(lab, peer_ns, "peer")
    bird.start(conf)
    if expected:
        await wait_for(lambda: bool(rec.of("established")), 15, "the session")
    else:
        await asyncio.sleep(QUIET)
        assert not rec.of("established")
        assert not bird.established(), bird.cli("show", "protocols", "all", "ours")


async def test_frozen_peer_hold_timer_then_recovery(lab: Lab, speaker: SpeakerFactory) -> None:
    require_programs("bird", "birdc", package="bird2")
    link = lab.link()
    app, rec = await speaker([(link.our_v4, 0)], [_peer(link.peer_v4, hold_time=3)])
    bird = Bird(lab, link.ns, "peer")
    bird.start(bird_config(link, our_port=app.speaker.ports[0], hold=3))
    await wait_for(lambda: bool(rec.of("established")), 15, "the session")
    assert bird.proc is not None
    os.kill(bird.proc.pid, signal.SIGSTOP)
    try:
        await wait_for(lambda: bool(rec.of("down")), 8, "our hold timer")
    finally:
        os.kill(bird.proc.pid, signal.SIGCONT)
    down = rec.of("down")[0]
    assert down["sent_code"] == [4, 0]
    assert down["reason"] == "hold timer expired"
    await wait_for(lambda: len(rec.of("established")) == 2, 20, "the session to come back")
    assert bird.established()
