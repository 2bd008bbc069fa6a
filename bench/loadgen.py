"""A cheap BGP load generator: many sessions from one asyncio process.

    python -m bench.loadgen --target 127.0.0.1 --port 179 --count 1000

Session ``i`` connects from its own source address (``source_address(i)``, in
127.1.0.0/16, so every address is local in a fresh network namespace), sends an
OPEN (AS 65100, hold time 9, BGP Identifier 10.x.y.z unique per session,
capabilities multiprotocol IPv4 unicast, 4-octet AS, route refresh), answers
the speaker's OPEN with a KEEPALIVE, and counts itself established when the
speaker's KEEPALIVE after its OPEN arrives.  From then on it sends a KEEPALIVE
every ``--keepalive`` seconds at a random phase, so the load is spread evenly
over the interval rather than fired in one burst, and checks the speaker's
messages against the hold time.

The generator must cost far less than the speaker it loads, so it does no BGP
decoding: it frames by hand (length and type from the header) and only tells
OPEN, KEEPALIVE, NOTIFICATION and the rest apart.

At most ``--in-flight`` sessions are between ``connect()`` and established at
any time.  Without a limit a thousand SYNs arrive at once and the speaker's
listen backlog (BIRD's is 8) decides how many are dropped and retried after the
kernel's one-second SYN timeout, which is not what the benchmark measures.

Output is JSON lines on stdout:

* ``{"event": "established", "complete": true, "count": N, "seconds": ...}`` once
  every session is up (``complete`` false if ``--establish-timeout`` passed
  first); ``seconds`` runs from the first connect to the last established;
* ``{"event": "counters", ...}`` on SIGUSR1: sessions up, KEEPALIVEs sent and
  received so far, errors; the caller brackets a measuring window with two;
* ``{"event": "done", ...}`` on SIGTERM/SIGINT or after ``--duration``: the
  same counters, plus samples of what went wrong.

Every NOTIFICATION, disconnect, failed connect or hold-time expiry is counted
by kind; a session that fails is not retried, so ``up`` at the end shows
exactly how many survived.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import signal
import socket
import struct
import sys
import time
from collections import Counter

from bgpd.messages import (
    IPV4_UNICAST,
    FourOctetAs,
    Multiprotocol,
    Open,
    RouteRefreshCapability,
    SessionContext,
    encode_message,
)

HEADER_LEN = 19
MARKER = b"\xff" * 16
KEEPALIVE = MARKER + struct.pack(">HB", HEADER_LEN, 4)
OPEN, UPDATE, NOTIFICATION, KEEPALIVE_TYPE = 1, 2, 3, 4
#: Where the BGP Identifier sits in an encoded OPEN: header, version, My AS, hold.
BGP_ID_OFFSET = HEADER_LEN + 1 + 2 + 2
#: Samples of errors kept for the report; the counts cover all of them.
MAX_SAMPLES = 10


def source_address(index: int) -> str:
    """Session ``index``'s source address: 127.1.0.1 upward, skipping .0 and .251-.255."""
    high, low = divmod(index, 250)
    if high > 255:
        raise ValueError(f"session index {index} is beyond 127.1.255.250")
    return f"127.1.{high}.{low + 1}"


def open_template(asn: int, hold_time: int) -> bytes:
    """Our OPEN with a placeholder identifier, built once with the project's codec."""
    capabilities = (Multiprotocol(IPV4_UNICAST), FourOctetAs(asn), RouteRefreshCapability())
    return encode_message(Open.build(asn, hold_time, 1, capabilities), SessionContext())


class Generator:
    """All sessions, the counters, and the pacing of connection attempts."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.loop = asyncio.get_running_loop()
        self.template = open_template(args.asn, args.hold)
        self.slots = asyncio.Semaphore(args.in_flight)
        self.sessions: list[PeerProtocol] = []
        self.up = 0
        self.established_total = 0
        self.sent = 0
        self.received = 0
        self.errors: Counter[str] = Counter()
        self.samples: list[str] = []
        self.started = 0.0
        self.last_established = 0.0
        self.all_up = asyncio.Event()

    def open_for(self, index: int) -> bytes:
        msg = bytearray(self.template)
        # 10.0.0.1 upward: unique per session and never the speaker's own identifier.
        struct.pack_into(">I", msg, BGP_ID_OFFSET, 0x0A000001 + index)
        return bytes(msg)

    def error(self, kind: str, index: int, detail: str) -> None:
        self.errors[kind] += 1
        if len(self.samples) < MAX_SAMPLES:
            self.samples.append(f"{source_address(index)}: {kind}: {detail}")

    def established(self) -> None:
        self.up += 1
        self.established_total += 1
        self.last_established = time.monotonic()
        if self.established_total == self.args.count:
            self.all_up.set()

    def counters(self, event: str) -> dict[str, object]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "event": event,
            "t": round(time.monotonic() - self.started, 6),
            "up": self.up,
            "established": self.established_total,
            "keepalives_sent": self.sent,
            "keepalives_received": self.received,
            "errors": dict(self.errors),
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
        }

    async def connect(self, index: int) -> None:
        await self.slots.acquire()
        try:
            _transport, protocol = await asyncio.wait_for(
                self.loop.create_connection(
                    lambda: PeerProtocol(self, index),
                    self.args.target,
                    self.args.port,
                    local_addr=(source_address(index), 0),
                    family=socket.AF_INET,
                ),
                self.args.connect_timeout,
            )
        except (OSError, TimeoutError) as e:
            self.slots.release()
            self.error("connect-failed", index, repr(e))
            return
        self.sessions.append(protocol)

    async def run(self) -> None:
        self.started = time.monotonic()
        tasks = [self.loop.create_task(self.connect(i)) for i in range(self.args.count)]
        try:
            await asyncio.wait_for(self.all_up.wait(), self.args.establish_timeout)
            complete = True
        except TimeoutError:
            complete = False
        seconds = (self.last_established if complete else time.monotonic()) - self.started
        report = self.counters("established")
        report.update(complete=complete, count=self.established_total, seconds=round(seconds, 6))
        emit(report)
        await asyncio.gather(*tasks, return_exceptions=True)

    def close(self) -> None:
        for s in self.sessions:
            s.close()


class PeerProtocol(asyncio.Protocol):
    """One session: OPEN, KEEPALIVE, then keepalives until told to stop."""

    __slots__ = (
        "buffer",
        "closing",
        "gen",
        "holding_slot",
        "index",
        "last_heard",
        "state",
        "timer",
        "transport",
    )

    def __init__(self, gen: Generator, index: int) -> None:
        self.gen = gen
        self.index = index
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.state = "connecting"  # -> opensent -> openconfirm -> established -> down
        self.holding_slot = True
        self.closing = False
        self.timer: asyncio.TimerHandle | None = None
        self.last_heard = 0.0

    def release_slot(self) -> None:
        if self.holding_slot:
            self.holding_slot = False
            self.gen.slots.release()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.last_heard = self.gen.loop.time()
        self.state = "opensent"
        transport.write(self.gen.open_for(self.index))

    def data_received(self, data: bytes) -> None:
        buf = self.buffer + data if self.buffer else data
        pos = 0
        end = len(buf)
        while end - pos >= HEADER_LEN:
            length = (buf[pos + 16] << 8) | buf[pos + 17]
            if length < HEADER_LEN:
                self.fail("bad-length", f"header length {length}")
                return
            if end - pos < length:
                break
            mtype = buf[pos + 18]
            body = buf[pos + HEADER_LEN : pos + length]
            pos += length
            if not self.message(mtype, body):
                return
        self.buffer = buf[pos:]

    def message(self, mtype: int, body: bytes) -> bool:
        """Handle one message; False when the session ended."""
        gen = self.gen
        self.last_heard = gen.loop.time()
        if mtype == KEEPALIVE_TYPE:
            if self.state == "established":
                gen.received += 1
            elif self.state == "openconfirm":
                self.state = "established"
                self.release_slot()
                gen.established()
                # A random first phase spreads the sessions' keepalives evenly.
                delay = random.uniform(0.0, gen.args.keepalive)
                self.timer = gen.loop.call_later(delay, self.tick)
            else:
                self.fail("fsm", f"KEEPALIVE in {self.state}")
                return False
        elif mtype == OPEN:
            if self.state != "opensent":
                self.fail("fsm", f"OPEN in {self.state}")
                return False
            self.state = "openconfirm"
            if gen.args.release_on == "open":
                self.release_slot()
            assert self.transport is not None
            self.transport.write(KEEPALIVE)
        elif mtype == NOTIFICATION:
            code, subcode = (body[0], body[1]) if len(body) >= 2 else (0, 0)
            self.fail("notification", f"code {code} subcode {subcode} data {body[2:].hex()}")
            return False
        elif mtype != UPDATE:
            # No routes flow here; anything else (ROUTE-REFRESH) is unexpected.
            self.fail("unexpected", f"message type {mtype} in {self.state}")
            return False
        return True

    def tick(self) -> None:
        gen = self.gen
        if self.transport is None or self.state != "established":
            return
        now = gen.loop.time()
        if now - self.last_heard > gen.args.hold:
            self.fail("hold-expired", f"nothing from the speaker for {now - self.last_heard:.1f}s")
            return
        self.transport.write(KEEPALIVE)
        gen.sent += 1
        self.timer = gen.loop.call_at(now + gen.args.keepalive, self.tick)

    def fail(self, kind: str, detail: str) -> None:
        self.gen.error(kind, self.index, f"{detail} (in {self.state})")
        self.close()

    def close(self) -> None:
        """End the session without counting it as a fault (also used by ``fail``)."""
        self.closing = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.state == "established":
            self.gen.up -= 1
        self.state = "down"
        self.release_slot()
        if self.transport is not None:
            self.transport.abort()
            self.transport = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closing:
            return
        self.transport = None
        self.fail("disconnect", repr(exc) if exc else "closed by the speaker")


def emit(record: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


async def main_async(args: argparse.Namespace) -> None:
    gen = Generator(args)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, lambda: emit(gen.counters("counters")))
    runner = loop.create_task(gen.run())
    try:
        await asyncio.wait_for(stop.wait(), args.duration)
    except TimeoutError:
        pass
    report = gen.counters("done")
    report["samples"] = gen.samples
    emit(report)
    runner.cancel()
    gen.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.loadgen", description=__doc__.split("\n")[0])
    p.add_argument("--target", default="127.0.0.1")
    p.add_argument("--port", type=int, default=179)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--asn", type=int, default=65100)
    p.add_argument("--hold", type=int, default=9)
    p.add_argument("--keepalive", type=float, default=3.0)
    p.add_argument("--in-flight", type=int, default=200, help="sessions in handshake at once")
    p.add_argument("--release-on", default="established")
    p.add_argument("--connect-timeout", type=float, default=10.0)
    p.add_argument("--establish-timeout", type=float, default=60.0)
    p.add_argument("--duration", type=float, default=600.0, help="exit after this long")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
