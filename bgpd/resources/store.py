"""Where Calico resources live in the datastore, and how they are written: create,
replace, apply (create or replace), delete, get and list, each a compare-and-swap
so that concurrent writers never lose an update.

Keys (the value is the canonical object ``models.dump`` gives, minus
``metadata.resourceVersion``)::

    resources/bgpconfigurations/<name>
    resources/bgppeers/<name>
    resources/nodes/<name>          IPAM and the CNI plugin read metadata.labels
                                    and status.podCIDRs here
    resources/ippools/<name>        IPAM reads spec (bgpd.ipam.pools)
    resources/bgpfilters/<name>
    ipam/config                     IPAMConfig "default", in the flat form IPAM
                                    reads: {strictAffinity, autoAllocateBlocks,
                                    maxBlocksPerHost}; shown as a v3 object
    resources/networkpolicies/<namespace>/<name>
    resources/namespaces/<name>     (labels include kubernetes.io/metadata.name)
    resources/pods/<namespace>/<name>
                                    the policy agent reads these three (the
                                    shapes: ``models_k8s``)

NetworkPolicy and Pod are namespaced: ``get``, ``delete`` and ``list_resources``
take a ``namespace`` for them ("default" when None; for ``list_resources``, None
is every namespace); it is ignored for the other kinds, as calicoctl ignores
``-n`` for cluster-scoped kinds.  A resource's own namespace is in its metadata.

A returned object carries ``metadata.resourceVersion``: the record's revision, as
a string (Kubernetes' form).  Given back in ``replace`` (or ``apply`` or
``delete``), it is calicoctl's optimistic concurrency: the write happens only if
the record is still at that revision, else ``UpdateConflict``.  Without it a
write retries on conflict against the fresh record: the resource is replaced
whole anyway, and what the replacement keeps from the stored one (uid,
creationTimestamp, a Node's status) is re-read each time, so nothing written
meanwhile is lost.

Checks across resources, as Calico's client makes them on write:

* an IPPool must not overlap another pool;
* a pool's CIDR or block size cannot change while blocks are allocated in it
  (``ipam/blocks/``); a new or changed pool cannot cover existing blocks of
  another size; a LoadBalancer pool stays one;
* deleting a pool is allowed (its blocks stay; IPAM stops using the pool).

``DryRun`` is the store as it would be after some writes, without making them:
``bgpctl apply -f`` runs a whole file against it first, so that a document that
would fail stops the file before anything is written.

Calico refuses any change of a pool's CIDR or block size; here it is refused only
while the pool holds blocks (an unused pool can be corrected in place).
"""

from __future__ import annotations

import builtins
import ipaddress
import random
import time
import uuid
from typing import TYPE_CHECKING, Any, Protocol

from ..datastore.base import Conflict, Record
from ..ipam.allocator import BLOCKS, CONFIG, DEFAULT_CONFIG
from .models import (
    ALL_KINDS,
    API_VERSION,
    IPAMConfig,
    Resource,
    api_version_of,
    is_namespaced,
)
from .models_k8s import DEFAULT_NAMESPACE

if TYPE_CHECKING:
    from collections.abc import Callable

#: Where each kind lives (IPAMConfig: the one key ``CONFIG``).
PREFIXES = {
    "BGPConfiguration": "resources/bgpconfigurations/",
    "BGPPeer": "resources/bgppeers/",
    "Node": "resources/nodes/",
    "IPPool": "resources/ippools/",
    "BGPFilter": "resources/bgpfilters/",
    "NetworkPolicy": "resources/networkpolicies/",
    "Namespace": "resources/namespaces/",
    "Pod": "resources/pods/",
}
RETRIES = 20


def _back_off(attempt: int) -> None:
    """A random pause after losing a compare-and-swap, growing with the attempts
    (up to ~50 ms): writers racing for one key (six ``bgpctl apply`` updating one
    Node) otherwise lose in lockstep, and one descheduled at the wrong moment can
    lose every round."""
    time.sleep(random.uniform(0, min(0.05, 0.002 * 2**attempt)))
IPAM_CONFIG_NAME = "default"


class Store(Protocol):
    """The part of the datastore interface this module uses (DryRun has it too)."""

    def get(self, key: str) -> Record | None: ...

    def list(self, prefix: str) -> builtins.list[Record]: ...

    def keys(self, prefix: str) -> builtins.list[str]: ...

    def put(self, key: str, value: dict[str, Any], expect: int | None = None,
            durable: bool = True) -> int: ...  # fmt: skip

    def delete(self, key: str, expect: int | None = None, durable: bool = True) -> bool: ...

    def revision(self) -> int: ...


class StoreError(Exception):
    """A write or read the datastore's state refuses (the message says why)."""


class NotFound(StoreError):
    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"resource does not exist: {kind}({name})")


class AlreadyExists(StoreError):
    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"resource already exists: {kind}({name})")


class UpdateConflict(StoreError):
    def __init__(self, kind: str, name: str, given: str, actual: int) -> None:
        now = "deleted" if actual == 0 else f"at resourceVersion {actual}"
        super().__init__(f"update conflict: {kind}({name}): resourceVersion {given} was given, "
                         f"the resource is {now}")  # fmt: skip


class Refused(StoreError):
    """A write a check across resources refuses (pool overlap, pool in use)."""

    def __init__(self, what: str, path: str, reason: str) -> None:
        super().__init__(f"{what}: {path}: {reason}")


def namespace_of(kind: str, namespace: str | None) -> str | None:
    """The namespace a namespaced kind's resource is in ("default" when not
    given); None for the other kinds."""
    if not is_namespaced(kind):
        return None
    return namespace or DEFAULT_NAMESPACE


def _named(kind: str, name: str, namespace: str | None) -> str:
    """How messages name a resource: ``name``, or ``namespace/name``."""
    namespace = namespace_of(kind, namespace)
    return name if namespace is None else f"{namespace}/{name}"


def key_of(kind: str, name: str, namespace: str | None = None) -> str:
    """The key of one resource (``namespace``: see the module's docstring)."""
    if kind == IPAMConfig.KIND:
        return CONFIG
    return PREFIXES[kind] + _named(kind, name, namespace)


def resource_namespace(resource: Resource) -> str | None:
    """A loaded resource's namespace, or None for a cluster-scoped kind."""
    return namespace_of(resource.KIND, resource.metadata.namespace)


# -- reading ---------------------------------------------------------------------------------


def _ipam_config_object(value: dict[str, Any]) -> dict[str, Any]:
    spec = {key: value.get(key, default) for key, default in DEFAULT_CONFIG.items()}
    return {"apiVersion": API_VERSION, "kind": IPAMConfig.KIND,
            "metadata": {"name": IPAM_CONFIG_NAME}, "spec": spec}  # fmt: skip


def _shown(kind: str, record: Record) -> dict[str, Any]:
    """A stored record as an object, with its revision as metadata.resourceVersion."""
    if kind == IPAMConfig.KIND:
        value = _ipam_config_object(record.value)
    else:
        value = {"apiVersion": api_version_of(kind), "kind": kind, **record.value}
    metadata = dict(value.get("metadata") or {})
    metadata["resourceVersion"] = str(record.revision)
    return {**value, "metadata": metadata}


def _record(store: Store, kind: str, name: str, namespace: str | None) -> Record | None:
    if kind == IPAMConfig.KIND and name != IPAM_CONFIG_NAME:
        return None
    return store.get(key_of(kind, name, namespace))


def get(store: Store, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    """One resource as stored (NotFound if absent)."""
    record = _record(store, kind, name, namespace)
    if record is None:
        raise NotFound(kind, _named(kind, name, namespace))
    return _shown(kind, record)


def list_resources(store: Store, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
    """Every resource of a kind, in name order; of a namespaced kind, those in
    ``namespace``, or (None) in every namespace, in (namespace, name) order."""
    if kind == IPAMConfig.KIND:
        record = store.get(CONFIG)
        return [] if record is None else [_shown(kind, record)]
    prefix = PREFIXES[kind]
    if namespace is not None and is_namespaced(kind):
        prefix += f"{namespace}/"
    return [_shown(kind, r) for r in store.list(prefix)]


# -- checks across resources -------------------------------------------------------------------

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _network(text: object) -> Network | None:
    try:
        return ipaddress.ip_network(str(text), strict=False)
    except ValueError:
        return None


def _blocks(store: Store) -> builtins.list[Network]:
    """The allocated blocks, from their keys (``10.65.0.0-26``: no reads)."""
    out = []
    for key in store.keys(BLOCKS):
        address, _, length = key[len(BLOCKS):].rpartition("-")
        network = _network(f"{address}/{length}")
        if network is not None:
            out.append(network)
    return out


def _check_pool(store: Store, what: str, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
    name = new["metadata"]["name"]
    spec = new["spec"]
    cidr = _network(spec["cidr"])
    assert cidr is not None  # validated
    for record in store.list(PREFIXES["IPPool"]):
        other = record.value.get("metadata", {}).get("name")
        other_cidr = _network((record.value.get("spec") or {}).get("cidr"))
        if other == name or other_cidr is None or other_cidr.version != cidr.version:
            continue
        if cidr.overlaps(other_cidr):
            raise Refused(what, "spec.cidr", f"{spec['cidr']} overlaps IPPool {other!r} "
                          f"({other_cidr})")  # fmt: skip
    blocks = _blocks(store)
    if old is not None:
        old_spec = old.get("spec") or {}
        old_cidr = _network(old_spec.get("cidr"))
        in_use = old_cidr is not None and any(
            b.version == old_cidr.version and b.subnet_of(old_cidr)  # type: ignore[arg-type]
            for b in blocks
        )
        if in_use and old_cidr != cidr:
            raise Refused(what, "spec.cidr", f"cannot change the CIDR of a pool in use "
                          f"({old_cidr} has allocated blocks)")  # fmt: skip
        if in_use and old_spec.get("blockSize") != spec["blockSize"]:
            raise Refused(what, "spec.blockSize", "cannot change the block size of a pool in "
                          f"use (/{old_spec.get('blockSize')} blocks are allocated)")  # fmt: skip
        if "LoadBalancer" in (old_spec.get("allowedUses") or []) and spec["allowedUses"] != [
            "LoadBalancer"
        ]:
            raise Refused(what, "spec.allowedUses", "a LoadBalancer pool cannot be changed to "
                          "Workload or Tunnel")  # fmt: skip
    for block in blocks:
        if block.version == cidr.version and block.overlaps(cidr) and (
            block.prefixlen != spec["blockSize"]
        ):
            raise Refused(what, "spec.blockSize", f"/{spec['blockSize']} conflicts with "
                          f"allocated block {block} of another size")  # fmt: skip


#: Checks across resources by kind: (store, what, stored object or None, new object).
CHECKS: dict[str, Callable[[Store, str, dict[str, Any] | None, dict[str, Any]], None]] = {
    "IPPool": _check_pool,
}


# -- writing ---------------------------------------------------------------------------------


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _uid() -> str:
    return str(uuid.uuid4())


def _new_object(resource: Resource) -> dict[str, Any]:
    value = resource.dump()
    metadata = value["metadata"]
    metadata.pop("resourceVersion", None)
    if resource.KIND == IPAMConfig.KIND:
        value["metadata"] = {"name": IPAM_CONFIG_NAME}
        return value
    metadata.setdefault("uid", _uid())
    metadata.setdefault("creationTimestamp", _now())
    return value


def _replacement(resource: Resource, stored: dict[str, Any]) -> dict[str, Any]:
    """The object that replaces ``stored``: the new one whole, with the server's
    uid and creationTimestamp kept, and a Node's or a Pod's status when the new
    one has none (a pod manifest applied again keeps the addresses written)."""
    value = _new_object(resource)
    old_metadata = stored.get("metadata") or {}
    for key in ("uid", "creationTimestamp"):
        if key in old_metadata and key in value["metadata"]:
            value["metadata"][key] = old_metadata[key]
    if resource.KIND in ("Node", "Pod") and "status" not in value and "status" in stored:
        value["status"] = stored["status"]
    return value


def _put(store: Store, key: str, value: dict[str, Any], expect: int) -> int:
    if key == CONFIG:
        return store.put(CONFIG, dict(value["spec"]), expect=expect)
    return store.put(key, value, expect=expect)


def _write(store: Store, resource: Resource, mode: str) -> dict[str, Any]:
    kind, name = resource.KIND, resource.name
    namespace = resource_namespace(resource)
    named = _named(kind, name, namespace)
    given = resource.metadata.resource_version
    for attempt in range(RETRIES):
        record = _record(store, kind, name, namespace)
        stored = None
        if record is None:
            # apply creates whatever resourceVersion says, as calicoctl's apply
            # tries a create (which ignores it) first.
            if mode == "replace":
                raise NotFound(kind, named)
            value, expect = _new_object(resource), 0
        else:
            stored = _shown(kind, record)
            if mode == "create":
                raise AlreadyExists(kind, named)
            if given and int(given) != record.revision:
                raise UpdateConflict(kind, named, given, record.revision)
            value, expect = _replacement(resource, stored), record.revision
        check = CHECKS.get(kind)
        if check is not None:
            check(store, str(resource), stored, value)
        try:
            revision = _put(store, key_of(kind, name, namespace), value, expect)
        except Conflict as exc:
            if given:
                raise UpdateConflict(kind, named, given, exc.actual) from None
            _back_off(attempt)
            continue
        metadata = {**value["metadata"], "resourceVersion": str(revision)}
        return {**value, "metadata": metadata}
    raise StoreError(f"{kind}({named}) kept changing while it was written; try again")


def create(store: Store, resource: Resource) -> dict[str, Any]:
    """Write a new resource (AlreadyExists if there is one); the stored object."""
    return _write(store, resource, "create")


def replace(store: Store, resource: Resource) -> dict[str, Any]:
    """Replace an existing resource (NotFound if there is none); with
    metadata.resourceVersion, only if the stored one is still at it."""
    return _write(store, resource, "replace")


def apply(store: Store, resource: Resource) -> dict[str, Any]:
    """Create or replace."""
    return _write(store, resource, "apply")


def delete(
    store: Store, kind: str, name: str, resource_version: str | None = None,
    namespace: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Remove a resource (NotFound if absent); the object removed."""
    named = _named(kind, name, namespace)
    for attempt in range(RETRIES):
        record = _record(store, kind, name, namespace)
        if record is None:
            raise NotFound(kind, named)
        if resource_version and int(resource_version) != record.revision:
            raise UpdateConflict(kind, named, resource_version, record.revision)
        try:
            if not store.delete(key_of(kind, name, namespace), expect=record.revision):
                raise NotFound(kind, named)
        except Conflict as exc:
            if resource_version:
                raise UpdateConflict(kind, named, resource_version, exc.actual) from None
            _back_off(attempt)
            continue
        return _shown(kind, record)
    raise StoreError(f"{kind}({named}) kept changing while it was deleted; try again")


#: The write functions by calicoctl's command name.
WRITES: dict[str, Callable[[Store, Resource], dict[str, Any]]] = {
    "create": create,
    "replace": replace,
    "apply": apply,
}


# -- trying writes first ---------------------------------------------------------------------


class DryRun:
    """``store`` as it would be after the writes made to this object, which go no
    further.  Revisions handed out continue the store's."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._writes: dict[str, Record | None] = {}
        self._revision = store.revision()

    def get(self, key: str) -> Record | None:
        if key in self._writes:
            return self._writes[key]
        return self._store.get(key)

    def list(self, prefix: str) -> builtins.list[Record]:
        records = {r.key: r for r in self._store.list(prefix)}
        for key, record in self._writes.items():
            if key.startswith(prefix):
                if record is None:
                    records.pop(key, None)
                else:
                    records[key] = record
        return [records[k] for k in sorted(records)]

    def keys(self, prefix: str) -> builtins.list[str]:
        return [r.key for r in self.list(prefix)]

    def _expect(self, key: str, expect: int | None) -> Record | None:
        current = self.get(key)
        actual = 0 if current is None else current.revision
        if expect is not None and actual != expect:
            raise Conflict(key, expect, actual)
        return current

    def put(self, key: str, value: dict[str, Any], expect: int | None = None,
            durable: bool = True) -> int:  # fmt: skip
        self._expect(key, expect)
        self._revision += 1
        self._writes[key] = Record(key, value, self._revision)
        return self._revision

    def delete(self, key: str, expect: int | None = None, durable: bool = True) -> bool:
        if self._expect(key, expect) is None:
            return False
        self._revision += 1
        self._writes[key] = None
        return True

    def revision(self) -> int:
        return self._revision


assert set(PREFIXES) | {IPAMConfig.KIND} == set(ALL_KINDS)
