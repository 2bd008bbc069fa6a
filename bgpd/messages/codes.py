"""BGP wire code spaces, named as in the IANA registries.

Every field of the wire that holds a number from a registry is an ``IntEnum`` here.
Decoders never require a value to be a member: an unknown code stays a plain
``int`` and survives a decode/encode round trip (``as_enum`` turns it into a member
where one exists, for display).  Internal signals never squat in these spaces.
"""

from __future__ import annotations

import functools
from enum import IntEnum, IntFlag
from typing import NamedTuple, TypeVar

MARKER = b"\xff" * 16
HEADER_LEN = 19
MAX_MESSAGE_LEN = 4096
MAX_EXTENDED_MESSAGE_LEN = 65535
BGP_VERSION = 4
AS_TRANS = 23456


class MessageType(IntEnum):
    """BGP Message Types registry (RFC 4271 §4.1, RFC 2918)."""

    OPEN = 1
    UPDATE = 2
    NOTIFICATION = 3
    KEEPALIVE = 4
    ROUTE_REFRESH = 5


class AttrFlag(IntFlag):
    """Path attribute flags (RFC 4271 §4.3)."""

    OPTIONAL = 0x80
    TRANSITIVE = 0x40
    PARTIAL = 0x20
    EXTENDED_LENGTH = 0x10


class AttrType(IntEnum):
    """BGP Path Attributes registry."""

    ORIGIN = 1
    AS_PATH = 2
    NEXT_HOP = 3
    MULTI_EXIT_DISC = 4
    LOCAL_PREF = 5
    ATOMIC_AGGREGATE = 6
    AGGREGATOR = 7
    COMMUNITIES = 8
    ORIGINATOR_ID = 9
    CLUSTER_LIST = 10
    MP_REACH_NLRI = 14
    MP_UNREACH_NLRI = 15
    EXTENDED_COMMUNITIES = 16
    AS4_PATH = 17
    AS4_AGGREGATOR = 18
    PMSI_TUNNEL = 22
    TUNNEL_ENCAPSULATION = 23
    TRAFFIC_ENGINEERING = 24
    IPV6_ADDRESS_SPECIFIC_EXTENDED_COMMUNITY = 25
    AIGP = 26
    PE_DISTINGUISHER_LABELS = 27
    BGP_LS = 29
    LARGE_COMMUNITY = 32
    BGPSEC_PATH = 33
    OTC = 35
    ATTR_SET = 128


class Origin(IntEnum):
    """ORIGIN attribute values (RFC 4271 §4.3)."""

    IGP = 0
    EGP = 1
    INCOMPLETE = 2


class AsPathSegmentType(IntEnum):
    """AS_PATH segment types (RFC 4271 §4.3, RFC 5065 §3)."""

    AS_SET = 1
    AS_SEQUENCE = 2
    AS_CONFED_SEQUENCE = 3
    AS_CONFED_SET = 4


class WellKnownCommunity(IntEnum):
    """Well-known Communities registry (RFC 1997, RFC 7999, RFC 8326, RFC 8642)."""

    GRACEFUL_SHUTDOWN = 0xFFFF0000
    ACCEPT_OWN = 0xFFFF0001
    LLGR_STALE = 0xFFFF0006
    NO_LLGR = 0xFFFF0007
    BLACKHOLE = 0xFFFF029A
    NO_EXPORT = 0xFFFFFF01
    NO_ADVERTISE = 0xFFFFFF02
    NO_EXPORT_SUBCONFED = 0xFFFFFF03
    NOPEER = 0xFFFFFF04


class CapabilityCode(IntEnum):
    """Capability Codes registry (RFC 5492)."""

    MULTIPROTOCOL = 1
    ROUTE_REFRESH = 2
    OUTBOUND_ROUTE_FILTERING = 3
    EXTENDED_NEXT_HOP = 5
    EXTENDED_MESSAGE = 6
    BGPSEC = 7
    MULTIPLE_LABELS = 8
    BGP_ROLE = 9
    GRACEFUL_RESTART = 64
    FOUR_OCTET_AS = 65
    DYNAMIC = 67
    MULTISESSION = 68
    ADD_PATH = 69
    ENHANCED_ROUTE_REFRESH = 70
    LONG_LIVED_GRACEFUL_RESTART = 71
    ROUTING_POLICY_DISTRIBUTION = 72
    FQDN = 73
    SOFTWARE_VERSION = 75
    PATHS_LIMIT = 76


class OptionalParameterType(IntEnum):
    """BGP OPEN Optional Parameter Types registry (RFC 5492, RFC 9072)."""

    CAPABILITIES = 2
    EXTENDED_LENGTH = 255


class Afi(IntEnum):
    """Address Family Numbers (IANA)."""

    IPV4 = 1
    IPV6 = 2
    L2VPN = 25
    BGP_LS = 16388


class Safi(IntEnum):
    """SAFI Values registry (RFC 4760)."""

    UNICAST = 1
    MULTICAST = 2
    MPLS_LABEL = 4
    MPLS_VPN = 128
    FLOWSPEC = 133


class Family(NamedTuple):
    """An (AFI, SAFI) pair; members stay ints when unknown."""

    afi: int
    safi: int

    def __str__(self) -> str:
        return _family_text(self.afi, self.safi)


@functools.lru_cache(maxsize=1024)
def _family_text(afi_value: int, safi_value: int) -> str:
    """``ipv4-unicast``; cached, as every session event and log line names families."""
    afi = as_enum(Afi, afi_value)
    safi = as_enum(Safi, safi_value)
    a = afi.name.lower() if isinstance(afi, Afi) else str(afi)
    s = safi.name.lower() if isinstance(safi, Safi) else str(safi)
    return f"{a}-{s}"


IPV4_UNICAST = Family(Afi.IPV4, Safi.UNICAST)
IPV6_UNICAST = Family(Afi.IPV6, Safi.UNICAST)
IPV4_MULTICAST = Family(Afi.IPV4, Safi.MULTICAST)
IPV6_MULTICAST = Family(Afi.IPV6, Safi.MULTICAST)

#: Families whose NLRI are plain prefixes (RFC 4760 §5), the ones this codec parses.
PREFIX_FAMILIES = frozenset({IPV4_UNICAST, IPV6_UNICAST, IPV4_MULTICAST, IPV6_MULTICAST})


class AddPathMode(IntFlag):
    """ADD-PATH Send/Receive field (RFC 7911 §4)."""

    RECEIVE = 1
    SEND = 2
    BOTH = 3


class BgpRole(IntEnum):
    """BGP Role values (RFC 9234 §4.1)."""

    PROVIDER = 0
    RS = 1
    RS_CLIENT = 2
    CUSTOMER = 3
    PEER = 4


class RouteRefreshSubtype(IntEnum):
    """ROUTE-REFRESH Message Subtypes (RFC 7313 §3)."""

    NORMAL = 0
    BORR = 1
    EORR = 2


class ErrorCode(IntEnum):
    """BGP Error Codes registry (RFC 4271 §4.5, RFC 4486, RFC 6608, RFC 7313)."""

    MESSAGE_HEADER = 1
    OPEN_MESSAGE = 2
    UPDATE_MESSAGE = 3
    HOLD_TIMER_EXPIRED = 4
    FSM = 5
    CEASE = 6
    ROUTE_REFRESH_MESSAGE = 7
    SEND_HOLD_TIMER_EXPIRED = 8


class MessageHeaderSubcode(IntEnum):
    """Message Header Error subcodes (RFC 4271 §4.5)."""

    UNSPECIFIC = 0
    CONNECTION_NOT_SYNCHRONIZED = 1
    BAD_MESSAGE_LENGTH = 2
    BAD_MESSAGE_TYPE = 3


class OpenSubcode(IntEnum):
    """OPEN Message Error subcodes (RFC 4271 §4.5, RFC 5492, RFC 9234)."""

    UNSPECIFIC = 0
    UNSUPPORTED_VERSION_NUMBER = 1
    BAD_PEER_AS = 2
    BAD_BGP_IDENTIFIER = 3
    UNSUPPORTED_OPTIONAL_PARAMETER = 4
    UNACCEPTABLE_HOLD_TIME = 6
    UNSUPPORTED_CAPABILITY = 7
    ROLE_MISMATCH = 11


class UpdateSubcode(IntEnum):
    """UPDATE Message Error subcodes (RFC 4271 §4.5)."""

    UNSPECIFIC = 0
    MALFORMED_ATTRIBUTE_LIST = 1
    UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE = 2
    MISSING_WELL_KNOWN_ATTRIBUTE = 3
    ATTRIBUTE_FLAGS_ERROR = 4
    ATTRIBUTE_LENGTH_ERROR = 5
    INVALID_ORIGIN_ATTRIBUTE = 6
    INVALID_NEXT_HOP_ATTRIBUTE = 8
    OPTIONAL_ATTRIBUTE_ERROR = 9
    INVALID_NETWORK_FIELD = 10
    MALFORMED_AS_PATH = 11


class FsmSubcode(IntEnum):
    """BGP Finite State Machine Error subcodes (RFC 6608 §3)."""

    UNSPECIFIED = 0
    UNEXPECTED_MESSAGE_IN_OPENSENT = 1
    UNEXPECTED_MESSAGE_IN_OPENCONFIRM = 2
    UNEXPECTED_MESSAGE_IN_ESTABLISHED = 3


class CeaseSubcode(IntEnum):
    """Cease NOTIFICATION subcodes (RFC 4486, RFC 8538)."""

    UNSPECIFIC = 0
    MAXIMUM_NUMBER_OF_PREFIXES_REACHED = 1
    ADMINISTRATIVE_SHUTDOWN = 2
    PEER_DE_CONFIGURED = 3
    ADMINISTRATIVE_RESET = 4
    CONNECTION_REJECTED = 5
    OTHER_CONFIGURATION_CHANGE = 6
    CONNECTION_COLLISION_RESOLUTION = 7
    OUT_OF_RESOURCES = 8
    HARD_RESET = 9
    BFD_DOWN = 10


class RouteRefreshErrorSubcode(IntEnum):
    """ROUTE-REFRESH Message Error subcodes (RFC 7313 §5)."""

    RESERVED = 0
    INVALID_MESSAGE_LENGTH = 1


#: Subcode registry per error code, for naming a (code, subcode) pair.
SUBCODES: dict[int, type[IntEnum]] = {
    ErrorCode.MESSAGE_HEADER: MessageHeaderSubcode,
    ErrorCode.OPEN_MESSAGE: OpenSubcode,
    ErrorCode.UPDATE_MESSAGE: UpdateSubcode,
    ErrorCode.FSM: FsmSubcode,
    ErrorCode.CEASE: CeaseSubcode,
    ErrorCode.ROUTE_REFRESH_MESSAGE: RouteRefreshErrorSubcode,
}

E = TypeVar("E", bound=IntEnum)


def as_enum(enum: type[E], value: int) -> E | int:
    """The member of ``enum`` with this value, or the plain int when unassigned."""
    try:
        return enum(value)
    except ValueError:
        return value


def error_name(code: int, subcode: int) -> str:
    """A readable name for a NOTIFICATION (code, subcode), e.g. ``CEASE/HARD_RESET``."""
    c = as_enum(ErrorCode, code)
    cname = c.name if isinstance(c, ErrorCode) else str(code)
    table = SUBCODES.get(code)
    if table is None:
        return f"{cname}/{subcode}"
    s = as_enum(table, subcode)
    return f"{cname}/{s.name if isinstance(s, IntEnum) else subcode}"
