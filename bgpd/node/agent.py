"""The node agent: Calico's node-side BGP job, as one asyncio process.

At start it registers the node (``resources/nodes/<name>``: the address found
by autodetection, the cluster ID of a reflector), renders the resources into the
speaker's configuration (``render.py``) and starts the speaker as a restarting
one (Calico runs BIRD with ``-R``: kernel routes stay until the peers have sent
their tables).  Then it watches the datastore: every batch of changes to
resources or IPAM marks the configuration dirty, and one reconcile per loop pass
reads the state again, keeps the node's tunnel addresses right, renders, and
applies the difference live (``StandaloneSpeaker.reconfigure``: only the peers a
change concerns are reset).  A change to what every session shares (AS, router
ID, listening port, cluster ID) restarts the speaker.

The agent is the ``StatusSource`` of the HTTP API and the metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import logging
import os
import re
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..datastore.base import Conflict, DatastoreError
from ..datastore.local import api_socket_path
from ..datastore.presence import hold_presence
from ..datastore.select import StoreConfig
from ..ipam.allocator import AFFINITIES, BLOCKS, Ipam, IpamError, announcements, borrowed_by_block
from ..kernel.interfaces import InterfaceAddress, interface_addresses
from ..messages import IPV4_UNICAST, IPV6_UNICAST, prefix_to_text
from ..standalone import StandaloneSpeaker
from ..standalone_config import ConfigError
from .addresses import AutodetectError, Detected, detect
from .render import Inputs, Plan, render

if TYPE_CHECKING:
    from ..datastore.base import Change, Datastore

log = logging.getLogger(__name__)

NODES = "resources/nodes/"
WATCHED = (
    "resources/nodes/", "resources/bgpconfigurations/", "resources/bgppeers/",
    "resources/ippools/", "resources/bgpfilters/",
)  # fmt: skip
VXLAN_HANDLE = "vxlan-tunnel-addr-{}"
FAMILIES = {"ipv4": IPV4_UNICAST, "ipv6": IPV6_UNICAST}


@dataclass
class AgentOptions:
    state_dir: str
    node: str
    role: str = "node"  # or "reflector"
    fib: bool = True
    api_host: str = "127.0.0.1"
    api_port: int = 9179
    #: calico-node's IP / IP6: an address with its prefix length, "autodetect",
    #: "none", or None (keep the Node resource's, else autodetect).
    ip: str | None = None
    ip6: str | None = "none"
    ip_method: str | None = None
    ip6_method: str | None = None
    router_id: str | None = None  # CALICO_ROUTER_ID
    cluster_id: str | None = None  # `bgpd reflector --cluster-id`
    secrets_dir: str | None = None
    #: The datastore (``--datastore`` and friends); None: the state directory's.
    datastore: StoreConfig | None = None

    def open_store(self) -> Datastore:
        return (self.datastore or StoreConfig()).open(self.state_dir)

    @property
    def api_socket(self) -> str:
        return api_socket_path(self.state_dir, self.node)


@dataclass
class PeerTrack:
    since: float = field(default_factory=time.time)
    last_error: str | None = None


class NodeAgent:
    def __init__(self, options: AgentOptions, store: Datastore | None = None) -> None:
        self.options = options
        self.store: Datastore = store or options.open_store()
        self.started = time.time()
        self.synced = False
        self.plan: Plan | None = None
        self.speaker: StandaloneSpeaker | None = None
        self.detected: dict[int, Detected] = {}
        self.tracks: dict[str, PeerTrack] = {}
        self.changes = 0
        self.lag = 0.0
        self.reconfigurations = 0
        self.warnings: list[str] = []
        #: Keys of the blocks we borrowed addresses from, at the last render.
        self._lenders: set[str] = set()
        self._dirty = False
        self._scheduled = False
        self._woken = 0.0  # when the pending re-render was asked for (for the lag)
        self._restarting: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._api: Any = None
        self._presence = contextlib.AsyncExitStack()
        self.stopped = asyncio.Event()

    # ------------------------------------------------------------ life cycle

    async def start(self) -> None:
        since = self.store.revision()
        # pyroute2 runs an event loop of its own: in a thread.
        addresses = await asyncio.to_thread(interface_addresses)
        self.register_node(addresses)
        self._ensure_tunnels()
        plan = self._render(restarting=True)
        await self._start_speaker(plan)
        self.synced = True
        self._watch = asyncio.get_running_loop().create_task(self._follow(since))
        await self._start_api()
        await self._presence.enter_async_context(
            hold_presence(self.store, self.options.node, self.options.role)
        )

    async def close(self) -> None:
        with contextlib.suppress(DatastoreError):
            await self._presence.aclose()
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self._api is not None:
            await self._api.close()
        if self.speaker is not None:
            await self.speaker.close()  # routes stay in the kernel (Calico's persist)
        self.stopped.set()

    async def _start_api(self) -> None:
        from .api import ApiServer  # noqa: PLC0415 - aiohttp only where served

        o = self.options
        self._api = ApiServer(self, host=o.api_host, port=o.api_port, socket_path=o.api_socket)
        await self._api.start()

    async def _start_speaker(self, plan: Plan) -> None:
        doc = dict(plan.doc, log_states=True)
        speaker = StandaloneSpeaker(doc, on_event=self._event)
        self.speaker = speaker
        self.plan = plan
        await speaker.start()

    # ------------------------------------------------------------ registration

    def register_node(self, addresses: list[InterfaceAddress]) -> None:
        """Our Node resource: created when missing, its addresses and cluster ID
        kept current (calico-node's startup, CALICO.md §2.3)."""
        o = self.options
        for _ in range(100):
            record = self.store.get(NODES + o.node)
            node: dict[str, Any] = record.value if record is not None else {
                "apiVersion": "projectcalico.org/v3", "kind": "Node",
                "metadata": {"name": o.node}, "spec": {},
            }  # fmt: skip
            spec = node.setdefault("spec", {})
            bgp = dict(spec.get("bgp") or {})
            before = dict(bgp)
            for version, key, ip, method in (
                (4, "ipv4Address", o.ip, o.ip_method),
                (6, "ipv6Address", o.ip6, o.ip6_method),
            ):
                chosen = self._address(version, bgp.get(key), ip, method, addresses)
                if chosen is None:
                    bgp.pop(key, None)
                else:
                    bgp[key] = chosen.cidr
                    self.detected[version] = chosen
                    log.info("node IPv%d address %s: %s", version, chosen.cidr, chosen.reason)
            if o.cluster_id:
                bgp["routeReflectorClusterID"] = o.cluster_id
            if record is not None and bgp == before:
                return
            spec["bgp"] = bgp
            try:
                self.store.put(NODES + o.node, node, expect=record.revision if record else 0)
                return
            except Conflict:
                continue
        raise RuntimeError(f"cannot register node {o.node}: the Node resource keeps changing")

    def _address(
        self,
        version: int,
        stored: str | None,
        ip: str | None,
        method: str | None,
        addresses: list[InterfaceAddress],
    ) -> Detected | None:
        if ip == "none" or (version == 6 and ip is None and method is None):
            return Detected(stored, "resource", "from the Node resource") if stored else None
        if ip and ip != "autodetect":
            iface = ipaddress.ip_interface(ip)
            return Detected(str(iface), "environment", "given by IP/IP6 or --ip")
        if stored and ip is None and method is None:
            return Detected(stored, "resource", "from the Node resource")
        try:
            return detect(method or "first-found", version, addresses, _source_for)
        except AutodetectError as e:
            if version == 4:
                raise
            log.warning("no IPv6 address: %s", e)
            return None

    def _ensure_tunnels(self) -> None:
        """A VXLAN tunnel address and MAC while an enabled VXLAN pool selects this
        node (calico-node's allocateip; handle ``vxlan-tunnel-addr-<node>``)."""
        o = self.options
        if not o.fib:
            return
        record = self.store.get(NODES + o.node)
        if record is None:
            return
        node = record.value
        spec = node.get("spec") or {}
        labels = (node.get("metadata") or {}).get("labels") or {}
        ipam = Ipam(self.store, o.node, os.path.join(o.state_dir, "locks", f"ipam-{o.node}.lock"))
        pools = [p for p in ipam.eligible_pools(4, None, None, use="Tunnel")]
        wanted = [p for p in pools if p.vxlan_mode != "Never" and p.selects_node(labels)]
        have = spec.get("ipv4VXLANTunnelAddr")
        handle = VXLAN_HANDLE.format(o.node)
        if wanted and have and any(p.holds(4, int(ipaddress.IPv4Address(have))) for p in wanted):
            return
        if not wanted and not have:
            return
        ipam.release_handle(handle)
        address = None
        if wanted:
            try:
                got = ipam.auto_assign(
                    handle, {"type": "vxlanTunnelAddress"}, num4=1, num6=0,
                    pools4=[p.name for p in wanted], use="Tunnel",
                )  # fmt: skip
                address = got[0].address
            except IpamError as e:
                log.warning("no VXLAN tunnel address: %s", e)
        spec = dict(spec)
        if address is None:
            spec.pop("ipv4VXLANTunnelAddr", None)
            spec.pop("vxlanTunnelMACAddr", None)
        else:
            spec["ipv4VXLANTunnelAddr"] = address
            spec.setdefault("vxlanTunnelMACAddr", _mac_for(o.node))
        try:
            self.store.put(NODES + o.node, {**node, "spec": spec}, expect=record.revision)
            log.info("VXLAN tunnel address: %s", address)
        except Conflict:
            self._mark_dirty()  # read again on the next pass

    # ------------------------------------------------------------ rendering

    def _inputs(self, restarting: bool) -> Inputs:
        o, store = self.options, self.store

        def by_name(prefix: str) -> dict[str, dict[str, Any]]:
            return {r.key[len(prefix) :]: r.value for r in store.list(prefix)}

        blocks = [
            (r.value["cidr"], str(r.value.get("state") or "confirmed"))
            for r in store.list(f"{AFFINITIES}{o.node}/")
        ]
        lenders = borrowed_by_block(store, o.node)
        self._lenders = set(lenders)
        borrowed = [a for addresses in lenders.values() for a in addresses]
        return Inputs(
            node=o.node,
            nodes=by_name(NODES),
            bgp_configs=by_name("resources/bgpconfigurations/"),
            bgp_peers=list(by_name("resources/bgppeers/").values()),
            pools=list(by_name("resources/ippools/").values()),
            filters=by_name("resources/bgpfilters/"),
            blocks=blocks,
            borrowed=borrowed,
            secrets=self._secret,
            router_id_mode=o.router_id,
            fib=o.fib,
            restarting=restarting,
        )

    def _render(self, restarting: bool) -> Plan:
        plan = render(self._inputs(restarting))
        for w in plan.warnings:
            if w not in self.warnings:
                log.warning("%s", w)
        self.warnings = plan.warnings
        _set_level(plan.log_severity)
        return plan

    def _secret(self, name: str, key: str) -> str | None:
        """A Secret's key: a file ``<secrets dir>/<name>/<key>`` (a mounted Secret
        volume), else ``BGPD_SECRET_<NAME>_<KEY>``.  Never logged."""
        folder = self.options.secrets_dir or os.path.join(self.options.state_dir, "secrets")
        with contextlib.suppress(OSError), open(os.path.join(folder, name, key)) as f:
            return f.read().strip()
        env = re.sub(r"[^A-Za-z0-9]", "_", f"BGPD_SECRET_{name}_{key}").upper()
        return os.environ.get(env)

    # ------------------------------------------------------------ following changes

    async def _follow(self, since: int) -> None:
        async for batch in self.store.watch("", since):
            relevant = [c for c in batch if self._relevant(c)]
            if relevant:
                self.changes += len(relevant)
                self._mark_dirty()

    def _relevant(self, change: Change) -> bool:
        """Whether a change can alter what we render.  A block matters only when
        we borrow from it (or may start to): every pod started anywhere writes
        one, and re-rendering on each would cost every agent CPU per pod."""
        key, node = change.key, self.options.node
        if key is None or key.startswith(WATCHED) or key.startswith(f"{AFFINITIES}{node}/"):
            return True
        if not key.startswith(BLOCKS):
            return False
        if key in self._lenders:
            return True
        value = change.record.value if change.record is not None else {}
        if value.get("affinity") == f"host:{node}":
            return False
        return any(
            (a.get("secondary") or {}).get("node") == node for a in value.get("attributes") or []
        )

    def _mark_dirty(self) -> None:
        self._dirty = True
        if not self._scheduled:
            self._scheduled = True
            self._woken = time.monotonic()
            asyncio.get_running_loop().call_soon(self._reconcile)

    def _reconcile(self) -> None:
        self._scheduled = False
        if not self._dirty or self.speaker is None:
            return
        if self._restarting is not None:
            return  # the restart renders again when it is done
        self._dirty = False
        try:
            self._ensure_tunnels()
            plan = self._render(restarting=False)
        except Exception:
            log.exception("cannot render the configuration; the running one stays")
            return
        if self.plan is not None and plan.doc == self.plan.doc:
            self.plan = plan
            return
        try:
            change = self.speaker.reconfigure(dict(plan.doc, log_states=True))
        except ConfigError as e:
            log.error("the rendered configuration is refused (%s); the running one stays", e)
            return
        self.reconfigurations += 1
        if change.restart:
            log.info("restarting the speaker: %s", change.restart)
            self._restarting = asyncio.get_running_loop().create_task(self._restart(plan))
            return
        self.plan = plan
        self.lag = time.monotonic() - self._woken
        for address in change.removed:
            self.tracks.pop(address, None)

    async def _restart(self, plan: Plan) -> None:
        try:
            if self.speaker is not None:
                await self.speaker.close()
            self.tracks.clear()
            await self._start_speaker(plan)
        except Exception:
            log.exception("the speaker did not restart")
        finally:
            self._restarting = None
            self._mark_dirty()

    def _event(self, event: str, record: dict[str, Any]) -> None:
        peer = record.get("peer")
        if peer is None:
            if event in ("kernel-refused", "kernel-device-error", "update-error"):
                log.warning("%s: %s", event, record)
            return
        track = self.tracks.setdefault(peer, PeerTrack())
        if event == "state":
            track.since = record["t"]
        elif event == "established":
            log.info("peer %s: established", peer)
        elif event == "down":
            error = record.get("received") or record.get("sent") or record.get("reason")
            track.last_error = str(error) if error else None
            log.info("peer %s: down (%s)", peer, error)

    # ------------------------------------------------------------ StatusSource

    def status(self) -> dict[str, Any]:
        plan, speaker = self.plan, self.speaker
        peers = []
        if plan is not None and speaker is not None:
            for address, info in sorted(plan.peers.items()):
                peer = speaker.speaker.peers.get(address)
                state = speaker.peers.get(address)
                session = peer.driver.session if peer is not None else None
                bgp_state = session.state.label if session is not None else "Idle"
                track = self.tracks.get(address, PeerTrack(self.started))
                neg = session.negotiated if session is not None else None
                up = bgp_state == "Established"
                rib = speaker.router.peers.get(address)
                info_text = bgp_state
                if not up and session is not None and session.last_error:
                    info_text = f"{bgp_state}  {session.last_error}"
                peers.append({
                    "name": info.name, "address": address, "port": info.port,
                    "type": info.type, "as_number": info.as_number,
                    "local_as_number": state.spec.config.local_as if state else plan.as_number,
                    "state": "up" if up else "start", "bgp_state": bgp_state,
                    "since": track.since, "info": info_text,
                    "client": bool(state and state.spec.client),
                    "families": sorted(str(f) for f in neg.families) if neg and up else [],
                    "prefixes_received": len(state.rib) if state else 0,
                    "prefixes_sent": sum(len(t) for t in rib.adj_out.values()) if rib else 0,
                    "messages_received": session.messages_in if session else 0,
                    "messages_sent": session.messages_out if session else 0,
                    "updates_received": session.updates_in if session else 0,
                    "updates_sent": session.updates_out if session else 0,
                    "last_error": track.last_error,
                })  # fmt: skip
        method = self.detected.get(4) or self.detected.get(6)
        return {
            "node": self.options.node,
            "role": self.options.role,
            "router_id": plan.router_id if plan else None,
            "as_number": plan.as_number if plan else None,
            "cluster_id": plan.cluster_id if plan else None,
            "address": {
                "ipv4": plan.ipv4 if plan else None,
                "ipv6": plan.ipv6 if plan else None,
                "method": method.method if method else None,
                "reason": method.reason if method else None,
            },
            "started": self.started,
            "synced": self.synced,
            "warnings": list(self.warnings),
            "peers": peers,
        }

    def routes(self) -> dict[str, Any]:
        rib: dict[str, list[dict[str, Any]]] = {}
        fib: dict[str, list[dict[str, Any]]] = {}
        speaker = self.speaker
        for name, family in FAMILIES.items():
            rib[name] = []
            fib[name] = []
            if speaker is None:
                continue
            for prefix, best, paths in speaker.router.loc.selected(family):
                attrs = best.attributes
                rib[name].append({
                    "prefix": prefix_to_text(prefix, family.afi), "best": True,
                    "next_hops": [_hop_text(p.next_hop) for p in paths if p.next_hop],
                    "from": "local" if best.source.local else best.source.name,
                    "as_path": str(attrs.as_path) if attrs.as_path is not None else "",
                    "local_pref": attrs.local_pref,
                })  # fmt: skip
        kernel = speaker.kernel if speaker is not None else None
        if kernel is not None:
            names = {i: n for n, i in _if_indexes().items()}
            for key, route in kernel.fib.wanted.items():
                name = "ipv4" if route.family == socket.AF_INET else "ipv6"
                hops = route.nexthops
                fib[name].append({
                    "prefix": f"{ipaddress.ip_address(route.dst)}/{route.dst_len}",
                    "type": "blackhole" if route.type == 6 else "unicast",
                    "gateways": [_hop_text(h.gateway) for h in hops if h.gateway],
                    "device": names.get(hops[0].ifindex) if hops and hops[0].ifindex else None,
                    "installed": key in kernel.fib.installed,
                })  # fmt: skip
        return {"rib": rib, "fib": fib}

    def ipam(self) -> dict[str, Any]:
        o = self.options
        blocks = []
        confirmed, borrowed = announcements(self.store, o.node)
        for r in self.store.list(f"{AFFINITIES}{o.node}/"):
            cidr = r.value["cidr"]
            blocks.append({"cidr": cidr, "state": r.value.get("state"),
                           "announced": cidr in confirmed})  # fmt: skip
        node = self.store.get(NODES + o.node)
        spec = (node.value.get("spec") or {}) if node else {}
        vxlan = None
        if spec.get("ipv4VXLANTunnelAddr"):
            vxlan = {"address": spec["ipv4VXLANTunnelAddr"], "mac": spec.get("vxlanTunnelMACAddr")}
        return {"blocks": blocks, "borrowed": borrowed, "tunnel": {"vxlan": vxlan}}

    def readiness(self) -> tuple[bool, str]:
        if not self.synced or self.speaker is None or self.plan is None:
            return False, "initial datastore sync not done"
        if self._restarting is not None:
            return False, "the speaker is restarting"
        configured = len(self.plan.peers)
        if not configured:
            return True, "no BGP peers configured"
        up = sum(
            1 for p in self.speaker.speaker.peers.values()
            if p.driver.session.state.label == "Established"
        )  # fmt: skip
        if up == 0:
            return False, f"no BGP session established ({configured} peers configured)"
        return True, f"{up} of {configured} BGP sessions established"

    def counters(self) -> dict[str, Any]:
        speaker = self.speaker
        kernel = speaker.kernel if speaker is not None else None
        loc = speaker.router.loc if speaker is not None else None
        return {
            "fib_operations": kernel.requests if kernel is not None else 0,
            "fib_failures": kernel.failures if kernel is not None else 0,
            "rib_routes": {
                name: len(loc.tables.get(family, {})) if loc is not None else 0
                for name, family in FAMILIES.items()
            },
            "datastore_changes": self.changes,
            "datastore_lag_seconds": self.lag,
            "reconfigurations": self.reconfigurations,
        }


# ---------------------------------------------------------------- helpers


def _hop_text(hop: bytes) -> str:
    return str(ipaddress.ip_address(hop[:16] if len(hop) == 32 else hop))


def _if_indexes() -> dict[str, int]:
    return {name: index for index, name in socket.if_nameindex()}


def _source_for(destination: str) -> str | None:
    """The kernel's source address towards ``destination``: a UDP socket is
    connected (a route lookup), nothing is sent."""
    try:
        info = socket.getaddrinfo(destination, 9, type=socket.SOCK_DGRAM)[0]
        with socket.socket(info[0], socket.SOCK_DGRAM) as s:
            s.connect(info[4])
            return str(s.getsockname()[0])
    except OSError:
        return None


def _mac_for(node: str) -> str:
    """A stable, locally administered unicast MAC for the node's VTEP."""
    octets = bytearray(hashlib.sha256(f"vxlan:{node}".encode()).digest()[:6])
    octets[0] = (octets[0] | 0x02) & 0xFE
    return ":".join(f"{b:02x}" for b in octets)


_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR, "fatal": logging.CRITICAL, "none": logging.CRITICAL}  # fmt: skip


def _set_level(severity: str) -> None:
    """``logSeverityScreen`` applies to the whole process, live."""
    logging.getLogger().setLevel(_LEVELS.get(severity.lower(), logging.INFO))
