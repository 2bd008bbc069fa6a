"""Several standalone speakers in one process, over real TCP on loopback: the
RIB wired to the sessions (reflection, withdrawal, policy, session loss)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from bgpd.messages import IPV4_UNICAST, prefix_from_text
from bgpd.rib import Path
from bgpd.standalone import ConfigError, StandaloneSpeaker
from bgpd.standalone_config import parse_config
from reflector import cluster_id_value

AS = 65000
RR, A, B, C = "127.0.0.10", "127.0.0.11", "127.0.0.12", "127.0.0.13"
CLUSTER = "244.0.0.1"
FAST = {"connect_delay": 0.05, "connect_retry": 0.3, "error_wait": [0.1, 0.5], "hold_time": 9}

Make = Callable[..., Awaitable[StandaloneSpeaker]]


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    started: list[StandaloneSpeaker] = []

    async def start(address: str, peers: list[dict[str, Any]], **doc: Any) -> StandaloneSpeaker:
        full = {
            "local_as": doc.pop("local_as", AS),
            "router_id": address.replace("127.", "10."),
            "listen": [[address, 0]],
            "log_routes": False,
            "peers": [{**FAST, "local_address": address, **p} for p in peers],
            **doc,
        }
        app = StandaloneSpeaker(full)
        await app.start()
        started.append(app)
        return app

    try:
        yield start
    finally:
        for app in started:
            await app.close()


def best(app: StandaloneSpeaker, text: str) -> Path | None:
    _afi, prefix = prefix_from_text(text)
    return app.router.loc.best(IPV4_UNICAST, prefix)


async def until(pred: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not pred():
            await asyncio.sleep(0.02)
    assert pred(), what


def rid(address: str) -> int:
    return int.from_bytes(bytes(int(x) for x in address.replace("127.", "10.").split(".")))


async def test_reflector_passes_routes_between_clients_and_to_non_clients(make: Make) -> None:
    rr = await make(
        RR,
        [
            {"address": A, "as": AS, "passive": True, "route_reflector_client": True},
            {"address": B, "as": AS, "passive": True, "route_reflector_client": True},
            {"address": C, "as": AS, "passive": True},  # a non-client
        ],
        cluster_id=CLUSTER,
    )
    port = rr.speaker.ports[0]
    up = {"address": RR, "as": AS, "port": port}
    a = await make(A, [up], routes=[{"prefix": "10.1.0.0/24", "next_hop": A}])
    b = await make(B, [up])
    c = await make(C, [up], routes=[{"prefix": "10.3.0.0/24", "next_hop": C}])

    await until(lambda: best(b, "10.1.0.0/24") is not None, "client to client")
    await until(lambda: best(c, "10.1.0.0/24") is not None, "client to non-client")
    await until(lambda: best(a, "10.3.0.0/24") is not None, "non-client to client")
    got = best(b, "10.1.0.0/24")
    assert got is not None
    assert got.attributes.originator_id == rid(A)
    assert got.attributes.cluster_list == (cluster_id_value(CLUSTER),)
    assert got.next_hop == bytes([127, 0, 0, 11])  # iBGP: the next hop is kept
    assert got.attributes.local_pref == 100

    # Each hears each route once, and never its own back: A (client) gets C's,
    # B (client) both, C (non-client) only A's.
    await until(lambda: len(b.peers[RR].rib) == 2, "both routes at B")
    assert {k[0] for k in a.peers[RR].rib.routes(IPV4_UNICAST)} == {
        prefix_from_text("10.3.0.0/24")[1]
    }
    assert {k[0] for k in c.peers[RR].rib.routes(IPV4_UNICAST)} == {
        prefix_from_text("10.1.0.0/24")[1]
    }
    # The originator's withdrawal propagates through the reflector.
    a.router.withdraw(IPV4_UNICAST, prefix_from_text("10.1.0.0/24")[1])
    a._kick()
    await until(lambda: best(b, "10.1.0.0/24") is None, "withdrawal at the client")
    await until(lambda: best(c, "10.1.0.0/24") is None, "withdrawal at the non-client")


async def test_routes_leave_the_loc_rib_when_the_session_ends(make: Make) -> None:
    b = await make(B, [{"address": A, "as": 65001, "passive": True, "graceful_restart": False}])
    a = await make(
        A,
        [{"address": B, "as": AS, "port": b.speaker.ports[0], "graceful_restart": False}],
        local_as=65001,
        routes=[{"prefix": f"10.{i}.0.0/16"} for i in range(50)],
    )
    await until(lambda: len(b.router.loc) == 50, "all 50 routes at B")
    path = best(b, "10.7.0.0/16")
    assert path is not None
    assert path.attributes.as_path is not None and path.attributes.as_path.first_as() == 65001
    assert path.next_hop == bytes([127, 0, 0, 11])  # eBGP: next hop self
    await a.close()
    await until(lambda: len(b.router.loc) == 0, "withdrawn when the session went")


async def test_rfc8212_without_policy_nothing_crosses_ebgp(make: Make) -> None:
    b = await make(
        B,
        [{"address": A, "as": 65001, "passive": True, "import": None, "export": None}],
        routes=[{"prefix": "10.2.0.0/24"}],
    )
    a = await make(
        A,
        [{"address": B, "as": AS, "port": b.speaker.ports[0]}],
        local_as=65001,
        routes=[{"prefix": "10.1.0.0/24"}],
    )
    await until(lambda: len(b.peers[A].rib) == 1, "the route in B's Adj-RIB-In")
    # A got B's End-of-RIB, so B's table has been sent: without a policy, empty.
    await until(lambda: bool(a.router.peers) and not a.router.busy, "A's session")
    await asyncio.sleep(0.2)
    assert len(b.router.loc) == 1  # only B's own: A's is received but not a candidate
    assert len(a.peers[B].rib) == 0
    assert len(a.router.loc) == 1


async def test_import_policy_sets_local_pref_and_rejects(make: Make) -> None:
    b = await make(
        B,
        [
            {
                "address": A,
                "as": AS,
                "passive": True,
                "import": [
                    {"prefix": "10.1.0.0/16", "min_length": 24, "set_local_pref": 300},
                    {"prefix": "10.2.0.0/16", "action": "reject"},
                ],
            }
        ],
    )
    await make(
        A,
        [{"address": B, "as": AS, "port": b.speaker.ports[0]}],
        routes=[{"prefix": "10.1.5.0/24"}, {"prefix": "10.2.5.0/24"}, {"prefix": "10.3.0.0/16"}],
    )
    await until(lambda: len(b.peers[A].rib) == 3, "three routes received")
    path = best(b, "10.1.5.0/24")
    assert path is not None and path.attributes.local_pref == 300
    assert best(b, "10.2.5.0/24") is None
    three = best(b, "10.3.0.0/16")
    assert three is not None and three.attributes.local_pref == 100


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"import": "some"}, "peers[0].import"),
        ({"export": [{"prefix": "10.0.0.0/33"}]}, "peers[0].export[0].prefix"),
        ({"export": [{"action": "drop"}]}, "peers[0].export[0].action"),
        ({"export": [{"community": "65536:1"}]}, "peers[0].export[0].community"),
        ({"export": [{"max_length": 24}]}, "peers[0].export[0]: operator and lengths"),
        ({"export": [{"colour": "red"}]}, "unknown keys ['colour']"),
        ({"route_reflector_client": True}, "peers[0].route_reflector_client: needs a cluster_id"),
        ({"next_hop_mode": "Other"}, "peers[0].next_hop_mode"),
        ({"allowed_local_as": -1}, "peers[0].allowed_local_as"),
    ],
)
def test_bad_configuration_names_the_field(doc: dict[str, Any], message: str) -> None:
    full = {"local_as": AS, "router_id": "10.0.0.1", "peers": [{"address": A, "as": AS, **doc}]}
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_config(full)


def test_duplicate_peer_is_refused() -> None:
    peer = {"address": A, "as": AS}
    with pytest.raises(ConfigError, match=r"peers\[1\].address"):
        parse_config({"local_as": AS, "router_id": "10.0.0.1", "peers": [peer, peer]})


@pytest.mark.parametrize(
    ("kernel", "message"),
    [
        ({"protocol": 3}, "kernel.protocol: 3 belongs to the kernel, boot or static routes"),
        ({"table": 0}, "kernel.table: 0 is not an integer in 1..4294967295"),
        ({"pools": [{"cidr": "10.0.0.0/33"}]}, "kernel.pools[0].cidr: "),
        ({"pools": [{"cidr": "10.0.0.0/8", "vxlan_mode": "Sometimes"}]},
         "kernel.pools[0].vxlan_mode: 'Sometimes' is not a valid Mode"),
        ({"pools": [{"cidr": "10.0.0.0/8", "vxlan_mode": "Always", "ipip_mode": "Always"}]},
         "kernel.pools[0]: pool 10.0.0.0/8: ipipMode and vxlanMode cannot both be enabled"),
        ({"vxlan": {"local": "10.0.0.1", "address": "10.1.0.0", "mac": "66:00"}},
         "kernel.vxlan.mac: '66:00' is not a MAC address"),
        ({"vxlan": {"local": "10.0.0.1"}}, "kernel.vxlan.address: missing address"),
        ({"vteps": [{"node": "10.0.0.2", "address": "10.1.0.0", "mac": "zz:0:0:0:0:0"}]},
         "kernel.vteps[0].mac: "),
        ({"subnets": ["10.0.0.1/40"]}, "kernel.subnets[0]: "),
        ({"pools": ["10.0.0.0/8"]}, "kernel.pools[0]: must be an object"),
        ({"vxlan": "on"}, "kernel.vxlan: must be an object"),
        ({"ipip": True}, "kernel.ipip: must be an object"),
        ({"vteps": [None]}, "kernel.vteps[0]: must be an object"),
    ],
)  # fmt: skip
def test_bad_kernel_section_names_the_field(kernel: dict[str, Any], message: str) -> None:
    doc = {"local_as": AS, "router_id": "10.0.0.1", "kernel": kernel}
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_config(doc)


def test_kernel_section_defaults_are_calicos() -> None:
    doc = {"local_as": AS, "router_id": "10.0.0.1", "kernel": {}}
    kernel = parse_config(doc).kernel
    assert kernel is not None
    assert (kernel.table, kernel.protocol, kernel.metric) == (254, 12, 0)
    assert kernel.vxlan is None and not kernel.ipip
    vx = {"local": "10.0.0.1", "address": "10.1.0.0"}
    parsed = parse_config({**doc, "kernel": {"vxlan": vx}}).kernel
    assert parsed is not None and parsed.vxlan is not None
    assert (parsed.vxlan.vni, parsed.vxlan.port, parsed.vxlan.mtu) == (4096, 4789, None)
