"""NetworkPolicy across nodes: a lab whose nodes each run ``bgpd policy`` beside the
speaker.  Traffic between pods on different nodes crosses both nodes' forward
hooks; each node polices its own pods.  The full semantics matrix runs on one
node in tests/policy/test_matrix.py; this proves the cluster wiring."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from bgpd.lab import Lab
from tests.conftest import require_programs

from .conftest import DATASTORES, running_lab

DENY_INGRESS = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-ingress, namespace: default}
spec: {podSelector: {}, policyTypes: [Ingress]}
"""


def allow_from(name: str, cidr: str) -> str:
    return f"""
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: {name}, namespace: default}}
spec:
  podSelector: {{}}
  ingress: [{{from: [{{ipBlock: {{cidr: {cidr}}}}}]}}]
"""


def enforced(lab: Lab, timeout: float = 20) -> None:
    """Every node's policy agent has enforced every write made so far."""
    store = lab.store()
    try:
        want = store.revision()
    finally:
        store.close()
    deadline = time.monotonic() + timeout
    pending = set(lab.node_names)
    while pending and time.monotonic() < deadline:
        for node in list(pending):
            path = lab.state / "run" / f"policy-{node}.json"
            try:
                if json.loads(path.read_text())["revision"] >= want:
                    pending.discard(node)
            except (OSError, ValueError, KeyError):
                pass
        time.sleep(0.05)
    assert not pending, f"policy agents of {sorted(pending)} did not catch up"


@pytest.mark.parametrize("datastore", DATASTORES)
def test_policy_across_nodes(tmp_path: Path, datastore: str) -> None:
    require_programs("nft", package="nftables")
    with running_lab(
        tmp_path / "state", nodes=2, pods_per_node=2, policy=True, datastore=datastore
    ) as lab:
        enforced(lab)
        a1, b1 = [p for p in lab.pods if p.node == "node1"]
        a2, b2 = [p for p in lab.pods if p.node == "node2"]
        assert lab.ping(a2, a1.ip) == 0.0, "no policy: everything passes"

        lab.apply(DENY_INGRESS)
        enforced(lab)
        assert lab.ping(a2, a1.ip, count=2, timeout=1) == 100.0, "cross-node ingress denied"
        assert lab.ping(b1, a1.ip, count=2, timeout=1) == 100.0, "same-node ingress denied"
        node1 = lab.net("node1").ns
        ping = ["ping", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "1", a1.ip]
        from_node = subprocess.run(
            ["ip", "netns", "exec", node1, *ping], capture_output=True, check=False
        )
        assert from_node.returncode == 0, "the pod's own node always reaches it"

        lab.apply(allow_from("from-a2", f"{a2.ip}/32"))
        enforced(lab)
        assert lab.ping(a2, a1.ip) == 0.0, "ipBlock allows a2"
        assert lab.ping(b2, a1.ip, count=2, timeout=1) == 100.0, "but not b2"

        for name in ("deny-ingress", "from-a2"):
            res = lab.bgpctl("delete", "networkpolicy", name)
            assert res.returncode == 0, res.stderr
        enforced(lab)
        assert lab.ping(b2, a1.ip) == 0.0, "policies deleted: open again"
