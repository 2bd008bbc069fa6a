"""The NetworkPolicy agent's control plane at scale (issue 8): 1,000 policies over
5,000 endpoints.  Goal: the full ruleset computed and loaded in under 2 s, one
pod's arrival or departure applied in under 50 ms, and a rule count that grows
with policies, not with policies times pods.

Method.  Everything runs in a fresh network namespace made for the run and
deleted after it (``nft`` works on the namespace it runs in); the measuring
process (``python -m bench.policy --inner``) is started in it with ``ip netns
exec``.  It makes a synthetic cluster from a fixed seed and drives our code with
the calls the agent makes (``bgpd.policy.agent.PolicyAgent``: ``policy_from``,
``pod_from`` and ``namespace_labels`` on the stored objects, the ``Renderer``'s
events, ``flush``, ``Ruleset.full_script``/``script``, ``nft.apply``,
``commit``).  No interface exists: the verdict maps key on interface names.

The cluster.  50 namespaces (``kube-system`` and 49 of teams, labelled
``team`` and ``env``, and ``kubernetes.io/metadata.name``); 10 deployments per
namespace, each with labels drawn from a few ``app``/``tier``/``role``/``version``
values and named container ports (``http``, ``metrics``, ``grpc``,
``serve-80-tcp``, ``serve-81-udp``, ``dns``...); the pods are the deployments'
replicas (5,000: 10 each), every one a local endpoint with an interface
``cali`` + 11 hex digits and one IPv4 address in 10.64.0.0/16.  1,000
NetworkPolicies, 20 per namespace, in the shapes of the Kubernetes e2e and
cyclonus cases (POLICY.md §2): default deny (ingress, egress, both), allow all,
podSelector, namespaceSelector, both in one peer, two peers, matchExpressions,
namespaces by name, ipBlock with excepts, numeric, named and SCTP ports,
endPort ranges, protocol-only ports, egress to DNS and to the outside.

Measured:

1. full load: a new ``Renderer`` fed every namespace, pod, endpoint and policy,
   ``flush()`` and ``full_script()`` (compute), then ``nft.apply`` of it (load),
   into an empty namespace each time (the table deleted, untimed, before);
   the median of BENCH_POLICY_REPS (3);
2. one pod's change, BENCH_POLICY_CHANGES (50) times each, on different pods:
   an arrival (``put_pod`` + ``put_endpoint``, ``flush``, ``script``, ``nft.apply``,
   ``commit``) and a departure (``remove_endpoint`` + ``remove_pod``, the same);
   half the pairs are a new replica that arrives then leaves, half an existing
   pod that leaves then comes back, so the cluster stays at 5,000;
3. the size of the ruleset (rules, chains, sets, set elements) at 1,000
   policies with 1,000, 2,500 and 5,000 pods (the same deployments, fewer
   replicas), and at 250, 500 and 1,000 policies with 5,000 pods; the kernel's
   own count (``nft -j list table``) is checked against ours at the full size.

The peer is ``nft`` itself, the floor under any agent: ``nft -f`` of the
identical script text, alone, timed the same way (wall time of the process).
For the full load, the same script loaded into an empty namespace, alternating
with ours; for a pod's change, the same delta scripts applied again right after
ours (each pair of scripts undoes itself, so the kernel comes back to the
table the renderer holds).  So ratio = ours / nft alone.  The rule-count rows
have as "peer" the same count at the smallest size (ratio: the growth).

``BENCH_POLICY_PROFILE=DIR`` also writes cProfile dumps (``full.prof``: one
more full load, untimed; ``change.prof``: the pod changes once more, untimed)
for ``python -m pstats``.  ``BENCH_POLICY_PODS``, ``_POLICIES``, ``_CHANGES``
and ``_REPS`` make it smaller or larger.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import hashlib
import ipaddress
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bgpd.policy import nft
from bgpd.policy.model import namespace_labels, pod_from, policy_from
from bgpd.policy.render import TABLE, Renderer

from .procs import ROOT, namespace
from .report import Row

SEED = 8
NAMESPACES = 50
DEPLOYMENTS = 10  # per namespace
PODS = int(os.environ.get("BENCH_POLICY_PODS", "5000"))
POLICIES = int(os.environ.get("BENCH_POLICY_POLICIES", "1000"))
REPS = int(os.environ.get("BENCH_POLICY_REPS", "3"))
CHANGES = int(os.environ.get("BENCH_POLICY_CHANGES", "50"))
POD_SIZES = (1000, 2500, 5000)
POLICY_SIZES = (250, 500, 1000)
POD_NET = ipaddress.ip_network("10.64.0.0/16")
NODE = "bench-node"
PEER = "nft -f alone"
GOAL_FULL_MS = 2000.0
GOAL_CHANGE_MS = 50.0

TEAMS = ("payments", "search", "web", "data", "infra", "ml", "ads")
ENVS = ("prod", "staging", "dev")
APPS = ("frontend", "api", "auth", "cart", "catalog", "checkout", "db", "cache", "queue",
        "worker", "search", "reports")  # fmt: skip
TIERS = ("web", "api", "data")
ROLES = ("frontend", "backend", "worker", "db")
#: Named container ports: (name, protocol, number).
NAMED_PORTS = (
    ("http", "TCP", 8080), ("metrics", "TCP", 9090), ("grpc", "TCP", 50051),
    ("serve-80-tcp", "TCP", 80), ("serve-81-udp", "UDP", 81), ("serve-81-sctp", "SCTP", 81),
    ("https", "TCP", 8443), ("admin", "TCP", 9000),
)  # fmt: skip


# -- the synthetic cluster ------------------------------------------------------


@dataclass(slots=True)
class Deployment:
    namespace: str
    name: str
    labels: dict[str, str]
    ports: list[tuple[str, str, int]]


@dataclass(slots=True)
class PodRecord:
    """A pod as the agent would read it: its Pod object and its endpoint."""

    namespace: str
    name: str
    obj: dict[str, Any]
    interface: str
    ips: tuple[str, ...]


@dataclass(slots=True)
class Cluster:
    namespaces: dict[str, dict[str, Any]]  # name -> Namespace object
    deployments: list[Deployment]
    pods: list[PodRecord]  # the first PODS: the cluster; the rest: arrivals
    policies: list[dict[str, Any]]  # NetworkPolicy objects
    shapes: dict[str, int] = field(default_factory=dict)


def interface_name(namespace_: str, pod: str) -> str:
    """As Calico names a pod's host interface: ``cali`` + 11 hex digits."""
    return "cali" + hashlib.sha1(f"{namespace_}.{pod}".encode()).hexdigest()[:11]


def _namespaces(rng: random.Random) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    names = ["kube-system"] + [f"{TEAMS[i % len(TEAMS)]}-{i:02d}" for i in range(1, NAMESPACES)]
    for i, name in enumerate(names):
        labels = {"team": "platform", "env": "prod"} if i == 0 else {
            "team": TEAMS[i % len(TEAMS)], "env": rng.choice(ENVS)}  # fmt: skip
        if rng.random() < 0.3:
            labels["compliance"] = rng.choice(("pci", "hipaa"))
        meta = {"name": name, "labels": namespace_labels(name, {"metadata": {"labels": labels}})}
        out[name] = {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}
    return out


def _deployments(rng: random.Random, namespaces: list[str]) -> list[Deployment]:
    out = []
    for ns in namespaces:
        if ns == "kube-system":
            out.append(Deployment(ns, "coredns", {"k8s-app": "kube-dns", "tier": "infra"},
                                  [("dns", "UDP", 53), ("dns-tcp", "TCP", 53),
                                   ("metrics", "TCP", 9153)]))  # fmt: skip
            for j in range(1, DEPLOYMENTS):
                out.append(Deployment(ns, f"system-{j}", {"k8s-app": f"system-{j}",
                                      "tier": "infra"}, [("metrics", "TCP", 9090)]))  # fmt: skip
            continue
        for app in rng.sample(APPS, DEPLOYMENTS):
            labels = {"app": app, "tier": rng.choice(TIERS), "role": rng.choice(ROLES)}
            if rng.random() < 0.4:
                labels["version"] = rng.choice(("v1", "v2"))
            ports = rng.sample(NAMED_PORTS, rng.randint(1, 3))
            out.append(Deployment(ns, app, labels, ports))
    return out


def _pod(dep: Deployment, replica: int, address: str) -> PodRecord:
    suffix = hashlib.sha1(f"{dep.namespace}/{dep.name}".encode()).hexdigest()[:10]
    name = f"{dep.name}-{suffix}-{replica:03d}"
    obj = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": dep.namespace,
                     "labels": {**dep.labels, "pod-template-hash": suffix}},
        "spec": {"nodeName": NODE, "containers": [{
            "name": "main",
            "ports": [{"name": n, "containerPort": p, "protocol": proto}
                      for n, proto, p in dep.ports]}]},
        "status": {"podIP": address, "podIPs": [{"ip": address}]},
    }  # fmt: skip
    return PodRecord(dep.namespace, name, obj, interface_name(dep.namespace, name), (address,))


def _pods(deployments: list[Deployment], count: int) -> list[PodRecord]:
    """``count`` pods, the replicas of the deployments taken in turn (so the first
    1,000 hold every deployment twice, the first 5,000 ten times)."""
    out = []
    for k in range(count):
        dep = deployments[k % len(deployments)]
        out.append(_pod(dep, k // len(deployments), str(POD_NET[k + 1])))
    return out


class _Shapes:
    """The NetworkPolicy shapes of the e2e and cyclonus cases, drawn at random."""

    def __init__(self, rng: random.Random, cluster_ns: list[str],
                 deployments: list[Deployment]) -> None:  # fmt: skip
        self.rng = rng
        self.namespaces = cluster_ns
        self.by_ns: dict[str, list[Deployment]] = {}
        for dep in deployments:
            self.by_ns.setdefault(dep.namespace, []).append(dep)

    # -- pieces --

    def _dep(self, ns: str) -> Deployment:
        return self.rng.choice(self.by_ns[ns])

    def target(self, ns: str) -> dict[str, Any]:
        dep = self._dep(ns)
        roll = self.rng.random()
        if roll < 0.55:
            key = "app" if "app" in dep.labels else "k8s-app"
            return {"matchLabels": {key: dep.labels[key]}}
        if roll < 0.75 and "tier" in dep.labels and "app" in dep.labels:
            return {"matchLabels": {"app": dep.labels["app"], "tier": dep.labels["tier"]}}
        if roll < 0.9:
            return {
                "matchExpressions": [
                    {"key": "tier", "operator": "In", "values": sorted(self.rng.sample(TIERS, 2))}
                ]
            }
        return {"matchLabels": {"role": self.rng.choice(ROLES)}}  # fmt: skip

    def pod_peer(self, ns: str) -> dict[str, Any]:
        dep = self._dep(ns)
        key = "app" if "app" in dep.labels else "k8s-app"
        return {"podSelector": {"matchLabels": {key: dep.labels[key]}}}

    def ns_peer(self) -> dict[str, Any]:
        roll = self.rng.random()
        if roll < 0.4:
            return {"namespaceSelector": {"matchLabels": {"team": self.rng.choice(TEAMS)}}}
        if roll < 0.7:
            names = sorted(self.rng.sample(self.namespaces, 2))
            return {
                "namespaceSelector": {
                    "matchExpressions": [
                        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": names}
                    ]
                }
            }
        if roll < 0.85:
            return {"namespaceSelector": {"matchLabels": {"env": self.rng.choice(ENVS)}}}
        return {"namespaceSelector": {}}  # fmt: skip

    def both_peer(self) -> dict[str, Any]:
        peer = self.ns_peer()
        peer["podSelector"] = {"matchLabels": {"role": self.rng.choice(ROLES)}}
        return peer

    def expr_peer(self) -> dict[str, Any]:
        roll = self.rng.random()
        if roll < 0.5:
            exprs = [{"key": "app", "operator": "NotIn",
                      "values": sorted(self.rng.sample(APPS, 3))}]  # fmt: skip
        else:
            exprs = [{"key": "version", "operator": "Exists"}]
        return {"podSelector": {"matchExpressions": exprs}}

    def block_peer(self) -> dict[str, Any]:
        roll = self.rng.random()
        if roll < 0.5:
            a, b = self.rng.randrange(0, 200), self.rng.randrange(0, 250)
            return {
                "ipBlock": {"cidr": "10.0.0.0/8", "except": [f"10.64.{a}.0/24", f"10.{b}.0.0/16"]}
            }
        if roll < 0.8:
            return {"ipBlock": {"cidr": f"192.168.{self.rng.randrange(256)}.0/24"}}
        return {
            "ipBlock": {
                "cidr": "0.0.0.0/0",
                "except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"],
            }
        }

    def peers(self, ns: str) -> list[dict[str, Any]]:
        kind = self.rng.choices(
            ("pod", "ns", "both", "two", "expr", "block"), weights=(30, 20, 15, 15, 8, 12)
        )[0]
        if kind == "pod":
            return [self.pod_peer(ns)]
        if kind == "ns":
            return [self.ns_peer()]
        if kind == "both":
            return [self.both_peer()]
        if kind == "two":
            return [self.pod_peer(ns), self.both_peer()]
        if kind == "expr":
            return [self.expr_peer()]
        return [self.block_peer()]

    def ports(self) -> list[dict[str, Any]]:
        kind = self.rng.choices(
            ("none", "number", "named", "range", "sctp", "protocol", "mixed"),
            weights=(15, 30, 20, 10, 5, 5, 15))[0]  # fmt: skip
        if kind == "none":
            return []
        if kind == "number":
            return [{"protocol": "TCP", "port": self.rng.choice((80, 443, 8080, 5432, 6379))}]
        if kind == "named":
            name, proto, _ = self.rng.choice(NAMED_PORTS)
            return [{"protocol": proto, "port": name}]
        if kind == "range":
            start = self.rng.choice((8000, 9000, 30000))
            return [
                {
                    "protocol": "TCP",
                    "port": start,
                    "endPort": start + self.rng.choice((10, 100, 2767)),
                }
            ]
        if kind == "sctp":
            return [{"protocol": "SCTP", "port": 81}]
        if kind == "protocol":
            return [{"protocol": "UDP"}]
        name, proto, _ = self.rng.choice(NAMED_PORTS)
        return [{"protocol": "TCP", "port": 80}, {"protocol": "UDP", "port": 81},
                {"protocol": proto, "port": name}]  # fmt: skip

    # -- whole policies --

    def policy(self, ns: str, index: int) -> tuple[str, dict[str, Any]]:
        shape = self.rng.choices(
            ("deny-ingress", "deny-egress", "deny-all", "allow-all", "ingress", "ingress2",
             "egress", "both"),
            weights=(4, 3, 2, 2, 50, 12, 15, 12))[0]  # fmt: skip
        spec: dict[str, Any]
        if shape == "deny-ingress":
            spec = {"podSelector": {}, "policyTypes": ["Ingress"]}
        elif shape == "deny-egress":
            spec = {"podSelector": {}, "policyTypes": ["Egress"]}
        elif shape == "deny-all":
            spec = {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
        elif shape == "allow-all":
            spec = {"podSelector": self.target(ns), "ingress": [{}], "policyTypes": ["Ingress"]}
        elif shape in ("ingress", "ingress2"):
            rules = [self._rule("from", ns) for _ in range(1 if shape == "ingress" else 2)]
            spec = {"podSelector": self.target(ns), "ingress": rules, "policyTypes": ["Ingress"]}
        elif shape == "egress":
            spec = {"podSelector": self.target(ns), "egress": self._egress(ns),
                    "policyTypes": ["Egress"]}  # fmt: skip
        else:
            spec = {"podSelector": self.target(ns), "ingress": [self._rule("from", ns)],
                    "egress": self._egress(ns), "policyTypes": ["Ingress", "Egress"]}  # fmt: skip
        obj = {
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": f"{shape}-{index:03d}", "namespace": ns}, "spec": spec,
        }  # fmt: skip
        return shape, obj

    def _rule(self, field_: str, ns: str) -> dict[str, Any]:
        rule: dict[str, Any] = {}
        if self.rng.random() > 0.05:  # an empty from/to: everyone
            rule[field_] = self.peers(ns)
        ports = self.ports()
        if ports:
            rule["ports"] = ports
        return rule

    def _egress(self, ns: str) -> list[dict[str, Any]]:
        dns = {
            "to": [{"namespaceSelector": {"matchLabels": {
                        "kubernetes.io/metadata.name": "kube-system"}},
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
        }  # fmt: skip
        rules = [dns, self._rule("to", ns)]
        if self.rng.random() < 0.3:
            rules.append({"to": [self.block_peer()], "ports": [{"protocol": "TCP", "port": 443}]})
        return rules


def make_cluster(pods: int = PODS, policies: int = POLICIES, extra: int = CHANGES) -> Cluster:
    """The cluster of the module docstring; ``extra`` more pods, not in it, arrive later."""
    rng = random.Random(SEED)
    namespaces = _namespaces(rng)
    deployments = _deployments(rng, list(namespaces))
    shapes = _Shapes(rng, list(namespaces), deployments)
    made: list[dict[str, Any]] = []
    count: dict[str, int] = {}
    names = list(namespaces)
    for i in range(policies):  # namespaces in turn: any prefix is spread over all of them
        shape, obj = shapes.policy(names[i % len(names)], i)
        count[shape] = count.get(shape, 0) + 1
        made.append(obj)
    return Cluster(namespaces, deployments, _pods(deployments, pods + extra), made, count)


# -- measuring ------------------------------------------------------------------


def build(cluster: Cluster, pods: int, policies: int) -> Renderer:
    """The agent's start (``PolicyAgent._load_all``): namespaces, pods with their
    endpoints, policies, then ``flush``."""
    r = Renderer()
    for name, obj in cluster.namespaces.items():
        r.put_namespace(name, namespace_labels(name, obj))
    for p in cluster.pods[:pods]:
        r.put_pod(pod_from(p.obj, p.namespace, p.name, p.ips))
        r.put_endpoint(p.interface, (p.namespace, p.name))
    for obj in cluster.policies[:policies]:
        r.put_policy(policy_from(obj))
    r.flush()
    return r


def nft_alone(script: str, folder: Path) -> float:
    """Seconds of ``nft -f FILE`` on ``script`` (the file written beforehand)."""
    path = folder / "script.nft"
    path.write_text(script)
    started = time.perf_counter()
    proc = subprocess.run([nft.NFT, "-f", str(path)], capture_output=True, check=False)
    took = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"policy: nft -f refused the script: {proc.stderr.decode()[:500]}")
    return took


def kernel_size(table: str = TABLE) -> dict[str, int]:
    """Rules, chains, sets and set elements of the table as the kernel lists it."""
    proc = subprocess.run([nft.NFT, "-j", "list", "table", "inet", table],
                          capture_output=True, check=True)  # fmt: skip
    doc = json.loads(proc.stdout)
    out = {"rules": 0, "chains": 0, "sets": 0, "elements": 0, "maps": 0}
    for item in doc.get("nftables", ()):
        if "rule" in item:
            out["rules"] += 1
        elif "chain" in item:
            out["chains"] += 1
        elif "set" in item:
            out["sets"] += 1
            out["elements"] += len(item["set"].get("elem", ()))
        elif "map" in item:
            out["maps"] += 1
            out["elements"] += len(item["map"].get("elem", ()))
    return out


def size(r: Renderer) -> dict[str, int]:
    rs = r.ruleset
    # The base chain's first line is its hook declaration, not a rule (which
    # Ruleset.rule_count() counts as one).
    base = sum(1 for rule in rs.base_rules if not rule.startswith("type "))
    return {
        "rules": sum(len(rules) for rules in rs.chains.values()) + base,
        "chains": len(rs.chains) + 1,  # + the base chain
        "policy_chains": len(r.policy_chains),
        "group_chains": sum(1 for c in rs.chains if c.startswith(("gi-", "ge-"))),
        "sets": len(rs.sets),
        "elements": sum(len(s.elements) for s in rs.sets.values())
        + sum(len(m.elements) for m in rs.maps.values()),
    }


@contextlib.contextmanager
def _profiled(folder: str | None, name: str) -> Iterator[None]:
    if not folder:
        yield
        return
    prof = cProfile.Profile()
    prof.enable()
    try:
        yield
    finally:
        prof.disable()
        os.makedirs(folder, exist_ok=True)
        prof.dump_stats(os.path.join(folder, name))


def measure_full(cluster: Cluster, tmp: Path, profile: str | None) -> dict[str, Any]:
    ours: list[dict[str, float]] = []
    alone: list[float] = []
    script = ""
    r: Renderer | None = None
    if profile:  # one untimed, profiled run first: the timed ones run without the profiler
        nft.delete_table(TABLE)
        with _profiled(profile, "full.prof"):
            nft.apply(build(cluster, PODS, POLICIES).ruleset.full_script())
    for _rep in range(REPS):
        r = None
        gc.collect()
        nft.delete_table(TABLE)
        t0 = time.perf_counter()
        r = build(cluster, PODS, POLICIES)
        t1 = time.perf_counter()
        script = r.ruleset.full_script()
        t2 = time.perf_counter()
        nft.apply(script)
        r.ruleset.commit()
        t3 = time.perf_counter()
        ours.append({"events": t1 - t0, "script": t2 - t1, "compute": t2 - t0,
                     "load": t3 - t2, "total": t3 - t0})  # fmt: skip
        nft.delete_table(TABLE)
        alone.append(nft_alone(script, tmp))
    assert r is not None
    nft.delete_table(TABLE)
    nft.apply(script)  # the kernel holds the renderer's table for what follows
    r.ruleset.commit()
    kernel = kernel_size()
    mine = size(r)
    if kernel["rules"] != mine["rules"] or kernel["chains"] != mine["chains"]:
        raise RuntimeError(f"policy: the kernel holds {kernel}, the renderer {mine}")
    med = {k: statistics.median(o[k] for o in ours) for k in ours[0]}
    return {"ours": med, "runs": ours, "nft_alone": statistics.median(alone),
            "nft_alone_runs": alone, "script_lines": script.count("\n"),
            "script_bytes": len(script), "size": mine, "kernel": kernel, "renderer": r}  # fmt: skip


def _transaction(r: Renderer) -> tuple[str, float, float]:
    """flush, script, apply, commit: (script, compute seconds, nft seconds)."""
    t0 = time.perf_counter()
    r.flush()
    script = r.ruleset.script()
    t1 = time.perf_counter()
    if script:
        nft.apply(script)
    r.ruleset.commit()
    return script, t1 - t0, time.perf_counter() - t1


def _arrive(r: Renderer, p: PodRecord) -> tuple[str, float, float]:
    t0 = time.perf_counter()
    r.put_pod(pod_from(p.obj, p.namespace, p.name, p.ips))
    r.put_endpoint(p.interface, (p.namespace, p.name))
    events = time.perf_counter() - t0
    script, compute, load = _transaction(r)
    return script, events + compute, load


def _depart(r: Renderer, p: PodRecord) -> tuple[str, float, float]:
    t0 = time.perf_counter()
    r.remove_endpoint(p.interface)
    r.remove_pod((p.namespace, p.name))
    events = time.perf_counter() - t0
    script, compute, load = _transaction(r)
    return script, events + compute, load


def _pair(r: Renderer, kind: str, p: PodRecord) -> list[tuple[str, str, float, float]]:
    """A new pod arrives then leaves, or an existing one leaves then comes back:
    [(direction, script, compute seconds, nft seconds)] in the order applied."""
    steps = [("arrival", _arrive), ("departure", _depart)]
    if kind == "existing":
        steps.reverse()
    return [(direction, *step(r, p)) for direction, step in steps]


def measure_changes(cluster: Cluster, r: Renderer, tmp: Path,
                    profile: str | None) -> dict[str, Any]:  # fmt: skip
    rng = random.Random(SEED + 1)
    existing = rng.sample(cluster.pods[:PODS], CHANGES // 2 + 1)
    new = cluster.pods[PODS : PODS + CHANGES - CHANGES // 2]
    steps: list[tuple[str, PodRecord]] = []
    for i in range(CHANGES - CHANGES // 2):
        steps.append(("new", new[i]))
        if i < CHANGES // 2:
            steps.append(("existing", existing[i]))
    # One untimed pair first (the first transaction after a full load pays for
    # imports and caches once).
    warm = existing[-1]
    _depart(r, warm)
    _arrive(r, warm)
    got: dict[str, dict[str, list[float]]] = {
        d: {"compute": [], "load": [], "total": [], "alone": [], "lines": []}
        for d in ("arrival", "departure")
    }
    for kind, p in steps:
        scripts = []
        for direction, script, compute, load in _pair(r, kind, p):
            g = got[direction]
            g["compute"].append(compute)
            g["load"].append(load)
            g["total"].append(compute + load)
            g["lines"].append(float(script.count("\n")))
            scripts.append((direction, script))
        for direction, script in scripts:  # the peer: the same two scripts, nft alone
            got[direction]["alone"].append(nft_alone(script, tmp) if script else 0.0)
    if profile:  # the same changes again, untimed, under the profiler
        with _profiled(profile, "change.prof"):
            for kind, p in steps:
                _pair(r, kind, p)
    kernel = kernel_size()
    if kernel["rules"] != size(r)["rules"]:
        raise RuntimeError(f"policy: after the changes the kernel holds {kernel}")
    return got


def measure_sizes(cluster: Cluster) -> dict[str, Any]:
    by_pods = {}
    for n in POD_SIZES:
        if n <= PODS:
            by_pods[n] = size(build(cluster, n, POLICIES))
    by_policies = {}
    for n in POLICY_SIZES:
        if n <= POLICIES:
            by_policies[n] = size(build(cluster, PODS, n))
    return {"by_pods": by_pods, "by_policies": by_policies}


def validation_seconds(cluster: Cluster) -> float | None:
    """What the agent adds before rendering: every record validated as the API
    server would (``PolicyAgent._valid``); None when the kinds are not there."""
    try:
        from bgpd.policy.agent import validate  # noqa: PLC0415
    except ImportError:
        return None
    objs = [*cluster.namespaces.values(), *(p.obj for p in cluster.pods[:PODS]),
            *cluster.policies]  # fmt: skip
    if validate(objs[0]) is not None or validate(cluster.policies[0]) is not None:
        return None
    started = time.perf_counter()
    refused = [o for o in objs if validate(o) is not None]
    took = time.perf_counter() - started
    if refused:
        print(f"policy: {len(refused)} records refused, first {validate(refused[0])}",
              file=sys.stderr)  # fmt: skip
    return took


def inner(profile: str | None) -> dict[str, Any]:
    from bgpd.runtime import tune_gc  # noqa: PLC0415

    if not nft.available():
        raise RuntimeError("policy: nft is not installed (Debian package nftables)")
    cluster = make_cluster()
    tune_gc()  # as the agent's process runs
    with tempfile.TemporaryDirectory(prefix="bench-policy-") as folder:
        tmp = Path(folder)
        full = measure_full(cluster, tmp, profile)
        r = full.pop("renderer")
        changes = measure_changes(cluster, r, tmp, profile)
    nft.delete_table(TABLE)
    sizes = measure_sizes(cluster)
    return {
        "pods": PODS, "policies": POLICIES, "shapes": cluster.shapes, "full": full,
        "changes": changes, "sizes": sizes, "validate": validation_seconds(cluster),
    }  # fmt: skip


# -- the outer process ----------------------------------------------------------


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, -(-95 * len(ordered) // 100) - 1)]


def rows_of(doc: dict[str, Any]) -> list[Row]:
    ms = 1000.0
    full = doc["full"]
    o = full["ours"]
    alone = full["nft_alone"] * ms
    rows = [
        Row("policy", "full total (compute+load)", "ms", o["total"] * ms, PEER, alone),
        Row("policy", "full compute", "ms", o["compute"] * ms, PEER, alone),
        Row("policy", "full load (nft of ours)", "ms", o["load"] * ms, PEER, alone),
    ]
    for direction in ("arrival", "departure"):
        g = doc["changes"][direction]
        for name, pick in (("p50", statistics.median), ("p95", p95)):
            rows.append(Row("policy", f"pod {direction} {name}", "ms", pick(g["total"]) * ms,
                            PEER, pick(g["alone"]) * ms))  # fmt: skip
    for key, unit in (("by_pods", "pods"), ("by_policies", "pol")):
        sizes = doc["sizes"][key]
        if not sizes:
            continue
        smallest = min(sizes, key=int)
        for n, s in sizes.items():
            pods, policies = (n, doc["policies"]) if key == "by_pods" else (doc["pods"], n)
            rows.append(
                Row("policy", f"rules {policies} pol {pods} pods", "rules", s["rules"],
                    f"rules at {smallest} {unit}", sizes[smallest]["rules"])
            )  # fmt: skip
    return rows


def summary(doc: dict[str, Any]) -> str:
    ms = 1000.0
    full = doc["full"]
    o = full["ours"]
    lines = [
        f"policy: {doc['policies']} policies {doc['shapes']} over {doc['pods']} local pods",
        f"policy: full: events {o['events'] * ms:.0f} ms + script {o['script'] * ms:.0f} ms "
        f"= compute {o['compute'] * ms:.0f} ms; load {o['load'] * ms:.0f} ms; total "
        f"{o['total'] * ms:.0f} ms (goal < {GOAL_FULL_MS:.0f}: "
        f"{'met' if o['total'] * ms < GOAL_FULL_MS else 'MISSED'}); nft alone "
        f"{full['nft_alone'] * ms:.0f} ms; {full['script_lines']} lines, "
        f"{full['script_bytes'] / 1e6:.1f} MB",
        f"policy: table: {full['size']}; kernel: {full['kernel']}",
    ]
    for direction in ("arrival", "departure"):
        g = doc["changes"][direction]
        total = g["total"]
        lines.append(
            f"policy: pod {direction}: n={len(total)} total p50 "
            f"{statistics.median(total) * ms:.1f} p95 {p95(total) * ms:.1f} max "
            f"{max(total) * ms:.1f} ms (compute p50 {statistics.median(g['compute']) * ms:.1f}, "
            f"nft p50 {statistics.median(g['load']) * ms:.1f}; nft alone p50 "
            f"{statistics.median(g['alone']) * ms:.1f}); script lines p50 "
            f"{statistics.median(g['lines']):.0f} (goal < {GOAL_CHANGE_MS:.0f} ms: "
            f"{'met' if p95(total) * ms < GOAL_CHANGE_MS else 'MISSED'} at p95)"
        )
    for label, key in (("pods", "by_pods"), ("policies", "by_policies")):
        for n, s in doc["sizes"][key].items():
            lines.append(f"policy: size at {n} {label}: {s}")
    if doc.get("validate") is not None:
        lines.append(f"policy: validating every record (the agent's start adds it): "
                     f"{doc['validate'] * ms:.0f} ms")  # fmt: skip
    return "\n".join(lines)


def run() -> list[Row]:
    with namespace("policy") as ns:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "bench.policy", "--inner"],
            cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=1800,
        )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"policy: the measuring process failed (exit {proc.returncode}):\n"
                           f"{proc.stderr}")  # fmt: skip
    doc = json.loads(proc.stdout)
    print(summary(doc), file=sys.stderr)
    return rows_of(doc)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.policy")
    parser.add_argument(
        "--inner",
        action="store_true",
        help="measure here (in a network namespace made for it) and print JSON",
    )
    args = parser.parse_args(argv)
    if args.inner:
        doc = inner(os.environ.get("BENCH_POLICY_PROFILE") or None)
        json.dump(doc, sys.stdout)
        return 0
    from .report import emit  # noqa: PLC0415

    emit(run())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
