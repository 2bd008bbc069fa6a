"""The live policy matrix on one lab node (POLICY.md §2.4): a node network namespace,
nine pods x/a .. z/c made by our CNI plugin (each in its own namespace, behind a
``cali…`` veth with a /32), a host outside the cluster (``ext``, 192.0.2.10,
routed by the node), the Namespace, Pod and NetworkPolicy resources written
through ``bgpd.resources`` into the node's datastore, the agent under test
(``python -m bgpd policy``) in the node namespace, and a prober in every pod.

Expectations come from ``tests.policy.reference`` (never from ``bgpd.policy``).
``check()`` probes, all at once and for every (protocol, port):

* every ordered pair of pods (the diagonal is undefined and left out);
* the node -> every pod (always allowed, §1.4);
* the external host to and from every pod (an ``ipBlock``, or a missing
  ``from``/``to``, may match it; a selector never does).

It probes the cells that disagree once more, as the e2e suite retries, and fails
with cyclonus-style truth tables (``.`` allowed, ``X`` blocked) of what was
expected and observed, the status file, the agent's log and the nft table.  A
cell ever seen allowed while the reference blocks it fails even if the retry was
blocked: after the sync barrier, a leak is a hole, not a flake.

Sync barrier (``sync()``): the datastore's revision after a write, then wait until
``<state>/run/policy-<node>.json`` says ``"revision" >= it``.

Everything started here is stopped by its PID, and every namespace is deleted, in
``close()``; ``PolicyLab`` is a context manager so that a failed setup cleans up
too.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from bgpd.datastore.directory import DirectoryStore
from tests.cni.harness import CniNode
from tests.cni.harness import ip as node_ip
from tests.policy.reference import Model, Pod

REPO = Path(__file__).resolve().parents[2]
NAMESPACES = ("x", "y", "z")
POD_NAMES = ("a", "b", "c")
POOL = "10.77.0.0/16"
NODE = "node"  # the row of the node's own probes
#: A host outside the cluster, behind the node (its own namespace, routed by the node).
EXT = "ext"
EXT_IP = "192.0.2.10"
EXT_GATEWAY = "192.0.2.1"
PORTS = (80, 81)
IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.53"
#: The policies' home in the datastore (bgpd.resources.store).
POLICY_PREFIX = "resources/networkpolicies/"
#: z/c calls its ports the other way round (serve-80-tcp is its port 81, ...), so
#: that a named port resolved against the wrong pod, or read off the name, shows.
SWAPPED_NAMES = "z/c"
PROBE_TIMEOUT = 0.6
RETRY_TIMEOUT = 1.0
SYNC_TIMEOUT = 15.0
#: Source ports of the probers of pods made at run time, 2,000 each in turn: a
#: pod may get the address of one deleted before it, and must not reuse its
#: conntrack entries (the first nine pods use 20000-60000: their addresses stay).
RUNTIME_PORTS = (4000, 20000)

Cell = tuple[str, str, str, int]  # (from, to, protocol, port); from may be NODE


def container_ports(key: str, sctp: bool) -> tuple[tuple[str, str, int], ...]:
    protocols = ("TCP", "UDP", "SCTP") if sctp else ("TCP", "UDP")
    out = []
    for port in PORTS:
        named = (161 - port) if key == SWAPPED_NAMES else port  # 80 <-> 81
        out += [(f"serve-{named}-{proto.lower()}", proto, port) for proto in protocols]
    return tuple(out)


def namespace_doc(name: str, labels: Mapping[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": dict(labels)}}  # fmt: skip


def pod_doc(pod: Pod, node: str) -> dict[str, Any]:
    containers = [
        {"name": f"cont-{port}-{proto.lower()}", "image": IMAGE,
         "ports": [{"name": name, "containerPort": port, "protocol": proto}]}
        for name, proto, port in pod.ports
    ]  # fmt: skip
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod.name, "namespace": pod.namespace, "labels": dict(pod.labels)},
        "spec": {"nodeName": node, "containers": containers},
    }  # fmt: skip


def policy_doc(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    """A NetworkPolicy as a user writes it (``podSelector`` defaults to ``{}``)."""
    spec.setdefault("podSelector", {})
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}  # fmt: skip


def apply(store: DirectoryStore, doc: dict[str, Any]) -> None:
    """Write a resource as ``bgpctl apply`` does (validated by bgpd.resources)."""
    from bgpd.resources import store as resources  # noqa: PLC0415
    from bgpd.resources.models import load_resource  # noqa: PLC0415

    resources.apply(store, load_resource(doc))


def remove(store: DirectoryStore, kind: str, namespace: str, name: str) -> None:
    """Delete a namespaced resource through bgpd.resources."""
    from bgpd.resources import store as resources  # noqa: PLC0415

    resources.delete(store, kind, name, namespace=namespace)


# -- probers ------------------------------------------------------------------------------------


class Prober:
    """``tests.policy.prober`` in a namespace, spoken to in JSON lines."""

    def __init__(self, netns: str, log: Path, serve: bool = True,
                 source_ports: tuple[int, int] | None = None) -> None:  # fmt: skip
        self.netns = netns
        self.log = log.open("ab")
        args = [] if serve else ["--no-serve"]
        if source_ports is not None:
            args += ["--source-ports", f"{source_ports[0]}:{source_ports[1]}"]
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-m", "tests.policy.prober", *args],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        self._ids = iter(range(1, 1 << 30))
        threading.Thread(target=self._read, daemon=True).start()
        self.sctp = False

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put("")

    def _line(self, timeout: float) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"prober in {self.netns}: no answer in {timeout} s") from None
        if not line:
            raise RuntimeError(f"prober in {self.netns} exited ({self.proc.poll()})")
        value: dict[str, Any] = json.loads(line)
        return value

    def ready(self) -> None:
        self.sctp = bool(self._line(20)["sctp"])

    def send(self, targets: Sequence[tuple[str, str, int]], timeout: float) -> None:
        assert self.proc.stdin is not None
        request = {"id": next(self._ids), "probe": [list(t) for t in targets], "timeout": timeout}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()

    def receive(self, timeout: float) -> list[bool]:
        return [bool(r) for r in self._line(timeout + 10)["results"]]

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(3)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # by PID (Popen)
            self.proc.wait(5)
        self.log.close()


# -- truth tables -------------------------------------------------------------------------------


def truth_table(title: str, rows: Sequence[str], columns: Sequence[str],
                cell: Any) -> str:  # fmt: skip
    """A from x to table; ``cell(row, column)`` gives one character."""
    width = max(len(c) for c in [*rows, *columns])
    lines = [title, " " * (width + 1) + " ".join(c.ljust(width) for c in columns)]
    for r in rows:
        lines.append(r.ljust(width + 1) + " ".join(cell(r, c).ljust(width) for c in columns))
    return "\n".join(lines)


def _mark(value: bool | None) -> str:
    return "?" if value is None else ("." if value else "X")


def report(cells: Iterable[Cell], expected: Mapping[Cell, bool], observed: Mapping[Cell, bool],
           first: Mapping[Cell, bool], bad: set[Cell] | None = None) -> str:  # fmt: skip
    """Expected, observed and comparison tables for every (protocol, port) with a
    wrong cell, cyclonus style.  ``bad``: the wrong cells, when not every
    difference is wrong."""
    cells = list(cells)
    if bad is None:
        bad = {c for c in cells if observed[c] != expected[c] or (first[c] and not expected[c])}
    out = []
    for proto, port in sorted({(c[2], c[3]) for c in bad}):
        here = [c for c in cells if (c[2], c[3]) == (proto, port)]
        rows = list(dict.fromkeys(c[0] for c in here))
        columns = list(dict.fromkeys(c[1] for c in here))
        rows.sort(key=lambda r: (r != NODE, r != EXT, r))
        columns.sort(key=lambda c: (c == EXT, c))

        def get(table: Mapping[Cell, bool], r: str, c: str,
                proto: str = proto, port: int = port) -> str:  # fmt: skip
            return "-" if r == c else _mark(table.get((r, c, proto, port)))

        def compare(r: str, c: str, proto: str = proto, port: int = port) -> str:
            key = (r, c, proto, port)
            if r == c or key not in expected:
                return "-"
            return "X" if key in bad else "."

        out += [
            f"== {proto}/{port}: {sum(1 for c in here if c in bad)} wrong "
            "(rows: from, columns: to; . allowed, X blocked, - diagonal, ? not probed here)",
            truth_table("expected:", rows, columns, lambda r, c: get(expected, r, c)),
            truth_table("observed:", rows, columns, lambda r, c: get(observed, r, c)),
            truth_table("comparison (. as expected, X wrong):", rows, columns, compare),
        ]
        leaks = sorted(c for c in here if first[c] and not expected[c] and not observed[c])
        if leaks:
            out.append("allowed on the first pass only (a leak after the barrier): "
                       + ", ".join(f"{a}->{b}" for a, b, _, _ in leaks))  # fmt: skip
    return "\n\n".join(out)


# -- the lab --------------------------------------------------------------------------------------


class PolicyLab:
    """One node, nine pods, their resources, their probers and the agent."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.node = CniNode(tmp, name="pol")
        self.name = self.node.name
        self.store = self.node.store
        self.state = self.node.state
        self.status_path = self.state / "run" / f"policy-{self.name}.json"
        self.agent: subprocess.Popen[bytes] | None = None
        self.agent_log = tmp / "agent.log"
        self.probers: dict[str, Prober] = {}
        self.namespaces: dict[str, dict[str, str]] = {}
        self.pods: dict[str, Pod] = {}
        #: The policies in force, as written (the reference's input).
        self.policies: dict[tuple[str, str], dict[str, Any]] = {}
        self.sctp = False
        #: Pods given an address by host-local IPAM: their IPAM section.
        self.ipam: dict[str, dict[str, Any]] = {}
        self._windows = itertools.count()
        self.base_namespaces: dict[str, dict[str, str]] = {}
        self.base_pods: dict[str, Pod] = {}

    def __enter__(self) -> PolicyLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- setup ------------------------------------------------------------------------------

    def start(self) -> None:
        self.node.pool("pods", POOL)
        self.start_agent()
        for ns in NAMESPACES:
            self.set_namespace_labels(ns, {"ns": ns})
        made = [(ns, name, self.add_pod_netns(ns, name)) for ns in NAMESPACES for name in POD_NAMES]
        self.add_external_host()
        self.probers[NODE] = Prober(self.node.ns, self.tmp / "prober-node.log", serve=False)
        for prober in self.probers.values():
            prober.ready()
        self.sctp = self.probers[NODE].sctp
        for ns, name, address in made:
            key = f"{ns}/{name}"
            pod = Pod(ns, name, {"pod": name}, (address,), container_ports(key, self.sctp))
            self.pods[key] = pod
            apply(self.store, pod_doc(pod, self.name))
        self.base_namespaces = {k: dict(v) for k, v in self.namespaces.items()}
        self.base_pods = dict(self.pods)
        self.sync()

    def add_pod(self, ns: str, name: str, labels: Mapping[str, str] | None = None,
                address: str | None = None) -> Pod:  # fmt: skip
        """A pod made at run time as a kubelet makes one: the Pod resource first,
        then the CNI ADD; then its prober.  ``address``: host-local IPAM gives the
        pod that one address (to reuse a deleted pod's)."""
        key = f"{ns}/{name}"
        pod = Pod(ns, name, dict(labels or {"pod": name}), (), container_ports(key, self.sctp))
        apply(self.store, pod_doc(pod, self.name))
        if address is not None:
            self.ipam[key] = {
                "type": "host-local", "dataDir": str(self.tmp / "host-local"),
                "ranges": [[{"subnet": str(ipaddress.ip_network(f"{address}/24", strict=False)),
                             "rangeStart": address,
                             "rangeEnd": address}]],
            }  # fmt: skip
        address = self.add_pod_netns(ns, name)
        self.probers[key].ready()
        self.pods[key] = pod = replace(pod, ips=(address,))
        return pod

    def remove_pod(self, key: str) -> None:
        """CNI DEL, the Pod resource deleted, its prober stopped, its namespace gone."""
        ns, name = key.split("/")
        prober = self.probers.pop(key)
        prober.stop()
        res = self.node.cni("DEL", f"ctr-{ns}-{name}", prober.netns, config=self.cni_config(key),
                            args=self.cni_args(key))
        if not res.ok:
            raise RuntimeError(f"CNI DEL {key}: {res}")
        subprocess.run(["ip", "netns", "del", prober.netns], capture_output=True, check=False)
        remove(self.store, "Pod", ns, name)
        del self.pods[key]
        self.ipam.pop(key, None)

    def cni_args(self, key: str) -> str:
        ns, name = key.split("/")
        args = f"K8S_POD_NAMESPACE={ns};K8S_POD_NAME={name}"
        return f"IgnoreUnknown=1;{args}" if key in self.ipam else args

    def cni_config(self, key: str) -> dict[str, Any]:
        ipam = self.ipam.get(key)
        return self.node.config() if ipam is None else self.node.config(ipam=ipam)

    def add_pod_netns(self, ns: str, name: str) -> str:
        """A pod's namespace and attachment by bgpd-cni, and its prober; the address."""
        netns = self.node.pod_netns(f"{ns}-{name}")
        res = self.node.cni("ADD", f"ctr-{ns}-{name}", netns, args=self.cni_args(f"{ns}/{name}"),
                            config=self.cni_config(f"{ns}/{name}"))
        if not res.ok or res.json is None:
            raise RuntimeError(f"CNI ADD {ns}/{name}: {res}")
        address = str(res.json["ips"][0]["address"]).split("/")[0]
        record = next(
            (r.value for r in self.store.list(f"endpoints/{self.name}/")
             if r.value.get("namespace") == ns and r.value.get("pod") == name), None,
        )  # fmt: skip
        if record is None or record.get("ips") != [f"{address}/32"]:
            raise RuntimeError(f"endpoint record of {ns}/{name}: {record}")
        window = None
        if self.base_pods:  # a pod made at run time: its own source ports
            first = RUNTIME_PORTS[0] + next(self._windows) % 8 * 2000
            window = (first, first + 2000)
        self.probers[f"{ns}/{name}"] = Prober(netns, self.tmp / f"prober-{ns}-{name}.log",
                                              source_ports=window)  # fmt: skip
        return address

    def add_external_host(self) -> None:
        """``ext``: a host outside the cluster (192.0.2.10), reached through the node."""
        netns = f"cni-ext-{self.node.tag}"
        subprocess.run(["ip", "netns", "add", netns], check=True)
        self.node.pods.append(netns)  # deleted with the node
        node_ip(netns, "link", "set", "lo", "up")
        self.node.ip("link", "add", "ext0", "type", "veth", "peer", "name", "eth0", "netns", netns)
        self.node.ip("addr", "add", f"{EXT_GATEWAY}/24", "dev", "ext0")
        self.node.ip("link", "set", "ext0", "up")
        node_ip(netns, "addr", "add", f"{EXT_IP}/24", "dev", "eth0")
        node_ip(netns, "link", "set", "eth0", "up")
        node_ip(netns, "route", "add", "default", "via", EXT_GATEWAY)
        self.probers[EXT] = Prober(netns, self.tmp / "prober-ext.log")

    def start_agent(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.status_path.unlink()  # a stale one would pass the barrier
        log = self.agent_log.open("ab")
        try:
            self.agent = subprocess.Popen(
                ["ip", "netns", "exec", self.node.ns, sys.executable, "-m", "bgpd", "policy",
                 "--state-dir", str(self.state), "--node-name", self.name],
                cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        finally:
            log.close()

    def pause_agent(self) -> None:
        """SIGSTOP the agent (by PID): what it has done stays, nothing new is done."""
        assert self.agent is not None
        self.agent.send_signal(signal.SIGSTOP)

    def resume_agent(self) -> None:
        assert self.agent is not None
        self.agent.send_signal(signal.SIGCONT)

    def stop_agent(self, kill: bool = False) -> None:
        """SIGTERM (or SIGKILL) the agent, by PID."""
        agent, self.agent = self.agent, None
        if agent is None:
            return
        agent.send_signal(signal.SIGCONT)  # in case it was paused
        if kill:
            agent.kill()
        else:
            agent.terminate()
        try:
            agent.wait(10)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait(5)

    def close(self) -> None:
        try:
            self.stop_agent()
        finally:
            for prober in self.probers.values():
                with contextlib.suppress(Exception):
                    prober.stop()
            self.node.teardown()

    # -- resources --------------------------------------------------------------------------

    def set_namespace_labels(self, ns: str, labels: Mapping[str, str]) -> None:
        apply(self.store, namespace_doc(ns, labels))
        self.namespaces[ns] = dict(labels)

    def set_pod_labels(self, key: str, labels: Mapping[str, str]) -> None:
        pod = replace(self.pods[key], labels=dict(labels))
        apply(self.store, pod_doc(pod, self.name))
        self.pods[key] = pod

    def apply_policy(self, doc: dict[str, Any]) -> None:
        apply(self.store, doc)
        meta = doc["metadata"]
        self.policies[(meta["namespace"], meta["name"])] = doc

    def delete_policy(self, ns: str, name: str) -> None:
        remove(self.store, "NetworkPolicy", ns, name)
        del self.policies[(ns, name)]

    def reset(self) -> None:
        """Back to the start: the agent running, no policies, the first pods and
        labels; then the barrier."""
        if self.agent is None or self.agent.poll() is not None:
            self.stop_agent()
            self.start_agent()
        for key in [k for k in self.pods if k not in self.base_pods]:
            self.remove_pod(key)
        for key in self.store.keys(POLICY_PREFIX):
            self.store.delete(key)
        self.policies.clear()
        for ns, labels in self.base_namespaces.items():
            if self.namespaces[ns] != labels:
                self.set_namespace_labels(ns, labels)
        for key, pod in self.base_pods.items():
            if self.pods[key] != pod:
                self.set_pod_labels(key, pod.labels)
        self.sync()

    # -- the barrier ------------------------------------------------------------------------

    def status(self) -> dict[str, Any] | None:
        try:
            value: dict[str, Any] = json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return None
        return value

    def sync(self, timeout: float = SYNC_TIMEOUT) -> dict[str, Any]:
        """Wait until the agent has applied everything written so far."""
        revision = self.store.revision()
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if status is not None and int(status.get("revision", -1)) >= revision:
                return status
            if self.agent is None or self.agent.poll() is not None:
                raise AssertionError(f"the agent is not running\n{self.diagnostics()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the agent did not reach revision {revision} in "
                                     f"{timeout} s\n{self.diagnostics()}")  # fmt: skip
            time.sleep(0.01)

    def diagnostics(self) -> str:
        nft = subprocess.run(
            ["ip", "netns", "exec", self.node.ns, "nft", "list", "table", "inet", "bgpd-policy"],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
        try:
            log = self.agent_log.read_text(errors="replace")[-4000:]
        except OSError:
            log = "(none)"
        pods = ", ".join(f"{k}={p.ip}" for k, p in sorted(self.pods.items()))
        return (f"pods: {pods}\nstatus: {json.dumps(self.status())}\n"
                f"agent log (tail):\n{log}\nnft list table inet bgpd-policy "
                f"(rc {nft.returncode}):\n{nft.stdout}{nft.stderr}")  # fmt: skip

    # -- probing ----------------------------------------------------------------------------

    def model(self) -> Model:
        return Model(self.namespaces, self.pods.values(), self.policies.values())

    def combos(self, protocols: Sequence[str] | None = None) -> list[tuple[str, int]]:
        protocols = protocols or (("TCP", "UDP", "SCTP") if self.sctp else ("TCP", "UDP"))
        return [(proto, port) for proto in protocols for port in PORTS]

    def cells(self, protocols: Sequence[str] | None = None) -> list[Cell]:
        """Every ordered pair of pods, the node to every pod, the external host to
        and from every pod; for each (protocol, port)."""
        combos = self.combos(protocols)
        keys = sorted(self.pods)
        pairs = [(s, d) for s in [NODE, EXT, *keys] for d in [*keys, EXT]
                 if s != d and not (s == NODE and d == EXT)]  # fmt: skip
        return [(s, d, proto, port) for s, d in pairs for proto, port in combos]

    def address(self, key: str) -> str:
        if key == EXT:
            return EXT_IP
        address = self.pods[key].ip
        assert address is not None
        return address

    def endpoint(self, key: str) -> Pod | str:
        """The reference's view: a pod, or the external host's address."""
        return EXT_IP if key == EXT else self.pods[key]

    def probe(self, cells: Sequence[Cell], timeout: float) -> dict[Cell, bool]:
        """Every cell at once: each source's prober gets its list in one request."""
        by_source: dict[str, list[Cell]] = {}
        for cell in cells:
            by_source.setdefault(cell[0], []).append(cell)
        for src, mine in by_source.items():
            self.probers[src].send([(self.address(d), p, n) for _, d, p, n in mine], timeout)
        out: dict[Cell, bool] = {}
        for src, mine in by_source.items():
            out.update(zip(mine, self.probers[src].receive(timeout), strict=True))
        return out

    def expected(self, cells: Iterable[Cell], model: Model | None = None) -> dict[Cell, bool]:
        model = model or self.model()
        out = {}
        for s, d, p, n in cells:
            ok = s == NODE or model.allowed(self.endpoint(s), self.endpoint(d), p, n)
            out[(s, d, p, n)] = ok
        return out

    def check(self, protocols: Sequence[str] | None = None, model: Model | None = None) -> None:
        """Probe the whole tensor and compare it with the reference (one retry pass
        for the cells that disagree)."""
        cells = self.cells(protocols)
        expected = self.expected(cells, model)
        first = self.probe(cells, PROBE_TIMEOUT)
        observed = dict(first)
        wrong = [c for c in cells if observed[c] != expected[c]]
        if wrong:
            observed.update(self.probe(wrong, RETRY_TIMEOUT))
        if any(observed[c] != expected[c] or (first[c] and not expected[c]) for c in cells):
            policies = json.dumps(list(self.policies.values()), indent=None)
            raise AssertionError(
                f"reachability differs from the reference\n\n"
                f"{report(cells, expected, observed, first)}\n\n"
                f"policies: {policies}\n{self.diagnostics()}"
            )


@contextlib.contextmanager
def lab(tmp: Path) -> Iterator[PolicyLab]:
    with PolicyLab(tmp) as made:
        made.start()
        yield made

