"""Calico's resources and this node's IPAM state, rendered into the speaker's
configuration (no I/O): what confd's templates make of them for BIRD
(CALICO.md §1.2-1.8), as one document for ``StandaloneSpeaker``.

- **Global**: our AS (the Node's, else BGPConfiguration ``default``'s, else
  64512), router ID (the node's IPv4 address, or ``CALICO_ROUTER_ID``: an
  address or ``hash``), the listening port (``node.<name>`` config first) and
  address (``bindMode: NodeIP``), the cluster ID of a reflector node.  The
  speaker starts as a restarting one (BIRD's ``-R``): it keeps its kernel
  routes until its peers have sent their tables.
- **Peers** (§1.3-1.5): the full mesh unless turned off or this node is a
  reflector, over each address family the node has (``Mesh_``); BGPPeers that
  select this node (``Global_`` when they name no node, else ``Node_``), to a
  ``peerIP`` or to every node their ``peerSelector`` matches, and the reverse
  peerings Calico generates for the nodes selected that way.  A node-specific
  peering is dropped when a global one exists for the same address and port;
  our own address is never a peer.  Between two Calico nodes the one with the
  lower address text listens (``passive``) and the other connects, as Calico's
  template compares the strings.  On a reflector, every iBGP peer whose cluster
  ID differs from ours (or is empty) is a client.
- **Announcements** (§1.6, §1.8): the node's confirmed blocks (with their
  ``blackhole`` routes), the addresses it borrowed from other nodes' blocks,
  and the service ranges of BGPConfiguration (unless the node is labelled
  ``node.kubernetes.io/exclude-from-external-load-balancers=true``).
- **Export policy**, per peer, in Calico's order: the peer's BGPFilter export
  rules; reject pools with ``disableBGPExport``; add the communities of
  ``prefixAdvertisements``; our blocks exactly, never more specific routes
  inside them; our static routes; on a reflector, anything inside the
  LoadBalancer ranges; anything inside an enabled pool; reject the rest.
  Import: the peer's BGPFilter import rules, then accept.
- **Kernel** (§1.7): every pool with its encapsulation, the node's own subnets
  (CrossSubnet), the VXLAN device and the other nodes' VTEPs, the IPIP device,
  and the service ranges, which never reach the kernel.

Anything the render cannot honour (a missing secret, a large community) is
left out and named in ``Plan.warnings``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..resources.selector import parse_cached

DEFAULT_AS = 64512
DEFAULT_PORT = 179
EXCLUDE_LB_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
#: Calico's BIRD template: connect delay 2 s, connect retry 5 s, error wait 5-30 s.
TIMERS: dict[str, Any] = {"connect_delay": 2, "connect_retry": 5, "error_wait": [5, 30]}
FAMILY = {4: "ipv4-unicast", 6: "ipv6-unicast"}

Json = dict[str, Any]
Secrets = Callable[[str, str], "str | None"]


@dataclass
class Inputs:
    """Everything the render reads: stored resources as plain dicts (already
    valid: they were checked when written)."""

    node: str
    nodes: dict[str, Json]  # name -> Node object
    bgp_configs: dict[str, Json]  # name -> BGPConfiguration object
    bgp_peers: list[Json]
    pools: list[Json]
    filters: dict[str, Json]  # name -> BGPFilter object
    #: (cidr, affinity state) of the blocks affine to this node.
    blocks: list[tuple[str, str]] = field(default_factory=list)
    borrowed: list[str] = field(default_factory=list)
    secrets: Secrets = lambda name, key: None
    #: ``CALICO_ROUTER_ID``: None, an IPv4 address, or ``hash``.
    router_id_mode: str | None = None
    #: Program the kernel (a reflector on a master without pods may not).
    fib: bool = True
    restarting: bool = True


@dataclass(frozen=True)
class PeerInfo:
    """How operators see one peer (calicoctl node status, the status API)."""

    name: str
    kind: str  # Mesh, Node or Global
    type: str  # node-to-node mesh, node specific, global
    address: str
    port: int
    as_number: int
    node: str | None  # the Calico node behind the address, if any


@dataclass
class Plan:
    doc: Json
    peers: dict[str, PeerInfo]
    as_number: int
    router_id: str
    cluster_id: str | None
    log_severity: str
    ipv4: str | None
    ipv6: str | None
    warnings: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ small parts


def parse_as(value: object) -> int:
    """An AS number as Calico writes it: an integer or ``high.low`` (RFC 5396)."""
    if isinstance(value, int):
        return value
    text = str(value)
    if "." in text:
        high, low = text.split(".", 1)
        return int(high) << 16 | int(low)
    return int(text)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration_seconds(text: str) -> float:
    """A Go duration (``120s``, ``2m30s``, ``1h``) in seconds."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{text!r} is not a duration")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def hash_router_id(node: str) -> str:
    """CALICO_ROUTER_ID=hash: the first four octets of SHA-256 of the node name,
    the first octet lowered by 32 when above 223 (no class D or E IDs)."""
    octets = bytearray(hashlib.sha256(node.encode()).digest()[:4])
    if octets[0] > 223:
        octets[0] -= 32
    return str(ipaddress.IPv4Address(bytes(octets)))


def node_address(
    node: Json | None, version: int
) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface | None:
    bgp = ((node or {}).get("spec") or {}).get("bgp") or {}
    text = bgp.get("ipv4Address" if version == 4 else "ipv6Address")
    if not text:
        return None
    return ipaddress.ip_interface(text)


def _spec(obj: Json | None) -> Json:
    return dict((obj or {}).get("spec") or {})


def _labels(obj: Json | None) -> dict[str, str]:
    return dict(((obj or {}).get("metadata") or {}).get("labels") or {})


def _selects(selector: str | None, labels: Mapping[str, str]) -> bool:
    if not selector:
        return False
    return parse_cached(selector).matches(labels)


def _peer_name(kind: str, address: str, port: int | None) -> str:
    """Calico's protocol name: ``Mesh_10_0_0_2``, ``Global_10_0_0_9_port_1179``."""
    name = f"{kind}_{address.replace('.', '_').replace(':', '_')}"
    return f"{name}_port_{port}" if port else name


def split_peer_ip(text: str) -> tuple[str, int | None]:
    """``ip``, ``ip:port`` or ``[v6]:port``."""
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
        return str(ipaddress.ip_address(host.rstrip("]"))), int(port) if port else None
    if text.count(":") == 1:
        host, port = text.split(":")
        return str(ipaddress.ip_address(host)), int(port)
    return str(ipaddress.ip_address(text)), None


# ------------------------------------------------------------------ the render


class _Render:
    def __init__(self, inp: Inputs) -> None:
        self.inp = inp
        self.warnings: list[str] = []
        self.me = inp.nodes.get(inp.node)
        default = _spec(inp.bgp_configs.get("default"))
        mine = _spec(inp.bgp_configs.get(f"node.{inp.node}"))
        self.default, self.mine = default, mine
        self.global_as = parse_as(default.get("asNumber") or DEFAULT_AS)
        self.addr = {v: node_address(self.me, v) for v in (4, 6)}
        self.cluster_id: str | None = (_spec(self.me).get("bgp") or {}).get(
            "routeReflectorClusterID"
        ) or None
        self.as_number = self.node_as(self.me)
        self.labels = _labels(self.me)
        self._export: dict[int, list[Json]] = {}  # Calico's part, the same for every peer
        # Nodes by address, for peers named by peerIP that are Calico nodes.
        self.by_address: dict[str, str] = {}
        for name, obj in inp.nodes.items():
            for v in (4, 6):
                a = node_address(obj, v)
                if a is not None:
                    self.by_address[str(a.ip)] = name

    def node_as(self, node: Json | None) -> int:
        value = (_spec(node).get("bgp") or {}).get("asNumber")
        return parse_as(value) if value else self.global_as

    def node_port(self, name: str) -> int:
        own = _spec(self.inp.bgp_configs.get(f"node.{name}")).get("listenPort")
        return int(own or self.default.get("listenPort") or DEFAULT_PORT)

    def node_cluster(self, name: str) -> str:
        return str((_spec(self.inp.nodes.get(name)).get("bgp") or {}).get(
            "routeReflectorClusterID"
        ) or "")  # fmt: skip

    def secret(self, ref: Json | None, what: str) -> str | None:
        key_ref = (ref or {}).get("secretKeyRef")
        if not key_ref:
            return None
        value = self.inp.secrets(str(key_ref.get("name")), str(key_ref.get("key")))
        if value is None:
            self.warnings.append(
                f"{what}: secret {key_ref.get('name')}/{key_ref.get('key')} not found; "
                "the session runs without a password"
            )
        return value

    # -- peers

    def peers(self) -> tuple[list[Json], dict[str, PeerInfo]]:
        found: dict[tuple[str, int], tuple[Json, PeerInfo]] = {}
        for doc, info in [*self.mesh(), *self.explicit()]:
            key = (info.address, info.port)
            held = found.get(key)
            # A global peering wins over a node-specific one for the same address.
            if held is None or (held[1].kind == "Node" and info.kind == "Global"):
                found[key] = (doc, info)
        by_address: dict[str, tuple[Json, PeerInfo]] = {}
        for doc, info in found.values():
            if info.address in by_address:
                self.warnings.append(
                    f"peer {info.address}: more than one port configured; "
                    f"keeping {by_address[info.address][1].name}"
                )
                continue
            by_address[info.address] = (doc, info)
        docs = [d for d, _ in by_address.values()]
        return docs, {a: i for a, (_, i) in by_address.items()}

    def mesh(self) -> list[tuple[Json, PeerInfo]]:
        if self.cluster_id or self.default.get("nodeToNodeMeshEnabled", True) is False:
            return []
        out = []
        password = self.secret(self.default.get("nodeMeshPassword"), "nodeMeshPassword")
        restart = self.default.get("nodeMeshMaxRestartTime")
        for name, obj in sorted(self.inp.nodes.items()):
            if name == self.inp.node or self.node_cluster(name):
                continue
            for v in (4, 6):
                mine, theirs = self.addr[v], node_address(obj, v)
                if mine is None or theirs is None or mine.ip == theirs.ip:
                    continue
                address = str(theirs.ip)
                port = self.node_port(name)
                doc = self.session(
                    v, address, port, self.node_as(obj), passive=str(mine.ip) < address
                )
                if password:
                    doc["password"] = password
                if restart:
                    doc["restart_time"] = round(duration_seconds(str(restart)))
                info = PeerInfo(
                    _peer_name("Mesh", address, None), "Mesh", "node-to-node mesh",
                    address, port, doc["as"], name,
                )  # fmt: skip
                out.append((doc, info))
        return out

    def explicit(self) -> list[tuple[Json, PeerInfo]]:
        out, reverse = [], []
        me, labels = self.inp.node, self.labels
        for peer in self.inp.bgp_peers:
            spec = _spec(peer)
            name = str((peer.get("metadata") or {}).get("name", ""))
            is_global = not spec.get("node") and not spec.get("nodeSelector")
            local = (
                is_global or spec.get("node") == me or _selects(spec.get("nodeSelector"), labels)
            )
            if local:
                for target in self.targets(spec):
                    out += self.explicit_peer(spec, name, target, is_global)
            if spec.get("reversePeering") == "Manual":
                continue
            # The reverse side: we are a Calico node this peering points at.
            if self.targeted_by(spec):
                for source in self.sources(spec):
                    reverse += self.explicit_peer(spec, name, ("node", source, None), False, True)
        # Calico emits every forward peering before the reverse ones: the first
        # found for an address wins.
        return out + reverse

    def targets(self, spec: Json) -> list[tuple[str, str, int | None]]:
        """("ip", address, port) or ("node", name, None) for each far end."""
        if spec.get("peerIP"):
            address, port = split_peer_ip(str(spec["peerIP"]))
            return [("ip", address, port)]
        if spec.get("peerSelector"):
            return [
                ("node", n, None) for n, obj in sorted(self.inp.nodes.items())
                if n != self.inp.node and _selects(spec["peerSelector"], _labels(obj))
            ]  # fmt: skip
        return []

    def targeted_by(self, spec: Json) -> bool:
        if spec.get("peerSelector"):
            return _selects(spec["peerSelector"], self.labels)
        if spec.get("peerIP"):
            address, _port = split_peer_ip(str(spec["peerIP"]))
            return any(a is not None and str(a.ip) == address for a in self.addr.values())
        return False

    def sources(self, spec: Json) -> list[str]:
        """The nodes a peering is configured on (for its reverse side)."""
        names = []
        for n, obj in sorted(self.inp.nodes.items()):
            if n == self.inp.node:
                continue
            if spec.get("node"):
                ok = spec["node"] == n
            elif spec.get("nodeSelector"):
                ok = _selects(spec["nodeSelector"], _labels(obj))
            else:
                ok = True
            if ok:
                names.append(n)
        return names

    def explicit_peer(
        self,
        spec: Json,
        peer_name: str,
        target: tuple[str, str, int | None],
        is_global: bool,
        reverse: bool = False,
    ) -> list[tuple[Json, PeerInfo]]:
        """One session per address family the far end has (BIRD and BIRD6)."""
        kind_of, value, port = target
        node: str | None = None
        addresses: list[tuple[int, str]] = []
        if kind_of == "ip":
            v: int = ipaddress.ip_address(value).version
            addresses = [(v, value)]
            node = self.by_address.get(value)
        else:
            node = value
            obj = self.inp.nodes.get(value)
            for v in (4, 6):
                a = node_address(obj, v)
                if a is not None:
                    addresses.append((v, str(a.ip)))
        out = []
        for v, address in addresses:
            mine = self.addr[v]
            if mine is not None and str(mine.ip) == address:
                continue  # never a peer of ourselves
            if mine is None and spec.get("sourceAddress", "UseNodeIP") == "UseNodeIP":
                self.warnings.append(
                    f"BGPPeer {peer_name}: this node has no IPv{v} address for {address}"
                )
                continue
            out.append(self._explicit_doc(
                spec, peer_name, v, address,
                port=port, node=node, is_global=is_global, reverse=reverse,
            ))  # fmt: skip
        return out

    def _explicit_doc(
        self,
        spec: Json,
        peer_name: str,
        v: int,
        address: str,
        *,
        port: int | None,
        node: str | None,
        is_global: bool,
        reverse: bool,
    ) -> tuple[Json, PeerInfo]:
        if spec.get("asNumber") and not reverse:
            peer_as = parse_as(spec["asNumber"])
        elif node is not None:
            peer_as = self.node_as(self.inp.nodes.get(node))
        else:
            peer_as = self.global_as
        effective_port = port or (self.node_port(node) if node is not None else DEFAULT_PORT)
        local_as = parse_as(spec["localASNumber"]) if spec.get("localASNumber") else None
        mine = self.addr[v]
        # Calico's template: only a global peer that is a Calico node is passive
        # (the lower address text listens); node-specific peers both connect.
        passive = is_global and node is not None and mine is not None and str(mine.ip) < address
        source = spec.get("sourceAddress", "UseNodeIP") == "UseNodeIP"
        doc = self.session(v, address, effective_port, peer_as, passive=passive, source=source)
        if local_as is not None and not reverse:
            doc["local_as"] = local_as
        # Both ends of a peering share its password, GTSM and restart time, or
        # the session never comes up.
        password = self.secret(spec.get("password"), f"BGPPeer {peer_name}")
        if password:
            doc["password"] = password
        if spec.get("ttlSecurity"):
            doc["ttl_security"] = int(spec["ttlSecurity"])
        if spec.get("maxRestartTime"):
            doc["restart_time"] = round(duration_seconds(str(spec["maxRestartTime"])))
        if not reverse:
            if spec.get("numAllowedLocalASNumbers"):
                doc["allowed_local_as"] = int(spec["numAllowedLocalASNumbers"])
            mode = spec.get("nextHopMode")
            if mode in ("Self", "Keep"):
                doc["next_hop_mode"] = mode
            elif spec.get("keepOriginalNextHop") and peer_as != (local_as or self.as_number):
                doc["next_hop_mode"] = "Keep"
            filters = [str(f) for f in spec.get("filters") or []]
            doc["import"] = [*self.filter_rules(filters, "import", v), {"default": "accept"}]
            doc["export"] = self.export_rules(v, filters)
        if self.cluster_id and peer_as == (doc.get("local_as") or self.as_number):
            theirs = self.node_cluster(node) if node is not None else ""
            if theirs != self.cluster_id:
                doc["route_reflector_client"] = True
        kind = "Global" if is_global else "Node"
        shown_port = port if (kind == "Global" and port) else None
        info = PeerInfo(
            _peer_name(kind, address, shown_port), kind,
            "global" if is_global else "node specific", address, effective_port, peer_as, node,
        )  # fmt: skip
        return doc, info

    def session(
        self, v: int, address: str, port: int, peer_as: int, *, passive: bool, source: bool = True
    ) -> Json:
        doc: Json = {
            "address": address, "port": port, "as": peer_as, "families": [FAMILY[v]],
            "passive": passive, "graceful_restart": True, "restart_time": 120, **TIMERS,
        }  # fmt: skip
        mine = self.addr[v]
        if source and mine is not None:
            doc["local_address"] = str(mine.ip)
        if self.cluster_id and peer_as == self.as_number:
            doc["route_reflector_client"] = False
        doc["import"] = [{"default": "accept"}]
        doc["export"] = self.export_rules(v, [])
        return doc

    # -- policy

    def filter_rules(self, names: list[str], direction: str, v: int) -> list[Json]:
        rules: list[Json] = []
        for name in names:
            spec = _spec(self.inp.filters.get(name))
            if not spec and name not in self.inp.filters:
                self.warnings.append(f"BGPFilter {name} does not exist: skipped")
                continue
            for r in spec.get(f"{direction}V{v}") or []:
                rule: Json = {"family": FAMILY[v], "action": str(r["action"]).lower()}
                if r.get("cidr"):
                    rule["prefix"] = r["cidr"]
                    rule["operator"] = r.get("matchOperator", "In")
                    length = r.get("prefixLength") or {}
                    if length.get("min") is not None:
                        rule["min_length"] = int(length["min"])
                    if length.get("max") is not None:
                        rule["max_length"] = int(length["max"])
                if r.get("source"):
                    rule["source"] = r["source"]
                if r.get("interface"):
                    rule["interface"] = r["interface"]
                rules.append(rule)
        return rules

    def export_rules(self, v: int, filters: list[str]) -> list[Json]:
        calico = self._export.get(v)
        if calico is None:
            calico = self._export[v] = self._calico_export(v)
        return self.filter_rules(filters, "export", v) + calico

    def _calico_export(self, v: int) -> list[Json]:
        """calico_export_to_bgp_peers (CALICO.md §1.6), without the filters."""
        fam = FAMILY[v]
        rules: list[Json] = []
        pools = [p for p in self.inp.pools if ipaddress.ip_network(_spec(p)["cidr"]).version == v]
        for p in pools:
            if _spec(p).get("disableBGPExport"):
                rules.append({"family": fam, "prefix": _spec(p)["cidr"], "action": "reject"})
        rules += self.community_rules(v)
        for cidr, state in self.inp.blocks:
            if state == "confirmed" and ipaddress.ip_network(cidr).version == v:
                rules.append(
                    {"family": fam, "prefix": cidr, "operator": "Equal", "action": "accept"}
                )
                rules.append({"family": fam, "prefix": cidr, "operator": "In", "action": "reject"})
        for cidr in self.service_ranges():
            if ipaddress.ip_network(cidr).version == v:
                rules.append(
                    {"family": fam, "prefix": cidr, "operator": "Equal", "action": "accept"}
                )
        if self.cluster_id:
            for item in self.default.get("serviceLoadBalancerIPs") or []:
                if ipaddress.ip_network(item["cidr"], strict=False).version == v:
                    rules.append({"family": fam, "prefix": item["cidr"], "action": "accept"})
        for p in pools:
            if not _spec(p).get("disabled"):
                rules.append({"family": fam, "prefix": _spec(p)["cidr"], "action": "accept"})
        rules.append({"default": "reject"})
        return rules

    def community_rules(self, v: int) -> list[Json]:
        adverts = self.mine.get("prefixAdvertisements")
        if adverts is None:
            adverts = self.default.get("prefixAdvertisements") or []
        named = {c["name"]: c["value"] for c in self.default.get("communities") or []}
        rules: list[Json] = []
        for advert in adverts:
            cidr = advert["cidr"]
            if ipaddress.ip_network(cidr, strict=False).version != v:
                continue
            standard = []
            for c in advert.get("communities") or []:
                value = named.get(c, c)
                if value.count(":") == 1:
                    standard.append(value)
                else:
                    self.warnings.append(
                        f"prefixAdvertisements {cidr}: large community {value} not supported"
                    )
            if standard:
                rules.append({"family": FAMILY[v], "prefix": cidr, "add_communities": standard})
        return rules

    # -- announcements and kernel

    def service_ranges(self) -> list[str]:
        """Service CIDRs every node announces (CALICO.md §1.8)."""
        if self.labels.get(EXCLUDE_LB_LABEL) == "true":
            return []
        d = self.default
        out = [
            str(ipaddress.ip_network(i["cidr"], strict=False))
            for i in d.get("serviceClusterIPs") or []
        ]
        ranges = list(d.get("serviceExternalIPs") or [])
        if d.get("serviceLoadBalancerAggregation", "Enabled") == "Enabled":
            ranges += d.get("serviceLoadBalancerIPs") or []
        for item in ranges:
            net = ipaddress.ip_network(item["cidr"], strict=False)
            if net.prefixlen != net.max_prefixlen:
                out.append(str(net))
        return list(dict.fromkeys(out))

    def routes(self) -> list[Json]:
        routes: list[Json] = []
        for cidr, state in self.inp.blocks:
            if state != "confirmed":
                continue
            net = ipaddress.ip_network(cidr)
            # A /32 block has no blackhole (CALICO.md §1.6): its one address is a pod.
            routes.append({"prefix": cidr, "blackhole": net.prefixlen != net.max_prefixlen})
        routes += [{"prefix": a} for a in self.inp.borrowed]
        routes += [{"prefix": c} for c in self.service_ranges()]
        return routes

    def kernel(self) -> Json | None:
        if not self.inp.fib:
            return None
        pools = []
        vxlan_wanted = ipip_wanted = False
        for p in self.inp.pools:
            spec = _spec(p)
            ipip, vxlan = spec.get("ipipMode") or "Never", spec.get("vxlanMode") or "Never"
            pools.append({"cidr": spec["cidr"], "ipip_mode": ipip, "vxlan_mode": vxlan})
            if not spec.get("disabled") and _selects(
                spec.get("nodeSelector") or "all()", self.labels
            ):
                vxlan_wanted |= vxlan != "Never"
                ipip_wanted |= ipip != "Never"
        k: Json = {
            "pools": pools,
            "subnets": [str(a.network) for a in self.addr.values() if a is not None],
            "reject": self.service_ranges(),
        }
        mine = _spec(self.me)
        ipv4 = self.addr[4]
        if any(p["vxlan_mode"] != "Never" for p in pools):
            tunnel, mac = mine.get("ipv4VXLANTunnelAddr"), mine.get("vxlanTunnelMACAddr")
            if ipv4 is not None and tunnel and vxlan_wanted:
                k["vxlan"] = {
                    "local": str(ipv4.ip),
                    "address": tunnel,
                    **({"mac": mac} if mac else {}),
                }
            elif vxlan_wanted:
                self.warnings.append(
                    "VXLAN pools: this node has no IPv4 or VXLAN tunnel address yet"
                )
            vteps = []
            for name, obj in sorted(self.inp.nodes.items()):
                s, a = _spec(obj), node_address(obj, 4)
                if name == self.inp.node or a is None:
                    continue
                if s.get("ipv4VXLANTunnelAddr") and s.get("vxlanTunnelMACAddr"):
                    vteps.append({"node": str(a.ip), "address": s["ipv4VXLANTunnelAddr"],
                                  "mac": s["vxlanTunnelMACAddr"]})  # fmt: skip
            k["vteps"] = vteps
        if ipip_wanted:
            tunnel = mine.get("bgp", {}).get("ipv4IPIPTunnelAddr")
            k["ipip"] = {"address": tunnel} if tunnel else {}
        return k

    def router_id(self) -> str:
        mode = self.inp.router_id_mode
        if mode == "hash":
            return hash_router_id(self.inp.node)
        if mode:
            return str(ipaddress.IPv4Address(mode))
        if self.addr[4] is not None:
            return str(self.addr[4].ip)
        self.warnings.append("no IPv4 address: router ID from the node name's hash")
        return hash_router_id(self.inp.node)

    def listen(self) -> list[list[Any]]:
        port = self.node_port(self.inp.node)
        if self.default.get("bindMode") == "NodeIP":
            return [[str(a.ip), port] for a in self.addr.values() if a is not None]
        # One dual-stack socket takes IPv4 peers as mapped addresses.
        return [["::", port]]


def render(inp: Inputs) -> Plan:
    """The speaker's configuration for ``inp.node`` (CALICO.md §1)."""
    r = _Render(inp)
    peers, infos = r.peers()
    doc: Json = {
        "local_as": r.as_number,
        "router_id": r.router_id(),
        "listen": r.listen(),
        "restarting": inp.restarting,
        "log_routes": False,
        "require_ebgp_policy": False,  # every peer has Calico's explicit policy
        "multipath": True,
        "peers": peers,
        "routes": r.routes(),
    }
    if r.cluster_id:
        doc["cluster_id"] = r.cluster_id
    kernel = r.kernel()
    if kernel is not None:
        doc["kernel"] = kernel
    severity = r.mine.get("logSeverityScreen") or r.default.get("logSeverityScreen") or "Info"
    return Plan(
        doc=doc,
        peers=infos,
        as_number=r.as_number,
        router_id=doc["router_id"],
        cluster_id=r.cluster_id,
        log_severity=str(severity),
        ipv4=str(r.addr[4]) if r.addr[4] is not None else None,
        ipv6=str(r.addr[6]) if r.addr[6] is not None else None,
        warnings=r.warnings,
    )
