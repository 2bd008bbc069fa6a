"""NETLINK_ROUTE sockets: batched route requests, table dumps, and events.

rtnetlink handles a request inside the ``send`` that carries it, and one
datagram may carry many requests, which the kernel takes in order.  So a batch
is sent as large datagrams of concatenated requests, without waiting for any
acknowledgement in between; only errors come back (no NLM_F_ACK), each quoting
its request's sequence number, and the last request of each datagram asks for
an acknowledgement, which proves everything before it was handled.  That is
one system call per few thousand routes, where ``ip -batch`` makes two per
route.

A socket can be opened in a named network namespace: pyroute2 creates it in a
child process that entered the namespace and hands the descriptor back, so this
process never changes namespace itself.
"""

from __future__ import annotations

import ctypes
import os
import select
import socket
import struct
from collections.abc import Iterable, Iterator

from pyroute2.netns import create_socket  # type: ignore[import-untyped]

from . import rtnl
from .rtnl import Failure, KernelRoute

#: Bytes of requests per datagram: ~2,500 routes, handled in a few milliseconds.
DATAGRAM = 256 * 1024
_BUFFER = 8 * 1024 * 1024


def open_socket(netns: str | None = None, groups: int = 0) -> socket.socket:
    """A NETLINK_ROUTE socket (in ``netns`` when given), subscribed to ``groups``
    (a bit mask of RTNLGRP numbers), non-blocking, with large buffers and
    extended acknowledgements (the kernel's reason for a refusal, as text)."""
    if netns is None:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    else:
        sock = create_socket(
            netns, socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE, flags=0
        )
    try:
        for opt, force in ((socket.SO_SNDBUF, 32), (socket.SO_RCVBUF, 33)):
            try:
                sock.setsockopt(socket.SOL_SOCKET, force, _BUFFER)  # SO_*BUFFORCE
            except PermissionError:
                sock.setsockopt(socket.SOL_SOCKET, opt, _BUFFER)
        sock.setsockopt(rtnl.SOL_NETLINK, rtnl.NETLINK_EXT_ACK, 1)
        sock.setsockopt(rtnl.SOL_NETLINK, rtnl.NETLINK_CAP_ACK, 1)
        sock.bind((0, groups))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


# Classic BPF (linux/filter.h): struct sock_filter { __u16 code; __u8 jt; __u8 jf; __u32 k; }
_BPF_INSN = struct.Struct("=HBBI")
_BPF_LDW_ABS, _BPF_JEQ_K, _BPF_RET_K = 0x20, 0x15, 0x06
SO_ATTACH_FILTER = 26


def ignore_echoes(sock: socket.socket, portid: int) -> None:
    """Have the kernel drop, before they reach this event socket, the events
    caused by requests from the socket bound to ``portid``: the echo of our own
    writes, one datagram per route, whose receiving alone would cost as much
    as writing.  rtnetlink stamps a change's event with the requester's port
    ID (``nlmsg_pid``); a change made by anyone else, or by the kernel itself
    (port 0), still arrives.

    BPF loads are big-endian and netlink headers host-endian, hence the swap."""
    pid = int.from_bytes(struct.pack("=I", portid), "big")
    program = b"".join(
        _BPF_INSN.pack(*insn)
        for insn in (
            (_BPF_LDW_ABS, 0, 0, 12),  # nlmsg_pid
            (_BPF_JEQ_K, 0, 1, pid),
            (_BPF_RET_K, 0, 0, 0),  # drop
            (_BPF_RET_K, 0, 0, 0xFFFFFFFF),  # keep all of it
        )
    )
    buffer = ctypes.create_string_buffer(program, len(program))
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }
    fprog = struct.pack("@HP", len(program) // _BPF_INSN.size, ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def group_mask(*groups: int) -> int:
    mask = 0
    for g in groups:
        mask |= 1 << (g - 1)
    return mask


class RouteChannel:
    """Requests to the kernel's routing tables over one socket."""

    def __init__(self, netns: str | None = None) -> None:
        self.sock = open_socket(netns)
        self._seq = 0

    def close(self) -> None:
        self.sock.close()

    @property
    def portid(self) -> int:
        """The port ID the kernel gave this socket (stamped on the events our
        requests cause)."""
        return int(self.sock.getsockname()[0])

    def next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        return self._seq

    def apply(self, requests: Iterable[tuple[int, bytes]]) -> list[Failure]:
        """Send ``(seq, message)`` requests built without NLM_F_ACK, in large
        datagrams; return the ones the kernel refused."""
        failures: list[Failure] = []
        part: list[bytes] = []
        size = 0
        for _seq, message in requests:
            part.append(message)
            size += len(message)
            if size >= DATAGRAM:
                failures += self._send(part)
                part, size = [], 0
        if part:
            failures += self._send(part)
        return failures

    def _send(self, part: list[bytes]) -> list[Failure]:
        # The fence: a no-op request asking for an acknowledgement, answered
        # after every request before it was handled.
        seq = self.next_seq()
        fence = rtnl.NLMSGHDR.pack(
            rtnl.NLMSGHDR.size, rtnl.NLMSG_NOOP, rtnl.NLM_F_REQUEST | rtnl.NLM_F_ACK, seq, 0
        )
        self._write(b"".join(part) + fence)
        failures: list[Failure] = []
        for kind, flags, _seq, body in self._replies(seq):
            if kind == rtnl.NLMSG_ERROR:
                code, request, text = rtnl.decode_error(flags, body)
                if code and request != seq:
                    failures.append(Failure(request, code, text))
        return failures

    def dump_routes(self, family: int = 0) -> list[KernelRoute]:
        """Every route of ``family`` (0: IPv4 and IPv6) in every table."""
        seq = self.next_seq()
        self._write(rtnl.encode_dump(rtnl.RTM_GETROUTE, family, seq))
        routes = []
        for kind, flags, got, body in self._replies(seq):
            if kind == rtnl.RTM_NEWROUTE and got == seq:
                route = rtnl.decode_route(body)
                if route is not None:
                    routes.append(route)
            elif kind == rtnl.NLMSG_ERROR and got == seq:
                code, _request, text = rtnl.decode_error(flags, body)
                if code:
                    raise OSError(code, f"route dump refused: {text or os.strerror(code)}")
        return routes

    def _write(self, data: bytes) -> None:
        while True:
            try:
                self.sock.send(data)  # a datagram: all of it or an error
                return
            except BlockingIOError:
                select.select([], [self.sock], [], 1.0)

    def _replies(self, seq: int) -> Iterator[tuple[int, int, int, memoryview]]:
        """Messages up to the one that ends request ``seq`` (NLMSG_DONE or
        NLMSG_ERROR with its number), that one included."""
        buffer = bytearray(1 << 16)  # a dump datagram holds about 32 KiB
        while True:
            try:
                n = self.sock.recv_into(buffer)
                data = bytes(buffer[:n])
            except BlockingIOError:
                select.select([self.sock], [], [], 1.0)
                continue
            for kind, flags, got, body in rtnl.split(data):
                yield kind, flags, got, body
                if got == seq and kind in (rtnl.NLMSG_DONE, rtnl.NLMSG_ERROR):
                    return
