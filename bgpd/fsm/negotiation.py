"""Our OPEN, the checks on the peer's OPEN, and what the two agree on.

RFC 4271 §6.2 leaves some OPEN checks to configuration, so they live here, not in
the codec: Bad Peer AS (2/2), a BGP Identifier equal to ours on iBGP (2/3, RFC
6286 §2.2), a required capability the peer lacks (2/7, RFC 5492 §5, data: the
missing capabilities) and a role mismatch (2/11, RFC 9234 §4.2).

A capability counts only when both sides advertise it (RFC 5492 §3): families
(RFC 4760 §8), 4-octet AS (RFC 6793), ADD-PATH per family and direction (RFC
7911 §4), extended message (RFC 8654), route refresh.  The hold time is the
smaller of the two; keepalives run at a third of it (RFC 4271 §4.4, §10).
"""

from __future__ import annotations

from typing import TypeVar

from bgpd.messages import (
    AS_TRANS,
    AddPath,
    AddPathMode,
    BgpRoleCapability,
    Capability,
    EnhancedRouteRefresh,
    ExtendedMessage,
    Family,
    FourOctetAs,
    GracefulRestart,
    Hostname,
    LongLivedGracefulRestart,
    Multiprotocol,
    Open,
    OpenMessageError,
    OpenSubcode,
    RouteRefreshCapability,
    SessionContext,
)
from bgpd.messages.codes import BgpRole

from .config import SessionConfig
from .events import Negotiated

#: RFC 9234 §4.2: the role pairs that agree.
_ROLE_PAIRS = {
    (BgpRole.PROVIDER, BgpRole.CUSTOMER),
    (BgpRole.CUSTOMER, BgpRole.PROVIDER),
    (BgpRole.RS, BgpRole.RS_CLIENT),
    (BgpRole.RS_CLIENT, BgpRole.RS),
    (BgpRole.PEER, BgpRole.PEER),
}


def build_open(config: SessionConfig) -> Open:
    """Our OPEN for ``config``, every capability in one parameter (as BIRD sends)."""
    caps: list[Capability] = [Multiprotocol(f) for f in config.families]
    if config.route_refresh:
        caps.append(RouteRefreshCapability())
    if config.enhanced_route_refresh:
        caps.append(EnhancedRouteRefresh())
    if config.extended_message:
        caps.append(ExtendedMessage())
    if config.role is not None:
        caps.append(BgpRoleCapability(config.role))
    if config.graceful_restart:
        caps.append(
            GracefulRestart(
                config.restart_time,
                restarting=config.restarting,
                notification=config.graceful_notification,
                families=tuple((f, config.forwarding_preserved) for f in config.families),
            )
        )
    caps.append(FourOctetAs(config.local_as))
    if config.add_path:
        caps.append(AddPath(config.add_path))
    if config.long_lived_stale_time is not None:
        stale = config.long_lived_stale_time
        caps.append(
            LongLivedGracefulRestart(
                tuple((f, config.forwarding_preserved, stale) for f in config.families)
            )
        )
    if config.hostname:
        caps.append(Hostname(config.hostname))
    return Open.build(config.local_as, config.hold_time, config.local_id, tuple(caps))


C = TypeVar("C", bound=Capability)


def check_open(config: SessionConfig, peer: Open) -> None:
    """The configuration-dependent OPEN checks (RFC 4271 §6.2, RFC 5492 §5, RFC 9234).

    With the 4-octet AS capability, My AS must be the same AS or AS_TRANS
    (RFC 6793 §4.1): an OPEN that names two different ASes is a Bad Peer AS.
    """
    four = peer.find(FourOctetAs)
    if four is not None and peer.my_as not in (four.asn, AS_TRANS):
        raise OpenMessageError(
            OpenSubcode.BAD_PEER_AS,
            b"",
            f"My AS {peer.my_as} contradicts the 4-octet AS capability's {four.asn}",
        )
    if config.peer_as is not None and peer.asn != config.peer_as:
        raise OpenMessageError(
            OpenSubcode.BAD_PEER_AS, b"", f"peer AS {peer.asn}, expected {config.peer_as}"
        )
    if peer.bgp_id == config.local_id and peer.asn == config.local_as:
        raise OpenMessageError(
            OpenSubcode.BAD_BGP_IDENTIFIER, b"", "iBGP peer uses our own BGP Identifier"
        )
    codes = {c.code for c in peer.capabilities}
    missing = [code for code in config.required_capabilities if code not in codes]
    if missing:
        data = b"".join(bytes((code, 0)) for code in missing)
        raise OpenMessageError(
            OpenSubcode.UNSUPPORTED_CAPABILITY, data, f"peer lacks capabilities {missing}"
        )
    if config.role is not None:
        theirs = peer.find(BgpRoleCapability)
        if theirs is None:
            if config.strict_role:
                raise OpenMessageError(
                    OpenSubcode.ROLE_MISMATCH, b"", "peer advertises no BGP role (strict mode)"
                )
        elif (config.role, theirs.role) not in _ROLE_PAIRS:
            raise OpenMessageError(
                OpenSubcode.ROLE_MISMATCH, b"", f"roles {config.role} and {theirs.role} disagree"
            )


def negotiate(config: SessionConfig, local: Open, peer: Open) -> Negotiated:
    """What both sides advertised (RFC 5492 §3); ``check_open`` must have passed."""
    ours, theirs = _by_kind(local), _by_kind(peer)

    def both(kind: type[Capability]) -> bool:
        return kind in ours and kind in theirs

    families = frozenset(
        {c.family for c in _all(ours, Multiprotocol)}
        & {c.family for c in _all(theirs, Multiprotocol)}
    )
    receive, send = _add_path(_all(ours, AddPath), _all(theirs, AddPath))
    hold = min(config.hold_time, peer.hold_time)
    keepalive = min(float(config.keepalive_time), hold / 3) if config.keepalive_time else hold / 3
    context = SessionContext(
        four_octet_as=both(FourOctetAs),
        add_path_receive=receive & families,
        add_path_send=send & families,
        extended_message=both(ExtendedMessage),
    )
    peer_gr = _first(theirs, GracefulRestart)
    local_gr = _first(ours, GracefulRestart)
    hostname = _first(theirs, Hostname)
    return Negotiated(
        local_open=local,
        peer_open=peer,
        peer_as=peer.asn,
        peer_id=peer.bgp_id,
        hold_time=hold,
        keepalive_time=keepalive,
        families=families,
        context=context,
        route_refresh=both(RouteRefreshCapability),
        enhanced_route_refresh=both(EnhancedRouteRefresh),
        peer_graceful_restart=peer_gr,
        graceful_notification=bool(
            peer_gr and local_gr and peer_gr.notification and local_gr.notification
        ),
        peer_hostname=hostname.hostname if hostname else None,
    )


def _by_kind(message: Open) -> dict[type[Capability], list[Capability]]:
    """The OPEN's capabilities by class, in wire order: one pass instead of a scan
    per capability asked about."""
    index: dict[type[Capability], list[Capability]] = {}
    for param in message.parameters:
        for cap in param:
            index.setdefault(type(cap), []).append(cap)
    return index


def _all(index: dict[type[Capability], list[Capability]], kind: type[C]) -> list[C]:
    return [c for c in index.get(kind, ()) if isinstance(c, kind)]


def _first(index: dict[type[Capability], list[Capability]], kind: type[C]) -> C | None:
    found = _all(index, kind)
    return found[0] if found else None


def _add_path(
    local: list[AddPath], peer: list[AddPath]
) -> tuple[frozenset[Family], frozenset[Family]]:
    """Families whose NLRI carry path ids from the peer (receive) and to it (send)."""
    ours = {f: m for cap in local for f, m in cap.entries}
    theirs = {f: m for cap in peer for f, m in cap.entries}
    receive = frozenset(
        {
            f
            for f, m in ours.items()
            if m & AddPathMode.RECEIVE and theirs.get(f, 0) & AddPathMode.SEND
        }
    )
    send = frozenset(
        {
            f
            for f, m in ours.items()
            if m & AddPathMode.SEND and theirs.get(f, 0) & AddPathMode.RECEIVE
        }
    )
    return receive, send
