"""The wanted and the installed routes of one kernel table, and the requests that
bring the second to the first (no I/O: the driver feeds it what the kernel says
and sends what it plans).

Rules, as Calico's BIRD kernel protocol with ``persist`` and graceful restart
behaves (CALICO.md §1.7, §6.1):

- Only routes of our protocol number in our table are ours.  Another
  protocol's route with the same destination and metric is never replaced:
  the key is left to it (``blocked``) and taken when it goes.
- At start the table is read: our routes that are still wanted are adopted
  as they are; the others are removed only after ``converged`` (End-of-RIB
  from the peers, or the deferral timer), never before, so a restart drops
  no packets.  Our routes stay in the kernel when we stop.
- What the kernel reports (a dump, or an event: a route deleted by hand, a
  route gone with its interface) is compared with what is wanted, and the
  difference is planned again.  A refused request is reported and retried
  after a delay that doubles up to a minute; an interface coming up retries
  at once.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from .rtnl import IP6_DEFAULT_METRIC, RT_TABLE_MAIN, RTPROT_BIRD, Dest, KernelRoute, NextHop

RETRY_FIRST = 1.0
RETRY_MAX = 60.0


def _hop_matches(want: NextHop, have: NextHop) -> bool:
    # An interface left to the kernel (0) matches the one it chose.
    return (
        want.gateway == have.gateway
        and want.onlink == have.onlink
        and want.weight == have.weight
        and (not want.ifindex or want.ifindex == have.ifindex)
    )


def matches(want: KernelRoute, have: KernelRoute) -> bool:
    """Whether the kernel's ``have`` is what ``want`` asked for."""
    if want.type != have.type or want.protocol != have.protocol:
        return False
    if len(want.nexthops) != len(have.nexthops):
        return False
    left = list(have.nexthops)
    for hop in want.nexthops:
        for i, other in enumerate(left):
            if _hop_matches(hop, other):
                del left[i]
                break
        else:
            return False
    return True


class Op(NamedTuple):
    """A planned request: ``route`` added (replacing ours when ``replace``) or
    deleted.  (A tuple: a full table plans a hundred thousand of them.)"""

    delete: bool
    route: KernelRoute
    replace: bool = False


@dataclass(slots=True)
class Refusal:
    """Why the kernel refused a route last time, and when to try again."""

    errno: int
    text: str
    retry_at: float
    delay: float


class Fib:
    """Our routes in one table: wanted, installed, and the difference."""

    def __init__(
        self, table: int = RT_TABLE_MAIN, protocol: int = RTPROT_BIRD, metric: int = 0
    ) -> None:
        self.table = table
        self.protocol = protocol
        self.metric = metric
        self.wanted: dict[Dest, KernelRoute] = {}
        self.installed: dict[Dest, KernelRoute] = {}
        #: Keys held by another protocol's route: ours waits for it to go.
        self.foreign: set[Dest] = set()
        self.refused: dict[Dest, Refusal] = {}
        self.converged = False
        self._dirty: set[Dest] = set()

    # ------------------------------------------------------------ wanted

    def route(self, family: int, dst: bytes, dst_len: int, **fields: object) -> KernelRoute:
        """A route of this table, protocol and metric."""
        return KernelRoute(
            family, dst, dst_len, table=self.table, protocol=self.protocol,
            metric=self.metric, **fields,  # type: ignore[arg-type]
        )  # fmt: skip

    def want(self, route: KernelRoute) -> None:
        key = route.dest
        old = self.wanted.get(key)
        if old is None or old != route:
            self.wanted[key] = route
            self.refused.pop(key, None)
            self._dirty.add(key)

    def unwant(self, key: Dest) -> None:
        if self.wanted.pop(key, None) is not None:
            self.refused.pop(key, None)
            self._dirty.add(key)

    def converge(self) -> None:
        """Initial convergence reached: stale routes of ours may now go."""
        if not self.converged:
            self.converged = True
            self._dirty.update(k for k in self.installed if k not in self.wanted)

    # ----------------------------------------------------- what the kernel says

    def _mine(self, route: KernelRoute) -> bool | None:
        """True for our route, False for another's at a key we may want, None
        for a route of another table or metric (not our business)."""
        if route.table != self.table or route.metric != self._metric(route):
            return None
        return route.protocol == self.protocol

    def _metric(self, route: KernelRoute) -> int:
        # IPv6 stores "no metric" as 1024; KernelRoute normalises ours the same way.
        if self.metric == 0 and route.family == socket.AF_INET6:
            return IP6_DEFAULT_METRIC
        return self.metric

    def observe(self, route: KernelRoute, present: bool) -> None:
        """A route event (RTM_NEWROUTE / RTM_DELROUTE)."""
        mine = self._mine(route)
        if mine is None:
            return
        key = route.dest
        if mine:
            if present:
                self.installed[key] = route
            else:
                self.installed.pop(key, None)
        elif present:
            self.foreign.add(key)
        else:
            self.foreign.discard(key)
            self.refused.pop(key, None)
        self._dirty.add(key)

    def observe_table(self, routes: list[KernelRoute]) -> None:
        """A full dump: it replaces what we believed was installed."""
        installed: dict[Dest, KernelRoute] = {}
        foreign: set[Dest] = set()
        for route in routes:
            mine = self._mine(route)
            if mine is None:
                continue
            if mine:
                installed[route.dest] = route
            else:
                foreign.add(route.dest)
        changed = {k for k in self.installed.keys() ^ installed.keys()}
        changed.update(k for k, r in installed.items() if self.installed.get(k) != r)
        changed.update(self.foreign ^ foreign)
        self.installed, self.foreign = installed, foreign
        self._dirty.update(changed)
        self._dirty.update(self.wanted.keys() - installed.keys())

    def retry_now(self) -> None:
        """Something that can make refused routes work happened (an interface
        or address came up): try them all again at once."""
        self._dirty.update(self.refused)
        self.refused.clear()

    # ----------------------------------------------------------- planning

    @property
    def pending(self) -> bool:
        return bool(self._dirty)

    def next_retry(self) -> float | None:
        return min((r.retry_at for r in self.refused.values()), default=None)

    def plan(self, now: float, limit: int = 1 << 30) -> list[Op]:
        """Requests for up to ``limit`` keys whose state differs from what is wanted."""
        for key, waiting in list(self.refused.items()):
            if waiting.retry_at <= now:
                self._dirty.add(key)
        ops: list[Op] = []
        while self._dirty and len(ops) < limit:
            key = self._dirty.pop()
            want = self.wanted.get(key)
            have = self.installed.get(key)
            refusal = self.refused.get(key)
            if refusal is not None and refusal.retry_at > now:
                continue
            if want is not None:
                if have is not None and matches(want, have):
                    continue
                if have is None and key in self.foreign:
                    continue  # blocked: another protocol holds the key
                ops.append(Op(False, want, replace=have is not None))
            elif have is not None and self.converged:
                ops.append(Op(True, have))
        return ops

    def done(self, ops: Iterable[Op]) -> None:
        """The kernel carried out all of ``ops`` (``result`` with errno 0 for
        each, in one pass)."""
        installed, refused = self.installed, self.refused
        for delete, route, _replace in ops:
            key = route.dest
            if delete:
                installed.pop(key, None)
            else:
                installed[key] = route
                if refused:
                    refused.pop(key, None)

    def result(self, op: Op, errno: int, text: str, now: float) -> None:
        """The kernel's answer to ``op`` (errno 0: done)."""
        key = op.route.dest
        if op.delete:
            if errno in (0, 3):  # done, or ESRCH: already gone
                self.installed.pop(key, None)
                return
        elif errno == 0:
            self.installed[key] = op.route
            self.refused.pop(key, None)
            return
        elif errno == 17 and key not in self.installed:  # EEXIST: another's route
            self.foreign.add(key)
        old = self.refused.get(key)
        delay = RETRY_FIRST if old is None else min(old.delay * 2, RETRY_MAX)
        self.refused[key] = Refusal(errno, text, now + delay, delay)
