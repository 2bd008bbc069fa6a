"""rtnetlink for the CNI plugin: a pod's veth, addresses and routes, synchronously.

The container runtime executes the CNI plugin once per pod ADD and DEL, so the
plugin's start-up is on every pod's critical path, and this module is all of
its kernel side.  It therefore imports nothing but the C modules under the
standard library's wrappers: ``_socket`` (the ``socket`` module adds ~10 ms of
``enum``, ``selectors`` and ``collections`` for conveniences not used here),
``posix`` (``os`` without its ``_collections_abc`` and ``posixpath``; the
import system has loaded ``posix`` already), ``struct`` and ``errno``.
``_ctypes`` is imported only on first entering a namespace (``setns`` is not in
``os`` before Python 3.12; ``ctypes`` itself would cost 7 ms).  Hence also
plain classes with ``__slots__``, and
no dataclasses, enums, ``ipaddress`` or ``typing`` at run time.  The layouts are
declared as ``struct`` formats in host byte order under the kernel definitions
they mirror (``include/uapi/linux/netlink.h``, ``rtnetlink.h``, ``if_link.h``,
``veth.h``, ``if_addr.h``), as ``bgpd/kernel/rtnl.py`` does for the BGP side.

Requests.  Every request asks for an acknowledgement (``NLM_F_ACK``,
netlink.h): the kernel answers each with an ``NLMSG_ERROR`` quoting its
sequence number, errno 0 for success.  rtnetlink handles the requests of one
datagram in order, inside the ``send``, and carries on after one fails; so a
batch is one datagram, its answers are matched back to its requests by
sequence number, and the first refusal is raised once all are answered.  With
``NETLINK_EXT_ACK`` the refusal carries the kernel's reason as text
(``NLMSGERR_ATTR_MSG``), and ``NETLINK_CAP_ACK`` keeps the request itself out
of the answer.

Namespaces.  A netlink socket acts, for life, in the network namespace of the
thread that created it.  So ``Rtnl(netns)`` enters the namespace only to create
its socket and leaves at once; the process never runs anything else there.  A
veth's peer is created straight inside the pod's namespace (``IFLA_NET_NS_FD``
within ``VETH_INFO_PEER``, veth.h) rather than created beside the host end and
moved: one request, and the pod's interface name (typically ``eth0``) never
exists in the host namespace, where it could collide.
"""

from __future__ import annotations

import _socket
import errno
import posix
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from typing import Any

AF_INET = _socket.AF_INET
AF_INET6 = _socket.AF_INET6
#: For callers, who need no ``socket`` module either (see above).
inet_pton = _socket.inet_pton
inet_ntop = _socket.inet_ntop
_ADDRESS_SIZE = {AF_INET: 4, AF_INET6: 16}

# --- include/uapi/linux/netlink.h -------------------------------------------
# struct nlmsghdr { __u32 nlmsg_len; __u16 nlmsg_type; __u16 nlmsg_flags;
#                   __u32 nlmsg_seq; __u32 nlmsg_pid; };
_NLMSGHDR = struct.Struct("=IHHII")
# struct nlmsgerr { int error; struct nlmsghdr msg; /* TLVs after the echo */ };
_NLMSGERR = struct.Struct("=i")
# struct nlattr { __u16 nla_len; __u16 nla_type; };  (rtnetlink.h: struct rtattr)
_NLATTR = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_S32 = struct.Struct("=i")

NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE = 1, 2, 3
NLM_F_REQUEST = 0x01
NLM_F_ACK = 0x04
NLM_F_DUMP_INTR = 0x10  # a dump saw the table change under it: run it again
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
# On NLMSG_ERROR: the echoed request was cut to its header / TLVs follow it.
NLM_F_CAPPED = 0x100
NLM_F_ACK_TLVS = 0x200
NLMSGERR_ATTR_MSG = 1
NLA_TYPE_MASK = 0x3FFF  # nla_type without NLA_F_NESTED / NLA_F_NET_BYTEORDER
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11

# --- include/uapi/linux/rtnetlink.h -----------------------------------------
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
# struct ifinfomsg { unsigned char ifi_family; unsigned char __ifi_pad;
#                    unsigned short ifi_type; int ifi_index; unsigned ifi_flags;
#                    unsigned ifi_change; };
_IFINFOMSG = struct.Struct("=BxHiII")
# struct rtmsg { unsigned char rtm_family, rtm_dst_len, rtm_src_len, rtm_tos,
#                rtm_table, rtm_protocol, rtm_scope, rtm_type; unsigned rtm_flags; };
_RTMSG = struct.Struct("=BBBBBBBBI")
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PRIORITY = 6
RTA_TABLE = 15
RTN_UNICAST = 1
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RT_SCOPE_HOST = 254
RT_SCOPE_NOWHERE = 255  # in a delete: any scope
RT_TABLE_UNSPEC = 0
RT_TABLE_MAIN = 254
RTPROT_KERNEL = 2
RTPROT_BOOT = 3  # what ``ip route add`` sets
RTPROT_STATIC = 4
RTNH_F_ONLINK = 4
RTM_F_CLONED = 0x200  # a cache entry, not a route anyone added
RTEXT_FILTER_SKIP_STATS = 1 << 3

# --- include/uapi/linux/if_link.h -------------------------------------------
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_LINK = 5
IFLA_LINKINFO = 18
IFLA_NET_NS_FD = 28
IFLA_EXT_MASK = 29
IFLA_LINK_NETNSID = 37
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
IFF_UP = 0x1  # include/uapi/linux/if.h
IFNAMSIZ = 16  # include/uapi/linux/if.h: 15 characters and the NUL

# --- include/uapi/linux/veth.h ----------------------------------------------
VETH_INFO_PEER = 1  # struct ifinfomsg, then the peer's IFLA_* attributes

# --- include/uapi/linux/if_addr.h -------------------------------------------
# struct ifaddrmsg { __u8 ifa_family; __u8 ifa_prefixlen; __u8 ifa_flags;
#                    __u8 ifa_scope; __u32 ifa_index; };
_IFADDRMSG = struct.Struct("=BBBBI")
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_FLAGS = 8  # all 32 flag bits; ifa_flags holds only the low 8
IFA_F_NODAD = 0x02
IFA_F_TENTATIVE = 0x40
IFA_F_PERMANENT = 0x80

# --- include/uapi/linux/sched.h ---------------------------------------------
CLONE_NEWNET = 0x40000000

NETNS_DIR = "/var/run/netns"  # where ``ip netns add`` mounts named namespaces
_THIS_NETNS = "/proc/thread-self/ns/net"
_OPEN_FLAGS = posix.O_RDONLY | posix.O_CLOEXEC
#: Requests per datagram: every answer is a datagram of its own in the socket's
#: receive buffer (~200 KiB), which must hold all of a datagram's answers.
_BATCH = 64
_DUMP_RETRIES = 5


class NetlinkError(OSError):
    """The kernel refused a request (or a namespace could not be entered).

    ``errno`` is the kernel's errno, ``text`` its extended-ACK reason (empty
    when it gave none), ``request`` what was asked, and ``index`` the request's
    position in its batch (-1 outside a batch)."""

    def __init__(self, code: int, text: str = "", request: str = "", index: int = -1) -> None:
        reason = posix.strerror(code)
        if text:
            reason += f" ({text})"
        if request:
            reason = f"{request}: {reason}"
        super().__init__(code, reason)
        self.text = text
        self.request = request
        self.index = index


# --- namespaces -------------------------------------------------------------

_libc_setns: Callable[[int, int], int] | None = None


def _load_setns() -> Callable[[int, int], int]:
    """libc's setns(2) as a callable, through ``_ctypes`` itself: ``import ctypes``
    costs each pod ~7 ms, ``_ctypes`` under 1.  The few lines ``ctypes.CDLL``
    would run are spelled out: an ``int``-returning C function, errno kept
    (read with ``_ctypes.get_errno``).  Any surprise falls back to ctypes."""
    try:
        import _ctypes  # noqa: PLC0415 - see the module docstring

        simple: Any = _ctypes._SimpleCData  # generic only to type checkers

        class _Int(simple):  # type: ignore[misc]  # ctypes.c_int
            _type_ = "i"

        class _Function(_ctypes.CFuncPtr):
            _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
            _restype_ = _Int

        class _Libc:
            _handle = _ctypes.dlopen(None, 0)  # type: ignore[arg-type]  # this program

        function = _Function(("setns", _Libc()))  # type: ignore[arg-type]  # has _handle

        def call(fd: int, kind: int) -> int:
            return 0 if function(fd, kind) == 0 else int(_ctypes.get_errno())

        return call
    except Exception:  # an interpreter whose internals differ
        import ctypes  # noqa: PLC0415

        libc = ctypes.CDLL(None, use_errno=True)

        def fallback(fd: int, kind: int) -> int:
            return 0 if libc.setns(fd, kind) == 0 else ctypes.get_errno()

        return fallback


def _setns(fd: int, path: str) -> None:
    """setns(2) into the network namespace open as ``fd``, for this thread."""
    global _libc_setns  # noqa: PLW0603 - loaded once, on first use, to keep it off start-up
    code = 0
    native = getattr(posix, "setns", None)  # Python >= 3.12
    if native is not None:
        try:
            native(fd, CLONE_NEWNET)
        except OSError as exc:
            code = exc.errno or errno.EINVAL
    else:
        if _libc_setns is None:
            _libc_setns = _load_setns()
        code = _libc_setns(fd, CLONE_NEWNET)
    if code == errno.EINVAL:
        raise NetlinkError(code, "not a network namespace", f"enter {path}")
    if code:
        raise NetlinkError(code, "", f"enter {path}")


class NetnsSwitch:
    """The context of ``enter_netns``: this thread in another network namespace."""

    __slots__ = ("_home", "path")

    def __init__(self, path: str) -> None:
        self.path = path
        self._home = -1

    def __enter__(self) -> None:
        home = posix.open(_THIS_NETNS, _OPEN_FLAGS)
        try:
            target = posix.open(self.path, _OPEN_FLAGS)
            try:
                _setns(target, self.path)
            finally:
                posix.close(target)
        except BaseException:
            posix.close(home)
            raise
        self._home = home

    def __exit__(self, *exc: object) -> None:
        home, self._home = self._home, -1
        try:
            _setns(home, "the original network namespace")
        finally:
            posix.close(home)


def enter_netns(path: str) -> NetnsSwitch:
    """``with enter_netns("/var/run/netns/x"):`` runs its body with this thread
    in that network namespace (setns(2), ``CLONE_NEWNET``) and returns to the
    thread's own namespace afterwards, whether or not the body raises.  A
    missing path raises FileNotFoundError; a file that is not a network
    namespace, NetlinkError(EINVAL)."""
    return NetnsSwitch(path)


def netns_path(netns: str) -> str:
    """A namespace given by path, or by its ``ip netns`` name."""
    return netns if "/" in netns else f"{NETNS_DIR}/{netns}"


# --- encoding ---------------------------------------------------------------


def _attr(kind: int, value: bytes) -> bytes:
    n = _NLATTR.size + len(value)
    return _NLATTR.pack(n, kind) + value + b"\0" * (-n & 3)


def _name(name: str) -> bytes:
    raw = name.encode()
    if not raw or len(raw) >= IFNAMSIZ or b"/" in raw or b"\0" in raw:
        raise ValueError(f"{name!r} is not an interface name (1 to 15 bytes)")
    return raw + b"\0"


def _address(family: int, address: bytes, what: str) -> None:
    size = _ADDRESS_SIZE.get(family)
    if size is None:
        raise ValueError(f"family {family} is neither AF_INET nor AF_INET6")
    if len(address) != size:
        raise ValueError(f"{what} is {len(address)} octets, not {size}")


def _text(family: int, address: bytes) -> str:
    return _socket.inet_ntop(family, address)


class Request:
    """One rtnetlink request, built but not yet sent (see ``Rtnl.batch``).
    ``tolerate`` is an errno taken as success (say ENODEV when deleting a link
    that may be gone already); ``what`` names the request in errors."""

    __slots__ = ("body", "flags", "kind", "tolerate", "what")

    def __init__(self, kind: int, flags: int, body: bytes, what: str, tolerate: int = 0) -> None:
        self.kind = kind
        self.flags = flags
        self.body = body
        self.what = what
        self.tolerate = tolerate

    def __repr__(self) -> str:
        return f"<Request {self.what}>"


def create_veth_request(
    name: str, peer_name: str, peer_netns_fd: int, mtu: int, mac: bytes | None = None, *,
    peer_mac: bytes | None = None,
) -> Request:  # fmt: skip
    """RTM_NEWLINK of a veth pair (veth.h): ``name`` in the socket's namespace,
    ``peer_name`` created directly in the namespace open as ``peer_netns_fd``
    (-1: the socket's own).  NLM_F_EXCL: an existing name is EEXIST, never
    reused.  A MAC left None is chosen at random by the kernel."""
    peer = _IFINFOMSG.pack(0, 0, 0, 0, 0) + _attr(IFLA_IFNAME, _name(peer_name))
    peer += _attr(IFLA_MTU, _U32.pack(mtu))
    if peer_mac is not None:
        peer += _attr(IFLA_ADDRESS, peer_mac)
    if peer_netns_fd >= 0:
        peer += _attr(IFLA_NET_NS_FD, _U32.pack(peer_netns_fd))
    info = _attr(IFLA_INFO_KIND, b"veth\0") + _attr(IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer))
    body = _IFINFOMSG.pack(0, 0, 0, 0, 0) + _attr(IFLA_IFNAME, _name(name))
    body += _attr(IFLA_MTU, _U32.pack(mtu))
    if mac is not None:
        body += _attr(IFLA_ADDRESS, mac)
    body += _attr(IFLA_LINKINFO, info)
    flags = NLM_F_CREATE | NLM_F_EXCL
    return Request(RTM_NEWLINK, flags, body, f"create veth {name} (peer {peer_name})")


def set_up_request(index: int) -> Request:
    """RTM_NEWLINK changing only IFF_UP (``ifi_change`` is the mask)."""
    body = _IFINFOMSG.pack(0, 0, index, IFF_UP, IFF_UP)
    return Request(RTM_NEWLINK, 0, body, f"set link #{index} up")


def delete_link_request(link: int | str, *, missing_ok: bool = False) -> Request:
    """RTM_DELLINK by index or name.  Deleting either end of a veth deletes both."""
    if isinstance(link, int):
        body = _IFINFOMSG.pack(0, 0, link, 0, 0)
        what = f"delete link #{link}"
    else:
        body = _IFINFOMSG.pack(0, 0, 0, 0, 0) + _attr(IFLA_IFNAME, _name(link))
        what = f"delete link {link}"
    return Request(RTM_DELLINK, 0, body, what, errno.ENODEV if missing_ok else 0)


def add_address_request(
    index: int, family: int, address: bytes, prefixlen: int, nodad: bool = False
) -> Request:
    """RTM_NEWADDR (if_addr.h) with IFA_LOCAL and IFA_ADDRESS both the address,
    as ``ip addr add`` sends for a non point-to-point address.  ``nodad`` sets
    IFA_F_NODAD (in IFA_FLAGS): an IPv6 address usable at once, not
    "tentative" for the second or so of Duplicate Address Detection (RFC 4862
    §5.4), pointless on a veth with one neighbour.  IPv4 has no DAD: ignored."""
    _address(family, address, "the address")
    flags = IFA_F_NODAD if nodad and family == AF_INET6 else 0
    body = _IFADDRMSG.pack(family, prefixlen, flags & 0xFF, RT_SCOPE_UNIVERSE, index)
    body += _attr(IFA_LOCAL, address) + _attr(IFA_ADDRESS, address)
    if flags:
        body += _attr(IFA_FLAGS, _U32.pack(flags))
    what = f"add address {_text(family, address)}/{prefixlen} to #{index}"
    return Request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body, what)


def _route_request(
    kind: int, flags: int, head: bytes, dst: bytes, *, gateway: bytes, oif: int, table: int,
    tolerate: int = 0,
) -> Request:  # fmt: skip
    """A route request: ``head`` (struct rtmsg) and the route's attributes."""
    family, dst_len = head[0], head[1]
    _address(family, dst, "the destination")
    what = f"{'add' if kind == RTM_NEWROUTE else 'delete'} route {_text(family, dst)}/{dst_len}"
    body = head + _attr(RTA_TABLE, _U32.pack(table))
    if dst_len:
        body += _attr(RTA_DST, dst)
    if gateway:
        _address(family, gateway, "the gateway")
        body += _attr(RTA_GATEWAY, gateway)
        what += f" via {_text(family, gateway)}"
    if oif:
        body += _attr(RTA_OIF, _U32.pack(oif))
        what += f" dev #{oif}"
    return Request(kind, flags, body, what, tolerate)


def add_route_request(
    family: int, dst: bytes, dst_len: int, *, gateway: bytes = b"", oif: int = 0,
    scope: int = RT_SCOPE_UNIVERSE, table: int = RT_TABLE_MAIN, protocol: int = RTPROT_BOOT,
    onlink: bool = False, replace: bool = False,
) -> Request:  # fmt: skip
    """RTM_NEWROUTE of a unicast route (rtnetlink.h).  A route with no gateway
    wants ``scope=RT_SCOPE_LINK``; IPv4 insists its output device be up.
    ``onlink`` (RTNH_F_ONLINK) takes the gateway as reachable on ``oif``
    without a route to it.  Without ``replace``, an existing route at the same
    destination, table and metric is EEXIST (NLM_F_EXCL)."""
    head = _RTMSG.pack(
        family, dst_len, 0, 0, table if table < 256 else RT_TABLE_UNSPEC,
        protocol, scope, RTN_UNICAST, RTNH_F_ONLINK if onlink else 0,
    )  # fmt: skip
    flags = NLM_F_CREATE | (NLM_F_REPLACE if replace else NLM_F_EXCL)
    return _route_request(RTM_NEWROUTE, flags, head, dst, gateway=gateway, oif=oif, table=table)


def delete_route_request(
    family: int, dst: bytes, dst_len: int, *, gateway: bytes = b"", oif: int = 0,
    table: int = RT_TABLE_MAIN, protocol: int = 0, missing_ok: bool = False,
) -> Request:  # fmt: skip
    """RTM_DELROUTE of the route at ``dst/dst_len`` in ``table``; a gateway,
    device or protocol given narrows the match (0 or empty: any), and so does
    nothing else: any scope (RT_SCOPE_NOWHERE), type and metric.  A route not
    found is ESRCH, tolerated with ``missing_ok``."""
    head = _RTMSG.pack(
        family, dst_len, 0, 0, table if table < 256 else RT_TABLE_UNSPEC,
        protocol, RT_SCOPE_NOWHERE, 0, 0,
    )  # fmt: skip
    tolerate = errno.ESRCH if missing_ok else 0
    return _route_request(
        RTM_DELROUTE, 0, head, dst, gateway=gateway, oif=oif, table=table, tolerate=tolerate
    )


# --- decoding ---------------------------------------------------------------


def _split(data: bytes) -> Iterator[tuple[int, int, int, memoryview]]:
    """(type, flags, seq, body) of each message in a datagram from the kernel."""
    view = memoryview(data)
    offset, end = 0, len(data)
    while offset + _NLMSGHDR.size <= end:
        length, kind, flags, seq, _pid = _NLMSGHDR.unpack_from(view, offset)
        if length < _NLMSGHDR.size or offset + length > end:
            raise NetlinkError(errno.EBADMSG, f"message length {length} at offset {offset}")
        yield kind, flags, seq, view[offset + _NLMSGHDR.size : offset + length]
        offset += (length + 3) & ~3


def _attributes(body: memoryview, offset: int) -> Iterator[tuple[int, memoryview]]:
    """(type, value) of each attribute from ``offset`` on."""
    end = len(body)
    while offset + _NLATTR.size <= end:
        length, kind = _NLATTR.unpack_from(body, offset)
        if length < _NLATTR.size or offset + length > end:
            raise NetlinkError(errno.EBADMSG, "an attribute overruns its message")
        yield kind & NLA_TYPE_MASK, body[offset + _NLATTR.size : offset + length]
        offset += (length + 3) & ~3


def _string(value: memoryview) -> str:
    return bytes(value).split(b"\0", 1)[0].decode(errors="replace")


def _error(kind: int, flags: int, body: memoryview) -> tuple[int, str]:
    """(errno, extended-ACK text) of an NLMSG_ERROR, or of the NLMSG_DONE that
    ends a dump; errno 0 is an acknowledgement / a complete dump."""
    if len(body) < _NLMSGERR.size:
        return 0, ""  # a dump's NLMSG_DONE from a kernel that sends no status
    (code,) = _NLMSGERR.unpack_from(body, 0)
    text = ""
    if flags & NLM_F_ACK_TLVS:
        # NLMSG_ERROR: the TLVs follow the request's header (NETLINK_CAP_ACK)
        # or all of it; NLMSG_DONE: they follow the error.
        start = _NLMSGERR.size
        if kind == NLMSG_ERROR:
            echoed = _NLMSGHDR.size
            if not flags & NLM_F_CAPPED:
                (echoed,) = _U32.unpack_from(body, _NLMSGERR.size)
            start += (echoed + 3) & ~3
        for attr, value in _attributes(body, start):
            if attr == NLMSGERR_ATTR_MSG:
                text = _string(value)
    return -code, text


class Link:
    """An interface as RTM_NEWLINK describes it (if_link.h).  ``link`` is
    IFLA_LINK, for a veth its peer's index (in the peer's namespace, which is
    ``link_netnsid`` as this namespace numbers it; -1 when the same)."""

    __slots__ = ("flags", "index", "kind", "link", "link_netnsid", "mac", "mtu", "name")

    def __init__(
        self, index: int, name: str, mac: bytes, mtu: int, flags: int, *, link: int = 0,
        link_netnsid: int = -1, kind: str = "",
    ) -> None:  # fmt: skip
        self.index = index
        self.name = name
        self.mac = mac
        self.mtu = mtu
        self.flags = flags
        self.link = link
        self.link_netnsid = link_netnsid
        self.kind = kind

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)

    def __repr__(self) -> str:
        mac = ":".join(f"{b:02x}" for b in self.mac)
        return (
            f"<Link {self.index}: {self.name} {self.kind or '-'} mtu {self.mtu} {mac}"
            f"{' up' if self.up else ''} link {self.link}@{self.link_netnsid}>"
        )


def _link(body: memoryview) -> Link:
    _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(body, 0)
    found = Link(index, "", b"", 0, flags)
    for kind, value in _attributes(body, _IFINFOMSG.size):
        if kind == IFLA_IFNAME:
            found.name = _string(value)
        elif kind == IFLA_ADDRESS:
            found.mac = bytes(value)
        elif kind == IFLA_MTU:
            (found.mtu,) = _U32.unpack_from(value, 0)
        elif kind == IFLA_LINK:
            (found.link,) = _S32.unpack_from(value, 0)
        elif kind == IFLA_LINK_NETNSID:
            (found.link_netnsid,) = _S32.unpack_from(value, 0)
        elif kind == IFLA_LINKINFO:
            for inner, info in _attributes(value, 0):
                if inner == IFLA_INFO_KIND:
                    found.kind = _string(info)
    return found


class Route:
    """A unicast, blackhole or other route as RTM_NEWROUTE describes it
    (rtnetlink.h).  ``dst`` is all zeros for a default route; ``gateway`` is
    empty without one (and for a multipath route, whose hops are not read);
    ``metric`` is RTA_PRIORITY (IPv6 stores 1024 for none given)."""

    __slots__ = (
        "dst", "dst_len", "family", "gateway", "metric", "oif", "protocol", "scope", "table",
        "type",
    )  # fmt: skip

    def __init__(
        self, family: int, dst: bytes, dst_len: int, *, gateway: bytes = b"", oif: int = 0,
        scope: int = RT_SCOPE_UNIVERSE, protocol: int = RTPROT_BOOT, table: int = RT_TABLE_MAIN,
        type: int = RTN_UNICAST, metric: int = 0,
    ) -> None:  # fmt: skip
        self.family = family
        self.dst = dst
        self.dst_len = dst_len
        self.gateway = gateway
        self.oif = oif
        self.scope = scope
        self.protocol = protocol
        self.table = table
        self.type = type
        self.metric = metric

    def __repr__(self) -> str:
        text = f"{_text(self.family, self.dst)}/{self.dst_len}"
        if self.gateway:
            text += f" via {_text(self.family, self.gateway)}"
        return (
            f"<Route {text} dev #{self.oif} scope {self.scope} proto {self.protocol}"
            f" table {self.table} type {self.type} metric {self.metric}>"
        )


def _route(body: memoryview) -> Route | None:
    family, dst_len, _src, _tos, table, protocol, scope, kind, rtm_flags = _RTMSG.unpack_from(
        body, 0
    )
    size = _ADDRESS_SIZE.get(family)
    if size is None or rtm_flags & RTM_F_CLONED:
        return None
    found = Route(
        family, bytes(size), dst_len, scope=scope, protocol=protocol, table=table, type=kind
    )
    for attr, value in _attributes(body, _RTMSG.size):
        if attr == RTA_DST:
            found.dst = bytes(value)
        elif attr == RTA_GATEWAY:
            found.gateway = bytes(value)
        elif attr == RTA_OIF:
            (found.oif,) = _U32.unpack_from(value, 0)
        elif attr == RTA_TABLE:
            (found.table,) = _U32.unpack_from(value, 0)
        elif attr == RTA_PRIORITY:
            (found.metric,) = _U32.unpack_from(value, 0)
    return found


# --- the socket -------------------------------------------------------------


class Rtnl:
    """A NETLINK_ROUTE socket acting in one network namespace: the caller's,
    or ``netns`` (a path, or a name under /var/run/netns) for the socket's
    whole life.  Blocking and synchronous: each call returns once the kernel
    has answered."""

    __slots__ = ("_buffer", "_seq", "_sock")

    def __init__(self, netns: str | None = None) -> None:
        if netns is None:
            sock = self._open()
        else:
            with enter_netns(netns_path(netns)):
                sock = self._open()
        try:
            for option in (NETLINK_EXT_ACK, NETLINK_CAP_ACK):
                try:  # noqa: SIM105 - contextlib would cost its import
                    sock.setsockopt(SOL_NETLINK, option, 1)
                except OSError:
                    pass  # an old kernel: answers without the reason, or with the request
            sock.bind((0, 0))
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._seq = 0
        # A dump datagram is at most 32 KiB (af_netlink.c, netlink_dump).
        self._buffer = bytearray(65536)

    @staticmethod
    def _open() -> _socket.socket:
        return _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW, _socket.NETLINK_ROUTE)

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests --

    def batch(self, requests: Iterable[Request]) -> None:
        """Send ``requests`` together (64 to a datagram) and wait for
        every answer.  The kernel handles each in order, whether or not an
        earlier one failed; the first refusal (by position) is then raised as
        NetlinkError with ``index`` its position and ``request`` its
        description, so requests that depend on one another are best sent
        separately or expected to fail together."""
        first: NetlinkError | None = None
        chunk: list[Request] = []
        offset = 0
        for request in requests:
            chunk.append(request)
            if len(chunk) == _BATCH:
                failure = self._send(chunk, offset)
                first = first or failure
                offset += len(chunk)
                chunk = []
        if chunk:
            failure = self._send(chunk, offset)
            first = first or failure
        if first is not None:
            raise first

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        return self._seq

    def _send(self, requests: list[Request], offset: int) -> NetlinkError | None:
        pending: dict[int, int] = {}
        parts = []
        for position, request in enumerate(requests):
            seq = self._next_seq()
            pending[seq] = position
            flags = NLM_F_REQUEST | NLM_F_ACK | request.flags
            size = _NLMSGHDR.size + len(request.body)
            parts.append(_NLMSGHDR.pack(size, request.kind, flags, seq, 0) + request.body)
        self._sock.send(b"".join(parts))
        first: tuple[int, NetlinkError] | None = None
        for kind, flags, seq, body in self._receive():
            if kind != NLMSG_ERROR or seq not in pending:
                continue
            position = pending.pop(seq)
            code, text = _error(kind, flags, body)
            request = requests[position]
            if code and code != request.tolerate and (first is None or position < first[0]):
                first = position, NetlinkError(code, text, request.what, offset + position)
            if not pending:
                break
        return None if first is None else first[1]

    def _receive(self) -> Iterator[tuple[int, int, int, memoryview]]:
        buffer = self._buffer
        while True:
            n = self._sock.recv_into(buffer, 0, _socket.MSG_TRUNC)
            if n > len(buffer):
                raise NetlinkError(errno.EMSGSIZE, f"a {n}-byte answer", "read from the kernel")
            yield from _split(bytes(memoryview(buffer)[:n]))

    def _ask(self, kind: int, flags: int, body: bytes, what: str) -> tuple[list[memoryview], bool]:
        """Send one request; its answers up to NLMSG_DONE (a dump) or the
        acknowledgement, and whether a dump was interrupted by a change."""
        seq = self._next_seq()
        flags |= NLM_F_REQUEST
        self._sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, seq, 0) + body)
        found: list[memoryview] = []
        interrupted = False
        for got, got_flags, got_seq, got_body in self._receive():
            if got_seq != seq:
                continue
            interrupted = interrupted or bool(got_flags & NLM_F_DUMP_INTR)
            if got in (NLMSG_ERROR, NLMSG_DONE):
                code, text = _error(got, got_flags, got_body)
                if code:
                    raise NetlinkError(code, text, what)
                return found, interrupted
            if got != NLMSG_NOOP:
                found.append(got_body)
        # Never reached (_receive is endless); for the type checker.
        raise NetlinkError(errno.EPROTO, "no end to the answers", what)

    def _dump(
        self, kind: int, body: bytes, what: str, exact: bool = True
    ) -> list[memoryview]:
        """A whole table; one the kernel marks interrupted (it changed under the
        dump) is read again, and after a few tries raises, unless ``exact`` is
        off: then the last, possibly inconsistent, reading is the answer."""
        found: list[memoryview] = []
        for _ in range(_DUMP_RETRIES):
            found, interrupted = self._ask(kind, NLM_F_DUMP, body, what)
            if not interrupted:
                return found
        if not exact:
            return found
        raise NetlinkError(errno.EAGAIN, "the table kept changing", what)

    # -- links --

    def create_veth(
        self, name: str, peer_name: str, peer_netns_fd: int, mtu: int, mac: bytes | None, *,
        peer_mac: bytes | None = None,
    ) -> None:  # fmt: skip
        """See ``create_veth_request``."""
        request = create_veth_request(name, peer_name, peer_netns_fd, mtu, mac, peer_mac=peer_mac)
        self.batch([request])

    def link(self, name: str) -> Link | None:
        """The interface called ``name`` here; None if there is none."""
        body = _IFINFOMSG.pack(0, 0, 0, 0, 0) + _attr(IFLA_IFNAME, _name(name))
        body += _attr(IFLA_EXT_MASK, _U32.pack(RTEXT_FILTER_SKIP_STATS))
        try:
            found, _ = self._ask(RTM_GETLINK, NLM_F_ACK, body, f"get link {name}")
        except NetlinkError as exc:
            if exc.errno == errno.ENODEV:
                return None
            raise
        return _link(found[0]) if found else None

    def links(self, exact: bool = True) -> list[Link]:
        """Every interface here.  ``exact=False`` accepts a dump that links being
        added or removed meanwhile interrupted (see ``_dump``): a node starting
        many pods at once changes its link table without pause."""
        body = _IFINFOMSG.pack(0, 0, 0, 0, 0)
        body += _attr(IFLA_EXT_MASK, _U32.pack(RTEXT_FILTER_SKIP_STATS))
        return [_link(m) for m in self._dump(RTM_GETLINK, body, "list links", exact)]

    def set_up(self, index: int) -> None:
        self.batch([set_up_request(index)])

    def delete_link(self, link: int | str, *, missing_ok: bool = False) -> None:
        """See ``delete_link_request``."""
        self.batch([delete_link_request(link, missing_ok=missing_ok)])

    # -- addresses --

    def add_address(
        self, index: int, family: int, address: bytes, prefixlen: int, nodad: bool = False
    ) -> None:
        """See ``add_address_request``."""
        self.batch([add_address_request(index, family, address, prefixlen, nodad)])

    def addresses(self, index: int | None = None) -> list[tuple[int, int, bytes, int, int]]:
        """(index, family, address, prefixlen, IFA_F_* flags) of each address
        here, or on interface ``index`` only."""
        found = []
        for body in self._dump(RTM_GETADDR, _IFADDRMSG.pack(0, 0, 0, 0, 0), "list addresses"):
            family, prefixlen, flags, _scope, ifindex = _IFADDRMSG.unpack_from(body, 0)
            if index is not None and ifindex != index:
                continue
            address = local = b""
            for kind, value in _attributes(body, _IFADDRMSG.size):
                if kind == IFA_ADDRESS:
                    address = bytes(value)
                elif kind == IFA_LOCAL:
                    local = bytes(value)  # our end, where IFA_ADDRESS is a peer's
                elif kind == IFA_FLAGS:
                    (flags,) = _U32.unpack_from(value, 0)
            found.append((ifindex, family, local or address, prefixlen, flags))
        return found

    # -- routes --

    def add_route(
        self, family: int, dst: bytes, dst_len: int, *, gateway: bytes = b"", oif: int = 0,
        scope: int = RT_SCOPE_UNIVERSE, table: int = RT_TABLE_MAIN, protocol: int = RTPROT_BOOT,
        onlink: bool = False, replace: bool = False,
    ) -> None:  # fmt: skip
        """See ``add_route_request``."""
        request = add_route_request(
            family, dst, dst_len, gateway=gateway, oif=oif, scope=scope, table=table,
            protocol=protocol, onlink=onlink, replace=replace,
        )  # fmt: skip
        self.batch([request])

    def delete_route(
        self, family: int, dst: bytes, dst_len: int, *, gateway: bytes = b"", oif: int = 0,
        table: int = RT_TABLE_MAIN, protocol: int = 0, missing_ok: bool = False,
    ) -> None:  # fmt: skip
        """See ``delete_route_request``."""
        request = delete_route_request(
            family, dst, dst_len, gateway=gateway, oif=oif, table=table, protocol=protocol,
            missing_ok=missing_ok,
        )  # fmt: skip
        self.batch([request])

    def routes(self, family: int, table: int = RT_TABLE_MAIN) -> list[Route]:
        """The routes of ``family`` in ``table`` (route cache entries left out)."""
        body = _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
        found = []
        for message in self._dump(RTM_GETROUTE, body, "list routes"):
            route = _route(message)
            if route is not None and route.family == family and route.table == table:
                found.append(route)
        return found


# --- helpers ----------------------------------------------------------------


def write_sysctl(path: str, value: str) -> None:
    """Write ``value`` to /proc/sys/``path`` (slash-separated, as in
    ``net/ipv4/conf/cali1234/proxy_arp``: dots occur in interface names).
    /proc/sys/net shows the network namespace of the thread that opens it, so
    call this inside ``enter_netns`` for another namespace."""
    fd = posix.open(f"/proc/sys/{path.lstrip('/')}", posix.O_WRONLY | posix.O_CLOEXEC)
    try:
        posix.write(fd, value.encode())
    finally:
        posix.close(fd)


def link_local_from_mac(mac: bytes) -> bytes:
    """The fe80::/64 address the kernel gives an Ethernet interface with
    ``addr_gen_mode`` eui64 (net/ipv6/addrconf.c, addrconf_ifid_eui48): the
    modified EUI-64 of RFC 4291 appendix A, the MAC with ff:fe in its middle
    and the universal/local bit inverted."""
    if len(mac) != 6:
        raise ValueError("a MAC address is 6 octets")
    iid = bytes((mac[0] ^ 0x02, mac[1], mac[2], 0xFF, 0xFE, mac[3], mac[4], mac[5]))
    return b"\xfe\x80" + bytes(6) + iid
