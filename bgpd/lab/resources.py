"""The Calico resources a lab starts from, and applying resources to its datastore.

A lab's datastore starts with one IPPool (``lab-pool``, 10.65.0.0/16, blocks of
/26, the encapsulation of the lab, no NAT) and the ``default`` BGPConfiguration.
Reflector mode starts from the three manifests of :func:`reflector_manifests`
(the ones the issue gives): node1 a route reflector, every node peering with the
reflectors through a BGPPeer with a ``peerSelector``, the mesh off.

``apply`` takes YAML text holding one or more resources, as ``calicoctl apply
-f`` does: through ``bgpctl apply -f`` when this tree's bgpctl has it, else
in-process through ``bgpd.resources`` (Calico's validation, then create or
replace as compare-and-swap), every document checked before any is written.
"""

from __future__ import annotations

import functools
import os
import subprocess
import tempfile
from collections.abc import Sequence
from typing import Any

import yaml

from ..datastore.directory import DirectoryStore
from ..resources import models, store
from .agent import python_module
from .topology import LabError

API_VERSION = "projectcalico.org/v3"
POOL_NAME = "lab-pool"
POOL_CIDR = "10.65.0.0/16"
BLOCK_SIZE = 26
#: The lab's encapsulation -> the pool's vxlanMode.
VXLAN_MODES = {"direct": "Never", "vxlan": "Always", "crosssubnet": "CrossSubnet"}


def ippool(encap: str, cidr: str = POOL_CIDR, name: str = POOL_NAME) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION, "kind": "IPPool", "metadata": {"name": name},
        "spec": {"cidr": cidr, "blockSize": BLOCK_SIZE, "ipipMode": "Never",
                 "vxlanMode": VXLAN_MODES[encap], "natOutgoing": False,
                 "nodeSelector": "all()"},
    }  # fmt: skip


def bgp_configuration(mesh: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION, "kind": "BGPConfiguration", "metadata": {"name": "default"},
        "spec": {"logSeverityScreen": "Info", "nodeToNodeMeshEnabled": mesh,
                 "asNumber": 64512},
    }  # fmt: skip


def reflector_manifests(reflector_cidr: str, reflector: str = "node1") -> str:
    """The issue's three manifests: ``reflector`` (whose address is
    ``reflector_cidr``) a route reflector, everyone peering with reflectors, no mesh."""
    return f"""\
apiVersion: projectcalico.org/v3
kind: Node
metadata: {{name: {reflector}, labels: {{route-reflector: "true"}}}}
spec: {{bgp: {{ipv4Address: {reflector_cidr}, routeReflectorClusterID: 1.1.1.1}}}}
---
kind: BGPPeer
apiVersion: projectcalico.org/v3
metadata: {{name: peer-with-route-reflectors}}
spec: {{nodeSelector: all(), peerSelector: route-reflector == "true"}}
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {{name: default}}
spec: {{logSeverityScreen: Info, nodeToNodeMeshEnabled: false, asNumber: 63400}}
"""


def to_yaml(*resources: dict[str, Any]) -> str:
    return yaml.safe_dump_all(list(resources), sort_keys=False)


@functools.cache
def bgpctl_can_apply() -> bool:
    """Whether this tree's ``bgpctl`` has the ``apply`` command yet."""
    res = subprocess.run(
        python_module("bgpd.ctl.main", "apply", "--help"), capture_output=True, timeout=60,
        check=False,
    )  # fmt: skip
    return res.returncode == 0


def bgpctl(
    state_dir: str, *args: str, node: str | None = None, datastore: Sequence[str] = (),
    netns: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """``bgpctl --state-dir DIR [--node-name NODE] [DATASTORE OPTIONS] ARGS``, in
    network namespace ``netns`` if given (never raises on failure)."""
    names = ["--node-name", node] if node else []
    inside = ["ip", "netns", "exec", netns] if netns else []
    return subprocess.run(
        [*inside, *python_module("bgpd.ctl.main", "--state-dir", state_dir, *names, *datastore,
                                 *args)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def apply(
    state_dir: str, text: str, datastore: Sequence[str] = (), netns: str | None = None
) -> str:
    """Apply the resources in ``text``; returns how ("bgpctl" or "bgpd.resources").
    ``datastore``, ``netns``: as for ``bgpctl``."""
    DirectoryStore(os.path.join(state_dir, "store")).close()  # made if missing
    if datastore or bgpctl_can_apply():
        fd, path = tempfile.mkstemp(prefix="apply-", suffix=".yaml", dir=state_dir)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            res = bgpctl(state_dir, "apply", "-f", path, datastore=datastore, netns=netns)
        finally:
            os.unlink(path)
        if res.returncode != 0:
            raise LabError(f"bgpctl apply: {res.stderr.strip() or res.stdout.strip()}")
        return "bgpctl"
    try:
        loaded = [r for doc in yaml.safe_load_all(text) if doc for r in models.load_resources(doc)]
    except (yaml.YAMLError, models.ResourceError) as exc:
        raise LabError(f"apply: {exc}") from None
    directory = DirectoryStore(os.path.join(state_dir, "store"))
    try:
        for resource in loaded:
            store.apply(directory, resource)
    except store.StoreError as exc:
        raise LabError(f"apply: {exc}") from None
    finally:
        directory.close()
    return "bgpd.resources"
