"""What a session core tells the layers around it.

Two kinds, one queue (``Session.next_event()``):

- transport requests for the driver: ``Connect`` (open a TCP connection to the
  peer) and ``Disconnect`` (close it once queued bytes are written);
- session events for the RIB and the operator: state changes, Established with
  what was negotiated, UPDATEs received, End-of-RIB, route-refresh requests,
  RFC 7606 faults handled without a reset, and the session going down.
"""

from __future__ import annotations

from dataclasses import dataclass

from bgpd.messages import (
    Family,
    GracefulRestart,
    Notification,
    Open,
    SessionContext,
    Update,
    UpdateMessageError,
)

from .states import SessionState


@dataclass(frozen=True, slots=True)
class Connect:
    """Driver: open a TCP connection to the peer."""


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Driver: close the TCP connection after writing what is queued, or at once
    (``abort``) when the peer has stopped reading and nothing more will go out."""

    abort: bool = False


@dataclass(frozen=True, slots=True)
class StateChanged:
    old: SessionState
    new: SessionState
    now: float


@dataclass(frozen=True, slots=True)
class Negotiated:
    """The outcome of the OPEN exchange (RFC 5492 §3, RFC 4271 §4.2)."""

    local_open: Open
    peer_open: Open
    peer_as: int
    peer_id: int
    hold_time: int
    keepalive_time: float
    families: frozenset[Family]
    context: SessionContext
    route_refresh: bool
    enhanced_route_refresh: bool
    peer_graceful_restart: GracefulRestart | None
    # RFC 8538: both sides set the N bit, so NOTIFICATIONs other than Hard Reset
    # keep graceful-restart semantics.
    graceful_notification: bool
    peer_hostname: str | None = None


@dataclass(frozen=True, slots=True)
class Established:
    negotiated: Negotiated
    now: float


@dataclass(frozen=True, slots=True)
class RoutesReceived:
    """One UPDATE's content, already checked; RFC 7606 faults are applied."""

    update: Update


@dataclass(frozen=True, slots=True)
class EndOfRib:
    """The peer finished its initial table for ``family`` (RFC 4724 §2)."""

    family: Family


@dataclass(frozen=True, slots=True)
class RouteRefreshRequested:
    """ROUTE-REFRESH from the peer: normal request, BoRR or EoRR (RFC 7313)."""

    family: Family
    subtype: int


@dataclass(frozen=True, slots=True)
class UpdateErrorHandled:
    """An UPDATE fault handled without a reset (RFC 7606 §2), for the log."""

    error: UpdateMessageError


@dataclass(frozen=True, slots=True)
class SessionDown:
    """The session left Established, OpenConfirm or OpenSent.

    ``graceful`` tells the RIB to keep the peer's routes as stale for the
    peer's restart time instead of withdrawing them (RFC 4724 §4.2, RFC 8538 §4).
    """

    reason: str
    sent: Notification | None
    received: Notification | None
    graceful: bool
    was_established: bool
    now: float


SessionEvent = (
    Connect
    | Disconnect
    | StateChanged
    | Established
    | RoutesReceived
    | EndOfRib
    | RouteRefreshRequested
    | UpdateErrorHandled
    | SessionDown
)
