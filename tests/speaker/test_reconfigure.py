"""Live reconfiguration of a running speaker (``StandaloneSpeaker.reconfigure``):
over real TCP on loopback, only the sessions a change concerns are reset."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bgpd.config_diff import diff
from bgpd.standalone import ConfigError, StandaloneSpeaker
from bgpd.standalone_config import parse_config

from .test_routing import FAST, best, until

AS = 65000
A, B, C = "127.0.0.21", "127.0.0.22", "127.0.0.23"


class Counted:
    """A speaker and how many times each of its peers reached Established."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.established: dict[str, int] = {}
        self.downs: dict[str, int] = {}
        self.app = StandaloneSpeaker(doc, on_event=self._event)

    def _event(self, event: str, record: dict[str, Any]) -> None:
        if event == "established":
            self.established[record["peer"]] = self.established.get(record["peer"], 0) + 1
        elif event == "down":
            self.downs[record["peer"]] = self.downs.get(record["peer"], 0) + 1


def doc(address: str, peers: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "local_as": AS,
        "router_id": address.replace("127.", "10."),
        "listen": [[address, 0]],
        "log_routes": False,
        "peers": [{**FAST, "local_address": address, "as": AS, **p} for p in peers],
        **extra,
    }


@pytest.fixture
async def trio() -> AsyncIterator[tuple[Counted, Counted, Counted]]:
    """B and C listen passively for A; A starts with B only."""
    b = Counted(doc(B, [{"address": A, "passive": True}]))
    c = Counted(doc(C, [{"address": A, "passive": True}]))
    await b.app.start()
    await c.app.start()
    a = Counted(doc(A, [{"address": B, "port": b.app.speaker.ports[0]}]))
    await a.app.start()
    try:
        yield a, b, c
    finally:
        for x in (a, b, c):
            await x.app.close()


def established(x: Counted, peer: str) -> bool:
    return x.established.get(peer, 0) >= 1


async def test_routes_and_peers_change_without_resetting_other_sessions(
    trio: tuple[Counted, Counted, Counted],
) -> None:
    a, b, c = trio
    await until(lambda: established(a, B) and established(b, A), "A-B up")
    new = copy.deepcopy(doc(A, [{"address": B, "port": b.app.speaker.ports[0]}]))
    new["routes"] = [{"prefix": "10.65.1.0/26", "blackhole": True}, {"prefix": "10.96.0.0/12"}]
    change = a.app.reconfigure(new)
    assert not change.restart and not change.removed and not change.added
    assert len(change.originated) == 2
    await until(lambda: best(b.app, "10.65.1.0/26") is not None, "announced to B")
    await until(lambda: best(b.app, "10.96.0.0/12") is not None, "second route to B")

    # A new peer: C comes up, B's session is left alone and C gets the table.
    new["peers"].append({**FAST, "local_address": A, "as": AS, "address": C,
                         "port": c.app.speaker.ports[0]})  # fmt: skip
    change = a.app.reconfigure(copy.deepcopy(new))
    assert [s.endpoint.peer_address for s in change.added] == [C]
    assert change.unchanged_peers == (B,)
    await until(lambda: best(c.app, "10.65.1.0/26") is not None, "table sent to the new peer")

    # One route withdrawn: both peers hear it, nobody is reset.
    new["routes"] = [{"prefix": "10.96.0.0/12"}]
    a.app.reconfigure(copy.deepcopy(new))
    await until(lambda: best(b.app, "10.65.1.0/26") is None, "withdrawn at B")
    await until(lambda: best(c.app, "10.65.1.0/26") is None, "withdrawn at C")
    assert a.established[B] == 1 and a.established[C] == 1
    assert a.downs == {}

    # A changed peer (another hold time) is reset alone.
    new["peers"][0]["hold_time"] = 30
    change = a.app.reconfigure(copy.deepcopy(new))
    assert change.removed == (B,) and [s.endpoint.peer_address for s in change.added] == [B]
    await until(lambda: a.established.get(B) == 2, "B re-established")
    assert a.established[C] == 1
    await until(lambda: best(b.app, "10.96.0.0/12") is not None, "B has the table again")

    # A peer removed: its session ends with Cease, its routes leave.
    new["peers"] = new["peers"][1:]
    change = a.app.reconfigure(copy.deepcopy(new))
    assert change.removed == (B,) and not change.added
    await until(lambda: best(b.app, "10.96.0.0/12") is None, "B dropped A's routes")
    assert B not in a.app.peers and a.established[C] == 1


async def test_a_bad_document_changes_nothing(trio: tuple[Counted, Counted, Counted]) -> None:
    a, b, _c = trio
    await until(lambda: established(a, B), "A-B up")
    before = a.app.config
    bad = doc(A, [{"address": B, "port": b.app.speaker.ports[0]}])
    bad["routes"] = [{"prefix": "10.65.1.0/33"}]
    with pytest.raises(ConfigError, match=r"routes\[0\]\.prefix"):
        a.app.reconfigure(bad)
    assert a.app.config is before
    assert a.downs == {}


def test_what_every_session_shares_needs_a_restart() -> None:
    old = parse_config(doc(A, [{"address": B}]))
    assert (
        "router ID"
        in diff(old, parse_config(doc(A, [{"address": B}], router_id="10.9.9.9"))).restart
    )
    assert (
        "cluster ID"
        in diff(old, parse_config(doc(A, [{"address": B}], cluster_id="1.1.1.1"))).restart
    )
    assert (
        "local AS" in diff(old, parse_config({**doc(A, [{"address": B}]), "local_as": 1})).restart
    )
    # Our restart flag differs after convergence: no reason to touch any session.
    again = diff(old, parse_config(doc(A, [{"address": B}], restarting=True)))
    assert again.empty


def test_kernel_changes_replan_and_devices() -> None:
    base = doc(A, [])
    k1 = {**base, "kernel": {"pools": [{"cidr": "10.65.0.0/16"}], "subnets": ["198.18.0.1/24"]}}
    k2 = copy.deepcopy(k1)
    k2["kernel"]["pools"][0]["vxlan_mode"] = "Always"
    k2["kernel"]["vxlan"] = {"local": "198.18.0.1", "address": "10.65.0.1"}
    change = diff(parse_config(k1), parse_config(k2))
    assert change.replan and change.devices and not change.restart
    k3 = copy.deepcopy(k1)
    k3["kernel"]["subnets"] = ["198.18.0.1/16"]
    change = diff(parse_config(k1), parse_config(k3))
    assert change.replan and not change.devices
    k4 = copy.deepcopy(k1)
    k4["kernel"]["table"] = 100
    assert "kernel table" in diff(parse_config(k1), parse_config(k4)).restart


async def test_an_export_policy_change_is_applied_without_a_reset(
    trio: tuple[Counted, Counted, Counted],
) -> None:
    a, b, _c = trio
    await until(lambda: established(a, B), "A-B up")
    new = doc(A, [{"address": B, "port": b.app.speaker.ports[0],
                   "export": [{"prefix": "10.96.0.0/12", "action": "reject"}]}])  # fmt: skip
    new["routes"] = [{"prefix": "10.96.0.0/12"}, {"prefix": "10.65.0.0/26"}]
    change = a.app.reconfigure(copy.deepcopy(new))
    assert [s.endpoint.peer_address for s in change.reexport] == [B]
    await until(lambda: best(b.app, "10.65.0.0/26") is not None, "the allowed route")
    assert best(b.app, "10.96.0.0/12") is None
    # Now the other way round: one is withdrawn, the other announced.
    new["peers"][0]["export"] = [{"prefix": "10.65.0.0/26", "action": "reject"}]
    change = a.app.reconfigure(copy.deepcopy(new))
    assert not change.removed and not change.added
    await until(lambda: best(b.app, "10.96.0.0/12") is not None, "now allowed")
    await until(lambda: best(b.app, "10.65.0.0/26") is None, "now refused")
    assert a.established[B] == 1 and a.downs == {}
