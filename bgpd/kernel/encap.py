"""Which kernel route a BGP route becomes: the next hop by the IP pool's
encapsulation, as Calico programs it (CALICO.md §1.7 and §6.2).  No I/O.

- A prefix outside every pool, or in a pool without encapsulation, goes
  straight to the BGP next hop: ``via <node IP>``, the kernel choosing the
  uplink that reaches it.
- IPIP ``Always``, or ``CrossSubnet`` with the next hop outside the node's own
  subnets: ``via <node IP> dev tunl0 onlink``.
- VXLAN ``Always`` or ``CrossSubnet`` likewise: ``via <remote VTEP> dev
  vxlan.calico onlink``, the remote node's VTEP found by its node IP (the
  neighbour and FDB entries that make it reachable are ``devices``' work).
- ``CrossSubnet`` with the next hop inside one of the node's subnets: direct.
- The node's own blocks: ``blackhole``.
- A multipath set becomes one ECMP route, each next hop planned as above.

A route that cannot be planned (its tunnel device is missing, the remote VTEP
is unknown) is not installed; ``plan`` says why, so the status can show it.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

from .rtnl import RT_TABLE_MAIN, RTN_BLACKHOLE, RTPROT_BIRD, KernelRoute, NextHop

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

IPIP_DEVICE = "tunl0"
VXLAN_DEVICE = "vxlan.calico"
#: Outer IPv4 + UDP + VXLAN headers (CALICO.md §6.2).
VXLAN_OVERHEAD = 50
VXLAN_VNI = 4096
VXLAN_PORT = 4789


class Mode(Enum):
    """An IP pool's ``ipipMode`` / ``vxlanMode``."""

    NEVER = "Never"
    ALWAYS = "Always"
    CROSS_SUBNET = "CrossSubnet"


@dataclass(frozen=True, slots=True)
class Pool:
    """The part of an IPPool that decides next hops."""

    cidr: Network
    ipip: Mode = Mode.NEVER
    vxlan: Mode = Mode.NEVER

    def __post_init__(self) -> None:
        if self.ipip is not Mode.NEVER and self.vxlan is not Mode.NEVER:
            raise ValueError(f"pool {self.cidr}: ipipMode and vxlanMode cannot both be enabled")
        if self.ipip is not Mode.NEVER and self.cidr.version != 4:
            raise ValueError(f"pool {self.cidr}: IPIP is for IPv4 pools only")


@dataclass(frozen=True, slots=True)
class Vtep:
    """A remote node's VXLAN tunnel endpoint: its node IP (the BGP next hop of
    its routes and the outer destination), the address of its ``vxlan.calico``
    and that device's MAC."""

    node_ip: bytes
    address: bytes
    mac: bytes

    def __post_init__(self) -> None:
        if len(self.node_ip) not in (4, 16) or len(self.address) != 4 or len(self.mac) != 6:
            raise ValueError("a VTEP is a node IP, an IPv4 tunnel address and a 6-octet MAC")


@dataclass(frozen=True, slots=True)
class VxlanSpec:
    """This node's VTEP: its node IP (the outer source), the tunnel address
    given to ``vxlan.calico``, and the device's MAC (None: the kernel's)."""

    local: bytes
    address: bytes
    mac: bytes | None = None
    vni: int = VXLAN_VNI
    port: int = VXLAN_PORT
    mtu: int | None = None  # None: the uplink's MTU minus VXLAN_OVERHEAD


@dataclass(frozen=True, slots=True)
class Plan:
    """A route to install, or the reason there is none."""

    route: KernelRoute | None
    reason: str = ""


@dataclass(slots=True)
class _PoolMatch:
    family: int
    network: int
    mask: int
    length: int
    pool: Pool


def _int(address: bytes) -> int:
    return int.from_bytes(address, "big")


@dataclass
class Encapsulation:
    """The node's view of pools, subnets, tunnel devices and remote VTEPs."""

    pools: list[Pool] = field(default_factory=list)
    #: The node's own subnets (its addresses with their prefix length).
    subnets: list[Network] = field(default_factory=list)
    tunl0: int = 0  # interface indexes; 0 while the device is missing
    vxlan: int = 0
    vteps: dict[bytes, Vtep] = field(default_factory=dict)
    table: int = RT_TABLE_MAIN
    protocol: int = RTPROT_BIRD
    metric: int = 0
    rejects: list[tuple[int, int, int, int]] = field(default_factory=list, init=False)
    _pools: list[_PoolMatch] = field(default_factory=list, init=False, repr=False)
    _subnets: list[tuple[int, int, int]] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        self.set_pools(self.pools)
        self.set_subnets(self.subnets)

    def set_pools(self, pools: Iterable[Pool]) -> None:
        self.pools = list(pools)
        # Longest first, so the first match is the most specific pool.
        self._pools = sorted(
            (
                _PoolMatch(
                    socket.AF_INET if p.cidr.version == 4 else socket.AF_INET6,
                    int(p.cidr.network_address),
                    int(p.cidr.netmask),
                    p.cidr.prefixlen,
                    p,
                )
                for p in self.pools
            ),
            key=lambda m: -m.length,
        )

    def set_subnets(self, subnets: Iterable[Network]) -> None:
        self.subnets = list(subnets)
        self._subnets = [
            (4 if s.version == 4 else 16, int(s.network_address), int(s.netmask))
            for s in self.subnets
        ]

    def set_rejects(self, networks: Iterable[Network]) -> None:
        """Ranges whose routes never reach the kernel: Calico's service ranges,
        announced to peers but routed by kube-proxy (CALICO.md §1.7)."""
        self.rejects = [
            (socket.AF_INET if n.version == 4 else socket.AF_INET6, int(n.network_address),
             int(n.netmask), n.prefixlen)
            for n in networks
        ]  # fmt: skip

    def rejected(self, family: int, dst: bytes, dst_len: int) -> bool:
        value = _int(dst)
        return any(
            f == family and dst_len >= length and value & mask == net
            for f, net, mask, length in self.rejects
        )

    def set_vteps(self, vteps: Iterable[Vtep]) -> None:
        self.vteps = {v.node_ip: v for v in vteps}

    # -------------------------------------------------------------- queries

    def pool(self, family: int, dst: bytes, dst_len: int) -> Pool | None:
        """The most specific pool that holds the whole prefix."""
        if not self._pools:
            return None
        value = _int(dst)
        for m in self._pools:
            if m.family == family and dst_len >= m.length and value & m.mask == m.network:
                return m.pool
        return None

    def local(self, next_hop: bytes) -> bool:
        """Whether ``next_hop`` lies in one of the node's own subnets."""
        value = _int(next_hop)
        size = len(next_hop)
        return any(s == size and value & mask == net for s, net, mask in self._subnets)

    # ------------------------------------------------------------- planning

    def blackhole(self, family: int, dst: bytes, dst_len: int) -> KernelRoute:
        """The node's own block (CALICO.md §1.7: ``blackhole <block> proto bird``)."""
        return KernelRoute(
            family, dst, dst_len, RTN_BLACKHOLE, (), self.table, self.protocol, self.metric
        )

    def plan(self, family: int, dst: bytes, dst_len: int, next_hops: Iterable[bytes]) -> Plan:
        """The route for a prefix whose best paths lead to ``next_hops`` (node
        IPs, 4 or 16 octets): one next hop, or an ECMP set."""
        if self.rejects and self.rejected(family, dst, dst_len):
            return Plan(None, "service address range")
        pool = self.pool(family, dst, dst_len)
        hops: list[NextHop] = []
        seen: set[NextHop] = set()
        for gateway in next_hops:
            hop, reason = self._hop(family, pool, gateway)
            if hop is None:
                return Plan(None, reason)
            if hop not in seen:
                seen.add(hop)
                hops.append(hop)
        if not hops:
            return Plan(None, "no usable next hop")
        route = KernelRoute(
            family, dst, dst_len, nexthops=tuple(hops), table=self.table,
            protocol=self.protocol, metric=self.metric,
        )  # fmt: skip
        return Plan(route)

    def _hop(self, family: int, pool: Pool | None, gateway: bytes) -> tuple[NextHop | None, str]:
        if len(gateway) != (4 if family == socket.AF_INET else 16):
            # An IPv6 route over an IPv4 next hop (RFC 8950) needs a device we
            # do not model; say so rather than guess.
            return None, f"next hop {_text(gateway)} is not of the route's family"
        if pool is None:
            return NextHop(gateway), ""
        if pool.ipip is Mode.ALWAYS or (pool.ipip is Mode.CROSS_SUBNET and not self.local(gateway)):
            if not self.tunl0:
                return None, f"pool {pool.cidr} uses IPIP and {IPIP_DEVICE} is missing"
            return NextHop(gateway, self.tunl0, onlink=True), ""
        if pool.vxlan is Mode.ALWAYS or (
            pool.vxlan is Mode.CROSS_SUBNET and not self.local(gateway)
        ):
            if family != socket.AF_INET:
                return None, f"pool {pool.cidr}: VXLAN for IPv6 is not supported"
            if not self.vxlan:
                return None, f"pool {pool.cidr} uses VXLAN and {VXLAN_DEVICE} is missing"
            vtep = self.vteps.get(gateway)
            if vtep is None:
                return None, f"no VTEP known for node {_text(gateway)}"
            return NextHop(vtep.address, self.vxlan, onlink=True), ""
        return NextHop(gateway), ""


def _text(address: bytes) -> str:
    return str(ipaddress.ip_address(address))
