"""The receiving speaker of graceful restart for one peer (RFC 4724 §4.2, RFC 8538).

When the session with a peer that advertised Graceful Restart goes down
gracefully (``SessionDown.graceful``: no NOTIFICATION, or one other than Hard
Reset with the N bit negotiated), its routes stay, marked stale, for the
restart time the peer advertised.  When the session comes back:

- families missing from the peer's new capability, or whose Forwarding State
  bit is clear, lose their stale routes at once (§4.2);
- every route the peer announces again loses its mark;
- End-of-RIB for a family deletes what is still stale in it;
- routes still stale ``stale_time`` after the session came back are deleted
  (§4.2 "its own timer"; 360 s as in FRR's stalepath-time).

If the session does not come back within the restart time, every stale route
goes.  A non-graceful end withdraws everything at once.
"""

from __future__ import annotations

from bgpd.fsm.events import Negotiated, SessionDown
from bgpd.messages import Family, GracefulRestart

from .adj_in import AdjRibIn, RouteChange

STALE_TIME = 360.0


class GracefulRestartHelper:
    """Stale marks and their timers for one peer's Adj-RIB-In."""

    def __init__(self, rib: AdjRibIn, stale_time: float = STALE_TIME) -> None:
        self.rib = rib
        self.stale_time = stale_time
        self.peer_capability: GracefulRestart | None = None
        self._deadline: float | None = None

    @property
    def deadline(self) -> float | None:
        """When ``handle_timer`` must run next, or None."""
        return self._deadline

    @property
    def restarting(self) -> bool:
        """The peer is away and its routes are kept stale."""
        return bool(self.rib.stale) and self._deadline is not None

    def established(self, negotiated: Negotiated, now: float) -> list[RouteChange]:
        """The session is (back) up: drop stale families the peer no longer preserves."""
        cap = negotiated.peer_graceful_restart
        self.peer_capability = cap
        if not self.rib.stale:
            self._deadline = None
            return []
        kept = {f for f, forwarding in (cap.families if cap else ()) if forwarding}
        dropped = [f for f in self.rib.stale if f not in kept or f not in negotiated.families]
        changes = self.rib.sweep_stale(dropped)
        self._deadline = now + self.stale_time if self.rib.stale else None
        return changes

    def retains(self, event: SessionDown) -> bool:
        """Whether ``session_down(event)`` keeps routes (as stale) at all."""
        cap = self.peer_capability
        return (
            event.was_established and event.graceful and cap is not None and cap.restart_time != 0
        )

    def session_down(self, event: SessionDown) -> list[RouteChange]:
        """Keep the peer's routes as stale, or withdraw them all."""
        cap = self.peer_capability
        if not event.was_established:
            return []
        if not self.retains(event) or cap is None:
            self._deadline = None
            return self.rib.clear()
        preserved = {f for f, _fwd in cap.families}
        changes = self.rib.clear([f for f in self.rib.tables if f not in preserved])
        # A second failure before End-of-RIB: the older marks stay; the new
        # routes join them.
        self.rib.mark_stale(preserved)
        self._deadline = event.now + cap.restart_time if self.rib.stale else None
        return changes

    def end_of_rib(self, family: Family) -> list[RouteChange]:
        changes = self.rib.sweep_stale([family])
        if not self.rib.stale:
            self._deadline = None
        return changes

    def handle_timer(self, now: float) -> list[RouteChange]:
        """Restart time or stale time ran out: every stale route goes."""
        if self._deadline is None or now < self._deadline:
            return []
        self._deadline = None
        return self.rib.sweep_stale()
