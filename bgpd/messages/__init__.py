"""BGP-4 wire codecs: bytes <-> typed, frozen, validated messages.  No I/O.

The public face::

    from bgpd.messages import SessionContext, decode_message, encode_message
    msg = decode_message(data, SessionContext())   # one whole message
    data = encode_message(msg, SessionContext())

Decoders raise only ``BgpError`` and its subclasses, each with the NOTIFICATION
code, subcode and data, and the RFC 7606 action.  See the module docstrings for the
theory of each part: ``framing`` (headers, stream buffer), ``open`` and
``capabilities``, ``update``, ``attributes`` and ``attribute_codec``, ``aspath``,
``nlri`` (packed prefixes), ``notification``, ``route_refresh``.
"""

from .aspath import AsPath, AsPathSegment, reconstruct, to_two_octet
from .attributes import (
    EMPTY_ATTRIBUTES,
    Aggregator,
    LargeCommunity,
    PathAttributes,
    UnknownAttribute,
)
from .capabilities import (
    AddPath,
    BgpRoleCapability,
    Capability,
    EnhancedRouteRefresh,
    ExtendedMessage,
    ExtendedNextHop,
    FourOctetAs,
    GracefulRestart,
    Hostname,
    LongLivedGracefulRestart,
    Multiprotocol,
    UnknownCapability,
)
from .capabilities import (
    RouteRefresh as RouteRefreshCapability,
)
from .codec import decode_message, encode_message
from .codes import (
    AS_TRANS,
    IPV4_UNICAST,
    IPV6_UNICAST,
    AddPathMode,
    Afi,
    AsPathSegmentType,
    AttrFlag,
    AttrType,
    BgpRole,
    CapabilityCode,
    CeaseSubcode,
    ErrorCode,
    Family,
    FsmSubcode,
    MessageHeaderSubcode,
    MessageType,
    OpenSubcode,
    Origin,
    RouteRefreshSubtype,
    Safi,
    UpdateSubcode,
    WellKnownCommunity,
)
from .context import SessionContext
from .errors import (
    Action,
    BgpError,
    MessageHeaderError,
    OpenMessageError,
    RouteRefreshError,
    UpdateMessageError,
)
from .framing import MessageBuffer, iter_messages
from .message import KEEPALIVE, Keepalive, Message
from .nlri import Prefix, prefix_from_text, prefix_to_text
from .notification import Notification
from .open import Open
from .route_refresh import RouteRefresh
from .update import MpReach, MpUnreach, Update

__all__ = [
    "AS_TRANS",
    "EMPTY_ATTRIBUTES",
    "IPV4_UNICAST",
    "IPV6_UNICAST",
    "KEEPALIVE",
    "Action",
    "AddPath",
    "AddPathMode",
    "Afi",
    "Aggregator",
    "AsPath",
    "AsPathSegment",
    "AsPathSegmentType",
    "AttrFlag",
    "AttrType",
    "BgpError",
    "BgpRole",
    "BgpRoleCapability",
    "Capability",
    "CapabilityCode",
    "CeaseSubcode",
    "EnhancedRouteRefresh",
    "ErrorCode",
    "ExtendedMessage",
    "ExtendedNextHop",
    "Family",
    "FourOctetAs",
    "FsmSubcode",
    "GracefulRestart",
    "Hostname",
    "Keepalive",
    "LargeCommunity",
    "LongLivedGracefulRestart",
    "Message",
    "MessageBuffer",
    "MessageHeaderError",
    "MessageHeaderSubcode",
    "MessageType",
    "MpReach",
    "MpUnreach",
    "Multiprotocol",
    "Notification",
    "Open",
    "OpenMessageError",
    "OpenSubcode",
    "Origin",
    "PathAttributes",
    "Prefix",
    "RouteRefresh",
    "RouteRefreshCapability",
    "RouteRefreshError",
    "RouteRefreshSubtype",
    "Safi",
    "SessionContext",
    "UnknownAttribute",
    "UnknownCapability",
    "Update",
    "UpdateMessageError",
    "UpdateSubcode",
    "WellKnownCommunity",
    "decode_message",
    "encode_message",
    "iter_messages",
    "prefix_from_text",
    "prefix_to_text",
    "reconstruct",
    "to_two_octet",
]
