"""The standalone speaker's JSON configuration: checked, and turned into the
session, import, export and decision settings the RIB takes.

Every fault raises ``ConfigError`` naming the field (``peers[2].export[0].prefix``)
and the reason; nothing is half-applied because nothing runs before the whole
file has been read.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from reflector import RouteReflector, cluster_id_value

from .fsm import SessionConfig
from .fsm.driver import Endpoint
from .kernel.encap import Mode, Pool, Vtep, VxlanSpec
from .messages import IPV4_UNICAST, IPV6_UNICAST, Family, Prefix, prefix_from_text
from .rib import DecisionOptions, NextHopMode
from .rib.policy import ACCEPT_ALL, REJECT_ALL, Operator, Policy, PrefixMatch, Rule, Verdict

FAMILIES = {str(f): f for f in (IPV4_UNICAST, IPV6_UNICAST)}

T = TypeVar("T")


class ConfigError(ValueError):
    """A bad configuration file: names the field and the reason."""


@dataclass(frozen=True, slots=True)
class StaticRoute:
    family: Family
    prefix: Prefix
    next_hop: bytes | None
    #: One of the node's own blocks: also a ``blackhole`` in the kernel.
    blackhole: bool = False


@dataclass(frozen=True, slots=True)
class KernelConfig:
    """The ``kernel`` section: which table the best routes go to, and how."""

    table: int = 254
    protocol: int = 12
    metric: int = 0
    pools: list[Pool] = field(default_factory=list)
    subnets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(default_factory=list)
    vxlan: VxlanSpec | None = None
    ipip_address: bytes | None = None
    ipip: bool = False
    vteps: list[Vtep] = field(default_factory=list)
    #: Announced, never installed (service ranges).
    reject: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PeerSpec:
    endpoint: Endpoint
    config: SessionConfig
    next_hops: dict[Family, bytes] = field(default_factory=dict)
    import_policy: Policy | None = ACCEPT_ALL
    export_policy: Policy | None = ACCEPT_ALL
    next_hop_mode: NextHopMode = NextHopMode.AUTO
    client: bool = False
    allowed_local_as: int = 0


@dataclass(frozen=True, slots=True)
class Config:
    listen: list[tuple[str, int]]
    peers: list[PeerSpec]
    routes: list[StaticRoute]
    local_as: int
    router_id: int
    restarting: bool = False
    deferral_time: float = 60.0
    log_routes: bool = True
    log_states: bool = False
    require_ebgp_policy: bool = True
    decision: DecisionOptions = field(default_factory=DecisionOptions)
    reflector: RouteReflector | None = None
    kernel: KernelConfig | None = None


def _field(where: str, parse: Callable[..., T], *args: Any) -> T:
    """Run ``parse(*args)``; any fault it raises is reported against ``where``."""
    try:
        return parse(*args)
    except ConfigError:
        raise
    except KeyError as e:
        raise ConfigError(f"{where}: missing {e.args[0]}") from None
    except (ValueError, TypeError, AttributeError, IndexError) as e:
        raise ConfigError(f"{where}: {e}") from None


def _address_bytes(text: str, where: str) -> bytes:
    return _field(where, lambda: ipaddress.ip_address(text).packed)


def _family(name: str, where: str) -> Family:
    if name not in FAMILIES:
        raise ConfigError(f"{where}: unknown family {name!r} (one of {sorted(FAMILIES)})")
    return FAMILIES[name]


def _community(text: object, where: str) -> int:
    """``"65000:100"`` or a 32-bit integer (RFC 1997)."""
    if isinstance(text, int) and not isinstance(text, bool) and 0 <= text < 1 << 32:
        return text
    if isinstance(text, str) and text.count(":") == 1:
        high, low = (int(x) for x in text.split(":"))
        if 0 <= high < 65536 and 0 <= low < 65536:
            return high << 16 | low
    raise ConfigError(f"{where}: {text!r} is not a community (ASN:value, each 0-65535)")


def parse_policy(doc: object, where: str) -> Policy | None:
    """``"all"``, ``"none"``, null (no policy: RFC 8212 decides for eBGP), or a list
    of rules tried in order, with ``{"default": "reject"}`` as an optional last
    element.  A rule: ``{"prefix": "10.0.0.0/8", "operator": "In", "min_length":
    16, "max_length": 24, "family": "ipv4-unicast", "peers": ["198.18.0.2"],
    "community": "65000:1", "add_communities": ["65000:2"], "set_local_pref": 200,
    "source": "RemotePeers", "interface": "eth*", "action": "accept"}``; every key
    optional (an ``interface`` rule never matches a BGP route, as in BIRD)."""
    if doc is None:
        return None
    if doc == "all":
        return ACCEPT_ALL
    if doc == "none":
        return REJECT_ALL
    if not isinstance(doc, list):
        raise ConfigError(f'{where}: "all", "none", null or a list of rules, not {doc!r}')
    rules: list[Rule] = []
    default = Verdict.ACCEPT
    for i, r in enumerate(doc):
        at = f"{where}[{i}]"
        if not isinstance(r, dict):
            raise ConfigError(f"{at}: a rule is an object")
        if set(r) == {"default"}:
            default = _field(f"{at}.default", Verdict, r["default"])
            continue
        rules.append(_rule(r, at))
    return Policy(tuple(rules), default)


_RULE_KEYS = {
    "prefix",
    "operator",
    "min_length",
    "max_length",
    "family",
    "peers",
    "community",
    "add_communities",
    "set_local_pref",
    "action",
    "source",
    "interface",
}


def _rule(r: dict[str, Any], at: str) -> Rule:
    unknown = set(r) - _RULE_KEYS
    if unknown:
        raise ConfigError(f"{at}: unknown keys {sorted(unknown)}")
    match = None
    if "prefix" in r:
        _afi, cidr = _field(f"{at}.prefix", lambda: prefix_from_text(r["prefix"]))
        match = PrefixMatch(
            cidr,
            _field(f"{at}.operator", lambda: Operator(r.get("operator", "In"))),
            _field(f"{at}.min_length", lambda: _length(r.get("min_length"))),
            _field(f"{at}.max_length", lambda: _length(r.get("max_length"))),
        )
    elif "operator" in r or "min_length" in r or "max_length" in r:
        raise ConfigError(f"{at}: operator and lengths need a prefix")
    pref = r.get("set_local_pref")
    if pref is not None and not (isinstance(pref, int) and 0 <= pref < 1 << 32):
        raise ConfigError(f"{at}.set_local_pref: {pref!r} is not a 32-bit integer")
    peers = r.get("peers")
    source = r.get("source")
    if source not in (None, "RemotePeers"):
        raise ConfigError(f"{at}.source: {source!r} is not RemotePeers")
    interface = r.get("interface")
    if interface is not None and not isinstance(interface, str):
        raise ConfigError(f"{at}.interface: {interface!r} is not an interface name")
    return Rule(
        prefix=match,
        family=_family(r["family"], f"{at}.family") if "family" in r else None,
        peers=(
            frozenset(_field(f"{at}.peers", lambda: [str(ipaddress.ip_address(p)) for p in peers]))
            if peers is not None
            else None
        ),
        community=_community(r["community"], f"{at}.community") if "community" in r else None,
        add_communities=tuple(
            _community(c, f"{at}.add_communities[{j}]")
            for j, c in enumerate(r.get("add_communities", ()))
        ),
        set_local_pref=pref,
        from_bgp=True if source else None,
        interface=interface,
        action=_field(f"{at}.action", lambda: Verdict(r["action"])) if "action" in r else None,
    )


def _length(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or not 0 <= value <= 128:
        raise ValueError(f"{value!r} is not a prefix length")
    return value


def _peer(p: dict[str, Any], where: str, doc: dict[str, Any], local_as: int, rid: int) -> PeerSpec:
    address = _field(f"{where}.address", lambda: str(ipaddress.ip_address(p["address"])))
    families = tuple(_family(f, f"{where}.families") for f in p.get("families", ["ipv4-unicast"]))
    wait = p.get("error_wait", [5, 30])
    config = _field(
        where,
        lambda: SessionConfig(
            local_as=int(p.get("local_as") or local_as),
            peer_as=int(p["as"]) if p.get("as") is not None else None,
            local_id=rid,
            hold_time=int(p.get("hold_time", 240)),
            keepalive_time=p.get("keepalive_time"),
            connect_delay=float(p.get("connect_delay", 2)),
            connect_retry_time=float(p.get("connect_retry", 5)),
            error_wait_min=float(wait[0]),
            error_wait_max=float(wait[1]),
            passive=bool(p.get("passive", False)),
            families=families,
            graceful_restart=bool(p.get("graceful_restart", True)),
            restart_time=int(p.get("restart_time", 120)),
            restarting=bool(doc.get("restarting", False)),
            send_hold_time=p.get("send_hold_time"),
        ),
    )
    endpoint = _field(
        where,
        lambda: Endpoint(
            peer_address=address,
            peer_port=int(p.get("port", 179)),
            local_address=p.get("local_address"),
            password=p.get("password"),
            ttl_security=p.get("ttl_security"),
            multihop=p.get("multihop"),
        ),
    )
    next_hops = {
        _family(f, f"{where}.next_hop"): _address_bytes(a, f"{where}.next_hop.{f}")
        for f, a in p.get("next_hop", {}).items()
    }
    client = bool(p.get("route_reflector_client", False))
    if client and doc.get("cluster_id") is None:
        raise ConfigError(f"{where}.route_reflector_client: needs a cluster_id")
    if client and config.peer_as != config.local_as:
        raise ConfigError(f"{where}.route_reflector_client: only iBGP peers are clients")
    allowed = p.get("allowed_local_as", 0)
    if not isinstance(allowed, int) or not 0 <= allowed <= 255:
        raise ConfigError(f"{where}.allowed_local_as: {allowed!r} is not 0-255")
    return PeerSpec(
        endpoint,
        config,
        next_hops,
        parse_policy(p.get("import", "all"), f"{where}.import"),
        parse_policy(p.get("export", "all"), f"{where}.export"),
        _field(f"{where}.next_hop_mode", lambda: NextHopMode(p.get("next_hop_mode", "Auto"))),
        client,
        allowed,
    )


def parse_config(doc: dict[str, Any]) -> Config:
    """Check the file and build the parts; a fault names its field."""
    if not isinstance(doc, dict):
        raise ConfigError("the file must hold one JSON object")
    local_as = _field("local_as", lambda: int(doc["local_as"]))
    rid = _field("router_id", lambda: int(ipaddress.IPv4Address(doc["router_id"])))
    listen = _field(
        "listen",
        lambda: [(str(h), int(p)) for h, p in doc.get("listen", [["0.0.0.0", 179], ["::", 179]])],
    )
    peers = [
        _peer(p, f"peers[{i}]", doc, local_as, rid) for i, p in enumerate(doc.get("peers", []))
    ]
    seen: set[str] = set()
    for i, spec in enumerate(peers):
        if spec.endpoint.peer_address in seen:
            raise ConfigError(f"peers[{i}].address: {spec.endpoint.peer_address} twice")
        seen.add(spec.endpoint.peer_address)
    routes: list[StaticRoute] = []
    for i, r in enumerate(doc.get("routes", [])):
        where = f"routes[{i}]"
        afi, prefix = _field(f"{where}.prefix", prefix_from_text, r.get("prefix"))
        family = IPV4_UNICAST if afi == IPV4_UNICAST.afi else IPV6_UNICAST
        nh = r.get("next_hop")
        routes.append(
            StaticRoute(
                family,
                prefix,
                _address_bytes(nh, where) if nh else None,
                blackhole=bool(r.get("blackhole", False)),
            )
        )
    cluster = doc.get("cluster_id")
    reflector = None
    if cluster is not None:
        reflector = RouteReflector(_field("cluster_id", lambda: cluster_id_value(str(cluster))))
    decision = DecisionOptions(
        always_compare_med=bool(doc.get("always_compare_med", False)),
        # Calico's BIRD runs with "merge paths on".
        multipath=bool(doc.get("multipath", True)),
    )
    return Config(
        listen=listen,
        peers=peers,
        routes=routes,
        local_as=local_as,
        router_id=rid,
        restarting=bool(doc.get("restarting", False)),
        deferral_time=_field("deferral_time", lambda: float(doc.get("deferral_time", 60))),
        log_routes=bool(doc.get("log_routes", True)),
        # Off by default, as BIRD's "debug { states }": established and down
        # lines say what operators need; every transition is for debugging.
        log_states=bool(doc.get("log_states", False)),
        require_ebgp_policy=bool(doc.get("require_ebgp_policy", True)),
        decision=decision,
        reflector=reflector,
        kernel=_kernel(doc["kernel"]) if doc.get("kernel") is not None else None,
    )


def _mac(text: object) -> bytes:
    parts = str(text).split(":")
    if len(parts) != 6:
        raise ValueError(f"{text!r} is not a MAC address (six hex octets)")
    return bytes(int(x, 16) for x in parts)


def _range(value: object, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{value!r} is not an integer in {low}..{high}")
    return value


def _protocol(value: object) -> int:
    number = _range(value, 0, 255)
    if number <= 4:
        # We delete stale routes of our protocol: never the kernel's or others'.
        raise ValueError(f"{number} belongs to the kernel, boot or static routes (use 5..255)")
    return number


def _object(value: object) -> None:
    if not isinstance(value, dict):
        raise ValueError(f"must be an object, not {value!r}")


def _pool(p: dict[str, Any], where: str) -> Pool:
    _object(p)
    cidr = _field(f"{where}.cidr", lambda: ipaddress.ip_network(p["cidr"]))
    ipip = _field(f"{where}.ipip_mode", lambda: Mode(p.get("ipip_mode", "Never")))
    vxlan = _field(f"{where}.vxlan_mode", lambda: Mode(p.get("vxlan_mode", "Never")))
    return _field(where, Pool, cidr, ipip, vxlan)


def _vxlan(v: dict[str, Any]) -> VxlanSpec:
    _object(v)
    mac = v.get("mac")
    mtu = v.get("mtu")
    return VxlanSpec(
        local=_field("kernel.vxlan.local", lambda: ipaddress.IPv4Address(v["local"]).packed),
        address=_field("kernel.vxlan.address", lambda: ipaddress.IPv4Address(v["address"]).packed),
        mac=_field("kernel.vxlan.mac", _mac, mac) if mac is not None else None,
        vni=_field("kernel.vxlan.vni", _range, v.get("vni", 4096), 1, (1 << 24) - 1),
        port=_field("kernel.vxlan.port", _range, v.get("port", 4789), 1, 65535),
        mtu=_field("kernel.vxlan.mtu", _range, mtu, 68, 65535) if mtu is not None else None,
    )


def _vtep(v: dict[str, Any], where: str) -> Vtep:
    _object(v)
    return Vtep(
        _address_bytes(v.get("node", ""), f"{where}.node"),
        _field(f"{where}.address", lambda: ipaddress.IPv4Address(v["address"]).packed),
        _field(f"{where}.mac", _mac, v.get("mac")),
    )


def _kernel(k: dict[str, Any]) -> KernelConfig:
    """The ``kernel`` section (its fields are those of ``KernelConfig``)."""
    if not isinstance(k, dict):
        raise ConfigError("kernel: must be an object")
    pools = [
        _field(f"kernel.pools[{i}]", _pool, p, f"kernel.pools[{i}]")
        for i, p in enumerate(k.get("pools", []))
    ]
    subnets = [
        _field(f"kernel.subnets[{i}]", lambda t=t: ipaddress.ip_interface(t).network)
        for i, t in enumerate(k.get("subnets", []))
    ]
    vx = k.get("vxlan")
    vxlan = _field("kernel.vxlan", _vxlan, vx) if vx is not None else None
    # A VXLAN pool without our VTEP (not ours, or the tunnel address still to
    # come) is fine: its routes wait unplanned until the device exists.
    ip = k.get("ipip")
    address = None
    if ip is not None and not isinstance(ip, dict):
        raise ConfigError("kernel.ipip: must be an object")
    if ip is not None and ip.get("address") is not None:
        address = _field("kernel.ipip.address", lambda: ipaddress.IPv4Address(ip["address"]).packed)
    return KernelConfig(
        table=_field("kernel.table", _range, k.get("table", 254), 1, (1 << 32) - 1),
        protocol=_field("kernel.protocol", _protocol, k.get("protocol", 12)),
        metric=_field("kernel.metric", _range, k.get("metric", 0), 0, (1 << 32) - 1),
        pools=pools,
        subnets=subnets,
        vxlan=vxlan,
        ipip_address=address,
        ipip=ip is not None or any(p.ipip is not Mode.NEVER for p in pools),
        vteps=[
            _field(f"kernel.vteps[{i}]", _vtep, v, f"kernel.vteps[{i}]")
            for i, v in enumerate(k.get("vteps", []))
        ],
        reject=[
            _field(f"kernel.reject[{i}]", lambda t=t: ipaddress.ip_network(t))
            for i, t in enumerate(k.get("reject", []))
        ],
    )
