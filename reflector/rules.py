"""Route reflection (RFC 4456), as the RIB's ``Reflection`` hook.

- §6: a route from a client is reflected to every other client and to every
  non-client iBGP peer; a route from a non-client goes to clients only; routes
  from eBGP and our own go to everyone (the RIB's ordinary rules).
- §8: when reflecting, ORIGINATOR_ID is set to the BGP Identifier of the peer the
  route came from, unless already present; our cluster ID is prepended to
  CLUSTER_LIST.  A route carrying our cluster ID in CLUSTER_LIST is a loop and is
  dropped on import (the ORIGINATOR_ID check is every speaker's, in the RIB).
- Two reflectors sharing one cluster ID (the redundant pair on masters) are not
  each other's clients, and each drops what the other reflects within the
  cluster: the CLUSTER_LIST check does exactly that.

Calico's meaning (CALICO.md §1.5): a node whose ``routeReflectorClusterID`` is
set is a reflector; its iBGP peers with a different or empty cluster ID are its
clients.  ``is_client`` encodes that.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from bgpd.messages import PathAttributes
from bgpd.rib.path import Source


def cluster_id_value(text: str) -> int:
    """A cluster ID as Calico writes it (dotted quad, e.g. ``244.0.0.1``)."""
    return int(ipaddress.IPv4Address(text))


def is_client(our_cluster: str | None, peer_cluster: str | None, ibgp: bool) -> bool:
    """Calico §1.5: an iBGP peer of a reflector whose cluster ID differs is a client."""
    return our_cluster is not None and ibgp and peer_cluster != our_cluster


@dataclass(frozen=True, slots=True)
class RouteReflector:
    """The reflector of one cluster."""

    cluster_id: int

    def loops(self, attrs: PathAttributes) -> bool:
        return attrs.cluster_list is not None and self.cluster_id in attrs.cluster_list

    def may_reflect(self, source: Source, to_client: bool) -> bool:
        return source.client or to_client

    def reflected(self, attrs: PathAttributes, source: Source) -> PathAttributes:
        originator = attrs.originator_id if attrs.originator_id is not None else source.router_id
        return attrs.replace(
            originator_id=originator,
            cluster_list=(self.cluster_id, *(attrs.cluster_list or ())),
        )
