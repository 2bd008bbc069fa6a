"""Endpoint records: what the plugin made for each attachment, kept in the datastore
under ``endpoints/<node>/<container ID>.<ifname>`` for DEL, CHECK, GC, ``ipam
check`` and the policy agent (DESIGN.md: processes meet in the datastore).

A record is written *before* anything is made, with ``state: creating`` and the
names that will be used, and rewritten ``ready`` with the addresses and MAC at
the end.  So a plugin killed at any point leaves a record naming everything it
may have made, and GC (or DEL) can remove it all.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not from typing: its import costs the CNI plugin ~4 ms

if TYPE_CHECKING:
    from typing import Any

    from ..datastore.base import Datastore, Record

ENDPOINTS = "endpoints/"


def endpoint_key(node: str, container_id: str, ifname: str) -> str:
    return f"{ENDPOINTS}{node}/{container_id}.{ifname}"


def node_endpoints(store: Datastore, node: str) -> list[Record]:
    return store.list(f"{ENDPOINTS}{node}/")


def all_endpoints(store: Datastore) -> list[Record]:
    return store.list(ENDPOINTS)


def handle_of(network: str, container_id: str) -> str:
    """Calico's IPAM handle for a CNI attachment: ``<network>.<container ID>``."""
    return f"{network}.{container_id}"


def describe(value: dict[str, Any]) -> str:
    pod = f"{value.get('namespace')}/{value.get('pod')}" if value.get("pod") else "-"
    return f"{value.get('containerID')} ({pod}, {value.get('hostIfname')})"
