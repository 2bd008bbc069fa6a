"""The hook through which route reflection (``reflector/``, RFC 4456) plugs into
import and export.  The RIB knows only this interface; the rules live with the
reflector, which depends on the RIB and not the other way round."""

from __future__ import annotations

from typing import Protocol

from bgpd.messages import PathAttributes

from .path import Source


class Reflection(Protocol):
    def loops(self, attrs: PathAttributes) -> bool:
        """True when the route has been here before: our ORIGINATOR_ID or cluster
        ID on it (RFC 4456 §8)."""
        ...

    def may_reflect(self, source: Source, to_client: bool) -> bool:
        """Whether an iBGP-learned route from ``source`` goes to an iBGP peer that
        is (``to_client``) or is not a client (RFC 4456 §6)."""
        ...

    def reflected(self, attrs: PathAttributes, source: Source) -> PathAttributes:
        """The attributes of a reflected route: ORIGINATOR_ID set when absent,
        our cluster ID prepended to CLUSTER_LIST (RFC 4456 §8)."""
        ...
