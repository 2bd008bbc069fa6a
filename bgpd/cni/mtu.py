"""The pod MTU when the configuration gives none (CALICO.md §6.2): the value the
node agent wrote to ``<state>/mtu``, else the smallest MTU of the host's up
uplinks less the largest encapsulation overhead among the enabled pools, as Felix
computes it (1460 when no uplink is found)."""

from __future__ import annotations

TYPE_CHECKING = False  # not from typing: its import costs the CNI plugin ~4 ms

if TYPE_CHECKING:
    from ..ipam.pools import Pool
    from .netlink import Rtnl

FALLBACK_UPLINK = 1460
IPIP_OVERHEAD = 20
VXLAN_OVERHEAD = {4: 50, 6: 70}
#: Felix's default MTUIfacePattern, ^((en|wl|ww|sl|ib)[Pcopsvx].*|(eth|wlan|wwan).*),
#: without the regular expression (``re`` costs the plugin milliseconds).
_UPLINK_PREFIXES = ("eth", "wlan", "wwan")
_UPLINK_TWO = ("en", "wl", "ww", "sl", "ib")


def is_uplink(name: str) -> bool:
    if name.startswith(_UPLINK_PREFIXES):
        return True
    return name[:2] in _UPLINK_TWO and len(name) > 2 and name[2] in "Pcopsvx"


def overhead(pools: list[Pool]) -> int:
    worst = 0
    for pool in pools:
        if pool.disabled:
            continue
        if pool.vxlan_mode != "Never":
            worst = max(worst, VXLAN_OVERHEAD[pool.family])
        elif pool.ipip_mode != "Never":
            worst = max(worst, IPIP_OVERHEAD)
    return worst


def uplink_mtu(host: Rtnl) -> int:
    # Pods come and go while we read; the uplinks, which we are after, do not.
    links = host.links(exact=False)
    mtus = [link.mtu for link in links if link.up and is_uplink(link.name)]
    return min(mtus) if mtus else FALLBACK_UPLINK


def pod_mtu(state_dir: str, pools: list[Pool], host: Rtnl) -> int:
    try:
        with open(f"{state_dir}/mtu") as f:
            written = int(f.read().strip() or 0)
        if written > 0:
            return written
    except (OSError, ValueError):
        pass
    return uplink_mtu(host) - overhead(pools)
