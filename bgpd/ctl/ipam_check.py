"""``bgpctl ipam check``: cross-check IPAM against the endpoint records, as
``calicoctl ipam check`` cross-checks it against pods (CALICO.md §4.4).

Our equivalent of "the pods" is the endpoint records the CNI plugin keeps under
``endpoints/<node>/<container ID>.<ifname>`` (``bgpd.cni.endpoints``).  A record is
written *before* its addresses are allocated, so an allocation with no record is
not an ADD under way.  The problems looked for, each counted once:

``leaked``
    An address allocated to a CNI handle (``<network>.<container ID>``, or Calico's
    legacy ``<namespace>.<pod>``) that no endpoint record, on any node, names:
    what calicoctl calls "allocated in IPAM but not actually in use".  One per IP.
``endpoint-without-allocation``
    A ``ready`` record whose address, inside an active IP pool or an existing block,
    is not allocated in a block to the record's handle.  One per IP.  Addresses
    outside every pool and block (an endpoint whose IPAM was delegated, e.g.
    host-local) are counted and shown but are no problem of ours, unlike calicoctl,
    which counts them.
``handle-without-addresses``
    A handle record that counts addresses in a block that the block does not hold
    for it.  One per handle.
``missing-handle``
    A handle that allocations in the blocks name but that has no handle record
    (CNI DEL releases by handle record, so these addresses would leak).  One per
    handle.  calicoctl prints these but leaves them out of its total; we count them.
``creating-by-dead-plugin``
    A record left ``creating`` by a plugin whose process is gone (GC or DEL will
    clean it up).  One per record.  A process ID means something only on the
    machine that wrote it: with a datastore shared by machines (etcd), only the
    records of the checking node (``--node-name``) are judged, and other nodes'
    ``creating`` records are counted as not judgeable, no problem.  The directory
    datastore never spans machines, so there every record is judged.

Tunnel addresses (handles ``ipip-tunnel-addr-<node>`` and the like, or a ``type``
attribute) are counted as in use by their node: nothing in bgpd records tunnel
addresses on the nodes yet, so there is nothing to check them against.

The check reads a snapshot: blocks, then pools, then handles, then endpoints, as
calicoctl does, without a lock.  A pod starting or stopping during the check can
show up as a problem that is gone a moment later; ``ipam release --from-report``
therefore checks each address again before releasing it.

``Checker`` works on plain data (record values) and writes its progress lines
through a callback, so it runs against a live datastore (``run``) or a test's
dictionaries alike.  ``Checker.problems`` is the report's list.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from ..datastore.local import pid_alive
from ..ipam.block import Block
from ..ipam.cidr import contains, format_cidr, format_ip, parse_cidr, parse_ip

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    from ..datastore.base import Datastore

    Write = Callable[[str], None]

LEAKED = "leaked"
ENDPOINT_WITHOUT_ALLOCATION = "endpoint-without-allocation"
HANDLE_WITHOUT_ADDRESSES = "handle-without-addresses"
MISSING_HANDLE = "missing-handle"
CREATING_BY_DEAD_PLUGIN = "creating-by-dead-plugin"
KINDS = (
    LEAKED,
    ENDPOINT_WITHOUT_ALLOCATION,
    HANDLE_WITHOUT_ADDRESSES,
    MISSING_HANDLE,
    CREATING_BY_DEAD_PLUGIN,
)
TUNNEL_HANDLE_PREFIXES = (
    "ipip-tunnel-addr-",
    "vxlan-tunnel-addr-",
    "vxlan-v6-tunnel-addr-",
    "wireguard-tunnel-addr-",
    "wireguard-v6-tunnel-addr-",
)
WINDOWS_RESERVED_HANDLE = "windows-reserved-ipam-handle"
#: IPAM types whose addresses are ours; a record naming another was delegated.
OUR_IPAM = ("bgpd-ipam", "calico-ipam")
TOP_NODES = 20


def attr_string(attribute: dict[str, Any]) -> str:
    """An allocation's attributes as calicoctl prints them: ``Main:<handle> Extra:k=v,...``."""
    secondary = attribute.get("secondary") or {}
    extra = ",".join(f"{k}={secondary[k]}" for k in sorted(secondary))
    return f"Main:{attribute.get('handle_id') or '<none>'} Extra:{extra}"


def problem(
    kind: str,
    *,
    ip: str | None = None,
    handle: str | None = None,
    node: str | None = None,
    block: str | None = None,
    detail: str = "",
) -> dict[str, Any]:
    return {
        "kind": kind,
        "ip": ip,
        "handle": handle,
        "node": node,
        "block": block,
        "detail": detail,
    }


def _canonical(text: str) -> str:
    return format_ip(*parse_ip(text.partition("/")[0]))


class Checker:
    """The check, step by step: call the ``load_*`` methods in order, then ``scan``."""

    def __init__(
        self,
        write: Write,
        *,
        show_all_ips: bool = False,
        show_problem_ips: bool = False,
        alive: Callable[[object], bool] = pid_alive,
        node: str | None = None,
    ) -> None:
        self.write = write
        self.show_all_ips = show_all_ips
        self.show_problem_ips = show_problem_ips or show_all_ips
        self.alive = alive
        #: The node whose plugins' processes ``alive`` can see; None: every node's
        #: (a datastore on this machine alone).
        self.node = node
        #: ip -> the allocations of it (one, unless blocks overlap), calicoctl's shape
        self.allocations: dict[str, list[dict[str, Any]]] = {}
        #: handle -> {block CIDR: addresses the block holds for it}
        self.held: dict[str | None, dict[str, int]] = {}
        #: handle -> its allocations
        self.by_handle: dict[str | None, list[dict[str, Any]]] = {}
        self.by_node: dict[str, int] = {}
        self.blocks: list[tuple[int, int, int]] = []
        self.pools: list[tuple[int, int, int]] = []
        self.handles: dict[str, dict[str, int]] = {}
        self.endpoints: list[tuple[str, dict[str, Any]]] = []
        self.problems: list[dict[str, Any]] = []

    # -- loading ---------------------------------------------------------------------

    def load_blocks(self, values: list[dict[str, Any]]) -> None:
        self.write(f"Found {len(values)} IPAM blocks.")
        count = 0
        for value in values:
            block = Block(value)
            self.blocks.append((block.family, block.network, block.length))
            affinity = value.get("affinity") or "<none>"
            self.write(f" IPAM block {block.cidr} affinity={affinity}:")
            for ordinal, attribute in block.allocated():
                count += 1
                self._record_allocation(block, ordinal, attribute)
        self.write(f"IPAM blocks record {count} allocations.")
        tunnels = sum(1 for allocs in self.allocations.values() for a in allocs if a["inUse"])
        self.write(f"Found {tunnels} node tunnel and reserved IPs (taken as in use).")
        self.write("")

    def _record_allocation(self, block: Block, ordinal: int, attribute: dict[str, Any]) -> None:
        ip = block.address(ordinal)
        affinity = block.affinity or ""
        owner = affinity[5:] if affinity.startswith("host:") else ""
        secondary = attribute.get("secondary") or {}
        handle = attribute.get("handle_id")
        node = secondary.get("node") or owner
        alloc: dict[str, Any] = {"ip": ip, "block": block.cidr, "handle": handle, "node": node}
        for field, key in (
            ("pod", "pod"),
            ("namespace", "namespace"),
            ("type", "type"),
            ("creationTimestamp", "timestamp"),
        ):
            if secondary.get(key):
                alloc[field] = secondary[key]
        alloc["inUse"] = False
        alloc["borrowed"] = node != owner
        alloc["owners"] = []
        self.allocations.setdefault(ip, []).append(alloc)
        self.by_node[node or "<none>"] = self.by_node.get(node or "<none>", 0) + 1
        self.by_handle.setdefault(handle, []).append(alloc)
        counts = self.held.setdefault(handle, {})
        counts[block.cidr] = counts.get(block.cidr, 0) + 1
        if self.show_all_ips:
            self.write(f"  {ip} allocated; attrs {attr_string(attribute)}")
        if handle == WINDOWS_RESERVED_HANDLE:
            _mark(alloc, "Reserved for Windows")
        elif (handle or "").startswith(TUNNEL_HANDLE_PREFIXES) or "type" in secondary:
            _mark(alloc, f"Node({node})")

    def load_pools(self, pools: Iterable[tuple[str, bool]]) -> None:
        """(CIDR, disabled) of every IP pool; the enabled ones are the active ones."""
        for cidr, disabled in pools:
            if disabled:
                continue
            self.write(f"  {cidr}")
            self.pools.append(parse_cidr(cidr, strict=False))
        self.write(f"Found {len(self.pools)} active IP pools.")
        self.write("")

    def load_handles(self, values: list[dict[str, Any]]) -> None:
        for value in values:
            self.handles[value["handleID"]] = dict(value.get("block") or {})
        self.write(f"Found {len(self.handles)} IPAM handles.")
        self.write("")

    def load_endpoints(self, records: list[tuple[str, dict[str, Any]]]) -> None:
        """(key, value) of every endpoint record."""
        self.endpoints = records
        states: dict[str, int] = {}
        ips = 0
        for key, value in records:
            state = str(value.get("state"))
            states[state] = states.get(state, 0) + 1
            for handle in handles_of(value):
                for alloc in self._allocations_of_handle(handle):
                    _mark(alloc, _friendly(key, value))
            for cidr in value.get("ips") or ():
                ips += 1
                if self.show_all_ips:
                    self.write(f"  {_canonical(cidr)} belongs to {_friendly(key, value)}")
        summary = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
        self.write(
            f"Found {len(records)} endpoint records" + (f" ({summary})." if summary else ".")
        )
        self.write(f"Found {ips} endpoint IPs.")
        used = sum(1 for allocs in self.allocations.values() if any(a["inUse"] for a in allocs))
        self.write(f"Endpoints and nodes are using {used} allocated IPs.")
        self.write("")

    def _allocations_of_handle(self, handle: str) -> list[dict[str, Any]]:
        return self.by_handle.get(handle, [])

    # -- scanning --------------------------------------------------------------------

    def top_nodes(self) -> None:
        self.write(f"Looking for top (up to {TOP_NODES}) nodes by allocations...")
        nodes = sorted(self.by_node, key=lambda n: (-self.by_node[n], n))
        for node in nodes[:TOP_NODES]:
            self.write(f"  {node} has {self.by_node[node]} allocations")
        if nodes:
            most, median = self.by_node[nodes[0]], self.by_node[nodes[len(nodes) // 2]]
            self.write(f"Node with most allocations has {most}; median is {median}")
        self.write("")

    def scan(self) -> int:
        """Look for every kind of problem; the number found."""
        self.top_nodes()
        self._scan_leaked()
        self._scan_endpoints()
        self._scan_handles()
        self._scan_missing_handles()
        self._scan_creating()
        self.write(f"Check complete; found {len(self.problems)} problems.")
        return len(self.problems)

    def _scan_leaked(self) -> None:
        self.write("Scanning for IPs that are allocated but not actually in use...")
        leaked = 0
        for ip, allocs in self.allocations.items():
            for alloc in allocs:
                if alloc["inUse"]:
                    continue
                leaked += 1
                if self.show_problem_ips:
                    self.write(
                        f"  {ip} leaked; handle {alloc['handle'] or '<none>'}, "
                        f"node {alloc['node'] or '<none>'}"
                    )
                self.problems.append(
                    problem(
                        LEAKED,
                        ip=ip,
                        handle=alloc["handle"],
                        node=alloc["node"] or None,
                        block=alloc["block"],
                        detail="allocated, but no endpoint record names its handle",
                    )
                )
        self.write(f"Found {leaked} IPs that are allocated in IPAM but not actually in use.")

    def _scan_endpoints(self) -> None:
        self.write("Scanning for IPs that are in use by an endpoint but not allocated in IPAM...")
        outside = unallocated = 0
        for key, value in self.endpoints:
            if value.get("state") != "ready" or value.get("ipam", OUR_IPAM[0]) not in OUR_IPAM:
                continue
            own = set(handles_of(value))
            who = _friendly(key, value)
            for cidr in value.get("ips") or ():
                ip = _canonical(cidr)
                allocs = self.allocations.get(ip, [])
                if any(a["handle"] in own for a in allocs):
                    continue
                family, number = parse_ip(ip)
                block = next((b for b in self.blocks if contains(b, family, number)), None)
                if block is None and not any(contains(p, family, number) for p in self.pools):
                    outside += 1
                    if self.show_problem_ips:
                        self.write(f"  {ip} in use by {who} is not in any active IP pool.")
                    continue
                unallocated += 1
                holder = f"allocated to handle {allocs[0]['handle']}" if allocs else "not allocated"
                if self.show_problem_ips:
                    self.write(
                        f"  {ip} in use by {who} and in active IPAM pool but has no "
                        f"IPAM allocation ({holder})."
                    )
                self.problems.append(
                    problem(
                        ENDPOINT_WITHOUT_ALLOCATION,
                        ip=ip,
                        handle=value.get("handle"),
                        node=value.get("node"),
                        block=None if block is None else format_cidr(*block),
                        detail=f"in use by {who}, {holder}",
                    )
                )
        self.write(
            f"Found {outside} in-use IPs that are not in active IP pools "
            "(IPAM delegated: not counted)."
        )
        self.write(
            f"Found {unallocated} in-use IPs that are in active IP pools but have no "
            "corresponding IPAM allocation."
        )
        self.write("")

    def _scan_handles(self) -> None:
        self.write("Scanning for IPAM handles with no matching IPs...")
        good = bad = 0
        for handle, counted in sorted(self.handles.items()):
            held = self.held.get(handle, {})
            short = [
                (cidr, n, held.get(cidr, 0))
                for cidr, n in sorted(counted.items())
                if held.get(cidr, 0) < n
            ]
            if not short:
                good += 1
                continue
            bad += 1
            cidr, n, have = short[0]
            if self.show_problem_ips:
                self.write(
                    f"  {handle} doesn't have all of its IPs: counts {n} in {cidr}, "
                    f"the block holds {have}."
                )
            self.problems.append(
                problem(
                    HANDLE_WITHOUT_ADDRESSES,
                    handle=handle,
                    node=self._node_of(handle),
                    block=cidr,
                    detail="; ".join(
                        f"counts {n} in {c}, the block holds {h}" for c, n, h in short
                    ),
                )
            )
        self.write(f"Found {bad} handles with no matching IPs (and {good} handles with matches).")

    def _scan_missing_handles(self) -> None:
        self.write("Scanning for IPs with missing handle...")
        missing = 0
        for handle, held in sorted(self.held.items(), key=lambda kv: kv[0] or ""):
            if handle is None or handle in self.handles:
                continue
            missing += 1
            if self.show_problem_ips:
                self.write(f"  {handle} is in use in a block but doesn't exist.")
            self.problems.append(
                problem(
                    MISSING_HANDLE,
                    handle=handle,
                    node=self._node_of(handle),
                    block=min(held),
                    detail=f"{sum(held.values())} IPs in {', '.join(sorted(held))} name it",
                )
            )
        self.write(f"Found {missing} handles mentioned in blocks with no matching handle resource.")

    def _scan_creating(self) -> None:
        self.write("Scanning for endpoint records left creating by a dead plugin...")
        dead = elsewhere = 0
        for key, value in self.endpoints:
            if value.get("state") != "creating":
                continue
            owner = value.get("node")
            if self.node is not None and owner and owner != self.node:
                elsewhere += 1  # its pid is another machine's: not judgeable from here
                continue
            if self.alive(value.get("pid")):
                continue
            dead += 1
            if self.show_problem_ips:
                self.write(f"  {key} is creating, but its plugin (pid {value.get('pid')}) is gone.")
            self.problems.append(
                problem(
                    CREATING_BY_DEAD_PLUGIN,
                    handle=value.get("handle"),
                    node=value.get("node"),
                    detail=f"{key} left creating by pid {value.get('pid')}",
                )
            )
        if elsewhere:
            self.write(
                f"Skipped {elsewhere} endpoint records creating on other nodes "
                "(their plugins' processes are not visible from here)."
            )
        self.write(f"Found {dead} endpoint records left creating by a dead plugin.")

    def _node_of(self, handle: str) -> str | None:
        return next((a["node"] for a in self._allocations_of_handle(handle) if a["node"]), None)

    # -- the report ------------------------------------------------------------------

    def report(self, revision: int, version: str) -> dict[str, Any]:
        """The ``-o`` report: every problem, and calicoctl's map of allocations."""
        return {
            "version": version,
            "datastoreRevision": revision,
            "datastoreLocked": False,
            "problems": self.problems,
            "allocations": self.allocations,
        }


def handles_of(value: dict[str, Any]) -> list[str]:
    """The handles an endpoint record may hold addresses under: its own, and Calico's
    legacy ``<namespace>.<pod>`` (which CNI DEL releases as well)."""
    handles = []
    handle = value.get("handle")
    if not handle and value.get("network") and value.get("containerID"):
        handle = f"{value['network']}.{value['containerID']}"
    if handle:
        handles.append(handle)
    if value.get("namespace") and value.get("pod"):
        handles.append(f"{value['namespace']}.{value['pod']}")
    return handles


def _mark(alloc: dict[str, Any], owner: str) -> None:
    """An allocation is in use, by ``owner``."""
    alloc["inUse"] = True
    alloc["owners"].append(owner)


def _friendly(key: str, value: dict[str, Any]) -> str:
    if value.get("pod"):
        return f"Workload({value.get('namespace')}/{value['pod']})"
    return f"Endpoint({key.removeprefix('endpoints/')})"


def run(
    store: Datastore,
    write: Write,
    *,
    show_all_ips: bool = False,
    show_problem_ips: bool = False,
    alive: Callable[[object], bool] = pid_alive,
    node: str | None = None,
) -> Checker:
    """The whole check against a datastore, progress written as it goes.  ``node``:
    judge ``creating`` records by their plugin's pid only for this node (a
    datastore other machines write too); None: for every node."""
    from ..cni.endpoints import all_endpoints  # noqa: PLC0415
    from ..ipam.allocator import BLOCKS, HANDLES  # noqa: PLC0415
    from ..ipam.pools import POOLS  # noqa: PLC0415

    checker = Checker(
        write,
        show_all_ips=show_all_ips,
        show_problem_ips=show_problem_ips,
        alive=alive,
        node=node,
    )
    write("Checking IPAM for inconsistencies...")
    write("")
    write("Loading all IPAM blocks...")
    checker.load_blocks([r.value for r in store.list(BLOCKS)])
    write("Loading all IPAM pools...")
    checker.load_pools(
        (r.value["spec"]["cidr"], bool(r.value["spec"].get("disabled", False)))
        for r in store.list(POOLS)
    )
    write("Loading all IPAM handles...")
    checker.load_handles([r.value for r in store.list(HANDLES)])
    write("Loading all endpoints...")
    checker.load_endpoints([(r.key, r.value) for r in all_endpoints(store)])
    checker.scan()
    return checker


def version() -> str:
    from importlib.metadata import PackageNotFoundError  # noqa: PLC0415
    from importlib.metadata import version as package_version  # noqa: PLC0415

    try:
        return f"bgpctl {package_version('bgpd')}"
    except PackageNotFoundError:
        return "bgpctl (unknown version)"


def write_report(path: str, report: dict[str, Any]) -> None:
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")


def load_report(path: str) -> dict[str, Any]:
    """A report written by ``-o``, checked for the shape ``release`` relies on."""
    from .context import CtlError  # noqa: PLC0415

    try:
        with open(path) as f:
            report = json.load(f)
    except OSError as exc:
        raise CtlError(f"report {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise CtlError(f"report {path}: not JSON ({exc})") from None
    problems = report.get("problems") if isinstance(report, dict) else None
    if not isinstance(problems, list) or not all(
        isinstance(p, dict) and p.get("kind") in KINDS for p in problems
    ):
        raise CtlError(f"report {path}: not a bgpctl ipam check report")
    return report  # type: ignore[no-any-return]


def leaked_in_all(reports: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    """(ip, handle) of the addresses every report calls leaked, in the first report's
    order: several reports taken some time apart make a transient state (a pod
    half-way through starting or stopping) unlikely to be taken for a leak."""
    common: list[tuple[str, str | None]] | None = None
    for report in reports:
        leaked = [
            (p["ip"], p.get("handle"))
            for p in report["problems"]
            if p["kind"] == LEAKED and isinstance(p.get("ip"), str)
        ]
        common = leaked if common is None else [x for x in common if x in set(leaked)]
    return common or []
