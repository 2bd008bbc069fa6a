"""A standalone BGP speaker configured by one JSON file.

    python -m bgpd.standalone CONFIG.json

It runs the sessions (``Speaker``) and the RIB (``Router``): each peer's
Adj-RIB-In with the graceful-restart helper (RFC 4724 §4.2), import and export
policy, the decision process, route reflection when ``cluster_id`` is set, and
the static routes the file lists.  After a restart it holds its announcements
until End-of-RIB from every peer or the deferral timer (RFC 4724 §4.1).  It
writes one JSON object per event on stdout.  The node agent builds on the same
parts; this program is what the interop tests and the benchmarks run, and a
route injector or reflector for operators' labs.

The file (``bgpd.standalone_config`` checks it)::

    {"local_as": 65001, "router_id": "198.18.0.1",
     "listen": [["0.0.0.0", 179], ["::", 179]],
     "restarting": false, "deferral_time": 60, "log_routes": true, "log_states": false,
     "cluster_id": null, "multipath": true, "always_compare_med": false,
     "require_ebgp_policy": true,
     "peers": [{"address": "198.18.0.2", "as": 65002, "port": 179, "local_as": null,
                "local_address": null, "password": null, "ttl_security": null,
                "multihop": null, "passive": false, "hold_time": 240,
                "keepalive_time": null, "families": ["ipv4-unicast", "ipv6-unicast"],
                "graceful_restart": true, "restart_time": 120,
                "connect_delay": 2, "connect_retry": 5, "error_wait": [5, 30],
                "next_hop": {"ipv6-unicast": "2001:2::1"},
                "import": "all", "export": "all", "next_hop_mode": "Auto",
                "route_reflector_client": false, "allowed_local_as": 0}],
     "routes": [{"prefix": "10.9.0.0/24"}, {"prefix": "2001:db8:9::/48"}]}

Our next hop towards a peer is its ``next_hop`` for the family, else the
session's local address when it is of that family; a family with neither is
not announced to that peer.  ``import`` and ``export`` are ``"all"`` (the
default), ``"none"``, null (no policy: with ``require_ebgp_policy`` RFC 8212
then refuses eBGP routes) or a list of rules (``parse_policy``).
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

from .config_diff import ConfigDiff, diff
from .fsm import (
    EndOfRib,
    Established,
    Negotiated,
    RouteRefreshRequested,
    RoutesReceived,
    SessionDown,
    SessionEvent,
    SessionState,
    StateChanged,
    UpdateErrorHandled,
)
from .kernel.devices import DeviceError, Devices
from .kernel.encap import IPIP_DEVICE, VXLAN_DEVICE, Encapsulation
from .kernel.export import FibExport
from .kernel.fib import Fib
from .kernel.sync import KernelSync
from .messages import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    Action,
    Family,
    Origin,
    PathAttributes,
    prefix_to_text,
)
from .messages.aspath import EMPTY_PATH
from .rib import (
    AdjRibIn,
    ExportTarget,
    GracefulRestartHelper,
    ImportRules,
    InitialConvergence,
    RouteChange,
    Router,
    Source,
)
from .runtime import tune_gc
from .speaker import Peer, Speaker, canonical_address
from .standalone_config import ConfigError, PeerSpec, StaticRoute, parse_config

log = logging.getLogger(__name__)

#: The attributes of the routes we announce of our own.
_ORIGINATED = PathAttributes(origin=Origin.IGP, as_path=EMPTY_PATH)

__all__ = ["ConfigError", "StandaloneSpeaker", "main"]


@dataclass
class PeerState:
    """What the speaker keeps per peer besides the session."""

    spec: PeerSpec
    rib: AdjRibIn = field(default_factory=AdjRibIn)
    helper: GracefulRestartHelper = field(init=False)
    timer: asyncio.TimerHandle | None = None

    def __post_init__(self) -> None:
        self.helper = GracefulRestartHelper(self.rib)


class StandaloneSpeaker:
    """Sessions, the RIB (with graceful restart and route reflection), and
    static announcements."""

    def __init__(
        self,
        doc: dict[str, Any],
        out: IO[str] | None = None,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.config = parse_config(doc)
        self.out = out
        self.on_event = on_event
        self.speaker = Speaker(self.config.listen, self._session_event)
        self.router = Router(self.config.local_as, self.config.router_id, self.config.decision)
        self._flush_pending = False
        self._pump_pending = False
        self.peers: dict[str, PeerState] = {}
        #: Peers whose output waits for our selection deferral (RFC 4724 §4.1).
        self._held: set[str] = set()
        self.convergence: InitialConvergence | None = None
        self._convergence_timer: asyncio.TimerHandle | None = None
        # The kernel FIB, when the file has a "kernel" section.
        self.kernel: KernelSync | None = None
        self.fib_export: FibExport | None = None
        self.kernel_convergence: InitialConvergence | None = None
        self._kernel_timer: asyncio.TimerHandle | None = None
        self._repairing: asyncio.Task[None] | None = None
        self._repair_again = False
        kernel = self.config.kernel
        if kernel is not None:
            fib = Fib(kernel.table, kernel.protocol, kernel.metric)
            self.kernel = KernelSync(fib, on_event=self._emit, on_interfaces=self._interfaces)
            encap = Encapsulation(
                kernel.pools, kernel.subnets, table=kernel.table,
                protocol=kernel.protocol, metric=kernel.metric,
            )  # fmt: skip
            encap.set_rejects(kernel.reject)
            self.fib_export = FibExport(self.kernel, encap)
            self.router.on_best = self.fib_export.changes

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        config = self.config
        if self.kernel is not None:
            await self._start_kernel(loop)
        await self.speaker.start()
        if config.restarting:
            self.convergence = InitialConvergence(
                [s.endpoint.peer_address for s in config.peers], loop.time(), config.deferral_time
            )
            if self.convergence.deadline is not None:
                self._convergence_timer = loop.call_at(
                    self.convergence.deadline, self._convergence_tick
                )
        for route in config.routes:
            self._originate(route)
        for spec in config.peers:
            self._add_peer(spec)
        self._emit("started", ports=self.speaker.ports, restarting=config.restarting)

    def reconfigure(self, doc: dict[str, Any]) -> ConfigDiff:
        """Apply a new configuration live (``bgpd.config_diff``): only the peers it
        changes are reset.  A change that needs a restart is not applied: the
        result's ``restart`` says why, and the caller restarts the speaker.
        Raises ``ConfigError`` for a bad document, changing nothing."""
        new = parse_config(doc)
        change = diff(self.config, new)
        if change.restart:
            return change
        for address in change.removed:
            self._remove_peer(address)
        self.config = new
        for spec in change.reexport:
            address = spec.endpoint.peer_address
            self.peers[address].spec = spec
            self.router.set_export_policy(address, spec.export_policy)
        for route in change.withdrawn:
            self._withdraw(route)
        kernel, export = new.kernel, self.fib_export
        if kernel is not None and export is not None and change.replan:
            export.encap.set_pools(kernel.pools)
            export.encap.set_subnets(kernel.subnets)
            export.encap.set_vteps(kernel.vteps)
            export.encap.set_rejects(kernel.reject)
            if change.devices or kernel.vxlan is not None:
                # New VTEPs need their neighbour and FDB entries before routes use them.
                if self._repairing is None:
                    self._repairing = asyncio.get_running_loop().create_task(
                        self._repair_devices()
                    )
                else:
                    self._repair_again = True
            else:
                export.replan(self.router.loc)
        for route in change.originated:
            self._originate(route)
        converged = self.convergence is None
        for spec in change.added:
            if converged and spec.config.restarting:
                spec = replace(spec, config=replace(spec.config, restarting=False))
            self._add_peer(spec)
        if not change.empty:
            self._emit(
                "reconfigured",
                removed=list(change.removed),
                added=[s.endpoint.peer_address for s in change.added],
                withdrawn=len(change.withdrawn),
                originated=len(change.originated),
                replanned=change.replan,
                reexported=[s.endpoint.peer_address for s in change.reexport],
            )
        self._kick()
        return change

    def _add_peer(self, spec: PeerSpec) -> None:
        self.peers[spec.endpoint.peer_address] = PeerState(spec)
        self.speaker.add_peer(spec.endpoint, spec.config)

    def _remove_peer(self, address: str) -> None:
        """Stop the session with Cease; its routes leave the RIB in slices."""
        state = self.peers.pop(address, None)
        if state is None:
            return
        if state.timer is not None:
            state.timer.cancel()
        self.speaker.remove_peer(address)
        self.router.peer_down(address)
        self._held.discard(address)
        for conv in (self.convergence, self.kernel_convergence):
            if conv is not None:
                conv.peer_removed(address)
        self._check_convergence()
        self._check_kernel_convergence()

    def _originate(self, route: StaticRoute) -> None:
        if route.blackhole and self.fib_export is not None:
            self.fib_export.own_block(route.family, route.prefix)
        self.router.originate(route.family, route.prefix, _ORIGINATED, route.next_hop or b"")

    def _withdraw(self, route: StaticRoute) -> None:
        self.router.withdraw(route.family, route.prefix)
        if route.blackhole and self.fib_export is not None:
            self.fib_export.drop_own_block(route.family, route.prefix, self.router.loc)

    async def close(self) -> None:
        for state in self.peers.values():
            if state.timer is not None:
                state.timer.cancel()
        for timer in (self._convergence_timer, self._kernel_timer):
            if timer is not None:
                timer.cancel()
        await self.speaker.close()
        if self.kernel is not None:
            self.kernel.close()  # our routes stay in the kernel

    async def _start_kernel(self, loop: asyncio.AbstractEventLoop) -> None:
        """Tunnel devices, then the table read; stale routes of ours stay until
        every peer's End-of-RIB or the deferral timer (CALICO.md §6.1)."""
        kernel, sync, export = self.config.kernel, self.kernel, self.fib_export
        assert kernel is not None and sync is not None and export is not None
        encap = export.encap
        if kernel.vxlan is not None or kernel.ipip:
            await self._devices()
        encap.set_vteps(kernel.vteps)
        await sync.start()
        self.kernel_convergence = InitialConvergence(
            [s.endpoint.peer_address for s in self.config.peers],
            loop.time(),
            self.config.deferral_time,
            every_peer=True,
        )
        deadline = self.kernel_convergence.deadline
        if deadline is not None:
            self._kernel_timer = loop.call_at(deadline, self._kernel_tick)
        self._check_kernel_convergence()

    def _interfaces(self, deleted: set[int], address_added: bool) -> None:
        """A tunnel device of ours was deleted, or an address appeared while one
        is missing (it may hold the node IP the device needs): make them again
        and plan every route anew."""
        kernel, export = self.config.kernel, self.fib_export
        if kernel is None or export is None or self._repairing is not None:
            return
        encap = export.encap
        ours = {i for i in (encap.vxlan, encap.tunl0) if i}
        # (A tunl0 refused by a kernel without IPIP will not come with an address.)
        missing = kernel.vxlan is not None and not encap.vxlan
        if ours & deleted or (address_added and missing):
            if encap.vxlan in deleted:
                encap.vxlan = 0
            if encap.tunl0 in deleted:
                encap.tunl0 = 0
            self._repairing = asyncio.get_running_loop().create_task(self._repair_devices())

    async def _repair_devices(self) -> None:
        try:
            while True:
                # A reconfiguration while this runs asks for another pass.
                self._repair_again = False
                await self._devices()
                if self.fib_export is not None:
                    self.fib_export.replan(self.router.loc)
                if not self._repair_again:
                    break
        finally:
            self._repairing = None

    async def _devices(self) -> None:
        """Make the tunnel devices the pools need (pyroute2's calls block and run
        an event loop of their own: in a thread) and plan with their indexes."""
        assert self.fib_export is not None
        encap = self.fib_export.encap
        vxlan, tunl0, events = await asyncio.to_thread(self._make_devices)
        encap.vxlan, encap.tunl0 = vxlan, tunl0
        for event in events:
            self._emit(event.pop("event"), **event)

    def _make_devices(self) -> tuple[int, int, list[dict[str, Any]]]:
        """(vxlan.calico's index, tunl0's, what happened as events); 0 for a
        device not configured or not made."""
        kernel = self.config.kernel
        assert kernel is not None
        vxlan = tunl0 = 0
        events: list[dict[str, Any]] = []
        devices = Devices()
        try:
            if kernel.vxlan is not None:
                try:
                    vxlan = devices.ensure_vxlan(kernel.vxlan)
                    written, removed = devices.sync_vteps(vxlan, kernel.vteps)
                    events.append(
                        {"event": "kernel-device", "device": VXLAN_DEVICE, "index": vxlan,
                         "vteps": len(kernel.vteps), "written": written, "removed": removed}
                    )  # fmt: skip
                except DeviceError as e:
                    events.append(
                        {"event": "kernel-device-error", "device": VXLAN_DEVICE, "error": str(e)}
                    )
            if kernel.ipip:
                try:
                    tunl0 = devices.ensure_tunl0(kernel.ipip_address)
                    events.append({"event": "kernel-device", "device": IPIP_DEVICE, "index": tunl0})
                except DeviceError as e:
                    events.append(
                        {"event": "kernel-device-error", "device": IPIP_DEVICE, "error": str(e)}
                    )
        finally:
            devices.close()
        return vxlan, tunl0, events

    def _kernel_tick(self) -> None:
        self._kernel_timer = None
        if self.kernel_convergence is not None:
            self.kernel_convergence.handle_timer(asyncio.get_running_loop().time())
            self._check_kernel_convergence()

    def _check_kernel_convergence(self) -> None:
        conv = self.kernel_convergence
        if conv is None or not conv.done or self.kernel is None:
            return
        self.kernel_convergence = None
        if self._kernel_timer is not None:
            self._kernel_timer.cancel()
            self._kernel_timer = None
        self.kernel.converge()
        export = self.fib_export
        reasons: dict[str, int] = {}
        for reason in export.unplanned.values() if export is not None else ():
            reasons[reason] = reasons.get(reason, 0) + 1
        self._emit(
            "kernel-converged",
            timed_out=conv.timed_out,
            waiting_for=conv.waiting_for(),
            wanted=len(self.kernel.fib.wanted),
            unplanned=reasons,
        )

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
        """Log Adj-RIB-In changes and run them through the RIB."""
        if self.config.log_routes:
            for c in changes:
                text = prefix_to_text(c.key[0], c.family.afi)
                if c.route is None:
                    self._emit("withdraw", peer=peer, family=str(c.family), prefix=text)
                else:
                    nh = c.route.next_hop
                    hop = str(ipaddress.ip_address(nh[:16] if len(nh) == 32 else nh))
                    self._emit("route", peer=peer, family=str(c.family), prefix=text, next_hop=hop)
        if changes:
            self.router.apply(peer, changes)
            self._kick()

    def _kick(self) -> None:
        """Send what the RIB staged at the end of this loop pass, not per UPDATE
        received: a burst of UPDATEs leaves as one batch per peer."""
        if not self._pump_pending:
            self._pump_pending = True
            asyncio.get_running_loop().call_soon(self._pump)

    def _pump(self) -> None:
        self._pump_pending = False
        router = self.router
        if router.busy:
            # One slice per pass: keepalives and other sessions run in between.
            router.work(1)
        for name, data in router.take_output(self._ready).items():
            peer = self.speaker.peers.get(name)
            if peer is not None:
                peer.driver.send(data)
        if router.busy:
            self._kick()

    def _ready(self, name: str) -> bool:
        """Output is taken for a peer only while its session is Established: one
        that went down in this loop pass, before the RIB heard of it, keeps its
        output staged until the RIB's down handling drops it (a re-established
        session gets the whole table again)."""
        peer = self.speaker.peers.get(name)
        return (
            name not in self._held and peer is not None and peer.driver.writable
            and peer.driver.session.state == SessionState.ESTABLISHED
        )  # fmt: skip

    # -- session events

    def _session_event(self, peer: Peer, event: SessionEvent) -> None:
        address = peer.endpoint.peer_address
        state = self.peers.get(address)
        if state is None:
            return
        now = peer.driver.loop.time()
        if isinstance(event, StateChanged):
            if self.config.log_states:
                self._emit("state", peer=address, old=event.old.label, new=event.new.label)
        elif isinstance(event, Established):
            self._established(peer, state, event.negotiated, now)
        elif isinstance(event, RoutesReceived):
            if self.config.log_routes:
                self._changes(address, state.rib.apply(event.update))
            else:  # no line per prefix: the RIB's grouped path
                self.router.receive(address, event.update)
                self._kick()
        elif isinstance(event, EndOfRib):
            self._changes(address, state.helper.end_of_rib(event.family))
            loc = self.router.loc.tables.get(event.family)
            self._emit(
                "end-of-rib",
                peer=address,
                family=str(event.family),
                adj_rib_in=len(state.rib.routes(event.family)),
                loc_rib=len(loc) if loc is not None else 0,
            )
            self._arm(state)
            if self.convergence is not None:
                self.convergence.end_of_rib(address, event.family)
                self._check_convergence()
            if self.kernel_convergence is not None:
                self.kernel_convergence.end_of_rib(address, event.family)
                self._check_kernel_convergence()
        elif isinstance(event, SessionDown):
            self._down(state, event)
        elif isinstance(event, RouteRefreshRequested):
            neg = peer.driver.session.negotiated
            if event.subtype == 0 and neg is not None:
                self.router.refresh(address, event.family, neg.enhanced_route_refresh)
                self._kick()
        elif isinstance(event, UpdateErrorHandled):
            err = event.error
            self._emit("update-error", peer=address, action=err.action.name, error=str(err))
            if err.action == Action.AFI_SAFI_DISABLE and err.family is not None:
                self._changes(address, state.rib.disable(err.family))

    def _established(self, peer: Peer, state: PeerState, neg: Negotiated, now: float) -> None:
        address = peer.endpoint.peer_address
        spec = state.spec
        config = self.config
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
        # A per-peer local AS (Calico's localASNumber) decides iBGP or eBGP for this peer.
        local_as = spec.config.local_as
        source = Source.peer(address, local_as, neg.peer_as, neg.peer_id, spec.client)
        rules = ImportRules(
            local_id=config.router_id,
            policy=spec.import_policy,
            allowed_local_as=spec.allowed_local_as,
            require_ebgp_policy=config.require_ebgp_policy,
            reflection=config.reflector,
        )
        target = ExportTarget(
            address,
            local_as,
            neg.peer_as,
            next_hop_self=self._next_hop_self(peer, spec),
            next_hop_mode=spec.next_hop_mode,
            policy=spec.export_policy,
            require_ebgp_policy=config.require_ebgp_policy,
            client=spec.client,
            reflection=config.reflector,
        )
        self.router.peer_up(
            source,
            rules,
            target,
            neg.families,
            neg.context,
            four_octet=neg.context.four_octet_as,
            adj_in=state.rib,
        )
        peer.driver.on_writable = self._kick
        if self.kernel_convergence is not None:
            self.kernel_convergence.established(address, neg)
            self._check_kernel_convergence()
        if self.convergence is not None:
            self.convergence.established(address, neg)
            # §4.2: a peer restarting too gets our routes at once.
            if not restarting_peer:
                self._held.add(address)
            self._check_convergence()
        self._kick()

    def _down(self, state: PeerState, event: SessionDown) -> None:
        address = state.spec.endpoint.peer_address
        self._emit(
            "down",
            peer=address,
            reason=event.reason,
            sent=str(event.sent) if event.sent else None,
            received=str(event.received) if event.received else None,
            sent_code=[event.sent.code, event.sent.subcode] if event.sent else None,
            received_code=[event.received.code, event.received.subcode] if event.received else None,
            graceful=event.graceful,
        )
        self._held.discard(address)
        if not event.was_established:
            return  # a failed attempt changes nothing, stale routes included
        if state.helper.retains(event):
            self._changes(address, state.helper.session_down(event))
            self.router.peer_suspend(address)
            stale = sum(len(s) for s in state.rib.stale.values())
            if stale:
                self._emit("stale", peer=address, routes=stale)
        else:
            if self.config.log_routes:
                for family, key, _route in state.rib:
                    text = prefix_to_text(key[0], family.afi)
                    self._emit("withdraw", peer=address, family=str(family), prefix=text)
            # The router empties the Adj-RIB-In and withdraws in slices.
            self.router.peer_down(address)
            state.helper.session_down(event)
            self._kick()
        self._arm(state)

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
        for peer in self.speaker.peers.values():
            # The Restart State bit belongs to the OPENs right after our restart only.
            session = peer.driver.session
            session.reconfigure(replace(session.config, restarting=False))
        self._held.clear()
        self._kick()

    def _next_hop_self(self, peer: Peer, spec: PeerSpec) -> dict[Family, bytes]:
        """Our next hop per family on this session: the configured one, else the
        session's local address for its own family."""
        hops = dict(spec.next_hops)
        name = peer.driver.local_address()
        if name is not None:
            local = ipaddress.ip_address(canonical_address(name)).packed
            family = IPV4_UNICAST if len(local) == 4 else IPV6_UNICAST
            hops.setdefault(family, local)
        return hops


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
