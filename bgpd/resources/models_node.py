"""The Node resource (CALICO.md §2.3): a node's BGP identity (AS number, addresses
with their prefix lengths, route-reflector cluster ID), its tunnel addresses,
and a status the node agent writes (pod CIDRs, WireGuard keys).

IPAM and the CNI plugin read a stored node's ``metadata.labels`` (for pool node
selectors) and ``status.podCIDRs`` (host-local's ``usePodCidr``); the BGP speaker
reads ``spec.bgp``.  ``ipv4Address`` is an address *with* its prefix length
(``10.0.0.5/24``), host bits set: the prefix gives the node's subnet
(CrossSubnet).  A bare address is accepted, as Calico's ``cidrv4`` validator
accepts it (then the subnet is the address alone).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from .models_base import UNSET, Model, OptName, OptStr, Resource, problem
from .models_values import CIDR, ASNumber, CIDRv4, CIDRv6, IPv4, IPv6, Mac, WireguardKey


class NodeBGPSpec(Model):
    as_number: ASNumber = Field(default=None, alias="asNumber")
    ipv4_address: CIDRv4 = Field(default=None, alias="ipv4Address")
    ipv6_address: CIDRv6 = Field(default=None, alias="ipv6Address")
    ipv4_ipip_tunnel_addr: IPv4 = Field(default=None, alias="ipv4IPIPTunnelAddr")
    route_reflector_cluster_id: IPv4 = Field(
        default=None, alias="routeReflectorClusterID"
    )

    @model_validator(mode="after")
    def _not_empty(self) -> NodeBGPSpec:
        if all(value is None for value in self.__dict__.values()):
            raise problem("", "must not be empty (leave it out instead)")
        return self


class NodeAddress(Model):
    """Calico itself lists the node's BGP address here with its prefix length
    (``10.0.0.5/24``, host bits set), so an exported node has them: accepted."""

    address: CIDR
    type: Annotated[Literal["CalicoNodeIP", "InternalIP", "ExternalIP"] | None, UNSET] = None


class NodeInterface(Model):
    name: OptName = None
    addresses: list[str] | None = None


class OrchRef(Model):
    node_name: OptStr = Field(default=None, alias="nodeName")
    orchestrator: str


class NodeWireguardSpec(Model):
    interface_ipv4_address: IPv4 = Field(default=None, alias="interfaceIPv4Address")
    interface_ipv6_address: IPv6 = Field(default=None, alias="interfaceIPv6Address")


class NodeSpec(Model):
    bgp: NodeBGPSpec | None = None
    ipv4_vxlan_tunnel_addr: IPv4 = Field(default=None, alias="ipv4VXLANTunnelAddr")
    vxlan_tunnel_mac_addr: Mac = Field(default=None, alias="vxlanTunnelMACAddr")
    ipv6_vxlan_tunnel_addr: IPv6 = Field(default=None, alias="ipv6VXLANTunnelAddr")
    vxlan_tunnel_mac_addr_v6: Mac = Field(default=None, alias="vxlanTunnelMACAddrV6")
    orch_refs: list[OrchRef] | None = Field(default=None, alias="orchRefs")
    wireguard: NodeWireguardSpec | None = None
    addresses: list[NodeAddress] | None = None
    interfaces: list[NodeInterface] | None = None


class NodeStatus(Model):
    wireguard_public_key: WireguardKey = Field(default=None, alias="wireguardPublicKey")
    wireguard_public_key_v6: WireguardKey = Field(
        default=None, alias="wireguardPublicKeyV6"
    )
    pod_cidrs: list[CIDR] | None = Field(default=None, alias="podCIDRs")


class Node(Resource):
    """One Calico node.  ``status`` None: the applied document had none (a stored
    node's status is then kept)."""

    KIND = "Node"
    spec: NodeSpec = Field(default_factory=NodeSpec)
    status: NodeStatus | None = None
