"""Graceful restart (RFC 4724) both ways with BIRD 2.

- We restart: our process is SIGKILLed (its routes stay in the peer as stale),
  comes back with the Restart State bit, waits for the peer's End-of-RIB, and
  re-announces; the peer's table never loses our routes in between.
- The peer restarts: BIRD is SIGKILLed, we keep its routes as stale; it comes
  back (``bird -R``) without one of them; End-of-RIB removes only that one.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from bgpd.messages import IPV4_UNICAST, IPV6_UNICAST, prefix_from_text
from tests.conftest import require_programs

from .conftest import SpeakerFactory
from .lab import OUR_AS, PEER_AS, Bird, Lab, bird_config, wait_for, wait_sync

pytestmark = pytest.mark.interop


def _free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def _events(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


class Watcher(threading.Thread):
    """Polls the peer's table and counts every look that missed a prefix."""

    def __init__(self, bird: Bird, prefixes: list[str]) -> None:
        super().__init__(daemon=True)
        self.bird, self.prefixes = bird, prefixes
        self.looks = 0
        self.misses: list[tuple[float, str]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            table = self.bird.cli("show", "route", "protocol", "ours")
            self.looks += 1
            for p in self.prefixes:
                if p not in table:
                    self.misses.append((time.monotonic(), p))
            time.sleep(0.05)


def test_our_restart_keeps_our_routes_in_the_peer(lab: Lab) -> None:
    require_programs("bird", "birdc", package="bird2")
    link = lab.link()
    port = _free_port(link.our_v4)
    ours = [f"10.9.{link.subnet}.0/24", f"2001:db8:9:{link.subnet:x}::/64"]
    bird = Bird(lab, link.ns, "peer")
    bird.start(
        bird_config(
            link,
            our_port=port,
            routes4=(f"10.20.{link.subnet}.0/24",),
            routes6=(f"2001:db8:20:{link.subnet:x}::/64",),
        )
    )

    def start_ours(restarting: bool, run: int) -> tuple[object, Path]:
        conf = lab.workdir / f"ours-{run}.json"
        conf.write_text(
            json.dumps(
                {
                    "local_as": OUR_AS,
                    "router_id": "198.18.255.1",
                    "listen": [[link.our_v4, port]],
                    "restarting": restarting,
                    "deferral_time": 30,
                    "peers": [
                        {
                            "address": link.peer_v4,
                            "as": PEER_AS,
                            "families": ["ipv4-unicast", "ipv6-unicast"],
                            "hold_time": 9,
                            "connect_delay": 0.2,
                            "connect_retry": 1,
                            "next_hop": {"ipv6-unicast": link.our_v6},
                        }
                    ],
                    "routes": [{"prefix": p} for p in ours],
                }
            )
        )
        out = lab.workdir / f"ours-{run}.out"
        proc = lab.spawn(None, [sys.executable, "-m", "bgpd.standalone", str(conf)], out)
        return proc, out

    first, _ = start_ours(False, 1)
    wait_sync(lambda: all(p in bird.routes() for p in ours), 20, "BIRD to learn our routes")
    watcher = Watcher(bird, ours)
    watcher.start()
    try:
        lab.kill(first)  # SIGKILL: no NOTIFICATION, the kernel closes the connection
        wait_sync(lambda: not bird.established(), 10, "BIRD to notice the dead session")
        assert all(p in bird.routes() for p in ours), "BIRD dropped our routes at once"
        down_at = time.monotonic()
        _second, out = start_ours(True, 2)
        wait_sync(
            lambda: any(e["event"] == "converged" for e in _events(out)), 30, "our convergence"
        )
        # Let the re-announcement land and the peer's End-of-RIB processing finish.
        wait_sync(lambda: "Established" in bird.cli("show", "protocols", "ours"), 10, "BIRD")
        time.sleep(1.5)
    finally:
        watcher.stop.set()
        watcher.join()
    assert watcher.looks > 10
    assert watcher.misses == [], f"routes missing from the peer: {watcher.misses[:5]}"
    events = _events(out)
    names = [e["event"] for e in events]
    est = names.index("established")
    assert events[est]["peer_graceful_restart"]
    # RFC 4724 §4.1: the restarted speaker waited for the peer's End-of-RIB.
    eor = [i for i, n in enumerate(names) if n == "end-of-rib"]
    conv = names.index("converged")
    assert len(eor) == 2 and est < min(eor) <= max(eor) < conv
    assert events[conv]["timed_out"] is False
    assert time.monotonic() - down_at < 30


async def test_peer_restart_keeps_its_routes_until_end_of_rib(
    lab: Lab, speaker: SpeakerFactory
) -> None:
    require_programs("bird", "birdc", package="bird2")
    link = lab.link()
    keep4, drop4 = f"10.20.{link.subnet}.0/24", f"10.21.{link.subnet}.0/24"
    keep6 = f"2001:db8:20:{link.subnet:x}::/64"
    app, rec = await speaker(
        [(link.our_v4, 0)],
        [
            {
                "address": link.peer_v4,
                "as": PEER_AS,
                "families": ["ipv4-unicast", "ipv6-unicast"],
                "hold_time": 9,
                "connect_delay": 0.2,
                "connect_retry": 1,
                "error_wait": [0.5, 1],
            }
        ],
    )
    port = app.speaker.ports[0]
    bird = Bird(lab, link.ns, "peer")
    bird.start(bird_config(link, our_port=port, routes4=(keep4, drop4), routes6=(keep6,)))
    rib = app.peers[link.peer_v4].rib
    key4 = (prefix_from_text(keep4)[1], 0)
    key6 = (prefix_from_text(keep6)[1], 0)
    gone4 = (prefix_from_text(drop4)[1], 0)
    await wait_for(
        lambda: len(rib.routes(IPV4_UNICAST)) == 2 and len(rib.routes(IPV6_UNICAST)) == 1,
        20,
        "BIRD's routes",
    )
    assert bird.proc is not None
    lab.kill(bird.proc)
    await wait_for(lambda: bool(rec.of("down")), 15, "the session to drop")
    down = rec.of("down")[0]
    assert down["graceful"] is True
    assert rec.of("stale")[0]["routes"] == 3
    assert len(rib) == 3 and rib.is_stale(IPV4_UNICAST, key4)
    bird.socket.unlink(missing_ok=True)
    bird.start(bird_config(link, our_port=port, routes4=(keep4,), routes6=(keep6,)), recovery=True)
    await wait_for(lambda: len(rec.of("end-of-rib")) >= 4, 30, "End-of-RIB after the restart")
    await wait_for(lambda: gone4 not in rib.routes(IPV4_UNICAST), 5, "the dropped route to go")
    assert key4 in rib.routes(IPV4_UNICAST) and not rib.is_stale(IPV4_UNICAST, key4)
    assert key6 in rib.routes(IPV6_UNICAST) and not rib.is_stale(IPV6_UNICAST, key6)
    withdrawn = [r["prefix"] for r in rec.of("withdraw")]
    assert withdrawn == [drop4], "only the route the peer no longer has was withdrawn"
    assert rec.of("established")[1]["peer_restarting"] is True
