"""``bgpctl node``: the local node agent's state, read from its HTTP API
(``bgpd.node.api``), in ``calicoctl node status``'s format (CALICO.md §3.1).

    bgpctl node status [--api API] [-o table|json]
    bgpctl node routes [--api API] [-o table|json] [--family ipv4|ipv6]

Which API.  ``--api`` (``http://127.0.0.1:9179`` or ``unix:/path/to.sock``),
else ``$BGPD_API``, else the agent's socket ``<state-dir>/run/api-<node>.sock``
when it exists, else ``http://127.0.0.1:9179``.  The client is the standard
library's ``http.client`` (imported only when a ``node`` command runs): bgpctl
must start fast, and aiohttp would double its start-up time.

calicoctl's words are kept.  calicoctl decides whether Calico runs by scanning
processes; bgpctl asks the agent's API instead, but prints the same sentences
(``Calico process is running.`` on stdout; ``Calico process is not running.``
on stderr and exit 1 when no agent answers, followed on the same line by where
bgpctl looked and why it failed), so that scripts and runbooks that grep
calicoctl's output keep working.  After it: the IPv4 and IPv6 sections, each a
table or ``No IPv<n> peers found.``, and a blank line at the end.

The table is calicoctl's: PEER ADDRESS, PEER TYPE, STATE (BIRD's protocol state),
SINCE (BIRD's "iso short" time: ``hh:mm:ss`` in local time when less than 20
hours ago, else ``YYYY-MM-DD``) and INFO (the BGP state and BIRD's extra text,
whitespace collapsed as calicoctl's ``strings.Fields`` does).  Rows come in
BIRD's protocol order, which is bird.cfg's: the node-to-node mesh, then global
peers, then node-specific peers; within each, by address (Calico orders the
mesh by node name, which the status document does not carry) and port.  A peer
whose address holds a ':' is an IPv6 peer.

Each command gathers one document (``fetch``) and prints text made by a pure
``format_*`` function of it, so formats are tested without a server.
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..datastore.local import api_socket_path
from . import table
from .context import CtlError

if TYPE_CHECKING:
    import argparse
    import http.client

    from .context import Context

RUNNING = "Calico process is running."
NOT_RUNNING = "Calico process is not running."
DEFAULT_API = "http://127.0.0.1:9179"
DEFAULT_PORT = 9179
TIMEOUT = 5.0
#: BIRD's default "iso short" time format switches to a date after 20 hours.
SINCE_LIMIT = 20 * 3600
#: bird.cfg's order of peer kinds (CALICO.md §1.3-1.4); `show protocols` follows it.
TYPE_ORDER = {"node-to-node mesh": 0, "global": 1, "node specific": 2}
STATUS_HEADERS = ["Peer address", "Peer type", "State", "Since", "Info"]
ROUTE_HEADERS = ["Prefix", "Next hops", "From", "Best", "FIB"]
FAMILIES = (("ipv4", "IPv4"), ("ipv6", "IPv6"))


def _now() -> float:
    """The wall clock SINCE is measured against (tests pin it)."""
    return time.time()


class Unreachable(Exception):
    """No node agent answers at the API address."""


def resolve_api(option: str | None, ctx: Context) -> str:
    """``--api``, else ``$BGPD_API``, else the agent's socket if present, else TCP 9179."""
    if option:
        return option
    env = os.environ.get("BGPD_API")
    if env:
        return env
    path = api_socket_path(ctx.state_dir, ctx.node)
    if os.path.exists(path):
        return f"unix:{path}"
    return DEFAULT_API


def api_connection(api: str, timeout: float) -> http.client.HTTPConnection:
    """An HTTP connection (not yet connected) to ``http://host[:port]`` or
    ``unix:/path`` (a bare absolute path is a unix socket too)."""
    import http.client  # noqa: PLC0415 - 30 ms that other bgpctl commands do not pay
    import socket  # noqa: PLC0415

    class UnixHTTPConnection(http.client.HTTPConnection):
        """HTTP over a unix stream socket (the agent's local API)."""

        def __init__(self, path: str, timeout: float) -> None:
            super().__init__("localhost", timeout=timeout)
            self.socket_path = path

        def connect(self) -> None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.socket_path)
            except BaseException:
                sock.close()
                raise
            self.sock = sock

    if api.startswith("unix:"):
        path = api.removeprefix("unix:")
        if path.startswith("//"):
            path = path[2:]  # unix:///run/x.sock
        if not path:
            raise CtlError(f"bad API address {api!r}: no socket path")
        return UnixHTTPConnection(path, timeout)
    if api.startswith("/"):
        return UnixHTTPConnection(api, timeout)
    parts = urlsplit(api)
    if parts.scheme != "http" or not parts.hostname:
        raise CtlError(f"bad API address {api!r}: use http://HOST:PORT or unix:/path/to.sock")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as exc:
        raise CtlError(f"bad API address {api!r}: {exc}") from exc
    return http.client.HTTPConnection(parts.hostname, port, timeout=timeout)


def fetch(api: str, path: str, timeout: float = TIMEOUT) -> Any:
    """GET ``path`` from the API and decode its JSON.  ``Unreachable`` when no
    agent answers there; ``CtlError`` when one answers with an error."""
    import http.client  # noqa: PLC0415

    conn = api_connection(api, timeout)
    try:
        conn.request("GET", path, headers={"Accept": "application/json"})
        response = conn.getresponse()
        body = response.read()
    except PermissionError as exc:  # it runs, but its socket is not for us
        raise CtlError(f"{api}: permission denied (run as root or in the socket's group)") from exc
    except OSError as exc:  # refused, no such socket, timed out, reset
        raise Unreachable(f"{api}: {exc.strerror or exc}") from exc
    except http.client.HTTPException as exc:
        raise CtlError(f"{api} does not answer as a bgpd API: {type(exc).__name__}") from exc
    finally:
        conn.close()
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise CtlError(f"{api}{path}: HTTP {response.status}, not JSON") from exc
    if response.status != 200:
        error = doc.get("error") if isinstance(doc, dict) else None
        raise CtlError(f"{api}{path}: HTTP {response.status}: {error or response.reason}")
    return doc


def format_since(since: Any, now: float) -> str:
    """BIRD's "iso short" time of a state change (local time)."""
    if not isinstance(since, int | float) or isinstance(since, bool) or since <= 0:
        return ""
    if now - since < SINCE_LIMIT:
        return time.strftime("%H:%M:%S", time.localtime(since))
    return time.strftime("%Y-%m-%d", time.localtime(since))


def _address_key(address: str) -> tuple[int, int, str]:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return (1, 0, address)
    return (0, int(ip), "")


def _peer_key(peer: dict[str, Any]) -> tuple[Any, ...]:
    port = peer.get("port")
    return (
        TYPE_ORDER.get(str(peer.get("type")), len(TYPE_ORDER)),
        _address_key(str(peer.get("address", ""))),
        port if isinstance(port, int) else 0,
        str(peer.get("name", "")),
    )


def _is_ipv6(address: str) -> bool:
    return ":" in address


def _peer_row(peer: dict[str, Any], now: float) -> list[str]:
    info = " ".join(str(peer.get("info") or "").split()) or str(peer.get("bgp_state") or "")
    return [
        str(peer.get("address", "")),
        str(peer.get("type", "")),
        str(peer.get("state", "")),
        format_since(peer.get("since"), now),
        info,
    ]


def format_status(doc: dict[str, Any], now: float) -> str:
    """``calicoctl node status``'s stdout for a /status document, at time ``now``."""
    peers = sorted(doc.get("peers") or [], key=_peer_key)
    out = [RUNNING + "\n"]
    for family, title in FAMILIES:
        chosen = [p for p in peers if _is_ipv6(str(p.get("address", ""))) == (family == "ipv6")]
        out.append(f"\n{title} BGP status\n")
        if chosen:
            out.append(table.render(STATUS_HEADERS, [_peer_row(p, now) for p in chosen]))
        else:
            out.append(f"No {title} peers found.\n")
    out.append("\n")
    return "".join(out)


def _prefix_key(prefix: str) -> tuple[int, int, int, str]:
    try:
        net = ipaddress.ip_network(prefix, strict=False)
    except ValueError:
        return (1, 0, 0, prefix)
    return (0, int(net.network_address), net.prefixlen, "")


def _fib_cell(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "-"
    kind = str(entry.get("type") or "unicast")
    return kind if entry.get("installed") else f"{kind}, not installed"


def _route_rows(rib: list[dict[str, Any]], fib: list[dict[str, Any]]) -> list[list[str]]:
    by_prefix = {str(e.get("prefix")): e for e in fib}
    rows: list[tuple[tuple[int, int, int, str], bool, list[str]]] = []
    seen = set()
    for route in rib:
        prefix = str(route.get("prefix", ""))
        best = bool(route.get("best"))
        seen.add(prefix)
        rows.append((
            _prefix_key(prefix),
            not best,
            [
                prefix,
                ", ".join(str(h) for h in route.get("next_hops") or []),
                str(route.get("from") or ""),
                "yes" if best else "no",
                _fib_cell(by_prefix.get(prefix)) if best else "",
            ],
        ))  # fmt: skip
    for prefix, entry in by_prefix.items():
        if prefix not in seen:  # in the kernel, not (or no longer) in the Loc-RIB
            rows.append((
                _prefix_key(prefix),
                False,
                [prefix, ", ".join(str(g) for g in entry.get("gateways") or []), "", "",
                 _fib_cell(entry)],
            ))  # fmt: skip
    rows.sort(key=lambda item: item[:2])  # by prefix, the best path first, then the RIB's order
    return [row for _key, _other, row in rows]


def format_routes(doc: dict[str, Any], families: tuple[str, ...] = ("ipv4", "ipv6")) -> str:
    """A table per family of a /routes document: Loc-RIB paths, and whether the best
    one is in the kernel FIB (``-``: not programmed, e.g. a reflector without FIB)."""
    rib = doc.get("rib") or {}
    fib = doc.get("fib") or {}
    out: list[str] = []
    for family, title in FAMILIES:
        if family not in families:
            continue
        if out:
            out.append("\n")
        out.append(f"{title} routes\n")
        rows = _route_rows(rib.get(family) or [], fib.get(family) or [])
        if rows:
            out.append(table.render(ROUTE_HEADERS, rows))
        else:
            out.append(f"No {title} routes found.\n")
    return "".join(out)


def _print_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")


def cmd_status(args: argparse.Namespace, ctx: Context) -> int:
    api = resolve_api(args.api, ctx)
    try:
        doc = fetch(api, "/status")
    except Unreachable as exc:
        print(f"{NOT_RUNNING} (no node agent API at {exc})", file=sys.stderr)
        return 1
    if args.output == "json":
        _print_json(doc)
    else:
        sys.stdout.write(format_status(doc, _now()))
    return 0


def cmd_routes(args: argparse.Namespace, ctx: Context) -> int:
    api = resolve_api(args.api, ctx)
    path = f"/routes?family={args.family}" if args.family else "/routes"
    try:
        doc = fetch(api, path)
    except Unreachable as exc:
        print(f"{NOT_RUNNING} (no node agent API at {exc})", file=sys.stderr)
        return 1
    if args.output == "json":
        _print_json(doc)
    else:
        families = (args.family,) if args.family else ("ipv4", "ipv6")
        sys.stdout.write(format_routes(doc, families))
    return 0


def register(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    node = commands.add_parser(
        "node", parents=parents, help="this node's agent: BGP peers and routes",
        description="Show the local node agent's state, read from its status API.",
    )  # fmt: skip
    sub = node.add_subparsers(dest="node_command", metavar="<node command>")
    sub.required = True

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--api", metavar="API",
            help="the agent's API: http://HOST:PORT or unix:/path/to.sock (default: $BGPD_API, "
            "else <state-dir>/run/api-<node>.sock if present, else " + DEFAULT_API + ")",
        )  # fmt: skip
        parser.add_argument(
            "-o", "--output", choices=["table", "json"], default="table",
            help="table (calicoctl's format) or the API's JSON document",
        )  # fmt: skip

    status = sub.add_parser(
        "status", parents=parents, help="BGP peers, as calicoctl node status",
        description="Check the status of the node agent: BGP peering states, per IP family.",
    )  # fmt: skip
    common(status)
    status.set_defaults(run=cmd_status)

    routes = sub.add_parser(
        "routes", parents=parents, help="the Loc-RIB and what is in the kernel FIB",
        description="Show the routes the agent's speaker selected and their kernel FIB state.",
    )  # fmt: skip
    common(routes)
    routes.add_argument("--family", choices=["ipv4", "ipv6"], help="one address family only")
    routes.set_defaults(run=cmd_routes)
