"""What changed between two speaker configurations, and how to apply it without
a restart (BIRD's soft reconfiguration on SIGHUP, as Calico's confd triggers it).

``diff(old, new)`` is pure.  The speaker applies the result: peers removed or
changed are stopped (a changed peer restarts alone: only the sessions a change
concerns are reset), new ones started, announcements withdrawn and originated
one by one, and the kernel part (pools, subnets, tunnel devices, VTEPs)
replanned.  Changes to what every session shares (our AS, router ID, listening
sockets, cluster ID, the decision options, the kernel table and protocol) are
not applied piecemeal: ``restart`` says why, and the caller restarts the
speaker, as BIRD restarts every protocol when its router ID changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .standalone_config import Config, KernelConfig, PeerSpec, StaticRoute


@dataclass(frozen=True, slots=True)
class ConfigDiff:
    #: Non-empty: the change cannot be applied live, for this reason.
    restart: str = ""
    removed: tuple[str, ...] = ()
    added: tuple[PeerSpec, ...] = ()
    withdrawn: tuple[StaticRoute, ...] = ()
    originated: tuple[StaticRoute, ...] = ()
    #: Pools, subnets or VTEPs differ: plan every route again.
    replan: bool = False
    #: The tunnel devices differ: make them again first.
    devices: bool = False
    #: Peers whose export policy alone changed: re-exported, not reset.
    reexport: tuple[PeerSpec, ...] = ()
    unchanged_peers: tuple[str, ...] = field(default=(), repr=False)

    @property
    def empty(self) -> bool:
        return not (
            self.restart or self.removed or self.added or self.withdrawn or self.originated
            or self.replan or self.devices or self.reexport
        )  # fmt: skip


def _global(c: Config) -> tuple[object, ...]:
    kernel = c.kernel
    return (
        c.local_as, c.router_id, tuple(c.listen), c.decision, c.reflector,
        c.require_ebgp_policy, kernel is None,
        None if kernel is None else (kernel.table, kernel.protocol, kernel.metric),
    )  # fmt: skip


_GLOBAL_NAMES = (
    "local AS", "router ID", "listening addresses", "decision options", "cluster ID",
    "RFC 8212 policy requirement", "kernel programming", "kernel table, protocol or metric",
)  # fmt: skip


def _devices(k: KernelConfig) -> tuple[object, ...]:
    return (k.vxlan, k.ipip, k.ipip_address)


def _peer(p: PeerSpec) -> PeerSpec:
    # The Restart State bit is for the OPENs right after our own restart: a
    # later configuration saying otherwise is no reason to reset a session.
    return replace(p, config=replace(p.config, restarting=False), export_policy=None)


def diff(old: Config, new: Config) -> ConfigDiff:
    """How to go from ``old`` to ``new``."""
    before, after = _global(old), _global(new)
    if before != after:
        names = [n for n, a, b in zip(_GLOBAL_NAMES, before, after, strict=True) if a != b]
        return ConfigDiff(restart=", ".join(names) + " changed")
    old_peers = {p.endpoint.peer_address: _peer(p) for p in old.peers}
    new_specs = {p.endpoint.peer_address: p for p in new.peers}
    new_peers = {a: _peer(p) for a, p in new_specs.items()}
    removed = [a for a, p in old_peers.items() if new_peers.get(a) != p]
    added = [new_specs[a] for a, p in new_peers.items() if old_peers.get(a) != p]
    unchanged = [a for a, p in new_peers.items() if old_peers.get(a) == p]
    # Export policy is applied live (the node's blocks are in it, and change often).
    old_export = {p.endpoint.peer_address: p.export_policy for p in old.peers}
    reexport = [
        new_specs[a] for a in unchanged if old_export[a] != new_specs[a].export_policy
    ]
    old_routes, new_routes = set(old.routes), set(new.routes)
    replan = devices = False
    if old.kernel is not None and new.kernel is not None:
        k0, k1 = old.kernel, new.kernel
        devices = _devices(k0) != _devices(k1)
        replan = devices or (k0.pools, k0.subnets, k0.vteps, k0.reject) != (
            k1.pools, k1.subnets, k1.vteps, k1.reject
        )
    return ConfigDiff(
        removed=tuple(removed),
        added=tuple(added),
        withdrawn=tuple(r for r in old.routes if r not in new_routes),
        originated=tuple(r for r in new.routes if r not in old_routes),
        replan=replan,
        devices=devices,
        unchanged_peers=tuple(unchanged),
        reexport=tuple(reexport),
    )
