"""What the node agent tells its operators: the contract between the agent, its
HTTP API (``api.py``), its Prometheus metrics (``metrics.py``) and ``bgpctl node
status``.

The agent implements ``StatusSource``; the API and the metrics only read it.
Every method returns plain JSON-ready values built at call time (nothing is
cached between calls), so a scrape or a request sees the state of that moment.

``status()``::

    {"node": "node1", "role": "node" | "reflector",
     "router_id": "198.18.0.1", "as_number": 64512, "cluster_id": null | "1.1.1.1",
     "address": {"ipv4": "198.18.0.1/24" | null, "ipv6": null | "fd00::1/64",
                 "method": "first-found" | "interface=eth.*" | "can-reach=..." |
                           "cidr=..." | "resource",
                 "reason": "human text: why this address was chosen"},
     "started": 1700000000.0,          # wall-clock seconds
     "synced": true,                   # the initial datastore sync is done
     "peers": [
       {"name": "Mesh_198_18_0_2",     # Calico's protocol name (Mesh_/Node_/Global_)
        "address": "198.18.0.2", "port": 179,
        "type": "node-to-node mesh" | "node specific" | "global",
        "as_number": 64512, "local_as_number": 64512,
        "state": "up" | "start",       # BIRD's protocol state: up when Established
        "bgp_state": "Established" | "Idle" | "Connect" | "Active" | "OpenSent" | "OpenConfirm",
        "since": 1700000000.0,         # wall-clock time of the last state change
        "info": "Established" | "Active  Socket: Connection refused" | ...,
        "client": false,               # a route-reflector client of ours
        "families": ["ipv4-unicast"],  # negotiated, empty when not Established
        "prefixes_received": 3, "prefixes_sent": 2,
        "messages_received": 10, "messages_sent": 12,
        "updates_received": 3, "updates_sent": 2,
        "last_error": null | "Hold timer expired (4/0)"}]}

``routes()``::

    {"rib": {"ipv4": [{"prefix": "10.65.1.0/26", "best": true,
                        "next_hops": ["198.18.0.2"], "from": "198.18.0.2" | "local",
                        "as_path": "", "local_pref": 100}], "ipv6": [...]},
     "fib": {"ipv4": [{"prefix": "10.65.1.0/26", "type": "unicast" | "blackhole",
                        "gateways": ["198.18.0.2"], "device": "eth0" | null,
                        "installed": true}], "ipv6": [...]}}

``ipam()``::

    {"blocks": [{"cidr": "10.65.0.0/26", "state": "confirmed", "announced": true}],
     "borrowed": ["10.65.1.7/32"],
     "tunnel": {"vxlan": {"address": "10.65.0.0", "mac": "..."} | null}}

``readiness()`` is ``(ready, reason)``: not ready until the initial sync is done,
nor while peers are configured and none is Established (the reason says which).

``counters()``::

    {"fib_operations": 120, "fib_failures": 0,
     "rib_routes": {"ipv4": 12, "ipv6": 0},
     "datastore_changes": 40,               # changes applied since start
     "datastore_lag_seconds": 0.004,        # change written -> applied, last one
     "reconfigurations": 5}
"""

from __future__ import annotations

from typing import Any, Protocol


class StatusSource(Protocol):
    """What the node agent exposes (see the module docstring for the shapes)."""

    def status(self) -> dict[str, Any]: ...

    def routes(self) -> dict[str, Any]: ...

    def ipam(self) -> dict[str, Any]: ...

    def readiness(self) -> tuple[bool, str]: ...

    def counters(self) -> dict[str, Any]: ...
