"""Pods on different nodes reach each other, and every node's kernel holds the
routes Calico would program, in each encapsulation (CALICO.md §1.7, §6.2):

- direct: ``<block> via <node IP> dev eth0 proto bird``;
- VXLAN: ``<block> via <that node's VTEP> dev vxlan.calico proto bird onlink``,
  the VTEP being the node's ``ipv4VXLANTunnelAddr``; the pings go through the
  tunnel (its counters move);
- CrossSubnet (nodes 1 and 3 on 198.18.1.0/24, node 2 on 198.18.2.0/24 behind
  the fabric's router): direct to a node on the same subnet, VXLAN to one on
  the other;
- in every mode the node's own block is ``blackhole <block> proto bird``.

One three-node mesh lab per encapsulation, shared by the module's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bgpd.lab import Lab
from bgpd.lab.topology import ip

from .conftest import DATASTORES, diagnose, running_lab


@pytest.fixture(
    scope="module",
    params=[(e, d) for d in DATASTORES for e in ("direct", "vxlan", "crosssubnet")],
    ids="-".join,
)
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    encap, datastore = request.param
    state: Path = tmp_path_factory.mktemp(f"lab-{encap}-{datastore}")
    with running_lab(state, nodes=3, mode="mesh", encap=encap, datastore=datastore) as lab:
        yield lab


def vtep(lab: Lab, node: str) -> str:
    resource = lab.resource("Node", node)
    assert resource is not None, f"{node} wrote no Node resource"
    address = resource["spec"].get("ipv4VXLANTunnelAddr")
    assert address, f"{node}'s Node resource has no ipv4VXLANTunnelAddr: {resource}"
    return str(address)


def expected_route(lab: Lab, viewer: str, owner: str, block: str) -> str:
    if viewer == owner:
        return f"blackhole {block} proto bird"
    near, far = lab.net(viewer), lab.net(owner)
    tunnel = lab.encap == "vxlan" or (lab.encap == "crosssubnet" and near.subnet != far.subnet)
    if tunnel:
        return f"{block} via {vtep(lab, owner)} dev vxlan.calico proto bird onlink"
    return f"{block} via {far.address} dev eth0 proto bird"


def test_every_block_is_routed_as_calico_routes_it(lab: Lab) -> None:
    blocks = lab.blocks()
    assert all(len(cidrs) == 1 for cidrs in blocks.values()), blocks
    for viewer in lab.node_names:
        for owner, cidrs in blocks.items():
            for block in cidrs:
                want = expected_route(lab, viewer, owner, block)
                assert lab.route(viewer, block) == want, diagnose(lab)


def test_pods_on_different_nodes_reach_each_other(lab: Lab) -> None:
    for a in lab.pods:
        for b in lab.pods:
            if a.node != b.node:
                result = lab.ping_result(a, b.ip, count=2, interval=0.05)
                assert result.loss == 0.0, f"{a.name} -> {b.name}:\n{result.output}"


def test_the_tunnel_carries_exactly_the_far_traffic(lab: Lab) -> None:
    """Pings to a node's pods move its peer's ``vxlan.calico`` counters only when
    the route says tunnel (every other node in VXLAN, the far subnet in CrossSubnet)."""
    if lab.encap == "direct":
        assert "vxlan.calico" not in ip(lab.net("node1").ns, "link", "show")
        return
    device = ip(lab.net("node1").ns, "-d", "link", "show", "vxlan.calico")
    assert "vxlan id 4096" in device and "dstport 4789" in device, device
    source = lab.pods_on("node1")[0]
    for target in ("node2", "node3"):
        tunnel = lab.encap == "vxlan" or lab.net(target).subnet != lab.net("node1").subnet
        before = tx_packets(lab, "node1")
        assert lab.ping(source, lab.pods_on(target)[0].ip, count=5, flood=True) == 0.0
        moved = tx_packets(lab, "node1") - before
        assert (moved >= 5) if tunnel else (moved == 0), (target, moved)


def tx_packets(lab: Lab, node: str) -> int:
    stats = ip(lab.net(node).ns, "-s", "link", "show", "vxlan.calico")
    return int(stats.split("TX:")[1].splitlines()[1].split()[1])


def test_node_status_lists_every_mesh_peer_established(lab: Lab) -> None:
    for node in lab.node_names:
        text = lab.node_status(node)
        assert "Calico process is running." in text, text
        assert "IPv4 BGP status" in text, text
        for other in lab.node_names:
            if other == node:
                continue
            row = [line for line in text.splitlines() if f" {lab.net(other).address} " in line]
            assert len(row) == 1, text
            assert "node-to-node mesh" in row[0] and "Established" in row[0], text


def test_api_reports_the_kernel_routes_installed(lab: Lab) -> None:
    blocks = lab.blocks()
    fib = {r["prefix"]: r for r in lab.api_routes("node1")["fib"]["ipv4"]}
    for owner, cidrs in blocks.items():
        for block in cidrs:
            assert block in fib and fib[block]["installed"], (block, fib)
            kind = "blackhole" if owner == "node1" else "unicast"
            assert fib[block]["type"] == kind, fib[block]
