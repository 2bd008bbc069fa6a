"""The node agent's local HTTP API: read-only, on aiohttp (its only importer).

    GET /status   [?family=ipv4|ipv6]   StatusSource.status(), peers of one family
    GET /routes   [?family=ipv4|ipv6]   StatusSource.routes(), one family's RIB and FIB
    GET /ipam                           StatusSource.ipam()
    GET /healthz                        200 "ok" whenever the event loop answers
    GET /readyz                         200 {"ready": true, ...} or 503 {"ready": false, "reason"}
    GET /metrics                        Prometheus exposition of the registry

Theory of operation.  Every handler calls the agent's ``StatusSource`` on the
event loop, as the agent's own code runs, so a document is never built from
state another task is half-way through changing; the methods build plain JSON
values at call time and are cheap.  The answer is JSON (``?pretty`` indents
it).  Errors are JSON too, ``{"error": text, "status": code}``: 404 for an
unknown path, 405 for a method other than GET (HEAD is GET without the body),
400 for a bad query, and 500 when a source method raises, which is logged and
leaves the server and every other request unaffected.

``ApiServer`` listens on 127.0.0.1:<port> (``port=0``: no TCP listener) and/or
on a unix socket, which is what ``bgpctl node status`` uses by default
(``<state-dir>/run/api-<node>.sock``).  The socket is created with mode 0660
before it accepts connections; its folder is created if missing; a socket file
left by a dead process is replaced, but one that a live server still answers
on is an error (two agents for one node), and so is a path that is not a socket.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import stat
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .metrics import exposition, make_policy_registry, make_registry

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from .metrics import CollectorRegistry, PolicySource
    from .status import StatusSource

    Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

log = logging.getLogger(__name__)

DEFAULT_PORT = 9179
DEFAULT_HOST = "127.0.0.1"
SOCKET_MODE = 0o660
FAMILIES = ("ipv4", "ipv6")

SOURCE_KEY: web.AppKey[StatusSource] = web.AppKey("source")
POLICY_KEY: web.AppKey[PolicySource] = web.AppKey("policy")
REGISTRY_KEY: web.AppKey[CollectorRegistry] = web.AppKey("registry")


class ApiError(Exception):
    """The API cannot start: its address is taken or its socket path unusable."""


def _json(
    doc: Any, status: int = 200, *, pretty: bool = False, headers: dict[str, str] | None = None
) -> web.Response:
    text = json.dumps(doc, indent=2 if pretty else None, separators=None if pretty else (",", ":"))
    return web.Response(
        text=text + "\n", status=status, content_type="application/json", headers=headers
    )


def _source(request: web.Request) -> StatusSource:
    return request.app[SOURCE_KEY]


def _pretty(request: web.Request) -> bool:
    return "pretty" in request.query


def _family(request: web.Request) -> str | None:
    family = request.query.get("family")
    if family is None or family == "":
        return None
    if family not in FAMILIES:
        raise web.HTTPBadRequest(reason=f"family must be ipv4 or ipv6, not {family!r}")
    return family


def _is_family(address: str, family: str) -> bool:
    return (":" in address) == (family == "ipv6")


async def status(request: web.Request) -> web.Response:
    family = _family(request)
    doc = _source(request).status()
    if family is not None:
        peers = doc.get("peers") or []
        doc = {**doc, "peers": [p for p in peers if _is_family(str(p.get("address", "")), family)]}
    return _json(doc, pretty=_pretty(request))


async def routes(request: web.Request) -> web.Response:
    family = _family(request)
    doc = _source(request).routes()
    if family is not None:
        doc = {
            table: {family: (by_family or {}).get(family, [])} for table, by_family in doc.items()
        }
    return _json(doc, pretty=_pretty(request))


async def ipam(request: web.Request) -> web.Response:
    return _json(_source(request).ipam(), pretty=_pretty(request))


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n", content_type="text/plain")


async def readyz(request: web.Request) -> web.Response:
    ready, reason = _source(request).readiness()
    return _json(
        {"ready": bool(ready), "reason": reason}, 200 if ready else 503, pretty=_pretty(request)
    )


async def metrics(request: web.Request) -> web.Response:
    body, content_type = exposition(request.app[REGISTRY_KEY], request.headers.get("Accept"))
    return web.Response(body=body, headers={"Content-Type": content_type})


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """HTTP errors as JSON; a source that raises becomes a 500 and a log line."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
        return _json({"error": exc.reason, "status": exc.status}, exc.status, headers=headers)
    except Exception as exc:
        log.exception("API %s %s failed", request.method, request.path)
        return _json({"error": f"{type(exc).__name__}: {exc}", "status": 500}, 500)


def build_app(source: StatusSource, registry: CollectorRegistry | None = None) -> web.Application:
    """The API's routes over ``source``; ``registry`` defaults to ``make_registry(source)``."""
    pages = [("/status", status), ("/routes", routes), ("/ipam", ipam), ("/readyz", readyz)]
    app = _app(make_registry(source) if registry is None else registry, pages)
    app[SOURCE_KEY] = source
    return app


def _app(registry: CollectorRegistry, routes: Sequence[tuple[str, Handler]]) -> web.Application:
    """An application with these routes, ``/healthz`` and ``/metrics`` of ``registry``."""
    app = web.Application(middlewares=[_errors])
    app[REGISTRY_KEY] = registry
    for path, handler in [*routes, ("/healthz", healthz), ("/metrics", metrics)]:
        app.router.add_get(path, handler)
    return app


async def policy_status(request: web.Request) -> web.Response:
    return _json(request.app[POLICY_KEY].status(), pretty=_pretty(request))


async def policy_counters(request: web.Request) -> web.Response:
    return _json({"counters": request.app[POLICY_KEY].counters()}, pretty=_pretty(request))


def build_policy_app(
    source: PolicySource, registry: CollectorRegistry | None = None
) -> web.Application:
    """The policy agent's routes: ``/status``, ``/counters`` (per policy rule),
    ``/healthz`` and ``/metrics``."""
    app = _app(make_policy_registry(source) if registry is None else registry,
               [("/status", policy_status), ("/counters", policy_counters)])  # fmt: skip
    app[POLICY_KEY] = source
    return app


def _claim_socket_path(path: str) -> None:
    """Make ``path`` free for a new socket: create its folder, remove a stale socket."""
    os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ApiError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        pass  # nobody listens: the socket of a dead process
    except OSError as exc:
        raise ApiError(f"{path}: cannot tell whether a server still uses it: {exc}") from exc
    else:
        raise ApiError(f"{path}: another server is answering on it")
    finally:
        probe.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _unix_listener(path: str) -> socket.socket:
    """A listening unix socket at ``path`` with mode 0660 before anyone can connect."""
    _claim_socket_path(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, SOCKET_MODE)  # connect() needs listen(): nobody is in yet
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class ApiServer:
    """The API served on TCP ``host:port`` (``port=0``: none) and/or ``socket_path``.

    ``await start()`` binds (raising ``ApiError`` or ``OSError`` with nothing left
    open when it cannot); ``await close()`` stops serving and removes the socket file.
    """

    def __init__(
        self,
        source: StatusSource | None = None,
        *,
        port: int = DEFAULT_PORT,
        socket_path: str | None = None,
        host: str = DEFAULT_HOST,
        registry: CollectorRegistry | None = None,
        app: web.Application | None = None,
    ) -> None:
        if app is None:
            if source is None:
                raise ValueError("ApiServer needs a source or an app")
            app = build_app(source, registry)
        self.app = app
        self.port = port
        self.host = host
        self.socket_path = socket_path
        self._runner: web.AppRunner | None = None
        self._socket_id: tuple[int, int] | None = None

    @property
    def urls(self) -> list[str]:
        """Where the API answers, as ``bgpctl node status --api`` takes them."""
        found = []
        if self.port:
            found.append(f"http://{self.host}:{self.port}")
        if self.socket_path:
            found.append(f"unix:{self.socket_path}")
        return found

    async def start(self) -> None:
        if self._runner is not None:
            return
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            if self.port:
                await web.TCPSite(runner, self.host, self.port).start()
            if self.socket_path:
                sock = _unix_listener(self.socket_path)
                info = os.stat(self.socket_path)
                self._socket_id = (info.st_dev, info.st_ino)
                try:
                    await web.SockSite(runner, sock).start()
                except BaseException:
                    sock.close()
                    raise
        except BaseException:
            await runner.cleanup()
            self._remove_socket()
            raise
        self._runner = runner
        log.info("status API on %s", ", ".join(self.urls) or "nothing (disabled)")

    async def close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        self._remove_socket()

    def _remove_socket(self) -> None:
        """Remove our socket file, and only ours (not a successor's at the same path)."""
        if self.socket_path is None or self._socket_id is None:
            return
        try:
            info = os.stat(self.socket_path)
            if (info.st_dev, info.st_ino) == self._socket_id:
                os.unlink(self.socket_path)
        except FileNotFoundError:
            pass
        self._socket_id = None
