"""The status API served for real: aiohttp on a free port on 127.0.0.1 and on a
unix socket under tmp_path, asked with plain HTTP/1.1 over asyncio streams.

``FixedSource`` is the contract (``bgpd.node.status.StatusSource``) returning fixed
documents; a method named in ``failing`` raises, as a bug in the agent would."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest

from bgpd.node.api import ApiError, ApiServer

PEER_V4 = {
    "name": "Mesh_198_18_0_2", "address": "198.18.0.2", "port": 179,
    "type": "node-to-node mesh", "as_number": 64512, "local_as_number": 64512,
    "state": "up", "bgp_state": "Established", "since": 1700000000.0,
    "info": "Established", "client": False, "families": ["ipv4-unicast"],
    "prefixes_received": 3, "prefixes_sent": 2, "messages_received": 10,
    "messages_sent": 12, "updates_received": 3, "updates_sent": 2, "last_error": None,
}  # fmt: skip
PEER_V6 = {
    **PEER_V4, "name": "Global_fd00__2", "address": "fd00::2", "type": "global",
    "state": "start", "bgp_state": "Active", "info": "Active  Socket: Connection refused",
    "families": [],
}  # fmt: skip
STATUS = {
    "node": "node1", "role": "node", "router_id": "198.18.0.1", "as_number": 64512,
    "cluster_id": None,
    "address": {"ipv4": "198.18.0.1/24", "ipv6": "fd00::1/64", "method": "first-found",
                "reason": "the first address of eth0"},
    "started": 1699999000.0, "synced": True, "peers": [PEER_V4, PEER_V6],
}  # fmt: skip
ROUTES = {
    "rib": {
        "ipv4": [{"prefix": "10.65.1.0/26", "best": True, "next_hops": ["198.18.0.2"],
                  "from": "198.18.0.2", "as_path": "", "local_pref": 100}],
        "ipv6": [{"prefix": "fd10::/122", "best": True, "next_hops": ["fd00::2"],
                  "from": "fd00::2", "as_path": "", "local_pref": 100}],
    },
    "fib": {
        "ipv4": [{"prefix": "10.65.1.0/26", "type": "unicast", "gateways": ["198.18.0.2"],
                  "device": "eth0", "installed": True}],
        "ipv6": [],
    },
}  # fmt: skip
IPAM = {
    "blocks": [{"cidr": "10.65.0.0/26", "state": "confirmed", "announced": True}],
    "borrowed": ["10.65.1.7/32"],
    "tunnel": {"vxlan": None},
}
COUNTERS = {
    "fib_operations": 120, "fib_failures": 1, "rib_routes": {"ipv4": 12, "ipv6": 1},
    "datastore_changes": 40, "datastore_lag_seconds": 0.004, "reconfigurations": 5,
}  # fmt: skip


class FixedSource:
    """A StatusSource with fixed documents."""

    def __init__(self) -> None:
        self.ready: tuple[bool, str] = (True, "synced; 1 of 2 peers Established")
        self.failing: set[str] = set()

    def _check(self, method: str) -> None:
        if method in self.failing:
            raise RuntimeError(f"{method} is broken")

    def status(self) -> dict[str, Any]:
        self._check("status")
        return json.loads(json.dumps(STATUS))  # type: ignore[no-any-return]

    def routes(self) -> dict[str, Any]:
        self._check("routes")
        return json.loads(json.dumps(ROUTES))  # type: ignore[no-any-return]

    def ipam(self) -> dict[str, Any]:
        self._check("ipam")
        return json.loads(json.dumps(IPAM))  # type: ignore[no-any-return]

    def readiness(self) -> tuple[bool, str]:
        self._check("readiness")
        return self.ready

    def counters(self) -> dict[str, Any]:
        self._check("counters")
        return dict(COUNTERS)


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def json(self) -> Any:
        assert self.content_type.startswith("application/json"), self.content_type
        return json.loads(self.body)


async def request(where: int | str, path: str, method: str = "GET", **headers: str) -> Reply:
    """One HTTP/1.1 request on a new connection to a TCP port or a unix socket."""
    if isinstance(where, int):
        reader, writer = await asyncio.open_connection("127.0.0.1", where)
    else:
        reader, writer = await asyncio.open_unix_connection(where)
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost", "Connection: close"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    if parsed.get("transfer-encoding") == "chunked":
        body = _unchunk(body)
    return Reply(int(status_line.split()[1]), parsed, body)


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def source() -> FixedSource:
    return FixedSource()


@pytest.fixture
def sock_path(tmp_path: Path) -> str:
    return str(tmp_path / "run" / "api-node1.sock")  # "run" does not exist yet


@pytest.fixture
async def server(source: FixedSource, sock_path: str) -> Any:
    api = ApiServer(source, port=free_port(), socket_path=sock_path)
    await api.start()
    yield api
    await api.close()


@pytest.fixture(params=["tcp", "unix"])
def where(request: pytest.FixtureRequest, server: ApiServer) -> int | str:
    if request.param == "tcp":
        return server.port
    assert server.socket_path is not None
    return server.socket_path


async def test_status(where: int | str) -> None:
    reply = await request(where, "/status")
    assert reply.status == 200
    assert reply.content_type == "application/json; charset=utf-8"
    assert reply.json() == STATUS


@pytest.mark.parametrize(
    ("family", "addresses"), [("ipv4", ["198.18.0.2"]), ("ipv6", ["fd00::2"]), ("", None)]
)
async def test_status_family(where: int | str, family: str, addresses: list[str] | None) -> None:
    doc = (await request(where, f"/status?family={family}")).json()
    expected = addresses or ["198.18.0.2", "fd00::2"]
    assert [p["address"] for p in doc["peers"]] == expected
    assert doc["node"] == "node1"


async def test_routes(where: int | str) -> None:
    reply = await request(where, "/routes")
    assert reply.status == 200
    assert reply.json() == ROUTES
    v6 = (await request(where, "/routes?family=ipv6")).json()
    assert v6 == {"rib": {"ipv6": ROUTES["rib"]["ipv6"]}, "fib": {"ipv6": []}}
    v4 = (await request(where, "/routes?family=ipv4")).json()
    assert v4 == {"rib": {"ipv4": ROUTES["rib"]["ipv4"]}, "fib": {"ipv4": ROUTES["fib"]["ipv4"]}}


async def test_bad_family(where: int | str) -> None:
    for path in ("/status?family=ipv5", "/routes?family=inet"):
        reply = await request(where, path)
        assert reply.status == 400
        assert "family must be ipv4 or ipv6" in reply.json()["error"]


async def test_ipam(where: int | str) -> None:
    reply = await request(where, "/ipam")
    assert (reply.status, reply.json()) == (200, IPAM)


async def test_pretty(where: int | str) -> None:
    reply = await request(where, "/ipam?pretty")
    assert reply.body.decode() == json.dumps(IPAM, indent=2) + "\n"
    assert b"\n" not in (await request(where, "/ipam")).body.rstrip(b"\n")


async def test_healthz(where: int | str) -> None:
    reply = await request(where, "/healthz")
    assert reply.status == 200
    assert reply.content_type.startswith("text/plain")
    assert reply.body == b"ok\n"


async def test_readyz(where: int | str, source: FixedSource) -> None:
    reply = await request(where, "/readyz")
    assert reply.status == 200
    assert reply.json() == {"ready": True, "reason": "synced; 1 of 2 peers Established"}
    source.ready = (False, "initial datastore sync not done")
    reply = await request(where, "/readyz")
    assert reply.status == 503
    assert reply.json() == {"ready": False, "reason": "initial datastore sync not done"}


async def test_metrics(where: int | str) -> None:
    reply = await request(where, "/metrics")
    assert reply.status == 200
    assert reply.content_type == "text/plain; version=0.0.4; charset=utf-8"
    text = reply.body.decode()
    assert 'bgpd_bgp_sessions{state="Established"} 1.0' in text
    assert "bgpd_fib_operations_total 120.0" in text
    assert "process_start_time_seconds" in text


async def test_metrics_openmetrics(where: int | str) -> None:
    reply = await request(where, "/metrics", Accept="application/openmetrics-text; version=1.0.0")
    assert reply.status == 200
    assert reply.content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert reply.body.endswith(b"# EOF\n")


async def test_not_found(where: int | str) -> None:
    for path in ("/", "/nope", "/status/extra", "/metricsx"):
        reply = await request(where, path)
        assert reply.status == 404
        assert reply.json() == {"error": "Not Found", "status": 404}


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
async def test_only_get(where: int | str, method: str) -> None:
    for path in ("/status", "/readyz", "/metrics"):
        reply = await request(where, path, method, Content_Length="0")
        assert reply.status == 405
        assert reply.json() == {"error": "Method Not Allowed", "status": 405}
        assert "GET" in reply.headers["allow"]


async def test_head(where: int | str) -> None:
    reply = await request(where, "/healthz", "HEAD")
    assert (reply.status, reply.body) == (200, b"")


async def test_source_error_is_500_and_the_server_goes_on(
    where: int | str, source: FixedSource, caplog: pytest.LogCaptureFixture
) -> None:
    source.failing = {"ipam", "readiness", "status"}
    with caplog.at_level(logging.ERROR, logger="bgpd.node.api"):
        for path in ("/ipam", "/readyz", "/status", "/metrics"):
            reply = await request(where, path)
            assert reply.status == 500, path
            assert reply.json()["error"].startswith("RuntimeError: ")
    assert reply.json() == {"error": "RuntimeError: status is broken", "status": 500}
    assert any("GET /ipam failed" in r.getMessage() for r in caplog.records)
    assert (await request(where, "/routes")).status == 200
    assert (await request(where, "/healthz")).status == 200
    source.failing = set()
    assert (await request(where, "/status")).json() == STATUS


async def test_concurrent_requests(where: int | str) -> None:
    replies = await asyncio.gather(*(request(where, "/status") for _ in range(20)))
    assert {r.status for r in replies} == {200}


async def test_socket_mode_and_folder(server: ApiServer, sock_path: str) -> None:
    info = os.stat(sock_path)
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o660
    assert server.urls == [f"http://127.0.0.1:{server.port}", f"unix:{sock_path}"]


async def test_close_removes_socket(source: FixedSource, sock_path: str) -> None:
    api = ApiServer(source, port=0, socket_path=sock_path)
    await api.start()
    assert os.path.exists(sock_path)
    await api.close()
    assert not os.path.exists(sock_path)
    await api.close()  # twice is harmless


async def test_stale_socket_replaced(source: FixedSource, sock_path: str) -> None:
    os.makedirs(os.path.dirname(sock_path))
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(sock_path)  # a dead process's socket: the file stays, nobody listens
    dead.close()
    os.chmod(sock_path, 0o600)
    api = ApiServer(source, port=0, socket_path=sock_path)
    await api.start()
    try:
        assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o660  # a new one
        assert (await request(sock_path, "/healthz")).status == 200
    finally:
        await api.close()


async def test_live_socket_not_stolen(source: FixedSource, sock_path: str) -> None:
    first = ApiServer(source, port=0, socket_path=sock_path)
    await first.start()
    try:
        port = free_port()
        second = ApiServer(source, port=port, socket_path=sock_path)
        with pytest.raises(ApiError, match="another server is answering"):
            await second.start()
        assert (await request(sock_path, "/healthz")).status == 200
        with pytest.raises(OSError):  # the second one's TCP listener was closed again
            await request(port, "/healthz")
    finally:
        await first.close()


async def test_path_that_is_not_a_socket(source: FixedSource, tmp_path: Path) -> None:
    path = tmp_path / "api.sock"
    path.write_text("an operator's file")
    with pytest.raises(ApiError, match="not a socket"):
        await ApiServer(source, port=0, socket_path=str(path)).start()
    assert path.read_text() == "an operator's file"


async def test_port_zero_means_no_tcp(source: FixedSource, sock_path: str) -> None:
    api = ApiServer(source, port=0, socket_path=sock_path)
    await api.start()
    try:
        assert api.urls == [f"unix:{sock_path}"]
        assert (await request(sock_path, "/status")).status == 200
    finally:
        await api.close()


async def test_tcp_only(source: FixedSource) -> None:
    api = ApiServer(source, port=free_port())
    await api.start()
    try:
        assert api.urls == [f"http://127.0.0.1:{api.port}"]
        assert (await request(api.port, "/healthz")).body == b"ok\n"
    finally:
        await api.close()
    with pytest.raises(OSError):
        await request(api.port, "/healthz")


async def test_port_taken(source: FixedSource, sock_path: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        api = ApiServer(source, port=taken.getsockname()[1], socket_path=sock_path)
        with pytest.raises(OSError):
            await api.start()
    assert not os.path.exists(sock_path)
