"""The metrics collector: the exposition text parsed back with prometheus_client's
own parser, values and labels compared with the StatusSource's documents."""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bgpd.node.metrics import BGP_STATES, exposition, make_registry

from .test_api import COUNTERS, PEER_V4, PEER_V6, STATUS, FixedSource

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(body: bytes) -> tuple[dict[str, str], Samples]:
    """(family name -> type, (sample name, sorted labels) -> value) of an exposition."""
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return types, samples


def scrape(source: Any) -> tuple[dict[str, str], Samples]:
    """One scrape of a fresh registry over ``source``."""
    return parse(exposition(make_registry(source))[0])


def peer_labels(peer: dict[str, Any], peer_type: str) -> tuple[tuple[str, str], ...]:
    return (("name", peer["name"]), ("peer", peer["address"]), ("peer_type", peer_type))


V4 = peer_labels(PEER_V4, "NodeMesh")
V6 = peer_labels(PEER_V6, "GlobalPeer")


class MeshSource(FixedSource):
    """Three more peers, so that session states add up."""

    def __init__(self) -> None:
        super().__init__()
        self.peers = [
            PEER_V4,
            PEER_V6,
            {**PEER_V4, "name": "Node_198_18_0_9", "address": "198.18.0.9",
             "type": "node specific", "bgp_state": "Established", "messages_received": 7},
            {**PEER_V4, "name": "Mesh_198_18_0_3", "address": "198.18.0.3",
             "bgp_state": "OpenSent", "state": "start"},
        ]  # fmt: skip

    def status(self) -> dict[str, Any]:
        doc = super().status()
        doc["peers"] = json.loads(json.dumps(self.peers))
        return doc


def test_sessions_every_state_listed() -> None:
    types, samples = scrape(MeshSource())
    assert types["bgpd_bgp_sessions"] == "gauge"
    by_state = {
        dict(labels)["state"]: value
        for (name, labels), value in samples.items()
        if name == "bgpd_bgp_sessions"
    }
    assert by_state == {
        "Idle": 0, "Connect": 0, "Active": 1, "OpenSent": 1, "OpenConfirm": 0, "Established": 2,
    }  # fmt: skip
    assert set(BGP_STATES) == set(by_state)


def test_no_peers_still_lists_states() -> None:
    source = MeshSource()
    source.peers = []
    _types, samples = scrape(source)
    assert [v for (n, _l), v in samples.items() if n == "bgpd_bgp_sessions"] == [0.0] * 6
    assert not [n for (n, _l) in samples if n.startswith("bgpd_bgp_peer_up")]


def test_per_peer() -> None:
    types, samples = scrape(FixedSource())
    assert samples[("bgpd_bgp_peer_up", V4)] == 1
    assert samples[("bgpd_bgp_peer_up", V6)] == 0
    for field in ("messages_received", "messages_sent", "updates_received", "updates_sent"):
        assert types[f"bgpd_bgp_{field}"] == "counter"
        assert samples[(f"bgpd_bgp_{field}_total", V4)] == PEER_V4[field]
        assert samples[(f"bgpd_bgp_{field}_total", V6)] == PEER_V6[field]
    for field in ("prefixes_received", "prefixes_sent"):
        assert types[f"bgpd_bgp_{field}"] == "gauge"
        assert samples[(f"bgpd_bgp_{field}", V4)] == PEER_V4[field]


def test_peer_types() -> None:
    _types, samples = scrape(MeshSource())
    types = {
        dict(labels)["peer"]: dict(labels)["peer_type"]
        for (name, labels) in samples
        if name == "bgpd_bgp_peer_up"
    }
    assert types == {
        "198.18.0.2": "NodeMesh", "fd00::2": "GlobalPeer",
        "198.18.0.9": "NodePeer", "198.18.0.3": "NodeMesh",
    }  # fmt: skip
    assert samples[("bgpd_bgp_messages_received_total", peer_labels(
        {"name": "Node_198_18_0_9", "address": "198.18.0.9"}, "NodePeer"))] == 7  # fmt: skip


def test_agent_counters() -> None:
    types, samples = scrape(FixedSource())
    for name, field in (
        ("bgpd_fib_operations", "fib_operations"),
        ("bgpd_fib_failures", "fib_failures"),
        ("bgpd_datastore_changes", "datastore_changes"),
        ("bgpd_reconfigurations", "reconfigurations"),
    ):
        assert types[name] == "counter"
        assert samples[(f"{name}_total", ())] == COUNTERS[field]
    assert types["bgpd_datastore_lag_seconds"] == "gauge"
    assert samples[("bgpd_datastore_lag_seconds", ())] == pytest.approx(0.004)
    assert samples[("bgpd_rib_routes", (("family", "ipv4"),))] == 12
    assert samples[("bgpd_rib_routes", (("family", "ipv6"),))] == 1


def test_ready_and_info() -> None:
    source = FixedSource()
    _types, samples = scrape(source)
    assert samples[("bgpd_ready", ())] == 1
    info = (
        ("as_number", "64512"), ("node", "node1"), ("role", "node"), ("router_id", "198.18.0.1"),
    )  # fmt: skip
    assert samples[("bgpd_info", info)] == 1
    source.ready = (False, "no peer Established")
    assert scrape(source)[1][("bgpd_ready", ())] == 0


def test_read_at_scrape_time() -> None:
    source = MeshSource()
    registry = make_registry(source)

    def up(peer: str) -> float:
        _types, samples = parse(exposition(registry)[0])
        return next(v for (n, labels), v in samples.items()
                    if n == "bgpd_bgp_peer_up" and dict(labels)["peer"] == peer)  # fmt: skip

    assert up("198.18.0.3") == 0
    source.peers[3] = {**source.peers[3], "bgp_state": "Established"}
    assert up("198.18.0.3") == 1


def test_process_figures_on_a_fresh_registry() -> None:
    types, samples = scrape(FixedSource())
    assert ("process_start_time_seconds", ()) in samples
    assert types["process_cpu_seconds"] == "counter"
    assert "python_info" in types
    # Two registries are independent (neither is the global one): no duplicate error.
    first, second = make_registry(FixedSource()), make_registry(FixedSource())
    assert first is not second
    assert b"bgpd_ready" in exposition(first)[0]


def test_missing_fields_count_as_zero() -> None:
    source = FixedSource()
    source.counters = lambda: {}  # type: ignore[method-assign]
    _types, samples = scrape(source)
    assert samples[("bgpd_fib_operations_total", ())] == 0
    assert samples[("bgpd_rib_routes", (("family", "ipv6"),))] == 0


def test_content_types() -> None:
    registry = make_registry(FixedSource())
    assert exposition(registry)[1] == "text/plain; version=0.0.4; charset=utf-8"
    body, content_type = exposition(registry, "application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert body.endswith(b"# EOF\n")


def test_source_error_propagates() -> None:
    source = FixedSource()
    source.failing = {"counters"}
    with pytest.raises(RuntimeError, match="counters is broken"):
        exposition(make_registry(source))


def test_status_document_unchanged() -> None:
    source = FixedSource()
    scrape(source)
    assert source.status() == STATUS
