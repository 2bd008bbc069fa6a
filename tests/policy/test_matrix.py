"""The policy agent (``python -m bgpd policy``) against the reference engine, on the
whole reachability matrix of nine pods x/a .. z/c on one lab node, for the cases of
the Kubernetes e2e netpol suite (POLICY.md §2.1) and a few of cyclonus'.

Every case writes its policies (and labels) through ``bgpd.resources``, waits for
the agent's sync barrier, and checks TCP and UDP (and SCTP when the kernel has it)
on ports 80 and 81 for every ordered pair of pods, from the node (always
allowed), and to and from a host outside the cluster.  The pods, probers and
agent are shared by the module; each case starts from no policies, the nine pods
and their first labels (``PolicyLab.reset``).  Pods made at run time, agent
restarts and records written past validation have cases of their own.  See
tests/policy/harness.py for the machinery.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import require_programs, require_root
from tests.policy.harness import NODE, POOL, PROBE_TIMEOUT, PolicyLab, policy_doc, report
from tests.policy.reference import Model


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolicyLab]:
    require_root()
    require_programs("ip", package="iproute2")
    require_programs("nft", package="nftables")
    with PolicyLab(tmp_path_factory.mktemp("policy")) as made:
        made.start()
        yield made


@pytest.fixture
def lab(shared: PolicyLab) -> PolicyLab:
    shared.reset()
    return shared


def pod_is(name: str) -> dict[str, Any]:
    return {"matchLabels": {"pod": name}}


def ns_is(name: str) -> dict[str, Any]:
    return {"matchLabels": {"ns": name}}


def ns_in(*names: str) -> dict[str, Any]:
    return {"matchExpressions": [{"key": "ns", "operator": "In", "values": list(names)}]}


def ip_of(lab: PolicyLab, key: str) -> str:
    address = lab.pods[key].ip
    assert address is not None
    return address


def run(lab: PolicyLab, *policies: dict[str, Any], protocols: tuple[str, ...] | None = None
        ) -> None:  # fmt: skip
    for doc in policies:
        lab.apply_policy(doc)
    lab.sync()
    lab.check(protocols)


# -- the base ---------------------------------------------------------------------------------


def test_no_policy_allows_everything(lab: PolicyLab) -> None:
    status = lab.sync()
    assert status.get("errors", []) == []
    lab.check()


def test_the_harness_sees_a_wrong_expectation(lab: PolicyLab) -> None:
    """The matrix is live: compared with a model that lacks the policy in force,
    the check fails and prints the tables."""
    lab.apply_policy(policy_doc("deny", "y", podSelector=pod_is("c")))
    lab.sync()
    stale = Model(lab.namespaces, lab.pods.values(), [])
    with pytest.raises(AssertionError) as failure:
        lab.check(("TCP",), model=stale)
    text = str(failure.value)
    assert "== TCP/80: 9 wrong" in text and "== TCP/81: 9 wrong" in text, text
    lab.check()


# -- default deny -------------------------------------------------------------------------------


def test_default_deny_ingress(lab: PolicyLab) -> None:
    run(lab, policy_doc("deny-ingress", "x"))


def test_default_deny_all(lab: PolicyLab) -> None:
    run(lab, policy_doc("deny-all", "x", policyTypes=["Ingress", "Egress"]))


def test_deny_egress(lab: PolicyLab) -> None:
    run(lab, policy_doc("deny-egress", "y", policyTypes=["Egress"]))


def test_egress_deny_beats_ingress_allow(lab: PolicyLab) -> None:
    run(lab, policy_doc("deny-egress", "x", policyTypes=["Egress"]),
        policy_doc("allow-all", "y", ingress=[{}]))  # fmt: skip


def test_allow_all_ingress_with_one_empty_rule(lab: PolicyLab) -> None:
    run(lab, policy_doc("deny", "x"), policy_doc("allow-all", "x", ingress=[{}]))


def test_egress_rules_without_policy_types_also_isolate_ingress(lab: PolicyLab) -> None:
    run(lab, policy_doc("egress-only", "y", podSelector=pod_is("b"), egress=[{}]))


# -- peers ----------------------------------------------------------------------------------------


def test_pod_selector(lab: PolicyLab) -> None:
    run(lab, policy_doc("from-b", "x", podSelector=pod_is("a"),
                        ingress=[{"from": [{"podSelector": pod_is("b")}]}]))  # fmt: skip


def test_namespace_selector(lab: PolicyLab) -> None:
    run(lab, policy_doc("from-y", "x", podSelector=pod_is("a"),
                        ingress=[{"from": [{"namespaceSelector": ns_in("y")}]}]))  # fmt: skip


def test_namespace_selected_by_its_name_label(lab: PolicyLab) -> None:
    by_name = {"matchLabels": {"kubernetes.io/metadata.name": "z"}}
    not_y = {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["y"]}]}  # fmt: skip
    run(lab, policy_doc("from-z", "x", ingress=[{"from": [{"namespaceSelector": by_name}]}]),
        policy_doc("not-to-y", "z", podSelector=pod_is("b"), policyTypes=["Egress"],
                   egress=[{"to": [{"namespaceSelector": not_y}]}]))  # fmt: skip


def test_pod_and_namespace_selector_in_one_peer(lab: PolicyLab) -> None:
    peer = {"namespaceSelector": ns_in("y", "z"),
            "podSelector": {"matchExpressions": [
                {"key": "pod", "operator": "NotIn", "values": ["a"]}]}}  # fmt: skip
    run(lab, policy_doc("and", "x", podSelector=pod_is("a"), ingress=[{"from": [peer]}]))


def test_pod_or_namespace_selector_in_two_peers(lab: PolicyLab) -> None:
    peers = [{"namespaceSelector": ns_is("y")}, {"podSelector": pod_is("b")}]
    run(lab, policy_doc("or", "x", podSelector=pod_is("a"), ingress=[{"from": peers}]))


def test_all_namespaces_with_an_empty_namespace_selector(lab: PolicyLab) -> None:
    run(lab, policy_doc("all-ns", "x", podSelector=pod_is("a"),
                        ingress=[{"from": [{"namespaceSelector": {}}],
                                  "ports": [{"port": 81, "protocol": "UDP"}]}]))  # fmt: skip


def test_deny_other_namespaces(lab: PolicyLab) -> None:
    run(lab, policy_doc("same-ns", "x", ingress=[{"from": [{"podSelector": {}}]}]))


def test_egress_to_a_namespace_and_pods(lab: PolicyLab) -> None:
    run(lab, policy_doc("to-z", "y", policyTypes=["Egress"], egress=[
        {"to": [{"namespaceSelector": ns_is("z"), "podSelector": pod_is("b")}]},
        {"to": [{"podSelector": {"matchExpressions": [
            {"key": "pod", "operator": "Exists"}]}}], "ports": [{"port": 80}]},
    ]))  # fmt: skip


# -- ports ----------------------------------------------------------------------------------------


def test_port_only(lab: PolicyLab) -> None:
    run(lab, policy_doc("port-81", "x", podSelector=pod_is("a"),
                        ingress=[{"ports": [{"port": 81}]}]))  # fmt: skip


def test_stacked_policies_are_a_union(lab: PolicyLab) -> None:
    run(lab,
        policy_doc("tcp-80-from-y", "x", podSelector=pod_is("a"),
                   ingress=[{"from": [{"namespaceSelector": ns_is("y")}],
                             "ports": [{"port": 80}]}]),
        policy_doc("udp-from-b", "x", podSelector={"matchExpressions": [
                       {"key": "pod", "operator": "In", "values": ["a", "c"]}]},
                   ingress=[{"from": [{"podSelector": pod_is("b")}],
                             "ports": [{"protocol": "UDP"}]}]),
        policy_doc("deny-egress-z", "z", policyTypes=["Egress"]))  # fmt: skip


def test_ingress_and_egress_in_one_policy(lab: PolicyLab) -> None:
    ingress = [{"from": [{"namespaceSelector": ns_is("y")}]}]
    egress = [{"to": [{"namespaceSelector": ns_is("z")}],
               "ports": [{"port": 80}, {"port": 81, "protocol": "UDP"}]}]  # fmt: skip
    run(lab, policy_doc("both", "x", podSelector=pod_is("a"), policyTypes=["Ingress", "Egress"],
                        ingress=ingress, egress=egress))  # fmt: skip


def test_egress_allow_all_takes_precedence(lab: PolicyLab) -> None:
    run(lab, policy_doc("to-y-80", "x", policyTypes=["Egress"], egress=[
            {"to": [{"namespaceSelector": ns_is("y")}], "ports": [{"port": 80}]}]),
        policy_doc("a-anywhere", "x", podSelector=pod_is("a"), policyTypes=["Egress"],
                   egress=[{}]))  # fmt: skip


def test_named_ports_ingress(lab: PolicyLab) -> None:
    # z/c names its ports the other way round: serve-80-tcp is its port 81
    run(lab, policy_doc("named-in", "z", ingress=[{"ports": [
        {"port": "serve-80-tcp"}, {"port": "serve-81-udp", "protocol": "UDP"}]}]))  # fmt: skip


def test_named_ports_egress(lab: PolicyLab) -> None:
    run(lab, policy_doc("named-out", "x", policyTypes=["Egress"], egress=[{"ports": [
        {"port": "serve-81-tcp"}, {"port": "serve-80-udp", "protocol": "UDP"}]}]))  # fmt: skip


def test_named_port_of_the_wrong_protocol_matches_nothing(lab: PolicyLab) -> None:
    run(lab, policy_doc("wrong-proto", "y", ingress=[{"ports": [
        {"port": "serve-80-udp", "protocol": "TCP"}, {"port": "no-such-port"}]}]))  # fmt: skip


def test_end_port_ranges(lab: PolicyLab) -> None:
    run(lab, policy_doc("ranges", "x", ingress=[{"ports": [
        {"port": 80, "endPort": 81, "protocol": "TCP"},
        {"port": 60, "endPort": 80, "protocol": "UDP"}]}]),
        policy_doc("range-out", "y", policyTypes=["Egress"], egress=[
            {"ports": [{"port": 81, "endPort": 81, "protocol": "UDP"}]}]))  # fmt: skip


def test_protocol_only_udp(lab: PolicyLab) -> None:
    run(lab, policy_doc("udp-only", "x", ingress=[{"ports": [{"protocol": "UDP"}]}]))


def test_sctp_only_rule_does_not_allow_tcp_or_udp(lab: PolicyLab) -> None:
    run(lab, policy_doc("sctp-only", "x", ingress=[{"ports": [
        {"protocol": "SCTP", "port": 80}, {"protocol": "SCTP", "port": 81}]}]),
        policy_doc("sctp-egress", "z", policyTypes=["Egress"],
                   egress=[{"ports": [{"protocol": "SCTP"}]}]))  # fmt: skip


def test_sctp_matrix(lab: PolicyLab) -> None:
    if not lab.sctp:
        pytest.skip("the kernel has no SCTP (socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP) "
                    "fails in a network namespace)")  # fmt: skip
    run(lab, policy_doc("sctp-80", "x", ingress=[{"ports": [{"protocol": "SCTP", "port": 80}]}]),
        policy_doc("sctp-named", "y", policyTypes=["Egress"],
                   egress=[{"ports": [{"protocol": "SCTP", "port": "serve-81-sctp"}]}]),
        protocols=("SCTP", "TCP"))  # fmt: skip


# -- ipBlock --------------------------------------------------------------------------------------


def test_ip_block_of_pod_addresses(lab: PolicyLab) -> None:
    run(lab,
        policy_doc("from-yb", "x", podSelector=pod_is("a"), ingress=[
            {"from": [{"ipBlock": {"cidr": f"{ip_of(lab, 'y/b')}/32"}}]}]),
        policy_doc("to-za", "y", podSelector=pod_is("c"), policyTypes=["Egress"], egress=[
            {"to": [{"ipBlock": {"cidr": f"{ip_of(lab, 'z/a')}/32"}}]}]))  # fmt: skip


def test_ip_block_with_except(lab: PolicyLab) -> None:
    run(lab,
        policy_doc("pool-but", "x", ingress=[{"from": [{"ipBlock": {
            "cidr": POOL, "except": [f"{ip_of(lab, 'x/b')}/32", f"{ip_of(lab, 'y/c')}/32"]}}]}]),
        policy_doc("except-overlap", "z", policyTypes=["Egress"], egress=[
            {"to": [{"ipBlock": {"cidr": POOL, "except": [f"{ip_of(lab, 'y/a')}/32"]}}],
             "ports": [{"port": 80}]},
            {"to": [{"ipBlock": {"cidr": f"{ip_of(lab, 'y/a')}/32"}}],
             "ports": [{"port": 80, "protocol": "UDP"}]}]))  # fmt: skip


def test_all_pods_is_not_all_addresses(lab: PolicyLab) -> None:
    """Cyclonus' "allow all by pod" vs "allow all by IP": an empty namespaceSelector
    matches every pod and no outside address; 0.0.0.0/0 matches both; a missing
    ``to`` matches everything."""
    run(lab,
        policy_doc("all-pods", "x", policyTypes=["Egress"],
                   egress=[{"to": [{"namespaceSelector": {}}]}]),
        policy_doc("all-ips", "y", policyTypes=["Egress"],
                   egress=[{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": [POOL]}}]}]),
        policy_doc("ext-only", "z", ingress=[{"from": [{"ipBlock": {"cidr": "192.0.2.0/24"}}]}]),
        policy_doc("no-to", "z", podSelector=pod_is("c"), policyTypes=["Egress"],
                   egress=[{"ports": [{"port": 81}]}]))  # fmt: skip


def test_ip_block_outside_the_pods_matches_no_pod(lab: PolicyLab) -> None:
    block = {"ipBlock": {"cidr": "192.0.2.0/24"}}
    run(lab, policy_doc("elsewhere", "y", ingress=[{"from": [block]}]))


# -- changes --------------------------------------------------------------------------------------


def test_policy_updated_then_deleted(lab: PolicyLab) -> None:
    run(lab, policy_doc("p", "x", podSelector=pod_is("a"),
                        ingress=[{"from": [{"podSelector": pod_is("b")}]}]))  # fmt: skip
    run(lab, policy_doc("p", "x", podSelector=pod_is("a"),
                        ingress=[{"from": [{"namespaceSelector": ns_is("z")}],
                                  "ports": [{"port": 80}]}]))  # fmt: skip
    run(lab, policy_doc("p", "x", podSelector=pod_is("b"), policyTypes=["Egress"]))
    lab.delete_policy("x", "p")
    lab.sync()
    lab.check()


def test_pod_label_changed(lab: PolicyLab) -> None:
    run(lab, policy_doc("from-clients", "x", podSelector=pod_is("a"),
                        ingress=[{"from": [{"namespaceSelector": {},
                                            "podSelector": {"matchLabels": {"role": "client"}}}]}]),
        policy_doc("client-egress", "y", policyTypes=["Egress"],
                   podSelector={"matchLabels": {"role": "client"}}))  # fmt: skip
    lab.set_pod_labels("y/b", {"pod": "b", "role": "client"})
    lab.sync()
    lab.check()
    lab.set_pod_labels("y/b", {"pod": "b"})
    lab.set_pod_labels("x/c", {"pod": "c", "role": "client"})
    lab.sync()
    lab.check()


def test_namespace_label_changed(lab: PolicyLab) -> None:
    trusted = {"namespaceSelector": {"matchLabels": {"trust": "yes"}}}
    run(lab, policy_doc("from-trusted", "x", ingress=[{"from": [trusted]}]))
    lab.set_namespace_labels("z", {"ns": "z", "trust": "yes"})
    lab.sync()
    lab.check()
    lab.set_namespace_labels("z", {"ns": "z"})
    lab.set_namespace_labels("y", {"ns": "y", "trust": "yes"})
    lab.sync()
    lab.check()


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_agent_restart_keeps_enforcing(lab: PolicyLab, kill: bool) -> None:
    """The table outlives the agent (pods stay protected while it restarts), and a
    new agent takes over the old table with what changed meanwhile."""
    run(lab, policy_doc("deny", "y"), policy_doc("from-x", "y", ingress=[
        {"from": [{"namespaceSelector": ns_is("x")}], "ports": [{"port": 81}]}]))  # fmt: skip
    lab.stop_agent(kill=kill)
    lab.check(("TCP",))
    lab.apply_policy(policy_doc("deny-egress", "z", policyTypes=["Egress"]))
    lab.delete_policy("y", "from-x")
    lab.start_agent()
    lab.sync()
    lab.check()


def test_rapid_updates_settle_on_the_last(lab: PolicyLab) -> None:
    for i in range(12):
        lab.apply_policy(policy_doc("churn", "x", podSelector=pod_is("abc"[i % 3]), ingress=[
            {"from": [{"namespaceSelector": ns_is("xyz"[i % 3])}], "ports": [{"port": 80 + i % 2}]},
        ]))  # fmt: skip
        lab.apply_policy(policy_doc(f"extra-{i % 4}", "z", policyTypes=["Egress"], egress=[
            {"to": [{"podSelector": pod_is("abc"[i % 3])}]}]))  # fmt: skip
        lab.set_pod_labels("y/c", {"pod": "c", "round": str(i)})
    lab.delete_policy("z", "extra-1")
    lab.sync()
    lab.check()


# -- pods come and go -----------------------------------------------------------------------------


def test_new_pod_is_isolated_before_the_agent_sees_it(lab: PolicyLab) -> None:
    """§1.4: once a policy is in force, a new pod it selects is isolated from its
    first packet; allow rules may come later.  The agent is paused (SIGSTOP) while
    the pod is made, so nothing about the pod can have been rendered yet."""
    lab.apply_policy(policy_doc("deny-all", "x", policyTypes=["Ingress", "Egress"]))
    lab.apply_policy(policy_doc("from-y", "x", podSelector=pod_is("d"), ingress=[
        {"from": [{"namespaceSelector": ns_is("y")}]}]))  # fmt: skip
    lab.sync()
    lab.pause_agent()
    try:
        lab.add_pod("x", "d")
        cells = [c for c in lab.cells() if "x/d" in c[:2] and c[0] != NODE]
        expected = lab.expected(cells)
        observed = lab.probe(cells, PROBE_TIMEOUT)
    finally:
        lab.resume_agent()
    leaks = {c for c in cells if observed[c] and not expected[c]}
    assert not leaks, "allowed before the agent saw the pod (X: a leak):\n\n" + report(
        cells, expected, observed, observed, bad=leaks)
    lab.sync()
    lab.check()


REUSED = "10.78.0.10"


def test_deleted_pod_address_reused_by_another_pod(lab: PolicyLab) -> None:
    """A pod's address given to a new pod elsewhere must lose every right of the
    old one (no stale set member)."""
    run(lab, policy_doc("from-x-d", "z", ingress=[
            {"from": [{"namespaceSelector": ns_is("x"), "podSelector": pod_is("d")}]}]),
        policy_doc("d-out", "x", podSelector=pod_is("d"), policyTypes=["Egress"],
                   egress=[{"to": [{"namespaceSelector": ns_is("z")}]}]))  # fmt: skip
    lab.add_pod("x", "d", address=REUSED)
    lab.sync()
    lab.check()
    lab.remove_pod("x/d")
    assert lab.add_pod("y", "d", address=REUSED).ip == REUSED
    lab.sync()
    lab.check()
    lab.remove_pod("y/d")
    lab.sync()
    lab.check()


BROKEN_SPECS: dict[str, dict[str, Any] | None] = {
    "end-before-start": {"ingress": [{"ports": [{"port": 81, "endPort": 80}]}]},
    "icmp": {"ingress": [{"ports": [{"protocol": "ICMP"}]}]},
    "block-and-pods": {"ingress": [{"from": [{"ipBlock": {"cidr": "0.0.0.0/0"},
                                              "podSelector": {}}]}]},
    "bad-except": {"policyTypes": ["Egress"], "egress": [
        {"to": [{"ipBlock": {"cidr": "10.77.0.0/16", "except": ["10.0.0.0/8"]}}]}]},
    "no-selector": None,
}  # fmt: skip


def test_invalid_records_keep_the_rules_in_force(lab: PolicyLab) -> None:
    """Records no validation let through, written straight into the store: the
    last good version of a policy stays in force, a policy never valid changes
    nothing (neither allow-all nor drop-all), and the status names each; a good
    version written later takes over and clears the error."""
    guard = policy_doc("guard", "x", podSelector=pod_is("a"),
                       ingress=[{"from": [{"podSelector": pod_is("b")}]}])  # fmt: skip
    run(lab, guard)
    key = next(k for k in lab.store.keys("resources/networkpolicies/") if k.endswith("/guard"))
    record = lab.store.get(key)
    assert record is not None
    stored = record.value
    broken = BROKEN_SPECS["end-before-start"] or {}
    lab.store.put(key, {**stored, "spec": {**stored["spec"], **broken}})
    for name, spec in BROKEN_SPECS.items():
        value = json.loads(json.dumps(stored))
        value["metadata"] = {"name": name, "namespace": "y"}
        value["spec"] = {"podSelector": {}, **spec} if spec else {"policyTypes": ["Ingress"]}
        lab.store.put(f"resources/networkpolicies/y/{name}", value)
    status = lab.sync()
    named = json.dumps(status.get("errors"))
    for name in ["guard", *BROKEN_SPECS]:
        assert name in named, (name, status)
    lab.check()  # lab.policies holds the good version of guard only
    lab.apply_policy(policy_doc("guard", "x", podSelector=pod_is("a"),
                                ingress=[{"from": [{"podSelector": pod_is("c")}]}]))  # fmt: skip
    status = lab.sync()
    assert "guard" not in json.dumps(status.get("errors")), status
    lab.check()


def test_node_to_pods_always_allowed_under_deny_all(lab: PolicyLab) -> None:
    for ns in ("x", "y", "z"):
        lab.apply_policy(policy_doc("deny-all", ns, policyTypes=["Ingress", "Egress"]))
    lab.sync()
    cells = [c for c in lab.cells() if c[0] == NODE]
    observed = lab.probe(cells, 1.0)
    assert all(observed.values()), sorted(c for c, ok in observed.items() if not ok)
    lab.check()
