"""The RFC 4271 §8 state machine as one table.

```
                          +--------+  ManualStart / AutomaticStart
         +--------------->|  Idle  |------------------------------+
         | errors, stop   +--------+  (IdleHoldTimer restarts it) |
         |                    ^   passive start                   v
         |                    |  +------------+  ConnectRetry   +---------+
         |                    |  |   Active   |---------------->| Connect |
         |                    |  |  (listen)  |<----------------| (dial)  |
         |                    |  +------------+  TCP fails      +---------+
         |                    |        | TCP up: send OPEN           | TCP up: send OPEN
         |                    |        v                             v
         |                    |  +----------+  OPEN ok: send KEEPALIVE
         +--------------------+--| OpenSent |----------------------+
         |                       +----------+                      v
         |                                                  +-------------+
         +--------------------------------------------------| OpenConfirm |
         |           KEEPALIVE received                     +-------------+
         |              +-------------+                            |
         +--------------| Established |<---------------------------+
                        +-------------+
```

``TRANSITIONS`` maps (state, input) to the name of a ``Session`` handler.  A pair
that is not in the table is handled by the state's default in ``DEFAULTS``: Idle
ignores it (§8.2.2 "any other event is ignored"); Connect and Active drop the
connection; OpenSent, OpenConfirm and Established send the FSM Error
NOTIFICATION with the RFC 6608 subcode for the state and go to Idle.

Deviations from the letter of §8.2.2, all as BIRD and GoBGP behave:
- a failed TCP connection in Connect or Active keeps listening and retrying
  (Active) instead of falling to Idle;
- a NOTIFICATION received in OpenSent ends the session without answering it
  with an FSM error (RFC 4271 §6.1: no NOTIFICATION for a NOTIFICATION);
- ROUTE-REFRESH (RFC 2918) is an input of its own, valid in Established only;
- SendHoldTimer_Expires (RFC 9687) ends a session in any state with an OPEN sent.
"""

from __future__ import annotations

from .states import FsmInput as I
from .states import SessionState as S

_START = (I.MANUAL_START, I.AUTOMATIC_START, I.IDLE_HOLD_TIMER_EXPIRES)
_PASSIVE_START = (
    I.MANUAL_START_WITH_PASSIVE_TCP_ESTABLISHMENT,
    I.AUTOMATIC_START_WITH_PASSIVE_TCP_ESTABLISHMENT,
)
_STOP = (I.MANUAL_STOP, I.AUTOMATIC_STOP)
_TCP_UP = (I.TCP_CR_ACKED, I.TCP_CONNECTION_CONFIRMED)
_MESSAGE_ERRORS = (I.BGP_HEADER_ERR, I.BGP_OPEN_MSG_ERR)
_PEER_NOTIFIED = (I.NOTIF_MSG, I.NOTIF_MSG_VER_ERR)

TRANSITIONS: dict[tuple[S, I], str] = {}


def _rows(state: S, inputs: tuple[I, ...], handler: str) -> None:
    for event in inputs:
        TRANSITIONS[(state, event)] = handler


# Idle (§8.2.2)
_rows(S.IDLE, _START, "start_connecting")
_rows(S.IDLE, _PASSIVE_START, "start_listening")
_rows(S.IDLE, _STOP, "ignore")

# Connect and Active: no OPEN sent yet, or DelayOpen running.
for _s in (S.CONNECT, S.ACTIVE):
    _rows(_s, _STOP, "stop_quietly")
    _rows(_s, (I.CONNECT_RETRY_TIMER_EXPIRES,), "retry_connect")
    _rows(_s, _TCP_UP, "connection_up")
    _rows(_s, (I.DELAY_OPEN_TIMER_EXPIRES,), "send_open")
    _rows(_s, (I.TCP_CONNECTION_FAILS,), "connection_failed")
    _rows(_s, (I.BGP_OPEN_WITH_DELAY_OPEN_TIMER_RUNNING,), "open_during_delay")
    _rows(_s, _MESSAGE_ERRORS, "message_error")
    _rows(_s, (I.NOTIF_MSG_VER_ERR,), "peer_notified")
    _rows(_s, _START + _PASSIVE_START, "ignore")

# OpenSent
_rows(S.OPENSENT, _STOP, "stop_with_cease")
_rows(S.OPENSENT, _START + _PASSIVE_START + _TCP_UP, "ignore")
_rows(S.OPENSENT, (I.HOLD_TIMER_EXPIRES,), "hold_expired")
_rows(S.OPENSENT, (I.SEND_HOLD_TIMER_EXPIRES,), "send_hold_expired")
_rows(S.OPENSENT, (I.TCP_CONNECTION_FAILS,), "connection_lost_early")
_rows(S.OPENSENT, (I.BGP_OPEN,), "open_received")
_rows(S.OPENSENT, _MESSAGE_ERRORS, "message_error")
_rows(S.OPENSENT, (I.OPEN_COLLISION_DUMP,), "collision_dump")
_rows(S.OPENSENT, _PEER_NOTIFIED, "peer_notified")

# OpenConfirm
_rows(S.OPENCONFIRM, _STOP, "stop_with_cease")
_rows(S.OPENCONFIRM, _START + _PASSIVE_START + _TCP_UP, "ignore")
_rows(S.OPENCONFIRM, (I.HOLD_TIMER_EXPIRES,), "hold_expired")
_rows(S.OPENCONFIRM, (I.SEND_HOLD_TIMER_EXPIRES,), "send_hold_expired")
_rows(S.OPENCONFIRM, (I.KEEPALIVE_TIMER_EXPIRES,), "send_keepalive")
_rows(S.OPENCONFIRM, (I.TCP_CONNECTION_FAILS,), "connection_lost")
_rows(S.OPENCONFIRM, _PEER_NOTIFIED, "peer_notified")
_rows(S.OPENCONFIRM, (I.KEEPALIVE_MSG,), "establish")
_rows(S.OPENCONFIRM, _MESSAGE_ERRORS, "message_error")
_rows(S.OPENCONFIRM, (I.OPEN_COLLISION_DUMP,), "collision_dump")

# Established
_rows(S.ESTABLISHED, _STOP, "stop_with_cease")
_rows(S.ESTABLISHED, _START + _PASSIVE_START + _TCP_UP, "ignore")
_rows(S.ESTABLISHED, (I.HOLD_TIMER_EXPIRES,), "hold_expired")
_rows(S.ESTABLISHED, (I.SEND_HOLD_TIMER_EXPIRES,), "send_hold_expired")
_rows(S.ESTABLISHED, (I.KEEPALIVE_TIMER_EXPIRES,), "send_keepalive")
_rows(S.ESTABLISHED, (I.TCP_CONNECTION_FAILS,), "connection_lost")
_rows(S.ESTABLISHED, _PEER_NOTIFIED, "peer_notified")
_rows(S.ESTABLISHED, (I.KEEPALIVE_MSG,), "keepalive_received")
_rows(S.ESTABLISHED, (I.UPDATE_MSG,), "update_received")
_rows(S.ESTABLISHED, (I.UPDATE_MSG_ERR,), "update_error")
_rows(S.ESTABLISHED, (I.ROUTE_REFRESH_MSG,), "route_refresh_received")
_rows(S.ESTABLISHED, _MESSAGE_ERRORS, "message_error")
_rows(S.ESTABLISHED, (I.OPEN_COLLISION_DUMP,), "collision_dump")

#: What a state does with an input its rows do not name.
DEFAULTS: dict[S, str] = {
    S.IDLE: "ignore",
    S.CONNECT: "unexpected_before_open",
    S.ACTIVE: "unexpected_before_open",
    S.OPENSENT: "fsm_error",
    S.OPENCONFIRM: "fsm_error",
    S.ESTABLISHED: "fsm_error",
}


def handler_for(state: S, event: I) -> str:
    """The handler name for ``event`` in ``state`` (RFC 4271 §8.2.2)."""
    return TRANSITIONS.get((state, event), DEFAULTS[state])
