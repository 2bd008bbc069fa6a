"""What ADD, DEL and CHECK do to the kernel (CALICO.md §5.2-5.3), through our own
rtnetlink socket (``netlink.py``): a veth pair whose host end routes the pod.

ADD, in order, each step pushing its undo so that a failure anywhere leaves
nothing behind:
 1. the veth pair, created with its container end (``CNI_IFNAME``, the MTU)
    directly inside the pod's namespace and its host end ``caliXXXXXXXXXXX``
    with MAC ee:ee:ee:ee:ee:ee (undo: delete it, which deletes both ends and
    every route through them);
 2. the host end's sysctls (proxy ARP answers the pod's ARP for 169.254.1.1 with
    ee:ee..., so the pod needs no real gateway), then up;
 3. in the pod, in one batch: the interface up, its addresses (/32, /128 with
    DAD off), a link route to 169.254.1.1 and the default route through it; for
    IPv6 the default route through the host end's link-local address, which the
    kernel derives from the fixed MAC;
 4. on the host, ``<pod IP>/32 dev caliXXXX scope link`` per address.

Calico's plugin does the same steps in the same order.
"""

from __future__ import annotations

import errno
import os

from . import netlink
from .netlink import AF_INET, AF_INET6, NetlinkError, Rtnl
from .spec import (
    CHECK_FAILED,
    INTERFACE_EXISTS,
    INVALID_CONFIG,
    INVALID_NETNS,
    KERNEL_ERROR,
    CniError,
)

TYPE_CHECKING = False  # not from typing: its import costs the CNI plugin ~4 ms

if TYPE_CHECKING:
    from collections.abc import Callable

HOST_MAC = b"\xee" * 6
GATEWAY4 = bytes((169, 254, 1, 1))
GATEWAY6 = netlink.link_local_from_mac(HOST_MAC)
ANY4 = bytes(4)
ANY6 = bytes(16)
#: RFC 8200 §5: below this the kernel runs no IPv6 on a link (no address, no sysctls).
IPV6_MIN_MTU = 1280
_HOST_SYSCTLS4 = (
    ("net/ipv4/conf/{}/route_localnet", "1"),
    ("net/ipv4/neigh/{}/proxy_delay", "0"),
    ("net/ipv4/conf/{}/proxy_arp", "1"),
    ("net/ipv4/conf/{}/forwarding", "1"),
)
_HOST_SYSCTLS6 = (
    ("net/ipv6/conf/{}/accept_dad", "0"),
    ("net/ipv6/conf/{}/disable_ipv6", "0"),
    ("net/ipv6/conf/{}/proxy_ndp", "1"),
    ("net/ipv6/conf/{}/forwarding", "1"),
)


def host_veth_name(namespace: str, pod: str, container_id: str, prefix: str = "cali") -> str:
    """``cali`` + the first 11 hex digits of SHA-1 of ``<namespace>.<pod>`` (the
    container ID outside Kubernetes), as Calico names it: stable across a pod's
    sandboxes, and 15 characters, the kernel's limit."""
    try:
        from _sha1 import sha1  # type: ignore[import-not-found]  # noqa: PLC0415 - hashlib costs ~5 ms more
    except ImportError:  # pragma: no cover - a Python built without it
        from hashlib import sha1  # noqa: PLC0415
    key = f"{namespace}.{pod}" if namespace and pod else container_id
    digest: str = sha1(key.encode()).hexdigest()
    return prefix + digest[:11]


class Address:
    """One pod address: family, packed bytes and text."""

    __slots__ = ("family", "packed", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.family = AF_INET6 if ":" in text else AF_INET
        self.packed = _pton(self.family, text)

    @property
    def host_length(self) -> int:
        return 32 if self.family == AF_INET else 128


def _pton(family: int, text: str) -> bytes:
    return netlink.inet_pton(family, text)


def _ntop(family: int, packed: bytes) -> str:
    return netlink.inet_ntop(family, packed)


def mac_text(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def open_netns(path: str) -> int:
    """The pod's namespace, open; a clear CNI error when it is not one."""
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise CniError(INVALID_NETNS, f"CNI_NETNS: cannot open {path}: {exc.strerror}") from None


def _kernel(exc: NetlinkError) -> CniError:
    return CniError(KERNEL_ERROR, str(exc))


class Attached:
    """What ADD made: the container interface's MAC and the host end's name."""

    __slots__ = ("container_mac", "host_name")

    def __init__(self, host_name: str, container_mac: bytes) -> None:
        self.host_name = host_name
        self.container_mac = container_mac


def add(
    netns: str, ifname: str, host_name: str, *, mtu: int, addresses: list[Address],
    undo: list[Callable[[], object]], routes: list[tuple[int, bytes, int]] | None = None,
) -> Attached:  # fmt: skip
    """Steps 1-4 of the module docstring; undo actions are appended to ``undo``.
    ``routes`` (family, destination, length) replace the default routes in the pod
    (host-local's custom routes, CALICO.md §4.5); always through the gateway."""
    if 0 < mtu < IPV6_MIN_MTU and any(a.family == AF_INET6 for a in addresses):
        raise CniError(INVALID_CONFIG, f"mtu: {mtu} is below the IPv6 minimum of {IPV6_MIN_MTU}")
    nsfd = open_netns(netns)
    try:
        host = Rtnl()
        try:
            try:
                container = Rtnl(netns)
            except (NetlinkError, OSError) as exc:
                raise CniError(INVALID_NETNS, f"CNI_NETNS: {netns}: {exc}") from None
            try:
                return _add(
                    host, container, nsfd, ifname, host_name, netns=netns, mtu=mtu,
                    addresses=addresses,
                    undo=undo, routes=routes,
                )
            finally:
                container.close()
        finally:
            host.close()
    finally:
        os.close(nsfd)


def _add(
    host: Rtnl, container: Rtnl, nsfd: int, ifname: str, host_name: str, *, netns: str, mtu: int,
    addresses: list[Address], undo: list[Callable[[], object]],
    routes: list[tuple[int, bytes, int]] | None,
) -> Attached:  # fmt: skip
    if container.link(ifname) is not None:
        raise CniError(INTERFACE_EXISTS, f"interface {ifname} already exists in the container")
    # A host end left by an earlier sandbox of the same pod: Calico deletes it too.
    host.delete_link(host_name, missing_ok=True)
    try:
        host.create_veth(host_name, ifname, nsfd, mtu, HOST_MAC)
    except NetlinkError as exc:
        if exc.errno == errno.EEXIST:
            raise CniError(INTERFACE_EXISTS, f"creating {host_name}/{ifname}: {exc}") from None
        raise _kernel(exc) from None
    undo.append(lambda: _delete_host_end(host_name))
    try:
        host_link = host.link(host_name)
        container_link = container.link(ifname)
        if host_link is None or container_link is None:
            raise CniError(KERNEL_ERROR, f"the veth {host_name}/{ifname} vanished as it was made")
        families = {a.family for a in addresses}
        for path, value in _HOST_SYSCTLS4 if AF_INET in families else ():
            netlink.write_sysctl(path.format(host_name), value)
        if AF_INET6 in families:
            for path, value in _HOST_SYSCTLS6:
                netlink.write_sysctl(path.format(host_name), value)
        host.set_up(host_link.index)
        if AF_INET6 in families:
            # No DAD for the pod's link-local address either (Calico: accept_dad=0):
            # otherwise it stays "tentative" for a second after the link comes up.
            with netlink.enter_netns(netns):
                netlink.write_sysctl(f"net/ipv6/conf/{ifname}/accept_dad", "0")

        index = container_link.index
        requests = [netlink.set_up_request(index)]
        for a in addresses:
            requests.append(
                netlink.add_address_request(index, a.family, a.packed, a.host_length, nodad=True)
            )
        if AF_INET in families:
            requests.append(netlink.add_route_request(
                AF_INET, GATEWAY4, 32, oif=index, scope=netlink.RT_SCOPE_LINK
            ))  # fmt: skip
        for family, dst, length in pod_routes(families, routes):
            gateway = GATEWAY4 if family == AF_INET else GATEWAY6
            requests.append(
                netlink.add_route_request(family, dst, length, gateway=gateway, oif=index)
            )
        container.batch(requests)

        for a in addresses:
            _host_route(host, a, host_link.index, host_name)
    except NetlinkError as exc:
        raise _kernel(exc) from None
    except OSError as exc:  # a sysctl the kernel does not have for this link
        raise CniError(KERNEL_ERROR, f"{host_name}: {exc}") from None
    return Attached(host_name, container_link.mac)


def pod_routes(
    families: set[int], routes: list[tuple[int, bytes, int]] | None
) -> list[tuple[int, bytes, int]]:
    """The pod's routes through the gateway: the given ones, else a default route
    per family the pod has an address in."""
    if routes:
        return [r for r in routes if r[0] in families]
    return [(f, ANY4 if f == AF_INET else ANY6, 0) for f in sorted(families)]


def _host_route(host: Rtnl, address: Address, index: int, host_name: str) -> None:
    """``<pod IP>/32 dev caliXXXX scope link``; one already there through the same
    interface (Felix's, say) is fine, one through another interface is an error."""
    scope = netlink.RT_SCOPE_LINK if address.family == AF_INET else netlink.RT_SCOPE_UNIVERSE
    try:
        host.add_route(address.family, address.packed, address.host_length, oif=index, scope=scope)
    except NetlinkError as exc:
        if exc.errno != errno.EEXIST:
            raise
        for route in host.routes(address.family):
            same = route.dst == address.packed and route.dst_len == address.host_length
            if same and route.oif != index:
                raise CniError(
                    KERNEL_ERROR,
                    f"a route to {address.text} already exists through another interface "
                    f"(#{route.oif}, not {host_name})",
                ) from None


def _delete_host_end(host_name: str) -> None:
    with Rtnl() as host:
        host.delete_link(host_name, missing_ok=True)


def delete(netns: str, ifname: str, host_name: str | None) -> None:
    """Remove the pair: from inside the pod when its namespace is still there,
    else by the host end's name (when known from the record).  Idempotent."""
    if netns:
        try:
            with Rtnl(netns) as container:
                container.delete_link(ifname, missing_ok=True)
        except (OSError, NetlinkError):
            pass  # the namespace is gone, and the veth with it, or not: see below
    if host_name:
        with Rtnl() as host:
            host.delete_link(host_name, missing_ok=True)


def check(
    netns: str, ifname: str, host_name: str, *, mtu: int, mac: str, addresses: list[Address],
    routes: list[tuple[int, bytes, int]] | None = None,
) -> None:
    """CHECK: the attachment is still as ADD left it; the first differences found
    are reported as one error naming each."""
    problems: list[str] = []
    try:
        container = Rtnl(netns)
    except (OSError, NetlinkError) as exc:
        raise CniError(INVALID_NETNS, f"CNI_NETNS: {netns}: {exc}") from None
    try:
        with Rtnl() as host, container:
            _check(
                host, container, ifname, host_name, mtu=mtu, mac=mac, addresses=addresses,
                routes=routes, problems=problems,
            )
    except NetlinkError as exc:
        raise _kernel(exc) from None
    if problems:
        raise CniError(CHECK_FAILED, "; ".join(problems))


def _check(
    host: Rtnl, container: Rtnl, ifname: str, host_name: str, *, mtu: int, mac: str,
    addresses: list[Address], routes: list[tuple[int, bytes, int]] | None, problems: list[str],
) -> None:  # fmt: skip
    inner = container.link(ifname)
    outer = host.link(host_name)
    if inner is None:
        problems.append(f"interface {ifname} is missing from the container")
    if outer is None:
        problems.append(f"host interface {host_name} is missing")
    if inner is None or outer is None:
        return
    if not inner.up:
        problems.append(f"{ifname} is down")
    if not outer.up:
        problems.append(f"{host_name} is down")
    if inner.kind != "veth" or outer.kind != "veth" or inner.link != outer.index:
        problems.append(f"{ifname} is not the veth peer of {host_name}")
    if mtu and inner.mtu != mtu:
        problems.append(f"{ifname} has MTU {inner.mtu}, not {mtu}")
    if mac and mac_text(inner.mac) != mac:
        problems.append(f"{ifname} has MAC {mac_text(inner.mac)}, not {mac}")
    if outer.mac != HOST_MAC:
        problems.append(f"{host_name} has MAC {mac_text(outer.mac)}, not ee:ee:ee:ee:ee:ee")
    have = {(f, a, n) for i, f, a, n, _ in container.addresses(inner.index)}
    families = {a.family for a in addresses}
    for a in addresses:
        if (a.family, a.packed, a.host_length) not in have:
            problems.append(f"address {a.text}/{a.host_length} is missing from {ifname}")
    wanted: list[tuple[int, bytes, int, bytes, str]] = []
    if AF_INET in families:
        wanted.append((AF_INET, GATEWAY4, 32, b"", "the link route to 169.254.1.1"))
    for family, dst, length in pod_routes(families, routes):
        gateway = GATEWAY4 if family == AF_INET else GATEWAY6
        text = f"{_ntop(family, dst)}/{length}"
        wanted.append((family, dst, length, gateway, f"the route to {text} via the gateway"))
    for family in sorted(families):
        present = {(r.dst, r.dst_len, r.gateway, r.oif) for r in container.routes(family)}
        for fam, dst, length, gateway, what in wanted:
            if fam == family and (dst, length, gateway, inner.index) not in present:
                problems.append(f"{what} is missing in the container")
        host_routes = {(r.dst, r.dst_len, r.oif) for r in host.routes(family)}
        for a in addresses:
            if a.family == family and (a.packed, a.host_length, outer.index) not in host_routes:
                problems.append(f"the host route to {a.text} via {host_name} is missing")
