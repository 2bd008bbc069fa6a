"""Session states and FSM inputs, named and numbered as in RFC 4271 §8.

``FsmInput`` values are the RFC's event numbers (§8.1.2-8.1.5), so a log line
``event 26`` means the same here as in the RFC.  Optional events this speaker
does not generate (damping, TcpConnection_Valid checks) keep their numbers for
reference but have no rows in the table.
"""

from __future__ import annotations

from enum import IntEnum


class SessionState(IntEnum):
    """RFC 4271 §8.2.2 states (and the BGP4-MIB bgpPeerState numbering)."""

    IDLE = 1
    CONNECT = 2
    ACTIVE = 3
    OPENSENT = 4
    OPENCONFIRM = 5
    ESTABLISHED = 6

    @property
    def label(self) -> str:
        """The spelling operators know from BIRD and calicoctl (``OpenSent``)."""
        return _LABELS[self]


_LABELS = {
    SessionState.IDLE: "Idle",
    SessionState.CONNECT: "Connect",
    SessionState.ACTIVE: "Active",
    SessionState.OPENSENT: "OpenSent",
    SessionState.OPENCONFIRM: "OpenConfirm",
    SessionState.ESTABLISHED: "Established",
}


class FsmInput(IntEnum):
    """RFC 4271 §8.1 events."""

    MANUAL_START = 1
    MANUAL_STOP = 2
    AUTOMATIC_START = 3
    MANUAL_START_WITH_PASSIVE_TCP_ESTABLISHMENT = 4
    AUTOMATIC_START_WITH_PASSIVE_TCP_ESTABLISHMENT = 5
    AUTOMATIC_START_WITH_DAMP_PEER_OSCILLATIONS = 6
    AUTOMATIC_START_WITH_DAMP_PEER_OSCILLATIONS_AND_PASSIVE_TCP_ESTABLISHMENT = 7
    AUTOMATIC_STOP = 8
    CONNECT_RETRY_TIMER_EXPIRES = 9
    HOLD_TIMER_EXPIRES = 10
    KEEPALIVE_TIMER_EXPIRES = 11
    DELAY_OPEN_TIMER_EXPIRES = 12
    IDLE_HOLD_TIMER_EXPIRES = 13
    TCP_CONNECTION_VALID = 14
    TCP_CR_INVALID = 15
    TCP_CR_ACKED = 16
    TCP_CONNECTION_CONFIRMED = 17
    TCP_CONNECTION_FAILS = 18
    BGP_OPEN = 19
    BGP_OPEN_WITH_DELAY_OPEN_TIMER_RUNNING = 20
    BGP_HEADER_ERR = 21
    BGP_OPEN_MSG_ERR = 22
    OPEN_COLLISION_DUMP = 23
    NOTIF_MSG_VER_ERR = 24
    NOTIF_MSG = 25
    KEEPALIVE_MSG = 26
    UPDATE_MSG = 27
    UPDATE_MSG_ERR = 28
    # Not in RFC 4271: ROUTE-REFRESH (RFC 2918) is a message like KEEPALIVE for
    # the FSM; it gets a number past the RFC's range rather than squatting in it.
    ROUTE_REFRESH_MSG = 101
    # RFC 9687 §3: the peer has not read what we sent for SendHoldTime.
    SEND_HOLD_TIMER_EXPIRES = 102
