"""A standalone BGP speaker configured by one JSON file.

    python -m bgpd.standalone CONFIG.json

It runs the sessions (``Speaker``), keeps each peer's Adj-RIB-In with the
graceful-restart helper (RFC 4724 §4.2), announces the static routes the file
lists, and defers its own announcements after a restart until End-of-RIB from
every peer or the deferral timer (RFC 4724 §4.1).  It writes one JSON object
per event on stdout.  The node agent builds on the same parts; this program is
what the interop tests and the session benchmark run, and a plain route
injector for operators' labs.

The file::

    {"local_as": 65001, "router_id": "198.18.0.1",
     "listen": [["0.0.0.0", 179], ["::", 179]],
     "restarting": false, "deferral_time": 60, "log_routes": true, "log_states": false,
     "peers": [{"address": "198.18.0.2", "as": 65002, "port": 179,
                "local_address": null, "password": null, "ttl_security": null,
                "multihop": null, "passive": false, "hold_time": 240,
                "keepalive_time": null, "families": ["ipv4-unicast", "ipv6-unicast"],
                "graceful_restart": true, "restart_time": 120,
                "connect_delay": 2, "connect_retry": 5, "error_wait": [5, 30],
                "next_hop": {"ipv6-unicast": "2001:2::1"}}],
     "routes": [{"prefix": "10.9.0.0/24"}, {"prefix": "2001:db8:9::/48"}]}

A route's next hop is its own ``next_hop``, else the peer's ``next_hop`` for the
family, else the session's local address when it is of the route's family.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import logging
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import IO, Any

from .fsm import (
    EndOfRib,
    Established,
    RouteRefreshRequested,
    RoutesReceived,
    SessionConfig,
    SessionDown,
    SessionEvent,
    StateChanged,
    UpdateErrorHandled,
)
from .fsm.driver import Endpoint, SessionDriver
from .messages import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    Action,
    AsPath,
    Family,
    MpReach,
    Origin,
    PathAttributes,
    Prefix,
    Update,
    encode_message,
    prefix_from_text,
    prefix_to_text,
)
from .messages.aspath import EMPTY_PATH
from .rib import AdjRibIn, GracefulRestartHelper, InitialConvergence, RouteChange
from .runtime import tune_gc
from .speaker import Peer, Speaker, canonical_address

log = logging.getLogger(__name__)

FAMILIES = {str(f): f for f in (IPV4_UNICAST, IPV6_UNICAST)}
#: Prefixes per UPDATE: far below 4096 octets for either family.
CHUNK = {IPV4_UNICAST: 600, IPV6_UNICAST: 200}


#: End-of-RIB markers do not depend on what was negotiated (RFC 4724 §2).
_END_OF_RIB = {f: encode_message(Update.end_of_rib(f)) for f in (IPV4_UNICAST, IPV6_UNICAST)}


class ConfigError(ValueError):
    """A bad configuration file: names the field and the reason."""


@dataclass(frozen=True, slots=True)
class StaticRoute:
    family: Family
    prefix: Prefix
    next_hop: bytes | None


@dataclass(frozen=True, slots=True)
class PeerSpec:
    endpoint: Endpoint
    config: SessionConfig
    next_hops: dict[Family, bytes] = field(default_factory=dict)


@dataclass
class PeerState:
    """What the speaker keeps per peer besides the session."""

    spec: PeerSpec
    rib: AdjRibIn = field(default_factory=AdjRibIn)
    helper: GracefulRestartHelper = field(init=False)
    announced: bool = False
    timer: asyncio.TimerHandle | None = None

    def __post_init__(self) -> None:
        self.helper = GracefulRestartHelper(self.rib)


def _address_bytes(text: str, where: str) -> bytes:
    try:
        return ipaddress.ip_address(text).packed
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None


def _family(name: str, where: str) -> Family:
    if name not in FAMILIES:
        raise ConfigError(f"{where}: unknown family {name!r} (one of {sorted(FAMILIES)})")
    return FAMILIES[name]


def parse_config(
    doc: dict[str, Any],
) -> tuple[list[tuple[str, int]], list[PeerSpec], list[StaticRoute], dict[str, Any]]:
    """Check the file and build the parts; a fault names its field."""
    try:
        local_as = int(doc["local_as"])
        router_id = int(ipaddress.IPv4Address(doc["router_id"]))
    except (KeyError, ValueError, TypeError) as e:
        raise ConfigError(f"local_as/router_id: {e}") from None
    listen = [(str(h), int(p)) for h, p in doc.get("listen", [["0.0.0.0", 179], ["::", 179]])]
    restarting = bool(doc.get("restarting", False))
    peers: list[PeerSpec] = []
    for i, p in enumerate(doc.get("peers", [])):
        where = f"peers[{i}]"
        try:
            address = str(ipaddress.ip_address(p["address"]))
            families = tuple(
                _family(f, f"{where}.families") for f in p.get("families", ["ipv4-unicast"])
            )
            wait = p.get("error_wait", [5, 30])
            config = SessionConfig(
                local_as=local_as,
                peer_as=int(p["as"]) if p.get("as") is not None else None,
                local_id=router_id,
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
                restarting=restarting,
                send_hold_time=p.get("send_hold_time"),
            )
            endpoint = Endpoint(
                peer_address=address,
                peer_port=int(p.get("port", 179)),
                local_address=p.get("local_address"),
                password=p.get("password"),
                ttl_security=p.get("ttl_security"),
                multihop=p.get("multihop"),
            )
            next_hops = {
                _family(f, f"{where}.next_hop"): _address_bytes(a, f"{where}.next_hop.{f}")
                for f, a in p.get("next_hop", {}).items()
            }
        except KeyError as e:
            raise ConfigError(f"{where}: missing {e.args[0]}") from None
        except (ValueError, TypeError) as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"{where}: {e}") from None
        peers.append(PeerSpec(endpoint, config, next_hops))
    routes: list[StaticRoute] = []
    for i, r in enumerate(doc.get("routes", [])):
        where = f"routes[{i}]"
        try:
            afi, prefix = prefix_from_text(r["prefix"])
        except (KeyError, ValueError) as e:
            raise ConfigError(f"{where}.prefix: {e}") from None
        family = IPV4_UNICAST if afi == IPV4_UNICAST.afi else IPV6_UNICAST
        nh = r.get("next_hop")
        routes.append(StaticRoute(family, prefix, _address_bytes(nh, where) if nh else None))
    options = {
        "restarting": restarting,
        "deferral_time": float(doc.get("deferral_time", 60)),
        "log_routes": bool(doc.get("log_routes", True)),
        # Off by default, as BIRD's "debug { states }": established and down
        # lines say what operators need; every transition is for debugging.
        "log_states": bool(doc.get("log_states", False)),
    }
    return listen, peers, routes, options


class StandaloneSpeaker:
    """Sessions, Adj-RIBs-In with graceful restart, and static announcements."""

    def __init__(
        self,
        doc: dict[str, Any],
        out: IO[str] | None = None,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.listen, self.specs, self.routes, self.options = parse_config(doc)
        self.out = out
        self.on_event = on_event
        self.speaker = Speaker(self.listen, self._session_event)
        self._by_family: dict[Family, list[StaticRoute]] = {}
        for route in self.routes:
            self._by_family.setdefault(route.family, []).append(route)
        self._flush_pending = False
        self.peers: dict[str, PeerState] = {}
        self.convergence: InitialConvergence | None = None
        self._convergence_timer: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await self.speaker.start()
        if self.options["restarting"]:
            self.convergence = InitialConvergence(
                [s.endpoint.peer_address for s in self.specs],
                loop.time(),
                self.options["deferral_time"],
            )
            if self.convergence.deadline is not None:
                self._convergence_timer = loop.call_at(
                    self.convergence.deadline, self._convergence_tick
                )
        for spec in self.specs:
            self.peers[spec.endpoint.peer_address] = PeerState(spec)
            self.speaker.add_peer(spec.endpoint, spec.config)
        self._emit("started", ports=self.speaker.ports, restarting=self.options["restarting"])

    async def close(self) -> None:
        for state in self.peers.values():
            if state.timer is not None:
                state.timer.cancel()
        if self._convergence_timer is not None:
            self._convergence_timer.cancel()
        await self.speaker.close()

    # -- output

    def _emit(self, event: str, **fields: Any) -> None:
        record = {"t": round(time.time(), 3), "event": event, **fields}
        if self.on_event is not None:
            self.on_event(event, record)
        if self.out is not None:
            self.out.write(json.dumps(record, default=str) + "\n")
            if not self._flush_pending:
                # One flush per loop pass, not per line: a mesh coming up at
                # once writes thousands of lines.
                self._flush_pending = True
                asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        if self.out is not None:
            self.out.flush()

    def _changes(self, peer: str, changes: list[RouteChange]) -> None:
        if not self.options["log_routes"]:
            return
        for c in changes:
            text = prefix_to_text(c.key[0], c.family.afi)
            if c.route is None:
                self._emit("withdraw", peer=peer, family=str(c.family), prefix=text)
            else:
                nh = c.route.next_hop
                hop = str(ipaddress.ip_address(nh[:16] if len(nh) == 32 else nh))
                self._emit("route", peer=peer, family=str(c.family), prefix=text, next_hop=hop)

    # -- session events

    def _session_event(self, peer: Peer, event: SessionEvent) -> None:
        address = peer.endpoint.peer_address
        state = self.peers.get(address)
        if state is None:
            return
        now = peer.driver.loop.time()
        if isinstance(event, StateChanged):
            if self.options["log_states"]:
                self._emit("state", peer=address, old=event.old.label, new=event.new.label)
        elif isinstance(event, Established):
            neg = event.negotiated
            cap = neg.peer_graceful_restart
            restarting_peer = cap is not None and cap.restarting
            self._emit(
                "established",
                peer=address,
                hold_time=neg.hold_time,
                families=sorted(str(f) for f in neg.families),
                peer_graceful_restart=cap is not None,
                peer_restarting=restarting_peer,
            )
            state.rib.session_reset()
            self._changes(address, state.helper.established(neg, now))
            self._arm(state)
            state.announced = False
            if self.convergence is not None:
                self.convergence.established(address, neg)
                self._check_convergence()
            if self.convergence is None or self.convergence.done or restarting_peer:
                self._announce(peer, state)
        elif isinstance(event, RoutesReceived):
            self._changes(address, state.rib.apply(event.update))
        elif isinstance(event, EndOfRib):
            self._emit("end-of-rib", peer=address, family=str(event.family))
            self._changes(address, state.helper.end_of_rib(event.family))
            self._arm(state)
            if self.convergence is not None:
                self.convergence.end_of_rib(address, event.family)
                self._check_convergence()
        elif isinstance(event, SessionDown):
            self._emit(
                "down",
                peer=address,
                reason=event.reason,
                sent=str(event.sent) if event.sent else None,
                received=str(event.received) if event.received else None,
                sent_code=[event.sent.code, event.sent.subcode] if event.sent else None,
                received_code=(
                    [event.received.code, event.received.subcode] if event.received else None
                ),
                graceful=event.graceful,
            )
            changes = state.helper.session_down(event)
            self._changes(address, changes)
            stale = sum(len(s) for s in state.rib.stale.values())
            if stale:
                self._emit("stale", peer=address, routes=stale)
            self._arm(state)
            state.announced = False
        elif isinstance(event, RouteRefreshRequested):
            if event.subtype == 0 and peer.driver.session.negotiated is not None:
                self._send_family(peer, state, event.family)
        elif isinstance(event, UpdateErrorHandled):
            err = event.error
            self._emit("update-error", peer=address, action=err.action.name, error=str(err))
            if err.action == Action.AFI_SAFI_DISABLE and err.family is not None:
                self._changes(address, state.rib.disable(err.family))

    def _arm(self, state: PeerState) -> None:
        """One timer per peer for its graceful-restart deadlines."""
        if state.timer is not None:
            state.timer.cancel()
            state.timer = None
        deadline = state.helper.deadline
        if deadline is not None:
            loop = asyncio.get_running_loop()
            state.timer = loop.call_at(deadline, self._gr_tick, state)

    def _gr_tick(self, state: PeerState) -> None:
        state.timer = None
        address = state.spec.endpoint.peer_address
        changes = state.helper.handle_timer(asyncio.get_running_loop().time())
        if changes:
            self._emit("stale-expired", peer=address, routes=len(changes))
        self._changes(address, changes)
        self._arm(state)

    def _convergence_tick(self) -> None:
        self._convergence_timer = None
        if self.convergence is not None:
            self.convergence.handle_timer(asyncio.get_running_loop().time())
            self._check_convergence()

    def _check_convergence(self) -> None:
        conv = self.convergence
        if conv is None or not conv.done:
            return
        self.convergence = None
        if self._convergence_timer is not None:
            self._convergence_timer.cancel()
            self._convergence_timer = None
        self._emit("converged", timed_out=conv.timed_out, waiting_for=conv.waiting_for())
        for address, peer in self.speaker.peers.items():
            # The Restart State bit belongs to the OPENs right after our restart only.
            session = peer.driver.session
            session.reconfigure(replace(session.config, restarting=False))
            state = self.peers.get(address)
            if state is not None and session.negotiated is not None and not state.announced:
                self._announce(peer, state)

    # -- announcing

    def _announce(self, peer: Peer, state: PeerState) -> None:
        neg = peer.driver.session.negotiated
        if neg is None or state.announced:
            return
        state.announced = True
        out = bytearray()
        for family in (IPV4_UNICAST, IPV6_UNICAST):
            if family in neg.families:
                out += self._encode_family(peer, state, family)
                out += _END_OF_RIB[family]
        peer.driver.send(bytes(out))

    def _send_family(self, peer: Peer, state: PeerState, family: Family) -> None:
        data = self._encode_family(peer, state, family)
        if data:
            peer.driver.send(data)

    def _encode_family(self, peer: Peer, state: PeerState, family: Family) -> bytes:
        """Our static routes of ``family`` as UPDATEs for this peer."""
        driver = peer.driver
        neg = driver.session.negotiated
        routes = self._by_family.get(family)
        if neg is None or not routes:
            return b""
        local = self._local_address(driver)
        ibgp = neg.peer_as == peer.config.local_as
        path = EMPTY_PATH if ibgp else AsPath.sequence(peer.config.local_as)
        by_hop: dict[bytes, list[Prefix]] = {}
        for route in routes:
            hop = route.next_hop or state.spec.next_hops.get(family)
            if hop is None and local is not None and len(local) == (4 if family.afi == 1 else 16):
                hop = local
            if hop is None:
                log.warning(
                    "peer %s: no %s next hop for %s",
                    peer.endpoint.peer_address,
                    family,
                    prefix_to_text(route.prefix, family.afi),
                )
                continue
            by_hop.setdefault(hop, []).append(route.prefix)
        out = bytearray()
        for hop, prefixes in by_hop.items():
            for i in range(0, len(prefixes), CHUNK[family]):
                chunk = tuple(prefixes[i : i + CHUNK[family]])
                base = PathAttributes(
                    origin=Origin.IGP,
                    as_path=path,
                    local_pref=100 if ibgp else None,
                    next_hop=hop if family == IPV4_UNICAST and len(hop) == 4 else None,
                )
                if family == IPV4_UNICAST and len(hop) == 4:
                    update = Update(attributes=base, nlri=chunk)
                else:
                    update = Update(attributes=base, mp_reach=MpReach(family, hop, chunk))
                out += encode_message(update, neg.context)
        return bytes(out)

    @staticmethod
    def _local_address(driver: SessionDriver) -> bytes | None:
        name = driver.local_address()
        if name is None:
            return None
        return ipaddress.ip_address(canonical_address(name)).packed


async def _main(path: str) -> int:
    with open(path) as f:
        doc = json.load(f)
    try:
        app = StandaloneSpeaker(doc, sys.stdout)
    except ConfigError as e:
        print(f"{path}: {e}", file=sys.stderr)
        return 2
    tune_gc()
    await app.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await app.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bgpd-standalone", description=__doc__.split("\n")[0])
    parser.add_argument("config", help="the JSON configuration file")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_main(args.config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
