"""``bgpd.policy.explain``: the explanation of a pod's policies, from records as
the datastore holds them, without a store, an agent or nft: isolation per
direction and policyTypes defaulting, peers and their members, ports in words
(named ports resolved on the destination), counters attached per rule, refused
records left out, pods joined from endpoints as the agent joins them."""

from __future__ import annotations

from typing import Any

import pytest

from bgpd.datastore.base import Record
from bgpd.policy.explain import (
    MEMBERS_SHOWN,
    Snapshot,
    UnknownPod,
    explain,
    format_text,
    read,
)


class Store:
    """A datastore's ``list`` over a dict of key -> value."""

    def __init__(self, values: dict[str, dict[str, Any]]) -> None:
        self.values = values

    def list(self, prefix: str) -> list[Record]:
        return [Record(k, v, 1) for k, v in sorted(self.values.items()) if k.startswith(prefix)]


def namespace(name: str, **labels: str) -> tuple[str, dict[str, Any]]:
    labels = {**labels, "kubernetes.io/metadata.name": name}
    return f"resources/namespaces/{name}", {
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels},
    }  # fmt: skip


def pod(ns: str, name: str, ip: str | None = None, ports: list[tuple[str, str, int]] | None = None,
        host_network: bool = False, **labels: str) -> tuple[str, dict[str, Any]]:  # fmt: skip
    spec: dict[str, Any] = {"containers": [{"name": "c", "ports": [
        {"name": n, "protocol": proto, "containerPort": number}
        for n, proto, number in ports or ()]}]}  # fmt: skip
    if host_network:
        spec["hostNetwork"] = True
    value: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Pod", "spec": spec,
        "metadata": {"name": name, "namespace": ns, "labels": labels or {"pod": name}},
    }  # fmt: skip
    if ip:
        value["status"] = {"podIP": ip, "podIPs": [{"ip": ip}]}
    return f"resources/pods/{ns}/{name}", value


def endpoint(node: str, ns: str, name: str, ip: str, iface: str) -> tuple[str, dict[str, Any]]:
    return f"endpoints/{node}/c-{ns}-{name}.eth0", {
        "containerID": f"c-{ns}-{name}", "ifname": "eth0", "hostIfname": iface, "node": node,
        "namespace": ns, "pod": name, "state": "ready", "ips": [f"{ip}/32"],
    }  # fmt: skip


def netpol(ns: str, name: str, **spec: Any) -> tuple[str, dict[str, Any]]:
    spec.setdefault("podSelector", {})
    return f"resources/networkpolicies/{ns}/{name}", {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns}, "spec": spec,
    }  # fmt: skip


PORTS = [("serve-80-tcp", "TCP", 80), ("serve-81-udp", "UDP", 81)]


def cluster(*extra: tuple[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Namespaces x (team=blue) and y (team=red); pods x/a, x/b, y/a with named
    ports, x/a and x/b with endpoints on node1; plus ``extra``."""
    items = [
        namespace("x", team="blue"), namespace("y", team="red"),
        pod("x", "a", ports=PORTS), pod("x", "b", ports=[("serve-80-tcp", "TCP", 8080)]),
        pod("y", "a", ip="10.65.1.1"),
        endpoint("node1", "x", "a", "10.65.0.1", "cali00000000001"),
        endpoint("node1", "x", "b", "10.65.0.2", "cali00000000002"),
        *extra,
    ]  # fmt: skip
    return dict(items)


def snapshot(*extra: tuple[str, dict[str, Any]]) -> Snapshot:
    return read(Store(cluster(*extra)), validate=lambda _value: None)


def test_no_policy_not_isolated() -> None:
    doc = explain(snapshot(), "x", "a")
    assert doc["ingress"] == {"isolated": False, "policies": []}
    assert doc["egress"] == {"isolated": False, "policies": []}
    assert doc["pod"]["endpoints"] == [{"node": "node1", "interface": "cali00000000001"}]
    assert doc["pod"]["ips"] == ["10.65.0.1"]
    text = format_text(doc)
    assert "Ingress: not isolated: all traffic allowed\n" in text
    assert "Egress: not isolated: all traffic allowed\n" in text
    assert "Counters: none" in text


def test_policy_types_defaulting_isolates_ingress_of_an_egress_policy() -> None:
    """No policyTypes and egress rules: [Ingress, Egress] (POLICY.md §1.2)."""
    snap = snapshot(netpol("x", "eg", egress=[{"ports": [{"port": 53, "protocol": "UDP"}]}]))
    doc = explain(snap, "x", "a")
    assert doc["ingress"]["isolated"] is True
    assert doc["ingress"]["policies"][0]["rules"] == []
    assert "allows no ingress (it only isolates)" in format_text(doc)
    rule = doc["egress"]["policies"][0]["rules"][0]
    assert rule["peers"] == [] and rule["ports"][0]["text"] == "UDP 53"
    explicit = snapshot(netpol("x", "eg", policyTypes=["Egress"], egress=[{}]))
    assert explain(explicit, "x", "a")["ingress"]["isolated"] is False


def test_only_policies_of_the_pods_namespace_and_selector() -> None:
    snap = snapshot(
        netpol("x", "for-b", podSelector={"matchLabels": {"pod": "b"}}),
        netpol("y", "all-of-y"),
        netpol("x", "all-of-x"),
    )
    doc = explain(snap, "x", "a")
    assert [p["name"] for p in doc["ingress"]["policies"]] == ["all-of-x"]
    assert explain(snap, "y", "a")["ingress"]["policies"][0]["name"] == "all-of-y"


def test_peers_in_words_with_members() -> None:
    snap = snapshot(netpol("x", "p", podSelector={"matchLabels": {"pod": "a"}}, ingress=[{
        "from": [
            {"podSelector": {"matchLabels": {"pod": "b"}}},
            {"namespaceSelector": {"matchLabels": {"team": "red"}}},
            {"namespaceSelector": {"matchLabels": {"team": "red"}},
             "podSelector": {"matchLabels": {"pod": "a"}}},
            {"namespaceSelector": {}},
            {"podSelector": {}},
            {"namespaceSelector": {"matchExpressions": [{
                "key": "kubernetes.io/metadata.name", "operator": "In", "values": ["y", "x"]}]}},
            {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16", "10.2.0.0/16"]}},
        ]}]))  # fmt: skip
    peers = explain(snap, "x", "a")["ingress"]["policies"][0]["rules"][0]["peers"]
    assert [p["text"] for p in peers] == [
        "pods matching pod=b in namespace x",
        "every pod in namespaces matching team=red",
        "pods matching pod=a in namespaces matching team=red",
        "every pod in every namespace",
        "every pod in namespace x",
        "every pod in namespaces x, y",
        "any address in 10.0.0.0/8 except 10.1.0.0/16, 10.2.0.0/16",
    ]
    members = [[f"{m['namespace']}/{m['name']}" for m in p.get("members", [])] for p in peers]
    assert members == [["x/b"], ["y/a"], ["y/a"], ["x/a", "x/b", "y/a"], ["x/a", "x/b"],
                       ["x/a", "x/b", "y/a"], []]  # fmt: skip
    assert peers[0]["members"] == [{"namespace": "x", "name": "b", "ips": ["10.65.0.2"]}]
    assert peers[6]["ipBlock"] == {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16", "10.2.0.0/16"]}
    text = format_text(explain(snap, "x", "a"))
    assert (
        "      from pods matching pod=b in namespace x\n        now (1): x/b (10.65.0.2)\n" in text
    )


def test_members_truncated() -> None:
    many = [pod("y", f"w{i:02d}", ip=f"10.65.2.{i + 1}", app="w") for i in range(MEMBERS_SHOWN + 3)]
    snap = snapshot(*many, netpol("x", "p", ingress=[{"from": [
        {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "w"}}}]}]))  # fmt: skip
    peer = explain(snap, "x", "a")["ingress"]["policies"][0]["rules"][0]["peers"][0]
    assert peer["memberCount"] == MEMBERS_SHOWN + 3
    assert len(peer["members"]) == MEMBERS_SHOWN
    text = format_text(explain(snap, "x", "a"))
    assert "y/w09 (10.65.2.10), ... and 3 more\n" in text
    assert "now (13): y/w00 (10.65.2.1), y/w01 (10.65.2.2)," in text


def test_ports_in_words_ingress_resolves_named_ports_on_this_pod() -> None:
    snap = snapshot(netpol("x", "p", ingress=[{"ports": [
        {"port": 80}, {"protocol": "UDP", "port": 81, "endPort": 90}, {"port": "serve-80-tcp"},
        {"protocol": "UDP", "port": "serve-81-udp"}, {"protocol": "SCTP"},
        {"port": "serve-99-tcp"}]}, {}]))  # fmt: skip
    rules = explain(snap, "x", "a")["ingress"]["policies"][0]["rules"]
    assert [p["text"] for p in rules[0]["ports"]] == [
        "TCP 80", "UDP 81-90", "named port serve-80-tcp -> TCP 80 on this pod",
        "named port serve-81-udp -> UDP 81 on this pod", "SCTP any port",
        "named port serve-99-tcp (TCP): not on this pod, matches nothing",
    ]  # fmt: skip
    assert [p.get("resolved") for p in rules[0]["ports"]] == [None, None, 80, 81, None, None]
    assert rules[0]["peers"] == [] and rules[0]["peersText"] == "anyone"
    assert rules[1]["ports"] == [] and rules[1]["portsText"] == "any port, any protocol"
    # On x/b the same named port is 8080.
    other = explain(snap, "x", "b")["ingress"]["policies"][0]["rules"][0]["ports"][2]
    assert other["text"] == "named port serve-80-tcp -> TCP 8080 on this pod"
    text = format_text(explain(snap, "x", "a"))
    assert "      from anyone (any address, in the cluster or outside)\n" in text
    assert "      ports: any port, any protocol\n" in text


def test_egress_named_ports_resolved_on_each_destination() -> None:
    snap = snapshot(netpol("x", "p", policyTypes=["Egress"], egress=[{
        "to": [{"namespaceSelector": {}}], "ports": [{"port": "serve-80-tcp"}]}]))  # fmt: skip
    rule = explain(snap, "x", "a")["egress"]["policies"][0]["rules"][0]
    assert rule["ports"][0]["text"] == "named port serve-80-tcp (TCP) of the destination pod"
    assert [m["namedPorts"] for m in rule["peers"][0]["members"]] == [
        {"serve-80-tcp/TCP": 80},
        {"serve-80-tcp/TCP": 8080},
        {"serve-80-tcp/TCP": None},
    ]
    text = format_text(explain(snap, "x", "a"))
    assert ("now (3): x/a (10.65.0.1; serve-80-tcp 80), x/b (10.65.0.2; serve-80-tcp 8080),\n"
            "                 y/a (10.65.1.1; no serve-80-tcp)\n") in text  # fmt: skip
    assert "      to every pod in every namespace\n" in text


def test_host_network_pod_is_neither_policed_nor_a_member() -> None:
    snap = snapshot(pod("x", "h", ip="198.18.0.1", host_network=True), netpol("x", "p", ingress=[
        {"from": [{"podSelector": {}}]}]))  # fmt: skip
    doc = explain(snap, "x", "h")
    assert doc["pod"]["hostNetwork"] is True
    assert doc["ingress"]["isolated"] is False
    assert "host network: not policed" in format_text(doc)
    members = explain(snap, "x", "a")["ingress"]["policies"][0]["rules"][0]["peers"][0]["members"]
    assert [m["name"] for m in members] == ["a", "b"]


def test_pods_joined_as_the_agent_joins_them() -> None:
    """A pod with only an endpoint: no labels, the endpoint's address; a Pod
    without an endpoint: its status.podIPs; endpoints win over the status."""
    snap = snapshot(
        endpoint("node2", "y", "orphan", "10.65.1.9", "cali00000000009"),
        endpoint("node2", "y", "a", "10.65.1.2", "cali0000000000a"),
    )
    orphan = explain(snap, "y", "orphan")
    assert orphan["pod"]["labels"] == {} and orphan["pod"]["ips"] == ["10.65.1.9"]
    assert orphan["pod"]["endpoints"] == [{"node": "node2", "interface": "cali00000000009"}]
    assert explain(snap, "y", "a")["pod"]["ips"] == ["10.65.1.2"]
    assert explain(snapshot(), "y", "a")["pod"]["ips"] == ["10.65.1.1"]
    assert "endpoint: none (no interface on any node yet)" in format_text(
        explain(snapshot(), "y", "a")
    )


def test_unknown_pod() -> None:
    with pytest.raises(UnknownPod, match="pod x/nope not found"):
        explain(snapshot(), "x", "nope")


def test_counters_per_rule() -> None:
    snap = snapshot(
        netpol("x", "p", ingress=[{"ports": [{"port": 80}]}, {"ports": [{"port": 81}]}])
    )
    counters = [
        {"namespace": "x", "policy": "p", "direction": "ingress", "rule": "1", "packets": 7,
         "bytes": 420},
        {"namespace": "", "policy": "", "direction": "ingress", "rule": "denied", "packets": 3,
         "bytes": 180},
    ]  # fmt: skip
    doc = explain(snap, "x", "a", counters, {"node": "node1", "address": "unix:/s"})
    rules = doc["ingress"]["policies"][0]["rules"]
    assert [(r["packets"], r["bytes"]) for r in rules] == [(0, 0), (7, 420)]
    assert doc["counters"] == {"node": "node1", "address": "unix:/s", "available": True,
                               "denied": {"ingress": 3}}  # fmt: skip
    text = format_text(doc)
    assert "      packets: 7 (420 bytes)\n" in text
    assert "denied there, all pods: ingress 3, egress 0 packets" in text
    absent = explain(snap, "x", "a", None, {"node": "node1", "address": "unix:/s",
                                            "error": "Connection refused"})  # fmt: skip
    assert "packets" not in absent["ingress"]["policies"][0]["rules"][0]
    assert absent["counters"]["available"] is False
    assert format_text(absent).endswith(
        "Counters: none (the policy agent of node node1 does not answer at unix:/s: "
        "Connection refused)\n"
    )


def test_refused_records_left_out_and_named() -> None:
    """With the agent's validation: a policy it refuses is not explained as in force."""
    bad = netpol("x", "bad", ingress=[{"ports": [{"port": 80, "endPort": 70}]}])
    values = cluster(
        bad, netpol("x", "good", ingress=[{}]), netpol("y", "bad2", policyTypes=["Up"])
    )
    snap = read(Store(values))
    doc = explain(snap, "x", "a")
    assert [p["name"] for p in doc["ingress"]["policies"]] == ["good"]
    assert [r["key"] for r in doc["refused"]] == ["resources/networkpolicies/x/bad"]
    assert set(snap.refused) == {
        "resources/networkpolicies/x/bad",
        "resources/networkpolicies/y/bad2",
    }
    assert (
        "Refused (not shown; the agent keeps its last good version, if any): "
        "resources/networkpolicies/x/bad: " in format_text(doc)
    )


EXPECTED = """\
Pod x/a
  endpoint: node node1, interface cali00000000001
  addresses: 10.65.0.1
  labels: pod=a
  named ports: serve-80-tcp TCP 80, serve-81-udp UDP 81

Ingress: isolated by 2 policies; only what their rules allow passes
  policy x/allow-b (podSelector pod=a)
    rule 0:
      from pods matching pod=b in namespace x
        now (1): x/b (10.65.0.2)
      ports: TCP 80, named port serve-81-udp -> UDP 81 on this pod
      packets: 12 (1,200 bytes)
  policy x/deny (podSelector <all>)
    allows no ingress (it only isolates)

Egress: not isolated: all traffic allowed

Counters: from the policy agent of node node1 (a rule's packets are those of every pod there \
that its policy selects); denied there, all pods: ingress 0, egress 0 packets
"""


def test_text_whole() -> None:
    snap = snapshot(
        netpol("x", "allow-b", podSelector={"matchLabels": {"pod": "a"}}, ingress=[{
            "from": [{"podSelector": {"matchLabels": {"pod": "b"}}}],
            "ports": [{"port": 80}, {"protocol": "UDP", "port": "serve-81-udp"}]}]),
        netpol("x", "deny", policyTypes=["Ingress"]),
    )  # fmt: skip
    counters = [{"namespace": "x", "policy": "allow-b", "direction": "ingress", "rule": "0",
                 "packets": 12, "bytes": 1200}]  # fmt: skip
    doc = explain(snap, "x", "a", counters, {"node": "node1", "address": "unix:/s"})
    assert format_text(doc) == EXPECTED
