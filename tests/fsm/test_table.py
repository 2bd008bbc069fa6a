"""Every (state, input) pair of the FSM, and random walks through it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bgpd.fsm import FsmInput, Session, SessionState
from bgpd.fsm.table import TRANSITIONS, handler_for
from bgpd.messages import (
    IPV4_UNICAST,
    KEEPALIVE,
    MessageHeaderError,
    MessageHeaderSubcode,
    Notification,
    OpenMessageError,
    OpenSubcode,
    RouteRefresh,
    Update,
    UpdateMessageError,
    UpdateSubcode,
    decode_message,
    encode_message,
    iter_messages,
)

from .test_session import B_ID, SessionPair, config, opened

PEER_OPEN = Session(config(65002, 65001, B_ID)).local_open


def in_state(state: SessionState) -> Session:
    if state == SessionState.IDLE:
        return Session(config())
    if state == SessionState.CONNECT:
        s = Session(config())
        s.start(0.0)
        return s
    if state == SessionState.ACTIVE:
        s = Session(config())
        s.start(0.0, passive=True)
        return s
    if state == SessionState.OPENSENT:
        return opened()
    if state == SessionState.OPENCONFIRM:
        s = opened()
        s.receive_data(encode_message(PEER_OPEN), 0.5)
        s.data_to_send()
        return s
    pair = SessionPair(config(), config(65002, 65001, B_ID))
    pair.establish()
    pair.a.data_to_send()
    return pair.a


def payload_for(event: FsmInput) -> object:
    return {
        FsmInput.BGP_OPEN: PEER_OPEN,
        FsmInput.BGP_OPEN_WITH_DELAY_OPEN_TIMER_RUNNING: PEER_OPEN,
        FsmInput.BGP_HEADER_ERR: MessageHeaderError(MessageHeaderSubcode.BAD_MESSAGE_TYPE, b"\x09"),
        FsmInput.BGP_OPEN_MSG_ERR: OpenMessageError(OpenSubcode.BAD_PEER_AS),
        FsmInput.NOTIF_MSG: Notification(6, 4),
        FsmInput.NOTIF_MSG_VER_ERR: Notification(2, 1, b"\x00\x04"),
        FsmInput.KEEPALIVE_MSG: KEEPALIVE,
        FsmInput.UPDATE_MSG: Update(),
        FsmInput.UPDATE_MSG_ERR: UpdateMessageError(UpdateSubcode.MALFORMED_ATTRIBUTE_LIST),
        FsmInput.ROUTE_REFRESH_MSG: RouteRefresh(IPV4_UNICAST),
    }.get(event)


FSM_SUBCODE = {SessionState.OPENSENT: 1, SessionState.OPENCONFIRM: 2, SessionState.ESTABLISHED: 3}


@pytest.mark.parametrize("event", list(FsmInput), ids=lambda e: e.name)
@pytest.mark.parametrize("state", list(SessionState), ids=lambda s: s.name)
def test_every_state_input_pair(state: SessionState, event: FsmInput) -> None:
    s = in_state(state)
    assert s.state == state
    s._dispatch(event, 1.0, payload_for(event))
    out = [decode_message(m) for _t, m in iter_messages(s.data_to_send(), 65535)]
    if (state, event) in TRANSITIONS:
        return
    # A pair outside the table is the state's default (RFC 4271 §8.2.2, RFC 6608).
    if state == SessionState.IDLE:
        assert s.state == SessionState.IDLE and out == []
    elif state in FSM_SUBCODE:
        notes = [m for m in out if isinstance(m, Notification)]
        assert [(n.code, n.subcode) for n in notes] == [(5, FSM_SUBCODE[state])]
        assert s.state == SessionState.IDLE
    else:
        assert s.state == SessionState.IDLE
        assert handler_for(state, event) == "unexpected_before_open"


def test_table_names_only_existing_handlers() -> None:
    s = Session(config())
    for name in set(TRANSITIONS.values()):
        assert callable(getattr(s, f"_on_{name}"))


@given(
    st.sampled_from(list(SessionState)),
    st.lists(st.sampled_from(list(FsmInput)), max_size=25),
    st.lists(st.floats(0, 50), min_size=25, max_size=25),
)
def test_random_walks_keep_the_invariants(
    start: SessionState, events: list[FsmInput], gaps: list[float]
) -> None:
    s = in_state(start)
    now = 1.0
    for event, gap in zip(events, gaps, strict=False):
        now += gap
        s._dispatch(event, now, payload_for(event))
        s.handle_timer(now)
        s.data_to_send()
        while s.next_event() is not None:
            pass
        timers = set(s._timers)
        if s.state == SessionState.IDLE:
            assert timers <= {"idle_hold"}
            assert not s.connected
        if s.state == SessionState.ESTABLISHED:
            assert {"hold", "keepalive"} <= timers
            assert s.negotiated is not None
        if s.state in (SessionState.OPENSENT, SessionState.OPENCONFIRM):
            assert "hold" in timers and s.connected
        deadline = s.get_timer()
        assert deadline is None or deadline > now
