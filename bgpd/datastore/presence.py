"""Which agents run: each long-running agent holds a record under ``status/agents/``
for as long as it runs (``Datastore.hold``: on etcd a lease, so the record of an
agent whose machine died vanishes with it once the lease's TTL runs out).

``bgpctl datastore status`` lists them.  The records are the process's own
business: ``bgpctl datastore migrate`` does not copy them.
"""

from __future__ import annotations

import os
import socket
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from .base import Datastore

AGENTS = "status/agents/"
#: Seconds a dead agent's record outlives it on etcd (renewed every third of it).
TTL = 30


def agent_key(node: str, role: str) -> str:
    return f"{AGENTS}{node}/{role}"


def hold_presence(store: Datastore, node: str, role: str) -> AbstractAsyncContextManager[object]:
    """``async with hold_presence(store, node, "node"):`` for the agent's lifetime."""
    value = {
        "node": node, "role": role, "pid": os.getpid(), "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }  # fmt: skip
    return store.hold(agent_key(node, role), value, ttl=TTL)
