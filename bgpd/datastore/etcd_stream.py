"""The etcd backend's long-lived half, under asyncio: the watch and held leases.

A watch is one streaming ``POST /v3/watch`` (the gateway answers a stream of
``{"result": WatchResponse}`` JSON objects, one per line).  It starts at
``since + 1``; after a disconnect it resumes, on the next endpoint that answers,
from the revision after the last one it delivered, so nothing is lost or seen
twice.  When etcd says the revision was compacted, the watcher is told to list
again (a ``Change`` with key None) and the watch restarts from etcd's current
revision.  While no endpoint answers, the watch waits and retries (backing off to
``RETRY_MAX`` seconds): a daemon keeps its sessions and routes through an etcd
outage, and catches up when etcd is back.

A ``LeaseHold`` writes a record on a lease and renews it every third of its TTL;
if the lease expired while etcd was out of reach, it takes a new one and writes
the record again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import TYPE_CHECKING, Any

from . import codec
from .base import Change, DatastoreError, Unavailable
from .etcd import b64, error_of, range_end, unb64
from .http1 import HttpError, ResponseParser, request

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from types import TracebackType

    from .etcd import EtcdStore

log = logging.getLogger("bgpd.datastore.etcd")

RETRY_MIN = 0.2
RETRY_MAX = 5.0
#: gRPC codes that end a stream but say "try again": CANCELLED (an etcd shutting
#: down closes its gateway's own connection), DEADLINE_EXCEEDED, UNAVAILABLE, and
#: UNAUTHENTICATED (a token etcd forgot: authenticate again).
_RETRY_STREAM = frozenset({1, 4, 14, 16})


class _Stream:
    """One streaming call on one endpoint: the answers, one JSON object at a time."""

    def __init__(self, store: EtcdStore, index: int) -> None:
        self.store = store
        self.index = index
        self.writer: asyncio.StreamWriter | None = None

    async def open(self, path: str, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        scheme, host, port = self.store.settings.endpoints[self.index]
        context = self.store.settings.ssl_context() if scheme == "https" else None
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context), self.store.settings.timeout
        )
        self.writer = writer
        sock = writer.get_extra_info("socket")
        if sock is not None:
            keepalive(sock)
        headers: dict[str, str] = {}
        if self.store.settings.username is not None:
            loop = asyncio.get_running_loop()
            headers = await loop.run_in_executor(None, self.store.locked_auth_headers)
        body = codec.dumps(payload, sort_keys=False).encode()
        writer.write(request("POST", f"{host}:{port}", path, body, headers))
        return self._answers(reader, path)

    async def _answers(
        self, reader: asyncio.StreamReader, path: str
    ) -> AsyncIterator[dict[str, Any]]:
        parser = ResponseParser()
        pending = b""
        while not parser.done:
            data = await reader.read(65536)
            parser.feed(data)
            pending += parser.take()
            if parser.head_done and parser.status != 200:
                if parser.done or not data:
                    answer = _json(pending) or {}
                    raise error_of(parser.status, answer)
                continue
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.strip():
                    message = _json(line)
                    if message is None:
                        raise DatastoreError(f"etcd {path}: not JSON: {line[:80]!r}")
                    yield message
            if not data:
                break
        if pending.strip():
            message = _json(pending)
            if message is not None:
                yield message
        raise Unavailable(f"etcd {path}: the stream ended")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def keepalive(sock: socket.socket) -> None:
    """TCP keepalives (Linux): a member that vanishes without closing the connection
    (its machine lost) is noticed in ~25 s, and the watch moves on."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)


def _json(data: bytes) -> dict[str, Any] | None:
    try:
        value = codec.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


async def watch_etcd(store: EtcdStore, prefix: str, since: int) -> AsyncIterator[list[Change]]:
    """Batches of changes under ``prefix`` after revision ``since`` (see the module)."""
    start = store.prefix + prefix.encode()
    cut = len(store.prefix)
    next_revision = since + 1
    delay = RETRY_MIN
    index = store.current_endpoint
    count = len(store.settings.endpoints)
    outage = False
    while True:
        stream = _Stream(store, index)
        try:
            answers = await stream.open("/v3/watch", {"create_request": {
                "key": b64(start), "range_end": b64(range_end(start)),
                "start_revision": next_revision, "progress_notify": True,
            }})
            async for message in answers:
                if "error" in message:
                    raise _stream_error(store, message["error"])
                result = message.get("result", {})
                if result.get("created") and not result.get("canceled"):
                    if outage:
                        log.warning("etcd watch on %s resumed at revision %d",
                                    _url(store, index), next_revision)
                        outage = False
                    delay = RETRY_MIN
                compacted = int(result.get("compact_revision", 0))
                if compacted:
                    # History before ``compacted`` is gone: list again, follow from now.
                    now = int(result.get("header", {}).get("revision", compacted))
                    log.warning("etcd compacted past revision %d: listing again", next_revision)
                    next_revision = now + 1
                    yield [Change(now, None, None)]
                    break
                if result.get("canceled"):
                    reason = str(result.get("cancel_reason", ""))
                    if "Unauthenticated" in reason or "auth token" in reason:
                        store.forget_token()
                    raise Unavailable(f"etcd canceled the watch: {reason}")
                batch = []
                for event in result.get("events", ()):
                    kv = event["kv"]
                    key = unb64(kv["key"])[cut:].decode()
                    revision = int(kv["mod_revision"])
                    if event.get("type") == "DELETE":
                        batch.append(Change(revision, key, None))
                    else:  # an unreadable record: DatastoreError, as from get or list
                        batch.append(Change(revision, key, store._record(kv)))
                    next_revision = revision + 1
                if batch:
                    yield batch
        except (TimeoutError, OSError, HttpError, Unavailable) as exc:
            if not outage:
                log.warning("etcd watch on %s lost (%s); retrying", _url(store, index), exc)
                outage = True
            index = (index + 1) % count
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)
        finally:
            stream.close()


def _stream_error(store: EtcdStore, error: dict[str, Any]) -> DatastoreError:
    """The error for a stream's ``{"error": {"grpc_code", "http_code", "message"}}``."""
    code = error.get("grpc_code")
    if code == 16:
        store.forget_token()
    if code in _RETRY_STREAM:
        return Unavailable(f"etcd: {error.get('message', '')}")
    return error_of(int(error.get("http_code", 500)), error)


def _url(store: EtcdStore, index: int) -> str:
    scheme, host, port = store.settings.endpoints[index]
    return f"{scheme}://{host}:{port}"


class LeaseHold:
    """``async with store.hold(key, value, ttl)``: the record exists, on a lease, for
    as long as the block runs (see ``EtcdStore.hold``)."""

    def __init__(self, store: EtcdStore, key: str, value: dict[str, Any], ttl: int) -> None:
        if ttl < 2:
            raise DatastoreError("a held record needs a TTL of at least 2 seconds")
        self.store = store
        self.key = key
        self.value = value
        self.ttl = ttl
        self.lease = 0
        self._task: asyncio.Task[None] | None = None

    async def _call(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        # The store's calls are short and synchronous; keep them off the loop's thread
        # so that an etcd that hangs never delays anything else.
        return await asyncio.get_running_loop().run_in_executor(
            None, self.store.call, path, payload
        )

    async def _write(self) -> None:
        grant = await self._call("/v3/lease/grant", {"TTL": self.ttl})
        lease = int(grant["ID"])
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: self.store.put(self.key, self.value, lease=lease)
        )
        # Only now: a lease whose record was never written is no lease of ours
        # (the next renewal starts over; the orphan expires on its own).
        self.lease = lease

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                if not self.lease:
                    await self._write()
                    log.info("etcd: %s written again on lease %x", self.key, self.lease)
                    continue
                answer = await self._call("/v3/lease/keepalive", {"ID": self.lease})
                if int(answer.get("result", {}).get("TTL", 0)) <= 0:
                    self.lease = 0  # expired while etcd was out of reach: start over
            except DatastoreError as exc:
                log.debug("etcd: renewing the lease of %s: %s", self.key, exc)

    async def __aenter__(self) -> LeaseHold:
        try:
            await self._write()
        except DatastoreError as exc:
            log.warning("etcd: cannot write %s yet (%s); will retry", self.key, exc)
        self._task = asyncio.get_running_loop().create_task(self._renew())
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.lease:
            with contextlib.suppress(DatastoreError):
                await self._call("/v3/lease/revoke", {"ID": self.lease})
