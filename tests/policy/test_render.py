"""The renderer, pure: which chains, sets and map elements a state gives, and that
pod churn changes elements only while rules grow with policies, not pods."""

from __future__ import annotations

from typing import Any

from bgpd.policy.model import ContainerPort, Pod, policy_from
from bgpd.policy.render import ENDPOINTS, FROM_POD, TO_POD, Renderer, chain_name


def policy(ns: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name}, "spec": spec}


def pod(ns: str, name: str, ip: str, **labels: str) -> Pod:
    return Pod(ns, name, labels, (f"{ip}/32",), (ContainerPort("http", "TCP", 8080),))


def deny_ingress(ns: str = "x") -> dict[str, Any]:
    return policy(ns, "deny", {"podSelector": {}, "policyTypes": ["Ingress"]})


def allow_from_b(ns: str = "x") -> dict[str, Any]:
    return policy(ns, "allow-b", {
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}],
                     "ports": [{"port": 80}, {"port": "http"}]}],
    })  # fmt: skip


def renderer_with_pods() -> Renderer:
    r = Renderer()
    for i, (ns, name) in enumerate([("x", "a"), ("x", "b"), ("y", "a"), ("y", "b")]):
        r.put_pod(pod(ns, name, f"10.0.0.{i + 1}", pod=name))
        r.put_endpoint(f"cali{ns}{name}", (ns, name))
    return r


def test_no_policy_no_dispatch_but_known() -> None:
    r = renderer_with_pods()
    r.flush()
    assert r.ruleset.maps[TO_POD].elements == {}
    assert r.ruleset.maps[FROM_POD].elements == {}
    known = r.ruleset.sets[ENDPOINTS].elements
    assert known == {'"calixa"', '"calixb"', '"caliya"', '"caliyb"'}
    assert (
        'iifname "cali*" iifname != @endpoints counter drop comment "unknown endpoint"'
        in r.ruleset.base_rules
    )
    r.remove_endpoint("calixa")
    r.flush()
    assert '"calixa"' not in known


def test_deny_ingress_isolates_only_its_namespace() -> None:
    r = renderer_with_pods()
    r.put_policy(policy_from(deny_ingress()))
    r.flush()
    to_pod = r.ruleset.maps[TO_POD].elements
    assert set(to_pod) == {"calixa", "calixb"}
    assert r.ruleset.maps[FROM_POD].elements == {}
    group = to_pod["calixa"].removeprefix("jump ")
    assert to_pod["calixb"] == to_pod["calixa"]  # one shared group chain
    rules = r.ruleset.chains[group]
    assert rules[0] == "ct state invalid drop"
    assert rules[1] == f"jump {chain_name('pi', 'x', 'deny')}"
    assert rules[-1].startswith("counter drop")
    assert r.ruleset.chains[chain_name("pi", "x", "deny")] == ()  # isolates, allows nothing


def test_peer_set_holds_selected_pod_addresses() -> None:
    r = renderer_with_pods()
    r.put_policy(policy_from(allow_from_b()))
    r.flush()
    peer_sets = [s for n, s in r.ruleset.sets.items() if n.startswith("p4-")]
    assert [s.elements for s in peer_sets] == [{"10.0.0.2"}]  # x/b only, not y/b
    named = r.ruleset.sets["n4-tcp-http"].elements
    assert named == {f"10.0.0.{i} . tcp . 8080" for i in range(1, 5)}
    rules = r.ruleset.chains[chain_name("pi", "x", "allow-b")]
    assert any("th dport { 80 }" in rule for rule in rules)
    assert any("@n4-tcp-http" in rule for rule in rules)
    assert all('comment "ingress 0"' in rule for rule in rules)


def test_pod_churn_changes_elements_only() -> None:
    r = renderer_with_pods()
    r.put_policy(policy_from(allow_from_b()))
    r.put_policy(policy_from(deny_ingress()))
    r.flush()
    r.ruleset.commit()
    chains_before = dict(r.ruleset.chains)
    r.put_pod(pod("x", "b2", "10.0.0.9", pod="b"))
    r.put_endpoint("calixb2", ("x", "b2"))
    r.flush()
    script = r.ruleset.script()
    assert r.ruleset.chains == chains_before
    lines = script.splitlines()
    assert lines and all(line.startswith(("add element", "delete element")) for line in lines)
    assert any("10.0.0.9" in line and "p4-" in line for line in lines)
    assert any('"calixb2"' in line for line in lines)
    r.ruleset.commit()
    r.remove_endpoint("calixb2")
    r.remove_pod(("x", "b2"))
    r.flush()
    lines = r.ruleset.script().splitlines()
    assert lines and all(line.startswith("delete element") for line in lines)


def test_rules_grow_with_policies_not_pods() -> None:
    def rules(pods: int, policies: int) -> int:
        r = Renderer()
        for i in range(pods):
            p = pod("x", f"p{i}", f"10.1.{i // 250}.{i % 250 + 1}", pod="a" if i % 2 else "b")
            r.put_pod(p)
            r.put_endpoint(f"cali{i:011x}", p.key)
        for j in range(policies):
            spec = allow_from_b()["spec"]
            r.put_policy(policy_from(policy("x", f"allow-{j}", spec)))
        r.flush()
        return r.ruleset.rule_count()

    assert rules(100, 5) == rules(1000, 5)
    assert rules(100, 10) > rules(100, 5)


def test_policy_removed_drops_its_chains_and_sets() -> None:
    r = renderer_with_pods()
    r.put_policy(policy_from(allow_from_b()))
    r.flush()
    r.ruleset.commit()
    r.remove_policy(("x", "allow-b"))
    r.flush()
    script = r.ruleset.script()
    assert set(r.ruleset.sets) == {ENDPOINTS}
    assert set(r.ruleset.chains) == set()
    assert "delete chain inet bgpd-policy pi-x/allow-b" in script
    # references go before the chains they point at
    assert script.index('delete element inet bgpd-policy to-pod { "calixa" }') < script.index(
        "delete chain inet bgpd-policy pi-x/allow-b"
    )


def test_label_change_moves_pod_between_sets_and_groups() -> None:
    r = renderer_with_pods()
    r.put_policy(policy_from(allow_from_b()))
    r.flush()
    assert r.ruleset.maps[TO_POD].elements["calixa"].startswith("jump gi-")
    r.put_pod(pod("x", "a", "10.0.0.1", pod="z"))  # no longer selected by allow-b
    r.put_pod(pod("x", "b", "10.0.0.2", pod="q"))  # no longer a peer
    r.flush()
    assert "calixa" not in r.ruleset.maps[TO_POD].elements
    assert [s.elements for n, s in r.ruleset.sets.items() if n.startswith("p4-")] == [set()]


def test_namespace_labels_change_membership() -> None:
    r = renderer_with_pods()
    r.put_policy(policy_from(policy("x", "from-prod", {
        "podSelector": {},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"env": "prod"}}}]}],
    })))  # fmt: skip
    r.flush()
    members = next(s for n, s in r.ruleset.sets.items() if n.startswith("p4-"))
    assert members.elements == set()
    r.put_namespace("y", {"env": "prod", "kubernetes.io/metadata.name": "y"})
    assert members.elements == {"10.0.0.3", "10.0.0.4"}
    r.put_namespace("y", None)
    assert members.elements == set()


def test_types_change_regroups() -> None:
    r = renderer_with_pods()
    r.put_policy(policy_from(deny_ingress()))
    r.flush()
    assert r.ruleset.maps[TO_POD].elements["calixa"].startswith("jump gi-")
    r.put_policy(policy_from(policy("x", "deny", {"podSelector": {}, "policyTypes": ["Egress"]})))
    r.flush()
    assert "calixa" not in r.ruleset.maps[TO_POD].elements
    assert r.ruleset.maps[FROM_POD].elements["calixa"].startswith("jump ge-")
    assert chain_name("pi", "x", "deny") not in r.ruleset.chains


def test_host_network_pods_are_never_peers() -> None:
    r = Renderer()
    r.put_pod(Pod("x", "h", {"pod": "b"}, ("10.0.0.7/32",), host_network=True))
    r.put_policy(policy_from(allow_from_b()))
    r.flush()
    assert all(not s.elements for n, s in r.ruleset.sets.items() if n.startswith("p4-"))


def test_ip_block_inline() -> None:
    r = renderer_with_pods()
    r.put_policy(policy_from(policy("x", "cidr", {
        "podSelector": {},
        "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.1/24",
                                        "except": ["10.0.0.2/32", "10.0.0.3/32"]}}]}],
        "policyTypes": ["Egress"],
    })))  # fmt: skip
    r.flush()
    assert set(r.ruleset.sets) == {ENDPOINTS}  # no set per ipBlock
    (rule,) = r.ruleset.chains[chain_name("po", "x", "cidr")]
    assert rule.startswith("ip daddr 10.0.0.0/24 ip daddr != 10.0.0.2/32 ip daddr != 10.0.0.3/32 ")


def test_ipv6_half_appears_with_the_first_ipv6_pod() -> None:
    r = renderer_with_pods()
    r.put_policy(policy_from(allow_from_b()))
    r.flush()
    assert not any(n.startswith(("p6-", "n6-")) for n in r.ruleset.sets)
    rules = r.ruleset.chains[chain_name("pi", "x", "allow-b")]
    assert not any("ip6" in rule for rule in rules)
    r.ruleset.commit()
    r.put_pod(Pod("x", "b6", {"pod": "b"}, ("fd00::5/128",), (ContainerPort("http", "TCP", 8080),)))
    r.flush()
    p6 = next(s for n, s in r.ruleset.sets.items() if n.startswith("p6-"))
    assert p6.elements == {"fd00::5"}
    assert r.ruleset.sets["n6-tcp-http"].elements == {"fd00::5 . tcp . 8080"}
    rules = r.ruleset.chains[chain_name("pi", "x", "allow-b")]
    assert any(rule.startswith("ip6 saddr @p6-") for rule in rules)


def test_long_names_fit_nft() -> None:
    name = "n" * 253
    assert len(chain_name("pi", "x" * 63, name)) <= 255
    assert chain_name("pi", "x", "short") == "pi-x/short"
