"""The CNI plugin's ADD and DEL latency: ours (``bgpd-cni`` with ``bgpd-ipam``)
next to the reference ``ptp`` with ``host-local`` (issue: ADD p50 within 2x of
theirs).

Method.  One node namespace (forwarding on) and, made beforehand and not timed,
one pod namespace per pod per plugin (BENCH_CNI_PODS, 200 each).  A worker
(``bench.cni_worker``) started inside the node namespace runs every invocation
as a runtime does: the plugin's binary from a CNI_PATH folder, the ``CNI_*``
variables as its environment, the network configuration on stdin; each
invocation's wall time is ``time.perf_counter`` around its ``subprocess.run``,
taken the same way for both plugins (no ``ip netns exec`` inside it).

- ours: the launchers ``bgpd.cni.install`` writes (Python run with ``-I -S``);
  cniVersion 1.0.0, MTU 1450, IPAM ``bgpd-ipam`` (in-process) from the pool
  10.80.0.0/16 in a directory datastore under a temporary state folder.
- peer: ``ptp`` and ``host-local`` of Debian's containernetworking-plugins
  (``/usr/lib/cni``); cniVersion 1.0.0, MTU 1450, ``ipMasq`` false, subnet
  10.81.0.0/16, its dataDir in the same temporary folder.

The pods are ADDed one after another, all of them, then DELeted one after
another, in the same order.  Within each phase the plugins alternate in batches
of BENCH_CNI_BATCH (20), the first plugin of each round alternating too, so
machine noise falls on both alike.  One untimed ADD and DEL of each plugin, on
a pod of its own, warms the page cache (Python's .pyc files, the Go binaries)
first.  Every plugin's work is checked: after the ADDs each pod address it
returned is routed in the node namespace to a host-side veth, all distinct and
in its pool; after the DELs no route, veth, endpoint record or host-local
lease is left.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bgpd.cni.install import install
from bgpd.datastore.directory import DirectoryStore

from .procs import ROOT, namespace
from .report import Row

PODS = int(os.environ.get("BENCH_CNI_PODS", "200"))
BATCH = int(os.environ.get("BENCH_CNI_BATCH", "20"))
REFERENCE = Path("/usr/lib/cni")
OURS_POOL = "10.80.0.0/16"
PEER_SUBNET = "10.81.0.0/16"
NODE = "bench-node"
PEER = "ptp+host-local"


def plugin_folder(folder: Path) -> Path:
    """A CNI_PATH: our launchers and links to the reference plugins."""
    install(str(folder), python=str(ROOT / ".venv" / "bin" / "python"))
    for name in ("ptp", "host-local"):
        (folder / name).symlink_to(REFERENCE / name)
    return folder


def network_configs(tmp: Path) -> dict[str, dict[str, Any]]:
    ours = {
        "cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "bgpd-cni", "mtu": 1450,
        "nodename": NODE, "state_dir": str(tmp / "state"), "ipam": {"type": "bgpd-ipam"},
    }  # fmt: skip
    peer = {
        "cniVersion": "1.0.0", "name": "bench-ptp", "type": "ptp", "mtu": 1450, "ipMasq": False,
        "ipam": {"type": "host-local", "subnet": PEER_SUBNET, "dataDir": str(tmp / "host-local")},
    }  # fmt: skip
    return {"ours": ours, "peer": peer}


def plugin_table(folder: Path, configs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The worker's view of the two plugins: binary, CNI_PATH, configuration."""
    binaries = {"ours": "bgpd-cni", "peer": "ptp"}
    return {
        name: {"binary": str(folder / binaries[name]), "path": str(folder),
               "config": json.dumps(configs[name])}
        for name in ("ours", "peer")
    }  # fmt: skip


def forwarding(node: str) -> None:
    """IPv4 forwarding on in the node namespace, as on a node."""
    for key in ("net.ipv4.ip_forward", "net.ipv4.conf.all.forwarding"):
        subprocess.run(["ip", "netns", "exec", node, "sysctl", "-qw", f"{key}=1"], check=True)


def pool(state: Path) -> None:
    store = DirectoryStore(str(state / "store"))
    try:
        store.put("resources/ippools/bench", {
            "apiVersion": "projectcalico.org/v3", "kind": "IPPool",
            "metadata": {"name": "bench"}, "spec": {"cidr": OURS_POOL},
        })  # fmt: skip
    finally:
        store.close()


def pod(plugin: str, i: int, netns: str) -> dict[str, str]:
    container = f"bench{plugin}{i:04d}"
    return {
        "container": container,
        "netns": f"/var/run/netns/{netns}",
        # As kubelet's runtime passes them; IgnoreUnknown lets ptp accept the K8S_ keys.
        "args": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=pod-{plugin}-{i}"
        f";K8S_POD_INFRA_CONTAINER_ID={container}",
    }


def _steps(pods: dict[str, list[dict[str, str]]], command: str) -> list[dict[str, Any]]:
    """One phase: every pod but the warm-up one, the plugins alternating in batches."""
    steps: list[dict[str, Any]] = []
    for round_, start in enumerate(range(1, PODS + 1, BATCH)):
        order = ("ours", "peer") if round_ % 2 == 0 else ("peer", "ours")
        for name in order:
            steps.append(
                {"plugin": name, "command": command, "pods": pods[name][start : start + BATCH]}
            )
    return steps


def _warm_up(pods: dict[str, list[dict[str, str]]]) -> list[dict[str, Any]]:
    """An untimed ADD and DEL of each plugin on its pod 0."""
    return [
        {"plugin": name, "command": command, "pods": pods[name][:1], "timed": False}
        for name in ("ours", "peer")
        for command in ("ADD", "DEL")
    ]


def _routes(node: str) -> dict[str, str]:
    """The node namespace's IPv4 /32 routes: address -> device."""
    out = subprocess.run(
        ["ip", "-n", node, "-4", "-j", "route", "show"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return {r["dst"]: r.get("dev", "") for r in json.loads(out) if "/" not in r["dst"]}


def _veths(node: str) -> list[str]:
    out = subprocess.run(
        ["ip", "-n", node, "-j", "link", "show", "type", "veth"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [link["ifname"] for link in json.loads(out or "[]")]


def _check_added(node: str, results: dict[str, dict[str, list[str]]]) -> None:
    routes = _routes(node)
    veths = set(_veths(node))
    for name, pool in (("ours", OURS_POOL), ("peer", PEER_SUBNET)):
        added = {c: a for c, a in results[name].items() if c != f"bench{name}0000"}
        addresses = [a.split("/")[0] for got in added.values() for a in got]
        if len(added) != PODS or len(addresses) != PODS or len(set(addresses)) != PODS:
            raise RuntimeError(f"cni: {name}: {len(set(addresses))} distinct addresses, not {PODS}")
        net = ipaddress.ip_network(pool)
        outside = [a for a in addresses if ipaddress.ip_address(a) not in net]
        if outside:
            raise RuntimeError(f"cni: {name}: addresses outside {pool}: {outside[:3]}")
        unrouted = [a for a in addresses if routes.get(a) not in veths]
        if unrouted:
            raise RuntimeError(f"cni: {name}: no host route to a veth for {unrouted[:3]}")


def _check_deleted(node: str, tmp: Path) -> None:
    routes = _routes(node)
    left = [a for a in routes if a.startswith(("10.80.", "10.81."))]
    if left:
        raise RuntimeError(f"cni: routes left after DEL: {left[:3]}")
    if _veths(node):
        raise RuntimeError(f"cni: veths left after DEL: {_veths(node)[:3]}")
    store = DirectoryStore(str(tmp / "state" / "store"))
    try:
        records = store.keys(f"endpoints/{NODE}/")
        handles = store.keys("ipam/handles/")
    finally:
        store.close()
    if records or handles:
        raise RuntimeError(f"cni: ours left records {records[:3]} handles {handles[:3]}")
    leases = [
        p.name for p in (tmp / "host-local" / "bench-ptp").iterdir()
        if p.name[0].isdigit()
    ]  # fmt: skip
    if leases:
        raise RuntimeError(f"cni: host-local leases left after DEL: {leases[:3]}")


def percentile(values: list[float], p: float) -> float:
    """Nearest rank: the smallest value with at least p% of them at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def worker(node: str, tmp: Path, plugins: dict[str, Any], steps: list[Any]) -> dict[str, Any]:
    """Run ``steps`` in a worker inside ``node``; its timings and ADD results."""
    plan_file = tmp / "plan.json"
    plan_file.write_text(json.dumps({"plugins": plugins, "steps": steps}))
    # ip netns exec execs the worker, so a timeout kills the worker by its own PID.
    proc = subprocess.run(
        ["ip", "netns", "exec", node, sys.executable, "-m", "bench.cni_worker", str(plan_file)],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=1800,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"cni: worker failed (exit {proc.returncode}):\n{proc.stderr}")
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def measure(tmp: Path) -> dict[str, dict[str, list[float]]]:
    """Seconds per invocation: {"ours"|"peer": {"ADD"|"DEL": [...]}}."""
    folder = plugin_folder(tmp / "bin")
    pool(tmp / "state")
    configs = network_configs(tmp)
    plugins = plugin_table(folder, configs)
    with contextlib.ExitStack() as stack:  # every namespace deleted on the way out
        node = stack.enter_context(namespace("cni-node"))
        forwarding(node)
        pods: dict[str, list[dict[str, str]]] = {}
        for name in ("ours", "peer"):
            pods[name] = [  # pod 0: the warm-up
                pod(name, i, stack.enter_context(namespace(f"cni-{name}-{i}")))
                for i in range(PODS + 1)
            ]
        added = worker(node, tmp, plugins, _warm_up(pods) + _steps(pods, "ADD"))
        _check_added(node, added["results"])
        deleted = worker(node, tmp, plugins, _steps(pods, "DEL"))
        _check_deleted(node, tmp)
    return {
        name: {"ADD": added["times"][name]["ADD"], "DEL": deleted["times"][name]["DEL"]}
        for name in ("ours", "peer")
    }


def run() -> list[Row]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-cni-"))
    try:
        times = measure(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for name in ("ours", "peer"):
        for command in ("ADD", "DEL"):
            got = [t * 1000 for t in times[name][command]]
            print(
                f"cni: {name} {command}: n={len(got)} min {min(got):.1f} "
                f"mean {sum(got) / len(got):.1f} max {max(got):.1f} ms",
                file=sys.stderr,
            )
    rows = []
    for command in ("ADD", "DEL"):
        for p in (50, 99):
            mine = percentile(times["ours"][command], p) * 1000
            theirs = percentile(times["peer"][command], p) * 1000
            rows.append(Row("cni", f"{command.lower()} p{p}", "ms", mine, PEER, theirs))
    return rows
