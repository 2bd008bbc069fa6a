"""The render (bgpd.node.render): Calico v3 resources and IPAM state in, the
speaker's configuration document out (CALICO.md §1.2-1.8, §2).  Pure: every
input is a plain dict built here, every rendered document is also checked by
``parse_config``, and the export policy is evaluated for real."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from bgpd.messages import IPV4_UNICAST, IPV6_UNICAST, Origin, PathAttributes, prefix_from_text
from bgpd.messages.aspath import EMPTY_PATH
from bgpd.node.render import (
    DEFAULT_AS,
    EXCLUDE_LB_LABEL,
    Inputs,
    Plan,
    duration_seconds,
    hash_router_id,
    parse_as,
    render,
    split_peer_ip,
)
from bgpd.rib.policy import Policy
from bgpd.standalone_config import parse_config, parse_policy

Json = dict[str, Any]
V3 = "projectcalico.org/v3"
TIMERS = {"connect_delay": 2, "connect_retry": 5, "error_wait": [5, 30]}
ATTRS = PathAttributes(origin=Origin.IGP, as_path=EMPTY_PATH)


# ------------------------------------------------------------------ resources


def node(
    name: str,
    ipv4: str | None = None,
    ipv6: str | None = None,
    labels: dict[str, str] | None = None,
    spec: Json | None = None,
    **bgp: Any,
) -> Json:
    b: Json = dict(bgp)
    if ipv4:
        b["ipv4Address"] = ipv4
    if ipv6:
        b["ipv6Address"] = ipv6
    return {
        "apiVersion": V3,
        "kind": "Node",
        "metadata": {"name": name, "labels": dict(labels or {})},
        "spec": {"bgp": b, **(spec or {})},
    }


def bgpconfig(name: str = "default", **spec: Any) -> Json:
    return {"apiVersion": V3, "kind": "BGPConfiguration", "metadata": {"name": name}, "spec": spec}


def bgppeer(name: str, **spec: Any) -> Json:
    return {"apiVersion": V3, "kind": "BGPPeer", "metadata": {"name": name}, "spec": spec}


def pool(name: str, cidr: str, **spec: Any) -> Json:
    return {
        "apiVersion": V3,
        "kind": "IPPool",
        "metadata": {"name": name},
        "spec": {"cidr": cidr, **spec},
    }


def bgpfilter(name: str, **spec: Any) -> Json:
    return {"apiVersion": V3, "kind": "BGPFilter", "metadata": {"name": name}, "spec": spec}


def three_nodes(**extra: Any) -> dict[str, Json]:
    return {
        "node1": node("node1", "198.18.0.1/24", **extra),
        "node2": node("node2", "198.18.0.2/24"),
        "node3": node("node3", "198.18.0.3/24"),
    }


def inputs(  # noqa: PLR0917
    me: str,
    nodes: dict[str, Json],
    configs: list[Json] | None = None,
    peers: list[Json] | None = None,
    pools: list[Json] | None = None,
    filters: list[Json] | None = None,
    **kw: Any,
) -> Inputs:
    return Inputs(
        node=me,
        nodes=nodes,
        bgp_configs={c["metadata"]["name"]: c for c in configs or []},
        bgp_peers=list(peers or []),
        pools=list(pools or []),
        filters={f["metadata"]["name"]: f for f in filters or []},
        **kw,
    )


def checked(plan: Plan) -> Plan:
    """Every rendered document must be one the speaker accepts."""
    config = parse_config(plan.doc)
    assert len(config.peers) == len(plan.doc["peers"])
    assert set(plan.peers) == {p["address"] for p in plan.doc["peers"]}
    return plan


def run(me: str, nodes: dict[str, Json], *args: Any, **kw: Any) -> Plan:
    return checked(render(inputs(me, nodes, *args, **kw)))


def peer(plan: Plan, address: str) -> Json:
    found: list[Json] = [p for p in plan.doc["peers"] if p["address"] == address]
    assert len(found) == 1, f"{address} in {[p['address'] for p in plan.doc['peers']]}"
    return found[0]


def names(plan: Plan) -> set[str]:
    return {i.name for i in plan.peers.values()}


def export_policy(doc_peer: Json) -> Policy:
    policy = parse_policy(doc_peer["export"], "x")
    assert policy is not None
    return policy


def verdict(policy: Policy, prefix: str, attrs: PathAttributes = ATTRS) -> PathAttributes | None:
    afi, packed = prefix_from_text(prefix)
    family = IPV4_UNICAST if afi == IPV4_UNICAST.afi else IPV6_UNICAST
    return policy.evaluate(family, packed, attrs, "198.18.0.2", False)


def community(text: str) -> int:
    high, low = text.split(":")
    return int(high) << 16 | int(low)


# ------------------------------------------------------------------ small parts


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (65000, 65000),
        ("65000", 65000),
        ("1.10", 65546),
        ("0.1", 1),
        ("65535.65535", 4294967295),
        ("4200000000", 4200000000),
    ],
)
def test_parse_as(value: object, expected: int) -> None:
    assert parse_as(value) == expected


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("120s", 120.0),
        ("2m30s", 150.0),
        ("1h2m3.5s", 3723.5),
        ("1h", 3600.0),
        ("1.5h", 5400.0),
        ("500ms", 0.5),
        ("250us", 0.00025),
        ("250µs", 0.00025),
        ("10ns", 1e-8),
        ("0s", 0.0),
    ],
)
def test_duration_seconds(text: str, seconds: float) -> None:
    assert duration_seconds(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "s", "5x", "1h 2m", " 5s", "5s ", "-5s", "1d", "5sec"])
def test_duration_seconds_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        duration_seconds(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("198.18.9.9", ("198.18.9.9", None)),
        ("198.18.9.9:1179", ("198.18.9.9", 1179)),
        ("[fd00::9]:179", ("fd00::9", 179)),
        ("[FD00:0::9]:1179", ("fd00::9", 1179)),
        ("[fd00::9]", ("fd00::9", None)),
        ("fd00::9", ("fd00::9", None)),
        ("fd00:0:0::9", ("fd00::9", None)),
    ],
)
def test_split_peer_ip(text: str, expected: tuple[str, int | None]) -> None:
    assert split_peer_ip(text) == expected


@pytest.mark.parametrize("text", ["300.1.1.1", "198.18.9.9:x", "[fd00::9]:x", "nothing", ""])
def test_split_peer_ip_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        split_peer_ip(text)


def reference_hash_id(name: str) -> str:
    """CALICO.md §1.2: the first 4 bytes of SHA-256(nodename), 32 off a first
    octet above 223."""
    b = list(hashlib.sha256(name.encode()).digest()[:4])
    if b[0] > 223:
        b[0] -= 32
    return ".".join(str(x) for x in b)


def test_hash_router_id_matches_the_algorithm() -> None:
    # Find names on both sides of the class D/E adjustment.
    high = next(f"n{i}" for i in range(10000) if hashlib.sha256(f"n{i}".encode()).digest()[0] > 223)
    low = next(f"n{i}" for i in range(10000) if hashlib.sha256(f"n{i}".encode()).digest()[0] < 224)
    for name in (high, low, "node1", "worker-a.example.com"):
        rid = hash_router_id(name)
        assert rid == reference_hash_id(name)
        assert int(rid.split(".")[0]) <= 223
    assert hash_router_id(high).split(".")[0] == str(hashlib.sha256(high.encode()).digest()[0] - 32)


# ------------------------------------------------------------------ the mesh


def test_mesh_of_three_nodes() -> None:
    plan = run("node2", three_nodes())
    assert plan.doc["local_as"] == DEFAULT_AS == 64512
    assert plan.as_number == 64512
    assert names(plan) == {"Mesh_198_18_0_1", "Mesh_198_18_0_3"}
    for address, other in (("198.18.0.1", "node1"), ("198.18.0.3", "node3")):
        p = peer(plan, address)
        assert p["as"] == 64512
        assert p["port"] == 179
        assert p["families"] == ["ipv4-unicast"]
        assert p["local_address"] == "198.18.0.2"
        assert p["graceful_restart"] is True
        assert p["restart_time"] == 120
        assert {k: p[k] for k in TIMERS} == TIMERS
        assert p["import"] == [{"default": "accept"}]
        assert p["export"][-1] == {"default": "reject"}
        assert "password" not in p
        assert "route_reflector_client" not in p
        info = plan.peers[address]
        assert (info.kind, info.type, info.node) == ("Mesh", "node-to-node mesh", other)
        assert (info.address, info.port, info.as_number) == (address, 179, 64512)
    # The lower address listens, the higher one connects.
    assert peer(plan, "198.18.0.1")["passive"] is False
    assert peer(plan, "198.18.0.3")["passive"] is True
    assert "cluster_id" not in plan.doc
    assert plan.cluster_id is None
    assert plan.ipv4 == "198.18.0.2/24"
    assert plan.ipv6 is None
    assert plan.warnings == []


def test_mesh_passive_compares_address_text() -> None:
    """The text "198.18.0.10" < "198.18.0.9" as strings: .10 listens to .9 (the template's
    string comparison, not the numeric one)."""
    nodes = {
        "a": node("a", "198.18.0.10/24"),
        "b": node("b", "198.18.0.9/24"),
        "c": node("c", "198.18.0.100/24"),
    }
    on_a, on_b, on_c = (run(n, nodes) for n in ("a", "b", "c"))
    assert peer(on_a, "198.18.0.9")["passive"] is True
    assert peer(on_b, "198.18.0.10")["passive"] is False
    # "198.18.0.10" < "198.18.0.100": .10 listens, .100 connects.
    assert peer(on_a, "198.18.0.100")["passive"] is True
    assert peer(on_c, "198.18.0.10")["passive"] is False
    # "198.18.0.100" < "198.18.0.9"
    assert peer(on_c, "198.18.0.9")["passive"] is True
    assert peer(on_b, "198.18.0.100")["passive"] is False
    # Exactly one side of every pair connects.
    plans = {"a": on_a, "b": on_b, "c": on_c}
    for x, px in plans.items():
        for y, py in plans.items():
            if x < y:
                ax, ay = (str(nodes[n]["spec"]["bgp"]["ipv4Address"]).split("/")[0] for n in (x, y))
                assert peer(px, ay)["passive"] != peer(py, ax)["passive"]


def test_mesh_port_from_listen_port_and_node_override() -> None:
    configs = [bgpconfig(listenPort=1790), bgpconfig("node.node3", listenPort=1791)]
    plan = run("node1", three_nodes(), configs)
    assert peer(plan, "198.18.0.2")["port"] == 1790
    assert peer(plan, "198.18.0.3")["port"] == 1791
    assert plan.peers["198.18.0.3"].port == 1791
    assert plan.doc["listen"] == [["::", 1790]]
    assert run("node3", three_nodes(), configs).doc["listen"] == [["::", 1791]]


def test_mesh_restart_time() -> None:
    plan = run("node1", three_nodes(), [bgpconfig(nodeMeshMaxRestartTime="5m")])
    assert {p["restart_time"] for p in plan.doc["peers"]} == {300}
    plan = run("node1", three_nodes(), [bgpconfig(nodeMeshMaxRestartTime="90.4s")])
    assert {p["restart_time"] for p in plan.doc["peers"]} == {90}


def test_mesh_password_from_the_secret() -> None:
    asked: list[tuple[str, str]] = []

    def secrets(name: str, key: str) -> str | None:
        asked.append((name, key))
        return "s3cret" if (name, key) == ("bgp-secrets", "mesh") else None

    ref = {"secretKeyRef": {"name": "bgp-secrets", "key": "mesh"}}
    plan = run("node1", three_nodes(), [bgpconfig(nodeMeshPassword=ref)], secrets=secrets)
    assert ("bgp-secrets", "mesh") in asked
    assert {p["password"] for p in plan.doc["peers"]} == {"s3cret"}
    assert plan.warnings == []


def test_mesh_password_missing_secret_warns() -> None:
    ref = {"secretKeyRef": {"name": "bgp-secrets", "key": "absent"}}
    plan = run("node1", three_nodes(), [bgpconfig(nodeMeshPassword=ref)])
    assert all("password" not in p for p in plan.doc["peers"])
    assert len(plan.doc["peers"]) == 2
    assert len(plan.warnings) == 1
    assert "nodeMeshPassword" in plan.warnings[0]
    assert "bgp-secrets/absent" in plan.warnings[0]


def test_as_number_global_and_per_node() -> None:
    nodes = three_nodes()
    nodes["node2"]["spec"]["bgp"]["asNumber"] = 65002
    nodes["node3"]["spec"]["bgp"]["asNumber"] = "1.10"
    configs = [bgpconfig(asNumber=65001)]
    on1 = run("node1", nodes, configs)
    assert on1.doc["local_as"] == on1.as_number == 65001
    assert peer(on1, "198.18.0.2")["as"] == 65002
    assert peer(on1, "198.18.0.3")["as"] == 65546
    assert on1.peers["198.18.0.2"].as_number == 65002
    on2 = run("node2", nodes, configs)
    assert on2.doc["local_as"] == 65002
    assert peer(on2, "198.18.0.1")["as"] == 65001
    on3 = run("node3", nodes, configs)
    assert on3.doc["local_as"] == 65546
    # Without a BGPConfiguration the default AS.
    assert run("node1", three_nodes()).doc["local_as"] == 64512


def test_mesh_off() -> None:
    plan = run("node1", three_nodes(), [bgpconfig(nodeToNodeMeshEnabled=False)])
    assert plan.doc["peers"] == []
    assert plan.peers == {}
    # Explicitly on is the same as the default.
    plan = run("node1", three_nodes(), [bgpconfig(nodeToNodeMeshEnabled=True)])
    assert names(plan) == {"Mesh_198_18_0_2", "Mesh_198_18_0_3"}


def test_reflector_node_has_no_mesh_and_is_skipped_by_others() -> None:
    nodes = three_nodes()
    nodes["node3"]["spec"]["bgp"]["routeReflectorClusterID"] = "1.1.1.1"
    on3 = run("node3", nodes)
    assert on3.doc["peers"] == []
    assert on3.doc["cluster_id"] == "1.1.1.1"
    on1 = run("node1", nodes)
    assert names(on1) == {"Mesh_198_18_0_2"}


def test_mesh_skips_nodes_without_an_address() -> None:
    nodes = three_nodes()
    nodes["node4"] = node("node4")
    nodes["node5"] = node("node5", "198.18.0.1/24")  # the same address as ours
    plan = run("node1", nodes)
    assert names(plan) == {"Mesh_198_18_0_2", "Mesh_198_18_0_3"}


def test_mesh_ipv6() -> None:
    nodes = {
        "node1": node("node1", "198.18.0.1/24", "fd00::1/64"),
        "node2": node("node2", "198.18.0.2/24", "fd00::2/64"),
        "node3": node("node3", ipv6="fd00::3/64"),
        "node4": node("node4", "198.18.0.4/24"),
    }
    plan = run("node1", nodes)
    assert names(plan) == {"Mesh_198_18_0_2", "Mesh_fd00__2", "Mesh_fd00__3", "Mesh_198_18_0_4"}
    p = peer(plan, "fd00::2")
    assert p["families"] == ["ipv6-unicast"]
    assert p["local_address"] == "fd00::1"
    assert p["passive"] is True  # "fd00::1" < "fd00::2"
    assert peer(plan, "198.18.0.2")["families"] == ["ipv4-unicast"]
    assert plan.peers["fd00::3"].node == "node3"
    assert plan.ipv6 == "fd00::1/64"
    # A v4-only node meshes with nobody over IPv6.
    assert names(run("node4", nodes)) == {"Mesh_198_18_0_1", "Mesh_198_18_0_2"}


# ------------------------------------------------------------------ route reflection


def rr_nodes(**n1: Any) -> dict[str, Json]:
    """The route-reflector manifests: node1 the reflector (198.18.0.10), node2
    (198.18.0.9) and node3 (198.18.0.11) its clients."""
    return {
        "node1": node(
            "node1",
            "198.18.0.10/24",
            labels={"route-reflector": "true"},
            routeReflectorClusterID="1.1.1.1",
            **n1,
        ),
        "node2": node("node2", "198.18.0.9/24"),
        "node3": node("node3", "198.18.0.11/24"),
    }


RR_PEER = bgppeer("peer-with-rr", nodeSelector="all()", peerSelector='route-reflector == "true"')
RR_CONFIG = bgpconfig(nodeToNodeMeshEnabled=False, asNumber=63400)


def test_rr_client_side() -> None:
    plan = run("node2", rr_nodes(), [RR_CONFIG], [RR_PEER])
    assert names(plan) == {"Node_198_18_0_10"}
    p = peer(plan, "198.18.0.10")
    assert p["as"] == 63400
    assert plan.doc["local_as"] == 63400
    # "198.18.0.9" > "198.18.0.10" as text: node2 connects.
    assert p["passive"] is False
    assert p["local_address"] == "198.18.0.9"
    assert "route_reflector_client" not in p
    assert "cluster_id" not in plan.doc
    info = plan.peers["198.18.0.10"]
    assert (info.kind, info.type, info.node, info.port) == ("Node", "node specific", "node1", 179)
    on3 = run("node3", rr_nodes(), [RR_CONFIG], [RR_PEER])
    assert names(on3) == {"Node_198_18_0_10"}
    assert peer(on3, "198.18.0.10")["passive"] is False  # "…11" > "…10"


def test_rr_reflector_side() -> None:
    plan = run("node1", rr_nodes(), [RR_CONFIG], [RR_PEER])
    assert plan.doc["cluster_id"] == "1.1.1.1"
    assert plan.cluster_id == "1.1.1.1"
    assert names(plan) == {"Node_198_18_0_9", "Node_198_18_0_11"}
    for address, other in (("198.18.0.9", "node2"), ("198.18.0.11", "node3")):
        p = peer(plan, address)
        assert p["route_reflector_client"] is True
        assert p["as"] == 63400
        assert p["local_address"] == "198.18.0.10"
        assert plan.peers[address].kind == "Node"
        assert plan.peers[address].node == other
    config = parse_config(plan.doc)
    assert config.reflector is not None
    assert all(spec.client for spec in config.peers)


def test_rr_with_the_mesh_still_on() -> None:
    """A reflector ignores the mesh; clients mesh among themselves but not with it."""
    configs = [bgpconfig(asNumber=63400)]
    on2 = run("node2", rr_nodes(), configs, [RR_PEER])
    assert names(on2) == {"Node_198_18_0_10", "Mesh_198_18_0_11"}
    on1 = run("node1", rr_nodes(), configs, [RR_PEER])
    assert names(on1) == {"Node_198_18_0_9", "Node_198_18_0_11"}


def test_reflectors_sharing_a_cluster_id_are_not_clients() -> None:
    nodes = rr_nodes()
    nodes["node4"] = node(
        "node4",
        "198.18.0.12/24",
        labels={"route-reflector": "true"},
        routeReflectorClusterID="1.1.1.1",
    )
    on1 = run("node1", nodes, [RR_CONFIG], [RR_PEER])
    assert names(on1) == {"Node_198_18_0_9", "Node_198_18_0_11", "Node_198_18_0_12"}
    assert peer(on1, "198.18.0.12")["route_reflector_client"] is False
    assert peer(on1, "198.18.0.9")["route_reflector_client"] is True
    on4 = run("node4", nodes, [RR_CONFIG], [RR_PEER])
    assert peer(on4, "198.18.0.10")["route_reflector_client"] is False
    assert peer(on4, "198.18.0.11")["route_reflector_client"] is True
    # The clients peer with both reflectors.
    on2 = run("node2", nodes, [RR_CONFIG], [RR_PEER])
    assert names(on2) == {"Node_198_18_0_10", "Node_198_18_0_12"}


def test_reflectors_with_different_cluster_ids_are_clients() -> None:
    nodes = rr_nodes()
    nodes["node4"] = node(
        "node4",
        "198.18.0.12/24",
        labels={"route-reflector": "true"},
        routeReflectorClusterID="2.2.2.2",
    )
    on1 = run("node1", nodes, [RR_CONFIG], [RR_PEER])
    assert peer(on1, "198.18.0.12")["route_reflector_client"] is True
    on4 = run("node4", nodes, [RR_CONFIG], [RR_PEER])
    assert on4.doc["cluster_id"] == "2.2.2.2"
    assert peer(on4, "198.18.0.10")["route_reflector_client"] is True


def test_reflector_ebgp_peer_is_no_client_and_ibgp_router_is() -> None:
    peers = [
        RR_PEER,
        bgppeer("tor", node="node1", peerIP="198.18.9.9", asNumber=65000),
        bgppeer("ibgp", node="node1", peerIP="198.18.9.8", asNumber=63400),
    ]
    plan = run("node1", rr_nodes(), [RR_CONFIG], peers)
    assert "route_reflector_client" not in peer(plan, "198.18.9.9")
    assert peer(plan, "198.18.9.8")["route_reflector_client"] is True


def test_reflector_peer_with_its_own_local_as_parses() -> None:
    peers = [bgppeer("x", node="node1", peerIP="198.18.9.7", asNumber=65100, localASNumber=65100)]
    run("node1", rr_nodes(), [RR_CONFIG], peers)



def test_reverse_peering_manual() -> None:
    peer_manual = bgppeer(
        "rr",
        nodeSelector="all()",
        peerSelector='route-reflector == "true"',
        reversePeering="Manual",
    )
    on1 = run("node1", rr_nodes(), [RR_CONFIG], [peer_manual])
    assert on1.doc["peers"] == []
    # The forward side is unchanged.
    on2 = run("node2", rr_nodes(), [RR_CONFIG], [peer_manual])
    assert names(on2) == {"Node_198_18_0_10"}
    # reversePeering Auto is the default.
    auto = bgppeer(
        "rr", nodeSelector="all()", peerSelector='route-reflector == "true"', reversePeering="Auto"
    )
    assert names(run("node1", rr_nodes(), [RR_CONFIG], [auto])) == {
        "Node_198_18_0_9",
        "Node_198_18_0_11",
    }


def test_reverse_peering_follows_the_node_selector() -> None:
    nodes = rr_nodes()
    nodes["node2"]["metadata"]["labels"] = {"rack": "a"}
    p = bgppeer("rack-a", nodeSelector='rack == "a"', peerSelector='route-reflector == "true"')
    on1 = run("node1", nodes, [RR_CONFIG], [p])
    assert names(on1) == {"Node_198_18_0_9"}
    assert names(run("node3", nodes, [RR_CONFIG], [p])) == set()


def test_reverse_peering_settings() -> None:
    """The reverse side uses the far node's AS, listen port and address family."""
    nodes = rr_nodes()
    nodes["node2"]["spec"]["bgp"]["asNumber"] = 65002  # an eBGP client
    configs = [RR_CONFIG, bgpconfig("node.node3", listenPort=1791)]
    plan = run("node1", nodes, configs, [RR_PEER])
    assert peer(plan, "198.18.0.9")["as"] == 65002
    assert "route_reflector_client" not in peer(plan, "198.18.0.9")
    assert peer(plan, "198.18.0.11")["port"] == 1791
    assert peer(plan, "198.18.0.11")["route_reflector_client"] is True
    assert peer(plan, "198.18.0.11")["export"][-1] == {"default": "reject"}


SECURED_RR_PEER = bgppeer(
    "secured",
    nodeSelector="all()",
    peerSelector='route-reflector == "true"',
    password={"secretKeyRef": {"name": "bgp", "key": "rr"}},
    maxRestartTime="5m",
    ttlSecurity=1,
)


def secured_sides() -> tuple[Json, Json]:
    """(the client's session to the reflector, the reflector's session to the client)."""
    secrets = {("bgp", "rr"): "pw"}
    kw: Any = {"secrets": lambda n, k: secrets.get((n, k))}
    on2 = run("node2", rr_nodes(), [RR_CONFIG], [SECURED_RR_PEER], **kw)
    on1 = run("node1", rr_nodes(), [RR_CONFIG], [SECURED_RR_PEER], **kw)
    return peer(on2, "198.18.0.10"), peer(on1, "198.18.0.9")


def test_forward_side_of_a_secured_peering() -> None:
    forward, _reverse = secured_sides()
    assert forward["password"] == "pw"
    assert forward["restart_time"] == 300
    assert forward["ttl_security"] == 1


@pytest.mark.parametrize("key", ["password", "restart_time", "ttl_security"])
def test_reverse_side_of_a_secured_peering_matches(key: str) -> None:
    forward, reverse = secured_sides()
    assert reverse.get(key) == forward[key]


def test_explicit_peering_wins_over_a_reverse_one() -> None:
    explicit = bgppeer(
        "rr-to-node2", node="node1", peerIP="198.18.0.9", asNumber=63400, nextHopMode="Self"
    )
    plan = run("node1", rr_nodes(), [RR_CONFIG], [RR_PEER, explicit])
    assert peer(plan, "198.18.0.9").get("next_hop_mode") == "Self"


def test_explicit_peering_listed_first_is_kept() -> None:
    explicit = bgppeer(
        "rr-to-node2", node="node1", peerIP="198.18.0.9", asNumber=63400, nextHopMode="Self"
    )
    plan = run("node1", rr_nodes(), [RR_CONFIG], [explicit, RR_PEER])
    assert peer(plan, "198.18.0.9")["next_hop_mode"] == "Self"
    assert names(plan) == {"Node_198_18_0_9", "Node_198_18_0_11"}


def peer_ip_reverse_nodes() -> dict[str, Json]:
    return {
        "node1": node("node1", "198.18.0.1/24"),
        "node2": node("node2", "198.18.0.2/24", "fd00::2/64"),
        "node3": node("node3", "198.18.0.3/24", "fd00::3/64"),
    }


def test_peer_ip_reverse_peering() -> None:
    """A BGPPeer on node3 to node2's address: node2 peers back with node3."""
    p = bgppeer("to-node2", node="node3", peerIP="198.18.0.2", asNumber=64512)
    off = [bgpconfig(nodeToNodeMeshEnabled=False)]
    on2 = run("node2", peer_ip_reverse_nodes(), off, [p])
    assert "198.18.0.3" in on2.peers
    assert on2.peers["198.18.0.3"].kind == "Node"
    assert peer(on2, "198.18.0.3")["as"] == 64512
    assert "198.18.0.1" not in on2.peers
    p_manual = bgppeer(
        "to-node2", node="node3", peerIP="198.18.0.2", asNumber=64512, reversePeering="Manual"
    )
    assert run("node2", peer_ip_reverse_nodes(), off, [p_manual]).doc["peers"] == []


@pytest.mark.xfail(
    strict=True,
    reason="a peerIP peering is reversed onto the node with that address whatever its AS, and "
    "over every family the far node has; Calico reverses it only when the node's AS equals "
    "the BGPPeer's asNumber, and only over the peerIP's family (client.go "
    "nodesWithIPPortAndAS, includeV4/includeV6)",
)
@pytest.mark.parametrize("as_number", [65000, 64512], ids=["other-as", "same-as"])
def test_peer_ip_reverse_peering_needs_the_node_as_and_family(as_number: int) -> None:
    p = bgppeer("to-node2", node="node3", peerIP="198.18.0.2", asNumber=as_number)
    on2 = run("node2", peer_ip_reverse_nodes(), [bgpconfig(nodeToNodeMeshEnabled=False)], [p])
    expected = set() if as_number == 65000 else {"198.18.0.3"}
    assert set(on2.peers) == expected


# ------------------------------------------------------------------ explicit peers


def test_global_peer_with_port_on_every_node() -> None:
    p = bgppeer("tor", peerIP="198.18.9.9:1179", asNumber=65000)
    for me in ("node1", "node2", "node3"):
        plan = run(me, three_nodes(), [bgpconfig(nodeToNodeMeshEnabled=False)], [p])
        assert names(plan) == {"Global_198_18_9_9_port_1179"}
        d = peer(plan, "198.18.9.9")
        assert d["port"] == 1179
        assert d["as"] == 65000
        assert d["passive"] is False
        assert d["local_address"] == plan.ipv4.split("/")[0]  # type: ignore[union-attr]
        assert d["import"] == [{"default": "accept"}]
        assert d["export"][-1] == {"default": "reject"}
        assert "next_hop_mode" not in d
        info = plan.peers["198.18.9.9"]
        assert (info.kind, info.type, info.node, info.port) == ("Global", "global", None, 1179)


def test_global_peer_without_port() -> None:
    p = bgppeer("tor", peerIP="198.18.9.9", asNumber=65000)
    plan = run("node1", three_nodes(), [], [p])
    assert "Global_198_18_9_9" in names(plan)
    assert peer(plan, "198.18.9.9")["port"] == 179


def test_node_specific_peer_by_name_and_selector() -> None:
    nodes = three_nodes()
    nodes["node2"]["metadata"]["labels"] = {"rack": "a"}
    peers = [
        bgppeer("by-name", node="node1", peerIP="198.18.9.8", asNumber=65000),
        bgppeer("by-sel", nodeSelector='rack == "a"', peerIP="198.18.9.7", asNumber=65007),
    ]
    off = [bgpconfig(nodeToNodeMeshEnabled=False)]
    on1 = run("node1", nodes, off, peers)
    assert names(on1) == {"Node_198_18_9_8"}
    info = on1.peers["198.18.9.8"]
    assert (info.kind, info.type) == ("Node", "node specific")
    on2 = run("node2", nodes, off, peers)
    assert names(on2) == {"Node_198_18_9_7"}
    assert peer(on2, "198.18.9.7")["as"] == 65007
    assert run("node3", nodes, off, peers).doc["peers"] == []


@pytest.mark.parametrize("global_first", [True, False])
def test_node_specific_duplicate_of_a_global_peer_is_dropped(global_first: bool) -> None:
    g = bgppeer("global", peerIP="198.18.9.9", asNumber=65000)
    n = bgppeer("local", node="node1", peerIP="198.18.9.9", asNumber=65001)
    peers = [g, n] if global_first else [n, g]
    plan = run("node1", three_nodes(), [bgpconfig(nodeToNodeMeshEnabled=False)], peers)
    assert names(plan) == {"Global_198_18_9_9"}
    assert peer(plan, "198.18.9.9")["as"] == 65000
    assert plan.peers["198.18.9.9"].kind == "Global"


def test_own_address_is_never_a_peer() -> None:
    p = bgppeer("to-node1", peerIP="198.18.0.1", asNumber=64512)
    off = [bgpconfig(nodeToNodeMeshEnabled=False)]
    on1 = run("node1", three_nodes(), off, [p])
    assert "198.18.0.1" not in on1.peers
    # On another node it is a Calico node's address: passive by the text rule.
    on2 = run("node2", three_nodes(), off, [p])
    d = peer(on2, "198.18.0.1")
    assert on2.peers["198.18.0.1"].node == "node1"
    assert on2.peers["198.18.0.1"].name == "Global_198_18_0_1"
    assert d["passive"] is False  # "198.18.0.2" > "198.18.0.1"


def test_global_peer_to_a_calico_node_is_passive_by_text() -> None:
    """CALICO.md §1.4: a global peer that is a Calico node whose address text is
    greater than ours gets passive on."""
    nodes = {
        "a": node("a", "198.18.0.10/24"),
        "b": node("b", "198.18.0.9/24"),
    }
    off = [bgpconfig(nodeToNodeMeshEnabled=False)]
    to_b = bgppeer("to-b", peerIP="198.18.0.9", asNumber=64512)
    d = peer(run("a", nodes, off, [to_b]), "198.18.0.9")
    assert d["passive"] is True  # "198.18.0.10" < "198.18.0.9"
    to_a = bgppeer("to-a", peerIP="198.18.0.10", asNumber=64512)
    assert peer(run("b", nodes, off, [to_a]), "198.18.0.10")["passive"] is False


@pytest.mark.parametrize("case", ["reflector", "peer-ip-node"])
def test_node_specific_peers_are_never_passive(case: str) -> None:
    if case == "reflector":
        plan = run("node1", rr_nodes(), [RR_CONFIG], [RR_PEER])
        address = "198.18.0.9"  # "198.18.0.10" < "198.18.0.9" as text
    else:
        p = bgppeer("to-node3", node="node1", peerIP="198.18.0.3", asNumber=64512)
        plan = run("node1", three_nodes(), [bgpconfig(nodeToNodeMeshEnabled=False)], [p])
        address = "198.18.0.3"
    assert plan.peers[address].kind == "Node"
    assert peer(plan, address)["passive"] is False


def test_peer_ip_of_a_calico_node_uses_its_listen_port() -> None:
    p = bgppeer("to-node3", node="node1", peerIP="198.18.0.3", asNumber=64512)
    configs = [
        bgpconfig(nodeToNodeMeshEnabled=False, listenPort=1790),
        bgpconfig("node.node3", listenPort=1791),
    ]
    plan = run("node1", three_nodes(), configs, [p])
    d = peer(plan, "198.18.0.3")
    assert d["port"] == 1791
    assert plan.peers["198.18.0.3"].node == "node3"
    # An explicit port wins.
    p2 = bgppeer("to-node3", node="node1", peerIP="198.18.0.3:2000", asNumber=64512)
    assert peer(run("node1", three_nodes(), configs, [p2]), "198.18.0.3")["port"] == 2000


def test_peer_directives() -> None:
    def secrets(name: str, key: str) -> str | None:
        return {("s", "tor"): "pw"}.get((name, key))

    p = bgppeer(
        "tor",
        node="node1",
        peerIP="198.18.9.9",
        asNumber=65000,
        ttlSecurity=2,
        localASNumber=65010,
        password={"secretKeyRef": {"name": "s", "key": "tor"}},
        sourceAddress="None",
        numAllowedLocalASNumbers=3,
        maxRestartTime="2m30s",
    )
    plan = run(
        "node1", three_nodes(), [bgpconfig(nodeToNodeMeshEnabled=False)], [p], secrets=secrets
    )
    d = peer(plan, "198.18.9.9")
    assert d["ttl_security"] == 2
    assert d["local_as"] == 65010
    assert d["password"] == "pw"
    assert "local_address" not in d
    assert d["allowed_local_as"] == 3
    assert d["restart_time"] == 150
    assert plan.warnings == []
    spec = parse_config(plan.doc).peers[0]
    assert spec.endpoint.ttl_security == 2
    assert spec.endpoint.password == "pw"
    assert spec.endpoint.local_address is None
    assert spec.config.local_as == 65010
    assert spec.config.restart_time == 150
    assert spec.allowed_local_as == 3


def test_peer_defaults_without_directives() -> None:
    p = bgppeer("tor", node="node1", peerIP="198.18.9.9", asNumber=65000)
    d = peer(run("node1", three_nodes(), [], [p]), "198.18.9.9")
    for key in ("ttl_security", "local_as", "password", "allowed_local_as", "next_hop_mode"):
        assert key not in d
    assert d["local_address"] == "198.18.0.1"
    assert d["restart_time"] == 120
    assert {k: d[k] for k in TIMERS} == TIMERS


def test_peer_missing_password_secret_warns() -> None:
    p = bgppeer(
        "tor",
        node="node1",
        peerIP="198.18.9.9",
        asNumber=65000,
        password={"secretKeyRef": {"name": "s", "key": "gone"}},
    )
    plan = run("node1", three_nodes(), [], [p])
    assert "password" not in peer(plan, "198.18.9.9")
    assert any("BGPPeer tor" in w and "s/gone" in w for w in plan.warnings)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"asNumber": 65000, "keepOriginalNextHop": True}, "Keep"),
        ({"asNumber": 64512, "keepOriginalNextHop": True}, None),  # iBGP: no effect
        ({"asNumber": 65000, "keepOriginalNextHop": False}, None),
        ({"asNumber": 65000, "keepOriginalNextHop": True, "nextHopMode": "Self"}, "Self"),
        ({"asNumber": 64512, "nextHopMode": "Keep"}, "Keep"),
        ({"asNumber": 64512, "nextHopMode": "Self"}, "Self"),
        ({"asNumber": 65000, "nextHopMode": "Auto"}, None),
        ({"asNumber": 65000, "nextHopMode": "Auto", "keepOriginalNextHop": True}, "Keep"),
        # With a local AS equal to the peer's, the session is iBGP.
        ({"asNumber": 65000, "localASNumber": 65000, "keepOriginalNextHop": True}, None),
    ],
)
def test_next_hop_mode(spec: Json, expected: str | None) -> None:
    p = bgppeer("tor", node="node1", peerIP="198.18.9.9", **spec)
    d = peer(run("node1", three_nodes(), [], [p]), "198.18.9.9")
    assert d.get("next_hop_mode") == expected


def test_ipv6_peer() -> None:
    nodes = {
        "node1": node("node1", "198.18.0.1/24", "fd00::1/64"),
        "node2": node("node2", "198.18.0.2/24"),
    }
    p = bgppeer("tor6", peerIP="[fd00::9]:179", asNumber=65000)
    off = [bgpconfig(nodeToNodeMeshEnabled=False)]
    plan = run("node1", nodes, off, [p])
    assert names(plan) == {"Global_fd00__9_port_179"}
    d = peer(plan, "fd00::9")
    assert d["families"] == ["ipv6-unicast"]
    assert d["local_address"] == "fd00::1"
    assert d["port"] == 179
    assert d["export"][-1] == {"default": "reject"}
    # A node without IPv6 cannot source the session: skipped with a warning.
    on2 = run("node2", nodes, off, [p])
    assert on2.doc["peers"] == []
    assert any("IPv6" in w and "fd00::9" in w for w in on2.warnings)
    # ... unless it needs no source address.
    p_none = bgppeer("tor6", peerIP="[fd00::9]:179", asNumber=65000, sourceAddress="None")
    d2 = peer(run("node2", nodes, off, [p_none]), "fd00::9")
    assert "local_address" not in d2


def test_two_ports_to_one_address_keep_one() -> None:
    peers = [
        bgppeer("a", peerIP="198.18.9.9:1179", asNumber=65000),
        bgppeer("b", peerIP="198.18.9.9:1180", asNumber=65000),
    ]
    plan = run("node1", three_nodes(), [bgpconfig(nodeToNodeMeshEnabled=False)], peers)
    assert names(plan) == {"Global_198_18_9_9_port_1179"}
    assert any("more than one port" in w for w in plan.warnings)


# ------------------------------------------------------------------ BGPFilter


FILTER_A = bgpfilter(
    "a",
    exportV4=[
        {
            "cidr": "10.10.0.0/16",
            "matchOperator": "In",
            "prefixLength": {"min": 24, "max": 28},
            "action": "Reject",
        },
        {"cidr": "10.11.0.0/16", "matchOperator": "Equal", "action": "Accept"},
        {
            "cidr": "10.12.0.0/16",
            "matchOperator": "NotIn",
            "prefixLength": {"max": 20},
            "action": "Reject",
        },
    ],
    importV4=[
        {
            "cidr": "10.20.0.0/16",
            "matchOperator": "NotEqual",
            "prefixLength": {"min": 18},
            "action": "Accept",
        },
        {"action": "Reject"},
    ],
    exportV6=[{"cidr": "fd00:10::/48", "matchOperator": "In", "action": "Reject"}],
    importV6=[{"source": "RemotePeers", "action": "Accept"}],
)
FILTER_B = bgpfilter(
    "b",
    exportV4=[
        {"source": "RemotePeers", "action": "Reject"},
        {"interface": "eth*", "action": "Accept"},
    ],
)


def test_filters_map_in_order_before_calico_rules() -> None:
    nodes = three_nodes()
    p = bgppeer("tor", node="node1", peerIP="198.18.9.9", asNumber=65000, filters=["a", "b"])
    plan = run("node1", nodes, [], [p], [pool("p", "10.0.0.0/16")], [FILTER_A, FILTER_B])
    d = peer(plan, "198.18.9.9")
    fam = "ipv4-unicast"
    filter_rules = [
        {
            "family": fam,
            "action": "reject",
            "prefix": "10.10.0.0/16",
            "operator": "In",
            "min_length": 24,
            "max_length": 28,
        },
        {"family": fam, "action": "accept", "prefix": "10.11.0.0/16", "operator": "Equal"},
        {
            "family": fam,
            "action": "reject",
            "prefix": "10.12.0.0/16",
            "operator": "NotIn",
            "max_length": 20,
        },
        {"family": fam, "action": "reject", "source": "RemotePeers"},
        {"family": fam, "action": "accept", "interface": "eth*"},
    ]
    calico = peer(plan, "198.18.0.2")["export"]  # a mesh peer: Calico's rules alone
    assert d["export"] == filter_rules + calico
    assert d["import"] == [
        {
            "family": fam,
            "action": "accept",
            "prefix": "10.20.0.0/16",
            "operator": "NotEqual",
            "min_length": 18,
        },
        {"family": fam, "action": "reject"},
        {"default": "accept"},
    ]
    assert plan.warnings == []


def test_filters_on_an_ipv6_peer_use_the_v6_rules() -> None:
    nodes = {"node1": node("node1", "198.18.0.1/24", "fd00::1/64")}
    p = bgppeer("tor6", peerIP="[fd00::9]:179", asNumber=65000, filters=["a"])
    plan = run("node1", nodes, [], [p], [], [FILTER_A])
    d = peer(plan, "fd00::9")
    assert d["export"][0] == {
        "family": "ipv6-unicast",
        "action": "reject",
        "prefix": "fd00:10::/48",
        "operator": "In",
    }
    assert d["export"][1:] == [{"default": "reject"}]
    assert d["import"] == [
        {"family": "ipv6-unicast", "action": "accept", "source": "RemotePeers"},
        {"default": "accept"},
    ]


def test_filter_rules_decide_for_real() -> None:
    p = bgppeer("tor", node="node1", peerIP="198.18.9.9", asNumber=65000, filters=["a"])
    plan = run("node1", three_nodes(), [], [p], [pool("p", "10.0.0.0/8")], [FILTER_A])
    policy = export_policy(peer(plan, "198.18.9.9"))
    assert verdict(policy, "10.10.1.0/24") is None  # rule 1: inside 10.10/16, length 24..28
    assert verdict(policy, "10.11.0.0/16") is not None  # rule 2: exactly 10.11/16
    assert verdict(policy, "10.11.0.0/24") is None  # rule 3: not in 10.12.0.0/16{16,20}
    assert verdict(policy, "10.10.1.0/30") is None  # too long for rule 1; rule 3 rejects
    assert verdict(policy, "10.12.0.0/24") is None  # inside, but longer than 20: rule 3
    assert verdict(policy, "10.12.0.0/18") is not None  # in the set: the pool accepts
    assert verdict(policy, "10.13.0.0/24") is None


def test_missing_filter_warns() -> None:
    p = bgppeer("tor", node="node1", peerIP="198.18.9.9", asNumber=65000, filters=["nope", "b"])
    plan = run("node1", three_nodes(), [], [p], [], [FILTER_B])
    assert any("BGPFilter nope" in w for w in plan.warnings)
    d = peer(plan, "198.18.9.9")
    assert d["export"][0] == {"family": "ipv4-unicast", "action": "reject", "source": "RemotePeers"}


# ------------------------------------------------------------------ announcements


def test_announced_routes() -> None:
    blocks = [
        ("10.0.0.0/26", "confirmed"),
        ("10.0.0.64/26", "pending"),
        ("10.0.0.128/26", "pendingDeletion"),
        ("10.0.1.5/32", "confirmed"),
    ]
    plan = run(
        "node1",
        three_nodes(),
        [],
        [],
        [pool("p", "10.0.0.0/16")],
        blocks=blocks,
        borrowed=["10.0.2.7/32"],
    )
    assert plan.doc["routes"] == [
        {"prefix": "10.0.0.0/26", "blackhole": True},
        {"prefix": "10.0.1.5/32", "blackhole": False},
        {"prefix": "10.0.2.7/32"},
    ]
    routes = parse_config(plan.doc).routes
    assert [r.blackhole for r in routes] == [True, False, False]
    # Only confirmed blocks get the aggregate rules.
    export = peer(plan, "198.18.0.2")["export"]
    assert {
        "family": "ipv4-unicast",
        "prefix": "10.0.0.64/26",
        "operator": "Equal",
        "action": "accept",
    } not in export
    # A borrowed /32 is announced through the pool rule.
    assert verdict(export_policy(peer(plan, "198.18.0.2")), "10.0.2.7/32") is not None


SERVICES: Json = {
    "serviceClusterIPs": [{"cidr": "10.96.0.0/12"}, {"cidr": "fd00:96::/108"}],
    "serviceExternalIPs": [{"cidr": "203.0.113.0/24"}, {"cidr": "203.0.113.9/32"}],
    "serviceLoadBalancerIPs": [{"cidr": "198.51.100.0/24"}, {"cidr": "198.51.100.7/32"}],
}


def test_service_ranges_announced_and_kept_out_of_the_kernel() -> None:
    nodes = {"node1": node("node1", "198.18.0.1/24", "fd00::1/64")}
    plan = run("node1", nodes, [bgpconfig(**SERVICES)])
    expected = ["10.96.0.0/12", "fd00:96::/108", "203.0.113.0/24", "198.51.100.0/24"]
    assert [r["prefix"] for r in plan.doc["routes"]] == expected
    assert plan.doc["kernel"]["reject"] == expected


def test_service_cluster_ip_single_address_is_kept() -> None:
    config = bgpconfig(
        serviceClusterIPs=[{"cidr": "10.96.0.10/32"}],
        serviceExternalIPs=[{"cidr": "203.0.113.9/32"}],
    )
    plan = run("node1", three_nodes(), [config])
    assert [r["prefix"] for r in plan.doc["routes"]] == ["10.96.0.10/32"]


def test_service_lb_ranges_only_while_aggregated() -> None:
    plan = run(
        "node1", three_nodes(), [bgpconfig(serviceLoadBalancerAggregation="Disabled", **SERVICES)]
    )
    assert [r["prefix"] for r in plan.doc["routes"]] == [
        "10.96.0.0/12",
        "fd00:96::/108",
        "203.0.113.0/24",
    ]
    assert "198.51.100.0/24" not in plan.doc["kernel"]["reject"]


def test_service_ranges_not_on_an_excluded_node() -> None:
    nodes = three_nodes()
    nodes["node1"]["metadata"]["labels"] = {EXCLUDE_LB_LABEL: "true"}
    plan = run("node1", nodes, [bgpconfig(**SERVICES)], [], [pool("p", "10.0.0.0/16")])
    assert plan.doc["routes"] == []
    assert plan.doc["kernel"]["reject"] == []
    policy = export_policy(peer(plan, "198.18.0.2"))
    assert verdict(policy, "10.96.0.0/12") is None
    # Another value of the label does not exclude.
    nodes["node1"]["metadata"]["labels"] = {EXCLUDE_LB_LABEL: "false"}
    plan = run("node1", nodes, [bgpconfig(**SERVICES)])
    assert len(plan.doc["routes"]) == 4


POOLS = [
    pool("main", "10.0.0.0/16"),
    pool("quiet", "10.1.0.0/16", disableBGPExport=True),
    pool("off", "10.2.0.0/16", disabled=True),
    pool("v6", "fd00:10::/48"),
]
COMMUNITIES = bgpconfig(
    communities=[{"name": "lo", "value": "65000:100"}, {"name": "big", "value": "65000:1:2"}],
    prefixAdvertisements=[
        {"cidr": "10.0.0.0/16", "communities": ["lo", "65000:200"]},
        {"cidr": "10.0.5.0/24", "communities": ["big"]},
        {"cidr": "10.0.6.0/24", "communities": ["65000:3:4", "65000:300"]},
        {"cidr": "fd00:10::/48", "communities": ["65000:600"]},
    ],
    serviceClusterIPs=[{"cidr": "10.96.0.0/12"}],
    serviceLoadBalancerIPs=[{"cidr": "198.51.100.0/24"}],
)


def test_export_rule_order() -> None:
    plan = run(
        "node1",
        three_nodes(),
        [COMMUNITIES],
        [],
        POOLS,
        blocks=[("10.0.0.0/26", "confirmed"), ("10.0.0.64/26", "pending")],
    )
    fam = "ipv4-unicast"
    assert peer(plan, "198.18.0.2")["export"] == [
        {"family": fam, "prefix": "10.1.0.0/16", "action": "reject"},
        {"family": fam, "prefix": "10.0.0.0/16", "add_communities": ["65000:100", "65000:200"]},
        {"family": fam, "prefix": "10.0.6.0/24", "add_communities": ["65000:300"]},
        {"family": fam, "prefix": "10.0.0.0/26", "operator": "Equal", "action": "accept"},
        {"family": fam, "prefix": "10.0.0.0/26", "operator": "In", "action": "reject"},
        {"family": fam, "prefix": "10.96.0.0/12", "operator": "Equal", "action": "accept"},
        {"family": fam, "prefix": "198.51.100.0/24", "operator": "Equal", "action": "accept"},
        {"family": fam, "prefix": "10.0.0.0/16", "action": "accept"},
        {"family": fam, "prefix": "10.1.0.0/16", "action": "accept"},
        {"default": "reject"},
    ]
    # Large communities are not supported: named in the warnings, never sent.
    large = [w for w in plan.warnings if "large community" in w]
    assert len(large) == 2
    assert any("10.0.5.0/24" in w and "65000:1:2" in w for w in large)
    assert any("10.0.6.0/24" in w and "65000:3:4" in w for w in large)


def test_export_rules_ipv6() -> None:
    nodes = {
        "node1": node("node1", "198.18.0.1/24", "fd00::1/64"),
        "node2": node("node2", "198.18.0.2/24", "fd00::2/64"),
    }
    plan = run(
        "node1",
        nodes,
        [COMMUNITIES],
        [],
        POOLS,
        blocks=[("fd00:10::/122", "confirmed"), ("10.0.0.0/26", "confirmed")],
    )
    fam = "ipv6-unicast"
    assert peer(plan, "fd00::2")["export"] == [
        {"family": fam, "prefix": "fd00:10::/48", "add_communities": ["65000:600"]},
        {"family": fam, "prefix": "fd00:10::/122", "operator": "Equal", "action": "accept"},
        {"family": fam, "prefix": "fd00:10::/122", "operator": "In", "action": "reject"},
        {"family": fam, "prefix": "fd00:10::/48", "action": "accept"},
        {"default": "reject"},
    ]
    assert {"prefix": "fd00:10::/122", "blackhole": True} in plan.doc["routes"]


def test_export_on_a_reflector_accepts_the_lb_ranges() -> None:
    nodes = rr_nodes()
    config = bgpconfig(
        nodeToNodeMeshEnabled=False,
        asNumber=63400,
        serviceLoadBalancerIPs=[{"cidr": "198.51.100.0/24"}],
        serviceLoadBalancerAggregation="Disabled",
    )
    plan = run("node1", nodes, [config], [RR_PEER], [pool("main", "10.0.0.0/16")])
    fam = "ipv4-unicast"
    assert peer(plan, "198.18.0.9")["export"] == [
        {"family": fam, "prefix": "198.51.100.0/24", "action": "accept"},
        {"family": fam, "prefix": "10.0.0.0/16", "action": "accept"},
        {"default": "reject"},
    ]
    policy = export_policy(peer(plan, "198.18.0.9"))
    assert verdict(policy, "198.51.100.7/32") is not None
    # Not on a client.
    on2 = run("node2", nodes, [config], [RR_PEER], [pool("main", "10.0.0.0/16")])
    assert verdict(export_policy(peer(on2, "198.18.0.10")), "198.51.100.7/32") is None


def test_export_policy_evaluated() -> None:
    plan = run(
        "node1", three_nodes(), [COMMUNITIES], [], POOLS, blocks=[("10.0.0.0/26", "confirmed")]
    )
    policy = export_policy(plan.doc["peers"][0])
    own = verdict(policy, "10.0.0.0/26")
    assert own is not None
    assert own.communities is not None
    assert set(own.communities) == {community("65000:100"), community("65000:200")}
    assert verdict(policy, "10.0.0.5/32") is None  # a pod /32 inside our block
    assert verdict(policy, "10.0.0.0/27") is None  # more specific inside our block
    other = verdict(policy, "10.0.0.64/26")  # another node's block in the pool
    assert other is not None
    assert verdict(policy, "10.0.3.9/32") is not None  # a borrowed address
    assert verdict(policy, "192.0.2.0/24") is None  # outside every pool
    assert verdict(policy, "10.0.0.0/8") is None  # wider than the pool
    assert verdict(policy, "10.1.0.0/26") is None  # disableBGPExport pool
    assert verdict(policy, "10.1.0.0/16") is None
    assert verdict(policy, "10.2.0.0/26") is None  # disabled pool
    assert verdict(policy, "10.96.0.0/12") is not None  # service range
    assert verdict(policy, "10.96.0.0/24") is None  # inside it, not the range itself
    assert verdict(policy, "198.51.100.0/24") is not None
    six = verdict(policy, "10.0.6.0/24")
    assert six is not None
    assert six.communities is not None
    assert set(six.communities) == {
        community("65000:100"),
        community("65000:200"),
        community("65000:300"),
    }
    assert verdict(policy, "fd00:10::/122") is None  # an IPv6 route on the IPv4 rules
    # The original attributes are untouched.
    assert ATTRS.communities is None


def test_prefix_advertisements_per_node_override() -> None:
    configs = [
        bgpconfig(prefixAdvertisements=[{"cidr": "10.0.0.0/16", "communities": ["65000:1"]}]),
        bgpconfig(
            "node.node1", prefixAdvertisements=[{"cidr": "10.0.0.0/16", "communities": ["65000:2"]}]
        ),
    ]
    pools = [pool("main", "10.0.0.0/16")]
    on1 = run("node1", three_nodes(), configs, [], pools)
    got = verdict(export_policy(peer(on1, "198.18.0.2")), "10.0.0.0/26")
    assert got is not None
    assert got.communities == (community("65000:2"),)
    on2 = run("node2", three_nodes(), configs, [], pools)
    got = verdict(export_policy(peer(on2, "198.18.0.1")), "10.0.0.0/26")
    assert got is not None
    assert got.communities == (community("65000:1"),)


def test_filters_run_before_calico_export() -> None:
    f = bgpfilter(
        "out",
        exportV4=[
            {"cidr": "10.0.0.0/26", "matchOperator": "Equal", "action": "Reject"},
            {"cidr": "192.0.2.0/24", "matchOperator": "Equal", "action": "Accept"},
        ],
    )
    p = bgppeer("tor", node="node1", peerIP="198.18.9.9", asNumber=65000, filters=["out"])
    plan = run(
        "node1",
        three_nodes(),
        [],
        [p],
        [pool("main", "10.0.0.0/16")],
        [f],
        blocks=[("10.0.0.0/26", "confirmed")],
    )
    tor = export_policy(peer(plan, "198.18.9.9"))
    assert verdict(tor, "10.0.0.0/26") is None
    assert verdict(tor, "192.0.2.0/24") is not None
    mesh = export_policy(peer(plan, "198.18.0.2"))
    assert verdict(mesh, "10.0.0.0/26") is not None
    assert verdict(mesh, "192.0.2.0/24") is None


# ------------------------------------------------------------------ kernel


def test_kernel_section() -> None:
    nodes = {
        "node1": node(
            "node1",
            "198.18.0.1/24",
            "fd00::1/64",
            ipv4IPIPTunnelAddr="10.0.0.1",
            spec={"ipv4VXLANTunnelAddr": "10.5.0.1", "vxlanTunnelMACAddr": "66:00:00:00:00:01"},
        ),
        "node2": node(
            "node2",
            "198.18.0.2/24",
            spec={"ipv4VXLANTunnelAddr": "10.5.0.2", "vxlanTunnelMACAddr": "66:00:00:00:00:02"},
        ),
        "node3": node("node3", "198.18.0.3/24", spec={"ipv4VXLANTunnelAddr": "10.5.0.3"}),
        "node4": node(
            "node4",
            spec={"ipv4VXLANTunnelAddr": "10.5.0.4", "vxlanTunnelMACAddr": "66:00:00:00:00:04"},
        ),
    }
    pools = [
        pool("ipip", "10.0.0.0/16", ipipMode="CrossSubnet"),
        pool("vx", "10.5.0.0/16", vxlanMode="Always"),
        pool("plain", "10.6.0.0/16"),
        pool("never", "10.7.0.0/16", ipipMode="Never", vxlanMode="Never"),
    ]
    plan = run("node1", nodes, [bgpconfig(serviceClusterIPs=[{"cidr": "10.96.0.0/12"}])], [], pools)
    k = plan.doc["kernel"]
    assert k["pools"] == [
        {"cidr": "10.0.0.0/16", "ipip_mode": "CrossSubnet", "vxlan_mode": "Never"},
        {"cidr": "10.5.0.0/16", "ipip_mode": "Never", "vxlan_mode": "Always"},
        {"cidr": "10.6.0.0/16", "ipip_mode": "Never", "vxlan_mode": "Never"},
        {"cidr": "10.7.0.0/16", "ipip_mode": "Never", "vxlan_mode": "Never"},
    ]
    assert k["subnets"] == ["198.18.0.0/24", "fd00::/64"]
    assert k["vxlan"] == {"local": "198.18.0.1", "address": "10.5.0.1", "mac": "66:00:00:00:00:01"}
    # Only other nodes with an IPv4 address, a VXLAN address and a MAC.
    assert k["vteps"] == [
        {"node": "198.18.0.2", "address": "10.5.0.2", "mac": "66:00:00:00:00:02"},
    ]
    assert k["reject"] == ["10.96.0.0/12"]
    assert k["ipip"] == {"address": "10.0.0.1"}
    kernel = parse_config(plan.doc).kernel
    assert kernel is not None
    assert kernel.vxlan is not None
    assert kernel.ipip is True
    assert len(kernel.vteps) == 1
    assert [str(s) for s in kernel.subnets] == ["198.18.0.0/24", "fd00::/64"]


def test_kernel_without_encapsulation() -> None:
    plan = run("node1", three_nodes(), [], [], [pool("plain", "10.0.0.0/16")])
    k = plan.doc["kernel"]
    assert k == {
        "pools": [{"cidr": "10.0.0.0/16", "ipip_mode": "Never", "vxlan_mode": "Never"}],
        "subnets": ["198.18.0.0/24"],
        "reject": [],
    }
    assert parse_config(plan.doc).kernel.ipip is False  # type: ignore[union-attr]


def test_kernel_ipip_without_a_tunnel_address() -> None:
    plan = run("node1", three_nodes(), [], [], [pool("ipip", "10.0.0.0/16", ipipMode="Always")])
    assert plan.doc["kernel"]["ipip"] == {}


def test_kernel_ipip_pool_not_selecting_the_node() -> None:
    pools = [pool("ipip", "10.0.0.0/16", ipipMode="Always", nodeSelector='zone == "far"')]
    plan = run("node1", three_nodes(), [], [], pools)
    assert "ipip" not in plan.doc["kernel"]
    assert plan.doc["kernel"]["pools"][0]["ipip_mode"] == "Always"


def vxlan_node() -> Json:
    return node(
        "node1", "198.18.0.1/24", labels={"zone": "near"}, spec={"ipv4VXLANTunnelAddr": "10.5.0.1"}
    )


@pytest.mark.parametrize(
    ("pool_spec", "tunnel"),
    [
        ({"nodeSelector": 'zone == "far"'}, True),
        ({"disabled": True}, True),
        ({}, False),  # the pool selects us, we have no VTEP address yet
    ],
    ids=["not-selected", "disabled", "no-tunnel-address"],
)
def test_kernel_vxlan_absent(pool_spec: Json, tunnel: bool) -> None:
    n = vxlan_node()
    if not tunnel:
        n["spec"].pop("ipv4VXLANTunnelAddr")
    nodes = {"node1": n, "node2": node("node2", "198.18.0.2/24")}
    pools = [pool("vx", "10.5.0.0/16", vxlanMode="Always", **pool_spec)]
    plan = render(inputs("node1", nodes, [], [], pools))
    assert "vxlan" not in plan.doc["kernel"]
    assert plan.doc["kernel"]["vteps"] == []
    warned = any("VXLAN" in w for w in plan.warnings)
    assert warned is (not tunnel)


def test_kernel_vxlan_present_with_selector_and_no_mac() -> None:
    pools = [pool("vx", "10.5.0.0/16", vxlanMode="CrossSubnet", nodeSelector='zone == "near"')]
    plan = run("node1", {"node1": vxlan_node()}, [], [], pools)
    assert plan.doc["kernel"]["vxlan"] == {"local": "198.18.0.1", "address": "10.5.0.1"}


@pytest.mark.parametrize(
    ("pool_spec", "tunnel"),
    [({"nodeSelector": 'zone == "far"'}, True), ({"disabled": True}, True), ({}, False)],
    ids=["not-selected", "disabled", "no-tunnel-address"],
)
def test_kernel_vxlan_absent_still_parses(pool_spec: Json, tunnel: bool) -> None:
    n = vxlan_node()
    if not tunnel:
        n["spec"].pop("ipv4VXLANTunnelAddr")
    pools = [pool("vx", "10.5.0.0/16", vxlanMode="Always", **pool_spec)]
    run("node1", {"node1": n, "node2": node("node2", "198.18.0.2/24")}, [], [], pools)



def test_no_kernel_section_without_fib() -> None:
    pools = [pool("vx", "10.5.0.0/16", vxlanMode="Always")]
    plan = run("node1", {"node1": vxlan_node()}, [], [], pools, fib=False)
    assert "kernel" not in plan.doc
    assert parse_config(plan.doc).kernel is None


# ------------------------------------------------------------------ global settings


def test_router_id() -> None:
    assert run("node1", three_nodes()).doc["router_id"] == "198.18.0.1"
    plan = run("node1", three_nodes(), router_id_mode="10.9.9.9")
    assert plan.doc["router_id"] == plan.router_id == "10.9.9.9"
    plan = run("node1", three_nodes(), router_id_mode="hash")
    assert plan.doc["router_id"] == reference_hash_id("node1")
    assert plan.warnings == []
    with pytest.raises(ValueError):
        render(inputs("node1", three_nodes(), router_id_mode="fd00::1"))


def test_router_id_without_ipv4() -> None:
    nodes = {"node1": node("node1", ipv6="fd00::1/64"), "node2": node("node2", ipv6="fd00::2/64")}
    plan = run("node1", nodes)
    assert plan.doc["router_id"] == reference_hash_id("node1")
    assert any("router ID" in w for w in plan.warnings)
    assert names(plan) == {"Mesh_fd00__2"}
    assert plan.ipv4 is None


def test_listen() -> None:
    assert run("node1", three_nodes()).doc["listen"] == [["::", 179]]
    plan = run("node1", three_nodes(), [bgpconfig(listenPort=1790)])
    assert plan.doc["listen"] == [["::", 1790]]
    plan = run("node1", three_nodes(), [bgpconfig(bindMode="NodeIP")])
    assert plan.doc["listen"] == [["198.18.0.1", 179]]
    plan = run("node1", three_nodes(), [bgpconfig(bindMode="None")])
    assert plan.doc["listen"] == [["::", 179]]
    dual = {"node1": node("node1", "198.18.0.1/24", "fd00::1/64")}
    plan = run(
        "node1",
        dual,
        [bgpconfig(bindMode="NodeIP", listenPort=1790), bgpconfig("node.node1", listenPort=1791)],
    )
    assert plan.doc["listen"] == [["198.18.0.1", 1791], ["fd00::1", 1791]]
    assert parse_config(plan.doc).listen == [("198.18.0.1", 1791), ("fd00::1", 1791)]


def test_log_severity() -> None:
    assert run("node1", three_nodes()).log_severity == "Info"
    plan = run("node1", three_nodes(), [bgpconfig(logSeverityScreen="Warning")])
    assert plan.log_severity == "Warning"
    configs = [
        bgpconfig(logSeverityScreen="Warning"),
        bgpconfig("node.node1", logSeverityScreen="Debug"),
    ]
    assert run("node1", three_nodes(), configs).log_severity == "Debug"
    assert run("node2", three_nodes(), configs).log_severity == "Warning"


def test_document_globals() -> None:
    plan = run("node1", three_nodes())
    doc = plan.doc
    assert doc["restarting"] is True
    assert doc["multipath"] is True
    assert doc["require_ebgp_policy"] is False
    assert doc["log_routes"] is False
    assert doc["routes"] == []
    assert run("node1", three_nodes(), restarting=False).doc["restarting"] is False
    config = parse_config(doc)
    assert config.restarting is True
    assert config.decision.multipath is True


def test_unknown_node_renders_without_peers_or_router_address() -> None:
    """A node not yet in the datastore: no address, so no mesh and a hashed ID."""
    plan = run("ghost", three_nodes())
    assert plan.doc["peers"] == []
    assert plan.doc["router_id"] == reference_hash_id("ghost")
    assert plan.doc["local_as"] == 64512


def test_render_is_pure_and_repeatable() -> None:
    inp = inputs(
        "node1",
        three_nodes(),
        [COMMUNITIES],
        [RR_PEER],
        POOLS,
        blocks=[("10.0.0.0/26", "confirmed")],
    )
    before = repr(inp)
    first, second = render(inp), render(inp)
    assert first.doc == second.doc
    assert first.warnings == second.warnings
    assert repr(inp) == before
