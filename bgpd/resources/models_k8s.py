"""The Kubernetes kinds the NetworkPolicy agent reads: NetworkPolicy
(``networking.k8s.io/v1``), Namespace and Pod (``v1``), validated as the
Kubernetes API server validates them and defaulted as it defaults them
(POLICY.md §1.2-1.3), so that the agent reads plain, complete dicts.

Sources (kubernetes/kubernetes):

* ``pkg/apis/networking/validation/validation.go``: ValidateNetworkPolicySpec,
  ValidateNetworkPolicyPeer, ValidateNetworkPolicyPort, ValidateIPBlock;
* ``pkg/apis/networking/v1/defaults.go``: policyTypes and ports[].protocol;
* ``staging/src/k8s.io/apimachinery/pkg/apis/meta/v1/validation/validation.go``:
  ValidateLabelSelector, ValidateLabelSelectorRequirement;
* ``staging/src/k8s.io/apimachinery/pkg/util/validation/validation.go``:
  IsValidPortName, IsValidPortNum, IsDNS1123Label;
* ``pkg/apis/core/validation/validation.go``: validateContainerPorts,
  validatePodIPs; ``pkg/apis/core/v1/defaults.go`` (container port protocol);
  ``pkg/apis/core/v1/conversion.go`` (podIP and podIPs);
* ``pkg/registry/core/namespace/strategy.go`` (Canonicalize): the
  ``kubernetes.io/metadata.name`` label the API server puts on every namespace.

Canonical (stored) forms, as ``dump`` gives them::

    NetworkPolicy  apiVersion, kind, metadata {name, namespace, labels?, annotations?}
                   spec {podSelector, policyTypes (always: defaulted),
                         ingress? [{ports? [{protocol (default TCP), port?, endPort?}],
                                    from? [peer]}],
                         egress?  [{ports?, to? [peer]}]}
                   peer: {podSelector?, namespaceSelector?} or {ipBlock {cidr, except?}}
                   selector: {matchLabels?, matchExpressions? [{key, operator, values?}]}
    Namespace      metadata {name, labels (with kubernetes.io/metadata.name), annotations?}
    Pod            metadata {name, namespace, labels?, annotations?}
                   spec {nodeName?, hostNetwork? (only true), containers? [c],
                         initContainers? [c]}
                   c: {name, ports? [{name?, containerPort, protocol (default TCP),
                                      hostPort?, hostIP?}]}
                   status? {podIP, podIPs [{ip}]}   (podIP is podIPs[0].ip)

``ingress``/``egress`` are kept as given (missing and ``[]`` both mean "no
rules"); an empty ``from``/``to``/``ports`` is left out (missing and empty both
mean "match all").  A selector that was given is always written, ``{}`` included
(``namespaceSelector: {}`` is every namespace).

Unknown fields are refused on NetworkPolicy, Namespace's metadata and a
container port, as ``kubectl apply`` (strict field validation) refuses them.  A
Pod is different: operators apply real pod manifests (image, command,
resources, volumes, probes, ...), so a pod's spec, its containers and its status
accept any other field and drop it; only what is stored is validated.

Where this is stricter than the API server, on purpose: a policyType given twice
is refused; a NetworkPolicy needs a ``spec`` with a ``podSelector`` (``{}`` for
every pod; a missing one is more likely a mistake than a wish for deny-all); a
container port name must be unique in the whole pod, not only in its container
(Kubernetes only warns), so that a named port in a policy resolves to one port.
Laxer: a pod needs no containers (test pods often give only ``nodeName`` and
``status``); host bits in an ipBlock CIDR are accepted (as the API server does
while the StrictIPCIDRValidation gate is off) and kept as given.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, ConfigDict, Field, model_validator

from .models_base import (
    _QUALIFIED_NAME,
    LABEL_MAX,
    UNSET,
    Labels,
    Metadata,
    Model,
    OptName,
    Problems,
    Resource,
    _qualified_name_problem,
    check_dns_name,
    problem,
    type_name,
)
from .models_values import IP, Flag, ip_family, is_int, parse_network

NETWORKING_V1 = "networking.k8s.io/v1"
CORE_V1 = "v1"
DEFAULT_NAMESPACE = "default"
#: The label the control plane puts on every namespace (value: its name).
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
PORT_MAX = 65535
PORT_NAME_MAX = 15
PROTOCOLS = ("TCP", "UDP", "SCTP")

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_PORT_NAME_CHARS = re.compile(r"^[-a-z0-9]+$")
_PORT_NAME_LETTER = re.compile(r"[a-z]")


# -- values ----------------------------------------------------------------------------------


def check_dns_label(value: str) -> str:
    """IsDNS1123Label: a namespace's name, a container's name."""
    return check_dns_name(value, _DNS_LABEL, LABEL_MAX, "lower case letters, digits and '-'")


def _dns_label(value: object) -> object:
    return check_dns_label(value) if isinstance(value, str) else value


def port_name_problems(name: str) -> list[str]:
    """IsValidPortName (an IANA_SVC_NAME): why ``name`` is not a port name."""
    out = []
    if not 1 <= len(name) <= PORT_NAME_MAX:
        out.append(f"must be 1-{PORT_NAME_MAX} characters")
    if not _PORT_NAME_CHARS.match(name):
        out.append("must contain only lower case letters (a-z), digits (0-9) and '-'")
    if not _PORT_NAME_LETTER.search(name):
        out.append("must contain at least one letter (a-z)")
    if "--" in name:
        out.append("must not contain consecutive hyphens")
    if name.startswith("-") or name.endswith("-"):
        out.append("must not begin or end with a hyphen")
    return out


def _port_name(value: object) -> object:
    if isinstance(value, str):
        why = port_name_problems(value)
        if why:
            raise ValueError(f"{value!r} is not a port name: {', '.join(why)}")
    return value


def _port_number(value: object) -> object:
    """IsValidPortNum."""
    if is_int(value) and not 1 <= value <= PORT_MAX:  # type: ignore[operator]
        raise ValueError(f"{value} must be between 1 and {PORT_MAX}, inclusive")
    return value


def _port(value: object) -> object:
    """A NetworkPolicyPort's port: an IntOrString, a number or a port name."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"must be a port number or a port name, not {type_name(value)}")
    return _port_name(value) if isinstance(value, str) else _port_number(value)


def _label_key(value: object) -> object:
    if isinstance(value, str):
        why = _qualified_name_problem(value)
        if why:
            raise ValueError(f"label key {why}")
    return value


def _label_value(value: object) -> object:
    if isinstance(value, str) and value and (
        len(value) > LABEL_MAX or not _QUALIFIED_NAME.match(value)
    ):
        raise ValueError(
            f"{value!r} is not a label value: at most {LABEL_MAX} letters, digits, '-', '_' "
            "or '.', starting and ending with a letter or digit"
        )
    return value


def _cidr(value: object) -> object:
    """An IP network with its prefix length; host bits allowed, as Kubernetes'
    legacy CIDR fields allow them (``IsValidCIDRForLegacyField``)."""
    if value == "":
        raise ValueError("required")
    if isinstance(value, str):
        parse_network(value, strict=False, need_length=True)
    return value


DnsLabel = Annotated[str, BeforeValidator(_dns_label)]
PortNumber = Annotated[int, BeforeValidator(_port_number)]
LabelKey = Annotated[str, BeforeValidator(_label_key)]
LabelValue = Annotated[str, BeforeValidator(_label_value)]
CIDR = Annotated[str, BeforeValidator(_cidr)]


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return parse_network(text, strict=False, need_length=True)


# -- label selectors ---------------------------------------------------------------------------


class LabelSelectorRequirement(Model):
    key: LabelKey
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[LabelValue] | None = None

    @model_validator(mode="after")
    def _values(self) -> LabelSelectorRequirement:
        if self.operator in ("In", "NotIn") and not self.values:
            raise problem("values", "must be specified when operator is In or NotIn")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise problem("values", "may not be specified when operator is Exists or "
                          "DoesNotExist")  # fmt: skip
        return self

    def dump(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "operator": self.operator}
        if self.values:
            out["values"] = list(self.values)
        return out


class LabelSelector(Model):
    """metav1.LabelSelector: every matchLabels pair and every expression must hold
    (``{}`` selects everything)."""

    match_labels: Labels | None = Field(default=None, alias="matchLabels")
    match_expressions: list[LabelSelectorRequirement] | None = Field(
        default=None, alias="matchExpressions"
    )

    def dump(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.match_labels:
            out["matchLabels"] = dict(self.match_labels)
        if self.match_expressions:
            out["matchExpressions"] = [e.dump() for e in self.match_expressions]
        return out


def describe_selector(selector: dict[str, Any]) -> str:
    """A stored selector as kubectl prints one (``app=x,tier in (a,b)``), or
    ``<none>`` for ``{}``."""
    parts = [f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items()]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
        else:
            parts.append(f"{key} {'in' if op == 'In' else 'notin'} ({','.join(values)})")
    return ",".join(parts) or "<none>"


# -- NetworkPolicy -----------------------------------------------------------------------------


class IPBlock(Model):
    """``cidr`` minus each ``except``; each except a strict subset of cidr
    (ValidateIPBlock), hence of the same family."""

    cidr: CIDR
    except_: list[CIDR] | None = Field(default=None, alias="except")

    @model_validator(mode="after")
    def _subsets(self) -> IPBlock:
        cidr = _network(self.cidr)
        found = []
        for i, text in enumerate(self.except_ or []):
            network = _network(text)
            if network.version != cidr.version:
                found.append((f"except[{i}]", f"{text} is not IPv{cidr.version} as cidr "
                              f"{self.cidr} is"))  # fmt: skip
            elif not (network.subnet_of(cidr) and network.prefixlen > cidr.prefixlen):  # type: ignore[arg-type]
                found.append((f"except[{i}]", f"{text} must be a strict subset of cidr "
                              f"{self.cidr}"))  # fmt: skip
        if found:
            raise Problems(found)
        return self

    def dump(self) -> dict[str, Any]:
        out: dict[str, Any] = {"cidr": self.cidr}
        if self.except_:
            out["except"] = list(self.except_)
        return out


class NetworkPolicyPeer(Model):
    """podSelector and/or namespaceSelector (both: AND), or ipBlock alone
    (ValidateNetworkPolicyPeer)."""

    pod_selector: LabelSelector | None = Field(default=None, alias="podSelector")
    namespace_selector: LabelSelector | None = Field(default=None, alias="namespaceSelector")
    ip_block: IPBlock | None = Field(default=None, alias="ipBlock")

    @model_validator(mode="after")
    def _one_kind(self) -> NetworkPolicyPeer:
        given = [f for f in (self.pod_selector, self.namespace_selector, self.ip_block) if f]
        if not given:
            raise problem("", "must specify a peer: podSelector, namespaceSelector or ipBlock")
        if self.ip_block is not None and len(given) > 1:
            raise problem("ipBlock", "may not specify both ipBlock and another peer")
        return self

    def dump(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.pod_selector is not None:
            out["podSelector"] = self.pod_selector.dump()
        if self.namespace_selector is not None:
            out["namespaceSelector"] = self.namespace_selector.dump()
        if self.ip_block is not None:
            out["ipBlock"] = self.ip_block.dump()
        return out


class NetworkPolicyPort(Model):
    """A protocol (default TCP) and a port: a number (with ``endPort``, a range,
    inclusive) or the name of a container port (ValidateNetworkPolicyPort)."""

    protocol: Literal["TCP", "UDP", "SCTP"] | None = None
    port: Annotated[int | str | None, BeforeValidator(_port)] = None
    end_port: PortNumber | None = Field(default=None, alias="endPort")

    @model_validator(mode="after")
    def _end_port(self) -> NetworkPolicyPort:
        if self.end_port is None:
            return self
        if self.port is None:
            raise problem("endPort", "may not be specified when port is not specified")
        if isinstance(self.port, str):
            raise problem("endPort", "may not be specified when port is non-numeric")
        if self.end_port < self.port:
            raise problem("endPort", "must be greater than or equal to port")
        return self

    def dump(self) -> dict[str, Any]:
        out: dict[str, Any] = {"protocol": self.protocol or "TCP"}
        if self.port is not None:
            out["port"] = self.port
        if self.end_port is not None:
            out["endPort"] = self.end_port
        return out


def _rule(ports: list[NetworkPolicyPort] | None, peers_key: str,
          peers: list[NetworkPolicyPeer] | None) -> dict[str, Any]:  # fmt: skip
    out: dict[str, Any] = {}
    if ports:
        out["ports"] = [p.dump() for p in ports]
    if peers:
        out[peers_key] = [p.dump() for p in peers]
    return out


class NetworkPolicyIngressRule(Model):
    ports: list[NetworkPolicyPort] | None = None
    from_: list[NetworkPolicyPeer] | None = Field(default=None, alias="from")

    def dump(self) -> dict[str, Any]:
        return _rule(self.ports, "from", self.from_)


class NetworkPolicyEgressRule(Model):
    ports: list[NetworkPolicyPort] | None = None
    to: list[NetworkPolicyPeer] | None = None

    def dump(self) -> dict[str, Any]:
        return _rule(self.ports, "to", self.to)


class NetworkPolicySpec(Model):
    pod_selector: LabelSelector = Field(alias="podSelector")
    ingress: list[NetworkPolicyIngressRule] | None = None
    egress: list[NetworkPolicyEgressRule] | None = None
    policy_types: list[Literal["Ingress", "Egress"]] | None = Field(
        default=None, alias="policyTypes"
    )

    @model_validator(mode="after")
    def _policy_types(self) -> NetworkPolicySpec:
        types = self.policy_types or []
        if len(types) > 2:
            raise problem("policyTypes", "may not specify more than two policyTypes")
        if len(types) == 2 and types[0] == types[1]:
            raise problem("policyTypes[1]", f"{types[1]!r} is given twice")
        return self

    def effective_policy_types(self) -> list[str]:
        """defaults.go: as given; when empty, Ingress, and Egress if there are
        egress rules."""
        if self.policy_types:
            return list(self.policy_types)
        return ["Ingress", "Egress"] if self.egress else ["Ingress"]

    def dump(self) -> dict[str, Any]:
        out: dict[str, Any] = {"podSelector": self.pod_selector.dump(),
                               "policyTypes": self.effective_policy_types()}  # fmt: skip
        if self.ingress is not None:
            out["ingress"] = [r.dump() for r in self.ingress]
        if self.egress is not None:
            out["egress"] = [r.dump() for r in self.egress]
        return out


# -- the envelopes -----------------------------------------------------------------------------


def _namespace(value: object) -> object:
    return DEFAULT_NAMESPACE if value in (None, "") else _dns_label(value)


class NamespacedMetadata(Metadata):
    """ObjectMeta of a namespaced kind: the namespace a DNS label, "default" when
    not given."""

    namespace: Annotated[str, BeforeValidator(_namespace)] = DEFAULT_NAMESPACE


class K8sResource(Resource):
    """A Kubernetes kind: its own apiVersion(s); namespaced or not."""

    API_VERSIONS: ClassVar[tuple[str, ...]] = ()
    NAMESPACED: ClassVar[bool] = False

    def _metadata(self) -> dict[str, Any]:
        meta = self.metadata.dump()
        out: dict[str, Any] = {"name": meta.pop("name")}
        if self.NAMESPACED:
            out["namespace"] = self.metadata.namespace
        return {**out, **meta}

    def _body(self) -> dict[str, Any]:
        return {}

    def dump(self) -> dict[str, Any]:
        return {"apiVersion": self.API_VERSIONS[0], "kind": self.KIND,
                "metadata": self._metadata(), **self._body()}  # fmt: skip


class NamespacedResource(K8sResource):
    NAMESPACED: ClassVar[bool] = True
    metadata: NamespacedMetadata

    @property
    def namespace(self) -> str:
        return self.metadata.namespace or DEFAULT_NAMESPACE

    def __str__(self) -> str:
        return f'{self.KIND} "{self.namespace}/{self.name}"'

    @model_validator(mode="after")
    def _not_namespaced(self) -> NamespacedResource:
        """Replaces the cluster-scoped kinds' check of the same name."""
        return self


class NetworkPolicy(NamespacedResource):
    """networking.k8s.io/v1 NetworkPolicy, defaulted (policyTypes, protocol)."""

    KIND = "NetworkPolicy"
    API_VERSIONS = (NETWORKING_V1,)
    spec: NetworkPolicySpec

    def _body(self) -> dict[str, Any]:
        return {"spec": self.spec.dump()}


class NamespaceMetadata(Metadata):
    name: DnsLabel


class Namespace(K8sResource):
    """v1 Namespace: its name and labels.  The stored labels always carry
    ``kubernetes.io/metadata.name: <name>``, overwriting a given value, as the API
    server does; spec (finalizers) and status (phase) are accepted and dropped."""

    KIND = "Namespace"
    API_VERSIONS = (CORE_V1,)
    metadata: NamespaceMetadata
    spec: Any = Field(default=None, exclude=True)

    def _metadata(self) -> dict[str, Any]:
        out = super()._metadata()
        labels = {**out.pop("labels", {}), NAMESPACE_NAME_LABEL: self.name}
        return {"name": out.pop("name"), "labels": labels, **out}


# -- Pod -------------------------------------------------------------------------------------


class _Open(Model):
    """Accepts and drops fields it does not name (the rest of a real manifest)."""

    model_config = ConfigDict(extra="ignore")


def _zero_is_unset(value: object) -> object:
    return None if value == 0 and is_int(value) else value


def _required_port(value: object) -> object:
    if value == 0 and is_int(value):
        raise ValueError("required")
    return _port_number(value)


class ContainerPort(Model):
    """validateContainerPorts; protocol defaults to TCP (core/v1 defaults.go)."""

    name: Annotated[str | None, BeforeValidator(_port_name), UNSET] = None
    container_port: Annotated[int, BeforeValidator(_required_port)] = Field(
        alias="containerPort"
    )
    protocol: Annotated[Literal["TCP", "UDP", "SCTP"] | None, UNSET] = None
    host_port: Annotated[int | None, BeforeValidator(_port_number),
                         BeforeValidator(_zero_is_unset)] = Field(
        default=None, alias="hostPort")  # fmt: skip
    host_ip: IP = Field(default=None, alias="hostIP")

    def dump(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.name:
            out["name"] = self.name
        out["containerPort"] = self.container_port
        out["protocol"] = self.protocol or "TCP"
        if self.host_port:
            out["hostPort"] = self.host_port
        if self.host_ip:
            out["hostIP"] = self.host_ip
        return out


class Container(_Open):
    name: DnsLabel
    ports: list[ContainerPort] | None = None

    def dump(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.ports:
            out["ports"] = [p.dump() for p in self.ports]
        return out


class PodSpec(_Open):
    node_name: OptName = Field(default=None, alias="nodeName")
    host_network: Flag = Field(default=None, alias="hostNetwork")
    containers: list[Container] | None = None
    init_containers: list[Container] | None = Field(default=None, alias="initContainers")

    @model_validator(mode="after")
    def _unique(self) -> PodSpec:
        """Container names are unique in the pod (validateContainers); so are port
        names, so that a named port in a policy means one port."""
        found: list[tuple[str, str]] = []
        names: set[str] = set()
        ports: dict[str, str] = {}
        for field, containers in (("initContainers", self.init_containers),
                                  ("containers", self.containers)):  # fmt: skip
            for i, container in enumerate(containers or []):
                where = f"{field}[{i}]"
                if container.name in names:
                    found.append((f"{where}.name", f"{container.name!r} is given twice"))
                names.add(container.name)
                for j, port in enumerate(container.ports or []):
                    if not port.name:
                        continue
                    if port.name in ports:
                        found.append((f"{where}.ports[{j}].name", f"{port.name!r} is given "
                                      f"twice (also {ports[port.name]})"))  # fmt: skip
                    else:
                        ports[port.name] = f"spec.{where}.ports[{j}]"
        if found:
            raise Problems(found)
        return self

    def dump(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.node_name:
            out["nodeName"] = self.node_name
        if self.host_network:
            out["hostNetwork"] = True
        if self.containers:
            out["containers"] = [c.dump() for c in self.containers]
        if self.init_containers:
            out["initContainers"] = [c.dump() for c in self.init_containers]
        return out


def _address(value: object) -> object:
    if value == "":
        raise ValueError("required")
    if isinstance(value, str):
        ip_family(value)
    return value


class PodIP(Model):
    ip: Annotated[str, BeforeValidator(_address)]


class PodStatus(_Open):
    """The pod's addresses; the rest of a status (phase, conditions, ...) is
    dropped.  podIP and podIPs are made consistent as core/v1 conversion.go does:
    podIP wins when both are given and differ; podIPs[0] is podIP."""

    pod_ip: IP = Field(default=None, alias="podIP")
    pod_ips: list[PodIP] | None = Field(default=None, alias="podIPs")

    def addresses(self) -> list[str]:
        ips = [p.ip for p in self.pod_ips or []]
        if self.pod_ip and (not ips or ips[0] != self.pod_ip):
            return [self.pod_ip]
        return ips

    @model_validator(mode="after")
    def _dual_stack(self) -> PodStatus:
        """validatePodIPs: more than one address only as one of each family."""
        ips = self.addresses()
        if len(ips) > 1:
            families = [ipaddress.ip_address(ip).version for ip in ips]
            if len(ips) > 2 or families[0] == families[1]:
                raise problem("podIPs", "may specify no more than one IP for each IP family")
        return self

    def dump(self) -> dict[str, Any]:
        ips = self.addresses()
        return {"podIP": ips[0], "podIPs": [{"ip": ip} for ip in ips]} if ips else {}


class Pod(NamespacedResource):
    """v1 Pod: where it runs, its container ports (for named ports) and its
    addresses.  ``status`` None: the applied document had none (a stored pod's
    status is then kept, as for a Node)."""

    KIND = "Pod"
    API_VERSIONS = (CORE_V1,)
    spec: PodSpec = Field(default_factory=PodSpec)
    status: PodStatus | None = None

    def _body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"spec": self.spec.dump()}
        status = self.status.dump() if self.status is not None else {}
        if status:
            out["status"] = status
        return out


#: The kinds here, by name.
K8S_KINDS: dict[str, type[K8sResource]] = {m.KIND: m for m in (NetworkPolicy, Namespace, Pod)}
