"""The restarting speaker's selection deferral (RFC 4724 §4.1).

After our own restart (our kernel routes kept forwarding, Calico's persist)
best-path selection and kernel changes wait until End-of-RIB has come from every
peer for every family, or until the deferral timer runs out.  Peers that set
the Restart State bit themselves, or do not advertise graceful restart, are not
waited for (§4.1): that exclusion is what keeps several nodes restarting
together from waiting on each other until their timers expire, and a restarting
peer gets our routes at once (§4.2: "MUST NOT wait for the End-of-RIB").

A peer not yet established is waited for until the deferral timer; 60 s by
default, well under BIRD's 240 s and GoBGP's 360 s, because a mesh node that is
down would otherwise hold every restarting node's routes back for minutes.
"""

from __future__ import annotations

from collections.abc import Iterable

from bgpd.fsm.events import Negotiated
from bgpd.messages import Family

DEFERRAL_TIME = 60.0


class InitialConvergence:
    """Which End-of-RIB markers are still awaited after our restart."""

    def __init__(
        self,
        peers: Iterable[str],
        now: float,
        deferral_time: float = DEFERRAL_TIME,
        every_peer: bool = False,
    ):
        """``every_peer``: wait for End-of-RIB from restarting and non-GR peers
        too.  Pruning our stale kernel routes does that: no peer waits on it, so
        there is no deadlock to avoid, and a route removed before the peer
        that still has it re-announced it would drop packets."""
        self.deadline: float | None = now + deferral_time
        self.every_peer = every_peer
        self._unknown: set[str] = set(peers)  # not yet established
        self._awaited: dict[str, set[Family]] = {}
        self.done = not self._unknown
        if self.done:
            self.deadline = None
        self.timed_out = False

    def established(self, peer: str, negotiated: Negotiated) -> None:
        """Note what to wait for from this peer."""
        if self.done:
            return
        self._unknown.discard(peer)
        cap = negotiated.peer_graceful_restart
        if not self.every_peer and (cap is None or cap.restarting):
            self._awaited.pop(peer, None)
        else:
            self._awaited[peer] = set(negotiated.families)
        self._check()

    def end_of_rib(self, peer: str, family: Family) -> None:
        awaited = self._awaited.get(peer)
        if awaited is not None:
            awaited.discard(family)
            if not awaited:
                del self._awaited[peer]
            self._check()

    def peer_removed(self, peer: str) -> None:
        self._unknown.discard(peer)
        self._awaited.pop(peer, None)
        self._check()

    def waiting_for(self) -> dict[str, list[Family]]:
        """Peers still awaited, with the families (empty: not yet established)."""
        out: dict[str, list[Family]] = {p: [] for p in self._unknown}
        out.update({p: sorted(f) for p, f in self._awaited.items()})
        return out

    def handle_timer(self, now: float) -> None:
        if self.deadline is not None and now >= self.deadline and not self.done:
            self.timed_out = True
            self.done = True
            self.deadline = None

    def _check(self) -> None:
        if not self.done and not self._unknown and not self._awaited:
            self.done = True
            self.deadline = None
