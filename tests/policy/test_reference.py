"""The reference engine against the documented tricky cases of POLICY.md §1 (and the
cases the e2e suite and cyclonus single out), so that the live matrix compares the
agent with something itself checked."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.policy.reference import InvalidPolicy, Model, Pod, normalize, selector_matches

PORTS = (
    ("serve-80-tcp", "TCP", 80), ("serve-80-udp", "UDP", 80),
    ("serve-81-tcp", "TCP", 81), ("serve-81-udp", "UDP", 81),
)  # fmt: skip
NAMESPACES = {n: {"ns": n} for n in "xyz"}
PODS = [
    Pod(ns, name, {"pod": name}, (f"10.0.{i}.{j + 1}",), PORTS)
    for i, ns in enumerate("xyz") for j, name in enumerate("abc")
]  # fmt: skip
BY = {p.key: p for p in PODS}
XA, XB, XC, YA, YB, ZA = (BY[k] for k in ("x/a", "x/b", "x/c", "y/a", "y/b", "z/a"))
OUTSIDE = "192.0.2.7"


def policy(name: str = "p", namespace: str = "x", **spec: Any) -> dict[str, Any]:
    spec.setdefault("podSelector", {})
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}  # fmt: skip


def model(*policies: dict[str, Any], pods: list[Pod] = PODS) -> Model:
    return Model(NAMESPACES, pods, policies)


def target_a(**spec: Any) -> dict[str, Any]:
    return policy(podSelector={"matchLabels": {"pod": "a"}}, **spec)


# -- isolation and defaulting ------------------------------------------------------------------


def test_no_policy_allows_everything() -> None:
    m = model()
    assert all(m.matrix("TCP", 80).values())
    assert m.allowed(OUTSIDE, XA, "UDP", 81) and m.allowed(XA, OUTSIDE, "TCP", 443)


def test_egress_only_policy_without_policy_types_also_isolates_ingress() -> None:
    p = target_a(egress=[{}])
    assert normalize(p)["types"] == ("Ingress", "Egress")
    m = model(p)
    assert m.isolated(XA, "Ingress") and m.isolated(XA, "Egress")
    assert not m.allowed(XB, XA, "TCP", 80)  # no ingress rule at all
    assert m.allowed(XA, XB, "TCP", 80)  # egress [{}] allows all


def test_explicit_egress_type_leaves_ingress_open() -> None:
    m = model(target_a(policyTypes=["Egress"], egress=[]))
    assert not m.isolated(XA, "Ingress")
    assert m.allowed(XB, XA, "TCP", 80)
    assert not m.allowed(XA, XB, "TCP", 80)
    assert not m.allowed(XA, OUTSIDE, "TCP", 80)


def test_policy_types_default_to_ingress_when_egress_is_empty() -> None:
    assert normalize(policy(egress=[]))["types"] == ("Ingress",)
    assert normalize(policy())["types"] == ("Ingress",)
    assert normalize(policy(policyTypes=["Egress"]))["types"] == ("Egress",)


def test_missing_ingress_denies_all_and_one_empty_rule_allows_all() -> None:
    deny = model(policy())
    assert not deny.allowed(XB, XA, "TCP", 80) and not deny.allowed(YA, XA, "UDP", 81)
    assert not deny.allowed(OUTSIDE, XA, "TCP", 80)
    assert deny.allowed(XA, YA, "TCP", 80)  # egress is not isolated
    allow = model(policy(ingress=[{}]))
    assert allow.allowed(YA, XA, "UDP", 81) and allow.allowed(OUTSIDE, XA, "SCTP", 9)


def test_default_deny_all_blocks_both_ways_and_inside_the_namespace() -> None:
    m = model(policy(policyTypes=["Ingress", "Egress"]))
    for (s, d), ok in m.matrix("TCP", 80).items():
        assert ok == (not s.startswith("x/") and not d.startswith("x/")), (s, d)


def test_both_sides_must_allow_egress_deny_beats_ingress_allow() -> None:
    m = model(
        policy("deny-egress", "x", policyTypes=["Egress"]),
        policy("allow-in", "y", ingress=[{}]),
    )
    assert not m.allowed(XA, YA, "TCP", 80)
    assert m.allowed(ZA, YA, "TCP", 80)
    assert m.ingress_ok(XA, YA, "TCP", 80) and not m.egress_ok(XA, YA, "TCP", 80)


def test_external_endpoints_count_as_allowed_on_their_side() -> None:
    m = model(policy(policyTypes=["Egress"], egress=[{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]))
    assert m.allowed(XA, OUTSIDE, "TCP", 80)
    assert m.allowed(OUTSIDE, XA, "TCP", 80)  # ingress not isolated


def test_policies_select_only_in_their_own_namespace() -> None:
    m = model(policy(namespace="y"))
    assert m.allowed(XB, XA, "TCP", 80)
    assert not m.allowed(XA, YA, "TCP", 80)


# -- peers ------------------------------------------------------------------------------------


def test_pod_selector_peer_is_the_policy_namespace_only() -> None:
    m = model(target_a(ingress=[{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]))
    assert m.allowed(XB, XA, "TCP", 80)
    assert not m.allowed(YB, XA, "TCP", 80)
    assert not m.allowed(XC, XA, "TCP", 80)
    assert m.allowed(XC, XB, "TCP", 80)  # x/b is not selected


def test_namespace_selector_and_pod_selector_in_one_peer_is_and_in_two_peers_is_or() -> None:
    ns_y = {"matchLabels": {"ns": "y"}}
    pod_b = {"matchLabels": {"pod": "b"}}
    both = model(target_a(ingress=[{"from": [{"namespaceSelector": ns_y, "podSelector": pod_b}]}]))
    either = model(target_a(ingress=[{"from": [{"namespaceSelector": ns_y},
                                                {"podSelector": pod_b}]}]))  # fmt: skip
    cases = {XB: (False, True), YA: (False, True), YB: (True, True), ZA: (False, False),
             XC: (False, False)}  # fmt: skip
    for src, (want_and, want_or) in cases.items():
        assert both.allowed(src, XA, "TCP", 80) == want_and, src
        assert either.allowed(src, XA, "TCP", 80) == want_or, src


def test_empty_namespace_selector_is_every_pod_but_no_external_ip() -> None:
    all_pods = model(policy(ingress=[{"from": [{"namespaceSelector": {}}]}]))
    no_from = model(policy(ingress=[{"ports": [{"port": 80}]}]))
    assert all_pods.allowed(ZA, XA, "UDP", 81) and all_pods.allowed(XB, XA, "TCP", 80)
    assert not all_pods.allowed(OUTSIDE, XA, "TCP", 80)
    assert no_from.allowed(OUTSIDE, XA, "TCP", 80)
    assert not no_from.allowed(ZA, XA, "TCP", 81)


def test_empty_pod_selector_peer_is_every_pod_of_the_policy_namespace() -> None:
    m = model(policy(ingress=[{"from": [{"podSelector": {}}]}]))
    assert m.allowed(XB, XA, "TCP", 80)
    assert not m.allowed(YB, XA, "TCP", 80)
    assert not m.allowed(OUTSIDE, XA, "TCP", 80)


def test_namespace_name_label_is_implied() -> None:
    sel = {"matchLabels": {"kubernetes.io/metadata.name": "y"}}
    m = model(policy(ingress=[{"from": [{"namespaceSelector": sel}]}]))
    assert m.allowed(YB, XA, "TCP", 80) and not m.allowed(ZA, XA, "TCP", 80)
    # even for a namespace the model was not told about
    stray = Pod("w", "q", {"pod": "q"}, ("10.0.9.9",))
    m2 = Model(NAMESPACES, [*PODS, stray], [policy(ingress=[{"from": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "w"}}}]}])])
    assert m2.allowed(stray, XA, "TCP", 80) and not m2.allowed(YA, XA, "TCP", 80)


def test_deny_other_namespaces() -> None:
    m = model(policy(ingress=[{"from": [{"podSelector": {}}]}]))
    table = m.matrix("TCP", 80)
    for (s, d), ok in table.items():
        assert ok == (not d.startswith("x/") or s.startswith("x/")), (s, d)


@pytest.mark.parametrize(("expr", "on_a", "on_unlabelled"), [
    ({"key": "pod", "operator": "In", "values": ["a", "b"]}, True, False),
    ({"key": "pod", "operator": "NotIn", "values": ["a"]}, False, True),
    ({"key": "pod", "operator": "Exists"}, True, False),
    ({"key": "pod", "operator": "DoesNotExist"}, False, True),
])  # fmt: skip
def test_match_expressions_and_absent_labels(expr: dict[str, Any], on_a: bool,
                                             on_unlabelled: bool) -> None:  # fmt: skip
    sel = {"matchExpressions": [expr]}
    assert selector_matches(sel, {"pod": "a"}) == on_a
    assert selector_matches(sel, {}) == on_unlabelled


def test_match_labels_and_expressions_are_anded() -> None:
    sel = {"matchLabels": {"ns": "x"}, "matchExpressions": [
        {"key": "pod", "operator": "In", "values": ["b"]}]}
    assert selector_matches(sel, {"ns": "x", "pod": "b"})
    assert not selector_matches(sel, {"ns": "x", "pod": "a"})
    assert not selector_matches(sel, {"pod": "b"})
    assert selector_matches({}, {}) and selector_matches({"matchLabels": {}}, {"a": "1"})


def test_ip_block_matches_pod_addresses_and_honours_except() -> None:
    block = {"ipBlock": {"cidr": "10.0.0.0/16", "except": [f"{XB.ip}/32"]}}
    m = model(target_a(ingress=[{"from": [block]}]))
    assert m.allowed(XC, XA, "TCP", 80) and m.allowed(ZA, XA, "UDP", 81)
    assert not m.allowed(XB, XA, "TCP", 80)
    assert not m.allowed(OUTSIDE, XA, "TCP", 80)
    # an except is not a deny: another rule (or policy) may still allow the address
    again = model(target_a(ingress=[{"from": [block]}]),
                  target_a(ingress=[{"from": [{"ipBlock": {"cidr": f"{XB.ip}/32"}}]}]))  # fmt: skip
    assert again.allowed(XB, XA, "TCP", 80)


def test_egress_ip_block_matches_the_destination_address() -> None:
    m = model(target_a(policyTypes=["Egress"], egress=[{"to": [{"ipBlock": {
        "cidr": f"{YA.ip}/32"}}]}]))  # fmt: skip
    assert m.allowed(XA, YA, "TCP", 80) and not m.allowed(XA, YB, "TCP", 80)
    assert m.allowed(XA, YA.ip, "UDP", 99) and not m.allowed(XA, OUTSIDE, "TCP", 80)  # type: ignore[arg-type]


# -- ports ------------------------------------------------------------------------------------


def test_port_without_protocol_is_tcp() -> None:
    m = model(policy(ingress=[{"ports": [{"port": 80}]}]))
    assert m.allowed(YA, XA, "TCP", 80)
    assert not m.allowed(YA, XA, "UDP", 80) and not m.allowed(YA, XA, "TCP", 81)


def test_protocol_only_entry_allows_every_port_of_that_protocol() -> None:
    m = model(policy(ingress=[{"ports": [{"protocol": "UDP"}]}]))
    assert m.allowed(YA, XA, "UDP", 80) and m.allowed(YA, XA, "UDP", 81)
    assert not m.allowed(YA, XA, "TCP", 80)


def test_sctp_only_rule_never_allows_tcp() -> None:
    m = model(policy(ingress=[{"ports": [{"protocol": "SCTP", "port": 80}]}]))
    assert not m.allowed(YA, XA, "TCP", 80) and not m.allowed(YA, XA, "UDP", 80)
    assert m.allowed(YA, XA, "SCTP", 80)


def test_end_port_is_inclusive() -> None:
    m = model(policy(ingress=[{"ports": [{"port": 79, "endPort": 80}]}]))
    assert m.allowed(YA, XA, "TCP", 79) and m.allowed(YA, XA, "TCP", 80)
    assert not m.allowed(YA, XA, "TCP", 81) and not m.allowed(YA, XA, "UDP", 80)
    single = model(policy(ingress=[{"ports": [{"port": 81, "endPort": 81}]}]))
    assert single.allowed(YA, XA, "TCP", 81) and not single.allowed(YA, XA, "TCP", 80)


def test_named_port_resolves_against_the_destination_pod() -> None:
    lacking = Pod("x", "d", {"pod": "d"}, ("10.0.0.9",), (("serve-81-tcp", "TCP", 80),))
    pods = [*PODS, lacking]
    m = model(policy(ingress=[{"ports": [{"port": "serve-80-tcp"}]}]), pods=pods)
    assert m.allowed(YA, XA, "TCP", 80) and not m.allowed(YA, XA, "TCP", 81)
    assert not m.allowed(YA, XA, "UDP", 80)
    # x/d has no port of that name (its 80 is called serve-81-tcp): nothing matches
    assert not m.allowed(YA, lacking, "TCP", 80)


def test_named_port_in_egress_resolves_against_the_peer_not_the_source() -> None:
    src = Pod("x", "s", {"pod": "s"}, ("10.0.0.8",), ())  # the source has no ports at all
    pods = [*PODS, src]
    m = model(policy(podSelector={"matchLabels": {"pod": "s"}}, policyTypes=["Egress"],
                     egress=[{"ports": [{"port": "serve-81-udp", "protocol": "UDP"}]}]),
              pods=pods)  # fmt: skip
    assert m.allowed(src, YA, "UDP", 81)
    assert not m.allowed(src, YA, "UDP", 80) and not m.allowed(src, YA, "TCP", 81)
    assert not m.allowed(src, OUTSIDE, "UDP", 81)  # nothing to resolve the name against


def test_named_port_with_another_protocol_matches_nothing() -> None:
    m = model(policy(ingress=[{"ports": [{"port": "serve-80-udp"}]}]))  # protocol TCP
    assert not m.allowed(YA, XA, "TCP", 80) and not m.allowed(YA, XA, "UDP", 80)


def test_stacked_policies_are_a_union() -> None:
    p80 = target_a(ingress=[{"ports": [{"port": 80}]}])
    p81 = policy("q", podSelector={"matchLabels": {"pod": "a"}},
                 ingress=[{"ports": [{"port": 81}], "from": [{"podSelector": {}}]}])
    m = model(p80, p81)
    assert m.allowed(YA, XA, "TCP", 80) and m.allowed(XB, XA, "TCP", 81)
    assert not m.allowed(YA, XA, "TCP", 81)


def test_peers_and_ports_must_both_match() -> None:
    m = model(target_a(ingress=[{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}],
                                 "ports": [{"port": 80, "protocol": "UDP"}]}]))  # fmt: skip
    assert m.allowed(XB, XA, "UDP", 80)
    assert not m.allowed(XB, XA, "TCP", 80) and not m.allowed(XC, XA, "UDP", 80)


# -- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "words"), [
    ({"ingress": [{"ports": [{"port": 81, "endPort": 80}]}]}, "endPort"),
    ({"ingress": [{"ports": [{"port": "serve-80-tcp", "endPort": 90}]}]}, "numeric"),
    ({"ingress": [{"ports": [{"port": 80, "protocol": "ICMP"}]}]}, "protocol"),
    ({"ingress": [{"ports": [{"port": "Bad_Name"}]}]}, "port name"),
    ({"ingress": [{"from": [{}]}]}, "must set"),
    ({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]}, "ipBlock"),
    ({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/8"]}}]}]},
     "except"),
    ({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/8"]}}]}]},
     "except"),
    ({"policyTypes": ["Ingress", "Sideways"]}, "policyTypes"),
    ({"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}, "values"),
])  # fmt: skip
def test_the_api_server_refusals(spec: dict[str, Any], words: str) -> None:
    with pytest.raises(InvalidPolicy, match=words):
        Model(NAMESPACES, PODS, [policy(**spec)])


# -- properties ---------------------------------------------------------------------------------

_selectors = st.sampled_from([
    {}, {"matchLabels": {"pod": "a"}}, {"matchLabels": {"ns": "y"}},
    {"matchExpressions": [{"key": "pod", "operator": "NotIn", "values": ["b"]}]},
])  # fmt: skip
_peers = st.one_of(
    st.builds(lambda s: {"podSelector": s}, _selectors),
    st.builds(lambda s: {"namespaceSelector": s}, _selectors),
    st.builds(lambda a, b: {"podSelector": a, "namespaceSelector": b}, _selectors, _selectors),
    st.sampled_from([{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.1.0/24"]}},
                     {"ipBlock": {"cidr": "10.0.2.1/32"}}]),
)  # fmt: skip
_ports = st.sampled_from([{"port": 80}, {"protocol": "UDP"}, {"port": "serve-81-tcp"},
                          {"port": 80, "endPort": 81, "protocol": "UDP"}])  # fmt: skip
_rules = st.builds(
    lambda peers, ports: {k: v for k, v in (("from", peers), ("ports", ports)) if v is not None},
    st.none() | st.lists(_peers, max_size=2), st.none() | st.lists(_ports, max_size=2),
)
_policies = st.builds(
    lambda i, ns, sel, rules: policy(f"p{i}", ns, podSelector=sel, ingress=rules),
    st.integers(0, 99), st.sampled_from("xyz"), _selectors, st.lists(_rules, max_size=2),
)


@given(st.lists(_policies, min_size=1, max_size=4), _policies)
def test_adding_a_policy_to_isolated_pods_only_allows_more(
    policies: list[dict[str, Any]], extra: dict[str, Any]
) -> None:
    """Union (§1.1): order is irrelevant, and for a pod already isolated another
    policy can only add to what is allowed."""
    before = model(*policies)
    after = model(*policies, extra)
    assert model(*reversed(policies)).matrix("UDP", 80) == before.matrix("UDP", 80)
    for proto, port in (("TCP", 80), ("TCP", 81), ("UDP", 80)):
        old, new = before.matrix(proto, port), after.matrix(proto, port)
        for (s, d), ok in old.items():
            if before.isolated(BY[d], "Ingress") and ok:
                assert new[(s, d)], (s, d, proto, port)
