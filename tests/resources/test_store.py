"""Resources in a real DirectoryStore: keys, create/replace/apply/delete semantics,
resourceVersion as optimistic concurrency, compare-and-swap under concurrent
writers, the checks across resources (pool overlap, pool in use), the flat
IPAMConfig record, and the readers that already use these keys (IPAM, CNI)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from bgpd.datastore.base import Conflict
from bgpd.datastore.directory import DirectoryStore
from bgpd.ipam import allocator
from bgpd.ipam.allocator import Ipam
from bgpd.ipam.pools import load_pools
from bgpd.resources import store as resources
from bgpd.resources.models import Resource, load_resource
from bgpd.resources.store import (
    AlreadyExists,
    DryRun,
    NotFound,
    Refused,
    UpdateConflict,
    apply,
    create,
    delete,
    get,
    list_resources,
    replace,
)

V3 = "projectcalico.org/v3"


@pytest.fixture
def store(tmp_path: Path) -> DirectoryStore:
    return DirectoryStore(str(tmp_path / "store"))


@pytest.fixture(autouse=True)
def _pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resources, "_now", lambda: "2024-05-01T12:00:00Z")
    monkeypatch.setattr(resources, "_uid", lambda: "00000000-0000-4000-8000-000000000001")
    monkeypatch.setattr(allocator, "_random_below", lambda n: 0)


def pool(name: str = "pool1", cidr: str = "10.65.0.0/16", **spec: Any) -> Resource:
    return load_resource({"apiVersion": V3, "kind": "IPPool", "metadata": {"name": name},
                          "spec": {"cidr": cidr, **spec}})  # fmt: skip


def peer(name: str, metadata: dict[str, Any] | None = None, **spec: Any) -> Resource:
    meta = {"name": name, **(metadata or {})}
    return load_resource({"apiVersion": V3, "kind": "BGPPeer", "metadata": meta, "spec": spec})


def node(name: str = "node1", labels: dict[str, str] | None = None, **extra: Any) -> Resource:
    doc: dict[str, Any] = {"apiVersion": V3, "kind": "Node",
                           "metadata": {"name": name, "labels": labels or {}},
                           "spec": {"bgp": {"ipv4Address": "10.0.0.1/24"}}}  # fmt: skip
    doc.update(extra)
    return load_resource(doc)


def ipam_config(**spec: Any) -> Resource:
    return load_resource({"apiVersion": V3, "kind": "IPAMConfig", "metadata": {"name": "default"},
                          "spec": spec})  # fmt: skip


# -- keys and the stored form ------------------------------------------------------------------


def test_create_stores_the_canonical_object_under_its_key(store: DirectoryStore) -> None:
    out = create(store, pool())
    record = store.get("resources/ippools/pool1")
    assert record is not None
    assert record.value == {
        "apiVersion": V3, "kind": "IPPool",
        "metadata": {"name": "pool1", "uid": "00000000-0000-4000-8000-000000000001",
                     "creationTimestamp": "2024-05-01T12:00:00Z"},
        "spec": {"cidr": "10.65.0.0/16", "vxlanMode": "Never", "ipipMode": "Never",
                 "blockSize": 26, "nodeSelector": "all()", "allowedUses": ["Workload", "Tunnel"],
                 "assignmentMode": "Automatic"},
    }  # fmt: skip
    assert out["metadata"]["resourceVersion"] == str(record.revision)
    assert get(store, "IPPool", "pool1") == out


@pytest.mark.parametrize(
    ("resource", "key"),
    [
        (lambda: load_resource({"apiVersion": V3, "kind": "BGPConfiguration",
                                "metadata": {"name": "default"}}),
         "resources/bgpconfigurations/default"),
        (lambda: peer("tor", peerIP="10.0.0.254", asNumber=65001), "resources/bgppeers/tor"),
        (node, "resources/nodes/node1"),
        (pool, "resources/ippools/pool1"),
        (lambda: load_resource({"apiVersion": V3, "kind": "BGPFilter",
                                "metadata": {"name": "f1"}}), "resources/bgpfilters/f1"),
        (lambda: ipam_config(strictAffinity=True), "ipam/config"),
    ],
)  # fmt: skip
def test_keys(store: DirectoryStore, resource: Any, key: str) -> None:
    apply(store, resource())
    assert store.keys("") == [key]


def test_given_uid_and_timestamp_are_kept_on_create(store: DirectoryStore) -> None:
    out = create(store, peer("p", {"uid": "u-1", "creationTimestamp": "2020-01-01T00:00:00Z",
                                   "resourceVersion": "77"}, peerIP="10.0.0.1"))  # fmt: skip
    assert out["metadata"]["uid"] == "u-1"
    assert out["metadata"]["creationTimestamp"] == "2020-01-01T00:00:00Z"
    assert out["metadata"]["resourceVersion"] != "77"  # create ignores it, as calicoctl's
    assert "resourceVersion" not in store.get("resources/bgppeers/p").value["metadata"]  # type: ignore[union-attr]


def test_list_in_name_order(store: DirectoryStore) -> None:
    for name in ("b", "c", "a"):
        create(store, peer(name, peerIP="10.0.0.1"))
    assert [r["metadata"]["name"] for r in list_resources(store, "BGPPeer")] == ["a", "b", "c"]
    assert list_resources(store, "IPPool") == []


# -- create, replace, apply, delete ------------------------------------------------------------


def test_create_refuses_an_existing_resource(store: DirectoryStore) -> None:
    create(store, pool())
    with pytest.raises(AlreadyExists, match=r"^resource already exists: IPPool\(pool1\)$"):
        create(store, pool())


def test_replace_refuses_a_missing_resource(store: DirectoryStore) -> None:
    with pytest.raises(NotFound, match=r"^resource does not exist: IPPool\(pool1\)$"):
        replace(store, pool())


def test_replace_keeps_uid_and_creation_time(store: DirectoryStore, monkeypatch: Any) -> None:
    first = create(store, pool())
    monkeypatch.setattr(resources, "_uid", lambda: "other")
    monkeypatch.setattr(resources, "_now", lambda: "2030-01-01T00:00:00Z")
    second = replace(store, pool(natOutgoing=True))
    assert second["metadata"]["uid"] == first["metadata"]["uid"]
    assert second["metadata"]["creationTimestamp"] == "2024-05-01T12:00:00Z"
    assert second["spec"]["natOutgoing"] is True
    assert int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])


def test_replace_is_whole(store: DirectoryStore) -> None:
    create(store, peer("p", {"labels": {"a": "b"}}, peerIP="10.0.0.1", asNumber=65001,
                       ttlSecurity=1))  # fmt: skip
    out = replace(store, peer("p", peerIP="10.0.0.2"))
    assert "labels" not in out["metadata"]
    assert out["spec"] == {"peerIP": "10.0.0.2", "sourceAddress": "UseNodeIP",
                           "reversePeering": "Auto"}  # fmt: skip


def test_resource_version_is_optimistic_concurrency(store: DirectoryStore) -> None:
    first = create(store, pool())
    version = first["metadata"]["resourceVersion"]
    replace(store, pool(disabled=True))  # someone else, meanwhile
    stale = pool(natOutgoing=True)
    stale.metadata.resource_version = version
    with pytest.raises(UpdateConflict, match=r"update conflict: IPPool\(pool1\)"):
        replace(store, stale)
    with pytest.raises(UpdateConflict):
        apply(store, stale)
    with pytest.raises(UpdateConflict):
        delete(store, "IPPool", "pool1", resource_version=version)
    current = pool(natOutgoing=True)
    current.metadata.resource_version = get(store, "IPPool", "pool1")["metadata"]["resourceVersion"]
    assert replace(store, current)["spec"]["natOutgoing"] is True


def test_apply_creates_then_replaces(store: DirectoryStore) -> None:
    assert apply(store, pool())["spec"].get("natOutgoing") is None
    assert apply(store, pool(natOutgoing=True))["spec"]["natOutgoing"] is True
    assert len(list_resources(store, "IPPool")) == 1


def test_apply_creates_whatever_resource_version_says(store: DirectoryStore) -> None:
    resource = pool()
    resource.metadata.resource_version = "5"
    assert apply(store, resource)["metadata"]["name"] == "pool1"


def test_delete(store: DirectoryStore) -> None:
    created = create(store, pool())
    assert delete(store, "IPPool", "pool1") == created
    assert store.get("resources/ippools/pool1") is None
    with pytest.raises(NotFound):
        delete(store, "IPPool", "pool1")
    with pytest.raises(NotFound):
        get(store, "IPPool", "pool1")


# -- compare-and-swap ------------------------------------------------------------------------


class Racing:
    """A store whose next put on ``key`` first lets ``meanwhile`` write, as another
    process would between our read and our write."""

    def __init__(self, store: DirectoryStore, key: str, meanwhile: Any) -> None:
        self.store = store
        self.key = key
        self.meanwhile = meanwhile
        self.raced = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def put(self, key: str, value: dict[str, Any], expect: int | None = None,
            durable: bool = True) -> int:  # fmt: skip
        if key == self.key and not self.raced:
            self.raced += 1
            self.meanwhile()
        return self.store.put(key, value, expect=expect, durable=durable)


def test_a_node_status_written_meanwhile_is_not_lost(store: DirectoryStore) -> None:
    """The node agent updates its status between bgpctl's read and write: the write
    conflicts, is redone against the fresh record, and keeps that status."""
    create(store, node(status={"podCIDRs": ["10.244.0.0/24"]}))

    def agent() -> None:
        record = store.get("resources/nodes/node1")
        assert record is not None
        value = {**record.value, "status": {"podCIDRs": ["10.244.9.0/24"]}}
        store.put("resources/nodes/node1", value, expect=record.revision)

    racing = Racing(store, "resources/nodes/node1", agent)
    out = apply(racing, node(labels={"route-reflector": "true"}))  # type: ignore[arg-type]
    assert racing.raced == 1
    assert out["status"] == {"podCIDRs": ["10.244.9.0/24"]}
    assert out["metadata"]["labels"] == {"route-reflector": "true"}
    assert get(store, "Node", "node1") == out


def test_a_write_meanwhile_with_resource_version_is_a_conflict(store: DirectoryStore) -> None:
    created = create(store, pool())

    def other() -> None:
        replace(store, pool(disabled=True))

    resource = pool(natOutgoing=True)
    resource.metadata.resource_version = created["metadata"]["resourceVersion"]
    with pytest.raises(UpdateConflict):
        replace(Racing(store, "resources/ippools/pool1", other), resource)  # type: ignore[arg-type]
    assert get(store, "IPPool", "pool1")["spec"]["disabled"] is True


def _apply_many(root: str, worker: int) -> None:
    store = DirectoryStore(root)
    for i in range(15):
        apply(store, peer(f"w{worker}-{i}", peerIP=f"10.0.{worker}.{i + 1}"))
        apply(store, node(labels={"last": f"w{worker}-{i}"}))


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    root = str(tmp_path / "store")
    DirectoryStore(root)
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_apply_many, args=(root, w)) for w in range(6)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    store = DirectoryStore(root)
    assert len(list_resources(store, "BGPPeer")) == 6 * 15
    labels = get(store, "Node", "node1")["metadata"]["labels"]
    assert labels["last"].endswith("-14")


def test_only_one_of_two_writers_with_the_same_version_wins(store: DirectoryStore) -> None:
    version = create(store, pool())["metadata"]["resourceVersion"]
    results = []
    for change in ({"natOutgoing": True}, {"disabled": True}):
        resource = pool(**change)
        resource.metadata.resource_version = version
        try:
            replace(store, resource)
            results.append("ok")
        except UpdateConflict:
            results.append("conflict")
    assert results == ["ok", "conflict"]


# -- IPAMConfig: flat at ipam/config ---------------------------------------------------------


def test_ipam_config_is_stored_flat_where_ipam_reads_it(store: DirectoryStore) -> None:
    out = apply(store, ipam_config(strictAffinity=True, maxBlocksPerHost=4))
    record = store.get("ipam/config")
    assert record is not None
    assert record.value == {"strictAffinity": True, "autoAllocateBlocks": True,
                            "maxBlocksPerHost": 4}  # fmt: skip
    assert Ipam(store, "node1").config() == record.value
    assert out == {"apiVersion": V3, "kind": "IPAMConfig",
                   "metadata": {"name": "default", "resourceVersion": str(record.revision)},
                   "spec": record.value}  # fmt: skip


def test_ipam_config_written_by_ipam_is_shown_as_v3(store: DirectoryStore) -> None:
    Ipam(store, "node1").config()  # created with Calico's defaults on first use
    (shown,) = list_resources(store, "IPAMConfig")
    assert shown["spec"] == {"strictAffinity": False, "autoAllocateBlocks": True,
                             "maxBlocksPerHost": 0}  # fmt: skip
    assert shown["metadata"]["name"] == "default"
    with pytest.raises(NotFound):
        get(store, "IPAMConfig", "other")


def test_ipam_config_create_replace_delete(store: DirectoryStore) -> None:
    with pytest.raises(NotFound):
        replace(store, ipam_config())
    create(store, ipam_config())
    with pytest.raises(AlreadyExists):
        create(store, ipam_config())
    assert replace(store, ipam_config(autoAllocateBlocks=False, strictAffinity=True))[
        "spec"
    ]["autoAllocateBlocks"] is False
    delete(store, "IPAMConfig", "default")
    assert store.get("ipam/config") is None


# -- what the other readers see ----------------------------------------------------------------


def test_ipam_reads_applied_pools(store: DirectoryStore) -> None:
    apply(store, pool("a", "10.65.0.0/16", ipipMode="CrossSubnet", natOutgoing=True,
                      nodeSelector="zone == 'a'"))  # fmt: skip
    apply(store, pool("b", "fd00:65::/48", vxlanMode="Always", assignmentMode="Manual",
                      allowedUses=["Workload"], disabled=True))  # fmt: skip
    a, b = load_pools(store)
    assert (a.name, a.cidr, a.block_size, a.ipip_mode, a.nat_outgoing, a.node_selector) == (
        "a", "10.65.0.0/16", 26, "CrossSubnet", True, "zone == 'a'"
    )
    assert a.allowed_uses == ["Workload", "Tunnel"] and not a.manual and not a.disabled
    assert (b.block_size, b.vxlan_mode, b.manual, b.disabled, b.allowed_uses) == (
        122, "Always", True, True, ["Workload"]
    )


def test_ipam_and_cni_read_an_applied_node(store: DirectoryStore) -> None:
    apply(store, node(labels={"zone": "a"}, status={"podCIDRs": ["10.244.3.0/24"]}))
    assert Ipam(store, "node1").node_labels() == {"zone": "a"}
    record = store.get("resources/nodes/node1")
    assert record is not None and record.value["status"]["podCIDRs"] == ["10.244.3.0/24"]


def test_applied_node_keeps_stored_status_unless_given(store: DirectoryStore) -> None:
    apply(store, node(status={"podCIDRs": ["10.244.3.0/24"]}))
    assert apply(store, node())["status"] == {"podCIDRs": ["10.244.3.0/24"]}
    assert apply(store, node(status={}))["status"] == {}


def test_a_node_written_by_the_agent_is_shown_as_stored(store: DirectoryStore) -> None:
    store.put("resources/nodes/n9", {"metadata": {"name": "n9"},
                                     "spec": {"bgp": {"ipv4Address": "10.0.0.9/24"}}})  # fmt: skip
    shown = get(store, "Node", "n9")
    assert shown["apiVersion"] == V3 and shown["kind"] == "Node"
    assert shown["spec"]["bgp"]["ipv4Address"] == "10.0.0.9/24"


# -- checks across resources -------------------------------------------------------------------


def test_overlapping_pools_are_refused(store: DirectoryStore) -> None:
    create(store, pool("pool1", "10.65.0.0/16"))
    with pytest.raises(Refused) as caught:
        create(store, pool("pool2", "10.65.128.0/17"))
    assert str(caught.value) == (
        "IPPool \"pool2\": spec.cidr: 10.65.128.0/17 overlaps IPPool 'pool1' (10.65.0.0/16)"
    )
    with pytest.raises(Refused):
        apply(store, pool("pool3", "10.0.0.0/8"))
    create(store, pool("pool4", "10.66.0.0/16"))
    create(store, pool("pool6", "fd00::/48"))
    with pytest.raises(Refused):
        replace(store, pool("pool4", "10.64.0.0/14"))
    assert [p.name for p in load_pools(store)] == ["pool1", "pool4", "pool6"]


def test_a_pool_does_not_overlap_itself(store: DirectoryStore) -> None:
    create(store, pool())
    replace(store, pool(natOutgoing=True))


def _allocate(store: DirectoryStore) -> str:
    (got,) = Ipam(store, "node1").auto_assign("k8s-pod-network.c1", {}, num4=1, num6=0)
    return got.address


def test_a_pool_in_use_keeps_its_cidr_and_block_size(store: DirectoryStore) -> None:
    create(store, pool())
    assert _allocate(store) == "10.65.0.0"
    assert store.keys("ipam/blocks/") == ["ipam/blocks/10.65.0.0-26"]
    with pytest.raises(Refused, match=r"spec.cidr: cannot change the CIDR of a pool in use"):
        replace(store, pool(cidr="10.64.0.0/15"))
    with pytest.raises(Refused, match=r"spec.blockSize: cannot change the block size of a pool"):
        apply(store, pool(blockSize=28))
    # Other changes are fine.
    assert replace(store, pool(natOutgoing=True, ipipMode="Always"))["spec"]["ipipMode"] == "Always"


def test_an_unused_pool_may_change_its_cidr(store: DirectoryStore) -> None:
    create(store, pool())
    assert replace(store, pool(cidr="10.70.0.0/16", blockSize=28))["spec"]["cidr"] == "10.70.0.0/16"


def test_a_new_pool_over_blocks_of_another_size_is_refused(store: DirectoryStore) -> None:
    create(store, pool())
    _allocate(store)
    delete(store, "IPPool", "pool1")  # allowed: the block stays
    assert store.keys("ipam/blocks/") == ["ipam/blocks/10.65.0.0-26"]
    with pytest.raises(Refused, match=r"spec.blockSize: /28 conflicts with allocated block"):
        create(store, pool(blockSize=28))
    create(store, pool())  # the same size again is fine


def test_a_load_balancer_pool_stays_one(store: DirectoryStore) -> None:
    create(store, pool(allowedUses=["LoadBalancer"]))
    with pytest.raises(Refused, match=r"spec.allowedUses: a LoadBalancer pool cannot be changed"):
        replace(store, pool(allowedUses=["Workload"]))


# -- dry runs --------------------------------------------------------------------------------


def test_dry_run_sees_its_own_writes_and_writes_nothing(store: DirectoryStore) -> None:
    create(store, pool("pool1", "10.65.0.0/16"))
    create(store, peer("gone", peerIP="10.0.0.9"))
    before = store.revision()
    dry = DryRun(store)
    create(dry, pool("pool2", "10.66.0.0/16"))
    delete(dry, "BGPPeer", "gone")
    with pytest.raises(Refused):
        create(dry, pool("pool3", "10.66.1.0/24"))  # overlaps pool2, written only in the dry run
    assert [r["metadata"]["name"] for r in list_resources(dry, "IPPool")] == ["pool1", "pool2"]
    assert list_resources(dry, "BGPPeer") == []
    assert dry.keys("resources/ippools/") == ["resources/ippools/pool1", "resources/ippools/pool2"]
    assert store.revision() == before
    assert [r["metadata"]["name"] for r in list_resources(store, "IPPool")] == ["pool1"]
    assert len(list_resources(store, "BGPPeer")) == 1


def test_dry_run_compare_and_swap(store: DirectoryStore) -> None:
    dry = DryRun(store)
    revision = dry.put("a/b", {"x": 1}, expect=0)
    assert revision == store.revision() + 1
    with pytest.raises(Conflict):
        dry.put("a/b", {"x": 2}, expect=0)
    assert dry.delete("a/b", expect=revision)
    assert not dry.delete("a/b")
    assert dry.get("a/b") is None and dry.get("a/c") is None
    assert store.keys("") == []


def test_pool_checks_skip_other_families_and_damaged_pools(store: DirectoryStore) -> None:
    store.put("resources/ippools/broken", {"metadata": {"name": "broken"},
                                           "spec": {"cidr": "not a cidr"}})  # fmt: skip
    create(store, pool("v4", "10.0.0.0/8"))
    create(store, pool("v6", "fd00::/8"))
    assert {p["metadata"]["name"] for p in list_resources(store, "IPPool")} == {
        "broken", "v4", "v6"
    }


def test_an_ipv6_pool_in_use(store: DirectoryStore) -> None:
    create(store, pool("v6", "fd00:65::/48"))
    (got,) = Ipam(store, "node1").auto_assign("h1", {}, num4=0, num6=1)
    assert got.address.startswith("fd00:65::")
    with pytest.raises(Refused, match=r"cannot change the CIDR"):
        replace(store, pool("v6", "fd00:66::/48"))
    with pytest.raises(Refused, match=r"overlaps IPPool 'v6'"):
        create(store, pool("v6b", "fd00:65::/48", blockSize=120))
    delete(store, "IPPool", "v6")
    with pytest.raises(Refused, match=r"/120 conflicts with allocated block fd00:65::/122"):
        create(store, pool("v6b", "fd00:65::/48", blockSize=120))
