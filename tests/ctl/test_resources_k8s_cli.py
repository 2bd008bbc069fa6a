"""``bgpctl apply|get|delete`` with the Kubernetes kinds: -n and -A as kubectl and
calicoctl take them, the kinds' names, the tables (a NAMESPACE column only with
-A), ``-o name`` and ``-o yaml`` in the kinds' own apiVersions, and the keys the
policy agent reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bgpd.ipam import allocator
from bgpd.resources import store as resources
from tests.ctl.test_resources_cli import Ctl

CLUSTER = """\
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: web}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-web}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {team: web}}}]
    ports: [{port: http}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: kube-system}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, labels: {app: web}}
spec:
  nodeName: node1
  containers:
  - name: web
    image: nginx:1.27
    resources: {limits: {memory: 128Mi}}
    ports: [{name: http, containerPort: 8080}]
  volumes: [{name: tmp, emptyDir: {}}]
status:
  phase: Running
  podIP: 10.244.0.5
  podIPs: [{ip: 10.244.0.5}, {ip: "fd00::5"}]
"""


@pytest.fixture
def ctl(tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> Ctl:
    monkeypatch.setattr(resources, "_now", lambda: "2024-05-01T12:00:00Z")
    monkeypatch.setattr(resources, "_uid", lambda: "00000000-0000-4000-8000-000000000001")
    monkeypatch.setattr(allocator, "_random_below", lambda n: 0)
    monkeypatch.delenv("BGPD_STATE_DIR", raising=False)
    return Ctl(tmp_path, capsys)


@pytest.fixture
def cluster(ctl: Ctl) -> Ctl:
    assert ctl.ok("apply", "-f", ctl.file("c.yaml", CLUSTER), "-n", "shop") == (
        "Successfully applied 4 resource(s)\n"
    )
    return ctl


def test_apply_puts_documents_without_a_namespace_in_n(cluster: Ctl) -> None:
    assert cluster.keys() == [
        "resources/namespaces/shop",
        "resources/networkpolicies/kube-system/default-deny",
        "resources/networkpolicies/shop/allow-web",
        "resources/pods/shop/web-1",
    ]
    record = cluster.store.get("resources/pods/shop/web-1")
    assert record is not None
    assert record.value["spec"] == {"nodeName": "node1", "containers": [
        {"name": "web", "ports": [{"name": "http", "containerPort": 8080,
                                   "protocol": "TCP"}]}]}  # fmt: skip


def test_apply_without_n_uses_default(ctl: Ctl) -> None:
    policy = CLUSTER.split("---")[1]
    assert ctl.ok("apply", "-f", ctl.file("p.yaml", policy)) == (
        "Successfully applied 1 'NetworkPolicy' resource(s)\n"
    )
    assert ctl.keys() == ["resources/networkpolicies/default/allow-web"]


def test_get_tables(cluster: Ctl) -> None:
    assert cluster.ok("get", "networkpolicy") == "NAME   POD-SELECTOR   \n\n"
    assert cluster.ok("get", "netpol", "-n", "shop") == (
        "NAME        POD-SELECTOR   \n"
        "allow-web   app=web        \n"
        "\n"
    )
    assert cluster.ok("get", "networkpolicies", "-A") == (
        "NAMESPACE     NAME           POD-SELECTOR   \n"
        "kube-system   default-deny   <none>         \n"
        "shop          allow-web      app=web        \n"
        "\n"
    )
    assert cluster.ok("get", "netpol", "--all-namespaces", "-o", "wide") == (
        "NAMESPACE     NAME           POD-SELECTOR   POLICY-TYPES     \n"
        "kube-system   default-deny   <none>         Ingress,Egress   \n"
        "shop          allow-web      app=web        Ingress          \n"
        "\n"
    )
    assert cluster.ok("get", "po", "-n", "shop") == (
        "NAME    NODE    IP           \n"
        "web-1   node1   10.244.0.5   \n"
        "\n"
    )
    assert cluster.ok("get", "pods", "-A", "-o", "wide") == (
        "NAMESPACE   NAME    NODE    IP                   \n"
        "shop        web-1   node1   10.244.0.5,fd00::5   \n"
        "\n"
    )
    assert cluster.ok("get", "ns") == (
        "NAME   LABELS                                      \n"
        "shop   kubernetes.io/metadata.name=shop,team=web   \n"
        "\n"
    )
    # -n and -A mean nothing for a cluster-scoped kind
    assert cluster.ok("get", "namespaces", "-A") == cluster.ok("get", "ns", "-n", "other")


def test_get_by_name(cluster: Ctl) -> None:
    assert cluster.ok("get", "pod", "web-1", "-n", "shop") == (
        "NAME    NODE    IP           \n"
        "web-1   node1   10.244.0.5   \n"
        "\n"
    )
    assert cluster.ok("get", "namespace", "shop", "-o", "name") == "namespace/shop\n"
    assert cluster("get", "pod", "web-1") == (
        1, "", "resource does not exist: Pod(default/web-1)\n"
    )
    assert cluster("get", "pod", "web-1", "-A") == (
        1, "", "a resource cannot be shown by name across all namespaces (-A): give -n "
        "NAMESPACE\n",
    )  # fmt: skip


def test_get_yaml_and_names(cluster: Ctl) -> None:
    shown = yaml.safe_load(cluster.ok("get", "netpol", "allow-web", "-n", "shop", "-o", "yaml"))
    assert shown == {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "allow-web", "namespace": "shop",
                     "uid": "00000000-0000-4000-8000-000000000001",
                     "creationTimestamp": "2024-05-01T12:00:00Z", "resourceVersion": "2"},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"],
                 "ingress": [{"ports": [{"protocol": "TCP", "port": "http"}],
                              "from": [{"namespaceSelector": {"matchLabels": {"team": "web"}}}]}]},
    }  # fmt: skip
    listed = yaml.safe_load(cluster.ok("get", "pods", "-A", "-o", "yaml"))
    assert (listed["apiVersion"], listed["kind"]) == ("v1", "PodList")
    assert [p["metadata"]["name"] for p in listed["items"]] == ["web-1"]
    assert cluster.ok("get", "netpol", "-A", "-o", "name") == (
        "networkpolicy.networking.k8s.io/default-deny\n"
        "networkpolicy.networking.k8s.io/allow-web\n"
    )
    assert cluster.ok("get", "po", "-n", "shop", "-o", "name") == "pod/web-1\n"
    assert cluster.ok("get", "ippool", "-o", "name") == ""


def test_delete_with_n(cluster: Ctl) -> None:
    assert cluster("delete", "netpol", "default-deny") == (
        1, "", "Failed to delete 'NetworkPolicy' resource: resource does not exist: "
        "NetworkPolicy(default/default-deny)\n",
    )  # fmt: skip
    assert cluster.ok("delete", "netpol", "default-deny", "-n", "kube-system") == (
        "Successfully deleted 1 'NetworkPolicy' resource(s)\n"
    )
    assert cluster.ok("delete", "pods", "web-1", "--namespace", "shop") == (
        "Successfully deleted 1 'Pod' resource(s)\n"
    )
    assert cluster.ok("delete", "ns", "shop", "-n", "ignored") == (
        "Successfully deleted 1 'Namespace' resource(s)\n"
    )
    assert cluster.keys() == ["resources/networkpolicies/shop/allow-web"]
    assert cluster("delete", "netpol", "allow-web", "-A") == (
        1, "", "a resource cannot be deleted by name across all namespaces (-A): give -n "
        "NAMESPACE\n",
    )  # fmt: skip
    assert cluster.keys() == ["resources/networkpolicies/shop/allow-web"]


def test_delete_from_the_file(cluster: Ctl) -> None:
    """Each document's own namespace, else -n's."""
    path = str(cluster.state / "c.yaml")
    assert cluster("delete", "-f", path) == (
        1, "", f"Failed to delete any resources: {path} document 2: resource does not exist: "
        "NetworkPolicy(default/allow-web)\n",
    )  # fmt: skip
    assert len(cluster.keys()) == 4
    assert cluster.ok("delete", "-f", path, "-n", "shop") == (
        "Successfully deleted 4 resource(s)\n"
    )
    assert cluster.keys() == []


def test_bad_documents_and_namespaces(ctl: Ctl) -> None:
    bad = CLUSTER.replace("port: http", "port: Http")
    status, _, err = ctl("apply", "-f", ctl.file("bad.yaml", bad))
    assert status == 1
    assert err == (
        f"Failed to apply any resources: {ctl.state}/bad.yaml document 2: NetworkPolicy "
        "\"default/allow-web\": spec.ingress[0].ports[0].port: 'Http' is not a port name: must "
        "contain only lower case letters (a-z), digits (0-9) and '-'\n"
    )
    assert ctl.keys() == []
    status, _, err = ctl("apply", "-f", ctl.file("c.yaml", CLUSTER), "-n", "Shop")
    assert (status, ctl.keys()) == (1, [])
    assert err.startswith("invalid namespace: 'Shop' is not a valid name")
    assert ctl("get", "pods", "-n", "a_b")[0] == 1


def test_create_conflicts_name_the_namespace(cluster: Ctl) -> None:
    path = cluster.file("p.yaml", CLUSTER.split("---")[1])
    assert cluster("create", "-f", path, "-n", "shop") == (
        1, "", "Failed to create 'NetworkPolicy' resource: resource already exists: "
        "NetworkPolicy(shop/allow-web)\n",
    )  # fmt: skip
    assert cluster.ok("create", "-f", path) == (
        "Successfully created 1 'NetworkPolicy' resource(s)\n"
    )
    assert cluster.ok("get", "netpol", "-n", "default", "-o", "name") == (
        "networkpolicy.networking.k8s.io/allow-web\n"
    )


def test_kind_list_mixing_kinds(ctl: Ctl) -> None:
    docs = [d for d in yaml.safe_load_all(CLUSTER)]
    listing = {"apiVersion": "v1", "kind": "List", "items": docs}
    assert ctl.ok("apply", "-f", ctl.file("l.yaml", yaml.safe_dump(listing)), "-n", "x") == (
        "Successfully applied 4 resource(s)\n"
    )
    keys = ctl.keys()
    assert "resources/pods/x/web-1" in keys
