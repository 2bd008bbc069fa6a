"""BGPConfiguration, BGPPeer and BGPFilter (CALICO.md §2.1, §2.2, §2.5), with the
rules of Calico's validator (libcalico-go ``validator/v3``), its client
(``clientv3/bgpconfig.go``) and the CRDs' CEL rules.

BGPConfiguration defaults.  Calico keeps only what was written and applies its
defaults when reading (confd: AS 64512, mesh on, log level info).  Here the
``default`` object is stored with those defaults filled in (logSeverityScreen
Info, nodeToNodeMeshEnabled true, asNumber 64512, listenPort 179, bindMode None,
serviceLoadBalancerAggregation Enabled), so that what ``get`` shows is what is in
force.  A per-node ``node.<name>`` object gets none: an unset field there means
"as in default", and filling it would override the global value.

BGPPeer defaults: sourceAddress UseNodeIP and reversePeering Auto.  nextHopMode
stays unset when not given: "Auto" would conflict with a (deprecated)
keepOriginalNextHop: true, which Calico honours only while nextHopMode is unset.
"""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal

from pydantic import BeforeValidator, Field, model_validator

from .models_base import INT32_MAX, UNSET, Model, Name, OptName, Problems, Resource, problem
from .models_values import (
    IP,
    ASNumber,
    Duration,
    Flag,
    IPv4,
    IPv6,
    Net,
    NetV4,
    NetV6,
    Password,
    Selector,
    community_problem,
    in_range,
    ip_family,
)

DEFAULT_AS = 64512
DEFAULT_PORT = 179
LOG_LEVELS = ("Trace", "Debug", "Info", "Warning", "Error", "Fatal")
_IPV4_PORT = re.compile(r"^([0-9]+\.[0-9]+\.[0-9]+\.[0-9]+):([0-9]+)$")
_IPV6_PORT = re.compile(r"^\[([0-9a-fA-F:.]+)\]:([0-9]+)$")
_INTERFACE = re.compile(r"^[a-zA-Z0-9_.*-]{1,15}$")


# -- BGPConfiguration ------------------------------------------------------------------------


def _log_level(value: object) -> object:
    """Calico's CRD takes the level in any case; kept in Calico's spelling."""
    if value == "":
        return None
    if isinstance(value, str):
        for level in LOG_LEVELS:
            if value.lower() == level.lower():
                return level
        raise ValueError(f"{value!r} is not one of {', '.join(LOG_LEVELS)}")
    return value


def _interface_names(value: object) -> object:
    if isinstance(value, list):
        for name in value:
            if isinstance(name, str) and (name == "*" or not _INTERFACE.match(name)):
                raise ValueError(
                    f"{name!r} is not an interface name: 1-15 of letters, digits, "
                    "'_', '.', '-' and '*' (not '*' alone)"
                )
    return value


LogLevel = Annotated[
    Literal["Trace", "Debug", "Info", "Warning", "Error", "Fatal"] | None,
    BeforeValidator(_log_level),
]


class ServiceIPBlock(Model):
    cidr: Net


class Community(Model):
    name: Name
    value: str


class PrefixAdvertisement(Model):
    cidr: Net
    communities: list[str] = Field(min_length=1)


class BGPConfigurationSpec(Model):
    log_severity_screen: LogLevel = Field(default=None, alias="logSeverityScreen")
    node_to_node_mesh_enabled: bool | None = Field(default=None, alias="nodeToNodeMeshEnabled")
    as_number: ASNumber = Field(default=None, alias="asNumber")
    service_load_balancer_ips: list[ServiceIPBlock] | None = Field(
        default=None, alias="serviceLoadBalancerIPs"
    )
    service_external_ips: list[ServiceIPBlock] | None = Field(
        default=None, alias="serviceExternalIPs"
    )
    service_cluster_ips: list[ServiceIPBlock] | None = Field(
        default=None, alias="serviceClusterIPs"
    )
    communities: list[Community] | None = None
    prefix_advertisements: list[PrefixAdvertisement] | None = Field(
        default=None, alias="prefixAdvertisements"
    )
    listen_port: Annotated[int | None, in_range(1, 65535)] = Field(default=None, alias="listenPort")
    node_mesh_password: Password | None = Field(default=None, alias="nodeMeshPassword")
    node_mesh_max_restart_time: Duration = Field(
        default=None, alias="nodeMeshMaxRestartTime"
    )
    bind_mode: Annotated[Literal["None", "NodeIP"] | None, UNSET] = Field(
        default=None, alias="bindMode"
    )
    ignored_interfaces: Annotated[list[str] | None, BeforeValidator(_interface_names)] = Field(
        default=None, alias="ignoredInterfaces"
    )
    service_load_balancer_aggregation: Annotated[
        Literal["Enabled", "Disabled"] | None, UNSET
    ] = Field(default=None, alias="serviceLoadBalancerAggregation")
    local_workload_peering_ipv4: IPv4 = Field(
        default=None, alias="localWorkloadPeeringIPV4"
    )
    local_workload_peering_ipv6: IPv6 = Field(
        default=None, alias="localWorkloadPeeringIPV6"
    )

    @model_validator(mode="after")
    def _rules(self) -> BGPConfigurationSpec:
        found: list[tuple[str, str]] = []
        communities = self.communities or []
        for i, community in enumerate(communities):
            why = community_problem(community.value)
            if why:
                found.append((f"communities[{i}].value", why))
        if communities and not self.prefix_advertisements:
            found.append(("communities", "defined but not used in prefixAdvertisements"))
        names = {c.name for c in communities}
        for i, advert in enumerate(self.prefix_advertisements or []):
            for j, value in enumerate(advert.communities):
                if value not in names and community_problem(value):
                    found.append((
                        f"prefixAdvertisements[{i}].communities[{j}]",
                        f"{value!r} is neither a community value (aa:nn or aa:nn:mm) "
                        "nor the name of one in communities",
                    ))  # fmt: skip
        if self.node_to_node_mesh_enabled is False:
            if self.node_mesh_password is not None:
                found.append(("nodeMeshPassword", "cannot be set when nodeToNodeMeshEnabled "
                              "is false"))  # fmt: skip
            if self.node_mesh_max_restart_time is not None:
                found.append(("nodeMeshMaxRestartTime", "cannot be set when "
                              "nodeToNodeMeshEnabled is false"))  # fmt: skip
        if found:
            raise Problems(found)
        return self


#: Fields only the ``default`` BGPConfiguration may set (clientv3/bgpconfig.go).
DEFAULT_ONLY = (
    ("nodeToNodeMeshEnabled", "node_to_node_mesh_enabled"),
    ("asNumber", "as_number"),
    ("serviceLoadBalancerIPs", "service_load_balancer_ips"),
    ("serviceExternalIPs", "service_external_ips"),
    ("serviceClusterIPs", "service_cluster_ips"),
)


class BGPConfiguration(Resource):
    """``default``: the cluster's BGP settings; ``node.<name>``: one node's
    prefixAdvertisements, listenPort and logSeverityScreen."""

    KIND = "BGPConfiguration"
    spec: BGPConfigurationSpec = Field(default_factory=BGPConfigurationSpec)

    @model_validator(mode="after")
    def _by_name(self) -> BGPConfiguration:
        name = self.metadata.name
        if name == "default":
            spec = self.spec
            spec.log_severity_screen = spec.log_severity_screen or "Info"
            if spec.node_to_node_mesh_enabled is None:
                spec.node_to_node_mesh_enabled = True
            if spec.as_number is None:
                spec.as_number = DEFAULT_AS
            spec.listen_port = spec.listen_port or DEFAULT_PORT
            spec.bind_mode = spec.bind_mode or "None"
            spec.service_load_balancer_aggregation = (
                spec.service_load_balancer_aggregation or "Enabled"
            )
            return self
        if not name.startswith("node.") or name == "node.":
            raise problem("metadata.name", f"{name!r}: a BGPConfiguration is named 'default' "
                          "or 'node.<node name>'")  # fmt: skip
        found = [
            (f"spec.{alias}", "can only be set on the default BGPConfiguration")
            for alias, attribute in DEFAULT_ONLY
            if getattr(self.spec, attribute) not in (None, [])
        ]
        if found:
            raise Problems(found)
        return self


# -- BGPPeer ---------------------------------------------------------------------------------


def split_peer_ip(text: str) -> tuple[str, int | None]:
    """(address, port or None) from ``ip``, ``ipv4:port`` or ``[ipv6]:port``, as
    Calico's validator reads a BGPPeer's peerIP."""
    for pattern in (_IPV4_PORT, _IPV6_PORT):
        match = pattern.match(text)
        if match:
            address, port = match.group(1), int(match.group(2))
            if not 1 <= port <= 65535:
                raise ValueError(f"{text!r}: port {port} is outside 1-65535")
            ip_family(address)
            return address, port
    try:
        ip_family(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not an IP address, <IPv4>:<port> or [<IPv6>]:<port>"
        ) from None
    return text, None


def _peer_ip(value: object) -> object:
    if value == "":
        return None
    if isinstance(value, str):
        split_peer_ip(value)
    return value


def _zero_is_unset(value: object) -> object:
    return None if value in (0, "0", "") and value is not False else value


def _default(value: str) -> BeforeValidator:
    """An empty (or null) enum is its default, as Go reads an omitempty string."""
    return BeforeValidator(lambda given: value if given in ("", None) else given)


class BGPPeerSpec(Model):
    node: OptName = None
    node_selector: Selector = Field(default=None, alias="nodeSelector")
    peer_ip: Annotated[str | None, BeforeValidator(_peer_ip)] = Field(default=None, alias="peerIP")
    as_number: Annotated[ASNumber, BeforeValidator(_zero_is_unset)] = Field(
        default=None, alias="asNumber"
    )
    local_as_number: ASNumber = Field(default=None, alias="localASNumber")
    peer_selector: Selector = Field(default=None, alias="peerSelector")
    keep_original_next_hop: Flag = Field(default=None, alias="keepOriginalNextHop")
    next_hop_mode: Annotated[Literal["Auto", "Self", "Keep"] | None, UNSET] = Field(
        default=None, alias="nextHopMode"
    )
    password: Password | None = None
    source_address: Annotated[Literal["UseNodeIP", "None"], _default("UseNodeIP")] = Field(
        default="UseNodeIP", alias="sourceAddress"
    )
    max_restart_time: Duration = Field(default=None, alias="maxRestartTime")
    num_allowed_local_as_numbers: Annotated[int | None, in_range(0, INT32_MAX)] = Field(
        default=None, alias="numAllowedLocalASNumbers"
    )
    ttl_security: Annotated[int | None, in_range(0, 255)] = Field(
        default=None, alias="ttlSecurity"
    )
    reachable_by: IP = Field(default=None, alias="reachableBy")
    filters: list[Name] | None = None
    local_workload_selector: Selector = Field(default=None, alias="localWorkloadSelector")
    reverse_peering: Annotated[Literal["Auto", "Manual"], _default("Auto")] = Field(
        default="Auto", alias="reversePeering"
    )

    @model_validator(mode="after")
    def _rules(self) -> BGPPeerSpec:
        found: list[tuple[str, str]] = []
        if self.node and self.node_selector:
            found.append(("node", "must be empty when nodeSelector is set"))
        if self.peer_ip and self.peer_selector:
            found.append(("peerIP", "must be empty when peerSelector is set"))
        if self.as_number is not None and self.peer_selector:
            found.append(("asNumber", "must be empty when peerSelector is set (the "
                          "selected nodes' AS numbers are used)"))  # fmt: skip
        if self.local_workload_selector:
            if self.as_number is None:
                found.append(("asNumber", "is required when localWorkloadSelector is set"))
            if self.peer_ip:
                found.append(("peerIP", "must be empty when localWorkloadSelector is set"))
            if self.peer_selector:
                found.append(("peerSelector", "must be empty when localWorkloadSelector is set"))
        if self.reachable_by:
            if not self.peer_ip:
                found.append(("reachableBy", "must be empty when peerIP is empty"))
            else:
                address, _ = split_peer_ip(self.peer_ip)
                if ip_family(address) != ip_family(self.reachable_by):
                    found.append(("reachableBy", f"{self.reachable_by!r} is not of peerIP's "
                                  f"address family (IPv{ip_family(address)})"))  # fmt: skip
        if self.keep_original_next_hop and self.next_hop_mode is not None:
            found.append(("keepOriginalNextHop", "is deprecated and must not be true when "
                          "nextHopMode is set"))  # fmt: skip
        if found:
            raise Problems(found)
        return self


class BGPPeer(Resource):
    """A BGP peering: with an address (peerIP) or with the nodes a peerSelector
    picks; on every node (global), one node, or the nodes a nodeSelector picks."""

    KIND = "BGPPeer"
    spec: BGPPeerSpec = Field(default_factory=BGPPeerSpec)


# -- BGPFilter -------------------------------------------------------------------------------


def _interface_pattern(value: object) -> object:
    if value == "":
        return None
    if isinstance(value, str) and value != "*" and not _INTERFACE.match(value):
        raise ValueError(f"{value!r} is not an interface name or pattern: 1-15 of letters, "
                         "digits, '_', '.', '-' and '*'")  # fmt: skip
    return value


class _PrefixLength(Model):
    BITS: ClassVar[int] = 32
    min: int | None = None
    max: int | None = None

    @model_validator(mode="after")
    def _range(self) -> _PrefixLength:
        found = [(name, f"{value} is outside 0-{self.BITS}")
                 for name, value in (("min", self.min), ("max", self.max))
                 if value is not None and not 0 <= value <= self.BITS]  # fmt: skip
        if not found and self.min is not None and self.max is not None and self.min > self.max:
            found.append(("min", f"{self.min} is above max {self.max}"))
        if found:
            raise Problems(found)
        return self


class PrefixLengthV4(_PrefixLength):
    BITS = 32


class PrefixLengthV6(_PrefixLength):
    BITS = 128


class _Rule(Model):
    source: Annotated[Literal["RemotePeers"] | None, UNSET] = None
    interface: Annotated[str | None, BeforeValidator(_interface_pattern)] = None
    match_operator: Annotated[Literal["Equal", "NotEqual", "In", "NotIn"] | None, UNSET] = Field(
        default=None, alias="matchOperator"
    )
    action: Literal["Accept", "Reject"]

    @model_validator(mode="after")
    def _together(self) -> _Rule:
        cidr = getattr(self, "cidr", None)
        found: list[tuple[str, str]] = []
        if cidr and self.match_operator is None:
            found.append(("matchOperator", "is required when cidr is set"))
        if not cidr and self.match_operator is not None:
            found.append(("cidr", "is required when matchOperator is set"))
        if not cidr and getattr(self, "prefix_length", None) is not None:
            found.append(("cidr", "is required when prefixLength is set"))
        if found:
            raise Problems(found)
        return self


class BGPFilterRuleV4(_Rule):
    cidr: NetV4 = None
    prefix_length: PrefixLengthV4 | None = Field(default=None, alias="prefixLength")


class BGPFilterRuleV6(_Rule):
    cidr: NetV6 = None
    prefix_length: PrefixLengthV6 | None = Field(default=None, alias="prefixLength")


class BGPFilterSpec(Model):
    export_v4: list[BGPFilterRuleV4] | None = Field(default=None, alias="exportV4")
    import_v4: list[BGPFilterRuleV4] | None = Field(default=None, alias="importV4")
    export_v6: list[BGPFilterRuleV6] | None = Field(default=None, alias="exportV6")
    import_v6: list[BGPFilterRuleV6] | None = Field(default=None, alias="importV6")


class BGPFilter(Resource):
    """Import and export rules, in order, for the peers that name this filter."""

    KIND = "BGPFilter"
    spec: BGPFilterSpec = Field(default_factory=BGPFilterSpec)
