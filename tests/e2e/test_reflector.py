"""The issue's three manifests (node1 a route reflector, a BGPPeer selecting the
reflectors for every node, the mesh off with AS 63400) applied to a running
three-node mesh turn it into a reflector topology (CALICO.md §1.4-1.5): every
Mesh_ session goes, node1 has a Node_ session to each other node and takes them
as clients, the others have one Node_ session, to node1; routes between the
clients are reflected with their next hop kept, and pods still reach each other;
the reflector crashing under a flood between its clients loses no packet.

And a lab started in reflector mode comes up in that topology directly."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from bgpd.lab import Lab
from bgpd.lab.resources import reflector_manifests

from .conftest import DATASTORES, diagnose, running_lab


@pytest.fixture(scope="module", params=DATASTORES)
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    state: Path = tmp_path_factory.mktemp(f"lab-reflector-{request.param}")
    with running_lab(state, nodes=3, mode="mesh", encap="direct", datastore=request.param) as lab:
        yield lab


def peers(lab: Lab, node: str) -> dict[str, dict[str, object]]:
    return {p["name"]: p for p in lab.status(node)["peers"]}


def check_reflector_topology(lab: Lab) -> None:
    n1 = lab.net("node1")
    for node in lab.node_names:
        status = lab.status(node)
        assert status["as_number"] == 63400, status
        got = peers(lab, node)
        assert not [name for name in got if name.startswith("Mesh_")], got
        if node == "node1":
            assert status["cluster_id"] == "1.1.1.1", status
            want = {f"Node_{lab.net(o).address.replace('.', '_')}" for o in ("node2", "node3")}
            assert set(got) == want, got
            assert all(p["client"] for p in got.values()), got
        else:
            assert set(got) == {f"Node_{n1.address.replace('.', '_')}"}, got
        for peer in got.values():
            assert peer["type"] == "node specific", peer
            assert peer["bgp_state"] == "Established", peer


def test_the_manifests_replace_the_mesh_by_a_reflector(lab: Lab) -> None:
    assert {p["type"] for p in lab.status("node2")["peers"]} == {"node-to-node mesh"}
    lab.apply(reflector_manifests(lab.net("node1").cidr))
    lab.mode = "reflector"  # what wait_established expects from now on
    lab.wait_established(timeout=60)
    check_reflector_topology(lab)
    text = lab.node_status("node2")
    row = [line for line in text.splitlines() if f" {lab.net('node1').address} " in line]
    assert len(row) == 1 and "node specific" in row[0] and "Established" in row[0], text


def test_clients_routes_are_reflected_with_their_next_hop(lab: Lab) -> None:
    lab.wait_converged()
    blocks = lab.blocks()
    for viewer, owner in (("node2", "node3"), ("node3", "node2"), ("node1", "node2")):
        (block,) = blocks[owner]
        want = f"{block} via {lab.net(owner).address} dev eth0 proto bird"
        assert lab.route(viewer, block) == want, diagnose(lab)
    rib = {r["prefix"]: r for r in lab.api_routes("node2")["rib"]["ipv4"]}
    (block3,) = blocks["node3"]
    assert rib[block3]["from"] == lab.net("node1").address, rib[block3]
    assert rib[block3]["next_hops"] == [lab.net("node3").address], rib[block3]


def test_pods_still_reach_each_other(lab: Lab) -> None:
    for a in lab.pods:
        for b in lab.pods:
            if a.node != b.node:
                result = lab.ping_result(a, b.ip, count=2, interval=0.05)
                assert result.loss == 0.0, f"{a.name} -> {b.name}:\n{result.output}"


def test_the_reflector_crashing_loses_no_packet_between_clients(lab: Lab) -> None:
    """node1, the reflector, SIGKILLed under a flood between its clients' pods:
    the clients keep the routes it reflected (graceful restart), and get them
    again from it when it is back."""
    flood = lab.flood(lab.pods_on("node2")[0], lab.pods_on("node3")[0].ip)
    lab.wait_flowing(flood, 200)
    lab.kill("node1", signal.SIGKILL)
    lab.wait_flowing(flood, 200)
    lab.restart("node1")
    lab.wait_established(timeout=60)
    check_reflector_topology(lab)
    lab.wait_flowing(flood, 200)
    result = flood.stop()
    assert result["lost"] == [] and result["received"] == result["sent"], (result, diagnose(lab))


@pytest.mark.parametrize("datastore", DATASTORES)
def test_a_lab_started_in_reflector_mode(tmp_path: Path, datastore: str) -> None:
    with running_lab(
        tmp_path, nodes=3, mode="reflector", encap="direct", pods_per_node=1, datastore=datastore
    ) as lab:
        check_reflector_topology(lab)
        a, b = lab.pods_on("node2")[0], lab.pods_on("node3")[0]
        assert lab.ping(a, b.ip, count=2) == 0.0
