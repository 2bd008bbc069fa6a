"""hypothesis strategies for every message, capability and attribute."""

from __future__ import annotations

from hypothesis import strategies as st

from bgpd.messages import (
    AddPath,
    AddPathMode,
    Aggregator,
    AsPath,
    AsPathSegment,
    BgpRoleCapability,
    EnhancedRouteRefresh,
    ExtendedMessage,
    ExtendedNextHop,
    Family,
    FourOctetAs,
    GracefulRestart,
    Hostname,
    LargeCommunity,
    LongLivedGracefulRestart,
    MpReach,
    MpUnreach,
    Multiprotocol,
    Notification,
    Open,
    PathAttributes,
    RouteRefresh,
    RouteRefreshCapability,
    SessionContext,
    UnknownAttribute,
    UnknownCapability,
    Update,
)
from bgpd.messages.attributes import FIELD_OF_TYPE
from bgpd.messages.capabilities import CAPABILITY_DECODERS
from bgpd.messages.codes import IPV4_UNICAST, IPV6_UNICAST, PREFIX_FAMILIES

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
families = st.builds(Family, u16, u8)
prefix_families = st.sampled_from(sorted(PREFIX_FAMILIES))


@st.composite
def prefixes(draw: st.DrawFn, bits_max: int = 32) -> bytes:
    bits = draw(st.integers(0, bits_max))
    octets = (bits + 7) // 8
    raw = bytearray(draw(st.binary(min_size=octets, max_size=octets)))
    if bits % 8:
        raw[-1] &= (0xFF << (8 - bits % 8)) & 0xFF
    return bytes([bits]) + bytes(raw)


def prefix_list(bits_max: int, max_size: int = 20) -> st.SearchStrategy[tuple[bytes, ...]]:
    return st.lists(prefixes(bits_max), max_size=max_size).map(tuple)


capabilities = st.one_of(
    st.builds(Multiprotocol, families),
    st.just(RouteRefreshCapability()),
    st.just(EnhancedRouteRefresh()),
    st.just(ExtendedMessage()),
    st.builds(
        ExtendedNextHop,
        st.lists(st.tuples(st.builds(Family, u16, u16), u16), max_size=5).map(tuple),
    ),
    st.builds(BgpRoleCapability, u8),
    st.builds(
        GracefulRestart,
        st.integers(0, 0xFFF),
        st.booleans(),
        st.booleans(),
        st.lists(st.tuples(families, st.booleans()), max_size=6).map(tuple),
        st.integers(0, 3),
    ),
    st.builds(FourOctetAs, u32),
    st.builds(
        AddPath,
        st.lists(st.tuples(families, st.sampled_from(list(AddPathMode))), max_size=6).map(tuple),
    ),
    st.builds(
        LongLivedGracefulRestart,
        st.lists(st.tuples(families, st.booleans(), st.integers(0, 0xFFFFFF)), max_size=6).map(
            tuple
        ),
    ),
    st.builds(
        Hostname,
        st.text(max_size=30).filter(lambda t: len(t.encode()) <= 255),
        st.text(max_size=30).filter(lambda t: len(t.encode()) <= 255),
    ),
    st.builds(
        UnknownCapability,
        u8.filter(lambda c: c not in CAPABILITY_DECODERS),
        st.binary(max_size=40),
    ),
)

opens = st.builds(
    Open,
    my_as=u16,
    hold_time=st.one_of(st.just(0), st.integers(3, 0xFFFF)),
    bgp_id=st.integers(1, 0xFFFFFFFF),
    parameters=st.lists(st.lists(capabilities, max_size=6).map(tuple), max_size=4).map(tuple),
    extended_parameters=st.booleans(),
)

segments = st.builds(
    AsPathSegment,
    st.integers(1, 4),
    st.lists(u32, min_size=1, max_size=10).map(tuple),
)
as_paths = st.lists(segments, max_size=4).map(lambda s: AsPath(tuple(s)))
as4_paths = st.lists(
    st.builds(AsPathSegment, st.integers(1, 2), st.lists(u32, min_size=1, max_size=10).map(tuple)),
    max_size=4,
).map(lambda s: AsPath(tuple(s)))
aggregators = st.builds(Aggregator, u32, u32)
next_hops = st.binary(min_size=4, max_size=4).filter(lambda b: b != bytes(4) and b[0] < 224)
unknown_attributes = st.lists(
    st.builds(
        UnknownAttribute,
        u8.filter(lambda t: t not in FIELD_OF_TYPE and t not in (14, 15)),
        st.just(0xE0),
        st.binary(max_size=300),
    ),
    max_size=3,
    unique_by=lambda u: u.type,
).map(lambda us: tuple(sorted(us, key=lambda u: u.type)))


def _maybe(strategy: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.one_of(st.none(), strategy)


path_attributes = st.builds(
    PathAttributes,
    origin=_maybe(st.integers(0, 2)),
    as_path=_maybe(as_paths),
    next_hop=_maybe(next_hops),
    med=_maybe(u32),
    local_pref=_maybe(u32),
    atomic_aggregate=st.booleans(),
    aggregator=_maybe(aggregators),
    communities=_maybe(st.lists(u32, min_size=1, max_size=8).map(tuple)),
    originator_id=_maybe(u32),
    cluster_list=_maybe(st.lists(u32, min_size=1, max_size=4).map(tuple)),
    extended_communities=_maybe(
        st.lists(st.binary(min_size=8, max_size=8), min_size=1, max_size=4).map(tuple)
    ),
    as4_path=_maybe(as4_paths),
    as4_aggregator=_maybe(aggregators),
    large_communities=_maybe(
        st.lists(st.builds(LargeCommunity, u32, u32, u32), min_size=1, max_size=4).map(tuple)
    ),
    otc=_maybe(u32),
    unknown=unknown_attributes,
)


@st.composite
def contexts(draw: st.DrawFn) -> SessionContext:
    fams = st.frozensets(st.sampled_from([IPV4_UNICAST, IPV6_UNICAST]))
    addpath = draw(fams)
    return SessionContext(
        four_octet_as=draw(st.booleans()),
        add_path_receive=addpath,
        add_path_send=addpath,
        extended_message=draw(st.booleans()),
    )


def _ids(draw: st.DrawFn, prefixes: tuple[bytes, ...], on: bool) -> tuple[int, ...]:
    return tuple(draw(u32) for _ in prefixes) if on else ()


@st.composite
def updates(draw: st.DrawFn, context: SessionContext) -> Update:
    """A valid UPDATE for ``context`` (mandatory attributes present when there is NLRI)."""
    v4_ids = IPV4_UNICAST in context.add_path_send
    withdrawn = draw(prefix_list(32))
    nlri = draw(prefix_list(32))
    attrs: PathAttributes = draw(path_attributes)
    reach = unreach = None
    if draw(st.booleans()):
        fam = draw(prefix_families)
        bits = 32 if fam.afi == 1 else 128
        nh_len = draw(st.sampled_from([4, 16, 32] if fam.afi == 1 else [16, 32]))
        p = draw(prefix_list(bits))
        reach = MpReach(
            fam,
            draw(st.binary(min_size=nh_len, max_size=nh_len)),
            p,
            _ids(draw, p, fam in context.add_path_send),
        )
    if draw(st.booleans()):
        fam = draw(prefix_families)
        p = draw(prefix_list(32 if fam.afi == 1 else 128))
        unreach = MpUnreach(fam, p, _ids(draw, p, fam in context.add_path_send))
    if draw(st.booleans()):
        fam = draw(families.filter(lambda f: f not in PREFIX_FAMILIES))
        reach = MpReach(fam, draw(st.binary(max_size=24)), unparsed=draw(st.binary(max_size=40)))
    if nlri or (reach is not None and (reach.nlri or reach.unparsed)):
        attrs = attrs.replace(
            origin=attrs.origin if attrs.origin is not None else 0,
            as_path=attrs.as_path or AsPath.sequence(65001),
            next_hop=attrs.next_hop if (attrs.next_hop or not nlri) else bytes([198, 18, 0, 1]),
        )
    if context.four_octet_as:
        attrs = attrs.replace(as4_path=None, as4_aggregator=None)  # RFC 6793 §4.1
    else:
        # AS4_PATH / AGGREGATOR only carry what 2 octets and AS4_* can express.
        attrs = attrs.replace(
            as_path=_two_octet(attrs.as_path),
            aggregator=(
                Aggregator(min(attrs.aggregator.asn, 0xFFFF), attrs.aggregator.address)
                if attrs.aggregator
                else None
            ),
        )
    return Update(
        withdrawn,
        attrs,
        nlri,
        reach,
        unreach,
        _ids(draw, withdrawn, v4_ids),
        _ids(draw, nlri, v4_ids),
    )


def _two_octet(path: AsPath | None) -> AsPath | None:
    if path is None:
        return None
    return AsPath(
        tuple(AsPathSegment(s.type, tuple(a & 0xFFFF for a in s.asns)) for s in path.segments)
    )


notifications = st.builds(Notification, u8, u8, st.binary(max_size=100))
route_refreshes = st.one_of(
    st.builds(RouteRefresh, families, st.sampled_from([0, 3, 200]), st.binary(max_size=20)),
    st.builds(RouteRefresh, families, st.sampled_from([1, 2])),
)
