"""The node agent's Prometheus metrics: the only importer of ``prometheus_client``.

Theory of operation.  Nothing here counts anything.  ``StatusCollector`` is a
custom collector: at every scrape it asks the agent's ``StatusSource`` for
``status()``, ``counters()`` and ``readiness()`` and turns those documents into
metric families, so a scrape shows the state of that moment and there is no
second copy of any figure to drift from the first.  The agent's counters are
totals since it started (or, for per-peer message counts, since the session
came up); Prometheus handles a counter that falls back to zero as a reset.

``make_registry`` gives a fresh ``CollectorRegistry`` (never the process-wide
default one, so tests and several agents in one process stay apart) holding
that collector plus prometheus_client's process, platform and garbage-collector
collectors.  ``exposition`` renders a registry in the format a scraper's
``Accept`` header asks for (the classic text format by default).

Metrics (labels in braces)::

    bgpd_info{node,role,router_id,as_number}      1
    bgpd_ready                                    1 ready, 0 not
    bgpd_bgp_sessions{state}                      peers per BGP FSM state, every state listed
    bgpd_bgp_peer_up{peer,name,peer_type}         1 when Established
    bgpd_bgp_messages_received_total{...}         and _sent_total
    bgpd_bgp_updates_received_total{...}          and _sent_total
    bgpd_bgp_prefixes_received{...}               and _sent (gauges)
    bgpd_rib_routes{family}                       Loc-RIB routes
    bgpd_fib_operations_total, bgpd_fib_failures_total
    bgpd_datastore_changes_total, bgpd_datastore_lag_seconds
    bgpd_reconfigurations_total

``peer`` is the peer's address, ``name`` Calico's protocol name (unique even
when two peers share an address on different ports), ``peer_type`` the
CalicoNodeStatus peer type (NodeMesh, NodePeer, GlobalPeer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .status import StatusSource

__all__ = [
    "CollectorRegistry",
    "PolicyCollector",
    "PolicySource",
    "StatusCollector",
    "exposition",
    "make_policy_registry",
    "make_registry",
]

#: RFC 4271 §8.2.2's states, in the order of the FSM: every one is reported, zeros included.
BGP_STATES = ("Idle", "Connect", "Active", "OpenSent", "OpenConfirm", "Established")
#: The contract's peer types (calicoctl's words) -> CalicoNodeStatus's BGPPeerType.
PEER_TYPES = {
    "node-to-node mesh": "NodeMesh",
    "node specific": "NodePeer",
    "global": "GlobalPeer",
}
FAMILIES = ("ipv4", "ipv6")
_PEER_LABELS = ["peer", "name", "peer_type"]
#: (metric name, help, the peer document's field) for per-peer counters and gauges.
_PEER_COUNTERS = (
    ("bgpd_bgp_messages_received", "BGP messages received from the peer", "messages_received"),
    ("bgpd_bgp_messages_sent", "BGP messages sent to the peer", "messages_sent"),
    ("bgpd_bgp_updates_received", "BGP UPDATE messages received from the peer", "updates_received"),
    ("bgpd_bgp_updates_sent", "BGP UPDATE messages sent to the peer", "updates_sent"),
)
_PEER_GAUGES = (
    ("bgpd_bgp_prefixes_received", "Prefixes the peer announces to us now", "prefixes_received"),
    ("bgpd_bgp_prefixes_sent", "Prefixes we announce to the peer now", "prefixes_sent"),
)
#: (metric name, help, the counters document's field).
_AGENT_COUNTERS = (
    ("bgpd_fib_operations", "Routes written to or removed from the kernel FIB", "fib_operations"),
    ("bgpd_fib_failures", "Kernel FIB operations that failed", "fib_failures"),
    ("bgpd_datastore_changes", "Datastore changes applied since start", "datastore_changes"),
    ("bgpd_reconfigurations", "Speaker reconfigurations applied since start", "reconfigurations"),
)


def _number(value: Any) -> float:
    """A document's figure as a sample value (a missing one counts as 0)."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    return 0.0


class StatusCollector(Collector):
    """Metric families read from ``source`` at each scrape (no state of its own)."""

    def __init__(self, source: StatusSource) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        status = self.source.status()
        counters = self.source.counters()
        ready, _reason = self.source.readiness()
        yield from self._agent(status, ready)
        yield from self._peers(status.get("peers") or [])
        yield from self._counters(counters)

    def _agent(self, status: dict[str, Any], ready: bool) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "bgpd_info", "The node agent's identity (always 1)",
            labels=["node", "role", "router_id", "as_number"],
        )  # fmt: skip
        info.add_metric(
            [
                str(status.get("node") or ""),
                str(status.get("role") or ""),
                str(status.get("router_id") or ""),
                str(status.get("as_number") or ""),
            ],
            1.0,
        )
        yield info
        readiness = GaugeMetricFamily("bgpd_ready", "1 when the agent reports ready (/readyz)")
        readiness.add_metric([], 1.0 if ready else 0.0)
        yield readiness

    def _peers(self, peers: list[dict[str, Any]]) -> Iterator[Metric]:
        by_state = dict.fromkeys(BGP_STATES, 0)
        for peer in peers:
            state = str(peer.get("bgp_state") or "Idle")
            by_state[state] = by_state.get(state, 0) + 1
        sessions = GaugeMetricFamily(
            "bgpd_bgp_sessions", "BGP peers in each session state", labels=["state"]
        )
        for state, count in by_state.items():
            sessions.add_metric([state], count)
        yield sessions

        up = GaugeMetricFamily(
            "bgpd_bgp_peer_up", "1 when the session with the peer is Established",
            labels=_PEER_LABELS,
        )  # fmt: skip
        counter_families = [
            (CounterMetricFamily(name, text, labels=_PEER_LABELS), field)
            for name, text, field in _PEER_COUNTERS
        ]
        gauge_families = [
            (GaugeMetricFamily(name, text, labels=_PEER_LABELS), field)
            for name, text, field in _PEER_GAUGES
        ]
        for peer in peers:
            peer_type = str(peer.get("type") or "")
            labels = [
                str(peer.get("address") or ""),
                str(peer.get("name") or ""),
                PEER_TYPES.get(peer_type, peer_type),
            ]
            up.add_metric(labels, 1.0 if peer.get("bgp_state") == "Established" else 0.0)
            for counter, field in counter_families:
                counter.add_metric(labels, _number(peer.get(field)))
            for gauge, field in gauge_families:
                gauge.add_metric(labels, _number(peer.get(field)))
        yield up
        for family, _field in (*counter_families, *gauge_families):
            yield family

    def _counters(self, counters: dict[str, Any]) -> Iterator[Metric]:
        for name, text, field in _AGENT_COUNTERS:
            family = CounterMetricFamily(name, text)
            family.add_metric([], _number(counters.get(field)))
            yield family
        routes = GaugeMetricFamily("bgpd_rib_routes", "Routes in the Loc-RIB", labels=["family"])
        rib = counters.get("rib_routes") or {}
        for name in sorted({*FAMILIES, *rib}):
            routes.add_metric([name], _number(rib.get(name)))
        yield routes
        lag = GaugeMetricFamily(
            "bgpd_datastore_lag_seconds",
            "From a datastore change being written to the agent applying it (the last one)",
        )
        lag.add_metric([], _number(counters.get("datastore_lag_seconds")))
        yield lag


def make_registry(source: StatusSource) -> CollectorRegistry:
    """A fresh registry: the agent's metrics plus the process's own (CPU, memory, open
    files, start time, Python version, garbage collection)."""
    return _registry(StatusCollector(source))


def _registry(collector: Collector) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(collector)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


class PolicySource(Protocol):
    """What the policy agent (``bgpd policy``) shows: ``status()`` as its status
    file holds it, and ``counters()``: one document per policy rule
    (``namespace``, ``policy``, ``direction``, ``rule``, ``packets``, ``bytes``)
    and per direction of denials (``policy`` empty, ``rule`` "denied")."""

    def status(self) -> dict[str, Any]: ...

    def counters(self) -> list[dict[str, Any]]: ...


#: (metric name, help, the policy status field).
_POLICY_GAUGES = (
    ("bgpd_policy_policies", "NetworkPolicies in force", "policies"),
    ("bgpd_policy_pods", "Pods known (cluster-wide)", "pods"),
    ("bgpd_policy_endpoints", "This node's pod interfaces", "endpoints"),
    ("bgpd_policy_chains", "Chains in the policy table", "chains"),
    ("bgpd_policy_rules", "Rules in the policy table", "rules"),
    ("bgpd_policy_sets", "Named sets in the policy table", "sets"),
    ("bgpd_policy_revision", "Datastore revision enforced", "revision"),
    ("bgpd_policy_last_apply_seconds", "Time the last nft transaction took", "lastApplySeconds"),
)


class PolicyCollector(Collector):
    """The policy agent's metrics, read at each scrape::

        bgpd_policy_rule_packets_total{namespace,policy,direction,rule}   and _bytes_total
        bgpd_policy_denied_packets_total{direction}                       and _bytes_total
        bgpd_policy_refused_resources                                     bad resources ignored
        bgpd_policy_transactions_total, bgpd_policy_failures_total
        bgpd_policy_{policies,pods,endpoints,chains,rules,sets,revision,last_apply_seconds}
    """

    def __init__(self, source: PolicySource) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        status = self.source.status()
        for name, text, fld in _POLICY_GAUGES:
            gauge = GaugeMetricFamily(name, text)
            gauge.add_metric([], _number(status.get(fld)))
            yield gauge
        refused = GaugeMetricFamily(
            "bgpd_policy_refused_resources", "Invalid resources ignored (the last good one stays)"
        )
        refused.add_metric([], float(len(status.get("errors") or ())))
        yield refused
        for name, text, fld in (
            ("bgpd_policy_transactions", "nft transactions committed", "transactions"),
            ("bgpd_policy_failures", "nft transactions refused", "failures"),
        ):
            counter = CounterMetricFamily(name, text)
            counter.add_metric([], _number(status.get(fld)))
            yield counter
        labels = ["namespace", "policy", "direction", "rule"]
        packets = CounterMetricFamily("bgpd_policy_rule_packets",
                                      "Packets a policy rule allowed", labels=labels)  # fmt: skip
        octets = CounterMetricFamily("bgpd_policy_rule_bytes",
                                     "Bytes a policy rule allowed", labels=labels)  # fmt: skip
        denied_packets = CounterMetricFamily("bgpd_policy_denied_packets",
                                             "Packets dropped: no policy allowed them",
                                             labels=["direction"])  # fmt: skip
        denied_bytes = CounterMetricFamily("bgpd_policy_denied_bytes",
                                           "Bytes dropped: no policy allowed them",
                                           labels=["direction"])  # fmt: skip
        for c in self.source.counters():
            if c.get("rule") == "denied":
                denied_packets.add_metric([str(c["direction"])], _number(c.get("packets")))
                denied_bytes.add_metric([str(c["direction"])], _number(c.get("bytes")))
            else:
                values = [str(c.get(k, "")) for k in labels]
                packets.add_metric(values, _number(c.get("packets")))
                octets.add_metric(values, _number(c.get("bytes")))
        yield from (packets, octets, denied_packets, denied_bytes)


def make_policy_registry(source: PolicySource) -> CollectorRegistry:
    """A fresh registry: the policy agent's metrics plus the process's own."""
    return _registry(PolicyCollector(source))


def exposition(registry: CollectorRegistry, accept: str | None = None) -> tuple[bytes, str]:
    """The registry's samples and their content type, in the format ``accept`` (a
    scraper's Accept header) asks for: OpenMetrics or the Prometheus text format
    (version 0.0.4 when nothing is asked)."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
