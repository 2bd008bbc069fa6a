"""Routes learned from real BGP peers (BIRD 2) written into a node's table by
our speaker, checked through netlink (``ip route``): every next-hop mode, ECMP,
IPv6, the node's own blackhole, routes of other protocols and tables left
alone, repair after a hand deletion and an interface flap, and a restart
under a ping flood that loses no packet."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import require_programs, require_root
from tests.interop.lab import Bird, Lab, Link, bird_config, sh, wait_sync

from .nodes import Node, peer, ping

VXLAN_MAC = "66:00:00:00:00:0b"
BOTH = ["ipv4-unicast", "ipv6-unicast"]


@pytest.fixture
def lab() -> Iterator[Lab]:
    require_root()
    require_programs("ip", package="iproute2")
    require_programs("bird", "birdc", package="bird2")
    require_programs("ping", package="iputils-ping")
    lab = Lab()
    try:
        yield lab
    finally:
        lab.teardown()


def start_bird(lab: Lab, link: Link, peer_as: int, routes4: tuple[str, ...], **kw: Any) -> Bird:
    bird = Bird(lab, link.ns, f"bird{peer_as}")
    bird.start(bird_config(link, peer_as=peer_as, our_port=179, routes4=routes4, **kw))
    return bird


def test_routes_from_peers_reach_the_kernel_in_every_mode(lab: Lab) -> None:
    a = lab.namespace()
    to_b = lab.join(a, lab.namespace(), "up0", "eth0")
    to_c = lab.join(a, lab.namespace(), "up1", "eth0")
    b_ip, c_ip = to_b.peer_v4, to_c.peer_v4
    start_bird(
        lab, to_b, 65002,
        ("10.60.0.0/24", "10.61.1.0/26", "10.62.1.0/26", "10.64.1.0/26", "10.65.0.0/24",
         "10.66.0.0/24"),
        routes6=("2001:db8:60::/64",),
    )  # fmt: skip
    start_bird(lab, to_c, 65003, ("10.59.0.0/24", "10.63.1.0/26", "10.65.0.0/24"))
    # Already in the table: another protocol's route at a key a peer announces,
    # our protocol's route in another table, another protocol's route elsewhere.
    sh("ip", "-n", a, "route", "add", "10.66.0.0/24", "via", c_ip, "proto", "static")
    sh("ip", "-n", a, "route", "add", "10.67.0.0/24", "via", b_ip, "table", "100", "proto", "bird")
    sh("ip", "-n", a, "route", "add", "10.69.0.0/24", "via", b_ip, "proto", "boot")
    node = Node(
        lab,
        a,
        "node",
        {
            "local_as": 65001,
            "router_id": to_b.our_v4,
            "listen": [["0.0.0.0", 179]],
            "deferral_time": 20,
            "peers": [
                peer(b_ip, 65002, families=BOTH, next_hop={"ipv6-unicast": to_b.our_v6}),
                peer(c_ip, 65003, families=BOTH, next_hop={"ipv6-unicast": to_c.our_v6}),
            ],
            "routes": [{"prefix": "10.62.0.0/26", "blackhole": True}],
            "kernel": {
                "pools": [
                    {"cidr": "10.61.0.0/16"},
                    {"cidr": "10.62.0.0/16", "vxlan_mode": "Always"},
                    {"cidr": "10.63.0.0/16", "vxlan_mode": "Always"},
                    {"cidr": "10.64.0.0/16", "ipip_mode": "Always"},
                ],
                "subnets": [f"{to_b.our_v4}/24", f"{to_c.our_v4}/24"],
                "vxlan": {"local": to_b.our_v4, "address": "10.62.0.1"},
                "ipip": {"address": "10.64.0.1"},
                # B's VTEP is known; C's is not.
                "vteps": [{"node": b_ip, "address": "10.62.1.0", "mac": VXLAN_MAC}],
            },
        },
    )
    node.start()
    converged = node.wait_event("kernel-converged", 40)
    expected = {
        "10.59.0.0/24": f"10.59.0.0/24 via {c_ip} dev up1 proto bird",
        "10.60.0.0/24": f"10.60.0.0/24 via {b_ip} dev up0 proto bird",
        "10.61.1.0/26": f"10.61.1.0/26 via {b_ip} dev up0 proto bird",
        "10.62.1.0/26": "10.62.1.0/26 via 10.62.1.0 dev vxlan.calico proto bird onlink",
        "10.62.0.0/26": "blackhole 10.62.0.0/26 proto bird",
        "10.65.0.0/24": (
            f"10.65.0.0/24 proto bird nexthop via {b_ip} dev up0 weight 1 "
            f"nexthop via {c_ip} dev up1 weight 1"
        ),
        "10.66.0.0/24": f"10.66.0.0/24 via {c_ip} dev up1 proto static",
        "2001:db8:60::/64": (
            f"2001:db8:60::/64 via {to_b.peer_v6} dev up0 proto bird metric 1024 pref medium"
        ),
    }
    for prefix, route in expected.items():
        node.wait_route(prefix, route)
    # Not installable, and the reason is reported.
    assert node.route("10.63.1.0/26") == ""
    unplanned = converged["unplanned"]
    assert unplanned.get(f"no VTEP known for node {c_ip}") == 1
    tunl0 = [e for e in node.events("kernel-device-error") if e["device"] == "tunl0"]
    if tunl0:  # this kernel: no IPIP module, so no tunl0 and no IPIP route
        assert "this kernel has no IPIP support" in tunl0[0]["error"]
        assert node.route("10.64.1.0/26") == ""
        assert unplanned.get("pool 10.64.0.0/16 uses IPIP and tunl0 is missing") == 1
    else:
        node.wait_route("10.64.1.0/26", f"10.64.1.0/26 via {b_ip} dev tunl0 proto bird onlink", 10)
    # Other tables and protocols untouched.
    assert sh("ip", "-n", a, "route", "show", "table", "100").stdout.split()[:3] == [
        "10.67.0.0/24", "via", b_ip,
    ]  # fmt: skip
    # ip shows no "proto boot".
    assert node.route("10.69.0.0/24") == f"10.69.0.0/24 via {b_ip} dev up0"
    # Only what is listed above carries our protocol in the main table.
    for family, dsts in (("-4", [p for p in expected if "." in p]), ("-6", ["2001:db8:60::/64"])):
        text = sh("ip", "-j", family, "-n", a, "route", "show", "proto", "bird").stdout
        listed = json.loads(text)
        assert sorted(r["dst"] for r in listed) == sorted(d for d in dsts if d != "10.66.0.0/24")

    # A route deleted by hand comes back, without any periodic scan.
    sh("ip", "-n", a, "route", "del", "10.60.0.0/24")
    deleted = time.monotonic()
    wait_sync(lambda: node.route("10.60.0.0/24") != "", 5, "the deleted route to return")
    repaired = time.monotonic() - deleted
    print(f"route deleted by hand back after {repaired * 1000:.0f} ms")
    # An interface flap: the kernel drops the routes through up1 without an event.
    sh("ip", "-n", a, "link", "set", "up1", "down")
    node.wait_route("10.59.0.0/24", "", 5)  # the kernel drops C's route
    sh("ip", "-n", a, "link", "set", "up1", "up")
    for prefix in ("10.59.0.0/24", "10.65.0.0/24"):
        node.wait_route(prefix, expected[prefix], 10)
    assert node.events("kernel-refused") == []


def test_restart_under_ping_flood_loses_no_packet(lab: Lab) -> None:
    a = lab.namespace()
    link = lab.join(a, lab.namespace(), "up0", "eth0")
    sh("ip", "-n", link.ns, "addr", "add", "10.80.0.1/32", "dev", "lo")
    start_bird(lab, link, 65002, ("10.80.0.0/24",))
    config: dict[str, Any] = {
        "local_as": 65001,
        "router_id": link.our_v4,
        "listen": [["0.0.0.0", 179]],
        "deferral_time": 20,
        "peers": [peer(link.peer_v4, 65002)],
        "kernel": {},
    }
    node = Node(lab, a, "node", config)
    node.start()
    route = f"10.80.0.0/24 via {link.peer_v4} dev up0 proto bird"
    node.wait_route("10.80.0.0/24", route, 30)
    assert ping(a, "10.80.0.1", "-c", "1", "-W", "2").returncode == 0
    count = 2500
    flood = subprocess.Popen(
        ["ip", "netns", "exec", a, "ping", "-n", "-q", "-i", "0.002", "-c", str(count),
         "-W", "1", "10.80.0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        time.sleep(1)
        node.kill()  # SIGKILL: nothing of ours runs on the way out
        assert node.route("10.80.0.0/24") == route  # persist
        # A route of ours from a previous life that nobody announces any more.
        sh("ip", "-n", a, "route", "add", "10.81.0.0/24", "via", link.peer_v4, "proto", "bird")
        config["restarting"] = True
        node.start()
        table = node.wait_event("kernel-table")
        assert table["ours"] == 2
        # Stale routes wait for convergence (End-of-RIB from the peer).
        assert node.route("10.81.0.0/24") != ""
        converged = node.wait_event("kernel-converged")
        assert converged["timed_out"] is False
        node.wait_route("10.81.0.0/24", "", 5)  # the stale route goes
        assert node.route("10.80.0.0/24") == route
        out, _ = flood.communicate(timeout=60)
    finally:
        if flood.poll() is None:
            flood.kill()
            flood.wait()
    assert f"{count} packets transmitted, {count} received" in out, out
    assert node.events("kernel-refused") == []
