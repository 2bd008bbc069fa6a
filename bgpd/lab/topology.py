"""The lab's network: one namespace per node, a fabric namespace joining them,
one namespace per pod, all on this machine.

::

                      fabric namespace  <prefix>-fabric
         +------------------------------------------------------+
         |  br1 198.18.1.254/24          br2 198.18.2.254/24    |  (br2: CrossSubnet only;
         |   |p1      |p3                 |p2                   |   the fabric then routes
         +---+--------+-------------------+---------------------+   between the two)
             |eth0    |eth0               |eth0
         <prefix>-node1  <prefix>-node3  <prefix>-node2
         198.18.1.1      198.18.1.3      198.18.2.2

- **Flat** (direct and VXLAN encapsulation): every node on one bridge,
  ``198.18.1.<n>/24``.  The fabric does not forward, so a packet a node sends to
  its default route (the bridge's address) goes nowhere: pods reach each other
  only through the routes the speakers program.
- **CrossSubnet**: odd nodes on ``198.18.1.0/24`` (``br1``), even nodes on
  ``198.18.2.0/24`` (``br2``); the fabric forwards between the two subnets and
  nothing else (it has no route to any pod).

Every node namespace has ``lo`` up, ``eth0`` (the only other interface, so
Calico's first-found autodetection picks its address), a default route via its
subnet's bridge address (proxy ARP answers pods for 169.254.1.1 only when the
node has a route to it, as a real node's default route gives), and
IPv4 forwarding on.

Names.  A lab's namespaces all start with its prefix, ``bgpdlab<pid>x<n>``
(the creating process's PID and a counter), so concurrent labs and test runs
never clash, and :func:`sweep_stale` can recognise what a dead lab left.
Interface names live inside those namespaces (``eth0``, ``br1``, ``p<n>``), so
they are short and never clash either.

Every namespace is recorded the moment it exists; :meth:`Topology.teardown`
deletes them all (which deletes their veths), in reverse order, ignoring what
is already gone.  Processes are not this module's business (``cluster.py``
ends them by PID before the namespaces go).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..datastore.local import pid_alive

#: Encapsulations a lab can run (the IP pool's mode, CALICO.md §2.4).
ENCAPS = ("direct", "vxlan", "crosssubnet")
MAX_NODES = 120
_counter = itertools.count(1)
_PREFIX_RE = re.compile(r"^bgpdlab(\d+)x\d+-")


class LabError(Exception):
    """Something the lab could not set up or check (with what was run)."""


def sh(*cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``; raise LabError with its stderr when it fails and ``check``."""
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{' '.join(cmd)}: no answer within {timeout} s") from exc
    if check and res.returncode != 0:
        raise LabError(f"{' '.join(cmd)}: {res.stderr.strip() or res.stdout.strip()}")
    return res


def ip(ns: str, *args: str, check: bool = True) -> str:
    """``ip -n <ns> ARGS``; its standard output."""
    return sh("ip", "-n", ns, *args, check=check).stdout


def sysctl(ns: str, key: str, value: str) -> None:
    sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"{key}={value}")


def wait_for(
    predicate: Callable[[], object], timeout: float, what: str, step: float = 0.05
) -> object:
    """Poll ``predicate`` until it returns something true (returned), or raise
    LabError naming ``what`` once ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise LabError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(step)


def new_prefix() -> str:
    """A namespace-name prefix no other lab on this machine uses."""
    return f"bgpdlab{os.getpid()}x{next(_counter)}"


def netns_names() -> list[str]:
    out = sh("ip", "netns", "list").stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def leftovers(prefix: str) -> list[str]:
    """Namespaces whose names start with ``prefix-`` (none after a clean teardown)."""
    return [name for name in netns_names() if name.startswith(f"{prefix}-")]


def netns_pids(ns: str) -> list[int]:
    """PIDs of the processes running in namespace ``ns``."""
    res = sh("ip", "netns", "pids", ns, check=False)
    return [int(word) for word in res.stdout.split() if word.isdigit()]


def sweep_stale() -> list[str]:
    """Remove what labs whose creating process is dead left behind (a lab killed
    with SIGKILL cannot clean up): their namespaces, after SIGKILL to the
    processes still running in them, each by PID.  Returns the names removed."""
    removed = []
    for name in netns_names():
        match = _PREFIX_RE.match(name)
        if match is None or pid_alive(int(match.group(1))):
            continue
        for pid in netns_pids(name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        sh("ip", "netns", "del", name, check=False)
        removed.append(name)
    return removed


@dataclass(frozen=True)
class NodeNet:
    """One node's place in the network."""

    index: int  # 1-based
    name: str  # the Calico node name, node<index>
    ns: str
    address: str  # 198.18.<subnet>.<index>
    prefix_len: int
    subnet: str  # the CIDR of the node's subnet
    gateway: str  # its bridge's address (default route)

    @property
    def cidr(self) -> str:
        """The address in CIDR form, as Node.spec.bgp.ipv4Address holds it."""
        return f"{self.address}/{self.prefix_len}"


@dataclass
class Topology:
    """The fabric and node namespaces of one lab (see the module docstring)."""

    nodes: int = 3
    encap: str = "direct"
    prefix: str = field(default_factory=new_prefix)
    namespaces: list[str] = field(default_factory=list)
    node_nets: list[NodeNet] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.encap not in ENCAPS:
            raise LabError(f"encap {self.encap!r}: one of {', '.join(ENCAPS)}")
        if not 1 <= self.nodes <= MAX_NODES:
            raise LabError(f"nodes: 1 to {MAX_NODES}, not {self.nodes}")

    @property
    def fabric(self) -> str:
        return f"{self.prefix}-fabric"

    @property
    def subnets(self) -> tuple[int, ...]:
        return (1, 2) if self.encap == "crosssubnet" else (1,)

    def subnet_of(self, index: int) -> int:
        """Which 198.18.<s>.0/24 node ``index`` lives on."""
        if self.encap == "crosssubnet":
            return 1 if index % 2 else 2
        return 1

    def add_namespace(self, name: str) -> str:
        """A new namespace with ``lo`` up, recorded for teardown the moment it exists."""
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        ip(name, "link", "set", "lo", "up")
        return name

    def build(self) -> list[NodeNet]:
        """Make the fabric and every node; returns the nodes' places."""
        fabric = self.add_namespace(self.fabric)
        for s in self.subnets:
            ip(fabric, "link", "add", f"br{s}", "type", "bridge")
            ip(fabric, "addr", "add", f"198.18.{s}.254/24", "dev", f"br{s}")
            ip(fabric, "link", "set", f"br{s}", "up")
        # The fabric routes between the CrossSubnet subnets; flat, it routes nothing.
        sysctl(fabric, "net.ipv4.ip_forward", "1" if len(self.subnets) > 1 else "0")
        for index in range(1, self.nodes + 1):
            self.node_nets.append(self._node(index))
        return self.node_nets

    def _node(self, index: int) -> NodeNet:
        s = self.subnet_of(index)
        net = NodeNet(
            index=index, name=f"node{index}", ns=f"{self.prefix}-node{index}",
            address=f"198.18.{s}.{index}", prefix_len=24, subnet=f"198.18.{s}.0/24",
            gateway=f"198.18.{s}.254",
        )  # fmt: skip
        self.add_namespace(net.ns)
        port = f"p{index}"
        ip(self.fabric, "link", "add", port, "type", "veth", "peer", "name", "eth0",
           "netns", net.ns)  # fmt: skip
        ip(self.fabric, "link", "set", port, "master", f"br{s}", "up")
        ip(net.ns, "addr", "add", net.cidr, "dev", "eth0")
        ip(net.ns, "link", "set", "eth0", "up")
        ip(net.ns, "route", "add", "default", "via", net.gateway)
        sysctl(net.ns, "net.ipv4.ip_forward", "1")
        return net

    def pod_namespace(self, node: NodeNet, pod: int) -> str:
        """An empty namespace for pod ``pod`` of ``node``; the CNI plugin wires it."""
        return self.add_namespace(f"{self.prefix}-n{node.index}p{pod}")

    def teardown(self) -> list[str]:
        """Delete every namespace made, newest first; returns the errors met."""
        errors = []
        while self.namespaces:
            name = self.namespaces.pop()
            res = sh("ip", "netns", "del", name, check=False)
            if res.returncode != 0 and name in netns_names():
                errors.append(f"ip netns del {name}: {res.stderr.strip()}")
        return errors
