"""One BGP session as a sans-I/O core (RFC 4271 §8), after aioquic's connection.

Inputs: ``start``/``stop``, ``connection_made``/``connection_lost`` from the
driver, ``receive_data(data, now)`` with whatever the socket delivered, and
``handle_timer(now)`` when ``get_timer()``'s deadline passes.  Outputs are pulled:
``data_to_send()`` for the socket, ``next_event()`` for the driver (``Connect``,
``Disconnect``) and the layers above, ``get_timer()`` for the earliest deadline.
No clock, socket or asyncio here: time is the ``now`` passed in, so tests run on
virtual time.

Every input becomes an RFC event (``FsmInput``) and goes through ``table``; the
handler named there acts and picks the next state.  Decode faults are caught in
one place (``receive_data``) and become the RFC's events; any other exception is
our own bug and ends this session with Cease, never the process.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

from bgpd.messages import (
    BgpError,
    CeaseSubcode,
    ErrorCode,
    Family,
    FsmSubcode,
    Keepalive,
    Message,
    MessageBuffer,
    MessageHeaderError,
    Notification,
    Open,
    OpenMessageError,
    RouteRefresh,
    RouteRefreshSubtype,
    SessionContext,
    Update,
    UpdateMessageError,
    decode_message,
    encode_message,
)
from bgpd.messages.codes import (
    MAX_EXTENDED_MESSAGE_LEN,
    MAX_MESSAGE_LEN,
    MessageType,
    OpenSubcode,
)
from bgpd.messages.errors import Action
from bgpd.messages.message import KEEPALIVE

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
from .negotiation import build_open, check_open, negotiate
from .states import FsmInput, SessionState
from .table import DEFAULTS, TRANSITIONS, handler_for

log = logging.getLogger(__name__)

#: RFC 4271 §8.2.2: "a large value" for the hold timer while waiting for OPEN.
OPEN_HOLD_TIME = 240.0

_TIMER_INPUTS = {
    "connect_retry": FsmInput.CONNECT_RETRY_TIMER_EXPIRES,
    "hold": FsmInput.HOLD_TIMER_EXPIRES,
    "keepalive": FsmInput.KEEPALIVE_TIMER_EXPIRES,
    "delay_open": FsmInput.DELAY_OPEN_TIMER_EXPIRES,
    "idle_hold": FsmInput.IDLE_HOLD_TIMER_EXPIRES,
    "send_hold": FsmInput.SEND_HOLD_TIMER_EXPIRES,
}
_KEEPALIVE_BYTES = encode_message(KEEPALIVE)

#: RFC 9687 §4: the suggested SendHoldTime when none is configured.
SEND_HOLD_TIME = 480.0
_FSM_SUBCODE = {
    SessionState.OPENSENT: FsmSubcode.UNEXPECTED_MESSAGE_IN_OPENSENT,
    SessionState.OPENCONFIRM: FsmSubcode.UNEXPECTED_MESSAGE_IN_OPENCONFIRM,
    SessionState.ESTABLISHED: FsmSubcode.UNEXPECTED_MESSAGE_IN_ESTABLISHED,
}
_UP_STATES = (SessionState.OPENSENT, SessionState.OPENCONFIRM, SessionState.ESTABLISHED)


class Session:
    """The state machine of one BGP session with one peer."""

    def __init__(self, config: SessionConfig) -> None:
        self.config = config
        self.state = SessionState.IDLE
        self.local_open: Open = build_open(config)
        self._open_bytes = encode_message(self.local_open)
        self.negotiated: Negotiated | None = None
        self.context = SessionContext()
        self.last_error = ""
        self.connected = False
        self._out = bytearray()
        self._events: deque[SessionEvent] = deque()
        self._timers: dict[str, float] = {}
        self._buffer = MessageBuffer(MAX_MESSAGE_LEN)
        self._error_wait = config.error_wait_min
        self._auto_restart = False
        self._established_at: float | None = None
        #: Messages and UPDATEs received and sent, for operators (BIRD's
        #: "show protocols all" statistics).
        self.messages_in = self.messages_out = self.updates_in = self.updates_out = 0
        handlers = set(TRANSITIONS.values()) | set(DEFAULTS.values())
        self._handlers: dict[str, Callable[[float, object], None]] = {
            name: getattr(self, f"_on_{name}") for name in handlers
        }

    # ------------------------------------------------------------------ inputs

    def start(self, now: float, passive: bool | None = None) -> None:
        """ManualStart, or its passive variant (RFC 4271 §8.1.2 events 1 and 4)."""
        self._auto_restart = True
        passive = self.config.passive if passive is None else passive
        event = (
            FsmInput.MANUAL_START_WITH_PASSIVE_TCP_ESTABLISHMENT
            if passive
            else FsmInput.MANUAL_START
        )
        self._dispatch(event, now)

    def stop(self, now: float, notification: Notification | None = None) -> None:
        """ManualStop (event 2): Cease to the peer if a NOTIFICATION can be sent.

        ``notification`` replaces the default Administrative Shutdown (for example
        with a shutdown communication, RFC 9003).
        """
        self._auto_restart = False
        self._dispatch(FsmInput.MANUAL_STOP, now, notification)

    def reconfigure(self, config: SessionConfig) -> None:
        """New settings, used from the next OPEN on (for example the Restart State
        bit cleared once our initial convergence after a restart is over)."""
        self.config = config
        self.local_open = build_open(config)
        self._open_bytes = encode_message(self.local_open)

    def connection_made(self, now: float, outgoing: bool = True) -> None:
        """Tcp_CR_Acked (our connect succeeded) or TcpConnectionConfirmed (accepted)."""
        self._dispatch(
            FsmInput.TCP_CR_ACKED if outgoing else FsmInput.TCP_CONNECTION_CONFIRMED, now
        )

    def connection_lost(self, now: float) -> None:
        """TcpConnectionFails (event 18)."""
        self._dispatch(FsmInput.TCP_CONNECTION_FAILS, now)

    def open_collision_dump(self, now: float) -> None:
        """OpenCollisionDump (event 23): this connection lost the §6.8 collision."""
        self._auto_restart = False
        self._dispatch(FsmInput.OPEN_COLLISION_DUMP, now)

    def receive_data(self, data: bytes, now: float) -> None:
        """Bytes from the socket: frame, decode, and run each message through the FSM."""
        if not self.connected:
            return
        self._buffer.feed(data)
        try:
            for mtype, raw in self._buffer.messages():
                self.messages_in += 1
                if mtype == MessageType.UPDATE:
                    self.updates_in += 1
                self._receive_message(raw, now)
                if not self.connected:
                    break
        except MessageHeaderError as e:
            self._dispatch(FsmInput.BGP_HEADER_ERR, now, e)
        except Exception as e:  # our own bug: this session ends, nothing else does
            self._internal_error(e, now)

    def transmit_blocked(self, now: float) -> None:
        """The socket stopped taking our bytes: start SendHoldTimer (RFC 9687 §3)."""
        if self.connected and "send_hold" not in self._timers:
            self._set_timer("send_hold", now + self._send_hold_time())

    def transmit_resumed(self, now: float) -> None:
        """The peer read what was queued: SendHoldTimer stops (RFC 9687 §3)."""
        self._timers.pop("send_hold", None)

    def handle_timer(self, now: float) -> None:
        """Fire every timer whose deadline has passed, earliest first."""
        while True:
            due = [(t, name) for name, t in self._timers.items() if t <= now]
            if not due:
                return
            _t, name = min(due)
            del self._timers[name]
            try:
                self._dispatch(_TIMER_INPUTS[name], now)
            except Exception as e:
                self._internal_error(e, now)

    # ----------------------------------------------------------------- outputs

    def data_to_send(self) -> bytes:
        """Bytes for the socket, in order; empties the queue."""
        data = bytes(self._out)
        self._out.clear()
        # Walk the headers (RFC 4271 §4.1: length at octet 16, type at 18).
        i, end = 0, len(data)
        while i + 19 <= end:
            self.messages_out += 1
            if data[i + 18] == MessageType.UPDATE:
                self.updates_out += 1
            i += int.from_bytes(data[i + 16 : i + 18], "big") or end
        return data

    def next_event(self) -> SessionEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """The earliest timer deadline, or None."""
        return min(self._timers.values()) if self._timers else None

    # ----------------------------------------------------------- sending routes

    def send_update(self, update: Update, now: float) -> None:
        """Queue an UPDATE (Established only); restarts the keepalive timer."""
        self.send_encoded(encode_message(update, self.context), now)

    def send_encoded(self, data: bytes, now: float) -> None:
        """Queue already-encoded UPDATEs, for attribute sets encoded once for many peers."""
        if self.state != SessionState.ESTABLISHED:
            raise RuntimeError(f"cannot send routes in state {self.state.label}")
        self._out += data
        self._restart_keepalive(now)

    def send_route_refresh(self, family: Family, now: float, subtype: int = 0) -> None:
        """Ask the peer to re-send ``family`` (RFC 2918), or mark BoRR/EoRR (RFC 7313)."""
        self.send_encoded(encode_message(RouteRefresh(family, subtype), self.context), now)

    # ------------------------------------------------------------------ internals

    def _receive_message(self, raw: bytes, now: float) -> None:
        try:
            msg: Message = decode_message(raw, self.context)
        except UpdateMessageError as e:
            self._dispatch(FsmInput.UPDATE_MSG_ERR, now, e)
            return
        except OpenMessageError as e:
            self._dispatch(FsmInput.BGP_OPEN_MSG_ERR, now, e)
            return
        except BgpError as e:  # header and ROUTE-REFRESH faults
            self._dispatch(FsmInput.BGP_HEADER_ERR, now, e)
            return
        self._dispatch(_input_for(msg, "delay_open" in self._timers), now, msg)

    def _dispatch(self, event: FsmInput, now: float, payload: object = None) -> None:
        name = handler_for(self.state, event)
        self._handlers[name](now, payload)

    def _enter(self, state: SessionState, now: float) -> None:
        if state != self.state:
            self._events.append(StateChanged(self.state, state, now))
            self.state = state

    def _set_timer(self, name: str, deadline: float) -> None:
        self._timers[name] = deadline

    def _send_hold_time(self) -> float:
        if self.config.send_hold_time is not None:
            return self.config.send_hold_time
        hold = self.negotiated.hold_time if self.negotiated is not None else OPEN_HOLD_TIME
        return max(SEND_HOLD_TIME, 2.0 * hold)

    def _restart_hold(self, now: float) -> None:
        if self.negotiated is not None and self.negotiated.hold_time:
            self._set_timer("hold", now + self.negotiated.hold_time)

    def _restart_keepalive(self, now: float) -> None:
        if self.negotiated is not None and self.negotiated.hold_time:
            self._set_timer("keepalive", now + self.negotiated.keepalive_time)

    def _notify(self, notification: Notification) -> None:
        if self.connected:
            self._out += encode_message(notification, self.context)

    def _go_idle(
        self,
        now: float,
        reason: str,
        *,
        sent: Notification | None = None,
        received: Notification | None = None,
        error: bool = True,
        graceful: bool = False,
        abort: bool = False,
    ) -> None:
        """Leave for Idle: drop the connection, report, and schedule the restart."""
        was = self.state
        was_established = was == SessionState.ESTABLISHED
        self._timers.clear()
        if self.connected:
            self.connected = False
            self._events.append(Disconnect(abort))
        self.last_error = reason
        lived = now - self._established_at if self._established_at is not None else 0.0
        if was_established and lived >= self.config.error_forget:
            self._error_wait = self.config.error_wait_min
        self._established_at = None
        self.negotiated = None
        self.context = SessionContext()
        self._buffer = MessageBuffer(MAX_MESSAGE_LEN)
        self._enter(SessionState.IDLE, now)
        if was in _UP_STATES:
            self._events.append(
                SessionDown(
                    reason, sent, received, graceful and was_established, was_established, now
                )
            )
        if error and self._auto_restart:
            # Error wait grows exponentially for a peer that keeps failing (BIRD's
            # "error wait time 5,30"), and IdleHoldTimer restarts the session.
            self._set_timer("idle_hold", now + self._error_wait)
            self._error_wait = min(self._error_wait * 2, self.config.error_wait_max)

    def _graceful_after(self, received: Notification | None, sent: Notification | None) -> bool:
        """Does the peer's restart keep its routes (RFC 4724 §4.2, RFC 8538 §4)?"""
        neg = self.negotiated
        if neg is None or neg.peer_graceful_restart is None:
            return False
        note = received or sent
        if note is None:
            return True
        if not neg.graceful_notification:
            return False
        return not (note.code == ErrorCode.CEASE and note.subcode == CeaseSubcode.HARD_RESET)

    def _stop_open_timers(self) -> None:
        """ConnectRetry and DelayOpen end once an OPEN is sent (RFC 4271 §8.2.2)."""
        self._timers.pop("connect_retry", None)
        self._timers.pop("delay_open", None)

    def _accept_open(self, now: float, peer: Open) -> bool:
        """Check and negotiate the peer's OPEN; on a fault, NOTIFICATION and Idle."""
        try:
            check_open(self.config, peer)
        except OpenMessageError as e:
            self._on_message_error(now, e)
            return False
        self.negotiated = negotiate(self.config, self.local_open, peer)
        self.context = self.negotiated.context
        self._buffer.max_length = (
            MAX_EXTENDED_MESSAGE_LEN if self.context.extended_message else MAX_MESSAGE_LEN
        )
        return True

    def _internal_error(self, error: Exception, now: float) -> None:
        log.error("internal error in session, ending it with Cease", exc_info=error)
        note = Notification(ErrorCode.CEASE, CeaseSubcode.UNSPECIFIC)
        self._notify(note)
        self._go_idle(now, f"internal error: {error!r}", sent=note)

    # ------------------------------------------------------------------ handlers

    def _on_ignore(self, now: float, payload: object) -> None:
        return

    def _on_start_connecting(self, now: float, payload: object) -> None:
        if self.config.passive:
            self._on_start_listening(now, payload)
            return
        # The first attempt waits "connect delay" so the peer may connect first.
        self._set_timer("connect_retry", now + self.config.connect_delay)
        self._enter(SessionState.CONNECT, now)

    def _on_start_listening(self, now: float, payload: object) -> None:
        if not self.config.passive:
            self._set_timer("connect_retry", now + self.config.connect_retry_time)
        self._enter(SessionState.ACTIVE, now)

    def _on_retry_connect(self, now: float, payload: object) -> None:
        if self.connected:
            self.connected = False
            self._events.append(Disconnect())
        self._events.append(Connect())
        self._set_timer("connect_retry", now + self.config.connect_retry_time)
        self._enter(SessionState.CONNECT, now)

    def _on_connection_up(self, now: float, payload: object) -> None:
        self.connected = True
        self._timers.pop("connect_retry", None)
        if self.config.delay_open_time:
            self._set_timer("delay_open", now + self.config.delay_open_time)
            return
        self._on_send_open(now, payload)

    def _on_send_open(self, now: float, payload: object) -> None:
        if not self.connected:
            return  # a DelayOpen expiry that raced a lost connection
        self._stop_open_timers()
        self._out += self._open_bytes
        self._set_timer("hold", now + OPEN_HOLD_TIME)
        self._enter(SessionState.OPENSENT, now)

    def _on_connection_failed(self, now: float, payload: object) -> None:
        self.connected = False
        self._timers.pop("delay_open", None)
        if not self.config.passive:
            self._set_timer("connect_retry", now + self.config.connect_retry_time)
        self._enter(SessionState.ACTIVE, now)

    def _on_open_during_delay(self, now: float, payload: object) -> None:
        assert isinstance(payload, Open)
        if not self.connected or "delay_open" not in self._timers:
            self._on_unexpected_before_open(now, payload)
            return
        self._stop_open_timers()
        if not self._accept_open(now, payload):
            return
        self._out += self._open_bytes
        self._out += _KEEPALIVE_BYTES
        self._restart_hold(now)
        self._restart_keepalive(now)
        self._enter(SessionState.OPENCONFIRM, now)

    def _on_message_error(self, now: float, payload: object) -> None:
        assert isinstance(payload, BgpError)
        note = Notification.from_error(payload)
        self._notify(note)
        self._go_idle(now, str(payload), sent=note)

    def _on_peer_notified(self, now: float, payload: object) -> None:
        assert isinstance(payload, Notification)
        graceful = self._graceful_after(payload, None)
        self._go_idle(now, f"received {payload}", received=payload, graceful=graceful)

    def _on_stop_quietly(self, now: float, payload: object) -> None:
        self._go_idle(now, "stopped", error=False)

    def _on_unexpected_before_open(self, now: float, payload: object) -> None:
        sent = None
        if self.connected:
            sent = Notification(ErrorCode.FSM, FsmSubcode.UNSPECIFIED)
            self._notify(sent)
        self._go_idle(now, f"unexpected {type(payload).__name__} in {self.state.label}", sent=sent)

    def _on_stop_with_cease(self, now: float, payload: object) -> None:
        note = payload if isinstance(payload, Notification) else Notification.shutdown()
        hard = note.code == ErrorCode.CEASE and note.subcode == CeaseSubcode.HARD_RESET
        if self.negotiated is not None and self.negotiated.graceful_notification and not hard:
            # RFC 8538 §3: a deliberate stop must flush the peer's copy of our routes.
            note = Notification.hard_reset(note)
        self._notify(note)
        self._go_idle(now, "stopped", sent=note, error=False)

    def _on_hold_expired(self, now: float, payload: object) -> None:
        note = Notification(ErrorCode.HOLD_TIMER_EXPIRED, 0)
        self._notify(note)
        self._go_idle(
            now, "hold timer expired", sent=note, graceful=self._graceful_after(None, note)
        )

    def _on_send_hold_expired(self, now: float, payload: object) -> None:
        # RFC 9687 §4: try the NOTIFICATION, then close without waiting for it.
        note = Notification(ErrorCode.SEND_HOLD_TIMER_EXPIRED, 0)
        self._notify(note)
        self._go_idle(
            now,
            "send hold timer expired: the peer stopped reading",
            sent=note,
            graceful=self._graceful_after(None, note),
            abort=True,
        )

    def _on_connection_lost_early(self, now: float, payload: object) -> None:
        self.connected = False
        self._timers.clear()
        if not self.config.passive:
            self._set_timer("connect_retry", now + self.config.connect_retry_time)
        self.negotiated = None
        self.context = SessionContext()
        self._buffer = MessageBuffer(MAX_MESSAGE_LEN)
        self._enter(SessionState.ACTIVE, now)
        self._events.append(SessionDown("connection lost", None, None, False, False, now))

    def _on_open_received(self, now: float, payload: object) -> None:
        assert isinstance(payload, Open)
        if not self._accept_open(now, payload):
            return
        self._out += _KEEPALIVE_BYTES
        self._timers.pop("hold", None)
        self._restart_hold(now)
        self._restart_keepalive(now)
        self._enter(SessionState.OPENCONFIRM, now)

    def _on_collision_dump(self, now: float, payload: object) -> None:
        note = Notification(ErrorCode.CEASE, CeaseSubcode.CONNECTION_COLLISION_RESOLUTION)
        self._notify(note)
        self._go_idle(now, "connection collision resolution", sent=note, error=False)

    def _on_send_keepalive(self, now: float, payload: object) -> None:
        self._out += _KEEPALIVE_BYTES
        self._restart_keepalive(now)

    def _on_connection_lost(self, now: float, payload: object) -> None:
        self._go_idle(now, "connection lost", graceful=self._graceful_after(None, None))

    def _on_establish(self, now: float, payload: object) -> None:
        assert self.negotiated is not None
        self._restart_hold(now)
        self._established_at = now
        self._enter(SessionState.ESTABLISHED, now)
        self._events.append(Established(self.negotiated, now))

    def _on_keepalive_received(self, now: float, payload: object) -> None:
        self._restart_hold(now)

    def _on_update_received(self, now: float, payload: object) -> None:
        assert isinstance(payload, Update)
        self._restart_hold(now)
        for fault in payload.discarded:
            self._events.append(UpdateErrorHandled(fault))
        family = payload.end_of_rib_family
        if family is not None:
            self._events.append(EndOfRib(family))
        else:
            self._events.append(RoutesReceived(payload))

    def _on_update_error(self, now: float, payload: object) -> None:
        assert isinstance(payload, UpdateMessageError)
        if payload.action >= Action.SESSION_RESET:
            self._on_message_error(now, payload)
            return
        self._restart_hold(now)
        self._events.append(UpdateErrorHandled(payload))
        for update in payload.updates:
            self._events.append(RoutesReceived(update))

    def _on_route_refresh_received(self, now: float, payload: object) -> None:
        assert isinstance(payload, RouteRefresh)
        self._restart_hold(now)
        neg = self.negotiated
        # RFC 2918 §4 / RFC 7313 §5: a family we did not negotiate, or an unknown
        # subtype, is ignored.
        if neg is None or payload.family not in neg.families:
            return
        if payload.subtype > RouteRefreshSubtype.EORR:
            return
        self._events.append(RouteRefreshRequested(payload.family, payload.subtype))

    def _on_fsm_error(self, now: float, payload: object) -> None:
        note = Notification(ErrorCode.FSM, _FSM_SUBCODE[self.state])
        self._notify(note)
        what = type(payload).__name__ if payload is not None else "event"
        self._go_idle(now, f"unexpected {what} in {self.state.label}", sent=note)


def _input_for(message: Message, delay_open_running: bool) -> FsmInput:
    """The RFC event a decoded message is (RFC 4271 §8.1.5)."""
    if isinstance(message, Open):
        return (
            FsmInput.BGP_OPEN_WITH_DELAY_OPEN_TIMER_RUNNING
            if delay_open_running
            else FsmInput.BGP_OPEN
        )
    if isinstance(message, Keepalive):
        return FsmInput.KEEPALIVE_MSG
    if isinstance(message, Update):
        return FsmInput.UPDATE_MSG
    if isinstance(message, Notification):
        version = (message.code, message.subcode) == (
            ErrorCode.OPEN_MESSAGE,
            OpenSubcode.UNSUPPORTED_VERSION_NUMBER,
        )
        return FsmInput.NOTIF_MSG_VER_ERR if version else FsmInput.NOTIF_MSG
    return FsmInput.ROUTE_REFRESH_MSG
