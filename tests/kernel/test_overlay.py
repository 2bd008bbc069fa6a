"""Pods on different nodes reach each other through the routes our speakers
learn from each other and write into their nodes' tables: over VXLAN, and in
CrossSubnet mode across a router (VXLAN to the far subnet, direct on the
near one).  Every node is a namespace running our speaker as a process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import require_programs, require_root
from tests.interop.lab import Lab, sh

from .nodes import Node, add_pod, forwarding, peer, ping

POOL = "10.70.0.0/16"


@pytest.fixture
def lab() -> Iterator[Lab]:
    require_root()
    require_programs("ip", "bridge", package="iproute2")
    require_programs("ping", package="iputils-ping")
    lab = Lab()
    try:
        yield lab
    finally:
        lab.teardown()


def node_config(n: int, node_ip: str, subnet: str, peers: list[str], mode: str) -> dict[str, Any]:
    """Node ``n`` owns block 10.70.<n>.0/26; its VTEP is the block's first
    address with MAC 66:00:00:00:00:<n>; every other node is a VTEP it knows."""
    return {
        "local_as": 65001,
        "router_id": node_ip,
        "listen": [[node_ip, 179]],
        "deferral_time": 20,
        "log_routes": False,
        "peers": [peer(p) for p in peers],
        "routes": [{"prefix": f"10.70.{n}.0/26", "blackhole": True}],
        "kernel": {
            "pools": [{"cidr": POOL, "vxlan_mode": mode}],
            "subnets": [subnet],
            "vxlan": {"local": node_ip, "address": f"10.70.{n}.0", "mac": f"66:00:00:00:00:0{n}"},
        },
    }


def vteps(nodes: dict[int, str], but: int) -> list[dict[str, str]]:
    return [
        {"node": ip, "address": f"10.70.{n}.0", "mac": f"66:00:00:00:00:0{n}"}
        for n, ip in nodes.items()
        if n != but
    ]


def test_pods_reach_each_other_over_vxlan(lab: Lab) -> None:
    a_ns, b_ns = lab.namespace(), lab.namespace()
    link = lab.join(a_ns, b_ns, "eth0", "eth0")
    ips = {1: link.our_v4, 2: link.peer_v4}
    nodes = []
    for n, ns in ((1, a_ns), (2, b_ns)):
        forwarding(ns)
        # Proxy ARP answers pods for 169.254.1.1 only when the node has a route
        # to it, as a real node's default route is.
        sh("ip", "-n", ns, "route", "add", "default", "via", ips[3 - n])
        config = node_config(n, ips[n], f"{ips[n]}/24", [ips[3 - n]], "Always")
        config["kernel"]["vteps"] = vteps(ips, n)
        node = Node(lab, ns, f"node{n}", config)
        node.start()
        nodes.append(node)
    pod_a = add_pod(lab, a_ns, "cali1", "10.70.1.5")
    add_pod(lab, b_ns, "cali2", "10.70.2.5")
    for node in nodes:
        node.wait_event("kernel-converged")
    a, b = nodes
    # The remote block through the tunnel, our own as a blackhole, both proto bird.
    for node, mine, theirs in ((a, 1, 2), (b, 2, 1)):
        route = f"10.70.{theirs}.0/26 via 10.70.{theirs}.0 dev vxlan.calico proto bird onlink"
        node.wait_route(f"10.70.{theirs}.0/26", route)
        assert node.route(f"10.70.{mine}.0/26") == f"blackhole 10.70.{mine}.0/26 proto bird"
    device = sh("ip", "-n", a_ns, "-d", "link", "show", "vxlan.calico").stdout
    assert "vxlan id 4096" in device and "dstport 4789" in device
    assert "mtu 1450" in device  # the veth's 1500 minus 50
    res = ping(pod_a, "10.70.2.5", "-c", "3", "-W", "2")
    assert res.returncode == 0, res.stdout + res.stderr
    assert " 0% packet loss" in res.stdout
    # The packets went through the tunnel: the device counted them.
    stats = sh("ip", "-n", a_ns, "-s", "link", "show", "vxlan.calico").stdout
    tx_packets = int(stats.split("TX:")[1].splitlines()[1].split()[1])
    assert tx_packets >= 3
    # The device deleted by hand: made again, with its VTEP entries and routes.
    sh("ip", "-n", a_ns, "link", "del", "vxlan.calico")
    a.wait_route("10.70.2.0/26", "10.70.2.0/26 via 10.70.2.0 dev vxlan.calico proto bird onlink")
    res = ping(pod_a, "10.70.2.5", "-c", "2", "-W", "2")
    assert res.returncode == 0, res.stdout + res.stderr
    assert len(a.events("kernel-device")) == 2


def test_cross_subnet_tunnels_only_to_the_far_subnet(lab: Lab) -> None:
    """Nodes 1 and 3 share subnet X (a bridge in the router's namespace); node 2
    is on subnet Y behind the router."""
    router, n1, n2, n3 = (lab.namespace() for _ in range(4))
    forwarding(router)
    sh("ip", "-n", router, "link", "add", "br0", "type", "bridge")
    sh("ip", "-n", router, "addr", "add", "198.18.60.254/24", "dev", "br0")
    sh("ip", "-n", router, "link", "set", "br0", "up")
    ips = {1: "198.18.60.1", 2: "198.18.61.2", 3: "198.18.60.3"}
    for n, ns in ((1, n1), (3, n3)):
        port = f"x{n}"
        sh("ip", "-n", router, "link", "add", port, "type", "veth", "peer", "name", "eth0",
           "netns", ns)  # fmt: skip
        sh("ip", "-n", router, "link", "set", port, "master", "br0", "up")
        sh("ip", "-n", ns, "addr", "add", f"{ips[n]}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "route", "add", "default", "via", "198.18.60.254")
    sh("ip", "-n", router, "link", "add", "y2", "type", "veth", "peer", "name", "eth0",
       "netns", n2)  # fmt: skip
    sh("ip", "-n", router, "addr", "add", "198.18.61.254/24", "dev", "y2")
    sh("ip", "-n", router, "link", "set", "y2", "up")
    sh("ip", "-n", n2, "addr", "add", f"{ips[2]}/24", "dev", "eth0")
    sh("ip", "-n", n2, "link", "set", "eth0", "up")
    sh("ip", "-n", n2, "route", "add", "default", "via", "198.18.61.254")
    nodes: dict[int, Node] = {}
    pods: dict[int, str] = {}
    for n, ns in ((1, n1), (2, n2), (3, n3)):
        forwarding(ns)
        subnet = "198.18.61.0/24" if n == 2 else "198.18.60.0/24"
        others = [ip for m, ip in ips.items() if m != n]
        config = node_config(n, ips[n], subnet, others, "CrossSubnet")
        config["kernel"]["vteps"] = vteps(ips, n)
        nodes[n] = Node(lab, ns, f"node{n}", config)
        nodes[n].start()
        pods[n] = add_pod(lab, ns, f"cali{n}", f"10.70.{n}.5")
    for node in nodes.values():
        node.wait_event("kernel-converged")
    # Node 1: node 2 is beyond the router (VXLAN), node 3 is a neighbour (direct).
    tunnel = "10.70.2.0/26 via 10.70.2.0 dev vxlan.calico proto bird onlink"
    nodes[1].wait_route("10.70.2.0/26", tunnel)
    nodes[1].wait_route("10.70.3.0/26", "10.70.3.0/26 via 198.18.60.3 dev eth0 proto bird")
    nodes[3].wait_route("10.70.1.0/26", "10.70.1.0/26 via 198.18.60.1 dev eth0 proto bird")
    back = "10.70.1.0/26 via 10.70.1.0 dev vxlan.calico proto bird onlink"
    nodes[2].wait_route("10.70.1.0/26", back)
    for target in ("10.70.2.5", "10.70.3.5"):
        res = ping(pods[1], target, "-c", "3", "-W", "2")
        assert res.returncode == 0 and " 0% packet loss" in res.stdout, (target, res.stdout)
    res = ping(pods[2], "10.70.3.5", "-c", "2", "-W", "2")
    assert res.returncode == 0, res.stdout
