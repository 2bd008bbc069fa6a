"""The process the policy matrix runs in every pod's network namespace (and one in
the node's): echo servers, and a prober that tests many connections at once.

    ip netns exec <ns> python -m tests.policy.prober [--no-serve] [--source-ports A:B]

It serves TCP and UDP echo (and SCTP, when the kernel has it) on ports 80 and 81 of
every address, then prints one JSON line ``{"ready": true, "sctp": <bool>}``.  It
then reads requests, one JSON line each, and answers each with one line:

    {"id": 7, "probe": [["10.65.0.3", "TCP", 80], ...], "timeout": 0.6}
    -> {"id": 7, "results": [true, false, ...]}

All probes of a request run concurrently.  TCP: the connection is accepted.  UDP:
a datagram sent gets a reply.  SCTP: connect, send, read the echo.  A refusal, an
ICMP error and the timeout all count as blocked (as in the e2e suite's agnhost).

Every probe binds a fresh source port, counting up from A (20000) to B (60000),
so that no probe ever reuses the conntrack entry of an earlier one (an old UDP
entry lives for up to 180 s and would let a now-forbidden packet through as
"established").  Probers that may share an address over time (a pod deleted, its
address given to the next) are given disjoint ranges.  End of input stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import json
import socket
import sys
from typing import Any

PORTS = (80, 81)
SOURCE_PORTS = (20000, 60000)
_source_ports = itertools.cycle(range(*SOURCE_PORTS))


def sctp_supported() -> bool:
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP).close()
    except OSError:
        return False
    return True


def _bound_socket(kind: int, proto: int = 0) -> socket.socket:
    """A non-blocking socket bound to the next unused source port."""
    for _ in range(200):
        sock = socket.socket(socket.AF_INET, kind, proto)
        sock.setblocking(False)
        try:
            sock.bind(("0.0.0.0", next(_source_ports)))
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EADDRINUSE:
                raise
            continue
        return sock
    raise OSError(errno.EADDRINUSE, "no free source port")


# -- servers ----------------------------------------------------------------------------------


class _UdpEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(data, addr)  # type: ignore[attr-defined]


async def _tcp_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        data = await reader.read(100)
        if data:
            writer.write(data)
            await writer.drain()
    writer.close()


async def _sctp_server(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", port))
    server.listen(64)
    server.setblocking(False)

    async def echo(conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            data = await loop.sock_recv(conn, 100)
            if data:
                await loop.sock_sendall(conn, data)

    tasks: set[asyncio.Task[None]] = set()
    while True:
        conn, _ = await loop.sock_accept(server)
        conn.setblocking(False)
        task = loop.create_task(echo(conn))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


async def serve(sctp: bool) -> list[Any]:
    loop = asyncio.get_running_loop()
    keep: list[Any] = []
    for port in PORTS:
        keep.append(await asyncio.start_server(_tcp_echo, "0.0.0.0", port, reuse_address=True))
        transport, _ = await loop.create_datagram_endpoint(_UdpEcho, local_addr=("0.0.0.0", port))
        keep.append(transport)
        if sctp:
            keep.append(loop.create_task(_sctp_server(port)))
    return keep


# -- probes -----------------------------------------------------------------------------------


async def probe_tcp(ip: str, port: int) -> bool:
    loop = asyncio.get_running_loop()
    sock = _bound_socket(socket.SOCK_STREAM)
    with sock:
        try:
            await loop.sock_connect(sock, (ip, port))
        except OSError:
            return False
        return True


async def probe_sctp(ip: str, port: int) -> bool:
    loop = asyncio.get_running_loop()
    sock = _bound_socket(socket.SOCK_STREAM, socket.IPPROTO_SCTP)
    with sock:
        try:
            await loop.sock_connect(sock, (ip, port))
            await loop.sock_sendall(sock, b"probe")
            return bool(await loop.sock_recv(sock, 100))
        except OSError:
            return False


async def probe_udp(ip: str, port: int) -> bool:
    loop = asyncio.get_running_loop()
    sock = _bound_socket(socket.SOCK_DGRAM)
    with sock:
        try:
            await loop.sock_connect(sock, (ip, port))
            await loop.sock_sendall(sock, b"probe")
            return bool(await loop.sock_recv(sock, 100))
        except OSError:  # ICMP port or host unreachable
            return False


PROBES = {"TCP": probe_tcp, "UDP": probe_udp, "SCTP": probe_sctp}


async def probe(ip: str, protocol: str, port: int, timeout: float) -> bool:
    try:
        return await asyncio.wait_for(PROBES[protocol](ip, port), timeout)
    except (TimeoutError, OSError):
        return False


async def handle(request: dict[str, Any]) -> dict[str, Any]:
    timeout = float(request.get("timeout", 0.6))
    results = await asyncio.gather(
        *(probe(ip, proto, int(port), timeout) for ip, proto, port in request["probe"])
    )
    return {"id": request.get("id"), "results": list(results)}


async def main(argv: list[str]) -> None:
    global _source_ports  # noqa: PLW0603 - one process, one range
    if "--source-ports" in argv:
        first, _, last = argv[argv.index("--source-ports") + 1].partition(":")
        _source_ports = itertools.cycle(range(int(first), int(last)))
    loop = asyncio.get_running_loop()
    sctp = sctp_supported()
    servers = [] if "--no-serve" in argv else await serve(sctp)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(json.dumps({"ready": True, "sctp": sctp}), flush=True)
    while line := await reader.readline():
        if line.strip():
            print(json.dumps(await handle(json.loads(line))), flush=True)
    del servers


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
