"""A real local cluster: node namespaces each running the node agent on one
shared state directory, pods made by the CNI plugin, and what tests and people
do with it.

::

    with Lab(nodes=3, mode="mesh", encap="direct") as lab:
        a, b = lab.pods[0], lab.pods[-1]
        assert lab.ping(a, b.ip) == 0.0
        print(lab.node_status("node1"))

``start()`` (which ``with`` calls) in order: the datastore's resources (the IP
pool of the encapsulation, the BGP configuration, in reflector mode the
reflector manifests), the network (``topology.py``), one agent per node, a wait
until every node has every session it should have Established (``mesh``: one
Mesh_ per other node; ``reflector``: node1 one Node_ per client, the clients one
Node_ to node1), the pods (CNI ADD through the plugin's launcher, run in the
node's namespace as a runtime runs it), and a wait until every node's kernel
holds a route for every block the other nodes claimed.

``close()`` (which ``with`` calls, whatever happened, KeyboardInterrupt
included) undoes it in reverse: background pingers, pods (CNI DEL), agents
(SIGTERM, then SIGKILL, each by PID), namespaces; a temporary state directory
is removed unless the lab failed (its logs are kept for the post-mortem).
Every step runs even when an earlier one failed.

Waiting is polling with a deadline (``wait_for``), never a fixed sleep.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..cni.install import install
from ..datastore.directory import DirectoryStore
from ..datastore.select import StoreConfig
from ..ipam.allocator import Ipam, announcements
from ..resources.store import key_of
from . import resources
from .agent import Agent, python_module
from .etcd import EtcdCluster
from .topology import ENCAPS, LabError, NodeNet, Topology, ip, leftovers, sh, wait_for

if TYPE_CHECKING:
    from ..datastore.base import Datastore

MODES = ("mesh", "reflector")
DATASTORES = ("directory", "etcd")
#: The lab's etcd listens on the fabric's bridge address, which every node reaches.
ETCD_ADDRESS = "198.18.1.254"
NETWORK = "k8s-pod-network"
START_TIMEOUT = 90.0
CONVERGE_TIMEOUT = 60.0
_LOSS = re.compile(r"([\d.]+)% packet loss")


@dataclass(frozen=True)
class Pod:
    name: str  # <node>-pod<n>, the Kubernetes pod name
    node: str
    ns: str
    container: str
    ip: str = ""


@dataclass
class PingResult:
    sent: int
    received: int
    loss: float  # percent
    output: str


@dataclass
class Flood:
    """A background ``pinger`` (see ``pinger.py``): ``progress()`` while it runs,
    ``stop()`` for the final count."""

    proc: subprocess.Popen[str]
    output: Path
    source: Pod
    target: str
    result: dict[str, Any] | None = None

    def _lines(self) -> list[dict[str, Any]]:
        try:
            text = self.output.read_text()
        except OSError:
            return []
        lines = []
        for line in text.splitlines():
            with contextlib.suppress(ValueError):
                lines.append(json.loads(line))
        return lines

    def progress(self) -> dict[str, Any]:
        lines = self._lines()
        return lines[-1] if lines else {"sent": 0, "received": 0}

    def stop(self, timeout: float = 30.0) -> dict[str, Any]:
        if self.result is None:
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise LabError(f"pinger {self.proc.pid} did not finish") from None
            done = [line for line in self._lines() if line.get("done")]
            if not done:
                raise LabError(f"pinger gave no result: {self.output.read_text()[-500:]!r}")
            self.result = done[-1]
        return self.result


@dataclass
class Lab:
    """One local cluster (see the module docstring)."""

    nodes: int = 3
    mode: str = "mesh"
    encap: str = "direct"
    state_dir: str | Path | None = None
    pods_per_node: int = 2
    agent_args: tuple[str, ...] = ()
    policy: bool = False  # also run a NetworkPolicy agent (bgpd policy) per node
    #: "directory" (the state directory's), or "etcd": a real etcd member in the
    #: fabric namespace, which every node reaches at ``ETCD_ADDRESS``.
    datastore: str = "directory"
    etcd_members: int = 1  # with datastore "etcd": how many members its cluster has
    start_timeout: float = START_TIMEOUT
    log: Any = None  # a callable taking one line of progress text, or None
    topology: Topology = field(init=False)
    agents: dict[str, Agent] = field(init=False, default_factory=dict)
    policy_agents: dict[str, Agent] = field(init=False, default_factory=dict)
    pods: list[Pod] = field(init=False, default_factory=list)
    floods: list[Flood] = field(init=False, default_factory=list)
    failed: bool = field(init=False, default=False)
    apply_path: str = field(init=False, default="")
    etcd: EtcdCluster | None = field(init=False, default=None)
    _own_state: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise LabError(f"mode {self.mode!r}: one of {', '.join(MODES)}")
        if self.encap not in ENCAPS:
            raise LabError(f"encap {self.encap!r}: one of {', '.join(ENCAPS)}")
        if self.mode == "reflector" and self.nodes < 2:
            raise LabError("reflector mode needs at least 2 nodes")
        if self.datastore not in DATASTORES:
            raise LabError(f"datastore {self.datastore!r}: one of {', '.join(DATASTORES)}")
        self.topology = Topology(self.nodes, self.encap)
        if self.state_dir is None:
            self.state_dir = tempfile.mkdtemp(prefix="bgpd-lab-")
            self._own_state = True
        self.state = Path(self.state_dir).resolve()

    # -- life cycle ----------------------------------------------------------------

    def __enter__(self) -> Lab:
        try:
            self.start()
        except BaseException:
            self.failed = True
            self.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is not None:
            self.failed = True
        self.close()

    def _say(self, text: str) -> None:
        if self.log is not None:
            self.log(text)

    @property
    def prefix(self) -> str:
        return self.topology.prefix

    @property
    def node_names(self) -> list[str]:
        return [net.name for net in self.topology.node_nets]

    def net(self, node: str) -> NodeNet:
        for net in self.topology.node_nets:
            if net.name == node:
                return net
        raise LabError(f"no node {node!r} in this lab")

    def start(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        (self.state / "run").mkdir(exist_ok=True)
        self._say(f"state directory {self.state}")
        self.cni_bin = self.state / "cni-bin"
        install(str(self.cni_bin))
        self._say(f"network: {self.nodes} node namespaces ({self.prefix}-node*), {self.encap}")
        nets = self.topology.build()
        if self.datastore == "etcd":
            self._say(f"etcd ({self.etcd_members} members) in {self.topology.fabric} at "
                      f"{ETCD_ADDRESS}")  # fmt: skip
            self.etcd = EtcdCluster(
                self.state / "etcd", members=self.etcd_members, host=ETCD_ADDRESS,
                netns=self.topology.fabric,
            ).start()
        self.apply(resources.to_yaml(resources.ippool(self.encap)))
        if self.mode == "reflector":
            self.apply(resources.reflector_manifests(nets[0].cidr, nets[0].name))
        else:
            self.apply(resources.to_yaml(resources.bgp_configuration(mesh=True)))
        for net in nets:
            self.agents[net.name] = Agent(net, self.state, (*self.datastore_args, *self.agent_args))
        self._say(f"starting {self.nodes} node agents (logs in {self.state / 'logs'})")
        for agent in self.agents.values():
            agent.start()
        if self.policy:
            self._say("starting a NetworkPolicy agent per node (table inet bgpd-policy)")
            for net in nets:
                self.policy_agents[net.name] = Agent(
                    net, self.state, self.datastore_args, role="policy"
                )
                self.policy_agents[net.name].start()
        self.wait_established(timeout=self.start_timeout)
        if self.pods_per_node:
            pods = f"{self.pods_per_node} pod{'s' if self.pods_per_node > 1 else ''}"
            self._say(f"creating {pods} per node through the CNI plugin")
            for net in nets:
                for n in range(1, self.pods_per_node + 1):
                    self.add_pod(net.name, n)
            self.wait_converged()
        self._say("the cluster is up")

    def close(self) -> None:
        """Undo everything (see the module docstring); LabError listing what
        could not be undone, after every step has run."""
        errors: list[str] = []
        for flood in self.floods:
            with contextlib.suppress(Exception):
                flood.stop(timeout=5)
            if flood.proc.poll() is None:
                flood.proc.kill()
                flood.proc.wait()
        self.floods.clear()
        for pod in reversed(self.pods):
            try:
                res = self.cni("DEL", pod)
                if res.returncode != 0:
                    errors.append(f"CNI DEL {pod.name}: {res.stdout.strip()} {res.stderr.strip()}")
            except Exception as exc:
                errors.append(f"CNI DEL {pod.name}: {exc}")
        self.pods.clear()
        for agent in [*self.policy_agents.values(), *reversed(list(self.agents.values()))]:
            try:
                agent.stop()
            except Exception as exc:
                errors.append(f"stop {agent.name}: {exc}")
        if self.etcd is not None:
            try:
                self.etcd.close()
            except Exception as exc:
                errors.append(f"stop etcd: {exc}")
        errors += self.topology.teardown()
        if self._own_state and not self.failed and not errors:
            shutil.rmtree(self.state, ignore_errors=True)
        if errors:
            raise LabError("lab teardown: " + "; ".join(errors))

    def leftovers(self) -> tuple[list[str], list[int]]:
        """Namespaces of this lab and agent PIDs still there (both empty after close)."""
        every = [*self.agents.values(), *self.policy_agents.values()]
        pids = [pid for agent in every for pid in agent.past_pids]
        if self.etcd is not None:
            pids += self.etcd.past_pids
        alive = []
        for pid in pids:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                continue
            alive.append(pid)
        return leftovers(self.prefix), alive

    # -- resources -----------------------------------------------------------------

    @property
    def datastore_config(self) -> StoreConfig:
        if self.etcd is None:
            return StoreConfig()
        return StoreConfig({"datastore": "etcd", "endpoints": self.etcd.endpoints_text})

    @property
    def datastore_args(self) -> tuple[str, ...]:
        """What selects the lab's datastore on a command line (empty: the default)."""
        if self.etcd is None:
            return ()
        return ("--datastore", "etcd", "--etcd-endpoints", self.etcd.endpoints_text)

    @property
    def ctl_netns(self) -> str | None:
        """Where ``bgpctl`` must run to reach the datastore (etcd: the fabric)."""
        return None if self.etcd is None else self.topology.fabric

    def apply(self, text: str) -> None:
        """Apply Calico resources (YAML, one or more documents)."""
        self.apply_path = resources.apply(
            str(self.state), text, datastore=self.datastore_args, netns=self.ctl_netns
        )

    def store(self) -> Datastore:
        if self.etcd is not None:
            return self.etcd.store()
        return DirectoryStore(str(self.state / "store"))

    def resource(self, kind: str, name: str) -> dict[str, Any] | None:
        """A resource as the datastore holds it (``kind`` as in YAML: "Node")."""
        store = self.store()
        try:
            record = store.get(key_of(kind, name))
        finally:
            store.close()
        return None if record is None else record.value

    def blocks(self) -> dict[str, list[str]]:
        """Every node's confirmed blocks, from the datastore."""
        store = self.store()
        try:
            return {name: sorted(announcements(store, name)[0]) for name in self.node_names}
        finally:
            store.close()

    def claim_block(self, node: str, pool: str, cidr: str) -> str:
        """A new pool ``pool`` (``cidr``, this lab's encapsulation) and one address
        from it allocated on ``node`` through Calico's IPAM, as a pod would get
        one: the CIDR of the block ``node`` claimed for it."""
        self.apply(resources.to_yaml(resources.ippool(self.encap, cidr=cidr, name=pool)))
        store = self.store()
        try:
            got = Ipam(store, node).auto_assign(f"{pool}-probe", {}, num4=1, num6=0,
                                                pools4=[pool])  # fmt: skip
        finally:
            store.close()
        block = ipaddress.ip_network(f"{got[0].address}/{resources.BLOCK_SIZE}", strict=False)
        return str(block)

    def bgpctl(self, *args: str, node: str | None = None) -> subprocess.CompletedProcess[str]:
        return resources.bgpctl(
            str(self.state), *args, node=node, datastore=self.datastore_args, netns=self.ctl_netns
        )

    # -- agents --------------------------------------------------------------------

    def agent(self, node: str) -> Agent:
        try:
            return self.agents[node]
        except KeyError:
            raise LabError(f"no node {node!r} in this lab") from None

    def kill(self, node: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to ``node``'s agent; for SIGKILL and SIGTERM, wait until it is gone."""
        agent = self.agent(node)
        agent.signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            agent.wait_exit(30)

    def restart(self, node: str) -> None:
        """Start ``node``'s agent again (stopping it first, by SIGTERM, if it runs)."""
        agent = self.agent(node)
        agent.stop()
        agent.start()

    def status(self, node: str) -> dict[str, Any]:
        """The agent's GET /status."""
        result: dict[str, Any] = self.agent(node).get_json("/status")
        return result

    def api_routes(self, node: str) -> dict[str, Any]:
        """The agent's GET /routes."""
        result: dict[str, Any] = self.agent(node).get_json("/routes")
        return result

    def node_status(self, node: str) -> str:
        """``bgpctl node status`` of ``node``, as calicoctl prints it."""
        res = self.bgpctl("node", "status", node=node)
        if res.returncode != 0:
            raise LabError(f"bgpctl node status ({node}): {res.stderr.strip()}")
        return res.stdout

    def expected_peers(self, node: str) -> set[str]:
        """The peer addresses ``node`` should have Established in the lab's mode."""
        nets = self.topology.node_nets
        others = {net.address for net in nets if net.name != node}
        if self.mode == "mesh":
            return others
        reflector = nets[0]
        return others if node == reflector.name else {reflector.address}

    def sessions(self, node: str) -> dict[str, str] | None:
        """Peer address -> BGP state, from the agent's status (None while it does
        not answer)."""
        try:
            peers = self.status(node).get("peers", [])
        except (OSError, LabError, ValueError):
            return None
        return {p["address"]: p["bgp_state"] for p in peers}

    def established(self, node: str) -> bool:
        sessions = self.sessions(node)
        if sessions is None:
            return False
        want = self.expected_peers(node)
        return set(sessions) == want and all(s == "Established" for s in sessions.values())

    def wait_established(self, nodes: list[str] | None = None, timeout: float = 60.0) -> None:
        """Until every node (or those named) has exactly its expected sessions, all
        Established; an agent that exits meanwhile fails at once, with its log."""
        names = nodes or self.node_names

        def check() -> bool:
            for name in names:
                agent = self.agent(name)
                if not agent.running():
                    raise LabError(
                        f"{name}: the agent exited ({agent.proc and agent.proc.returncode}):\n"
                        f"{agent.log_tail()}"
                    )
            return all(self.established(name) for name in names)

        try:
            wait_for(check, timeout, "every BGP session Established")
        except LabError as exc:
            detail = {name: self.sessions(name) for name in names}
            raise LabError(f"{exc}: sessions now {detail}") from None

    # -- kernel routes ---------------------------------------------------------------

    def routes(self, node: str, *args: str) -> list[str]:
        """``ip route show ARGS`` in the node's namespace, one route per line,
        spaces normalised."""
        out = ip(self.net(node).ns, "route", "show", *args)
        return [" ".join(line.split()) for line in out.splitlines() if line.strip()]

    def route(self, node: str, prefix: str) -> str:
        """The node's route for exactly ``prefix`` ('' when none)."""
        return " ".join(self.routes(node, "exact", prefix))

    def missing_routes(self) -> list[str]:
        """What keeps the cluster from being converged: for every node, each other
        node's block without a route of ours (proto bird) in its kernel."""
        blocks = self.blocks()
        missing = []
        for node in self.node_names:
            routed = set()
            for line in self.routes(node, "proto", "bird"):
                words = line.split()
                routed.add(words[1] if words[0] in ("blackhole", "unreachable") else words[0])
            for owner, cidrs in blocks.items():
                if owner != node:
                    missing += [f"{node}: {c} (of {owner})" for c in cidrs if c not in routed]
        return missing

    def wait_converged(self, timeout: float = CONVERGE_TIMEOUT) -> None:
        """Until every node's kernel routes every other node's blocks."""
        try:
            wait_for(lambda: not self.missing_routes(), timeout, "every block routed everywhere")
        except LabError as exc:
            raise LabError(f"{exc}; missing: {self.missing_routes()}") from None

    # -- pods ------------------------------------------------------------------------

    def cni_config(self, node: str) -> dict[str, Any]:
        return {
            "cniVersion": "1.0.0", "name": NETWORK, "type": "bgpd-cni", "nodename": node,
            "state_dir": str(self.state), "mtu": 0,
            "ipam": {"type": "bgpd-ipam", "assign_ipv4": "true", "assign_ipv6": "false"},
            **self.datastore_config.cni(),
        }  # fmt: skip

    def cni(self, command: str, pod: Pod) -> subprocess.CompletedProcess[str]:
        """Run the CNI plugin for ``pod`` as a runtime does, in its node's namespace."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command, "CNI_CONTAINERID": pod.container,
            "CNI_NETNS": f"/var/run/netns/{pod.ns}", "CNI_IFNAME": "eth0",
            "CNI_PATH": str(self.cni_bin),
            "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod.name}"
                        f";K8S_POD_INFRA_CONTAINER_ID={pod.container}",
        }  # fmt: skip
        return subprocess.run(
            ["ip", "netns", "exec", self.net(pod.node).ns, str(self.cni_bin / "bgpd-cni")],
            input=json.dumps(self.cni_config(pod.node)), env=env, capture_output=True,
            text=True, timeout=60, check=False,
        )  # fmt: skip

    def add_pod(self, node: str, n: int | None = None) -> Pod:
        """A pod on ``node`` (its namespace, then CNI ADD); its address is the result's."""
        net = self.net(node)
        if n is None:
            n = 1 + sum(1 for p in self.pods if p.node == node)
        ns = self.topology.pod_namespace(net, n)
        pod = Pod(f"{node}-pod{n}", node, ns, f"{self.prefix}-{node}-pod{n}")
        res = self.cni("ADD", pod)
        if res.returncode != 0:
            raise LabError(f"CNI ADD {pod.name}: {res.stdout.strip()} {res.stderr.strip()}")
        address = json.loads(res.stdout)["ips"][0]["address"].split("/")[0]
        pod = Pod(pod.name, node, ns, pod.container, address)
        self.pods.append(pod)
        return pod

    def pods_on(self, node: str) -> list[Pod]:
        return [p for p in self.pods if p.node == node]

    # -- traffic ---------------------------------------------------------------------

    def ping_result(
        self, pod: Pod, target: str, count: int = 3, interval: float = 0.2, timeout: float = 2
    ) -> PingResult:
        """``ping`` from inside ``pod``; ``timeout`` seconds to wait for each reply."""
        res = sh(
            "ip", "netns", "exec", pod.ns, "ping", "-n", "-q", "-c", str(count),
            "-i", f"{interval:g}", "-W", f"{timeout:g}", target,
            check=False, timeout=count * (interval + timeout) + 30,
        )  # fmt: skip
        match = _LOSS.search(res.stdout)
        sent = re.search(r"(\d+) packets transmitted, (\d+) received", res.stdout)
        if match is None or sent is None:
            raise LabError(f"ping {target} from {pod.name}: {res.stdout} {res.stderr}")
        return PingResult(int(sent.group(1)), int(sent.group(2)), float(match.group(1)),
                          res.stdout)  # fmt: skip

    def ping(
        self, pod: Pod, target: str, count: int = 3, flood: bool = False, timeout: float = 2
    ) -> float:
        """Packet loss in percent of ``count`` pings from ``pod`` to ``target``
        (``flood``: one every 10 ms instead of every 200 ms)."""
        interval = 0.01 if flood else 0.2
        return self.ping_result(pod, target, count, interval, timeout).loss

    def flood(self, pod: Pod, target: str, interval: float = 0.002) -> Flood:
        """A pinger from ``pod`` to ``target`` in the background until ``stop()``."""
        output = self.state / "logs" / f"flood-{pod.name}-{len(self.floods)}.jsonl"
        output.parent.mkdir(parents=True, exist_ok=True)
        with open(output, "w") as out:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", pod.ns,
                 *python_module("bgpd.lab.pinger", target, "--interval", f"{interval:g}")],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, text=True,
                start_new_session=True,
            )  # fmt: skip
        flood = Flood(proc, output, pod, target)
        self.floods.append(flood)
        return flood

    def wait_flowing(self, flood: Flood, more: int, timeout: float = 30.0) -> None:
        """Until ``flood`` has had ``more`` replies beyond what it had now."""
        base = int(flood.progress()["received"])

        def flowing() -> bool:
            if flood.proc.poll() is not None:
                raise LabError(f"the pinger exited: {flood.output.read_text()[-500:]!r}")
            return int(flood.progress()["received"]) >= base + more

        wait_for(flowing, timeout, f"{more} more replies to {flood.source.name}'s pings")


def wait_gone(pids: list[int], timeout: float = 10.0) -> None:
    def gone() -> bool:
        for pid in pids:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                continue
            return False
        return True

    wait_for(gone, timeout, f"processes {pids} to exit")


__all__ = ["MODES", "Flood", "Lab", "LabError", "PingResult", "Pod", "wait_for", "wait_gone"]
