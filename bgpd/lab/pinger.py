"""A ping flood that can be stopped without losing the answer to its last ping:
``python -m bgpd.lab.pinger TARGET [--interval S] [--count N] [--linger S]``,
run inside a pod's namespace (``ip netns exec``; a raw ICMP socket needs root).

``ping -i`` stopped by SIGINT counts the echo still in flight as lost, so a
flood that must run "until the cluster has re-converged" (an unknown time)
could not prove that *no* packet was lost.  This one sends an ICMP echo every
``interval`` seconds until ``count`` are sent or SIGTERM/SIGINT arrives; then
it stops sending, waits up to ``linger`` seconds for the replies still due, and
prints the result.

Output, one JSON object per line on standard output: progress every 0.2 s
(``{"sent": N, "received": M}``) and, last, the result with ``"done": true``,
the sequence numbers never answered (``lost``, the first 100), duplicates, and
the longest run of consecutive losses in milliseconds of sending time
(``gap_ms``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import socket
import struct
import sys
import time

ECHO_REQUEST, ECHO_REPLY = 8, 0
PROGRESS_EVERY = 0.2
_HEADER = struct.Struct("!BBHHH")


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo(ident: int, seq: int) -> bytes:
    payload = struct.pack("!d", time.monotonic()) + b"bgpd-lab" * 4
    header = _HEADER.pack(ECHO_REQUEST, 0, 0, ident, seq)
    return _HEADER.pack(ECHO_REQUEST, 0, checksum(header + payload), ident, seq) + payload


def parse_reply(packet: bytes, ident: int) -> int | None:
    """The sequence number of an echo reply to us in a raw IPv4 packet, else None."""
    if len(packet) < 20:
        return None
    offset = (packet[0] & 0x0F) * 4
    if len(packet) < offset + _HEADER.size:
        return None
    kind, _code, _sum, rid, seq = _HEADER.unpack_from(packet, offset)
    if kind != ECHO_REPLY or rid != ident:
        return None
    return int(seq)


class Flood:
    def __init__(self, target: str, interval: float, count: int, linger: float) -> None:
        self.target = target
        self.interval = interval
        self.count = count
        self.linger = linger
        self.ident = os.getpid() & 0xFFFF
        self.sent_at: dict[int, float] = {}  # outstanding: seq -> send time
        self.answered: set[int] = set()
        self.duplicates = 0
        self.sent = 0
        self.stop = False
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)

    def _send(self, now: float) -> None:
        seq = self.sent & 0xFFFF
        # A sequence number reused after 65,536 pings: the old one is long settled.
        self.sent_at[seq] = now
        self.sent += 1
        # No route at this instant: counted as sent and, unanswered, as lost.
        with contextlib.suppress(OSError):
            self.sock.sendto(echo(self.ident, seq), (self.target, 0))

    def _receive(self) -> None:
        while True:
            try:
                packet = self.sock.recv(65535)
            except BlockingIOError:
                return
            seq = parse_reply(packet, self.ident)
            if seq is None:
                continue
            if self.sent_at.pop(seq, None) is None:
                if seq in self.answered:
                    self.duplicates += 1
                continue
            self.answered.add(seq)

    def run(self) -> dict[str, object]:
        start = time.monotonic()
        next_send = start
        next_progress = start + PROGRESS_EVERY
        while not self.stop and (self.count <= 0 or self.sent < self.count):
            now = time.monotonic()
            if now >= next_send:
                self._send(now)
                next_send += self.interval
                if next_send < now - 1:  # the process was descheduled: no burst to catch up
                    next_send = now
            if now >= next_progress:
                self._progress()
                next_progress = now + PROGRESS_EVERY
            ready, _, _ = select.select([self.sock], [], [], max(0.0, next_send - time.monotonic()))
            if ready:
                self._receive()
        deadline = time.monotonic() + self.linger
        while self.sent_at and time.monotonic() < deadline:
            ready, _, _ = select.select([self.sock], [], [], deadline - time.monotonic())
            if ready:
                self._receive()
        lost = sorted(self.sent_at.items(), key=lambda item: item[1])
        return {
            "done": True, "target": self.target, "sent": self.sent,
            "received": self.sent - len(lost), "duplicates": self.duplicates,
            "lost": [seq for seq, _ in lost[:100]],
            "gap_ms": round(_longest_gap(lost, self.interval) * 1000, 1),
            "seconds": round(time.monotonic() - start, 3),
        }  # fmt: skip

    def _progress(self) -> None:
        received = self.sent - len(self.sent_at)
        print(json.dumps({"sent": self.sent, "received": received}), flush=True)


def _longest_gap(lost: list[tuple[int, float]], interval: float) -> float:
    """The longest stretch of consecutive losses, in seconds of sending time."""
    best = 0.0
    run_start = previous = None
    for _seq, at in lost:
        if previous is None or at - previous > 1.5 * interval:
            run_start = at
        previous = at
        assert run_start is not None
        best = max(best, at - run_start + interval)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bgpd.lab.pinger", description=__doc__)
    parser.add_argument("target")
    parser.add_argument("--interval", type=float, default=0.002, help="seconds between echoes")
    parser.add_argument("--count", type=int, default=0, help="stop after N (0: until told)")
    parser.add_argument("--linger", type=float, default=2.0, help="seconds to wait for replies")
    args = parser.parse_args(argv)
    flood = Flood(args.target, args.interval, args.count, args.linger)

    def stop(_signum: int, _frame: object) -> None:
        flood.stop = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(json.dumps(flood.run()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
