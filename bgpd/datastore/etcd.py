"""The etcd v3 datastore: the same keys in an etcd cluster, for clusters of many machines.

We speak etcd's JSON gateway (``/v3/kv/range``, ``/v3/kv/txn``, ``/v3/watch``,
``/v3/lease/*``: etcd's ``api/etcdserverpb/rpc.proto`` over HTTP/1.1), not gRPC:
the gateway is part of every etcd v3 server, its calls map one to one onto the
gRPC ones, and it needs nothing beyond the standard library.  Every maintained
asyncio gRPC client for etcd pulls in grpcio (a large compiled dependency, ~100 ms
to import, which the CNI plugin would pay per pod) and none offers the
synchronous calls the short-lived processes want.

How the interface maps (``base.Datastore``):

- a key ``k`` is etcd's ``<prefix>k`` (prefix ``/bgpd/`` by default); its value the
  record's JSON;
- a record's revision is the key's ``mod_revision``, and ``revision()`` the
  cluster's: etcd's revisions grow across the whole keyspace, as ours do;
- ``put``/``delete`` with ``expect`` are one transaction comparing the key's
  ``mod_revision`` (``expect=0``: its ``create_revision`` is 0, i.e. absent); on
  failure the same transaction reads the key, so ``Conflict`` says what it found;
- ``list``/``keys`` page through a range at one revision (a consistent snapshot);
- ``watch`` (``etcd_stream.py``) follows etcd's watch from ``since + 1``, resumes
  after a disconnect from the last revision seen, and says "list again" when
  etcd compacted past it;
- ``hold`` keeps a record alive on a lease, so it vanishes with its writer.

Failures: an endpoint that refuses the connection is skipped for the next one;
when none answers, or the cluster has no leader, ``Unavailable`` (retryable).  A
kept-alive connection is checked before each request (the server may have closed
it while idle).  A read whose answer is lost is sent again to the next endpoint; a
write is not replayed (a compare-and-swap that succeeded would then report a
conflict with itself): it raises ``Unavailable`` too, and the caller retries from
a fresh read.
"""

from __future__ import annotations

import _thread
import binascii
import builtins
import select
import socket
import time

from . import codec
from .base import Conflict, DatastoreError, Record, Unavailable, check_key
from .http1 import HttpError, ResponseParser, request

TYPE_CHECKING = False  # not from typing: its import costs the CNI plugin ~4 ms

if TYPE_CHECKING:
    import ssl
    from collections.abc import AsyncIterator, Iterator
    from typing import Any

    from .base import Change
    from .etcd_stream import LeaseHold

DEFAULT_PREFIX = "/bgpd/"
DEFAULT_ENDPOINT = "http://127.0.0.1:2379"
#: Keys per page of a range read: small enough to keep each answer well under
#: etcd's 1.5 MiB request limit, large enough that listing costs few round trips.
PAGE = 1000
#: gRPC status codes (grpc/codes) that mean "try again": UNAVAILABLE,
#: DEADLINE_EXCEEDED, and etcd's "no leader" / "timed out" ride on these.
_RETRYABLE_CODES = frozenset({4, 14})
_UNAUTHENTICATED = 16
AUTHENTICATE = "/v3/auth/authenticate"
#: etcd's refusals while it elects a leader, made before the request was acted on
#: (ErrNoLeader before proposing a write; ErrLeaderChanged from the linearizable
#: read path): safe to send again.  "request timed out" is not among them: a
#: write may have been applied.
_ELECTION = frozenset({"etcdserver: no leader", "etcdserver: leader changed"})
#: The first pause before asking again during an election (doubling to 0.5 s).
ELECTION_RETRY = 0.05
#: Calls that change nothing (a lease renewed twice is renewed once): sent again,
#: to the next endpoint, when their answer is lost.
_READS = frozenset({
    "/v3/kv/range", "/v3/maintenance/status", "/v3/cluster/member/list", AUTHENTICATE,
    "/v3/lease/keepalive", "/v3/lease/timetolive",
})


class EtcdSettings:
    """Where the cluster is and how to talk to it, as operators configure Calico's
    etcd datastore (``ETCD_ENDPOINTS``, ``ETCD_CA_CERT_FILE``, ...)."""

    __slots__ = ("ca_file", "cert_file", "endpoints", "key_file", "password", "prefix",
                 "timeout", "username")

    def __init__(
        self, endpoints: builtins.list[str], prefix: str = DEFAULT_PREFIX, *,
        ca_file: str | None = None, cert_file: str | None = None,
        key_file: str | None = None, username: str | None = None,
        password: str | None = None, timeout: float = 5.0,
    ) -> None:
        if not endpoints:
            raise DatastoreError("etcd: no endpoints")
        self.endpoints = [parse_endpoint(e) for e in endpoints]
        if not prefix.startswith("/") or not prefix.endswith("/"):
            raise DatastoreError(f"etcd prefix {prefix!r} must start and end with '/'")
        if (cert_file is None) != (key_file is None):
            raise DatastoreError("etcd: a client certificate and its key go together")
        if (username is None) != (password is None):
            raise DatastoreError("etcd: a username and a password go together")
        self.prefix = prefix
        self.ca_file = ca_file
        self.cert_file = cert_file
        self.key_file = key_file
        self.username = username
        self.password = password
        self.timeout = timeout

    def __repr__(self) -> str:  # never the password
        urls = ",".join(f"{s}://{h}:{p}" for s, h, p in self.endpoints)
        return f"EtcdSettings({urls}, prefix={self.prefix!r})"

    def ssl_context(self) -> ssl.SSLContext:
        import ssl  # noqa: PLC0415  (~15 ms: only when an endpoint is https)

        context = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file and self.key_file:
            try:
                context.load_cert_chain(self.cert_file, self.key_file)
            except (OSError, ssl.SSLError) as exc:
                raise DatastoreError(f"etcd client certificate {self.cert_file}: {exc}") from None
        return context


def parse_endpoint(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of ``http[s]://host[:port]`` (IPv6 in brackets)."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        scheme, rest = "http", url.strip()
    if scheme not in ("http", "https"):
        raise DatastoreError(f"etcd endpoint {url!r}: scheme must be http or https")
    rest = rest.rstrip("/")
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port_text = tail[1:] if tail.startswith(":") else ""
    else:
        host, _, port_text = rest.partition(":")
    if not host or "/" in rest:
        raise DatastoreError(f"etcd endpoint {url!r}: expected scheme://host:port")
    if port_text and not (port_text.isascii() and port_text.isdigit()
                          and 0 < int(port_text) < 65536):  # not 70000 = 4464 in disguise
        raise DatastoreError(f"etcd endpoint {url!r}: bad port {port_text!r}")
    return scheme, host, int(port_text) if port_text else 2379


def b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode()


def unb64(text: str) -> bytes:
    return binascii.a2b_base64(text)


def range_end(key: bytes) -> bytes:
    """The end of the range of every key starting with ``key`` (etcd's prefix rule:
    the last byte that is not 0xff, plus one)."""
    data = bytearray(key)
    while data:
        if data[-1] < 0xFF:
            data[-1] += 1
            return bytes(data)
        data.pop()
    return b"\0"  # every key


def error_of(status: int, body: dict[str, Any]) -> DatastoreError:
    """The datastore error for a gateway error answer (``{"code", "message"}``)."""
    code = body.get("code")
    message = body.get("message") or body.get("error") or f"HTTP {status}"
    if code in _RETRYABLE_CODES or status in (502, 503, 504):
        return Unavailable(f"etcd: {message}")
    return DatastoreError(f"etcd: {message}")


class EtcdStore:
    """The datastore in an etcd v3 cluster (see the module's docstring)."""

    def __init__(self, settings: EtcdSettings) -> None:
        self.settings = settings
        self.prefix = settings.prefix.encode()
        self._sock: socket.socket | None = None
        self._current = 0  # index of the endpoint in use
        self._token: str | None = None
        self._ssl: ssl.SSLContext | None = None
        # Held leases renew from worker threads while the owner calls from its own:
        # one request at a time on the one connection.
        self._lock = _thread.allocate_lock()

    def __repr__(self) -> str:
        return f"EtcdStore({self.settings!r})"

    @property
    def current_endpoint(self) -> int:
        """The index of the endpoint that answered last."""
        return self._current

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # -- transport --------------------------------------------------------------

    def _connect(self, index: int) -> socket.socket:
        scheme, host, port = self.settings.endpoints[index]
        sock = socket.create_connection((host, port), timeout=self.settings.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if scheme == "https":
            if self._ssl is None:
                self._ssl = self.settings.ssl_context()
            try:
                sock = self._ssl.wrap_socket(sock, server_hostname=host)
            except OSError:
                sock.close()
                raise
        return sock

    def _exchange(self, sock: socket.socket, data: bytes) -> tuple[int, bytes, bool]:
        """Send one request, read its whole answer: (status, body, reusable)."""
        sock.sendall(data)
        parser = ResponseParser()
        body = []
        while not parser.done:
            chunk = sock.recv(65536)
            parser.feed(chunk)
            body.append(parser.take())
            if not chunk:
                break
        return parser.status, b"".join(body), parser.reusable

    def call(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """One unary gateway call; the decoded answer.  Raises ``Unavailable`` when
        no endpoint answers, ``DatastoreError`` for an error etcd reports."""
        data = codec.dumps(payload, sort_keys=False).encode()
        deadline = 0.0
        delay = ELECTION_RETRY
        with self._lock:
            while True:
                status, body = self._send(path, data, self.auth_headers(path))
                expired = status == 401 or (status != 200 and _code(body) == _UNAUTHENTICATED)
                if expired and self.settings.username is not None:
                    self._token = None  # the token expired: authenticate again, once
                    status, body = self._send(path, data, self.auth_headers(path))
                if status == 200 or _message(body) not in _ELECTION:
                    break
                # A member that lost its leader refused the request before acting
                # on it: ask again while the cluster elects another, as etcd's own
                # client does, within the request timeout.
                now = time.monotonic()
                deadline = deadline or now + self.settings.timeout
                if now + delay > deadline:
                    break
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
        answer = _json_object(body)
        if status != 200:
            raise error_of(status, answer)
        if not answer and body.strip() != b"{}":
            raise DatastoreError(f"etcd {path}: HTTP {status}, not a JSON object: {body[:80]!r}")
        return answer

    def auth_headers(self, path: str = "") -> dict[str, str]:
        """The ``Authorization`` header when the cluster wants a user (etcd's
        ``/v3/auth/authenticate`` hands out a token), authenticating first if needed."""
        if self.settings.username is None or path == AUTHENTICATE:
            return {}
        if self._token is None:
            payload = {"name": self.settings.username, "password": self.settings.password}
            status, body = self._send(
                AUTHENTICATE, codec.dumps(payload, sort_keys=False).encode(), {}
            )
            answer = _json_object(body)
            if status != 200:
                raise error_of(status, answer)
            self._token = str(answer.get("token", ""))
        return {"Authorization": self._token}

    def forget_token(self) -> None:
        """Authenticate again next time: etcd refused the token (it forgets them when
        auth is disabled, or restarting from a snapshot).  Without the lock: it may be
        held for a whole request, and a race costs at most one more authentication."""
        self._token = None

    def locked_auth_headers(self) -> dict[str, str]:
        """``auth_headers`` for another connection (the watch's), from any thread."""
        with self._lock:
            return self.auth_headers()

    def _send(self, path: str, data: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """One request, on the connection in use or a new one, trying each endpoint
        in turn from the one that answered last.  A request whose answer was lost
        is sent again (on the next endpoint) only if it changes nothing."""
        replayable = path in _READS
        failures = []
        count = len(self.settings.endpoints)
        start = self._current
        tries = count
        attempt = -1
        while attempt + 1 < tries:
            attempt += 1
            index = (start + attempt) % count
            scheme, host, port = self.settings.endpoints[index]
            where = f"{scheme}://{host}:{port}"
            if self._sock is not None and not _idle_and_open(self._sock):
                self.close()  # closed by the server while idle: nothing was sent on it
            try:
                if self._sock is None:
                    self._sock = self._connect(index)
                    self._current = index
                message = request("POST", f"{host}:{port}", path, data, headers)
            except OSError as exc:
                self.close()
                failures.append(f"{where}: {exc.strerror or exc}")
                continue
            try:
                status, body, reusable = self._exchange(self._sock, message)
            except (OSError, HttpError) as exc:
                self.close()
                if not replayable:
                    # It may have been applied: never replay (see the module's docstring).
                    raise Unavailable(
                        f"etcd {where}{path}: {exc}; the outcome is unknown"
                    ) from None
                failures.append(f"{where}: {exc}")
                # One more try, once, so that a lone endpoint that dropped one
                # connection is asked again.
                tries = count + 1
                continue
            if not reusable:
                self.close()
            return status, body
        raise Unavailable("etcd: no endpoint answers (" + "; ".join(failures) + ")")

    # -- keys -------------------------------------------------------------------

    def _key(self, key: str) -> bytes:
        return self.prefix + check_key(key).encode()

    def _record(self, kv: dict[str, Any]) -> Record:
        key = unb64(kv["key"])[len(self.prefix):].decode()
        try:
            value = codec.loads(unb64(kv.get("value", "")))
        except ValueError as exc:
            raise DatastoreError(f"etcd key {key}: unreadable record ({exc})") from None
        return Record(key, value, int(kv["mod_revision"]))

    def _range(self, prefix: str, keys_only: bool) -> Iterator[dict[str, Any]]:
        check_key(prefix, prefix=True)
        if prefix and not prefix.endswith("/"):
            raise DatastoreError(f"list prefix {prefix!r} must end in '/'")
        start = self.prefix + prefix.encode()
        end = range_end(start)
        revision = 0
        while True:
            payload: dict[str, Any] = {"key": b64(start), "range_end": b64(end), "limit": PAGE}
            if keys_only:
                payload["keys_only"] = True
            if revision:
                payload["revision"] = revision
            answer = self.call("/v3/kv/range", payload)
            # The first page's: a header tells the current revision, not the one read.
            revision = revision or int(answer["header"]["revision"])
            kvs = answer.get("kvs", [])
            yield from kvs
            if not answer.get("more") or not kvs:
                return
            start = unb64(kvs[-1]["key"]) + b"\0"

    # -- the Datastore interface -----------------------------------------------

    def get(self, key: str) -> Record | None:
        answer = self.call("/v3/kv/range", {"key": b64(self._key(key))})
        kvs = answer.get("kvs")
        return self._record(kvs[0]) if kvs else None

    def list(self, prefix: str) -> builtins.list[Record]:
        return [self._record(kv) for kv in self._range(prefix, keys_only=False)]

    def keys(self, prefix: str) -> builtins.list[str]:
        cut = len(self.prefix)
        return [unb64(kv["key"])[cut:].decode() for kv in self._range(prefix, keys_only=True)]

    def revision(self) -> int:
        answer = self.call("/v3/kv/range", {
            "key": b64(self.prefix), "range_end": b64(range_end(self.prefix)), "count_only": True,
        })
        return int(answer["header"]["revision"])

    def check(self) -> None:
        """A linearizable read: answered only by a cluster with a leader and quorum."""
        self.revision()

    def put(
        self, key: str, value: dict[str, Any], expect: int | None = None,
        durable: bool = True, lease: int = 0,
    ) -> int:
        """As ``Datastore.put``; every etcd write is durable.  ``lease``: the lease the
        key lives on (``hold`` uses it)."""
        full = b64(self._key(key))
        put: dict[str, Any] = {"key": full, "value": b64(codec.dumps(value).encode())}
        if lease:
            put["lease"] = lease
        if expect is None:
            answer = self.call("/v3/kv/put", put)
            return int(answer["header"]["revision"])
        answer = self._txn(full, expect, {"request_put": put})
        if not answer.get("succeeded"):
            raise Conflict(key, expect, self._actual(answer))
        return int(answer["header"]["revision"])

    def delete(self, key: str, expect: int | None = None, durable: bool = True) -> bool:
        full = b64(self._key(key))
        if expect is None:
            answer = self.call("/v3/kv/deleterange", {"key": full})
            return int(answer.get("deleted", 0)) > 0
        answer = self._txn(full, expect, {"request_delete_range": {"key": full}})
        if not answer.get("succeeded"):
            raise Conflict(key, expect, self._actual(answer))
        response = answer.get("responses", [{}])[0].get("response_delete_range", {})
        return int(response.get("deleted", 0)) > 0

    def _txn(self, full: str, expect: int, then: dict[str, Any]) -> dict[str, Any]:
        if expect == 0:
            compare = {"target": "CREATE", "key": full, "result": "EQUAL", "create_revision": 0}
        else:
            compare = {"target": "MOD", "key": full, "result": "EQUAL", "mod_revision": expect}
        return self.call("/v3/kv/txn", {
            "compare": [compare], "success": [then],
            "failure": [{"request_range": {"key": full, "keys_only": True}}],
        })

    @staticmethod
    def _actual(answer: dict[str, Any]) -> int:
        """The key's revision read by a failed transaction (0: absent)."""
        responses = answer.get("responses") or [{}]
        kvs = responses[0].get("response_range", {}).get("kvs") or []
        return int(kvs[0]["mod_revision"]) if kvs else 0

    def watch(self, prefix: str, since: int) -> AsyncIterator[builtins.list[Change]]:
        # Here, not at the top: asyncio would cost the CNI plugin's start-up.
        from .etcd_stream import watch_etcd  # noqa: PLC0415

        return watch_etcd(self, check_key(prefix, prefix=True), since)

    def hold(self, key: str, value: dict[str, Any], ttl: int = 30) -> LeaseHold:
        """A record that lives as long as its writer: ``async with store.hold(...)``
        writes it on a lease of ``ttl`` seconds, keeps the lease alive, and revokes
        it on exit; a writer that dies stops renewing, and etcd drops the key."""
        from .etcd_stream import LeaseHold  # noqa: PLC0415

        return LeaseHold(self, check_key(key), value, ttl)

    def sweep(self) -> builtins.list[str]:
        """Nothing to sweep: etcd's writes are atomic and leave no temporaries."""
        return []

    # -- cluster ----------------------------------------------------------------

    def members(self) -> builtins.list[dict[str, Any]]:
        """The cluster's members (name, peer and client URLs)."""
        return list(self.call("/v3/cluster/member/list", {}).get("members", []))

    def status(self) -> dict[str, Any]:
        """The answering member's status (version, leader, db size, raft index)."""
        return self.call("/v3/maintenance/status", {})


def _idle_and_open(sock: socket.socket) -> bool:
    """Whether a kept-alive connection can carry a request: nothing is readable on
    it (readable between requests means the server closed it, or sent what no
    request of ours asked for)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def _json_object(body: bytes) -> dict[str, Any]:
    """The JSON object in ``body``, or an empty one."""
    try:
        answer = codec.loads(body) if body else {}
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _code(body: bytes) -> object:
    return _json_object(body).get("code")


def _message(body: bytes) -> object:
    answer = _json_object(body)
    return answer.get("message") or answer.get("error")
