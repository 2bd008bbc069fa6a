"""What every ``bgpctl`` command works with: the state directory, the node, the
datastore (opened on first use, never created: a mistyped ``--state-dir`` is an
error, not a new empty cluster) and how a command fails.

State directory layout (shared with the node agent and the CNI plugin)::

    <state>/store                   the DirectoryStore root
    <state>/locks/ipam-<node>.lock  the node's IPAM lock
    <state>/nodename                the node name the agent settled on
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..datastore import local
from ..datastore.select import StoreConfig

if TYPE_CHECKING:
    from ..datastore.base import Datastore



class CtlError(Exception):
    """A command that cannot do what was asked: the one-line message is for the
    operator, and ``bgpctl`` exits 1."""


def default_state_dir() -> str:
    return local.state_dir()


def default_node_name(state_dir: str) -> str:
    """As the CNI plugin finds its node (``bgpd.datastore.local.node_name``)."""
    return local.node_name(state_dir)


class Context:
    """One invocation's settings and the datastore they lead to."""

    def __init__(self, state_dir: str, node: str, datastore: StoreConfig | None = None) -> None:
        self.state_dir = state_dir
        self.node = node
        self.datastore = datastore or StoreConfig()
        self._store: Datastore | None = None

    @property
    def store_dir(self) -> str:
        return f"{self.state_dir}/store"

    @property
    def ipam_lock(self) -> str:
        return f"{self.state_dir}/locks/ipam-{self.node}.lock"

    @property
    def store(self) -> Datastore:
        if self._store is None:
            if self.datastore.kind == "directory" and not os.path.isdir(self.store_dir):
                raise CtlError(
                    f"no datastore at {self.store_dir} (set --state-dir or BGPD_STATE_DIR, "
                    "or --datastore etcd)"
                )
            self._store = self.datastore.open(self.state_dir, create=False)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
