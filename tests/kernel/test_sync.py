"""The kernel driver against the real kernel: routes land, come back when deleted
by hand or lost with their interface, survive our restart (adopted, and stale
ones pruned only after convergence), and never disturb other protocols."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bgpd.kernel.fib import Fib
from bgpd.kernel.rtnl import RTN_BLACKHOLE, KernelRoute, NextHop
from bgpd.kernel.sync import KernelSync
from tests.interop.lab import wait_for

from .conftest import GATEWAY, Netns

V4 = socket.AF_INET


NEAR = NextHop(GATEWAY)


def route(fib: Fib, i: int, hop: NextHop = NEAR) -> KernelRoute:
    return fib.route(V4, bytes([10, 20 + (i >> 8), i & 255, 0]), 24, nexthops=(hop,))


def bird_routes(ns: Netns) -> list[str]:
    return ns.routes("proto", "bird")


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, event: str, **fields: Any) -> None:
        self.seen.append((event, fields))

    def of(self, event: str) -> list[dict[str, Any]]:
        return [f for e, f in self.seen if e == event]


Start = Callable[..., Any]


@pytest.fixture
async def start(netns: Netns) -> AsyncIterator[Start]:
    made: list[KernelSync] = []

    async def make(fib: Fib, events: Events | None = None) -> KernelSync:
        sync = KernelSync(fib, netns.name, events)
        await sync.start()
        made.append(sync)
        return sync

    try:
        yield make
    finally:
        for sync in made:
            sync.close()


async def settled(sync: KernelSync) -> None:
    await wait_for(lambda: sync.idle, 10, "the FIB to settle")


async def test_routes_land_and_one_changed_by_hand_comes_back(netns: Netns, start: Start) -> None:
    fib = Fib()
    sync = await start(fib)
    for i in range(1000):
        sync.want(route(fib, i))
    await settled(sync)
    assert len(bird_routes(netns)) == 1000
    netns.ip("route", "del", "10.20.7.0/24", "proto", "bird")
    await wait_for(lambda: len(bird_routes(netns)) == 1000, 1.0, "the deleted route back")
    assert "10.20.7.0/24 via 198.18.5.2 dev up0" in bird_routes(netns)
    # Replaced by hand, even under our protocol number: ours again.
    netns.ip("route", "replace", "10.20.7.0/24", "via", "198.18.5.3", "proto", "bird")
    await wait_for(
        lambda: "10.20.7.0/24 via 198.18.5.2 dev up0" in bird_routes(netns),
        1.0,
        "the replaced route repaired",
    )
    assert len(bird_routes(netns)) == 1000


async def test_routes_lost_with_their_interface_return_when_it_is_up(
    netns: Netns, start: Start
) -> None:
    fib = Fib()
    sync = await start(fib)
    for i in range(50):
        sync.want(route(fib, i))
    await settled(sync)
    netns.ip("link", "set", "up0", "down")
    await wait_for(lambda: not bird_routes(netns), 2.0, "the kernel to drop routes via up0")
    netns.ip("link", "set", "up0", "up")
    await wait_for(lambda: len(bird_routes(netns)) == 50, 3.0, "routes back on up0")


async def test_restart_adopts_keeps_stale_until_convergence_and_spares_others(
    netns: Netns, start: Start
) -> None:
    netns.ip("route", "add", "10.20.3.0/24", "via", "198.18.5.2", "proto", "static")
    netns.ip("route", "add", "10.30.0.0/16", "via", "198.18.5.2")  # proto boot
    before = Fib()
    first = await start(before)
    for i in range(10):
        first.want(route(before, i))
    first.want(before.route(V4, bytes([10, 40, 0, 0]), 26, type=RTN_BLACKHOLE))
    await settled(first)
    first.close()  # persist: nothing removed
    mine = bird_routes(netns)
    assert len(mine) == 10  # nine routes and the blackhole; 10.20.3.0/24 belongs to static
    assert "blackhole 10.40.0.0/26" in mine

    events = Events()
    after = Fib()
    second = await start(after, events)
    assert events.of("kernel-table") == [{"table": 254, "ours": 10, "others": 3}]
    for i in range(5):
        second.want(route(after, i))
    await settled(second)
    assert bird_routes(netns) == mine  # stale routes stay until convergence
    second.converge()
    await settled(second)
    assert sorted(bird_routes(netns)) == sorted(
        f"10.20.{i}.0/24 via 198.18.5.2 dev up0" for i in (0, 1, 2, 4)
    )
    assert "10.20.3.0/24 via 198.18.5.2 dev up0 proto static" in netns.routes()
    assert "10.30.0.0/16 via 198.18.5.2 dev up0" in netns.routes()
    assert second.status()["blocked"] == 1


async def test_a_refused_route_is_reported_and_lands_once_reachable(
    netns: Netns, start: Start
) -> None:
    events = Events()
    fib = Fib()
    sync = await start(fib, events)
    far = route(fib, 1, NextHop(socket.inet_aton("198.19.0.2")))
    sync.want(far)
    await wait_for(lambda: bool(events.of("kernel-refused")), 2.0, "the refusal")
    refused = events.of("kernel-refused")[0]
    assert refused["route"].startswith("10.20.1.0/24 via 198.19.0.2") and refused["errno"]
    assert sync.status()["refused"][0]["errno"] == refused["errno"]
    netns.ip("addr", "add", "198.19.0.1/24", "dev", "up0")
    await wait_for(lambda: len(bird_routes(netns)) == 1, 2.0, "the route once reachable")
    assert sync.status()["refused"] == []
