"""A reference engine of Kubernetes NetworkPolicy (networking.k8s.io/v1), written
from POLICY.md §1 alone, as cyclonus' matcher is: the tests' source of truth for
what the agent must allow.  It never imports ``bgpd``.

Input: namespaces (name -> labels; ``kubernetes.io/metadata.name`` is implied),
pods (namespace, name, labels, IPs, container ports) and policies, the dicts a
user writes.  The engine does the API server's part itself: it validates
(``InvalidPolicy``, the rules of §1.3) and defaults (empty ``policyTypes`` ->
``[Ingress]`` plus ``Egress`` when ``egress`` is non-empty; a port's missing
``protocol`` -> TCP).

Verdict (§1.1): a connection from ``src`` to ``dst`` on (protocol, port) is
allowed when the destination's ingress AND the source's egress allow it::

    allowed(src, dst, proto, port) = ingress_ok(src, dst, ...) and egress_ok(src, dst, ...)

A side that is not a pod (an IP outside the cluster) counts as allowing.  In one
direction, a pod that no policy isolates allows everything; an isolated pod allows
the union of the rules of every policy that selects it in that direction.  A rule
matches when its peers (``from``/``to``) AND its ``ports`` match; within each list
the items are ORed; an empty or missing list matches all.

Peers: ``podSelector`` alone (pods of the policy's namespace), ``namespaceSelector``
alone (every pod of the matching namespaces), both in one peer (AND), ``ipBlock``
(cidr minus excepts, matched against any address, pods' included).  A pod's
address in a connection is its first IP unless the caller names another.

Ports: a number, a number with ``endPort`` (inclusive range), a name (resolved
against the *destination* pod's container ports with the same name and protocol;
an unresolvable name matches nothing), or only a protocol (every port of it).

Node -> pod (always allowed, §1.4) and the loopback diagonal (undefined) are the
harness's business, not the engine's.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

NAME_LABEL = "kubernetes.io/metadata.name"
PROTOCOLS = ("TCP", "UDP", "SCTP")
INGRESS, EGRESS = "Ingress", "Egress"
_PORT_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


class InvalidPolicy(ValueError):
    """A policy the API server would refuse (the message names the field)."""


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    ips: tuple[str, ...] = ()
    #: Container ports as (name, protocol, port); name may be "".
    ports: tuple[tuple[str, str, int], ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def ip(self) -> str | None:
        return self.ips[0] if self.ips else None

    def __str__(self) -> str:
        return self.key

    def __hash__(self) -> int:
        return hash(self.key)


# -- label selectors ---------------------------------------------------------------------------


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """metav1.LabelSelector: matchLabels AND every matchExpression; ``{}`` matches all."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        present = key in labels
        if op == "In":
            ok = present and labels[key] in values
        elif op == "NotIn":
            ok = not present or labels[key] not in values
        elif op == "Exists":
            ok = present
        elif op == "DoesNotExist":
            ok = not present
        else:
            raise InvalidPolicy(f"matchExpressions: unknown operator {op!r}")
        if not ok:
            return False
    return True


def _check_selector(path: str, selector: Any) -> None:
    if not isinstance(selector, Mapping):
        raise InvalidPolicy(f"{path}: must be an object")
    for i, expr in enumerate(selector.get("matchExpressions") or []):
        op, values = expr.get("operator"), expr.get("values") or []
        where = f"{path}.matchExpressions[{i}]"
        if op in ("In", "NotIn") and not values:
            raise InvalidPolicy(f"{where}.values: must be non-empty for {op}")
        if op in ("Exists", "DoesNotExist") and values:
            raise InvalidPolicy(f"{where}.values: must be empty for {op}")
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise InvalidPolicy(f"{where}.operator: unknown {op!r}")


# -- validation and defaulting (the API server's work) ---------------------------------------


def _normalize_port(path: str, port: Mapping[str, Any]) -> dict[str, Any]:
    protocol = port.get("protocol") or "TCP"
    if protocol not in PROTOCOLS:
        raise InvalidPolicy(f"{path}.protocol: {protocol!r} is not TCP, UDP or SCTP")
    value, end = port.get("port"), port.get("endPort")
    if isinstance(value, bool):
        raise InvalidPolicy(f"{path}.port: not a port")
    if isinstance(value, int) and not 1 <= value <= 65535:
        raise InvalidPolicy(f"{path}.port: {value} is outside 1-65535")
    if isinstance(value, str) and (len(value) > 15 or not _PORT_NAME.match(value)
                                   or "--" in value or not re.search("[a-z]", value)):  # fmt: skip
        raise InvalidPolicy(f"{path}.port: {value!r} is not a valid port name")
    if end is not None:
        if not isinstance(value, int):
            raise InvalidPolicy(f"{path}.endPort: needs a numeric port")
        if not isinstance(end, int) or isinstance(end, bool) or not value <= end <= 65535:
            raise InvalidPolicy(f"{path}.endPort: {end!r} must be >= port ({value})")
    return {"protocol": protocol, "port": value, "endPort": end}


def _normalize_peer(path: str, peer: Mapping[str, Any]) -> dict[str, Any]:
    given = [k for k in ("podSelector", "namespaceSelector", "ipBlock") if peer.get(k) is not None]
    if not given:
        raise InvalidPolicy(f"{path}: must set podSelector, namespaceSelector or ipBlock")
    if "ipBlock" in given and len(given) > 1:
        raise InvalidPolicy(f"{path}: ipBlock cannot be combined with a selector")
    if "ipBlock" in given:
        block = peer["ipBlock"]
        try:
            cidr = ipaddress.ip_network(block["cidr"], strict=False)
            excepts = [ipaddress.ip_network(e, strict=False) for e in block.get("except") or []]
        except (KeyError, ValueError) as exc:
            raise InvalidPolicy(f"{path}.ipBlock: {exc}") from None
        for e in excepts:
            if e.version != cidr.version or not e.subnet_of(cidr) or e == cidr:  # type: ignore[arg-type]
                raise InvalidPolicy(f"{path}.ipBlock.except: {e} is not strictly inside {cidr}")
        return {"ipBlock": (cidr, tuple(excepts))}
    for key in ("podSelector", "namespaceSelector"):
        if key in given:
            _check_selector(f"{path}.{key}", peer[key])
    return {k: peer[k] for k in given}


def normalize(policy: Mapping[str, Any]) -> dict[str, Any]:
    """A policy as the API server stores it: validated (``InvalidPolicy``) and
    defaulted.  Returns ``{namespace, name, podSelector, types, ingress, egress}``
    with rules as ``{"peers": [...] | None, "ports": [...] | None}`` (None: all)."""
    meta = policy.get("metadata") or {}
    spec = policy.get("spec") or {}
    name = meta.get("name") or "?"
    if "podSelector" not in spec:
        raise InvalidPolicy(f"{name}: spec.podSelector: required")
    _check_selector("spec.podSelector", spec["podSelector"])
    types = list(spec.get("policyTypes") or [])
    if not types:
        types = [INGRESS] + ([EGRESS] if spec.get("egress") else [])
    if len(types) > 2 or len(set(types)) != len(types) or not set(types) <= {INGRESS, EGRESS}:
        raise InvalidPolicy(f"{name}: spec.policyTypes: {types!r}")
    out: dict[str, Any] = {
        "namespace": meta.get("namespace") or "default", "name": name,
        "podSelector": spec["podSelector"], "types": tuple(types),
    }  # fmt: skip
    for direction, peers_key in (("ingress", "from"), ("egress", "to")):
        rules = []
        for i, rule in enumerate(spec.get(direction) or []):
            path = f"spec.{direction}[{i}]"
            peers = rule.get(peers_key) or None
            ports = rule.get("ports") or None
            rules.append({
                "peers": None if peers is None else [
                    _normalize_peer(f"{path}.{peers_key}[{j}]", p) for j, p in enumerate(peers)
                ],
                "ports": None if ports is None else [
                    _normalize_port(f"{path}.ports[{j}]", p) for j, p in enumerate(ports)
                ],
            })  # fmt: skip
        out[direction] = rules
    return out


# -- the engine ---------------------------------------------------------------------------------

Endpoint = Pod | str  # a pod, or an IP address outside the cluster


class Model:
    """Namespaces, pods and policies, and the verdicts they give."""

    def __init__(
        self,
        namespaces: Mapping[str, Mapping[str, str]],
        pods: Iterable[Pod],
        policies: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        self.namespaces = {n: {**labels, NAME_LABEL: n} for n, labels in namespaces.items()}
        self.pods = list(pods)
        self.policies = [normalize(p) for p in policies]

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        return self.namespaces.get(namespace, {NAME_LABEL: namespace})

    # -- which policies apply -----------------------------------------------------------------

    def selecting(self, pod: Pod, direction: str) -> list[dict[str, Any]]:
        """The policies that select ``pod`` and isolate it in ``direction``."""
        return [
            p for p in self.policies
            if direction in p["types"] and p["namespace"] == pod.namespace
            and selector_matches(p["podSelector"], pod.labels)
        ]  # fmt: skip

    def isolated(self, pod: Pod, direction: str) -> bool:
        return bool(self.selecting(pod, direction))

    # -- peers and ports ------------------------------------------------------------------------

    def _peer_matches(self, peer: Mapping[str, Any], policy_ns: str, other: Endpoint,
                      other_ip: str | None) -> bool:  # fmt: skip
        if "ipBlock" in peer:
            if other_ip is None:
                return False
            address = ipaddress.ip_address(other_ip)
            cidr, excepts = peer["ipBlock"]
            if address.version != cidr.version or address not in cidr:
                return False
            return not any(address in e for e in excepts)
        if not isinstance(other, Pod):
            return False  # selectors match pods only
        ns_sel = peer.get("namespaceSelector")
        pod_sel = peer.get("podSelector")
        if ns_sel is None:
            if other.namespace != policy_ns:
                return False
        elif not selector_matches(ns_sel, self.namespace_labels(other.namespace)):
            return False
        return pod_sel is None or selector_matches(pod_sel, other.labels)

    @staticmethod
    def _port_matches(entry: Mapping[str, Any], dst: Endpoint, protocol: str, port: int) -> bool:
        if entry["protocol"] != protocol:
            return False
        value, end = entry["port"], entry["endPort"]
        if value is None:
            return True
        if isinstance(value, int):
            return value == port if end is None else value <= port <= end
        if not isinstance(dst, Pod):
            return False  # a name resolves only against a pod's container ports
        return any(n == value and proto == protocol and p == port for n, proto, p in dst.ports)

    def _rule_matches(self, rule: Mapping[str, Any], policy_ns: str, peer: Endpoint, *,
                      peer_ip: str | None, dst: Endpoint, protocol: str,
                      port: int) -> bool:  # fmt: skip
        if rule["peers"] is not None and not any(
            self._peer_matches(p, policy_ns, peer, peer_ip) for p in rule["peers"]
        ):
            return False
        return rule["ports"] is None or any(
            self._port_matches(e, dst, protocol, port) for e in rule["ports"]
        )

    # -- verdicts -------------------------------------------------------------------------------

    def ingress_ok(self, src: Endpoint, dst: Endpoint, protocol: str, port: int,
                   src_ip: str | None = None) -> bool:  # fmt: skip
        if not isinstance(dst, Pod):
            return True
        policies = self.selecting(dst, INGRESS)
        if not policies:
            return True
        ip = src_ip or (src.ip if isinstance(src, Pod) else src)
        return any(
            self._rule_matches(rule, p["namespace"], src, peer_ip=ip, dst=dst,
                               protocol=protocol, port=port)
            for p in policies for rule in p["ingress"]
        )  # fmt: skip

    def egress_ok(self, src: Endpoint, dst: Endpoint, protocol: str, port: int,
                  dst_ip: str | None = None) -> bool:  # fmt: skip
        if not isinstance(src, Pod):
            return True
        policies = self.selecting(src, EGRESS)
        if not policies:
            return True
        ip = dst_ip or (dst.ip if isinstance(dst, Pod) else dst)
        return any(
            self._rule_matches(rule, p["namespace"], dst, peer_ip=ip, dst=dst,
                               protocol=protocol, port=port)
            for p in policies for rule in p["egress"]
        )  # fmt: skip

    def allowed(self, src: Endpoint, dst: Endpoint, protocol: str, port: int) -> bool:
        """Whether a new connection from ``src`` to ``dst`` on (protocol, port) is allowed."""
        return self.ingress_ok(src, dst, protocol, port) and self.egress_ok(
            src, dst, protocol, port
        )

    def matrix(self, protocol: str, port: int, pods: Sequence[Pod] | None = None
               ) -> dict[tuple[str, str], bool]:  # fmt: skip
        """Every ordered pair (not the diagonal): (src key, dst key) -> allowed."""
        pods = self.pods if pods is None else pods
        return {
            (s.key, d.key): self.allowed(s, d, protocol, port)
            for s in pods for d in pods if s is not d
        }  # fmt: skip

