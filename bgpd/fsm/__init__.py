"""The RFC 4271 session state machine, without I/O (``Session``), and its events.

``table`` holds the transitions, ``negotiation`` the OPEN checks and capability
agreement, ``events`` what a session reports.  The asyncio driver that owns the
socket and the one timer handle comes with the transport.
"""

from .config import SessionConfig
from .events import (
    Connect,
    Disconnect,
    EndOfRib,
    Established,
    Negotiated,
    RouteRefreshRequested,
    RoutesReceived,
    SessionDown,
    SessionEvent,
    StateChanged,
    UpdateErrorHandled,
)
from .session import Session
from .states import FsmInput, SessionState

__all__ = [
    "Connect",
    "Disconnect",
    "EndOfRib",
    "Established",
    "FsmInput",
    "Negotiated",
    "RouteRefreshRequested",
    "RoutesReceived",
    "Session",
    "SessionConfig",
    "SessionDown",
    "SessionEvent",
    "SessionState",
    "StateChanged",
    "UpdateErrorHandled",
]
