"""NOTIFICATION (RFC 4271 §4.5), the shutdown communication and the Hard Reset.

The error code and subcode stay plain ints on decode (any value a peer sends is
kept); ``name`` gives the registry name.  Two Cease subcodes give the Data field a
structure:

- Administrative Shutdown and Administrative Reset carry a shutdown communication:
  a length octet and up to 255 octets of UTF-8 (RFC 9003 §2, which obsoletes the
  128-octet limit of RFC 8203).
- Hard Reset carries the code, subcode and data of the NOTIFICATION it stands for
  (RFC 8538 §3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .codes import MAX_MESSAGE_LEN, CeaseSubcode, ErrorCode, MessageType, error_name
from .context import SessionContext
from .errors import BgpError
from .message import Message

_COMMUNICATION_SUBCODES = (CeaseSubcode.ADMINISTRATIVE_SHUTDOWN, CeaseSubcode.ADMINISTRATIVE_RESET)
MAX_SHUTDOWN_COMMUNICATION = 255
#: Data octets that fit one 4096-octet NOTIFICATION, leaving room for a Hard Reset
#: (2 octets) around it.
MAX_DATA = MAX_MESSAGE_LEN - 21 - 2


@dataclass(frozen=True, slots=True)
class Notification(Message):
    """NOTIFICATION: error code, subcode and data."""

    message_type: ClassVar[MessageType] = MessageType.NOTIFICATION
    code: int
    subcode: int = 0
    data: bytes = b""

    def __post_init__(self) -> None:
        if not (0 <= self.code <= 255 and 0 <= self.subcode <= 255):
            raise ValueError("error code and subcode fit 8 bits")

    @classmethod
    def from_error(cls, error: BgpError) -> Notification:
        """The NOTIFICATION a session sends for a decode fault (RFC 4271 §6).

        The data is cut to what fits a 4096-octet message (and a Hard Reset around
        it): RFC 7313 §5 asks for a whole ROUTE-REFRESH, which may be larger.
        """
        return cls(error.code, error.subcode, error.data[:MAX_DATA])

    @classmethod
    def shutdown(
        cls, message: str = "", subcode: int = CeaseSubcode.ADMINISTRATIVE_SHUTDOWN
    ) -> Notification:
        """A Cease with a shutdown communication (RFC 9003 §2)."""
        text = message.encode()
        if len(text) > MAX_SHUTDOWN_COMMUNICATION:
            raise ValueError(f"shutdown communication is {len(text)} octets, over 255")
        return cls(ErrorCode.CEASE, subcode, bytes((len(text),)) + text if text else b"")

    @classmethod
    def hard_reset(cls, inner: Notification) -> Notification:
        """A Cease/Hard Reset wrapping ``inner`` (RFC 8538 §3)."""
        data = bytes((inner.code, inner.subcode)) + inner.data
        return cls(ErrorCode.CEASE, CeaseSubcode.HARD_RESET, data[: MAX_DATA + 2])

    @property
    def name(self) -> str:
        return error_name(self.code, self.subcode)

    @property
    def shutdown_communication(self) -> str | None:
        """The operator's message of an administrative shutdown or reset (RFC 9003 §2).

        None when there is none or it is malformed (length past the data, bad UTF-8),
        in which case RFC 9003 §4 says to log the raw data instead.
        """
        if self.code != ErrorCode.CEASE or self.subcode not in _COMMUNICATION_SUBCODES:
            return None
        if not self.data:
            return None
        length = self.data[0]
        text = self.data[1 : 1 + length]
        if len(text) != length:
            return None
        try:
            return text.decode("utf-8")
        except UnicodeDecodeError:
            return None

    @property
    def hard_reset_cause(self) -> Notification | None:
        """The NOTIFICATION a Hard Reset stands for (RFC 8538 §3), if well-formed."""
        if self.code != ErrorCode.CEASE or self.subcode != CeaseSubcode.HARD_RESET:
            return None
        if len(self.data) < 2:
            return None
        return Notification(self.data[0], self.data[1], self.data[2:])

    def encode_body(self, context: SessionContext) -> bytes:
        return bytes((self.code, self.subcode)) + self.data

    @classmethod
    def decode_body(cls, body: bytes, context: SessionContext) -> Notification:
        # The header check guarantees the 2 octets of code and subcode.
        return cls(body[0], body[1], body[2:])

    def __str__(self) -> str:
        text = self.shutdown_communication
        return f"{self.name}" + (
            f' "{text}"' if text else (f" data={self.data.hex()}" if self.data else "")
        )
