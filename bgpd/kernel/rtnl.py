"""rtnetlink route messages: layouts, encoding and decoding (no I/O).

The layouts are declared once, here, as ``struct`` formats in host byte order,
each under the kernel definition it mirrors (``include/uapi/linux/netlink.h``,
``rtnetlink.h``).  Route requests are built straight into bytes: the FIB is
written tens of thousands of routes at a time and a generic message object per
route would cost more than the kernel's own work.

A request carries a sequence number; the kernel answers an error (or, when
asked, an acknowledgement) with ``NLMSG_ERROR`` quoting that number, so a
batch of many requests in one ``send`` can still be matched route by route.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

# struct nlmsghdr { __u32 nlmsg_len; __u16 nlmsg_type; __u16 nlmsg_flags;
#                   __u32 nlmsg_seq; __u32 nlmsg_pid; };
NLMSGHDR = struct.Struct("=IHHII")
# struct rtmsg { unsigned char rtm_family, rtm_dst_len, rtm_src_len, rtm_tos,
#                rtm_table, rtm_protocol, rtm_scope, rtm_type; unsigned rtm_flags; };
RTMSG = struct.Struct("=BBBBBBBBI")
# struct rtattr { unsigned short rta_len; unsigned short rta_type; };
RTATTR = struct.Struct("=HH")
# struct rtnexthop { unsigned short rtnh_len; unsigned char rtnh_flags;
#                    unsigned char rtnh_hops; int rtnh_ifindex; };
RTNEXTHOP = struct.Struct("=HBBi")
# struct nlmsgerr { int error; struct nlmsghdr msg; ... };
NLMSGERR = struct.Struct("=i")
# struct ifinfomsg { unsigned char ifi_family; unsigned char __pad;
#                    unsigned short ifi_type; int ifi_index; unsigned ifi_flags;
#                    unsigned ifi_change; };
IFINFOMSG = struct.Struct("=BxHiII")
U32 = struct.Struct("=I")

# Message types.
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE, NLMSG_OVERRUN = 1, 2, 3, 4
RTM_NEWLINK, RTM_DELLINK = 16, 17
RTM_NEWADDR, RTM_DELADDR = 20, 21
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26

# nlmsg_flags.
NLM_F_REQUEST = 0x01
NLM_F_MULTI = 0x02
NLM_F_ACK = 0x04
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
# On NLMSG_ERROR replies: the request was not echoed / TLVs follow (extended ACK).
NLM_F_CAPPED = 0x100
NLM_F_ACK_TLVS = 0x200
NLMSGERR_ATTR_MSG = 1

# Socket options (SOL_NETLINK) and multicast groups.
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
RTNLGRP_LINK = 1
RTNLGRP_IPV4_IFADDR = 5
RTNLGRP_IPV4_ROUTE = 7
RTNLGRP_IPV6_IFADDR = 9
RTNLGRP_IPV6_ROUTE = 11

# Route attributes.
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PRIORITY = 6
RTA_MULTIPATH = 9
RTA_TABLE = 15

# Route types, scopes, tables, protocols, flags.
RTN_UNICAST = 1
RTN_BLACKHOLE = 6
RTN_UNREACHABLE = 7
RTN_PROHIBIT = 8
_MODELLED_TYPES = frozenset({RTN_UNICAST, RTN_BLACKHOLE, RTN_UNREACHABLE, RTN_PROHIBIT})
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RT_SCOPE_NOWHERE = 255
RT_TABLE_COMPAT = 252
RT_TABLE_MAIN = 254
RTPROT_KERNEL = 2
RTPROT_BOOT = 3
RTPROT_STATIC = 4
#: What ``ip route`` shows as ``proto bird``: Calico's routes carry it (CALICO.md §1.7).
RTPROT_BIRD = 12
RTNH_F_ONLINK = 4
IP6_DEFAULT_METRIC = 1024
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000

_ADDRESS_SIZE: dict[int, int] = {int(socket.AF_INET): 4, int(socket.AF_INET6): 16}


class NetlinkError(Exception):
    """A malformed message from the kernel (our parser's view; never expected)."""


#: (family, table, dst, dst_len, metric): a route's identity in the kernel.
RouteKey = tuple[int, int, bytes, int, int]
#: (family, dst, dst_len): its identity within one table and metric.
Dest = tuple[int, bytes, int]


@dataclass(frozen=True, slots=True)
class NextHop:
    """One way out: a gateway (4 or 16 octets; empty for a device route), an output
    interface (0: the kernel finds it from the gateway), ONLINK (the gateway is
    taken as directly reachable on that interface, as Calico's tunnel routes are)."""

    gateway: bytes = b""
    ifindex: int = 0
    onlink: bool = False
    weight: int = 1


@dataclass(frozen=True, slots=True)
class KernelRoute:
    """A route as the kernel holds it.  ``key`` is what makes it unique in the FIB
    (family, table, destination, metric): a second route with the same key
    replaces the first or is refused."""

    family: int
    dst: bytes  # the network address, 4 or 16 octets
    dst_len: int
    type: int = RTN_UNICAST
    nexthops: tuple[NextHop, ...] = ()
    table: int = RT_TABLE_MAIN
    protocol: int = RTPROT_BIRD
    metric: int = 0
    #: (family, dst, dst_len): the route's identity within one table and metric.
    dest: Dest = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dest", (self.family, self.dst, self.dst_len))
        if self.family == socket.AF_INET6 and self.metric == 0:
            # The kernel stores an IPv6 route given no metric with 1024.
            object.__setattr__(self, "metric", IP6_DEFAULT_METRIC)
        size = _ADDRESS_SIZE.get(self.family)
        if size is None or len(self.dst) != size or not 0 <= self.dst_len <= size * 8:
            raise ValueError("a route destination is an IPv4 or IPv6 network")
        if self.type == RTN_UNICAST and not self.nexthops:
            raise ValueError("a unicast route needs a next hop")
        if self.type != RTN_UNICAST and self.nexthops:
            raise ValueError("only a unicast route has next hops")
        for hop in self.nexthops:
            if hop.gateway and len(hop.gateway) != size:
                raise ValueError("a gateway is of the route's family")
            if not hop.gateway and not hop.ifindex:
                raise ValueError("a next hop needs a gateway or an interface")
            if not 1 <= hop.weight <= 256:
                raise ValueError("a next hop weight is 1..256")

    @property
    def key(self) -> RouteKey:
        return (self.family, self.table, self.dst, self.dst_len, self.metric)

    def __str__(self) -> str:
        return route_text(self)


def route_text(route: KernelRoute) -> str:
    """``ip route``-like text, for logs and errors."""
    net = f"{socket.inet_ntop(route.family, route.dst)}/{route.dst_len}"
    if route.type == RTN_BLACKHOLE:
        head = f"blackhole {net}"
    elif route.type != RTN_UNICAST:
        head = f"type {route.type} {net}"
    else:
        hops = []
        for h in route.nexthops:
            part = f"via {socket.inet_ntop(route.family, h.gateway)}" if h.gateway else ""
            if h.ifindex:
                part += f" dev #{h.ifindex}"
            if h.onlink:
                part += " onlink"
            hops.append(part.strip())
        head = f"{net} " + (" nexthop ".join(hops) if len(hops) > 1 else hops[0])
    tail = f" proto {route.protocol}"
    if route.table != RT_TABLE_MAIN:
        tail += f" table {route.table}"
    if route.metric:
        tail += f" metric {route.metric}"
    return head + tail


def _attr(kind: int, value: bytes) -> bytes:
    n = RTATTR.size + len(value)
    return RTATTR.pack(n, kind) + value + b"\0" * (-n & 3)


def _message(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


def _scope(route: KernelRoute) -> int:
    """ip-route(8): a route without a gateway is on-link (scope link)."""
    if route.type != RTN_UNICAST:
        return RT_SCOPE_UNIVERSE
    for hop in route.nexthops:
        if hop.gateway:
            return RT_SCOPE_UNIVERSE
    return RT_SCOPE_LINK


def _after_dst(route: KernelRoute) -> bytes:
    """The attributes that follow RTA_DST in a route request."""
    out = b""
    if route.metric:
        out += _attr(RTA_PRIORITY, U32.pack(route.metric))
    hops = route.nexthops
    if len(hops) == 1:
        hop = hops[0]
        if hop.gateway:
            out += _attr(RTA_GATEWAY, hop.gateway)
        if hop.ifindex:
            out += _attr(RTA_OIF, U32.pack(hop.ifindex))
    elif hops:
        parts = []
        for hop in hops:
            inner = _attr(RTA_GATEWAY, hop.gateway) if hop.gateway else b""
            flags = RTNH_F_ONLINK if hop.onlink else 0
            head = RTNEXTHOP.pack(RTNEXTHOP.size + len(inner), flags, hop.weight - 1, hop.ifindex)
            parts.append(head + inner)
        out += _attr(RTA_MULTIPATH, b"".join(parts))
    return out


#: (the route without its destination, request flags) -> (the request's bytes
#: between nlmsghdr and the destination address, the bytes after it).  Routes
#: of one table through one next hop differ only in the destination: a full
#: table is encoded from a handful of templates.
_ADD_TEMPLATES: dict[tuple[object, ...], tuple[bytes, bytes]] = {}
_TEMPLATES_MAX = 4096


def _add_template(route: KernelRoute) -> tuple[bytes, bytes]:
    one = route.nexthops[0] if len(route.nexthops) == 1 else None
    rtm_flags = RTNH_F_ONLINK if one is not None and one.onlink else 0
    table = route.table if route.table < 256 else RT_TABLE_COMPAT
    head = RTMSG.pack(
        route.family,
        route.dst_len,
        0,
        0,
        table,
        route.protocol,
        _scope(route),
        route.type,
        rtm_flags,
    )
    # RTA_DST holds 4 or 16 octets: never padded.
    middle = (
        head
        + _attr(RTA_TABLE, U32.pack(route.table))
        + RTATTR.pack(RTATTR.size + len(route.dst), RTA_DST)
    )
    return middle, _after_dst(route)


def encode_add(route: KernelRoute, seq: int, replace: bool, ack: bool = False) -> bytes:
    """RTM_NEWROUTE.  ``replace`` (NLM_F_REPLACE) when the key holds our own route;
    otherwise NLM_F_EXCL, so a route of another protocol with the same key is
    never overwritten: the kernel refuses with EEXIST instead."""
    flags = NLM_F_REQUEST | NLM_F_CREATE | (NLM_F_REPLACE if replace else NLM_F_EXCL)
    if ack:
        flags |= NLM_F_ACK
    key = (
        route.family, route.dst_len, route.type, route.nexthops, route.table,
        route.protocol, route.metric,
    )  # fmt: skip
    found = _ADD_TEMPLATES.get(key)
    if found is None:
        found = _add_template(route)
        if len(_ADD_TEMPLATES) >= _TEMPLATES_MAX:
            _ADD_TEMPLATES.clear()
        _ADD_TEMPLATES[key] = found
    middle, tail = found
    size = NLMSGHDR.size + len(middle) + len(route.dst) + len(tail)
    return NLMSGHDR.pack(size, RTM_NEWROUTE, flags, seq, 0) + middle + route.dst + tail


def encode_delete(route: KernelRoute, seq: int, ack: bool = False) -> bytes:
    """RTM_DELROUTE for the route's key, restricted to its protocol: the kernel
    deletes only a route of that protocol, never another's at the same key."""
    flags = NLM_F_REQUEST | (NLM_F_ACK if ack else 0)
    table = route.table if route.table < 256 else RT_TABLE_COMPAT
    head = RTMSG.pack(
        route.family, route.dst_len, 0, 0, table, route.protocol, RT_SCOPE_NOWHERE, 0, 0
    )
    attrs = _attr(RTA_TABLE, U32.pack(route.table)) + _attr(RTA_DST, route.dst)
    if route.metric:
        attrs += _attr(RTA_PRIORITY, U32.pack(route.metric))
    return _message(RTM_DELROUTE, flags, seq, head + attrs)


def encode_dump(kind: int, family: int, seq: int) -> bytes:
    """A dump request (RTM_GETROUTE or RTM_GETLINK) for ``family`` (0: all)."""
    if kind == RTM_GETROUTE:
        body = RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
    else:
        body = IFINFOMSG.pack(family, 0, 0, 0, 0)
    return _message(kind, NLM_F_REQUEST | NLM_F_DUMP, seq, body)


def split(data: bytes) -> Iterator[tuple[int, int, int, memoryview]]:
    """(type, flags, seq, body) of each message in a datagram from the kernel."""
    view = memoryview(data)
    offset, end = 0, len(data)
    while offset + NLMSGHDR.size <= end:
        length, kind, flags, seq, _pid = NLMSGHDR.unpack_from(view, offset)
        if length < NLMSGHDR.size or offset + length > end:
            raise NetlinkError(f"netlink message length {length} at {offset} is impossible")
        yield kind, flags, seq, view[offset + NLMSGHDR.size : offset + length]
        offset += (length + 3) & ~3


def attributes(body: memoryview, offset: int) -> Iterator[tuple[int, memoryview]]:
    """(type, value) of each rtattr from ``offset`` on (nested flag bits cleared)."""
    end = len(body)
    while offset + RTATTR.size <= end:
        length, kind = RTATTR.unpack_from(body, offset)
        if length < RTATTR.size or offset + length > end:
            raise NetlinkError("rtattr overruns its message")
        yield kind & 0x3FFF, body[offset + RTATTR.size : offset + length]
        offset += (length + 3) & ~3


@dataclass(frozen=True, slots=True)
class Failure:
    """An NLMSG_ERROR that is not an acknowledgement."""

    seq: int
    errno: int
    message: str


def decode_error(flags: int, body: memoryview) -> tuple[int, int, str]:
    """(errno, seq of the request, extended-ACK text) of an NLMSG_ERROR; errno 0
    is an acknowledgement."""
    (error,) = NLMSGERR.unpack_from(body, 0)
    length, _kind, _flags, seq, _pid = NLMSGHDR.unpack_from(body, NLMSGERR.size)
    text = ""
    if flags & NLM_F_ACK_TLVS:
        echoed = NLMSGHDR.size if flags & NLM_F_CAPPED else length
        start = NLMSGERR.size + ((echoed + 3) & ~3)
        for kind, value in attributes(body, start):
            if kind == NLMSGERR_ATTR_MSG:
                text = bytes(value).rstrip(b"\0").decode(errors="replace")
    return -error, seq, text


def decode_route(body: memoryview) -> KernelRoute | None:
    """A route message as a ``KernelRoute``; None for what we never manage
    (source-specific, TOS, cache or multicast routes, other families)."""
    family, dst_len, src_len, tos, table, protocol, _scope, kind, rtm_flags = RTMSG.unpack_from(
        body, 0
    )
    size = _ADDRESS_SIZE.get(family)
    if size is None or src_len or tos or kind not in _MODELLED_TYPES:
        return None
    dst = bytes(size)
    metric = 0
    gateway = b""
    oif = 0
    hops: list[NextHop] = []
    for attr, value in attributes(body, RTMSG.size):
        if attr == RTA_DST:
            dst = bytes(value)
        elif attr == RTA_TABLE:
            (table,) = U32.unpack_from(value, 0)
        elif attr == RTA_PRIORITY:
            (metric,) = U32.unpack_from(value, 0)
        elif attr == RTA_GATEWAY:
            gateway = bytes(value)
        elif attr == RTA_OIF:
            (oif,) = U32.unpack_from(value, 0)
        elif attr == RTA_MULTIPATH:
            hops = _multipath(value)
    if kind == RTN_UNICAST and not hops:
        hops = [NextHop(gateway, oif, bool(rtm_flags & RTNH_F_ONLINK))]
    try:
        return KernelRoute(
            family, dst, dst_len, kind, tuple(hops) if kind == RTN_UNICAST else (),
            table, protocol, metric,
        )  # fmt: skip
    except ValueError:
        return None  # a shape we do not model (say, a route through a nexthop object)


def _multipath(value: memoryview) -> list[NextHop]:
    hops = []
    offset = 0
    while offset + RTNEXTHOP.size <= len(value):
        length, flags, weight, ifindex = RTNEXTHOP.unpack_from(value, offset)
        if length < RTNEXTHOP.size:
            raise NetlinkError("rtnexthop shorter than its header")
        gateway = b""
        for attr, inner in attributes(value[offset : offset + length], RTNEXTHOP.size):
            if attr == RTA_GATEWAY:
                gateway = bytes(inner)
        hops.append(NextHop(gateway, ifindex, bool(flags & RTNH_F_ONLINK), weight + 1))
        offset += (length + 3) & ~3
    return hops


@dataclass(frozen=True, slots=True)
class LinkState:
    """What the FIB cares about in an RTM_NEWLINK: the interface and whether it
    can carry traffic."""

    ifindex: int
    up: bool


def decode_link(body: memoryview) -> LinkState:
    _family, _type, index, flags, _change = IFINFOMSG.unpack_from(body, 0)
    return LinkState(index, bool(flags & IFF_UP) and bool(flags & IFF_LOWER_UP))
