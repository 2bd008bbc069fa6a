"""The host's interfaces and their addresses, read once (node IP autodetection)."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from pyroute2 import IPRoute  # type: ignore[import-untyped]

IFF_UP = 0x1
RT_SCOPE_UNIVERSE = 0


@dataclass(frozen=True, slots=True)
class InterfaceAddress:
    """One address of one interface, as ``ip -o addr`` lists them."""

    index: int
    ifname: str
    up: bool
    address: str
    prefixlen: int
    scope: int  # RT_SCOPE_*: 0 is global

    @property
    def version(self) -> int:
        return 6 if ":" in self.address else 4

    @property
    def cidr(self) -> str:
        return f"{self.address}/{self.prefixlen}"


def interface_addresses() -> list[InterfaceAddress]:
    """Every address of every interface, in interface-index then kernel order."""
    with IPRoute() as ipr:
        links = {
            link["index"]: (link.get_attr("IFLA_IFNAME"), bool(link["flags"] & IFF_UP))
            for link in ipr.get_links()
        }
        out = []
        for msg in ipr.get_addr():
            name, up = links.get(msg["index"], ("", False))
            address = msg.get_attr("IFA_ADDRESS")
            if msg["family"] == socket.AF_INET:
                address = msg.get_attr("IFA_LOCAL") or address
            if address is None:
                continue
            out.append(
                InterfaceAddress(msg["index"], name, up, address, msg["prefixlen"], msg["scope"])
            )
    out.sort(key=lambda a: a.index)  # stable: the kernel's order within a link
    return out
