"""The values the policy agent works on: Kubernetes NetworkPolicy (networking.k8s.io/v1),
pods and namespaces, as small frozen types built from the stored resources.

The resources are validated at the edge (``bgpd.resources.models_k8s``, as the API
server validates them); these constructors take the stored, canonical dicts and
keep only what enforcement needs.  The API server's defaulting (POLICY.md §1.2;
pkg/apis/networking/v1/defaults.go) is applied again here, so that a record
written by hand without it means what the API server would have made of it:
empty ``policyTypes`` is ``[Ingress]``, plus ``Egress`` when there are egress
rules; a port without a protocol is TCP.

Meaning (POLICY.md §1; staging/src/k8s.io/api/networking/v1/types.go):

* ``Policy.ingress`` is None when the policy does not isolate for ingress, else
  its rules (an empty tuple isolates and allows nothing);
* ``Rule.peers`` empty means every source (or destination), external ones too;
  ``Rule.ports`` empty means every port and protocol;
* a ``Peer`` has a pod selector, a namespace selector, both (AND), or an IP block.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Protocols NetworkPolicy defines (types.go: Protocol), and nft's names for them.
PROTOCOLS = ("TCP", "UDP", "SCTP")
#: The label the control plane puts on every namespace (KEP-2161).
NAME_LABEL = "kubernetes.io/metadata.name"

PodKey = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True, slots=True)
class Requirement:
    """One ``matchExpressions`` entry (apimachinery labels.Requirement).

    NotIn and DoesNotExist match an object that lacks the key."""

    key: str
    operator: str  # In, NotIn, Exists, DoesNotExist
    values: frozenset[str]

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        if self.operator == "In":
            return value is not None and value in self.values
        if self.operator == "NotIn":
            return value is None or value not in self.values
        if self.operator == "Exists":
            return value is not None
        return value is None


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """metav1.LabelSelector: every ``matchLabels`` pair and every expression must
    hold; an empty selector matches everything."""

    labels: tuple[tuple[str, str], ...] = ()
    expressions: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        for key, value in self.labels:
            if labels.get(key) != value:
                return False
        return all(r.matches(labels) for r in self.expressions)

    @property
    def empty(self) -> bool:
        return not self.labels and not self.expressions

    def text(self) -> str:
        """kubectl's rendering: ``app=web,tier in (a,b),!legacy``; ``<all>`` when empty."""
        parts = [f"{k}={v}" for k, v in self.labels]
        for r in self.expressions:
            values = ",".join(sorted(r.values))
            parts.append({"In": f"{r.key} in ({values})", "NotIn": f"{r.key} notin ({values})",
                          "Exists": r.key, "DoesNotExist": f"!{r.key}"}[r.operator])  # fmt: skip
        return ",".join(parts) if parts else "<all>"


@dataclass(frozen=True, slots=True)
class IpBlock:
    """``cidr`` minus the ``excepts`` (each a strict subset; same family)."""

    cidr: str
    excepts: tuple[str, ...]

    @property
    def family(self) -> int:
        return 6 if ":" in self.cidr else 4


@dataclass(frozen=True, slots=True)
class Peer:
    pods: LabelSelector | None = None
    namespaces: LabelSelector | None = None
    ip_block: IpBlock | None = None


@dataclass(frozen=True, slots=True)
class Port:
    """A port entry: ``port`` None is every port of the protocol; ``name`` a named
    port (resolved against the destination pod's container ports); ``end``
    the inclusive end of a range."""

    protocol: str
    port: int | None = None
    end: int | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    peers: tuple[Peer, ...]
    ports: tuple[Port, ...]


@dataclass(frozen=True, slots=True)
class Policy:
    namespace: str
    name: str
    selector: LabelSelector
    ingress: tuple[Rule, ...] | None
    egress: tuple[Rule, ...] | None

    @property
    def key(self) -> PodKey:
        return (self.namespace, self.name)


@dataclass(frozen=True, slots=True)
class ContainerPort:
    name: str
    protocol: str
    port: int


@dataclass(frozen=True, slots=True)
class Pod:
    namespace: str
    name: str
    labels: Mapping[str, str]
    ips: tuple[str, ...]
    ports: tuple[ContainerPort, ...] = ()
    host_network: bool = False

    @property
    def key(self) -> PodKey:
        return (self.namespace, self.name)

    def named_port(self, name: str, protocol: str) -> int | None:
        for p in self.ports:
            if p.name == name and p.protocol == protocol:
                return p.port
        return None


def selector_from(value: Mapping[str, Any] | None) -> LabelSelector:
    if not value:
        return LabelSelector()
    labels = tuple(sorted((value.get("matchLabels") or {}).items()))
    expressions = tuple(
        sorted(
            (Requirement(e["key"], e["operator"], frozenset(e.get("values") or ()))
             for e in value.get("matchExpressions") or ()),
            key=lambda r: (r.key, r.operator, sorted(r.values)),
        )
    )  # fmt: skip
    return LabelSelector(labels, expressions)


def _peer(value: Mapping[str, Any]) -> Peer:
    block = value.get("ipBlock")
    if block:
        return Peer(ip_block=IpBlock(block["cidr"], tuple(block.get("except") or ())))
    pods = value.get("podSelector")
    namespaces = value.get("namespaceSelector")
    return Peer(
        pods=None if pods is None else selector_from(pods),
        namespaces=None if namespaces is None else selector_from(namespaces),
    )


def _port(value: Mapping[str, Any]) -> Port:
    protocol = value.get("protocol") or "TCP"
    port = value.get("port")
    if isinstance(port, str):
        return Port(protocol, name=port)
    end = value.get("endPort")
    return Port(
        protocol, port, end if port is not None and end is not None and end > port else None
    )


def _rules(rules: list[Mapping[str, Any]] | None, peers_key: str) -> tuple[Rule, ...]:
    return tuple(
        Rule(
            tuple(_peer(p) for p in r.get(peers_key) or ()),
            tuple(_port(p) for p in r.get("ports") or ()),
        )
        for r in rules or ()
    )


def policy_types(spec: Mapping[str, Any]) -> tuple[bool, bool]:
    """(ingress, egress) after the API server's defaulting (defaults.go
    SetDefaults_NetworkPolicySpec)."""
    types = spec.get("policyTypes") or []
    if not types:
        return True, bool(spec.get("egress"))
    return "Ingress" in types, "Egress" in types


def policy_from(value: Mapping[str, Any]) -> Policy:
    """A Policy from a stored NetworkPolicy object."""
    meta = value["metadata"]
    spec = value.get("spec") or {}
    ingress, egress = policy_types(spec)
    return Policy(
        namespace=meta.get("namespace") or "default",
        name=meta["name"],
        selector=selector_from(spec.get("podSelector")),
        ingress=_rules(spec.get("ingress"), "from") if ingress else None,
        egress=_rules(spec.get("egress"), "to") if egress else None,
    )


def container_ports(spec: Mapping[str, Any]) -> tuple[ContainerPort, ...]:
    out = []
    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        for p in container.get("ports") or ():
            if p.get("name"):
                out.append(ContainerPort(p["name"], p.get("protocol") or "TCP", p["containerPort"]))
    return tuple(out)


def pod_from(
    value: Mapping[str, Any] | None, namespace: str, name: str, ips: tuple[str, ...]
) -> Pod:
    """A Pod from its stored object (None: a pod the CNI plugin knows but that has
    no Pod resource: no labels, no named ports) and the addresses of its
    endpoints (the pod's ``status.podIPs`` when it has none)."""
    if value is None:
        return Pod(namespace, name, {}, ips)
    meta = value.get("metadata") or {}
    spec = value.get("spec") or {}
    if not ips:
        status = value.get("status") or {}
        ips = tuple(p["ip"] for p in status.get("podIPs") or () if p.get("ip"))
        if not ips and status.get("podIP"):
            ips = (status["podIP"],)
    return Pod(
        namespace, name, dict(meta.get("labels") or {}), ips, container_ports(spec),
        bool(spec.get("hostNetwork")),
    )  # fmt: skip


def namespace_labels(name: str, value: Mapping[str, Any] | None) -> dict[str, str]:
    labels = dict(((value or {}).get("metadata") or {}).get("labels") or {})
    labels[NAME_LABEL] = name
    return labels
