"""Import checks (RFC 4271 §6.3, §9.1.2; RFC 4456 §8; RFC 6793; RFC 8212) and
export rules (§5.1, §9.2; RFC 1997; Calico's nextHopMode)."""

from __future__ import annotations

from bgpd.messages import (
    AS_TRANS,
    IPV4_UNICAST,
    IPV6_UNICAST,
    AsPath,
    PathAttributes,
    WellKnownCommunity,
    prefix_from_text,
)
from bgpd.messages.attributes import Aggregator
from bgpd.rib.adj_in import Route
from bgpd.rib.export import AdvertCache, Exporter, ExportTarget, NextHopMode
from bgpd.rib.importing import Importer, ImportRules
from bgpd.rib.path import Path, Source
from bgpd.rib.policy import ACCEPT_ALL, Policy, Rule, Verdict
from reflector import RouteReflector, cluster_id_value, is_client

US = 65000
PFX = prefix_from_text("10.1.0.0/16")[1]
HOP = bytes([10, 0, 0, 1])
OURS = bytes([10, 0, 0, 99])


def route(**attrs: object) -> Route:
    base: dict[str, object] = {"origin": 0, "as_path": AsPath(), "next_hop": HOP}
    base.update(attrs)
    return Route(PathAttributes(**base), HOP)  # type: ignore[arg-type]


def importer(peer_as: int = US, **rules: object) -> Importer:
    source = Source.peer("10.0.0.1", US, peer_as, 1)
    return Importer(source, ImportRules(local_id=99, **rules))  # type: ignore[arg-type]


# ------------------------------------------------------------------ import


def test_ebgp_route_must_start_with_the_peers_as() -> None:
    imp = importer(7, policy=ACCEPT_ALL)
    assert imp.admit(IPV4_UNICAST, PFX, route(as_path=AsPath.sequence(7, 8))) is not None
    assert imp.admit(IPV4_UNICAST, PFX, route(as_path=AsPath.sequence(8, 7))) is None
    assert imp.admit(IPV4_UNICAST, PFX, route(as_path=AsPath())) is None


def test_ebgp_drops_local_pref_originator_and_cluster_list() -> None:
    imp = importer(7, policy=ACCEPT_ALL)
    r = route(as_path=AsPath.sequence(7), local_pref=500, originator_id=5, cluster_list=(1,))
    path = imp.admit(IPV4_UNICAST, PFX, r)
    assert path is not None
    a = path.attributes
    assert (a.local_pref, a.originator_id, a.cluster_list) == (None, None, None)


def test_ibgp_keeps_local_pref() -> None:
    path = importer().admit(IPV4_UNICAST, PFX, route(local_pref=500))
    assert path is not None and path.attributes.local_pref == 500


def test_as_path_loop_and_allowed_local_as() -> None:
    looped = route(as_path=AsPath.sequence(7, US, 9))
    assert importer(7, policy=ACCEPT_ALL).admit(IPV4_UNICAST, PFX, looped) is None
    allowed = importer(7, policy=ACCEPT_ALL, allowed_local_as=1)
    assert allowed.admit(IPV4_UNICAST, PFX, looped) is not None
    twice = route(as_path=AsPath.sequence(7, US, US))
    assert allowed.admit(IPV4_UNICAST, PFX, twice) is None


def test_own_originator_id_and_cluster_id_loops() -> None:
    assert importer().admit(IPV4_UNICAST, PFX, route(originator_id=99)) is None
    rr = importer(reflection=RouteReflector(cluster_id_value("244.0.0.1")))
    assert rr.admit(IPV4_UNICAST, PFX, route(cluster_list=(cluster_id_value("244.0.0.1"),))) is None
    assert rr.admit(IPV4_UNICAST, PFX, route(cluster_list=(5,))) is not None


def test_rfc8212_needs_an_import_policy_for_ebgp_unless_switched_off() -> None:
    r = route(as_path=AsPath.sequence(7))
    assert importer(7).admit(IPV4_UNICAST, PFX, r) is None
    assert importer(7, require_ebgp_policy=False).admit(IPV4_UNICAST, PFX, r) is not None
    assert importer().admit(IPV4_UNICAST, PFX, route()) is not None  # iBGP needs none


def test_import_policy_rejects_and_modifies_and_shares_untouched_paths() -> None:
    policy = Policy((Rule(community=1, action=Verdict.REJECT), Rule(set_local_pref=120)))
    imp = importer(policy=policy)
    assert imp.admit(IPV4_UNICAST, PFX, route(communities=(1,))) is None
    r = route()
    a = imp.admit(IPV4_UNICAST, PFX, r)
    b = imp.admit(IPV4_UNICAST, prefix_from_text("10.2.0.0/16")[1], r)
    assert a is not None and b is not None and a.attributes.local_pref == 120
    assert a.attributes is b.attributes  # interned
    plain = importer(policy=ACCEPT_ALL)
    x = plain.admit(IPV4_UNICAST, PFX, r)
    y = plain.admit(IPV4_UNICAST, prefix_from_text("10.2.0.0/16")[1], r)
    assert x is y  # one Path per UPDATE when policy changes nothing


def test_as4_path_from_an_old_speaker_is_merged() -> None:
    imp = Importer(Source.peer("10.0.0.1", US, 7, 1), ImportRules(policy=ACCEPT_ALL), False)
    r = route(
        as_path=AsPath.sequence(7, AS_TRANS),
        as4_path=AsPath.sequence(400000),
        aggregator=Aggregator(AS_TRANS, 1),
        as4_aggregator=Aggregator(400000, 1),
    )
    path = imp.admit(IPV4_UNICAST, PFX, r)
    assert path is not None
    assert path.attributes.as_path == AsPath.sequence(7, 400000)
    assert path.attributes.aggregator == Aggregator(400000, 1)
    assert path.attributes.as4_path is None
    new = importer(7, policy=ACCEPT_ALL).admit(IPV4_UNICAST, PFX, r)
    assert new is not None and new.attributes.as4_path is None
    assert new.attributes.as_path == AsPath.sequence(7, AS_TRANS)


# ------------------------------------------------------------------ export


def learned(peer_as: int = US, name: str = "10.0.0.1", client: bool = False, **attrs: object):  # type: ignore[no-untyped-def]
    base: dict[str, object] = {"origin": 0, "as_path": AsPath.sequence(7), "next_hop": HOP}
    base.update(attrs)
    source = Source.peer(name, US, peer_as, 1, client)
    return Path(PathAttributes(**base), HOP, source)  # type: ignore[arg-type]


def target(peer_as: int = US, **kw: object) -> Exporter:
    base: dict[str, object] = {
        "next_hop_self": {IPV4_UNICAST: OURS, IPV6_UNICAST: b"\xfd" + b"\0" * 15}
    }
    base.update(kw)
    return Exporter(ExportTarget("10.0.0.2", US, peer_as, **base))  # type: ignore[arg-type]


def test_never_back_to_its_source() -> None:
    ex = Exporter(ExportTarget("10.0.0.1", US, 7, policy=ACCEPT_ALL))
    assert ex.advert(IPV4_UNICAST, PFX, learned(7)) is None


def test_ibgp_split_horizon_without_reflection() -> None:
    assert target().advert(IPV4_UNICAST, PFX, learned()) is None
    assert target().advert(IPV4_UNICAST, PFX, learned(7)) is not None


def test_well_known_communities() -> None:
    no_adv = learned(7, communities=(WellKnownCommunity.NO_ADVERTISE,))
    assert target().advert(IPV4_UNICAST, PFX, no_adv) is None
    no_exp = learned(7, communities=(WellKnownCommunity.NO_EXPORT,))
    assert target().advert(IPV4_UNICAST, PFX, no_exp) is not None
    assert target(8, policy=ACCEPT_ALL).advert(IPV4_UNICAST, PFX, no_exp) is None


def test_rfc8212_no_ebgp_export_without_policy() -> None:
    assert target(8).advert(IPV4_UNICAST, PFX, learned(7)) is None
    assert target(8, require_ebgp_policy=False).advert(IPV4_UNICAST, PFX, learned(7)) is not None


def test_ebgp_attributes_prepend_drop_and_next_hop_self() -> None:
    path = learned(US, local_pref=300, med=5, originator_id=3, cluster_list=(1,))
    ad = target(8, policy=ACCEPT_ALL).advert(IPV4_UNICAST, PFX, learned(7, med=5))
    assert ad is not None
    assert ad.attributes.as_path == AsPath.sequence(US, 7)
    assert ad.attributes.med is None and ad.attributes.local_pref is None
    assert ad.next_hop == OURS
    ad2 = target(8, policy=ACCEPT_ALL, reflection=RouteReflector(1), client=True).advert(
        IPV4_UNICAST, PFX, path
    )
    assert ad2 is not None and ad2.attributes.originator_id is None
    assert ad2.attributes.cluster_list is None


def test_ibgp_attributes_local_pref_and_next_hop_kept() -> None:
    ad = target().advert(IPV4_UNICAST, PFX, learned(7))
    assert ad is not None
    assert ad.attributes.local_pref == 100 and ad.next_hop == HOP
    assert ad.attributes.as_path == AsPath.sequence(7)


def test_next_hop_modes() -> None:
    ebgp_path = learned(7)
    assert (
        target(next_hop_mode=NextHopMode.SELF).advert(IPV4_UNICAST, PFX, ebgp_path).next_hop == OURS
    )  # type: ignore[union-attr]
    keep = target(8, policy=ACCEPT_ALL, next_hop_mode=NextHopMode.KEEP)
    assert keep.advert(IPV4_UNICAST, PFX, ebgp_path).next_hop == HOP  # type: ignore[union-attr]


def test_locally_originated_routes() -> None:
    mine = Path(PathAttributes(origin=0, med=10), b"", Source.origin(US, 99))
    ibgp = target().advert(IPV4_UNICAST, PFX, mine)
    assert ibgp is not None and ibgp.next_hop == OURS
    assert ibgp.attributes.as_path == AsPath() and ibgp.attributes.local_pref == 100
    ebgp = target(8, policy=ACCEPT_ALL).advert(IPV4_UNICAST, PFX, mine)
    assert ebgp is not None and ebgp.attributes.as_path == AsPath.sequence(US)
    assert ebgp.attributes.med == 10  # our own MED may go to a neighbour AS


def test_export_policy_sees_whether_the_route_came_from_bgp() -> None:
    only_local = Policy((Rule(from_bgp=True, action=Verdict.REJECT),))
    ex = target(8, policy=only_local)
    assert ex.advert(IPV4_UNICAST, PFX, learned(7)) is None
    mine = Path(PathAttributes(origin=0), b"", Source.origin(US, 99))
    assert ex.advert(IPV4_UNICAST, PFX, mine) is not None


# -------------------------------------------------------------- reflection


def test_reflection_rules_client_and_non_client() -> None:
    rr = RouteReflector(cluster_id_value("244.0.0.1"))
    from_client = learned(name="10.0.0.5", client=True)
    from_other = learned(name="10.0.0.6")
    to_client = target(reflection=rr, client=True)
    to_other = target(reflection=rr)
    assert to_client.advert(IPV4_UNICAST, PFX, from_client) is not None
    assert to_other.advert(IPV4_UNICAST, PFX, from_client) is not None
    assert to_client.advert(IPV4_UNICAST, PFX, from_other) is not None
    assert to_other.advert(IPV4_UNICAST, PFX, from_other) is None


def test_reflected_attributes() -> None:
    rr = RouteReflector(cluster_id_value("244.0.0.1"))
    ad = target(reflection=rr).advert(IPV4_UNICAST, PFX, learned(client=True))
    assert ad is not None
    assert ad.attributes.originator_id == 1  # the client's router ID
    assert ad.attributes.cluster_list == (cluster_id_value("244.0.0.1"),)
    again = learned(client=True, originator_id=42, cluster_list=(5,))
    ad2 = target(reflection=rr).advert(IPV4_UNICAST, PFX, again)
    assert ad2 is not None and ad2.attributes.originator_id == 42
    assert ad2.attributes.cluster_list == (cluster_id_value("244.0.0.1"), 5)


def test_calico_client_rule() -> None:
    assert is_client("244.0.0.1", None, True)
    assert is_client("244.0.0.1", "244.0.0.2", True)
    assert not is_client("244.0.0.1", "244.0.0.1", True)  # the redundant pair
    assert not is_client("244.0.0.1", None, False)  # eBGP
    assert not is_client(None, None, True)  # not a reflector


def test_peers_of_one_kind_share_one_advert_and_other_kinds_do_not() -> None:
    cache = AdvertCache()
    rr = RouteReflector(cluster_id_value("244.0.0.1"))
    hops = {IPV4_UNICAST: OURS}

    def client(name: str) -> Exporter:
        return Exporter(
            ExportTarget(name, US, US, hops, client=True, reflection=rr, policy=ACCEPT_ALL), cache
        )

    a, b = client("10.0.0.2"), client("10.0.0.3")
    path = learned(US, client=True, med=5)
    first = a.advert(IPV4_UNICAST, PFX, path)
    assert first is not None and first is b.advert(IPV4_UNICAST, PFX, path)
    assert first.attributes.originator_id == 1 and first.attributes.cluster_list is not None
    # Another source of the same attributes is reflected with its own ORIGINATOR_ID.
    other = Path(path.attributes, HOP, Source.peer("10.0.0.9", US, US, 9, True))
    again = b.advert(IPV4_UNICAST, PFX, other)
    assert again is not None and again.attributes.originator_id == 9
    # An eBGP peer is another kind: our AS prepended, nothing of reflection.
    ebgp = Exporter(ExportTarget("10.0.0.4", US, 7, hops, policy=ACCEPT_ALL), cache)
    out = ebgp.advert(IPV4_UNICAST, PFX, path)
    assert out is not None and out is not first
    assert out.attributes.as_path == AsPath.sequence(US, 7) and out.attributes.cluster_list is None
