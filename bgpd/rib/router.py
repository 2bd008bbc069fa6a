"""The RIB of one speaker: Adj-RIBs-In, the Loc-RIB and Adj-RIBs-Out tied together
(RFC 4271 §3.2, §9).  Pure: it takes decoded UPDATEs and returns bytes to send.

- ``peer_up`` registers an established session: its importer, exporter and wire
  parameters; the current Loc-RIB is queued for it, then End-of-RIB (RFC 4724 §2).
- ``receive`` runs an UPDATE through Adj-RIB-In, import, the decision process
  and export, staging what each peer must now be told.
- ``originate`` / ``withdraw`` handle this speaker's own routes.
- ``peer_down`` withdraws what the peer contributed.  Large tables are taken
  apart in slices by ``work(budget)``, so a peer leaving with a million routes
  does not stop the event loop (keepalives, the HTTP API) while it happens.
- ``peer_suspend`` is the graceful-restart case (RFC 4724 §4.2): the session is
  gone, nothing more is sent to the peer, but its routes stay candidates until
  the helper sweeps them (``apply``) or the peer comes back (``peer_up`` again,
  with the same Adj-RIB-In).
- ``take_output`` returns, per peer, the packed UPDATEs staged since the last
  call: one pass of the event loop produces one batch per peer, and prefixes
  that changed twice in between are sent once, in their final state.

Every change of a selection is also reported as a ``BestChange`` (from
``receive``, ``originate``, ``work``) for the kernel and the status API.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from bgpd.messages import (
    Family,
    PathAttributes,
    Prefix,
    RouteRefresh,
    SessionContext,
    Update,
    encode_message,
)

from .adj_in import AdjRibIn, Route, RouteChange, RouteKey
from .decision import DecisionOptions
from .export import Advert, AdvertCache, Exporter, ExportTarget
from .importing import Importer, ImportRules
from .loc import LocRib
from .path import LOCAL, BestChange, Path, Source
from .policy import Policy
from .updates import UpdateEncoder

#: Routes handled per slice of a large job (a peer going down, a table dump).
SLICE = 20_000


@dataclass
class PeerRib:
    """One established peer's view: what it sent, what it was sent, what is pending."""

    name: str
    importer: Importer
    exporter: Exporter
    context: SessionContext
    families: frozenset[Family]
    adj_in: AdjRibIn = field(default_factory=AdjRibIn)
    adj_out: dict[Family, dict[Prefix, Advert]] = field(default_factory=dict)
    pending: dict[Family, dict[Prefix, Advert | None]] = field(default_factory=dict)
    eor_due: list[Family] = field(default_factory=list)
    #: Families being re-sent after ROUTE-REFRESH: identical adverts go out again.
    resend: dict[Family, int] = field(default_factory=dict)
    #: False while suspended: routes kept, nothing exported or sent.
    up: bool = True


class Router:
    """Adj-RIBs-In, Loc-RIB, Adj-RIBs-Out of one speaker."""

    def __init__(self, local_as: int, router_id: int, options: DecisionOptions | None = None):
        self.local_as = local_as
        self.router_id = router_id
        self.loc = LocRib(options)
        self.peers: dict[str, PeerRib] = {}
        self.local_source = Source.origin(local_as, router_id)
        self.encoder = UpdateEncoder()
        self.adverts = AdvertCache()
        self._jobs: deque[Iterator[list[BestChange]]] = deque()
        #: Told every batch of selection changes (the kernel FIB follows them).
        self.on_best: Callable[[list[BestChange]], None] | None = None

    # ------------------------------------------------------------------ peers

    def peer_up(
        self,
        source: Source,
        rules: ImportRules,
        target: ExportTarget,
        families: frozenset[Family],
        context: SessionContext,
        *,
        four_octet: bool = True,
        adj_in: AdjRibIn | None = None,
    ) -> None:
        """An Established session: queue the Loc-RIB for it, then End-of-RIB.

        ``adj_in`` lets the caller own the Adj-RIB-In (the graceful-restart helper
        works on it); a suspended peer keeps the one it had."""
        old = self.peers.get(source.name)
        if old is not None and old.up:
            raise ValueError(f"peer {source.name} is already up")
        if old is not None:
            adj_in = old.adj_in
        peer = PeerRib(
            source.name,
            Importer(source, rules, four_octet),
            Exporter(target, self.adverts),
            context,
            families,
            adj_in if adj_in is not None else AdjRibIn(),
        )
        self.peers[source.name] = peer
        self._jobs.append(self._dump(peer))

    def peer_down(self, name: str) -> None:
        """The session ended: its routes leave the Loc-RIB (in slices, by ``work``).
        The Adj-RIB-In is emptied at once, so a new session can fill it meanwhile."""
        peer = self.peers.pop(name, None)
        if peer is None:
            return
        rib = peer.adj_in
        tables, rib.tables, rib.stale = rib.tables, {}, {}
        self._jobs.append(self._remove(name, tables))

    def set_export_policy(self, name: str, policy: Policy | None) -> None:
        """The peer's export policy changed (BIRD's soft reconfiguration, "reload
        out"): every selection is exported to it again under the new policy, in
        slices, and only what differs from what it was sent goes out."""
        peer = self.peers.get(name)
        if peer is None:
            return
        peer.exporter = Exporter(replace(peer.exporter.target, policy=policy), self.adverts)
        if peer.up:
            self._jobs.append(self._reexport(peer))

    def _reexport(self, peer: PeerRib) -> Iterator[list[BestChange]]:
        for family in sorted(peer.families):
            prefixes = set(self.loc.tables.get(family, {})) | set(peer.adj_out.get(family, {}))
            batch: list[BestChange] = []
            for prefix in prefixes:
                if self.peers.get(peer.name) is not peer or not peer.up:
                    return
                best = self.loc.best(family, prefix)
                batch.append(BestChange(family, prefix, best, (best,) if best else ()))
                if len(batch) == SLICE:
                    self._export_to(peer, batch)
                    batch = []
                    yield []
            self._export_to(peer, batch)
        yield []

    def peer_suspend(self, name: str) -> None:
        """The session ended gracefully: keep the routes, send nothing more."""
        peer = self.peers.get(name)
        if peer is not None:
            peer.up = False
            peer.adj_out = {}
            peer.pending = {}
            peer.eor_due = []
            peer.resend = {}

    @property
    def busy(self) -> bool:
        """True while sliced work is queued."""
        return bool(self._jobs)

    def work(self, budget: int = 1) -> list[BestChange]:
        """Run up to ``budget`` slices of queued jobs."""
        changes: list[BestChange] = []
        while budget > 0 and self._jobs:
            job = self._jobs[0]
            try:
                changes += next(job)
            except StopIteration:
                self._jobs.popleft()
                continue
            budget -= 1
        return changes

    # ----------------------------------------------------------------- routes

    def receive(self, name: str, update: Update) -> list[BestChange]:
        """An UPDATE from ``name`` (RFC 4271 §9): the selections it changed.

        Every prefix of an UPDATE shares one attribute set, so when import policy
        does not look at the prefix the candidate is made once and the Loc-RIB
        takes the whole group in one call."""
        peer = self.peers[name]
        importer, loc = peer.importer, self.loc
        best: list[BestChange] = []
        for family, keys, route in peer.adj_in.apply_grouped(update):
            if route is not None and not importer.uniform:
                for prefix, path_id in keys:
                    path = importer.admit(family, prefix, route)
                    change = loc.update(family, prefix, (name, path_id), path)
                    if change is not None:
                        best.append(change)
                continue
            path = None if route is None else importer.admit(family, keys[0][0], route)
            best += loc.update_many(family, name, keys, path)
        self._export_all(best)
        return best

    def originate(
        self, family: Family, prefix: Prefix, attributes: PathAttributes, next_hop: bytes = b""
    ) -> BestChange | None:
        """Announce our own route (next hop empty: "self" towards every peer)."""
        path = Path(attributes, next_hop, self.local_source)
        change = self.loc.update(family, prefix, (LOCAL, 0), path)
        if change is not None:
            self._export_all([change])
        return change

    def withdraw(self, family: Family, prefix: Prefix) -> BestChange | None:
        change = self.loc.update(family, prefix, (LOCAL, 0), None)
        if change is not None:
            self._export_all([change])
        return change

    def apply(self, name: str, changes: list[RouteChange]) -> list[BestChange]:
        """Changes the caller made to the peer's Adj-RIB-In itself: routes it
        applied from an UPDATE, or stale routes swept (graceful restart)."""
        peer = self.peers.get(name)
        if peer is None:
            return []
        return self._apply(peer, changes)

    def refresh(self, name: str, family: Family, enhanced: bool = False) -> None:
        """The peer asked for ``family`` again (RFC 2918 §4): everything it was sent
        is re-sent; with enhanced route refresh between BoRR and EoRR (RFC 7313 §4)."""
        peer = self.peers.get(name)
        if peer is None or not peer.up or family not in peer.families:
            return
        staged = peer.pending.setdefault(family, {})
        for prefix, advert in peer.adj_out.get(family, {}).items():
            staged.setdefault(prefix, advert)
        peer.resend[family] = 2 if enhanced else 1

    # ----------------------------------------------------------------- output

    def take_output(self, ready: Callable[[str], bool] | None = None) -> dict[str, bytes]:
        """Packed UPDATEs (and due End-of-RIB markers) per peer since the last call.

        Peers for which ``ready`` says False (a full send buffer, output held
        during our restart's selection deferral) keep their changes staged; a
        prefix that changes again meanwhile is sent once, in its last state."""
        self.encoder.new_batch()
        out: dict[str, bytes] = {}
        for name, peer in self.peers.items():
            if not peer.pending and not peer.eor_due:
                continue
            if ready is not None and not ready(name):
                continue
            data = bytearray()
            for family, staged in peer.pending.items():
                mode = peer.resend.pop(family, 0)
                if mode == 2:
                    data += encode_message(RouteRefresh(family, 1), peer.context)  # BoRR
                data += self._pack(peer, family, staged, force=mode > 0)
                if mode == 2:
                    data += encode_message(RouteRefresh(family, 2), peer.context)  # EoRR
            peer.pending = {}
            for family in peer.eor_due:
                data += _end_of_rib(family)
            peer.eor_due = []
            if data:
                out[name] = bytes(data)
        return out

    # -------------------------------------------------------------- internals

    def _apply(self, peer: PeerRib, changes: list[RouteChange]) -> list[BestChange]:
        loc, importer, name = self.loc, peer.importer, peer.name
        best: list[BestChange] = []
        for c in changes:
            prefix, path_id = c.key
            path = None if c.route is None else importer.admit(c.family, prefix, c.route)
            change = loc.update(c.family, prefix, (name, path_id), path)
            if change is not None:
                best.append(change)
        self._export_all(best)
        return best

    def _export_all(self, changes: list[BestChange]) -> None:
        """Stage ``changes`` for every peer that is up."""
        if changes:
            if self.on_best is not None:
                self.on_best(changes)
            for peer in self.peers.values():
                if peer.up:
                    self._export_to(peer, changes)

    @staticmethod
    def _export_to(peer: PeerRib, changes: list[BestChange]) -> None:
        """Stage what ``peer`` must be told about ``changes``: per peer, then per
        change, so one UPDATE's prefixes (which share a path) cost one export
        decision and a dictionary store each.  A peer is never sent its own
        paths back (§9.1.3), but what it was sent before they became best must
        be withdrawn."""
        name, families = peer.name, peer.families
        exporter = peer.exporter
        advert_of, uniform = exporter.advert, exporter.uniform
        family: Family | None = None
        wanted = False
        sent: dict[Prefix, Advert] = {}
        staged: dict[Prefix, Advert | None] = {}
        last: Path | None = None
        last_advert: Advert | None = None
        for change in changes:
            if change[0] != family:
                family = change[0]
                wanted = family in families
                if wanted:
                    sent = peer.adj_out.get(family) or {}
                    staged = peer.pending.setdefault(family, {})
                last = None
            if not wanted:
                continue
            prefix, best = change[1], change[2]
            if best is None:
                advert = None
            elif best is last:
                advert = last_advert
            else:
                own = best.source.name == name
                advert = None if own else advert_of(family, prefix, best)
                if uniform:
                    last, last_advert = best, advert
            if advert is None and prefix not in sent and prefix not in staged:
                continue
            staged[prefix] = advert

    @staticmethod
    def _stage(peer: PeerRib, family: Family, prefix: Prefix, advert: Advert | None) -> None:
        sent = peer.adj_out.get(family)
        staged = peer.pending.get(family)
        if staged is None:
            staged = peer.pending[family] = {}
        previous = sent.get(prefix) if sent is not None else None
        if advert is None and previous is None and prefix not in staged:
            return
        staged[prefix] = advert

    def _pack(
        self,
        peer: PeerRib,
        family: Family,
        staged: dict[Prefix, Advert | None],
        force: bool = False,
    ) -> bytes:
        sent = peer.adj_out.setdefault(family, {})
        get = sent.get
        withdraw: list[Prefix] = []
        groups: dict[int, tuple[Advert, list[Prefix]]] = {}
        # Staged prefixes come in runs that share an advert (one UPDATE's worth).
        last: Advert | None = None
        run: list[Prefix] = []
        for prefix, advert in staged.items():
            previous = get(prefix)
            if advert is None:
                if previous is not None:
                    del sent[prefix]
                    withdraw.append(prefix)
                continue
            unchanged = previous is not None and (previous is advert or previous == advert)
            if unchanged and not force:
                continue
            sent[prefix] = advert
            if advert is last:
                run.append(prefix)
                continue
            group = groups.get(id(advert))
            if group is None:
                run = []
                groups[id(advert)] = (advert, run)
            else:
                run = group[1]
            run.append(prefix)
            last = advert
        out = bytearray()
        ctx = peer.context
        if withdraw:
            for msg in self.encoder.withdraw(family, tuple(withdraw), ctx):
                out += msg
        for advert, prefixes in groups.values():
            for msg in self.encoder.announce(family, advert, tuple(prefixes), ctx):
                out += msg
        return bytes(out)

    def _dump(self, peer: PeerRib) -> Iterator[list[BestChange]]:
        """Queue the current selections for a new peer, a slice at a time.  A prefix
        that changed meanwhile was already staged by ``_export_all`` with its newer
        state, and is left alone."""
        for family in sorted(peer.families):
            table = self.loc.tables.get(family, {})
            for i, prefix in enumerate(list(table)):
                if self.peers.get(peer.name) is not peer or not peer.up:
                    return
                if i and i % SLICE == 0:
                    yield []
                best = self.loc.best(family, prefix)
                if best is None:
                    continue
                staged = peer.pending.get(family)
                if staged is not None and prefix in staged:
                    continue
                if prefix in peer.adj_out.get(family, {}):
                    continue
                advert = peer.exporter.advert(family, prefix, best)
                if advert is not None:
                    self._stage(peer, family, prefix, advert)
            peer.eor_due.append(family)
        yield []

    def _remove(
        self, name: str, tables: dict[Family, dict[RouteKey, Route]]
    ) -> Iterator[list[BestChange]]:
        """Withdraw a departed peer's routes from the Loc-RIB, a slice at a time.
        A key the peer's next session announced meanwhile is its own again."""
        loc = self.loc
        for family, table in tables.items():
            batch: list[BestChange] = []
            # The peer can only come back between slices.
            live = self.peers.get(name)
            for key in table:
                if live is not None and key in live.adj_in.tables.get(family, ()):
                    continue
                change = loc.update(family, key[0], (name, key[1]), None)
                if change is not None:
                    batch.append(change)
                if len(batch) >= SLICE:
                    self._export_all(batch)
                    yield batch
                    batch = []
                    live = self.peers.get(name)
            self._export_all(batch)
            yield batch


_EOR: dict[Family, bytes] = {}


def _end_of_rib(family: Family) -> bytes:
    """The End-of-RIB marker for ``family`` (RFC 4724 §2), encoded once."""
    found = _EOR.get(family)
    if found is None:
        found = _EOR[family] = encode_message(Update.end_of_rib(family), SessionContext())
    return found
