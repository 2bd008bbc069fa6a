"""The Kubernetes kinds (NetworkPolicy, Namespace, Pod): each validation rule of
Kubernetes' validation.go with its field path and reason, the API server's
defaulting in the canonical dump, what a real pod manifest keeps, and how the
kinds are told apart from Calico's by apiVersion."""

from __future__ import annotations

from typing import Any

import pytest

from bgpd.resources.models import (
    Namespace,
    NetworkPolicy,
    Pod,
    ResourceError,
    dump,
    load_resource,
    load_resources,
)
from bgpd.resources.models_k8s import describe_selector, port_name_problems

NET = "networking.k8s.io/v1"


def policy(
    spec: dict[str, Any] | None = None, name: str = "deny", **metadata: Any
) -> dict[str, Any]:
    return {"apiVersion": NET, "kind": "NetworkPolicy", "metadata": {"name": name, **metadata},
            "spec": {"podSelector": {}, **(spec or {})}}  # fmt: skip


def pod(spec: dict[str, Any] | None = None, name: str = "a", **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": spec or {}, **extra}  # fmt: skip


def namespace(name: str = "x", **metadata: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, **metadata}}


def refused(doc: object) -> ResourceError:
    with pytest.raises(ResourceError) as info:
        load_resources(doc)
    return info.value


def spec_of(doc: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = dump(load_resource(doc))["spec"]
    return out


# -- NetworkPolicy: the canonical form and the API server's defaults ---------------------------


def test_full_policy_dumps_as_given_with_defaults_filled_in() -> None:
    doc = policy({
        "podSelector": {"matchLabels": {"app": "db"},
                        "matchExpressions": [{"key": "tier", "operator": "In",
                                              "values": ["a", "b"]},
                                             {"key": "legacy", "operator": "DoesNotExist"}]},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "x"}},
                               "podSelector": {}},
                              {"ipBlock": {"cidr": "172.17.0.0/16",
                                           "except": ["172.17.1.0/24"]}}],
                     "ports": [{"protocol": "TCP", "port": 6379},
                               {"port": "metrics"},
                               {"protocol": "UDP", "port": 32000, "endPort": 32768}]}],
        "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}]}],
    }, namespace="x", labels={"team": "x"}, annotations={"note": "n"})  # fmt: skip
    assert dump(load_resource(doc)) == {
        "apiVersion": NET, "kind": "NetworkPolicy",
        "metadata": {"name": "deny", "namespace": "x", "labels": {"team": "x"},
                     "annotations": {"note": "n"}},
        "spec": {
            "podSelector": {"matchLabels": {"app": "db"},
                            "matchExpressions": [{"key": "tier", "operator": "In",
                                                  "values": ["a", "b"]},
                                                 {"key": "legacy", "operator": "DoesNotExist"}]},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"ports": [{"protocol": "TCP", "port": 6379},
                                   {"protocol": "TCP", "port": "metrics"},
                                   {"protocol": "UDP", "port": 32000, "endPort": 32768}],
                         "from": [{"podSelector": {},
                                   "namespaceSelector": {"matchLabels": {"team": "x"}}},
                                  {"ipBlock": {"cidr": "172.17.0.0/16",
                                               "except": ["172.17.1.0/24"]}}]}],
            "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}]}],
        },
    }  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "types"),
    [
        ({}, ["Ingress"]),
        ({"ingress": [{}]}, ["Ingress"]),
        # egress rules and no policyTypes: isolated for ingress too (POLICY.md §1.2)
        ({"egress": [{}]}, ["Ingress", "Egress"]),
        ({"egress": []}, ["Ingress"]),
        ({"policyTypes": [], "egress": [{"to": [{"podSelector": {}}]}]}, ["Ingress", "Egress"]),
        ({"policyTypes": ["Egress"]}, ["Egress"]),
        ({"policyTypes": ["Egress"], "egress": [{}]}, ["Egress"]),
        ({"policyTypes": ["Egress", "Ingress"]}, ["Egress", "Ingress"]),
    ],
)
def test_policy_types_default(spec: dict[str, Any], types: list[str]) -> None:
    assert spec_of(policy(spec))["policyTypes"] == types


def test_missing_protocol_is_tcp() -> None:
    ports = spec_of(policy({"ingress": [{"ports": [{"port": 80}, {}, {"protocol": "SCTP"}]}]}))[
        "ingress"][0]["ports"]  # fmt: skip
    assert ports == [{"protocol": "TCP", "port": 80}, {"protocol": "TCP"}, {"protocol": "SCTP"}]


def test_rules_kept_as_given() -> None:
    """ingress/egress as given ([] and missing both: no rule); an empty from, to
    or ports is left out (missing and empty both match all)."""
    assert "ingress" not in spec_of(policy())
    assert spec_of(policy({"ingress": []}))["ingress"] == []
    assert spec_of(policy({"ingress": [{}]}))["ingress"] == [{}]
    assert spec_of(policy({"ingress": [{"from": [], "ports": []}]}))["ingress"] == [{}]
    assert spec_of(policy({"egress": [{"to": None}]}))["egress"] == [{}]


def test_empty_selectors_are_kept() -> None:
    """``namespaceSelector: {}`` (every namespace) differs from no selector."""
    spec = spec_of(policy({"ingress": [{"from": [{"namespaceSelector": {}}]}]}))
    assert spec["podSelector"] == {}
    assert spec["ingress"][0]["from"] == [{"namespaceSelector": {}}]


def test_namespace_defaults_to_default() -> None:
    assert dump(load_resource(policy()))["metadata"] == {"name": "deny", "namespace": "default"}
    assert dump(load_resource(policy(), namespace="x"))["metadata"]["namespace"] == "x"
    assert dump(load_resource(policy(namespace="y"), namespace="x"))["metadata"][
        "namespace"] == "y"  # fmt: skip
    assert dump(load_resource(policy(namespace=""), namespace="x"))["metadata"][
        "namespace"] == "x"  # fmt: skip
    resource = load_resource(policy(namespace="x"))
    assert isinstance(resource, NetworkPolicy) and str(resource) == 'NetworkPolicy "x/deny"'


def test_dump_is_a_fixed_point() -> None:
    doc = policy({"egress": [{"ports": [{"port": 53, "protocol": "UDP"}],
                              "to": [{"namespaceSelector": {"matchExpressions": [
                                  {"key": "kubernetes.io/metadata.name", "operator": "In",
                                   "values": ["kube-system"]}]}}]}]}, namespace="x")  # fmt: skip
    once = dump(load_resource(doc))
    assert dump(load_resource(once)) == once


def test_server_fields_and_status_accepted() -> None:
    doc = policy(namespace="x", uid="u-1", creationTimestamp="2024-01-01T00:00:00Z",
                 resourceVersion="7", generation=3, managedFields=[{"manager": "kubectl"}])
    doc["status"] = {}
    assert dump(load_resource(doc))["metadata"] == {
        "name": "deny", "namespace": "x", "uid": "u-1",
        "creationTimestamp": "2024-01-01T00:00:00Z", "resourceVersion": "7",
    }  # fmt: skip


def test_describe_selector() -> None:
    assert describe_selector({}) == "<none>"
    assert describe_selector({"matchLabels": {"app": "x", "tier": "db"}}) == "app=x,tier=db"
    assert describe_selector({"matchExpressions": [
        {"key": "a", "operator": "In", "values": ["1", "2"]},
        {"key": "b", "operator": "NotIn", "values": ["3"]},
        {"key": "c", "operator": "Exists"}, {"key": "d", "operator": "DoesNotExist"},
    ]}) == "a in (1,2),b notin (3),c,!d"  # fmt: skip


# -- NetworkPolicy: refusals -----------------------------------------------------------------


def ingress_port(**port: Any) -> dict[str, Any]:
    return policy({"ingress": [{"ports": [port]}]})


def ingress_peer(**peer: Any) -> dict[str, Any]:
    return policy({"ingress": [{"from": [peer]}]})


def egress_peer(**peer: Any) -> dict[str, Any]:
    return policy({"egress": [{"to": [peer]}]})


def selector(**sel: Any) -> dict[str, Any]:
    return policy({"podSelector": sel})


def expression(**expr: Any) -> dict[str, Any]:
    return selector(matchExpressions=[expr])


P0 = "spec.ingress[0].ports[0]"
F0 = "spec.ingress[0].from[0]"

POLICY_REFUSALS: list[tuple[str, dict[str, Any], str, str]] = [
    # metadata
    ("name", policy(name="Deny"), "metadata.name", "not a valid name"),
    ("namespace", policy(namespace="Team_A"), "metadata.namespace", "not a valid name"),
    ("long namespace", policy(namespace="a" * 64), "metadata.namespace", "longer than 63"),
    ("unknown metadata", policy(nmae="x"), "metadata.nmae", "unknown field"),
    # spec
    ("no spec", {k: v for k, v in policy().items() if k != "spec"}, "spec", "required"),
    ("no pod selector", {**policy(), "spec": {}}, "spec.podSelector", "required"),
    ("null pod selector", policy({"podSelector": None}), "spec.podSelector", "must be a mapping"),
    ("unknown spec field", policy({"ingres": []}), "spec.ingres", "unknown field"),
    ("unknown rule field", policy({"ingress": [{"to": []}]}), "spec.ingress[0].to",
     "unknown field"),
    # policyTypes
    ("policy type", policy({"policyTypes": ["ingress"]}), "spec.policyTypes[0]",
     "'ingress' is not 'Ingress' or 'Egress'"),
    ("three policy types", policy({"policyTypes": ["Ingress", "Egress", "Ingress"]}),
     "spec.policyTypes", "may not specify more than two policyTypes"),
    ("policy type twice", policy({"policyTypes": ["Egress", "Egress"]}), "spec.policyTypes[1]",
     "'Egress' is given twice"),
    # selectors
    ("match label key", selector(matchLabels={"a/b/c": "x"}), "spec.podSelector.matchLabels",
     "prefix"),
    ("match label value", selector(matchLabels={"app": "-x"}), "spec.podSelector.matchLabels",
     "value '-x'"),
    ("match label type", selector(matchLabels={"app": 1}), "spec.podSelector.matchLabels",
     "must be a string"),
    ("In without values", expression(key="a", operator="In"),
     "spec.podSelector.matchExpressions[0].values", "must be specified when operator is In"),
    ("NotIn with empty values", expression(key="a", operator="NotIn", values=[]),
     "spec.podSelector.matchExpressions[0].values", "must be specified"),
    ("Exists with values", expression(key="a", operator="Exists", values=["x"]),
     "spec.podSelector.matchExpressions[0].values", "may not be specified when operator is "
     "Exists or DoesNotExist"),
    ("DoesNotExist with values", expression(key="a", operator="DoesNotExist", values=["x"]),
     "spec.podSelector.matchExpressions[0].values", "may not be specified"),
    ("operator", expression(key="a", operator="Gt", values=["1"]),
     "spec.podSelector.matchExpressions[0].operator",
     "'Gt' is not 'In', 'NotIn', 'Exists' or 'DoesNotExist'"),
    ("no operator", expression(key="a"), "spec.podSelector.matchExpressions[0].operator",
     "required"),
    ("expression key", expression(key="-a", operator="Exists"),
     "spec.podSelector.matchExpressions[0].key", "label key '-a'"),
    ("empty expression key", expression(key="", operator="Exists"),
     "spec.podSelector.matchExpressions[0].key", "label key"),
    ("expression value", expression(key="a", operator="In", values=["a b"]),
     "spec.podSelector.matchExpressions[0].values[0]", "'a b' is not a label value"),
    ("long expression value", expression(key="a", operator="In", values=["x" * 64]),
     "spec.podSelector.matchExpressions[0].values[0]", "at most 63"),
    ("peer selector", ingress_peer(namespaceSelector={"matchExpressions": [{"key": "a"}]}),
     f"{F0}.namespaceSelector.matchExpressions[0].operator", "required"),
    # peers
    ("empty peer", ingress_peer(), F0, "must specify a peer"),
    ("null peer fields", ingress_peer(podSelector=None, ipBlock=None), F0, "must specify a peer"),
    ("empty egress peer", egress_peer(), "spec.egress[0].to[0]", "must specify a peer"),
    ("ipBlock and podSelector", ingress_peer(ipBlock={"cidr": "10.0.0.0/8"}, podSelector={}),
     f"{F0}.ipBlock", "may not specify both ipBlock and another peer"),
    ("ipBlock and namespaceSelector",
     egress_peer(ipBlock={"cidr": "10.0.0.0/8"}, namespaceSelector={}),
     "spec.egress[0].to[0].ipBlock", "may not specify both"),
    ("unknown peer field", ingress_peer(podselector={}), f"{F0}.podselector", "unknown field"),
    # ipBlock
    ("no cidr", ingress_peer(ipBlock={}), f"{F0}.ipBlock.cidr", "required"),
    ("empty cidr", ingress_peer(ipBlock={"cidr": ""}), f"{F0}.ipBlock.cidr", "required"),
    ("cidr", ingress_peer(ipBlock={"cidr": "10.0.0/8"}), f"{F0}.ipBlock.cidr",
     "not an IP address"),
    ("bare address", ingress_peer(ipBlock={"cidr": "10.0.0.1"}), f"{F0}.ipBlock.cidr",
     "address/length"),
    ("prefix length", ingress_peer(ipBlock={"cidr": "10.0.0.0/33"}), f"{F0}.ipBlock.cidr",
     "prefix length must be 0-32"),
    ("except outside", ingress_peer(ipBlock={"cidr": "10.0.0.0/16", "except": ["10.1.0.0/24"]}),
     f"{F0}.ipBlock.except[0]", "10.1.0.0/24 must be a strict subset of cidr 10.0.0.0/16"),
    ("except equal", ingress_peer(ipBlock={"cidr": "10.0.0.0/16", "except": ["10.0.0.0/16"]}),
     f"{F0}.ipBlock.except[0]", "must be a strict subset"),
    ("except wider", ingress_peer(ipBlock={"cidr": "10.0.0.0/16", "except": ["10.0.0.0/8"]}),
     f"{F0}.ipBlock.except[0]", "must be a strict subset"),
    ("except family", ingress_peer(ipBlock={"cidr": "10.0.0.0/8", "except": ["fd00::/64"]}),
     f"{F0}.ipBlock.except[0]", "fd00::/64 is not IPv4 as cidr 10.0.0.0/8 is"),
    ("except v6 family", ingress_peer(ipBlock={"cidr": "fd00::/48", "except": ["10.0.0.0/8"]}),
     f"{F0}.ipBlock.except[0]", "is not IPv6"),
    ("second except", ingress_peer(ipBlock={"cidr": "10.0.0.0/8",
                                            "except": ["10.1.0.0/16", "11.0.0.0/16"]}),
     f"{F0}.ipBlock.except[1]", "strict subset"),
    ("except syntax", ingress_peer(ipBlock={"cidr": "10.0.0.0/8", "except": ["10.1.0.0"]}),
     f"{F0}.ipBlock.except[0]", "address/length"),
    ("except type", ingress_peer(ipBlock={"cidr": "10.0.0.0/8", "except": "10.1.0.0/16"}),
     f"{F0}.ipBlock.except", "must be a list"),
    # ports
    ("protocol", ingress_port(protocol="ICMP"), f"{P0}.protocol",
     "'ICMP' is not 'TCP', 'UDP' or 'SCTP'"),
    ("lower case protocol", ingress_port(protocol="tcp"), f"{P0}.protocol", "'tcp' is not"),
    ("empty protocol", ingress_port(protocol=""), f"{P0}.protocol", "'' is not"),
    ("port zero", ingress_port(port=0), f"{P0}.port", "between 1 and 65535"),
    ("port too big", ingress_port(port=65536), f"{P0}.port", "between 1 and 65535"),
    ("port type", ingress_port(port=True), f"{P0}.port", "a port number or a port name, not a "
     "boolean"),
    ("port fraction", ingress_port(port=80.5), f"{P0}.port", "not a fraction"),
    ("end port below port", ingress_port(port=32000, endPort=31999), f"{P0}.endPort",
     "must be greater than or equal to port"),
    ("end port without port", ingress_port(endPort=80), f"{P0}.endPort",
     "may not be specified when port is not specified"),
    ("end port with named port", ingress_port(port="http", endPort=80), f"{P0}.endPort",
     "may not be specified when port is non-numeric"),
    ("end port too big", ingress_port(port=80, endPort=65536), f"{P0}.endPort",
     "between 1 and 65535"),
    ("end port zero", ingress_port(port=80, endPort=0), f"{P0}.endPort", "between 1 and 65535"),
    ("end port type", ingress_port(port=80, endPort="90"), f"{P0}.endPort",
     "must be an integer, not a string"),
    ("egress port", policy({"egress": [{"ports": [{"port": "HTTP"}]}]}),
     "spec.egress[0].ports[0].port", "'HTTP' is not a port name"),
    # named ports (IsValidPortName)
    ("empty port name", ingress_port(port=""), f"{P0}.port", "must be 1-15 characters"),
    ("long port name", ingress_port(port="a" * 16), f"{P0}.port", "must be 1-15 characters"),
    ("upper case port name", ingress_port(port="Http"), f"{P0}.port",
     "only lower case letters (a-z), digits (0-9) and '-'"),
    ("port name underscore", ingress_port(port="my_port"), f"{P0}.port", "only lower case"),
    ("numeric port name", ingress_port(port="8080"), f"{P0}.port",
     "must contain at least one letter"),
    ("double hyphen", ingress_port(port="a--b"), f"{P0}.port", "consecutive hyphens"),
    ("leading hyphen", ingress_port(port="-http"), f"{P0}.port", "begin or end with a hyphen"),
    ("trailing hyphen", ingress_port(port="http-"), f"{P0}.port", "begin or end with a hyphen"),
    ("unknown port field", ingress_port(port=80, end_port=90), f"{P0}.end_port",
     "unknown field"),
]


@pytest.mark.parametrize(
    ("doc", "path", "reason"), [case[1:] for case in POLICY_REFUSALS],
    ids=[case[0] for case in POLICY_REFUSALS],
)  # fmt: skip
def test_policy_refusals(doc: dict[str, Any], path: str, reason: str) -> None:
    error = refused(doc)
    assert any(p == path and reason in r for p, r in error.problems), error.problems


def test_message_names_namespace_name_field_and_reason() -> None:
    error = refused(policy({"ingress": [{"ports": [{"port": 80, "endPort": 79}]}]},
                           namespace="x"))  # fmt: skip
    assert str(error) == ('NetworkPolicy "x/deny": spec.ingress[0].ports[0].endPort: must be '
                          "greater than or equal to port")  # fmt: skip
    assert str(refused(policy({"policyTypes": ["Both"]}))).startswith(
        'NetworkPolicy "default/deny": spec.policyTypes[0]:'
    )


def test_every_problem_of_a_policy_is_named() -> None:
    error = refused(policy({"ingress": [{"ports": [{"endPort": 1}, {"port": "A"}],
                                         "from": [{}]}]}))  # fmt: skip
    assert [p for p, _ in error.problems] == [f"{P0}.endPort", "spec.ingress[0].ports[1].port",
                                              F0]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "ok"),
    [("http", True), ("h", True), ("a-b-c", True), ("web8080", True), ("x" * 15, True),
     ("8080", False), ("", False), ("x" * 16, False), ("a--b", False), ("-a", False),
     ("a-", False), ("A", False), ("a.b", False), ("ä", False)],
)  # fmt: skip
def test_port_names(name: str, ok: bool) -> None:
    assert (port_name_problems(name) == []) is ok


def test_accepted_edge_cases() -> None:
    """Host bits in cidr (Kubernetes' legacy CIDR fields take them), IPv6,
    ``port == endPort``, a port name with digits, selector keys with prefixes."""
    spec = spec_of(policy({
        "podSelector": {"matchExpressions": [{"key": "example.com/tier", "operator": "NotIn",
                                              "values": ["", "a.b_c"]}]},
        "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.1/8", "except": ["10.0.0.1/32"]}},
                              {"ipBlock": {"cidr": "fd00::/48", "except": ["fd00::/64"]}},
                              {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}],
                     "ports": [{"port": 443, "endPort": 443}, {"port": "h2c-8080"}]}],
    }))  # fmt: skip
    assert spec["ingress"][0]["from"][0] == {"ipBlock": {"cidr": "10.0.0.1/8",
                                                         "except": ["10.0.0.1/32"]}}  # fmt: skip
    assert spec["ingress"][0]["ports"][0] == {"protocol": "TCP", "port": 443, "endPort": 443}


# -- Namespace -------------------------------------------------------------------------------


def test_namespace_gets_its_name_label() -> None:
    resource = load_resource(namespace("team-a", labels={"env": "prod"}))
    assert isinstance(resource, Namespace)
    assert dump(resource) == {
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "team-a",
                     "labels": {"env": "prod", "kubernetes.io/metadata.name": "team-a"}},
    }  # fmt: skip
    assert dump(load_resource(namespace("b")))["metadata"]["labels"] == {
        "kubernetes.io/metadata.name": "b"
    }


def test_namespace_name_label_is_overwritten() -> None:
    doc = namespace("b", labels={"kubernetes.io/metadata.name": "other"})
    assert dump(load_resource(doc))["metadata"]["labels"] == {"kubernetes.io/metadata.name": "b"}


def test_namespace_spec_and_status_dropped() -> None:
    doc = {**namespace("b", annotations={"a": "b"}), "spec": {"finalizers": ["kubernetes"]},
           "status": {"phase": "Active"}}  # fmt: skip
    assert dump(load_resource(doc)) == {
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "b", "labels": {"kubernetes.io/metadata.name": "b"},
                     "annotations": {"a": "b"}},
    }  # fmt: skip


NAMESPACE_REFUSALS: list[tuple[str, dict[str, Any], str, str]] = [
    ("subdomain name", namespace("a.b"), "metadata.name", "not a valid name"),
    ("upper case", namespace("A"), "metadata.name", "not a valid name"),
    ("long name", namespace("a" * 64), "metadata.name", "longer than 63"),
    ("namespaced", namespace("a", namespace="default"), "metadata.namespace",
     "Namespace is not a namespaced resource"),
    ("label", namespace("a", labels={"a": "b c"}), "metadata.labels", "value 'b c'"),
    ("unknown field", {**namespace("a"), "data": {}}, "data", "unknown field"),
]


@pytest.mark.parametrize(
    ("doc", "path", "reason"), [case[1:] for case in NAMESPACE_REFUSALS],
    ids=[case[0] for case in NAMESPACE_REFUSALS],
)  # fmt: skip
def test_namespace_refusals(doc: dict[str, Any], path: str, reason: str) -> None:
    error = refused(doc)
    assert any(p == path and reason in r for p, r in error.problems), error.problems


# -- Pod -------------------------------------------------------------------------------------

#: A pod as an operator writes one, and as ``kubectl get -o yaml`` returns it.
FULL_POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "web-7d9c5b8f4-x2x9q", "namespace": "shop", "generateName": "web-7d9c5b8f4-",
        "labels": {"app": "web", "pod-template-hash": "7d9c5b8f4"},
        "annotations": {"kubectl.kubernetes.io/restartedAt": "2024-05-01T12:00:00Z"},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                             "uid": "1", "controller": True, "blockOwnerDeletion": True}],
        "uid": "0c1d", "resourceVersion": "4242", "creationTimestamp": "2024-05-01T12:00:00Z",
    },
    "spec": {
        "nodeName": "node-1",
        "serviceAccountName": "default",
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "securityContext": {"runAsNonRoot": True},
        "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                         "effect": "NoExecute", "tolerationSeconds": 300}],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        "volumes": [{"name": "cache", "emptyDir": {"sizeLimit": "1Gi"}},
                    {"name": "config", "configMap": {"name": "web-config"}}],
        "initContainers": [{
            "name": "migrate", "image": "shop/migrate:1.2", "command": ["/migrate", "--up"],
            "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}},
        }],
        "containers": [
            {"name": "web", "image": "nginx:1.27", "imagePullPolicy": "IfNotPresent",
             "args": ["-g", "daemon off;"],
             "env": [{"name": "MODE", "value": "prod"},
                     {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
             "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
                       {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                       {"containerPort": 9090, "hostPort": 19090, "hostIP": "0.0.0.0"}],
             "resources": {"requests": {"cpu": "250m", "memory": "128Mi"},
                           "limits": {"memory": "256Mi"}},
             "volumeMounts": [{"name": "cache", "mountPath": "/var/cache/nginx"}],
             "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"},
                                "periodSeconds": 5},
             "livenessProbe": {"tcpSocket": {"port": 8080}},
             "securityContext": {"allowPrivilegeEscalation": False},
             "terminationMessagePolicy": "File"},
            {"name": "metrics", "image": "prom/exporter", "ports": [{"name": "metrics",
                                                                     "containerPort": 9100}]},
        ],
    },
    "status": {
        "phase": "Running", "qosClass": "Burstable", "hostIP": "10.0.0.11",
        "hostIPs": [{"ip": "10.0.0.11"}], "podIP": "10.244.1.7",
        "podIPs": [{"ip": "10.244.1.7"}, {"ip": "fd00:244:1::7"}],
        "startTime": "2024-05-01T12:00:01Z",
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [{"name": "web", "ready": True, "restartCount": 0,
                               "state": {"running": {"startedAt": "2024-05-01T12:00:03Z"}}}],
    },
}  # fmt: skip


def test_real_pod_manifest_keeps_only_what_the_agent_reads() -> None:
    resource = load_resource(FULL_POD)
    assert isinstance(resource, Pod)
    assert dump(resource) == {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-7d9c5b8f4-x2x9q", "namespace": "shop",
                     "labels": {"app": "web", "pod-template-hash": "7d9c5b8f4"},
                     "annotations": {"kubectl.kubernetes.io/restartedAt": "2024-05-01T12:00:00Z"},
                     "uid": "0c1d", "creationTimestamp": "2024-05-01T12:00:00Z",
                     "resourceVersion": "4242"},
        "spec": {
            "nodeName": "node-1",
            "containers": [
                {"name": "web", "ports": [
                    {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                    {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                    {"containerPort": 9090, "protocol": "TCP", "hostPort": 19090,
                     "hostIP": "0.0.0.0"}]},
                {"name": "metrics", "ports": [{"name": "metrics", "containerPort": 9100,
                                               "protocol": "TCP"}]},
            ],
            "initContainers": [{"name": "migrate"}],
        },
        "status": {"podIP": "10.244.1.7",
                   "podIPs": [{"ip": "10.244.1.7"}, {"ip": "fd00:244:1::7"}]},
    }  # fmt: skip
    once = dump(resource)
    assert dump(load_resource(once)) == once


def test_pod_defaults() -> None:
    out = dump(load_resource(pod({"hostNetwork": True, "containers": [
        {"name": "c", "ports": [{"containerPort": 80, "protocol": "", "name": "", "hostPort": 0,
                                 "hostIP": ""}]}]})))  # fmt: skip
    assert out["metadata"] == {"name": "a", "namespace": "default"}
    assert out["spec"] == {"hostNetwork": True, "containers": [
        {"name": "c", "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}  # fmt: skip
    assert "status" not in out
    bare = dump(load_resource({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "b"}}))
    assert bare["spec"] == {}
    assert dump(load_resource(pod({"hostNetwork": False})))["spec"] == {}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({"podIP": "10.0.0.1"}, {"podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}]}),
        ({"podIPs": [{"ip": "fd00::1"}]}, {"podIP": "fd00::1", "podIPs": [{"ip": "fd00::1"}]}),
        # conversion.go: podIP wins when the two differ
        ({"podIP": "10.0.0.2", "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]},
         {"podIP": "10.0.0.2", "podIPs": [{"ip": "10.0.0.2"}]}),
        ({"phase": "Pending"}, None),
        ({"podIP": "", "podIPs": []}, None),
    ],
)  # fmt: skip
def test_pod_addresses(status: dict[str, Any], expected: dict[str, Any] | None) -> None:
    assert dump(load_resource(pod(status=status))).get("status") == expected


POD_REFUSALS: list[tuple[str, dict[str, Any], str, str]] = [
    ("name", pod(name="A"), "metadata.name", "not a valid name"),
    ("namespace", {**pod(), "metadata": {"name": "a", "namespace": "a.b"}}, "metadata.namespace",
     "not a valid name"),
    ("node name", pod({"nodeName": "Node_1"}), "spec.nodeName", "not a valid name"),
    ("host network type", pod({"hostNetwork": "true"}), "spec.hostNetwork",
     "must be true or false"),
    ("containers type", pod({"containers": {"name": "c"}}), "spec.containers", "must be a list"),
    ("container name", pod({"containers": [{"name": "C"}]}), "spec.containers[0].name",
     "not a valid name"),
    ("no container name", pod({"containers": [{"image": "x"}]}), "spec.containers[0].name",
     "required"),
    ("container twice", pod({"containers": [{"name": "c"}], "initContainers": [{"name": "c"}]}),
     "spec.containers[0].name", "'c' is given twice"),
    ("no container port", pod({"containers": [{"name": "c", "ports": [{"name": "http"}]}]}),
     "spec.containers[0].ports[0].containerPort", "required"),
    ("zero container port", pod({"containers": [{"name": "c", "ports": [{"containerPort": 0}]}]}),
     "spec.containers[0].ports[0].containerPort", "required"),
    ("container port range",
     pod({"containers": [{"name": "c", "ports": [{"containerPort": 70000}]}]}),
     "spec.containers[0].ports[0].containerPort", "between 1 and 65535"),
    ("container port type",
     pod({"containers": [{"name": "c", "ports": [{"containerPort": "80"}]}]}),
     "spec.containers[0].ports[0].containerPort", "must be an integer, not a string"),
    ("host port range",
     pod({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 65536}]}]}),
     "spec.containers[0].ports[0].hostPort", "between 1 and 65535"),
    ("host ip", pod({"containers": [{"name": "c", "ports": [{"containerPort": 80,
                                                             "hostIP": "localhost"}]}]}),
     "spec.containers[0].ports[0].hostIP", "not an IP address"),
    ("container protocol",
     pod({"containers": [{"name": "c", "ports": [{"containerPort": 80, "protocol": "ICMP"}]}]}),
     "spec.containers[0].ports[0].protocol", "'ICMP' is not 'TCP', 'UDP' or 'SCTP'"),
    ("port name", pod({"containers": [{"name": "c", "ports": [{"containerPort": 80,
                                                               "name": "HTTP"}]}]}),
     "spec.containers[0].ports[0].name", "'HTTP' is not a port name"),
    ("numeric port name", pod({"containers": [{"name": "c", "ports": [{"containerPort": 80,
                                                                       "name": "80"}]}]}),
     "spec.containers[0].ports[0].name", "at least one letter"),
    ("port name twice in a container",
     pod({"containers": [{"name": "c", "ports": [{"containerPort": 80, "name": "web"},
                                                 {"containerPort": 81, "name": "web"}]}]}),
     "spec.containers[0].ports[1].name", "'web' is given twice (also spec.containers[0].ports[0])"),
    ("port name twice in the pod",
     pod({"containers": [{"name": "c", "ports": [{"containerPort": 80, "name": "web"}]},
                         {"name": "d", "ports": [{"containerPort": 81, "name": "web"}]}]}),
     "spec.containers[1].ports[0].name", "'web' is given twice"),
    ("port name of an init container",
     pod({"initContainers": [{"name": "i", "ports": [{"containerPort": 80, "name": "web"}]}],
          "containers": [{"name": "c", "ports": [{"containerPort": 81, "name": "web"}]}]}),
     "spec.containers[0].ports[0].name", "also spec.initContainers[0].ports[0]"),
    ("unknown container port field",
     pod({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostport": 1}]}]}),
     "spec.containers[0].ports[0].hostport", "unknown field"),
    ("pod ip", pod(status={"podIP": "10.0.0.256"}), "status.podIP", "not an IP address"),
    ("pod ips", pod(status={"podIPs": [{"ip": "x"}]}), "status.podIPs[0].ip",
     "not an IP address"),
    ("pod ips entry", pod(status={"podIPs": ["10.0.0.1"]}), "status.podIPs[0]",
     "must be a mapping"),
    ("empty pod ip entry", pod(status={"podIPs": [{"ip": ""}]}), "status.podIPs[0].ip",
     "required"),
    ("two of a family", pod(status={"podIPs": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}]}),
     "status.podIPs", "no more than one IP for each IP family"),
    ("three addresses", pod(status={"podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"},
                                               {"ip": "fd00::2"}]}),
     "status.podIPs", "no more than one IP for each IP family"),
    ("status type", pod(status=["x"]), "status", "must be a mapping"),
]


@pytest.mark.parametrize(
    ("doc", "path", "reason"), [case[1:] for case in POD_REFUSALS],
    ids=[case[0] for case in POD_REFUSALS],
)  # fmt: skip
def test_pod_refusals(doc: dict[str, Any], path: str, reason: str) -> None:
    error = refused(doc)
    assert any(p == path and reason in r for p, r in error.problems), error.problems


# -- kinds, apiVersions and lists ------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "path", "reason"),
    [
        ({**policy(), "apiVersion": "v1"}, "apiVersion", "'v1' is not networking.k8s.io/v1"),
        ({**policy(), "apiVersion": "networking.k8s.io/v1beta1"}, "apiVersion",
         "is not networking.k8s.io/v1"),
        # Calico's own NetworkPolicy kind is not supported
        ({**policy(), "apiVersion": "projectcalico.org/v3"}, "kind",
         "'NetworkPolicy' is not one of BGPConfiguration"),
        ({**pod(), "apiVersion": "networking.k8s.io/v1"}, "apiVersion", "'networking.k8s.io/v1' "
         "is not v1"),
        ({**namespace(), "apiVersion": "crd.projectcalico.org/v1"}, "kind",
         "(Namespace is apiVersion v1)"),
        ({**pod(), "kind": "Service"}, "kind", "'Service' is not one of Namespace, Pod"),
        ({**policy(), "kind": "Ingress"}, "kind", "'Ingress' is not NetworkPolicy"),
        ({**pod(), "apiVersion": "apps/v1"}, "apiVersion", "'apps/v1' is not v1"),
        ({**pod(), "apiVersion": None}, "apiVersion", "required"),
        ({"apiVersion": "v1", "metadata": {"name": "a"}}, "kind", "required"),
    ],
)  # fmt: skip
def test_kinds_by_api_version(doc: dict[str, Any], path: str, reason: str) -> None:
    error = refused(doc)
    assert any(p == path and reason in r for p, r in error.problems), error.problems


def test_calico_kinds_unchanged() -> None:
    pool = {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "p"},
            "spec": {"cidr": "10.0.0.0/16"}}  # fmt: skip
    assert dump(load_resource(pool))["apiVersion"] == "projectcalico.org/v3"
    error = refused({**pool, "apiVersion": "v1"})
    assert error.problems == [("apiVersion", "'v1' is not one of projectcalico.org/v3, "
                               "crd.projectcalico.org/v1")]  # fmt: skip
    error = refused({**pool, "metadata": {"name": "p", "namespace": "x"}})
    assert error.problems[0][0] == "metadata.namespace"


def test_lists_of_kubernetes_kinds() -> None:
    policies = {"apiVersion": NET, "kind": "NetworkPolicyList", "items": [
        {"metadata": {"name": "a", "namespace": "x"}, "spec": {"podSelector": {}}},
        {"metadata": {"name": "b"}, "spec": {"podSelector": {}}}]}  # fmt: skip
    loaded = load_resources(policies, namespace="y")
    assert [str(r) for r in loaded] == ['NetworkPolicy "x/a"', 'NetworkPolicy "y/b"']
    pods = {"apiVersion": "v1", "kind": "PodList", "items": [{"metadata": {"name": "a"}}]}
    assert [type(r) for r in load_resources(pods)] == [Pod]
    namespaces = {"apiVersion": "v1", "kind": "NamespaceList",
                  "items": [{"metadata": {"name": "a"}}, {"metadata": {"name": "b"}}]}  # fmt: skip
    assert [r.name for r in load_resources(namespaces)] == ["a", "b"]
    mixed = {"apiVersion": "v1", "kind": "List", "items": [
        namespace("x"), policy(namespace="x"), pod(),
        {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "p"},
         "spec": {"cidr": "10.0.0.0/16"}}]}  # fmt: skip
    assert [r.KIND for r in load_resources(mixed)] == ["Namespace", "NetworkPolicy", "Pod",
                                                       "IPPool"]  # fmt: skip
    error = refused({"apiVersion": "v1", "kind": "PodList", "items": [{"metadata": {"name": "A"}}]})
    assert str(error).startswith('Pod "default/A" (items[0]): metadata.name:')
    error = refused({"apiVersion": NET, "kind": "PodList", "items": [{"metadata": {"name": "a"}}]})
    assert error.problems == [("apiVersion", "'networking.k8s.io/v1' is not v1")]
