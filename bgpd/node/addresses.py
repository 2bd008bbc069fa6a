"""Node IP autodetection, as calico-node's startup does it (CALICO.md §2.3)
(no I/O: the interface list and a route lookup are passed in).

Methods (``IP_AUTODETECTION_METHOD``):

- ``first-found``: the first global address of the first up interface that is
  not one of Calico's excluded kinds (loopback, ``cali*``, ``docker*``,
  ``veth*``, ``tunl*``, ``vxlan.calico`` and the like).
- ``interface=REGEX[,REGEX...]``: the first interface whose name matches.
- ``skip-interface=REGEX[,REGEX...]``: as first-found, skipping those too.
- ``can-reach=DESTINATION``: the source address the kernel would use towards
  the destination (a UDP socket connected, nothing sent).
- ``cidr=CIDR[,CIDR...]``: the first address inside one of the ranges.

The result keeps the address's prefix length (``10.0.0.5/24``): the node's
subnet decides CrossSubnet encapsulation.  ``reason`` says in words why the
address was chosen; it is logged and shown by the status API.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..kernel.interfaces import InterfaceAddress

#: calico-node's default exclusions for first-found.
EXCLUDED = (
    r"^docker.*", r"^cbr.*", r"^dummy.*", r"^virbr.*", r"^lxcbr.*", r"^veth.*", r"^lo$",
    r"^cali.*", r"^tunl.*", r"^flannel.*", r"^kube-ipvs.*", r"^cni.*", r"^vxlan.calico.*",
    r"^vxlan-v6.calico.*", r"^wireguard.cali.*", r"^wg-v6.cali.*", r"^nodelocaldns.*",
)  # fmt: skip
DEFAULT_METHOD = "first-found"


class AutodetectError(ValueError):
    """No address fits, or the method is not understood."""


@dataclass(frozen=True)
class Detected:
    cidr: str  # address/prefix length
    method: str
    reason: str


def _usable(a: InterfaceAddress, version: int) -> bool:
    if a.version != version or not a.up or a.scope != 0:
        return False
    ip = ipaddress.ip_address(a.address)
    return not (ip.is_loopback or ip.is_link_local)


def _patterns(text: str) -> list[re.Pattern[str]]:
    try:
        return [re.compile(p) for p in text.split(",") if p]
    except re.error as e:
        raise AutodetectError(f"bad interface pattern {text!r}: {e}") from None


def detect(
    method: str,
    version: int,
    addresses: Sequence[InterfaceAddress],
    source_for: Callable[[str], str | None] = lambda dest: None,
) -> Detected:
    """The node's IPv``version`` address by ``method``."""
    method = method or DEFAULT_METHOD
    kind, _, arg = method.partition("=")
    usable = [a for a in addresses if _usable(a, version)]
    if kind == "first-found":
        excluded = _patterns(",".join(EXCLUDED))
        for a in usable:
            if not any(p.match(a.ifname) for p in excluded):
                return Detected(a.cidr, method, f"first global address on interface {a.ifname}")
        raise AutodetectError(f"no IPv{version} address on any interface (first-found)")
    if kind in ("interface", "skip-interface"):
        if not arg:
            raise AutodetectError(f"{kind}= needs a regular expression")
        patterns = _patterns(arg)
        skip = _patterns(",".join(EXCLUDED)) if kind == "skip-interface" else []
        for a in usable:
            hit = any(p.match(a.ifname) for p in patterns)
            if kind == "interface" and hit:
                return Detected(a.cidr, method, f"interface {a.ifname} matches {arg!r}")
            if kind == "skip-interface" and not hit and not any(p.match(a.ifname) for p in skip):
                return Detected(a.cidr, method, f"interface {a.ifname} is not skipped by {arg!r}")
        raise AutodetectError(f"no IPv{version} address on an interface for {method!r}")
    if kind == "can-reach":
        if not arg:
            raise AutodetectError("can-reach= needs a destination")
        source = source_for(arg)
        if source is None:
            raise AutodetectError(f"no route from this node to {arg}")
        for a in usable:
            if ipaddress.ip_address(a.address) == ipaddress.ip_address(source):
                return Detected(a.cidr, method, f"source address towards {arg} ({a.ifname})")
        raise AutodetectError(f"the source address {source} towards {arg} is on no interface")
    if kind == "cidr":
        try:
            nets = [ipaddress.ip_network(c, strict=False) for c in arg.split(",") if c]
        except ValueError as e:
            raise AutodetectError(f"bad cidr= range: {e}") from None
        for a in usable:
            ip = ipaddress.ip_address(a.address)
            for net in nets:
                if ip in net:
                    return Detected(a.cidr, method, f"{a.ifname} holds an address in {net}")
        raise AutodetectError(f"no IPv{version} address inside {arg}")
    raise AutodetectError(
        f"unknown autodetection method {method!r} (first-found, interface=, "
        "skip-interface=, can-reach=, cidr=)"
    )
