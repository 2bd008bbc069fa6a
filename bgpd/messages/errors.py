"""Errors that carry their wire meaning.

Every fault the decoders find in a peer's bytes is a ``BgpError``: the NOTIFICATION
error code and subcode, the Data octets RFC 4271 §6 says go with it, and the
RFC 7606 action the receiving session must take.  Actions are ordered by strength
(``ATTRIBUTE_DISCARD < TREAT_AS_WITHDRAW < AFI_SAFI_DISABLE < SESSION_RESET``) so
that when one UPDATE holds several faults the strongest wins (RFC 7606 §3).

Anything else a decoder raises is our own bug, never the peer's; the session
layer keeps those apart (Cease for our bug, the NOTIFICATION below for theirs).
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING

from .codes import (
    ErrorCode,
    Family,
    MessageHeaderSubcode,
    OpenSubcode,
    RouteRefreshErrorSubcode,
    UpdateSubcode,
    error_name,
)

if TYPE_CHECKING:
    from .update import Update


class Action(IntEnum):
    """The RFC 7606 §2 approaches, weakest first."""

    ATTRIBUTE_DISCARD = 1
    TREAT_AS_WITHDRAW = 2
    AFI_SAFI_DISABLE = 3
    SESSION_RESET = 4


class BgpError(Exception):
    """A fault in received bytes, with its NOTIFICATION meaning (RFC 4271 §6)."""

    action: Action = Action.SESSION_RESET

    def __init__(self, code: int, subcode: int, data: bytes = b"", reason: str = "") -> None:
        self.code = code
        self.subcode = subcode
        self.data = bytes(data)
        self.reason = reason or error_name(code, subcode)
        super().__init__(f"{error_name(code, subcode)}: {self.reason}")

    @property
    def sends_notification(self) -> bool:
        """True when the session must send a NOTIFICATION and reset (RFC 7606 §2)."""
        return self.action is Action.SESSION_RESET


class MessageHeaderError(BgpError):
    """RFC 4271 §6.1."""

    def __init__(self, subcode: MessageHeaderSubcode, data: bytes = b"", reason: str = "") -> None:
        super().__init__(ErrorCode.MESSAGE_HEADER, subcode, data, reason)


class OpenMessageError(BgpError):
    """RFC 4271 §6.2."""

    def __init__(self, subcode: OpenSubcode, data: bytes = b"", reason: str = "") -> None:
        super().__init__(ErrorCode.OPEN_MESSAGE, subcode, data, reason)


class RouteRefreshError(BgpError):
    """RFC 7313 §5."""

    def __init__(
        self, subcode: RouteRefreshErrorSubcode, data: bytes = b"", reason: str = ""
    ) -> None:
        super().__init__(ErrorCode.ROUTE_REFRESH_MESSAGE, subcode, data, reason)


class UpdateMessageError(BgpError):
    """RFC 4271 §6.3 with the RFC 7606 action.

    ``updates`` is what the session should still apply when the action is weaker than
    a reset: for treat-as-withdraw, UPDATEs that withdraw every prefix the faulty
    message carried (RFC 7606 §2); for AFI/SAFI disable, the rest of the message with
    ``family`` removed.  ``faults`` lists every fault found, the strongest first.
    """

    def __init__(
        self,
        subcode: UpdateSubcode,
        data: bytes = b"",
        reason: str = "",
        action: Action = Action.SESSION_RESET,
        *,
        family: Family | None = None,
        attribute: int | None = None,
    ) -> None:
        super().__init__(ErrorCode.UPDATE_MESSAGE, subcode, data, reason)
        self.action = action
        self.family = family
        self.attribute = attribute
        self.updates: tuple[Update, ...] = ()
        self.faults: tuple[UpdateMessageError, ...] = (self,)

    def copy(self, action: Action | None = None) -> UpdateMessageError:
        """A fresh error with the same meaning (cached faults are never re-raised)."""
        return UpdateMessageError(
            UpdateSubcode(self.subcode),
            self.data,
            self.reason,
            self.action if action is None else action,
            family=self.family,
            attribute=self.attribute,
        )

    def __repr__(self) -> str:
        name = error_name(self.code, self.subcode)
        return f"UpdateMessageError({self.action.name}, {name}, {self.reason!r})"
