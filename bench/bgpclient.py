"""BGP sessions for the RIB benchmarks: feeders that send prepared UPDATE streams
and receivers that keep the table they are sent, with no RIB of their own.

    python -m bench.bgpclient --target 198.18.0.1 --asn 65001 --peer-as 65000 \
        --source 198.18.0.2 [--source ...]

One session per ``--source`` address, each active, with 4-octet AS and IPv4
unicast.  Commands arrive on stdin, one per line; reports leave on stdout as
JSON lines:

- ``send I FILE``: session I sends the file's bytes (encoded UPDATEs, as made
  by ``bench.ribdata``); reports ``sent`` with the wall times around the write.
- ``expect N MARKED I J ...``: report ``reached`` with the time of the last
  change once every listed session holds exactly N prefixes, MARKED of them
  carrying the marker community (``--marker``).
- ``quit``.

Startup reports ``established`` per session, with the wall time (``time.time``,
the clock the speakers' own event lines use).  A session that ends reports
``down`` and the process exits non-zero: a benchmark must not time a table
that a dropped session left half-sent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import struct
import sys
import time
from collections.abc import Callable

from bench.loadgen import KEEPALIVE
from bgpd.messages import (
    IPV4_UNICAST,
    FourOctetAs,
    Multiprotocol,
    Open,
    RouteRefreshCapability,
    SessionContext,
    encode_message,
)


def emit(**record: object) -> None:
    print(json.dumps(record), flush=True)


class Table:
    """What one receiving session holds: prefix -> marked."""

    def __init__(self, marker: int) -> None:
        self.routes: dict[bytes, bool] = {}
        self.marked = 0
        self.marker = struct.pack(">I", marker)
        self.changed = 0.0

    def update(self, body: bytes) -> None:
        """One UPDATE body (RFC 4271 §4.3), IPv4 only, no ADD-PATH."""
        routes = self.routes
        wlen = int.from_bytes(body[0:2], "big")
        i, end = 2, 2 + wlen
        while i < end:
            n = (body[i] + 7) // 8 + 1
            old = routes.pop(body[i : i + n], None)
            if old:
                self.marked -= 1
            i += n
        alen = int.from_bytes(body[end : end + 2], "big")
        i = end + 2
        attrs_end = i + alen
        marked = False
        while i < attrs_end:
            flags, code = body[i], body[i + 1]
            if flags & 0x10:
                length = int.from_bytes(body[i + 2 : i + 4], "big")
                i += 4
            else:
                length = body[i + 2]
                i += 3
            if code == 8:  # COMMUNITIES
                value = body[i : i + length]
                marked = any(value[j : j + 4] == self.marker for j in range(0, length, 4))
            i += length
        i = attrs_end
        while i < len(body):
            n = (body[i] + 7) // 8 + 1
            key = body[i : i + n]
            old = routes.get(key)
            if old:
                self.marked -= 1
            routes[key] = marked
            if marked:
                self.marked += 1
            i += n
        self.changed = time.time()


class Session(asyncio.Protocol):
    def __init__(self, index: int, args: argparse.Namespace, on_change: Callable[[], None]):
        self.index = index
        self.args = args
        self.on_change = on_change
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.opened = False
        self.up = asyncio.Event()
        self.table = Table(args.marker)
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        caps = (Multiprotocol(IPV4_UNICAST), FourOctetAs(self.args.asn), RouteRefreshCapability())
        rid = struct.unpack(">I", socket.inet_aton(self.args.sources[self.index]))[0]
        msg = Open.build(self.args.asn, self.args.hold, rid, caps)
        transport.write(encode_message(msg, SessionContext()))

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos = 0
        changed = False
        while len(buf) - pos >= 19:
            length = int.from_bytes(buf[pos + 16 : pos + 18], "big")
            if len(buf) - pos < length:
                break
            kind = buf[pos + 18]
            if kind == 2:
                self.table.update(bytes(buf[pos + 19 : pos + length]))
                changed = True
            elif kind == 1:
                assert self.transport is not None
                self.transport.write(KEEPALIVE)
            elif kind == 4 and not self.opened:
                self.opened = True
                self.up.set()
            elif kind == 3:
                emit(
                    event="notification",
                    session=self.index,
                    data=bytes(buf[pos : pos + length]).hex(),
                )
            pos += length
        del buf[:pos]
        if changed:
            self.on_change()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    async def keepalives(self) -> None:
        while True:
            await asyncio.sleep(self.args.hold / 3)
            if self.transport is not None:
                self.transport.write(KEEPALIVE)


class Client:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sessions: list[Session] = []
        self.expect: tuple[int, int, list[int]] | None = None
        self.tasks: list[asyncio.Task[None]] = []

    def check(self) -> None:
        if self.expect is None:
            return
        count, marked, which = self.expect
        tables = [self.sessions[i].table for i in which]
        if all(len(t.routes) == count and t.marked == marked for t in tables):
            self.expect = None
            emit(event="reached", t=max(t.changed for t in tables))

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for i, source in enumerate(self.args.sources):
            sock = socket.socket()
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((source, 0))
            sock.setblocking(False)
            await loop.sock_connect(sock, (self.args.target, self.args.port))
            _t, session = await loop.create_connection(
                lambda i=i: Session(i, self.args, self.check), sock=sock
            )
            self.sessions.append(session)
        for s in self.sessions:
            await asyncio.wait_for(s.up.wait(), 60)
            emit(event="established", session=s.index, t=time.time())
            self.tasks.append(loop.create_task(s.keepalives()))
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        closed = [s.closed for s in self.sessions]
        while True:
            line_task = asyncio.ensure_future(reader.readline())
            done, _ = await asyncio.wait([line_task, *closed], return_when=asyncio.FIRST_COMPLETED)
            if line_task not in done:
                down = [s.index for s in self.sessions if s.closed.done()]
                emit(event="down", sessions=down)
                raise SystemExit(1)
            words = line_task.result().decode().split()
            if not words or words[0] == "quit":
                return
            if words[0] == "send":
                session = self.sessions[int(words[1])]
                with open(words[2], "rb") as f:
                    data = f.read()
                start = time.time()
                assert session.transport is not None
                session.transport.write(data)
                emit(event="sent", session=session.index, start=start, end=time.time())
            elif words[0] == "expect":
                self.expect = (int(words[1]), int(words[2]), [int(w) for w in words[3:]])
                self.check()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.bgpclient")
    parser.add_argument("--target", required=True)
    parser.add_argument("--port", type=int, default=179)
    parser.add_argument("--asn", type=int, required=True)
    parser.add_argument("--hold", type=int, default=90)
    parser.add_argument("--marker", type=int, default=65001 << 16 | 777)
    parser.add_argument("--source", dest="sources", action="append", required=True)
    args = parser.parse_args(argv)
    asyncio.run(Client(args).run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
