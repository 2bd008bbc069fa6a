"""``bgpctl node status`` and ``node routes`` against a live status API
(``bgpd.node.api.ApiServer`` on a unix socket and on TCP), output compared as text.

bgpctl is a blocking client, so each run goes to a worker thread while the
event loop keeps serving.  SINCE is local time: the tests pin TZ (UTC, and a
zone with a half-hour offset) and bgpctl's clock, so tables are exact."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bgpd.ctl import node
from bgpd.ctl.main import main
from bgpd.node.api import ApiServer

NOW = 1700000000.0  # 2023-11-14 22:13:20 UTC
NODE = "node1"


def peer(name: str, address: str, kind: str, *, state: str, bgp_state: str, since: float,
         info: str) -> dict[str, Any]:  # fmt: skip
    return {
        "name": name, "address": address, "port": 179, "type": kind,
        "as_number": 64512, "local_as_number": 64512, "state": state,
        "bgp_state": bgp_state, "since": since, "info": info, "client": False,
        "families": ["ipv4-unicast"] if bgp_state == "Established" else [],
        "prefixes_received": 1, "prefixes_sent": 1, "messages_received": 5,
        "messages_sent": 5, "updates_received": 1, "updates_sent": 1, "last_error": None,
    }  # fmt: skip


#: A mesh of two IPv4 peers and one global IPv6 peer, listed out of order.
PEERS = [
    peer("Global_fd00__9", "fd00::9", "global", state="up", bgp_state="Established",
         since=NOW - 3 * 86400, info="Established"),
    peer("Mesh_198_18_0_10", "198.18.0.10", "node-to-node mesh", state="start",
         bgp_state="Active", since=NOW - 100, info="Active        Socket: Connection refused"),
    peer("Mesh_198_18_0_2", "198.18.0.2", "node-to-node mesh", state="up",
         bgp_state="Established", since=NOW - 3600, info="Established"),
]  # fmt: skip

MESH = """\
Calico process is running.

IPv4 BGP status
+--------------+-------------------+-------+----------+--------------------------------+
| PEER ADDRESS |     PEER TYPE     | STATE |  SINCE   |              INFO              |
+--------------+-------------------+-------+----------+--------------------------------+
| 198.18.0.2   | node-to-node mesh | up    | 21:13:20 | Established                    |
| 198.18.0.10  | node-to-node mesh | start | 22:11:40 | Active Socket: Connection      |
|              |                   |       |          | refused                        |
+--------------+-------------------+-------+----------+--------------------------------+

IPv6 BGP status
+--------------+-----------+-------+------------+-------------+
| PEER ADDRESS | PEER TYPE | STATE |   SINCE    |    INFO     |
+--------------+-----------+-------+------------+-------------+
| fd00::9      | global    | up    | 2023-11-11 | Established |
+--------------+-----------+-------+------------+-------------+

"""

NO_PEERS = """\
Calico process is running.

IPv4 BGP status
No IPv4 peers found.

IPv6 BGP status
No IPv6 peers found.

"""

ROUTES: dict[str, Any] = {
    "rib": {
        "ipv4": [
            {"prefix": "10.65.1.0/26", "best": False, "next_hops": ["198.18.0.3"],
             "from": "198.18.0.3", "as_path": "", "local_pref": 100},
            {"prefix": "10.65.10.0/26", "best": True, "next_hops": ["198.18.0.10"],
             "from": "198.18.0.10", "as_path": "", "local_pref": 100},
            {"prefix": "10.65.1.0/26", "best": True, "next_hops": ["198.18.0.2", "198.18.0.3"],
             "from": "198.18.0.2", "as_path": "", "local_pref": 100},
            {"prefix": "10.65.0.0/26", "best": True, "next_hops": [], "from": "local",
             "as_path": "", "local_pref": 100},
        ],
        "ipv6": [
            {"prefix": "fd10::/122", "best": True, "next_hops": ["fd00::9"], "from": "fd00::9",
             "as_path": "", "local_pref": 100},
        ],
    },
    "fib": {
        "ipv4": [
            {"prefix": "10.65.1.0/26", "type": "unicast", "gateways": ["198.18.0.2", "198.18.0.3"],
             "device": "eth0", "installed": True},
            {"prefix": "10.65.0.0/26", "type": "blackhole", "gateways": [], "device": None,
             "installed": True},
            {"prefix": "10.65.10.0/26", "type": "unicast", "gateways": ["198.18.0.10"],
             "device": "eth0", "installed": False},
            {"prefix": "10.65.2.0/26", "type": "unicast", "gateways": ["198.18.0.4"],
             "device": "eth0", "installed": True},
        ],
        "ipv6": [],
    },
}  # fmt: skip

ROUTES_V4 = """\
IPv4 routes
+---------------+------------------------+-------------+------+------------------------+
|    PREFIX     |       NEXT HOPS        |    FROM     | BEST |          FIB           |
+---------------+------------------------+-------------+------+------------------------+
| 10.65.0.0/26  |                        | local       | yes  | blackhole              |
| 10.65.1.0/26  | 198.18.0.2, 198.18.0.3 | 198.18.0.2  | yes  | unicast                |
| 10.65.1.0/26  | 198.18.0.3             | 198.18.0.3  | no   |                        |
| 10.65.2.0/26  | 198.18.0.4             |             |      | unicast                |
| 10.65.10.0/26 | 198.18.0.10            | 198.18.0.10 | yes  | unicast, not installed |
+---------------+------------------------+-------------+------+------------------------+
"""

ROUTES_V6 = """\
IPv6 routes
+------------+-----------+---------+------+-----+
|   PREFIX   | NEXT HOPS |  FROM   | BEST | FIB |
+------------+-----------+---------+------+-----+
| fd10::/122 | fd00::9   | fd00::9 | yes  | -   |
+------------+-----------+---------+------+-----+
"""


class Source:
    """A StatusSource with a settable peer list and fixed routes."""

    def __init__(self) -> None:
        self.peers: list[dict[str, Any]] = json.loads(json.dumps(PEERS))
        self.broken = False

    def status(self) -> dict[str, Any]:
        if self.broken:
            raise RuntimeError("status is broken")
        return {
            "node": NODE, "role": "node", "router_id": "198.18.0.1", "as_number": 64512,
            "cluster_id": None,
            "address": {"ipv4": "198.18.0.1/24", "ipv6": "fd00::1/64",
                        "method": "first-found", "reason": "eth0's first address"},
            "started": NOW - 7200, "synced": True, "peers": self.peers,
        }  # fmt: skip

    def routes(self) -> dict[str, Any]:
        return json.loads(json.dumps(ROUTES))  # type: ignore[no-any-return]

    def ipam(self) -> dict[str, Any]:
        return {"blocks": [], "borrowed": [], "tunnel": {"vxlan": None}}

    def readiness(self) -> tuple[bool, str]:
        return True, "ready"

    def counters(self) -> dict[str, Any]:
        return {}


def _set_tz(value: str | None) -> None:
    if value is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = value
    time.tzset()


@pytest.fixture
def tz() -> Iterator[Any]:
    """Set the local time zone for the test (UTC to begin with); restored after."""
    before = os.environ.get("TZ")
    _set_tz("UTC")
    yield _set_tz
    _set_tz(before)


@pytest.fixture(autouse=True)
def _pinned(monkeypatch: pytest.MonkeyPatch, tz: Any) -> None:
    monkeypatch.setattr(node, "_now", lambda: NOW)
    monkeypatch.delenv("BGPD_API", raising=False)
    monkeypatch.delenv("BGPD_STATE_DIR", raising=False)
    monkeypatch.delenv("NODENAME", raising=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def source() -> Source:
    return Source()


@pytest.fixture
async def server(source: Source, state: Path) -> Any:
    """The agent's API where bgpctl looks by default: <state>/run/api-<node>.sock."""
    api = ApiServer(source, port=free_port(), socket_path=node.api_socket_path(str(state), NODE))
    await api.start()
    yield api
    await api.close()


async def bgpctl(
    capsys: pytest.CaptureFixture[str], state: Path, *args: str
) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``bgpctl --state-dir STATE --node-name node1 ARGS``."""
    capsys.readouterr()
    argv = ["--state-dir", str(state), "--node-name", NODE, *args]
    status = await asyncio.to_thread(main, argv)
    out, err = capsys.readouterr()
    return status, out, err


async def test_mesh_table(
    server: ApiServer, capsys: pytest.CaptureFixture[str], state: Path
) -> None:
    assert await bgpctl(capsys, state, "node", "status") == (0, MESH, "")


async def test_no_peers(
    server: ApiServer, source: Source, capsys: pytest.CaptureFixture[str], state: Path
) -> None:
    source.peers = []
    assert await bgpctl(capsys, state, "node", "status") == (0, NO_PEERS, "")


async def test_only_ipv6_peers(
    server: ApiServer, source: Source, capsys: pytest.CaptureFixture[str], state: Path
) -> None:
    source.peers = source.peers[:1]
    status, out, _err = await bgpctl(capsys, state, "node", "status")
    assert status == 0
    assert out.startswith(
        "Calico process is running.\n\nIPv4 BGP status\nNo IPv4 peers found.\n\nIPv6 BGP status\n+"
    )
    assert out.endswith("+\n\n")


async def test_tcp_api_option_and_env(
    server: ApiServer,
    capsys: pytest.CaptureFixture[str],
    state: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = f"http://127.0.0.1:{server.port}"
    elsewhere = state / "elsewhere"  # no socket there: only --api or $BGPD_API lead to the agent
    assert await bgpctl(capsys, elsewhere, "node", "status", "--api", url) == (0, MESH, "")
    monkeypatch.setenv("BGPD_API", url)
    assert await bgpctl(capsys, elsewhere, "node", "status") == (0, MESH, "")
    monkeypatch.setenv("BGPD_API", f"unix:{server.socket_path}")
    assert await bgpctl(capsys, elsewhere, "node", "status") == (0, MESH, "")


async def test_json(server: ApiServer, source: Source, capsys: pytest.CaptureFixture[str],
                    state: Path) -> None:  # fmt: skip
    status, out, err = await bgpctl(capsys, state, "node", "status", "-o", "json")
    assert (status, err) == (0, "")
    assert json.loads(out) == source.status()


async def test_unreachable_socket(capsys: pytest.CaptureFixture[str], state: Path) -> None:
    path = state / "gone.sock"
    status, out, err = await bgpctl(capsys, state, "node", "status", "--api", f"unix:{path}")
    assert (status, out) == (1, "")
    assert err == (
        f"Calico process is not running. (no node agent API at unix:{path}: "
        "No such file or directory)\n"
    )


async def test_unreachable_tcp(capsys: pytest.CaptureFixture[str], state: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for output in ("table", "json"):
        status, out, err = await bgpctl(capsys, state, "node", "status", "-o", output, "--api", url)
        assert (status, out) == (1, "")
        refused = f"(no node agent API at {url}: Connection refused)"
        assert err == f"Calico process is not running. {refused}\n"


async def test_stale_socket_file(capsys: pytest.CaptureFixture[str], state: Path) -> None:
    """The agent died and left its socket: found by default, and not running."""
    path = node.api_socket_path(str(state), NODE)
    os.makedirs(os.path.dirname(path))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(path)
    status, out, err = await bgpctl(capsys, state, "node", "status")
    assert (status, out) == (1, "")
    assert err.startswith(f"Calico process is not running. (no node agent API at unix:{path}: ")


async def test_permission_denied(
    server: ApiServer, capsys: pytest.CaptureFixture[str], state: Path
) -> None:
    """A socket bgpctl may not use is a running agent, not a dead one."""
    assert server.socket_path is not None
    os.chmod(server.socket_path, 0)
    try:
        if os.geteuid() == 0:  # root connects anyway
            assert (await bgpctl(capsys, state, "node", "status"))[0] == 0
            return
        status, out, err = await bgpctl(capsys, state, "node", "status")
        assert (status, out) == (1, "")
        assert "permission denied" in err
    finally:
        os.chmod(server.socket_path, 0o660)


async def test_api_error(
    server: ApiServer, source: Source, capsys: pytest.CaptureFixture[str], state: Path
) -> None:
    source.broken = True
    status, out, err = await bgpctl(capsys, state, "node", "status")
    assert (status, out) == (1, "")
    assert err == (
        f"bgpctl: unix:{server.socket_path}/status: HTTP 500: RuntimeError: status is broken\n"
    )


@pytest.mark.parametrize("api", ["ftp://127.0.0.1:1", "unix:", "http://127.0.0.1:99999"])
async def test_bad_api(capsys: pytest.CaptureFixture[str], state: Path, api: str) -> None:
    status, out, err = await bgpctl(capsys, state, "node", "status", "--api", api)
    assert (status, out) == (1, "")
    assert err.startswith(f"bgpctl: bad API address {api!r}")


def test_resolve_api(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bgpd.ctl.context import Context  # noqa: PLC0415

    ctx = Context(str(state), NODE)
    assert node.resolve_api(None, ctx) == "http://127.0.0.1:9179"
    path = node.api_socket_path(str(state), NODE)
    assert path == f"{state}/run/api-{NODE}.sock"
    os.makedirs(os.path.dirname(path))
    Path(path).touch()
    assert node.resolve_api(None, ctx) == f"unix:{path}"
    monkeypatch.setenv("BGPD_API", "http://127.0.0.1:1")
    assert node.resolve_api(None, ctx) == "http://127.0.0.1:1"
    assert node.resolve_api("unix:/x.sock", ctx) == "unix:/x.sock"


def test_since_iso_short(tz: Any) -> None:
    """hh:mm:ss in local time for less than 20 hours ago, else the local date."""
    limit = 20 * 3600
    assert node.format_since(NOW, NOW) == "22:13:20"
    assert node.format_since(NOW - 3600, NOW) == "21:13:20"
    assert node.format_since(NOW - limit + 1, NOW) == "02:13:21"
    assert node.format_since(NOW - limit, NOW) == "2023-11-14"
    assert node.format_since(NOW - 3 * 86400, NOW) == "2023-11-11"
    assert node.format_since(NOW + 5, NOW) == "22:13:25"  # a clock step back: still a time
    assert node.format_since(None, NOW) == ""
    tz("IST-5:30")  # India, no tz database needed
    assert node.format_since(NOW - 3600, NOW) == "02:43:20"
    assert node.format_since(NOW - 3 * 86400, NOW) == "2023-11-12"
    assert node.format_since(NOW - limit, NOW) == time.strftime(
        "%Y-%m-%d", time.localtime(NOW - limit)
    )


async def test_since_local_time_in_table(
    server: ApiServer, capsys: pytest.CaptureFixture[str], state: Path, tz: Any
) -> None:
    tz("IST-5:30")
    _status, out, _err = await bgpctl(capsys, state, "node", "status")
    assert "| 198.18.0.2   | node-to-node mesh | up    | 02:43:20 |" in out
    assert "| fd00::9      | global    | up    | 2023-11-12 |" in out


def test_peer_order() -> None:
    """bird.cfg's order: mesh, global, node-specific; then by address and port."""
    peers = [
        {"address": "10.0.0.1", "type": "node specific", "port": 179},
        {"address": "10.0.0.9", "type": "global", "port": 1790},
        {"address": "10.0.0.9", "type": "global", "port": 179},
        {"address": "10.0.0.10", "type": "node-to-node mesh"},
        {"address": "10.0.0.2", "type": "node-to-node mesh"},
    ]
    text = node.format_status({"peers": peers}, NOW)
    rows = [line.split("|")[1].strip() + " " + line.split("|")[2].strip()
            for line in text.splitlines() if line.startswith("| 10.")]  # fmt: skip
    assert rows == [
        "10.0.0.2 node-to-node mesh", "10.0.0.10 node-to-node mesh",
        "10.0.0.9 global", "10.0.0.9 global", "10.0.0.1 node specific",
    ]  # fmt: skip
    assert "1790" not in text  # ports are not shown


async def test_routes(server: ApiServer, capsys: pytest.CaptureFixture[str], state: Path) -> None:
    assert await bgpctl(capsys, state, "node", "routes") == (0, ROUTES_V4 + "\n" + ROUTES_V6, "")
    assert await bgpctl(capsys, state, "node", "routes", "--family", "ipv6") == (0, ROUTES_V6, "")
    status, out, _err = await bgpctl(capsys, state, "node", "routes", "-o", "json")
    assert (status, json.loads(out)) == (0, ROUTES)
    status, out, _err = await bgpctl(
        capsys, state, "node", "routes", "-o", "json", "--family", "ipv4"
    )
    assert json.loads(out) == {"rib": {"ipv4": ROUTES["rib"]["ipv4"]},
                               "fib": {"ipv4": ROUTES["fib"]["ipv4"]}}  # fmt: skip


def test_no_routes() -> None:
    assert node.format_routes({"rib": {}, "fib": {}}) == (
        "IPv4 routes\nNo IPv4 routes found.\n\nIPv6 routes\nNo IPv6 routes found.\n"
    )


async def test_installed_script(server: ApiServer, state: Path) -> None:
    """Once as a separate process (the real clock, so only the shape is checked)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bgpd.ctl.main", "--state-dir", str(state), "--node-name", NODE,
        "node", "status",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert (proc.returncode, err) == (0, b"")
    assert out.startswith(b"Calico process is running.\n\nIPv4 BGP status\n+--")
    assert b"| 198.18.0.10  | node-to-node mesh | start |" in out


def test_bgpctl_starts_without_http_libraries() -> None:
    code = (
        "import sys, bgpd.ctl.main; "
        "print([m for m in ('aiohttp', 'http.client', 'prometheus_client') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "[]\n"
