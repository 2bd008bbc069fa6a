"""The Kubernetes kinds in a real DirectoryStore: the exact keys and stored
values the policy agent reads, namespaced get/list/delete, a pod's status kept
across a re-apply, and DryRun with namespaced keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bgpd.datastore.directory import DirectoryStore
from bgpd.resources import store as resources
from bgpd.resources.models import Resource, load_resource
from bgpd.resources.store import (
    AlreadyExists,
    DryRun,
    NotFound,
    UpdateConflict,
    apply,
    create,
    delete,
    get,
    key_of,
    list_resources,
    replace,
)

NET = "networking.k8s.io/v1"
UID = "00000000-0000-4000-8000-000000000001"
NOW = "2024-05-01T12:00:00Z"


@pytest.fixture
def store(tmp_path: Path) -> DirectoryStore:
    return DirectoryStore(str(tmp_path / "store"))


@pytest.fixture(autouse=True)
def _pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resources, "_now", lambda: NOW)
    monkeypatch.setattr(resources, "_uid", lambda: UID)


def policy(name: str = "deny", namespace: str | None = "x", **spec: Any) -> Resource:
    metadata = {"name": name} if namespace is None else {"name": name, "namespace": namespace}
    return load_resource({"apiVersion": NET, "kind": "NetworkPolicy", "metadata": metadata,
                          "spec": {"podSelector": {}, **spec}})  # fmt: skip


def pod(name: str = "a", namespace: str = "x", **extra: Any) -> Resource:
    return load_resource({"apiVersion": "v1", "kind": "Pod",
                          "metadata": {"name": name, "namespace": namespace},
                          "spec": {"nodeName": "node1"}, **extra})  # fmt: skip


def namespace(name: str = "x", **labels: str) -> Resource:
    return load_resource({"apiVersion": "v1", "kind": "Namespace",
                          "metadata": {"name": name, "labels": labels}})  # fmt: skip


def test_exact_keys_and_values(store: DirectoryStore) -> None:
    create(store, policy(egress=[{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]))
    create(store, namespace("x", team="a"))
    create(store, pod(status={"podIP": "10.244.0.5", "phase": "Running"}))
    assert store.keys("resources/") == [
        "resources/namespaces/x",
        "resources/networkpolicies/x/deny",
        "resources/pods/x/a",
    ]
    meta = {"uid": UID, "creationTimestamp": NOW}
    values = {r.key: r.value for r in store.list("resources/")}
    assert values == {
        "resources/networkpolicies/x/deny": {
            "apiVersion": NET, "kind": "NetworkPolicy",
            "metadata": {"name": "deny", "namespace": "x", **meta},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                     "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]},
        },
        "resources/namespaces/x": {
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "x", "labels": {"team": "a", "kubernetes.io/metadata.name": "x"},
                         **meta},
        },
        "resources/pods/x/a": {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "a", "namespace": "x", **meta},
            "spec": {"nodeName": "node1"},
            "status": {"podIP": "10.244.0.5", "podIPs": [{"ip": "10.244.0.5"}]},
        },
    }  # fmt: skip


def test_key_of() -> None:
    assert key_of("NetworkPolicy", "deny", "x") == "resources/networkpolicies/x/deny"
    assert key_of("NetworkPolicy", "deny") == "resources/networkpolicies/default/deny"
    assert key_of("Pod", "a", "kube-system") == "resources/pods/kube-system/a"
    assert key_of("Namespace", "x") == "resources/namespaces/x"
    # a namespace is ignored for cluster-scoped kinds, as calicoctl ignores -n
    assert key_of("Namespace", "x", "y") == "resources/namespaces/x"
    assert key_of("IPPool", "p", "y") == "resources/ippools/p"


def test_missing_namespace_is_default(store: DirectoryStore) -> None:
    create(store, policy(namespace=None))
    assert store.keys("resources/") == ["resources/networkpolicies/default/deny"]
    assert get(store, "NetworkPolicy", "deny")["metadata"]["namespace"] == "default"
    assert get(store, "NetworkPolicy", "deny", "default")["metadata"]["name"] == "deny"


def test_get_shows_revision_and_api_version(store: DirectoryStore) -> None:
    out = create(store, pod())
    shown = get(store, "Pod", "a", "x")
    assert shown == out
    assert shown["apiVersion"] == "v1"
    assert shown["metadata"]["resourceVersion"] == str(store.revision())


def test_same_name_in_two_namespaces(store: DirectoryStore) -> None:
    create(store, policy("deny", "x"))
    create(store, policy("deny", "y", policyTypes=["Egress"]))
    assert get(store, "NetworkPolicy", "deny", "x")["spec"]["policyTypes"] == ["Ingress"]
    assert get(store, "NetworkPolicy", "deny", "y")["spec"]["policyTypes"] == ["Egress"]
    with pytest.raises(NotFound, match=r"NetworkPolicy\(z/deny\)"):
        get(store, "NetworkPolicy", "deny", "z")
    with pytest.raises(AlreadyExists, match=r"NetworkPolicy\(x/deny\)"):
        create(store, policy("deny", "x"))


def test_list_one_namespace_or_all(store: DirectoryStore) -> None:
    for ns, name in (("y", "b"), ("x", "b"), ("x", "a"), ("xy", "c")):
        create(store, pod(name, ns))

    def names(items: list[dict[str, Any]]) -> list[str]:
        return [f"{o['metadata']['namespace']}/{o['metadata']['name']}" for o in items]

    assert names(list_resources(store, "Pod")) == ["x/a", "x/b", "xy/c", "y/b"]
    assert names(list_resources(store, "Pod", None)) == ["x/a", "x/b", "xy/c", "y/b"]
    assert names(list_resources(store, "Pod", "x")) == ["x/a", "x/b"]
    assert names(list_resources(store, "Pod", "z")) == []
    assert list_resources(store, "NetworkPolicy") == []
    # the namespace is ignored for a cluster-scoped kind
    create(store, namespace("x"))
    assert [o["metadata"]["name"] for o in list_resources(store, "Namespace", "y")] == ["x"]


def test_delete_in_a_namespace(store: DirectoryStore) -> None:
    create(store, policy("deny", "x"))
    create(store, policy("deny", "y"))
    removed = delete(store, "NetworkPolicy", "deny", namespace="y")
    assert removed["metadata"]["namespace"] == "y"
    assert store.keys("resources/") == ["resources/networkpolicies/x/deny"]
    with pytest.raises(NotFound, match=r"resource does not exist: NetworkPolicy\(y/deny\)"):
        delete(store, "NetworkPolicy", "deny", namespace="y")
    with pytest.raises(NotFound, match=r"NetworkPolicy\(default/deny\)"):
        delete(store, "NetworkPolicy", "deny")
    version = get(store, "NetworkPolicy", "deny", "x")["metadata"]["resourceVersion"]
    with pytest.raises(UpdateConflict, match=r"NetworkPolicy\(x/deny\)"):
        delete(store, "NetworkPolicy", "deny", str(int(version) + 5), namespace="x")
    delete(store, "NetworkPolicy", "deny", version, namespace="x")
    assert store.keys("resources/") == []


def test_replace_keeps_uid_and_needs_the_resource(store: DirectoryStore) -> None:
    with pytest.raises(NotFound, match=r"NetworkPolicy\(x/deny\)"):
        replace(store, policy())
    create(store, policy())
    out = apply(store, policy(policyTypes=["Egress"]))
    assert out["metadata"]["uid"] == UID
    assert out["spec"]["policyTypes"] == ["Egress"]


def test_pod_status_kept_when_reapplied_without_one(store: DirectoryStore) -> None:
    """An operator re-applying the pod's manifest does not erase the addresses
    written since (as for a Node's status)."""
    apply(store, pod(status={"podIPs": [{"ip": "10.244.0.5"}, {"ip": "fd00::5"}]}))
    apply(store, pod())
    assert get(store, "Pod", "a", "x")["status"] == {
        "podIP": "10.244.0.5", "podIPs": [{"ip": "10.244.0.5"}, {"ip": "fd00::5"}]}  # fmt: skip
    apply(store, pod(status={"podIP": "10.244.0.6"}))
    assert get(store, "Pod", "a", "x")["status"]["podIP"] == "10.244.0.6"


def test_dry_run_with_namespaced_keys(store: DirectoryStore) -> None:
    create(store, policy("a", "x"))
    dry = DryRun(store)
    create(dry, policy("b", "x"))
    create(dry, policy("a", "y"))
    delete(dry, "NetworkPolicy", "a", namespace="x")
    assert [f"{o['metadata']['namespace']}/{o['metadata']['name']}"
            for o in list_resources(dry, "NetworkPolicy")] == ["x/b", "y/a"]  # fmt: skip
    assert [o["metadata"]["name"] for o in list_resources(dry, "NetworkPolicy", "x")] == ["b"]
    assert store.keys("resources/") == ["resources/networkpolicies/x/a"]


def test_calico_kinds_keep_their_keys(store: DirectoryStore) -> None:
    peer = load_resource({"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer",
                          "metadata": {"name": "p"}, "spec": {"peerIP": "10.0.0.1",
                                                              "asNumber": 64512}})  # fmt: skip
    create(store, peer)
    assert store.keys("resources/") == ["resources/bgppeers/p"]
    assert get(store, "BGPPeer", "p")["apiVersion"] == "projectcalico.org/v3"
    delete(store, "BGPPeer", "p")
    assert store.keys("resources/") == []
