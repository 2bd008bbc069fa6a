"""The asyncio driver that keeps one kernel table equal to a ``Fib``.

Two netlink sockets: one for requests and dumps (``RouteChannel``), one
subscribed to route, link and address events.  Work runs in slices of
``SLICE`` routes per pass of the event loop, so installing a full table does
not delay keepalives.  Nothing periodic: the table is read at start, and again
only when an event says the kernel may have dropped routes without telling
(an IPv4 interface going down removes its routes silently) or when the event
socket overflowed.

The events our own requests cause never reach us: a socket filter drops them
in the kernel (they carry our request socket's port ID), as they are a
hundred thousand datagrams for a full table.  Every change made by anyone
else does: a route of ours deleted or replaced by hand comes back.
"""

from __future__ import annotations

import asyncio
import errno as errnos
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from . import rtnl
from .channel import RouteChannel, group_mask, ignore_echoes, open_socket
from .fib import Fib, Op
from .rtnl import Dest, KernelRoute

log = logging.getLogger(__name__)

#: Routes planned and sent per pass of the event loop.
SLICE = 10_000

_GROUPS = group_mask(
    rtnl.RTNLGRP_LINK,
    rtnl.RTNLGRP_IPV4_IFADDR,
    rtnl.RTNLGRP_IPV6_IFADDR,
    rtnl.RTNLGRP_IPV4_ROUTE,
    rtnl.RTNLGRP_IPV6_ROUTE,
)

EventSink = Callable[..., None]


class KernelSync:
    """Keeps the kernel's table equal to ``fib.wanted``."""

    def __init__(
        self,
        fib: Fib,
        netns: str | None = None,
        on_event: EventSink | None = None,
        on_interfaces: Callable[[set[int], bool], None] | None = None,
    ) -> None:
        self.fib = fib
        self.netns = netns
        self._emit = on_event or (lambda event, **fields: None)
        #: Told the interfaces deleted, and whether an address was added, after
        #: each batch of events that has either (the tunnel devices follow them).
        self.on_interfaces = on_interfaces
        self._channel: RouteChannel | None = None
        self._events: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduled: asyncio.Handle | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._links: dict[int, bool] = {}
        self._buffer = bytearray(1 << 16)
        self.requests = 0
        self.failures = 0
        self.resyncs = 0

    async def start(self) -> None:
        """Open the sockets and read the table (events first, so nothing that
        happens during the dump is missed)."""
        self._loop = asyncio.get_running_loop()
        self._channel = RouteChannel(self.netns)
        self._events = open_socket(self.netns, _GROUPS)
        ignore_echoes(self._events, self._channel.portid)
        self._loop.add_reader(self._events.fileno(), self._on_events)
        self._resync()
        self._emit(
            "kernel-table",
            table=self.fib.table,
            ours=len(self.fib.installed),
            others=len(self.fib.foreign),
        )

    def close(self) -> None:
        """Stop; our routes stay in the kernel (Calico's ``persist``)."""
        if self._loop is not None and self._events is not None:
            self._loop.remove_reader(self._events.fileno())
        for handle in (self._scheduled, self._retry):
            if handle is not None:
                handle.cancel()
        if self._events is not None:
            self._events.close()
            self._events = None
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    # ------------------------------------------------------------ wanted

    def want(self, route: KernelRoute) -> None:
        self.fib.want(route)
        self._kick()

    def unwant(self, key: Dest) -> None:
        self.fib.unwant(key)
        self._kick()

    def converge(self) -> None:
        self.fib.converge()
        self._kick()

    @property
    def idle(self) -> bool:
        """Nothing left to send now (refused routes may still wait for a retry)."""
        return not self.fib.pending and self._scheduled is None

    # ----------------------------------------------------------- internals

    def _kick(self) -> None:
        if self._scheduled is None and self._loop is not None and self._channel is not None:
            self._scheduled = self._loop.call_soon(self._flush)

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _flush(self) -> None:
        self._scheduled = None
        channel = self._channel
        if channel is None:
            return
        now = self._now()
        ops = self.fib.plan(now, SLICE)
        if ops:
            self._send(channel, ops, now)
        if self.fib.pending:
            self._kick()
        self._arm_retry()

    def _send(self, channel: RouteChannel, ops: list[Op], now: float) -> None:
        by_seq: dict[int, Op] = {}
        requests = []
        for op in ops:
            seq = channel.next_seq()
            by_seq[seq] = op
            if op.delete:
                requests.append((seq, rtnl.encode_delete(op.route, seq)))
            else:
                requests.append((seq, rtnl.encode_add(op.route, seq, op.replace)))
        self.requests += len(requests)
        for failure in channel.apply(requests):
            if failure.seq not in by_seq:
                continue
            op = by_seq.pop(failure.seq)
            self.fib.result(op, failure.errno, failure.message, now)
            if not (op.delete and failure.errno == errnos.ESRCH):
                self.failures += 1
                self._emit(
                    "kernel-refused",
                    route=str(op.route),
                    op="delete" if op.delete else "add",
                    error=failure.message or os.strerror(failure.errno),
                    errno=failure.errno,
                )
        self.fib.done(by_seq.values())

    def _arm_retry(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        when = self.fib.next_retry()
        if when is not None and self._loop is not None:
            self._retry = self._loop.call_at(when, self._kick)

    def _resync(self) -> None:
        assert self._channel is not None
        self.resyncs += 1
        self.fib.observe_table(self._channel.dump_routes())
        self._kick()

    def _on_events(self) -> None:
        sock = self._events
        if sock is None:
            return
        resync = retry = address = False
        deleted: set[int] = set()
        buffer = self._buffer
        while True:
            try:
                # One event per datagram, a hundred thousand of them when we
                # write a full table: receive into one buffer, not a new one each.
                n = sock.recv_into(buffer)
                data = bytes(buffer[:n])
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errnos.ENOBUFS:  # events were lost: read the table
                    resync = True
                    continue
                raise
            for kind, _flags, _seq, body in rtnl.split(data):
                if kind in (rtnl.RTM_NEWROUTE, rtnl.RTM_DELROUTE):
                    route = rtnl.decode_route(body)
                    if route is not None:
                        self.fib.observe(route, kind == rtnl.RTM_NEWROUTE)
                elif kind in (rtnl.RTM_NEWLINK, rtnl.RTM_DELLINK):
                    link = rtnl.decode_link(body)
                    up = link.up and kind == rtnl.RTM_NEWLINK
                    if kind == rtnl.RTM_DELLINK:
                        deleted.add(link.ifindex)
                    was = self._links.get(link.ifindex)
                    self._links[link.ifindex] = up
                    if was is not None and was != up:
                        resync = True
                        retry = retry or up
                    elif was is None and up:
                        retry = True
                elif kind == rtnl.RTM_NEWADDR:
                    retry = address = True
        if resync:
            self._resync()
        if retry:
            self.fib.retry_now()
        self._kick()
        if (deleted or address) and self.on_interfaces is not None:
            self.on_interfaces(deleted, address)

    def status(self) -> dict[str, Any]:
        """For the status API: counts and the routes the kernel refuses."""
        fib = self.fib
        return {
            "table": fib.table,
            "protocol": fib.protocol,
            "wanted": len(fib.wanted),
            "installed": len(fib.installed),
            "blocked": len(fib.foreign & fib.wanted.keys()),
            "converged": fib.converged,
            "refused": [
                {"route": str(fib.wanted[k]), "errno": r.errno, "error": r.text}
                for k, r in fib.refused.items()
                if k in fib.wanted
            ],
        }
