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

The generator must cost far less than the speaker it loads, or it sets the pace
of establishment itself.  So it drives plain non-blocking sockets from event
loop callbacks (no transports, tasks or futures per session), does no BGP
decoding (it frames by hand and only tells OPEN, KEEPALIVE, NOTIFICATION and
the rest apart), and reports its own CPU time for establishment next to the
elapsed time, so a generator-bound run shows as one.

At most ``--in-flight`` connection attempts are outstanding at once: from
``connect()`` until the speaker's OPEN shows that it has accepted the
connection.  A connection the kernel has completed but the speaker has not yet
accepted waits in the listen backlog; once that is full the kernel drops SYNs
and the client retries after one second, then two, four and so on, so a burst
larger than the backlog measures listen()'s argument and TCP's retry timer, not
the speaker.  The default, 8, is the smaller backlog of the two speakers
compared (BIRD 2 listens with 8, ours with 1024).  The OPEN/KEEPALIVE exchange
after acceptance is not limited.

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
import contextlib
import errno
import json
import os
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
        self.target = (args.target, args.port)
        self.sessions: list[Peer] = []
        self.next_index = 0
        self.attempts = 0  # connections not yet accepted by the speaker
        self.launching = False
        self.up = 0
        self.established_total = 0
        self.sent = 0
        self.received = 0
        self.errors: Counter[str] = Counter()
        self.samples: list[str] = []
        self.started = 0.0
        self.cpu_start = 0.0
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

    def launch(self) -> None:
        """Start connection attempts up to the in-flight limit."""
        if self.launching:
            return  # a connect() failing at once calls back here: the loop below goes on
        self.launching = True
        try:
            while self.attempts < self.args.in_flight and self.next_index < self.args.count:
                index = self.next_index
                self.next_index += 1
                self.attempts += 1
                peer = Peer(self, index)
                self.sessions.append(peer)
                peer.connect()
        finally:
            self.launching = False

    def attempt_over(self) -> None:
        self.attempts -= 1
        self.launch()

    async def run(self) -> None:
        self.started = time.monotonic()
        self.cpu_start = time.process_time()
        self.launch()
        try:
            await asyncio.wait_for(self.all_up.wait(), self.args.establish_timeout)
            complete = True
        except TimeoutError:
            complete = False
        seconds = (self.last_established if complete else time.monotonic()) - self.started
        report = self.counters("established")
        report.update(
            complete=complete,
            count=self.established_total,
            seconds=round(seconds, 6),
            # Near ``seconds`` would mean the generator, not the speaker, set the pace.
            establish_cpu_seconds=round(time.process_time() - self.cpu_start, 3),
        )
        emit(report)

    def close(self) -> None:
        for s in self.sessions:
            s.close()


class Peer:
    """One session on a non-blocking socket: OPEN, KEEPALIVE, then keepalives."""

    __slots__ = (
        "attempting",
        "buffer",
        "fd",
        "gen",
        "index",
        "last_heard",
        "sock",
        "state",
        "timer",
    )

    def __init__(self, gen: Generator, index: int) -> None:
        self.gen = gen
        self.index = index
        self.sock: socket.socket | None = None
        self.fd = -1
        self.buffer = b""
        self.state = "connecting"  # -> opensent -> openconfirm -> established -> down
        self.attempting = True
        self.timer: asyncio.TimerHandle | None = None
        self.last_heard = 0.0

    def connect(self) -> None:
        gen = self.gen
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock = sock
        self.fd = sock.fileno()
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((source_address(self.index), 0))
            err = sock.connect_ex(gen.target)
        except OSError as e:
            self.fail("connect-failed", repr(e))
            return
        if err not in (0, errno.EINPROGRESS):
            self.fail("connect-failed", os.strerror(err))
            return
        self.timer = gen.loop.call_later(gen.args.connect_timeout, self.connect_timed_out)
        # Over loopback the handshake completes inside connect() unless the
        # speaker's backlog is full, so the OPEN can usually go at once: that
        # saves a writer registration per session, a fifth of our cost.
        try:
            sent = sock.send(gen.open_for(self.index))
        except BlockingIOError:
            gen.loop.add_writer(self.fd, self.connected)
            return
        except OSError as e:
            self.fail("connect-failed", repr(e))
            return
        if sent != len(gen.template):
            self.fail("disconnect", "OPEN not sent whole")
            return
        self.opened()

    def connect_timed_out(self) -> None:
        self.timer = None
        self.fail("connect-timeout", f"not accepted within {self.gen.args.connect_timeout}s")

    def connected(self) -> None:
        """The writer callback, for a connect() that did not complete at once."""
        gen = self.gen
        assert self.sock is not None
        gen.loop.remove_writer(self.fd)
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self.fail("connect-failed", os.strerror(err))
            return
        if self.send(gen.open_for(self.index)):
            self.opened()

    def opened(self) -> None:
        self.state = "opensent"
        self.last_heard = self.gen.loop.time()
        self.gen.loop.add_reader(self.fd, self.readable)

    def send(self, data: bytes) -> bool:
        assert self.sock is not None
        try:
            # A few dozen octets every few seconds always fit the send buffer.
            if self.sock.send(data) == len(data):
                return True
            detail = "send buffer full"
        except OSError as e:
            detail = repr(e)
        self.fail("disconnect", detail)
        return False

    def readable(self) -> None:
        assert self.sock is not None
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as e:
            self.fail("disconnect", repr(e))
            return
        if not data:
            self.fail("disconnect", "closed by the speaker")
            return
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
                gen.established()
                # A random first phase spreads the sessions' keepalives evenly.
                delay = random.uniform(0.0, gen.args.keepalive)
                self.timer = gen.loop.call_later(delay, self.tick)
            else:
                self.fail("fsm", "KEEPALIVE")
                return False
        elif mtype == OPEN:
            if self.state != "opensent":
                self.fail("fsm", "OPEN")
                return False
            self.state = "openconfirm"
            self.attempt_over()
            return self.send(KEEPALIVE)
        elif mtype == NOTIFICATION:
            code, subcode = (body[0], body[1]) if len(body) >= 2 else (0, 0)
            self.fail("notification", f"code {code} subcode {subcode} data {body[2:].hex()}")
            return False
        elif mtype != UPDATE:
            # No routes flow here; anything else (ROUTE-REFRESH) is unexpected.
            self.fail("unexpected", f"message type {mtype}")
            return False
        return True

    def attempt_over(self) -> None:
        """The speaker accepted (or the attempt failed): free the in-flight slot."""
        if self.attempting:
            self.attempting = False
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            self.gen.attempt_over()

    def tick(self) -> None:
        gen = self.gen
        self.timer = None
        if self.state != "established":
            return
        now = gen.loop.time()
        if now - self.last_heard > gen.args.hold:
            self.fail("hold-expired", f"nothing from the speaker for {now - self.last_heard:.1f}s")
            return
        if self.send(KEEPALIVE):
            gen.sent += 1
            self.timer = gen.loop.call_at(now + gen.args.keepalive, self.tick)

    def fail(self, kind: str, detail: str) -> None:
        self.gen.error(kind, self.index, f"{detail} (in {self.state})")
        self.close()

    def close(self) -> None:
        """End the session; counted as a fault only when ``fail`` calls it."""
        if self.state == "down":
            return
        if self.state == "established":
            self.gen.up -= 1
        self.state = "down"
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.attempt_over()
        if self.sock is not None:
            self.gen.loop.remove_reader(self.fd)
            self.gen.loop.remove_writer(self.fd)
            self.sock.close()
            self.sock = None


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
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), args.duration)
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
    p.add_argument(
        "--in-flight", type=int, default=8, help="connection attempts not yet accepted, at most"
    )
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
