"""End-to-end tests: real local clusters (``bgpd.lab.Lab``): node namespaces each
running the node agent on one state directory, pods made by the CNI plugin.

``running_lab`` starts one, hands it to the tests, and after its teardown
checks that nothing of it is left: no namespace with its prefix, no agent PID
alive.  The state directory lives under pytest's tmp_path (kept after a failure,
with every agent's log in ``logs/``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bgpd.lab import Lab
from tests.conftest import require_etcd, require_programs, require_root

#: Every end-to-end lab runs on each datastore: the state directory's, and etcd
#: (a real member in the lab's fabric namespace, issue 9).
DATASTORES = ("directory", "etcd")


def require_lab() -> None:
    require_root()
    require_programs("ip", "bridge", package="iproute2")
    require_programs("ping", package="iputils-ping")


@contextlib.contextmanager
def running_lab(state: Path, **kwargs: Any) -> Iterator[Lab]:
    require_lab()
    if kwargs.get("datastore") == "etcd":
        require_etcd()
    lab = Lab(state_dir=state, **kwargs)
    with lab:
        yield lab
    assert lab.leftovers() == ([], []), "the lab left namespaces or processes behind"


def diagnose(lab: Lab) -> str:
    """Every node's sessions and routes, for an assertion message."""
    lines = []
    for node in lab.node_names:
        lines.append(f"{node}: sessions {lab.sessions(node)}")
        lines += [f"  {route}" for route in lab.routes(node)]
    return "\n".join(lines)
