"""Route reflection (RFC 4456) with real peers, checked in their own CLIs.

- Our reflector with a BIRD 2 client, a GoBGP client and a BIRD 2 non-client:
  routes pass client to client with ORIGINATOR_ID and CLUSTER_LIST, reach the
  non-client, come from the non-client to the clients only, never return to
  their originator, and withdrawals follow.
- Our speaker as a client of a BIRD 2 reflector, with a GoBGP client beside it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from bgpd.messages import IPV4_UNICAST, prefix_from_text
from reflector import cluster_id_value
from tests.conftest import require_programs

from .conftest import SpeakerFactory
from .lab import OUR_AS, Bird, Gobgp, Lab, Link, gobgp_config, wait_for, wait_thread

pytestmark = pytest.mark.interop

CLUSTER = "244.0.0.1"
OUR_ID = "198.18.255.1"


def _bird_ibgp(
    link: Link, *, neighbor: str, port: int, routes: tuple[str, ...], igp: str = "", rr: str = ""
) -> str:
    """A BIRD 2 iBGP speaker in ``link.ns`` (router ID its address there)."""
    static = "".join(f"  route {r} blackhole;\n" for r in routes)
    return f"""
log stderr all;
router id {link.peer_v4};
protocol device {{}}
protocol direct {{ ipv4; }}
protocol static s4 {{ ipv4;
{static}}}
protocol static links {{ ipv4;
{igp}}}
protocol bgp ours {{
  local {link.peer_v4} as {OUR_AS};
  neighbor {neighbor} port {port} as {OUR_AS};
  hold time 9; connect delay time 1; connect retry time 2; error wait time 1, 2;
{rr}
  ipv4 {{ import all; export where proto = "s4"; next hop address {link.peer_v4}; }};
}}
"""


def _gobgp_path(gobgp: Gobgp, prefix: str) -> dict[str, Any] | None:
    """GoBGP's best path for ``prefix`` as JSON, or None."""
    res = gobgp.cli_result("global", "rib", "-a", "ipv4", prefix, "-j")
    if res.returncode != 0 or not res.stdout.strip():
        return None
    table = json.loads(res.stdout)
    for paths in table.values():
        for path in paths:
            if path.get("best", True):
                return dict(path)
    return None


def _attr(path: dict[str, Any], code: int) -> Any:
    for a in path.get("attrs", []):
        if a.get("type") == code:
            return a
    return None


def _bird_route(bird: Bird, prefix: str) -> str:
    return bird.cli("show", "route", prefix, "all")


@pytest.fixture
def peers_available() -> None:
    require_programs("bird", "birdc", package="bird2")
    require_programs("gobgpd", "gobgp", package="gobgpd")


@pytest.mark.usefixtures("peers_available")
async def test_our_reflector_with_bird_and_gobgp_clients(lab: Lab, speaker: SpeakerFactory) -> None:
    l_bird, l_gobgp, l_plain = lab.link(), lab.link(), lab.link()
    r_bird, r_gobgp, r_plain = (f"10.{n}.{lnk.subnet}.0/24" for n, lnk in
                                ((30, l_bird), (31, l_gobgp), (32, l_plain)))  # fmt: skip
    fast = {"hold_time": 9, "connect_delay": 0.5, "connect_retry": 1, "passive": True}
    app, rec = await speaker(
        [(l_bird.our_v4, 0), (l_gobgp.our_v4, 0), (l_plain.our_v4, 0)],
        [
            {"address": l_bird.peer_v4, "as": OUR_AS, "route_reflector_client": True, **fast},
            {"address": l_gobgp.peer_v4, "as": OUR_AS, "route_reflector_client": True, **fast},
            {"address": l_plain.peer_v4, "as": OUR_AS, **fast},  # a non-client
        ],
        cluster_id=CLUSTER,
    )
    ports = app.speaker.ports

    def igp(link: Link) -> str:
        """BIRD resolves iBGP next hops recursively: routes to the other links."""
        return "".join(
            f"  route 198.18.{other.subnet}.0/24 via {link.our_v4};\n"
            for other in (l_bird, l_gobgp, l_plain)
            if other is not link
        )

    bird = Bird(lab, l_bird.ns, "client")
    bird.start(
        _bird_ibgp(l_bird, neighbor=l_bird.our_v4, port=ports[0], routes=(r_bird,), igp=igp(l_bird))
    )
    plain = Bird(lab, l_plain.ns, "nonclient")
    plain.start(
        _bird_ibgp(
            l_plain, neighbor=l_plain.our_v4, port=ports[2], routes=(r_plain,), igp=igp(l_plain)
        )
    )
    gobgp = Gobgp(lab, l_gobgp.ns)
    gobgp.start(gobgp_config(l_gobgp, peer_as=OUR_AS, our_port=ports[1]))
    gobgp.cli("global", "rib", "-a", "ipv4", "add", r_gobgp, "nexthop", l_gobgp.peer_v4)

    await wait_for(lambda: len(rec.of("established")) == 3, 30, "three sessions")

    # Client to client, both ways, with the reflection attributes.
    await wait_thread(lambda: _gobgp_path(gobgp, r_bird) is not None, 20, "BIRD's route at GoBGP")
    path = _gobgp_path(gobgp, r_bird)
    assert path is not None
    assert _attr(path, 9)["value"] == l_bird.peer_v4  # ORIGINATOR_ID
    assert _attr(path, 10)["value"] == [CLUSTER]  # CLUSTER_LIST
    assert _attr(path, 3)["nexthop"] == l_bird.peer_v4  # kept across iBGP
    await wait_thread(lambda: r_gobgp in bird.routes(), 20, "GoBGP's route at BIRD")
    shown = _bird_route(bird, r_gobgp)
    assert f"BGP.originator_id: {l_gobgp.peer_v4}" in shown
    assert f"BGP.cluster_list: {CLUSTER}" in shown
    assert f"BGP.next_hop: {l_gobgp.peer_v4}" in shown

    # Clients to the non-client; the non-client's route to clients only.
    await wait_thread(lambda: r_bird in plain.routes(), 20, "a client's route at the non-client")
    await wait_thread(lambda: r_gobgp in plain.routes(), 20, "GoBGP's route at the non-client")
    await wait_thread(lambda: r_plain in bird.routes(), 20, "the non-client's route at BIRD")
    await wait_thread(lambda: _gobgp_path(gobgp, r_plain) is not None, 20, "... and at GoBGP")
    plain_path = _gobgp_path(gobgp, r_plain)
    assert plain_path is not None
    assert _attr(plain_path, 9)["value"] == l_plain.peer_v4

    # Nobody hears its own route back: BIRD's 10.30 only as its own static.
    assert r_bird not in bird.routes()
    assert r_plain not in plain.routes()
    local = _gobgp_path(gobgp, r_gobgp)
    assert local is not None and _attr(local, 9) is None  # its own, not reflected
    # Our Loc-RIB has all three, each once.
    loc = app.router.loc.tables[IPV4_UNICAST]
    for text in (r_bird, r_gobgp, r_plain):
        assert prefix_from_text(text)[1] in loc

    # A withdrawal at one client reaches the other client and the non-client.
    gobgp.cli("global", "rib", "-a", "ipv4", "del", r_gobgp)
    await wait_thread(lambda: r_gobgp not in bird.routes(), 20, "the withdrawal at BIRD")
    await wait_thread(lambda: r_gobgp not in plain.routes(), 20, "the withdrawal at the non-client")
    assert not rec.of("down"), rec.of("down")


@pytest.mark.usefixtures("peers_available")
async def test_our_client_under_a_bird_reflector(lab: Lab, speaker: SpeakerFactory) -> None:
    l_us = lab.link()  # root (us) <-> BIRD's namespace
    l_gobgp = lab.join(l_us.ns, lab.namespace())  # BIRD's namespace <-> GoBGP's
    ours = f"10.40.{l_us.subnet}.0/24"
    theirs = f"10.41.{l_gobgp.subnet}.0/24"
    app, rec = await speaker(
        [(l_us.our_v4, 0)],
        [{"address": l_us.peer_v4, "as": OUR_AS, "hold_time": 9, "passive": True}],
        routes=[{"prefix": ours}],
        router_id=OUR_ID,
    )
    bird = Bird(lab, l_us.ns, "reflector")
    bird.start(
        f"""
log stderr all;
router id {l_us.peer_v4};
protocol device {{}}
protocol direct {{ ipv4; }}
template bgp rrclient {{
  local as {OUR_AS};
  rr client; rr cluster id {CLUSTER};
  hold time 9; connect delay time 1; connect retry time 2; error wait time 1, 2;
  ipv4 {{ import all; export all; next hop keep; }};
}}
protocol bgp ours from rrclient {{
  neighbor {l_us.our_v4} port {app.speaker.ports[0]} as {OUR_AS};
}}
protocol bgp gobgp from rrclient {{ neighbor {l_gobgp.peer_v4} as {OUR_AS}; }}
"""
    )
    gobgp = Gobgp(lab, l_gobgp.ns)
    gobgp.start(gobgp_config(l_gobgp, peer_as=OUR_AS, our_port=179))
    gobgp.cli("global", "rib", "-a", "ipv4", "add", theirs, "nexthop", l_gobgp.peer_v4)

    await wait_for(lambda: bool(rec.of("established")), 30, "our session with BIRD")
    # Ours, reflected by BIRD to GoBGP.
    await wait_thread(lambda: _gobgp_path(gobgp, ours) is not None, 20, "our route at GoBGP")
    path = _gobgp_path(gobgp, ours)
    assert path is not None
    assert _attr(path, 9)["value"] == OUR_ID
    assert _attr(path, 10)["value"] == [CLUSTER]
    assert _attr(path, 3)["nexthop"] == l_us.our_v4
    # GoBGP's, reflected to us: in our Loc-RIB with the reflection attributes.
    key = prefix_from_text(theirs)[1]
    await wait_for(lambda: app.router.loc.best(IPV4_UNICAST, key) is not None, 20, "theirs at us")
    best = app.router.loc.best(IPV4_UNICAST, key)
    assert best is not None
    assert best.attributes.originator_id == int.from_bytes(
        bytes(map(int, l_gobgp.peer_v4.split(".")))
    )
    assert best.attributes.cluster_list == (cluster_id_value(CLUSTER),)
    # BIRD's copy of ours came from us directly, not reflected back to us.
    assert app.router.loc.best(IPV4_UNICAST, prefix_from_text(ours)[1]).source.local  # type: ignore[union-attr]
    received = {k[0] for k in app.peers[l_us.peer_v4].rib.routes(IPV4_UNICAST)}
    assert key in received and prefix_from_text(ours)[1] not in received
    assert not rec.of("down"), rec.of("down")
