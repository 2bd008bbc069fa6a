"""Sessions and routes both ways with BIRD 2 and GoBGP: iBGP and eBGP, over IPv4
and IPv6 transport, IPv4 and IPv6 unicast, checked in the peer's own CLI."""

from __future__ import annotations

import pytest

from bgpd.messages import IPV4_UNICAST, IPV6_UNICAST
from tests.conftest import require_programs

from .conftest import SpeakerFactory
from .lab import OUR_AS, PEER_AS, Bird, Gobgp, Lab, bird_config, gobgp_config, wait_for, wait_thread

pytestmark = pytest.mark.interop

CASES = [
    (daemon, kind, transport)
    for daemon in ("bird", "gobgp")
    for kind in ("ebgp", "ibgp")
    for transport in ("ipv4", "ipv6")
]


def _prefixes(subnet: int) -> dict[str, str]:
    return {
        "ours4": f"10.9.{subnet}.0/24",
        "ours6": f"2001:db8:9:{subnet:x}::/64",
        "peer4": f"10.20.{subnet}.0/24",
        "peer6": f"2001:db8:20:{subnet:x}::/64",
    }


@pytest.mark.parametrize(("daemon", "kind", "transport"), CASES)
async def test_routes_both_ways(
    lab: Lab, speaker: SpeakerFactory, daemon: str, kind: str, transport: str
) -> None:
    require_programs(
        *(("bird", "birdc") if daemon == "bird" else ("gobgpd", "gobgp")),
        package="bird2" if daemon == "bird" else "gobgpd",
    )
    link = lab.link()
    v6 = transport == "ipv6"
    peer_as = OUR_AS if kind == "ibgp" else PEER_AS
    p = _prefixes(link.subnet)
    app, rec = await speaker(
        [(link.our_v6 if v6 else link.our_v4, 0)],
        [
            {
                "address": link.peer_v6 if v6 else link.peer_v4,
                "as": peer_as,
                "families": ["ipv4-unicast", "ipv6-unicast"],
                "hold_time": 9,
                "connect_delay": 0.5,
                "connect_retry": 1,
                "next_hop": {"ipv4-unicast": link.our_v4, "ipv6-unicast": link.our_v6},
            }
        ],
        routes=[{"prefix": p["ours4"]}, {"prefix": p["ours6"]}],
    )
    port = app.speaker.ports[0]
    peer_address = link.peer_v6 if v6 else link.peer_v4
    if daemon == "bird":
        bird = Bird(lab, link.ns, "peer")
        bird.start(
            bird_config(
                link,
                peer_as=peer_as,
                our_port=port,
                v6_transport=v6,
                routes4=(p["peer4"],),
                routes6=(p["peer6"],),
            )
        )

        def peer_has(prefix: str) -> bool:
            return prefix in bird.cli("show", "route", "protocol", "ours", "all")

    else:
        gobgp = Gobgp(lab, link.ns)
        gobgp.start(gobgp_config(link, peer_as=peer_as, our_port=port, v6_transport=v6))
        gobgp.cli("global", "rib", "-a", "ipv4", "add", p["peer4"], "nexthop", link.peer_v4)
        gobgp.cli("global", "rib", "-a", "ipv6", "add", p["peer6"], "nexthop", link.peer_v6)

        def peer_has(prefix: str) -> bool:
            family = "ipv6" if ":" in prefix else "ipv4"
            return prefix in gobgp.rib(family)

    await wait_for(lambda: bool(rec.of("established")), 20, "the session")
    est = rec.of("established")[0]
    assert est["families"] == ["ipv4-unicast", "ipv6-unicast"]
    assert est["peer_graceful_restart"]
    rib = app.peers[peer_address].rib

    def ours_has(family: object, text: str) -> bool:
        return any(r["prefix"] == text for r in rec.of("route")) and len(rib.routes(family)) > 0

    await wait_for(lambda: ours_has(IPV4_UNICAST, p["peer4"]), 15, f"{p['peer4']} from the peer")
    await wait_for(lambda: ours_has(IPV6_UNICAST, p["peer6"]), 15, f"{p['peer6']} from the peer")
    hops = {r["prefix"]: r["next_hop"] for r in rec.of("route")}
    assert hops[p["peer4"]] == link.peer_v4
    assert hops[p["peer6"]] == link.peer_v6
    await wait_thread(lambda: peer_has(p["ours4"]), 15, f"{daemon} to learn {p['ours4']}")
    await wait_thread(lambda: peer_has(p["ours6"]), 15, f"{daemon} to learn {p['ours6']}")
    assert not rec.of("down"), rec.of("down")
