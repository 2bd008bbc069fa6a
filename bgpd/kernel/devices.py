"""The tunnel devices routes go through, and the per-node entries VXLAN needs:
``vxlan.calico`` (VNI 4096, UDP 4789, MTU from the uplink minus 50, a neighbour
and an FDB entry per remote VTEP) and ``tunl0`` (CALICO.md §1.7, §6.2).

These are a handful of requests per node, not per route, so they go through
pyroute2's blocking calls; routes go through ``channel``'s batches.
"""

from __future__ import annotations

import errno as errnos
import ipaddress
import socket
from typing import Any

from pyroute2 import IPRoute  # type: ignore[import-untyped]
from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

from .encap import IPIP_DEVICE, VXLAN_DEVICE, VXLAN_OVERHEAD, Vtep, VxlanSpec

NUD_PERMANENT = 0x80


class DeviceError(Exception):
    """A device could not be made as asked; the text says why."""


def _ip(address: bytes) -> str:
    return str(ipaddress.ip_address(address))


def _mac(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def _attr(msg: Any, name: str) -> Any:
    return msg.get_attr(name)


class Devices:
    """Device, neighbour and FDB requests in one network namespace."""

    def __init__(self, netns: str | None = None) -> None:
        self.ipr = IPRoute(netns=netns) if netns else IPRoute()

    def close(self) -> None:
        self.ipr.close()

    # ------------------------------------------------------------ queries

    def ifindex(self, name: str) -> int:
        """The interface's index, 0 when there is none."""
        found = self.ipr.link_lookup(ifname=name)
        return int(found[0]) if found else 0

    def uplink(self, address: bytes) -> tuple[int, int]:
        """(index, MTU) of the interface holding ``address``."""
        family = socket.AF_INET if len(address) == 4 else socket.AF_INET6
        text = _ip(address)
        for msg in self.ipr.get_addr(family=family):
            if _attr(msg, "IFA_ADDRESS") == text or _attr(msg, "IFA_LOCAL") == text:
                index = int(msg["index"])
                link = self.ipr.get_links(index)[0]
                return index, int(_attr(link, "IFLA_MTU"))
        raise DeviceError(f"no interface holds the node address {text}")

    # ------------------------------------------------------------ devices

    def ensure_vxlan(self, spec: VxlanSpec) -> int:
        """Make ``vxlan.calico`` as ``spec`` says (created, or recreated when its
        VNI, port or source differ), up, with its tunnel address; its index."""
        uplink, uplink_mtu = self.uplink(spec.local)
        mtu = spec.mtu if spec.mtu is not None else uplink_mtu - VXLAN_OVERHEAD
        index = self.ifindex(VXLAN_DEVICE)
        if index and not self._vxlan_matches(index, spec, uplink):
            self.ipr.link("del", index=index)
            index = 0
        if not index:
            fields: dict[str, Any] = {
                "ifname": VXLAN_DEVICE,
                "kind": "vxlan",
                "vxlan_id": spec.vni,
                "vxlan_port": spec.port,
                "vxlan_local": _ip(spec.local),
                "vxlan_link": uplink,
                # Remote VTEPs are programmed, never learned from traffic.
                "vxlan_learning": 0,
                "mtu": mtu,
            }
            if spec.mac is not None:
                fields["address"] = _mac(spec.mac)
            try:
                self.ipr.link("add", **fields)
            except NetlinkError as e:
                raise DeviceError(f"cannot create {VXLAN_DEVICE}: {e}") from None
            index = self.ifindex(VXLAN_DEVICE)
        else:
            self.ipr.link("set", index=index, mtu=mtu)
        self._own_address(index, spec.address)
        self.ipr.link("set", index=index, state="up")
        return index

    def _vxlan_matches(self, index: int, spec: VxlanSpec, uplink: int) -> bool:
        link = self.ipr.get_links(index)[0]
        info = _attr(link, "IFLA_LINKINFO")
        if info is None or info.get_attr("IFLA_INFO_KIND") != "vxlan":
            return False
        data = info.get_attr("IFLA_INFO_DATA")
        if spec.mac is not None and _attr(link, "IFLA_ADDRESS") != _mac(spec.mac):
            return False
        return bool(
            data.get_attr("IFLA_VXLAN_ID") == spec.vni
            and data.get_attr("IFLA_VXLAN_PORT") == spec.port
            and data.get_attr("IFLA_VXLAN_LOCAL") == _ip(spec.local)
            and data.get_attr("IFLA_VXLAN_LINK") == uplink
        )

    def ensure_tunl0(self, address: bytes | None, mtu: int | None = None) -> int:
        """Make ``tunl0`` up with the node's tunnel address; its index.  The
        device comes with the kernel's ``ipip`` module; without the module it
        cannot exist, and the error says so."""
        index = self.ifindex(IPIP_DEVICE)
        if not index:
            try:
                self.ipr.link("add", ifname=IPIP_DEVICE, kind="ipip")
            except NetlinkError as e:
                if e.code in (errnos.EOPNOTSUPP, errnos.EAFNOSUPPORT):
                    raise DeviceError(
                        f"cannot create {IPIP_DEVICE}: this kernel has no IPIP support "
                        "(the ipip module)"
                    ) from None
                if e.code != errnos.EEXIST:  # the module made it meanwhile
                    raise DeviceError(f"cannot create {IPIP_DEVICE}: {e}") from None
            index = self.ifindex(IPIP_DEVICE)
        if mtu is not None:
            self.ipr.link("set", index=index, mtu=mtu)
        if address is not None:
            self._own_address(index, address)
        self.ipr.link("set", index=index, state="up")
        return index

    def _own_address(self, index: int, address: bytes) -> None:
        """``address``/32 is the device's only IPv4 address."""
        text = _ip(address)
        present = False
        for msg in self.ipr.get_addr(family=socket.AF_INET, index=index):
            have = _attr(msg, "IFA_LOCAL") or _attr(msg, "IFA_ADDRESS")
            if have == text and msg["prefixlen"] == 32:
                present = True
            else:
                self.ipr.addr("del", index=index, address=have, prefixlen=msg["prefixlen"])
        if not present:
            self.ipr.addr("add", index=index, address=text, prefixlen=32)

    # -------------------------------------------------------------- VTEPs

    def sync_vteps(self, index: int, vteps: list[Vtep]) -> tuple[int, int]:
        """Permanent neighbour and FDB entries on ``vxlan.calico`` for exactly
        these remote VTEPs; (entries written, entries removed)."""
        want_neigh = {_ip(v.address): _mac(v.mac) for v in vteps}
        want_fdb = {_mac(v.mac): _ip(v.node_ip) for v in vteps}
        written = removed = 0
        for msg in self.ipr.get_neighbours(family=socket.AF_INET, ifindex=index):
            dst, mac = _attr(msg, "NDA_DST"), _attr(msg, "NDA_LLADDR")
            if want_neigh.get(dst) == mac and msg["state"] & NUD_PERMANENT:
                del want_neigh[dst]
            elif msg["state"] & NUD_PERMANENT:
                self.ipr.neigh("del", dst=dst, ifindex=index)
                removed += 1
        for msg in self.ipr.fdb("dump", ifindex=index):
            if msg["ifindex"] != index:
                continue
            mac, dst = _attr(msg, "NDA_LLADDR"), _attr(msg, "NDA_DST")
            if dst is None:
                continue  # the device's own address, not a remote VTEP
            if want_fdb.get(mac) == dst:
                del want_fdb[mac]
            else:
                self.ipr.fdb("del", ifindex=index, lladdr=mac, dst=dst)
                removed += 1
        for dst, mac in want_neigh.items():
            self.ipr.neigh("replace", dst=dst, lladdr=mac, ifindex=index, state=NUD_PERMANENT)
            written += 1
        for mac, dst in want_fdb.items():
            self.ipr.fdb("append", ifindex=index, lladdr=mac, dst=dst)
            written += 1
        return written, removed
