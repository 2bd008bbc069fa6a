"""Why a pod's traffic is allowed or not: the NetworkPolicies that select it, per
direction, and what each of their rules allows, in plain words, with the pods
each selector peer picks right now (``bgpctl policy show``).

Computed from the datastore, as the agent reads it (``bgpd.policy.agent``): the
same keys, the same validation (a refused record is left out and named), the
same join of pods and endpoints (a pod is known by its Pod resource or an
endpoint anywhere; its addresses are its endpoints', else its
``status.podIPs``), and the same meaning (``model``: defaulting; ``selection``:
who a selector picks).  So the explanation is what the agent enforces, with
one difference the datastore cannot show: for a refused record, the agent keeps
the last good version it had, if any.

Three steps, the last two pure:

* ``read(store)``: a ``Snapshot`` of every input;
* ``explain(snapshot, namespace, pod, counters)``: the document (``-o json``);
  ``counters`` are the agent's ``/counters`` (None: it did not answer).  The
  agent counts per policy rule on its node, in the policy's chain, which every
  pod there that the policy selects shares: a rule's packets are those pods',
  not this pod's alone;
* ``format_text(doc)``: the text for an operator.

Words used (POLICY.md §1):

* a direction is *isolated* once any policy selecting the pod has that type;
  then only what the union of those policies' rules allows passes, else all
  traffic does;
* a rule's peers: ``anyone`` (no ``from``/``to``: any source or destination,
  outside the cluster too), pods by selector in the policy's namespace, pods in
  namespaces by selector, or an IP block minus its excepts;
* a rule's ports: none listed is every port of every protocol; a protocol
  alone is its every port; a named port is resolved on the *destination* pod
  (for ingress, this pod; for egress, each peer pod).

Pods on the host network are never policed and never picked (§1.4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .model import (
    NAME_LABEL,
    LabelSelector,
    Peer,
    Pod,
    PodKey,
    Policy,
    Port,
    Rule,
    namespace_labels,
    pod_from,
    policy_from,
)
from .selection import Cluster

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from ..datastore.base import Record

POLICIES = "resources/networkpolicies/"
NAMESPACES = "resources/namespaces/"
PODS = "resources/pods/"
ENDPOINTS = "endpoints/"
#: Members of a selector peer shown before "... and N more".
MEMBERS_SHOWN = 10
INGRESS, EGRESS = "ingress", "egress"
#: A rule's counters: (namespace, policy, direction, rule index) -> packets, bytes.
Counts = dict[tuple[str, str, str, str], dict[str, int]]


class Reader(Protocol):
    """What ``read`` needs of a datastore (``DirectoryStore`` has it)."""

    def list(self, prefix: str) -> list[Record]: ...


@dataclass(frozen=True, slots=True)
class Endpoint:
    node: str
    interface: str
    ips: tuple[str, ...]


@dataclass(slots=True)
class Snapshot:
    """The agent's inputs, joined: pods and namespaces indexed for selection,
    policies by key, each pod's endpoints, and the records refused."""

    cluster: Cluster = field(default_factory=Cluster)
    policies: dict[tuple[str, str], Policy] = field(default_factory=dict)
    endpoints: dict[PodKey, list[Endpoint]] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # key -> why


def _validator() -> Callable[[dict[str, Any]], str | None]:
    from .agent import validate  # noqa: PLC0415 - pydantic: only when reading a store

    return validate


def read(store: Reader, validate: Callable[[dict[str, Any]], str | None] | None = None) -> Snapshot:
    """Every input of the agent, validated (``validate`` defaults to the agent's)
    and joined as the agent joins them."""
    check = validate or _validator()
    snap = Snapshot()

    def good(records: Iterable[Record]) -> list[Record]:
        out = []
        for record in records:
            problem = check(record.value)
            if problem is None:
                out.append(record)
            else:
                snap.refused[record.key] = problem
        return out

    for record in good(store.list(NAMESPACES)):
        name = record.key[len(NAMESPACES) :]
        snap.cluster.put_namespace(name, namespace_labels(name, record.value))
    objects: dict[PodKey, dict[str, Any]] = {}
    for record in good(store.list(PODS)):
        namespace, _, name = record.key[len(PODS) :].partition("/")
        objects[(namespace, name)] = record.value
    by_key: dict[PodKey, list[tuple[str, Endpoint]]] = {}
    for record in store.list(ENDPOINTS):  # written by the CNI plugin; the agent takes them as is
        v = record.value
        if not (v.get("pod") and v.get("namespace")):
            continue
        addresses = tuple(str(ip) for ip in v.get("ips") or ())
        endpoint = Endpoint(str(v.get("node", "")), str(v.get("hostIfname", "")), addresses)
        by_key.setdefault((v["namespace"], v["pod"]), []).append((record.key, endpoint))
    for key in sorted(set(objects) | set(by_key)):
        endpoints = [e for _k, e in sorted(by_key.get(key, ()), key=lambda item: item[0])]
        ips: list[str] = []
        for e in endpoints:
            ips.extend(ip for ip in e.ips if ip not in ips)
        snap.cluster.put_pod(pod_from(objects.get(key), key[0], key[1], tuple(ips)))
        if endpoints:
            snap.endpoints[key] = endpoints
    for record in good(store.list(POLICIES)):
        policy = policy_from(record.value)
        snap.policies[policy.key] = policy
    return snap


# -- words ----------------------------------------------------------------------


def _bare(address: str) -> str:
    return address.partition("/")[0]


def selector_words(selector: LabelSelector) -> str:
    return "every pod" if selector.empty else f"pods matching {selector.text()}"


def _namespace_words(selector: LabelSelector) -> str:
    if selector.empty:
        return "in every namespace"
    names = _names_only(selector)
    if names is not None:
        return (
            f"in namespace {names[0]}" if len(names) == 1 else f"in namespaces {', '.join(names)}"
        )
    return f"in namespaces matching {selector.text()}"


def _names_only(selector: LabelSelector) -> list[str] | None:
    """The namespace names a selector on ``kubernetes.io/metadata.name`` alone lists."""
    if selector.labels and not selector.expressions and len(selector.labels) == 1:
        key, value = selector.labels[0]
        return [value] if key == NAME_LABEL else None
    if not selector.labels and len(selector.expressions) == 1:
        r = selector.expressions[0]
        if r.key == NAME_LABEL and r.operator == "In":
            return sorted(r.values)
    return None


def peer_words(policy_namespace: str, peer: Peer) -> str:
    if peer.ip_block is not None:
        text = f"any address in {peer.ip_block.cidr}"
        if peer.ip_block.excepts:
            text += f" except {', '.join(peer.ip_block.excepts)}"
        return text
    pods = selector_words(peer.pods or LabelSelector())
    if peer.namespaces is None:
        return f"{pods} in namespace {policy_namespace}"
    return f"{pods} {_namespace_words(peer.namespaces)}"


def port_words(port: Port, direction: str, pod: Pod) -> tuple[str, int | None]:
    """(words, the port a named port resolves to on this pod for ingress)."""
    if port.name is not None:
        if direction == INGRESS:
            number = pod.named_port(port.name, port.protocol)
            if number is None:
                return (f"named port {port.name} ({port.protocol}): not on this pod, "
                        "matches nothing", None)  # fmt: skip
            return f"named port {port.name} -> {port.protocol} {number} on this pod", number
        return f"named port {port.name} ({port.protocol}) of the destination pod", None
    if port.port is None:
        return f"{port.protocol} any port", None
    if port.end is not None:
        return f"{port.protocol} {port.port}-{port.end}", None
    return f"{port.protocol} {port.port}", None


# -- the document ---------------------------------------------------------------


def _member(pod: Pod, named: list[Port]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "namespace": pod.namespace, "name": pod.name, "ips": [_bare(a) for a in pod.ips],
    }  # fmt: skip
    if named:
        out["namedPorts"] = {
            f"{p.name}/{p.protocol}": pod.named_port(p.name or "", p.protocol) for p in named
        }
    return out


@dataclass(frozen=True, slots=True)
class _Subject:
    """What every part of one explanation refers to."""

    snap: Snapshot
    pod: Pod
    counters: Counts | None


def _peer_doc(
    snap: Snapshot, policy: Policy, peer: Peer, direction: str, named: list[Port]
) -> dict[str, Any]:
    doc: dict[str, Any] = {"text": peer_words(policy.namespace, peer)}
    if peer.ip_block is not None:
        doc["ipBlock"] = {"cidr": peer.ip_block.cidr, "except": list(peer.ip_block.excepts)}
        return doc
    doc["podSelector"] = None if peer.pods is None else peer.pods.text()
    doc["namespaceSelector"] = None if peer.namespaces is None else peer.namespaces.text()
    if peer.namespaces is None:
        doc["namespace"] = policy.namespace
    cluster = snap.cluster
    keys = sorted(cluster.peer_pods(policy.namespace, peer))
    # Named ports of an egress rule are resolved on each destination (peer) pod.
    shown = named if direction == EGRESS else []
    doc["memberCount"] = len(keys)
    doc["members"] = [_member(cluster.pods[k], shown) for k in keys[:MEMBERS_SHOWN]]
    return doc


def _rule_doc(
    subject: _Subject, policy: Policy, direction: str, index: int, rule: Rule
) -> dict[str, Any]:
    snap, pod, counters = subject.snap, subject.pod, subject.counters
    named = [p for p in rule.ports if p.name is not None]
    ports = []
    for p in rule.ports:
        words, resolved = port_words(p, direction, pod)
        entry: dict[str, Any] = {"protocol": p.protocol, "port": p.name or p.port,
                                 "endPort": p.end, "text": words}  # fmt: skip
        if p.name is not None and direction == INGRESS:
            entry["resolved"] = resolved
        ports.append(entry)
    doc: dict[str, Any] = {
        "index": index,
        "peers": [_peer_doc(snap, policy, peer, direction, named) for peer in rule.peers],
        "ports": ports,
        "peersText": "anyone" if not rule.peers else None,
        "portsText": "any port, any protocol" if not rule.ports else None,
    }
    if counters is not None:
        found = counters.get((policy.namespace, policy.name, direction, str(index)))
        doc["packets"] = found["packets"] if found else 0
        doc["bytes"] = found["bytes"] if found else 0
    return doc


def _direction_doc(subject: _Subject, direction: str, selecting: list[Policy]) -> dict[str, Any]:
    isolating = [p for p in selecting if getattr(p, direction) is not None]
    policies = []
    for policy in isolating:
        rules: tuple[Rule, ...] = getattr(policy, direction)
        policies.append({
            "namespace": policy.namespace, "name": policy.name,
            "podSelector": policy.selector.text(),
            "rules": [_rule_doc(subject, policy, direction, i, r) for i, r in enumerate(rules)],
        })  # fmt: skip
    return {"isolated": bool(isolating), "policies": policies}


def _counter_index(counters: list[dict[str, Any]] | None) -> tuple[Counts | None, dict[str, int]]:
    if counters is None:
        return None, {}
    rules: Counts = {}
    denied: dict[str, int] = {}
    for c in counters:
        key = (str(c.get("namespace", "")), str(c.get("policy", "")),
               str(c.get("direction", "")), str(c.get("rule", "")))  # fmt: skip
        packets, octets = int(c.get("packets") or 0), int(c.get("bytes") or 0)
        if not key[1] and key[3] == "denied":
            denied[key[2]] = denied.get(key[2], 0) + packets
            continue
        total = rules.setdefault(key, {"packets": 0, "bytes": 0})
        total["packets"] += packets
        total["bytes"] += octets
    return rules, denied


class UnknownPod(LookupError):
    """No Pod resource and no endpoint of that name."""


def explain(
    snap: Snapshot,
    namespace: str,
    name: str,
    counters: list[dict[str, Any]] | None = None,
    agent: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The explanation document of pod ``namespace/name``.  ``counters``: the
    agent's ``/counters`` list (None when it did not answer); ``agent``: where it
    was asked and, when it gave no counters, why (``{"node", "address", "error",
    "answered"}``: ``answered`` when it answered, with an error)."""
    key = (namespace, name)
    pod = snap.cluster.pods.get(key)
    if pod is None:
        raise UnknownPod(f"pod {namespace}/{name} not found (no Pod resource and no endpoint)")
    rules, denied = _counter_index(counters)
    endpoints = snap.endpoints.get(key, [])
    doc: dict[str, Any] = {
        "pod": {
            "namespace": namespace, "name": name, "labels": dict(sorted(pod.labels.items())),
            "ips": [_bare(a) for a in pod.ips], "hostNetwork": pod.host_network,
            "endpoints": [{"node": e.node, "interface": e.interface} for e in endpoints],
            "namedPorts": [{"name": p.name, "protocol": p.protocol, "port": p.port}
                           for p in pod.ports],
        },
    }  # fmt: skip
    if pod.host_network:
        selecting: list[Policy] = []
    else:
        selecting = sorted(
            (p for p in snap.policies.values()
             if p.namespace == namespace and p.selector.matches(pod.labels)),
            key=lambda p: p.key,
        )  # fmt: skip
    for direction in (INGRESS, EGRESS):
        doc[direction] = _direction_doc(_Subject(snap, pod, rules), direction, selecting)
    doc["counters"] = {**(agent or {}), "available": counters is not None}
    if counters is not None:
        doc["counters"]["denied"] = denied
    mine = (f"{PODS}{namespace}/{name}", f"{NAMESPACES}{namespace}")
    doc["refused"] = [
        {"key": k, "error": v} for k, v in sorted(snap.refused.items())
        if k in mine or k.startswith(f"{POLICIES}{namespace}/")
    ]  # fmt: skip
    return doc


# -- text -----------------------------------------------------------------------


def _member_text(m: dict[str, Any]) -> str:
    details = list(m.get("ips") or []) or ["no address"]
    for port, number in (m.get("namedPorts") or {}).items():
        name = port.split("/")[0]
        details.append(f"{name} {number}" if number is not None else f"no {name}")
    return f"{m['namespace']}/{m['name']} ({'; '.join(details)})"


def _wrap(first: str, indent: str, items: list[str], width: int = 100) -> list[str]:
    """``first`` then ``items`` joined by commas, wrapped at ``width`` under ``indent``."""
    lines = [first]
    for i, item in enumerate(items):
        piece = item + ("," if i < len(items) - 1 else "")
        if len(lines[-1]) + 1 + len(piece) > width and lines[-1].strip():
            lines.append(indent + piece)
        else:
            lines[-1] += (" " if lines[-1].strip() else "") + piece
    return lines


def _rule_lines(rule: dict[str, Any], direction: str) -> list[str]:
    word = "from" if direction == INGRESS else "to"
    out = [f"    rule {rule['index']}:"]
    if not rule["peers"]:
        where = "anyone (any address, in the cluster or outside)"
        out.append(f"      {word} {where}")
    for peer in rule["peers"]:
        out.append(f"      {word} {peer['text']}")
        if "members" in peer:
            count = peer["memberCount"]
            if count == 0:
                out.append("        now: no pod")
                continue
            names = [_member_text(m) for m in peer["members"]]
            if count > len(names):
                names.append(f"... and {count - len(names)} more")
            first = f"        now ({count}):"
            out += _wrap(first, " " * (len(first) + 1), names)
    if not rule["ports"]:
        out.append("      ports: any port, any protocol")
    else:
        out += _wrap("      ports:", " " * 13, [p["text"] for p in rule["ports"]])
    if "packets" in rule:
        out.append(f"      packets: {rule['packets']:,} ({rule['bytes']:,} bytes)")
    return out


def format_text(doc: dict[str, Any]) -> str:
    pod = doc["pod"]
    out = [f"Pod {pod['namespace']}/{pod['name']}"]
    if pod["endpoints"]:
        where = ", ".join(f"node {e['node']}, interface {e['interface'] or '-'}"
                          for e in pod["endpoints"])  # fmt: skip
        out.append(f"  endpoint: {where}")
    else:
        out.append("  endpoint: none (no interface on any node yet)")
    out.append(f"  addresses: {', '.join(pod['ips']) or 'none'}")
    labels = ",".join(f"{k}={v}" for k, v in pod["labels"].items())
    out.append(f"  labels: {labels or 'none'}")
    if pod["namedPorts"]:
        named = ", ".join(f"{p['name']} {p['protocol']} {p['port']}" for p in pod["namedPorts"])
        out.append(f"  named ports: {named}")
    if pod["hostNetwork"]:
        out.append("  host network: not policed (its traffic is the node's), never a peer")
    for direction in (INGRESS, EGRESS):
        d = doc[direction]
        title = direction.capitalize()
        out.append("")
        if not d["isolated"]:
            out.append(f"{title}: not isolated: all traffic allowed")
            continue
        n = len(d["policies"])
        out.append(f"{title}: isolated by {n} {'policy' if n == 1 else 'policies'}; only what "
                   f"{'its' if n == 1 else 'their'} rules allow passes")  # fmt: skip
        for policy in d["policies"]:
            out.append(f"  policy {policy['namespace']}/{policy['name']} "
                       f"(podSelector {policy['podSelector']})")  # fmt: skip
            if not policy["rules"]:
                out.append(f"    allows no {direction} (it only isolates)")
            for rule in policy["rules"]:
                out += _rule_lines(rule, direction)
    counters = doc.get("counters") or {}
    out.append("")
    node = counters.get("node") or "?"
    if counters.get("available"):
        denied = counters.get("denied") or {}
        out.append(f"Counters: from the policy agent of node {node} (a rule's packets are those "
                   "of every pod there that its policy selects); denied there, all pods: "
                   f"ingress {denied.get(INGRESS, 0):,}, egress {denied.get(EGRESS, 0):,} "
                   "packets")  # fmt: skip
    else:
        why = counters.get("error") or "not asked"
        address = counters.get("address")
        at = f" at {address}" if address else ""
        verb = "answers with an error" if counters.get("answered") else "does not answer"
        out.append(f"Counters: none (the policy agent of node {node} {verb}{at}: {why})")
    for r in doc.get("refused") or ():
        out.append(f"Refused (not shown; the agent keeps its last good version, if any): "
                   f"{r['key']}: {r['error']}")  # fmt: skip
    return "\n".join(out) + "\n"
