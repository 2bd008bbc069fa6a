"""The etcd datastore against real etcd: paged lists, a watch told to list again
after compaction, a watch that outlives an etcd restart or the loss of its member,
``Unavailable`` when nothing answers, held records vanishing with a killed writer,
TLS with client certificates, users and passwords; then its settings and the
choice of backend (``select.py``), which need no etcd."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bgpd.datastore import etcd as etcd_module
from bgpd.datastore import etcd_stream, select
from bgpd.datastore.base import Conflict, DatastoreError, Unavailable
from bgpd.datastore.directory import DirectoryStore
from bgpd.datastore.etcd import EtcdSettings, EtcdStore, parse_endpoint
from bgpd.lab.etcd import EtcdCluster, free_ports
from tests.conftest import require_etcd, require_programs
from tests.datastore.test_contract import summary, take, watching

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
WAIT = 20.0  # seconds: a bound on waiting for etcd, never a delay


def until(
    what: Callable[[], T],
    timeout: float = WAIT,
    errors: tuple[type[Exception], ...] = (DatastoreError,),
) -> T:
    """Call ``what`` until it returns something true (errors in ``errors`` count as
    not yet), or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = what()
            if result:
                return result
        except errors:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout} s: {what}")
        time.sleep(0.05)


def ready(store: EtcdStore) -> bool:
    store.check()
    return True


@pytest.fixture
def fast_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A watch retries at least every 0.3 s (5 s in production) while etcd is away."""
    monkeypatch.setattr(etcd_stream, "RETRY_MAX", 0.3)


def some_calls(store: EtcdStore) -> list[Callable[[], object]]:
    """A read, a write and a check on ``store``."""
    return [lambda: store.get("t/x"), lambda: store.put("t/y", {}), store.check]


def lost_logged(caplog: pytest.LogCaptureFixture) -> bool:
    return any("lost" in r.getMessage() for r in caplog.records)


# -- (a) paged lists ---------------------------------------------------------------------


def test_list_pages_through_a_range(etcd: EtcdCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(etcd_module, "PAGE", 3)
    store = etcd.store("/paging/")
    keys = [f"p/{i:02}" for i in range(10)]
    for key in reversed(keys):
        store.put(key, {"key": key})
    store.put("pa/x", {})  # a sibling folder sorting right after p/
    store.put("o/x", {})  # and one right before
    calls: list[dict[str, Any]] = []
    call = store.call

    def counting(path: str, payload: dict[str, Any]) -> dict[str, Any]:
        if path == "/v3/kv/range":
            calls.append(payload)
        return call(path, payload)

    monkeypatch.setattr(store, "call", counting)
    records = store.list("p/")
    assert [r.key for r in records] == keys
    assert [r.value["key"] for r in records] == keys
    assert len(calls) == 4  # 3 + 3 + 3 + 1
    assert all(c["limit"] == 3 for c in calls)
    # Every page after the first reads at the first one's revision: one snapshot.
    assert "revision" not in calls[0] and len({c["revision"] for c in calls[1:]}) == 1
    calls.clear()
    assert store.keys("p/") == keys
    assert len(calls) == 4 and all(c.get("keys_only") for c in calls)
    assert store.keys("") == ["o/x", *keys, "pa/x"]
    calls.clear()
    assert store.keys("pa/") == ["pa/x"] and len(calls) == 1


def test_a_paged_list_is_one_snapshot(etcd: EtcdCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writes made between two pages are not seen: every page reads one revision."""
    monkeypatch.setattr(etcd_module, "PAGE", 2)
    store = etcd.store("/snapshot/")
    writer = etcd.store("/snapshot/")
    for i in range(6):
        store.put(f"s/{i}", {"v": 0})
    call = store.call

    def meddling(path: str, payload: dict[str, Any]) -> dict[str, Any]:
        answer = call(path, payload)
        writer.put("s/5", {"v": 1})  # after every page: rewrite the last key
        writer.put("s/9", {"v": 1})  # and add one
        return answer

    monkeypatch.setattr(store, "call", meddling)
    records = store.list("s/")
    assert [(r.key, r.value) for r in records] == [(f"s/{i}", {"v": 0}) for i in range(6)]


# -- (b) compaction ----------------------------------------------------------------------


async def test_a_watch_from_before_a_compaction_is_told_to_list_again(
    etcd: EtcdCluster,
) -> None:
    store = etcd.store("/compact/")
    first = store.put("c/0", {"i": 0})
    for i in range(1, 5):
        store.put(f"c/{i}", {"i": i})
    compacted = store.revision()
    store.call("/v3/kv/compaction", {"revision": compacted})
    async with watching(store, "c/", first) as it:
        resync = await take(it, 1)
        assert len(resync) == 1 and resync[0].key is None and resync[0].record is None
        assert resync[0].revision >= compacted
        # Listing again gives the state; the watch goes on from there.
        assert [r.key for r in store.list("c/")] == [f"c/{i}" for i in range(5)]
        put = store.put("c/5", {"i": 5})
        deleted_at = 0
        if store.delete("c/0"):
            deleted_at = store.revision()
        assert summary(await take(it, 2)) == [(put, "c/5", {"i": 5}), (deleted_at, "c/0", None)]


async def test_a_watch_from_the_compaction_revision_is_not_resynced(etcd: EtcdCluster) -> None:
    store = etcd.store("/compact2/")
    for i in range(3):
        store.put(f"c/{i}", {"i": i})
    compacted = store.revision()
    store.call("/v3/kv/compaction", {"revision": compacted})
    async with watching(store, "c/", compacted) as it:
        put = store.put("c/3", {"i": 3})
        assert summary(await take(it, 1)) == [(put, "c/3", {"i": 3})]


# -- (c) an etcd restart -------------------------------------------------------------------


async def test_a_watch_survives_an_etcd_restart(
    etcd: EtcdCluster, fast_retry: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bgpd.datastore.etcd")
    store = etcd.store("/restart/")
    since = store.revision()
    async with watching(store, "w/", since) as it:
        before = [store.put(f"w/{i}", {"i": i}) for i in range(3)]
        assert [c.revision for c in await take(it, 3)] == before
        waiting = asyncio.ensure_future(take(it, 3))
        etcd.stop_member(0)  # SIGTERM, waited for: its data directory is kept
        async with asyncio.timeout(WAIT):
            while not lost_logged(caplog):
                await asyncio.sleep(0.02)
        await asyncio.sleep(1.0)  # down for a while: the watch retries, and fails, meanwhile
        assert not waiting.done()
        etcd.start_member(0)
        await asyncio.to_thread(until, lambda: ready(store))
        after = [store.put(f"w/{i}", {"i": i}) for i in range(3, 6)]
        changes = await waiting
        assert summary(changes) == [
            (r, f"w/{i}", {"i": i}) for r, i in zip(after, range(3, 6), strict=True)
        ]
        # Nothing was delivered twice, nothing is pending: the next write comes next.
        last = store.put("w/last", {})
        assert summary(await take(it, 1)) == [(last, "w/last", {})]
    assert not waiting.exception()


class FakeGateway:
    """An HTTP server answering every ``/v3/watch`` with the next of ``streams``
    (lists of JSON messages, sent chunked, then the stream ends), recording the
    requests' ``create_request``."""

    def __init__(self, streams: list[list[dict[str, Any]]]) -> None:
        self.streams = streams
        self.requests: list[dict[str, Any]] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self.answer, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        self.requests.append(json.loads(await reader.readexactly(length))["create_request"])
        if not self.streams:
            await reader.read()  # nothing more to say: keep the stream open
            return
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for message in self.streams.pop(0):
            line = json.dumps(message).encode() + b"\n"
            writer.write(b"%x\r\n%s\r\n" % (len(line), line))
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        writer.close()


def put_event(key: str, value: dict[str, Any], revision: int) -> dict[str, Any]:
    return {"type": "PUT", "kv": {
        "key": base64.b64encode(f"/bgpd/{key}".encode()).decode(), "mod_revision": str(revision),
        "value": base64.b64encode(json.dumps(value).encode()).decode()}}  # fmt: skip


@pytest.mark.parametrize(
    "error",
    [
        # What etcd's gateway says as etcd shuts down, depending on the race.
        {"grpc_code": 14, "http_code": 503, "message": "transport is closing"},
        {"grpc_code": 1, "http_code": 408, "message": "grpc: the client connection is closing"},
    ],
)
async def test_a_watch_resumes_after_its_stream_ends_in_an_error(
    error: dict[str, Any], fast_retry: None
) -> None:
    created = {"result": {"header": {"revision": "4"}, "created": True}}
    gateway = FakeGateway([
        [created, {"result": {"header": {"revision": "5"}, "events": [put_event("k/a", {}, 5)]}},
         {"error": error}],
        [created, {"result": {"header": {"revision": "7"}, "events": [put_event("k/b", {}, 7)]}}],
    ])  # fmt: skip
    async with gateway as url:
        store = EtcdStore(EtcdSettings([url]))
        async with watching(store, "k/", 3) as it:
            assert summary(await take(it, 2)) == [(5, "k/a", {}), (7, "k/b", {})]
    # From since + 1, then from the revision after the last one delivered.
    assert [r["start_revision"] for r in gateway.requests] == [4, 6]


# -- (d) a member lost ---------------------------------------------------------------------


async def test_a_cluster_losing_the_member_in_use_keeps_serving(
    etcd3: EtcdCluster, fast_retry: None
) -> None:
    store = etcd3.store("/three/")
    r1 = store.put("k/a", {"v": 1})
    used = store.current_endpoint
    async with watching(store, "k/", 0) as it:
        assert summary(await take(it, 1)) == [(r1, "k/a", {"v": 1})]
        etcd3.stop_member(used, kill=True)
        until(lambda: ready(store))  # perhaps a new leader first
        assert store.current_endpoint != used
        record = store.get("k/a")
        assert record is not None and record.revision == r1
        r2 = store.put("k/a", {"v": 2}, expect=r1)
        with pytest.raises(Conflict) as caught:
            store.put("k/a", {"v": 3}, expect=r1)
        assert caught.value.actual == r2
        r3 = store.put("k/b", {"v": 1}, expect=0)
        assert store.delete("k/b", expect=r3)
        deleted = store.revision()
        assert [(r.key, r.value) for r in store.list("k/")] == [("k/a", {"v": 2})]
        # The watch moved to another member and lost nothing written meanwhile.
        assert summary(await take(it, 3)) == [
            (r2, "k/a", {"v": 2}), (r3, "k/b", {"v": 1}), (deleted, "k/b", None)]  # fmt: skip
        last = store.put("k/last", {})
        assert summary(await take(it, 1)) == [(last, "k/last", {})]
    # Without a quorum, a linearizable read or a write fails, in bounded time.
    second = next(i for i in range(3) if i not in (used, store.current_endpoint))
    etcd3.stop_member(second)
    quick = etcd3.store("/three/", timeout=1.0)
    started = time.monotonic()
    with pytest.raises(Unavailable):
        quick.check()
    with pytest.raises(Unavailable):
        quick.put("k/a", {"v": 4})
    assert time.monotonic() - started < 6
    quick.close()
    store.close()


def test_losing_the_leader_needs_no_retry_from_the_caller(etcd3: EtcdCluster) -> None:
    """The leader killed, the very next reads and compare-and-swaps succeed: the
    store asks again while the other members elect one ("no leader", "leader
    changed" are refusals made before etcd acted), as etcd's own client does."""
    store = etcd3.store("/election/")
    revision = store.put("k", {"v": 0})
    leader = int(store.status()["leader"])
    urls = {int(m["ID"]): m["clientURLs"][0] for m in store.members()}
    etcd3.stop_member(etcd3.endpoints.index(urls[leader]), kill=True)
    for n in range(1, 6):
        record = store.get("k")
        assert record is not None and record.revision == revision
        revision = store.put("k", {"v": n}, expect=revision)
    store.check()
    store.close()


# -- (e) nothing answers -------------------------------------------------------------------


def test_unavailable_promptly_when_every_member_is_down(etcd: EtcdCluster) -> None:
    store = etcd.store("/down/")
    r1 = store.put("k", {})
    etcd.stop_member(0)
    calls: list[Callable[[], object]] = [
        lambda: store.get("k"), lambda: store.put("k", {}), store.check,
        lambda: store.put("k", {}, expect=r1), lambda: store.delete("k"),
        lambda: store.list(""), store.revision,
    ]  # fmt: skip
    for call in calls:
        started = time.monotonic()
        with pytest.raises(Unavailable, match="no endpoint answers"):
            call()
        assert time.monotonic() - started < 1.0


def test_unavailable_when_no_endpoint_listens() -> None:
    ports = free_ports(3)
    store = EtcdStore(EtcdSettings([f"http://127.0.0.1:{p}" for p in ports], timeout=1.0))
    started = time.monotonic()
    with pytest.raises(Unavailable) as caught:
        store.check()
    assert time.monotonic() - started < 1.0
    for port in ports:
        assert f"127.0.0.1:{port}" in str(caught.value)


class DroppingProxy:
    """A TCP relay to etcd that, once ``drop_next_answer`` is set, passes the next
    request on and closes the client's connection instead of returning the answer:
    the one fault (an answer lost after etcd acted) that cannot be caused otherwise."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.drop_next_answer = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        with client, socket.create_connection(("127.0.0.1", self.target_port)) as upstream:
            while True:
                request = client.recv(65536)
                if not request:
                    return
                upstream.sendall(request)
                answer = upstream.recv(65536)
                if self.drop_next_answer:
                    self.drop_next_answer = False
                    return  # etcd acted; the client never hears of it
                client.sendall(answer)

    def close(self) -> None:
        self.listener.close()


def test_a_lost_answer_is_never_replayed_for_a_write(etcd: EtcdCluster) -> None:
    """A compare-and-swap whose answer is lost raises Unavailable (the outcome is
    unknown), never a Conflict with its own write; a read is simply sent again."""
    proxy = DroppingProxy(etcd.members[0].client_port)
    store = EtcdStore(EtcdSettings([f"http://127.0.0.1:{proxy.port}"], "/lost/"))
    try:
        first = store.put("k", {"v": 1})  # the connection is now kept alive
        proxy.drop_next_answer = True
        with pytest.raises(Unavailable, match="outcome is unknown"):
            store.put("k", {"v": 2}, expect=first)
        record = store.get("k")
        assert record is not None and record.value == {"v": 2}  # applied exactly once
        assert record.revision == first + 1
        proxy.drop_next_answer = True
        got = store.get("k")  # the lost read is sent again, on a new connection
        assert got is not None and got.value == {"v": 2}
    finally:
        store.close()
        proxy.close()


def test_a_connection_the_server_closed_while_idle_is_not_an_error(etcd: EtcdCluster) -> None:
    proxy = DroppingProxy(etcd.members[0].client_port)
    store = EtcdStore(EtcdSettings([f"http://127.0.0.1:{proxy.port}"], "/idle/"))
    try:
        revision = store.put("k", {"v": 1})
        assert store._sock is not None
        store._sock.getpeername()  # kept alive
        # The relay ends the connection between two requests, as a server may.
        proxy.drop_next_answer = True
        assert store.get("k") is not None  # read lost: sent again
        assert store.put("k", {"v": 2}, expect=revision) == revision + 1  # fresh connection
    finally:
        store.close()
        proxy.close()


# -- (f) held records ----------------------------------------------------------------------

HOLDER = """
import asyncio, sys
from bgpd.datastore.etcd import EtcdSettings, EtcdStore

async def main() -> None:
    store = EtcdStore(EtcdSettings(sys.argv[1].split(","), sys.argv[2]))
    async with store.hold("live/child", {"pid": 0}, ttl=2):
        await asyncio.sleep(120)

asyncio.run(main())
"""


def test_a_held_record_vanishes_when_its_writer_is_killed(etcd: EtcdCluster) -> None:
    store = etcd.store("/hold/")
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, etcd.endpoints_text, "/hold/"], cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip

    def held() -> object:
        assert child.poll() is None, "the holder exited"
        return store.get("live/child")

    try:
        until(held, errors=())
        record = store.get("live/child")
        assert record is not None and child.poll() is None
        written = record.revision
        # The writer renews its lease: the record outlives the TTL while it runs.
        time.sleep(2.5)
        record = store.get("live/child")
        assert record is not None and record.revision == written
        os.kill(child.pid, signal.SIGKILL)
        child.wait(WAIT)
        killed = time.monotonic()
        until(lambda: store.get("live/child") is None, timeout=6.0, errors=())
        assert time.monotonic() - killed <= 2 + 2
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()


async def test_a_hold_needs_two_seconds_at_least(etcd: EtcdCluster) -> None:
    with pytest.raises(DatastoreError):
        etcd.store("/hold/").hold("k", {}, ttl=1)


# -- (g) TLS --------------------------------------------------------------------------------


def openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


def make_pki(folder: Path, name: str = "ca") -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2",
            "-subj", f"/CN=bgpd test {name}", cwd=folder)  # fmt: skip
    for who, extensions in (
        # clientAuth too: etcd's own gateway presents it to etcd's gRPC server.
        ("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n"),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ):
        (folder / f"{who}.ext").write_text(extensions)
        openssl("req", *ec, "-keyout", f"{who}.key", "-out", f"{who}.csr",
                "-subj", f"/CN={who}", cwd=folder)  # fmt: skip
        openssl("x509", "-req", "-in", f"{who}.csr", "-CA", f"{name}.crt", "-CAkey",
                f"{name}.key", "-CAcreateserial", "-out", f"{who}.crt", "-days", "2",
                "-extfile", f"{who}.ext", cwd=folder)  # fmt: skip


class TlsEtcd:
    def __init__(self, pki: Path, endpoint: str) -> None:
        self.pki = pki
        self.endpoint = endpoint

    def store(self, **kwargs: Any) -> EtcdStore:
        return EtcdStore(EtcdSettings([self.endpoint], "/tls/", **kwargs))

    def client(self) -> EtcdStore:
        return self.store(ca_file=str(self.pki / "ca.crt"), cert_file=str(self.pki / "client.crt"),
                          key_file=str(self.pki / "client.key"))  # fmt: skip


@pytest.fixture(scope="module")
def tls_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsEtcd]:
    """One etcd member serving clients over TLS only, with client certificates
    required (``--client-cert-auth``), stopped by PID afterwards."""
    require_etcd()
    require_programs("openssl", package="openssl")
    base = tmp_path_factory.mktemp("etcd-tls")
    pki = base / "pki"
    make_pki(pki)
    client_port, peer_port = free_ports(2)
    client = f"https://127.0.0.1:{client_port}"
    peer = f"http://127.0.0.1:{peer_port}"
    command = [
        "etcd", "--name", "tls", "--data-dir", str(base / "data"),
        "--listen-client-urls", client, "--advertise-client-urls", client,
        "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
        "--initial-cluster", f"tls={peer}", "--initial-cluster-state", "new",
        "--cert-file", str(pki / "server.crt"), "--key-file", str(pki / "server.key"),
        "--client-cert-auth", "--trusted-ca-file", str(pki / "ca.crt"),
        "--log-level", "warn", "--logger", "zap",
    ]  # fmt: skip
    with open(base / "etcd.log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                   start_new_session=True)  # fmt: skip
    try:
        server = TlsEtcd(pki, client)
        store = server.client()

        def up() -> bool:
            assert process.poll() is None, (base / "etcd.log").read_text()
            return ready(store)

        until(up)
        store.close()
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def test_tls_with_a_client_certificate(tls_etcd: TlsEtcd) -> None:
    store = tls_etcd.client()
    since = store.revision()
    async with watching(store, "t/", since) as it:
        r1 = store.put("t/x", {"v": 1}, expect=0)
        r2 = store.put("t/x", {"v": 2}, expect=r1)
        record = store.get("t/x")
        assert record is not None and (record.value, record.revision) == ({"v": 2}, r2)
        assert store.keys("t/") == ["t/x"]
        assert summary(await take(it, 2)) == [(r1, "t/x", {"v": 1}), (r2, "t/x", {"v": 2})]
    store.close()


def test_tls_without_a_client_certificate_is_refused(tls_etcd: TlsEtcd, tmp_path: Path) -> None:
    pki = tls_etcd.pki
    make_pki(tmp_path / "other", name="other")
    refused = {
        "no client certificate": tls_etcd.store(ca_file=str(pki / "ca.crt")),
        "a CA that did not sign the server's": tls_etcd.store(
            ca_file=str(tmp_path / "other" / "other.crt"), cert_file=str(pki / "client.crt"),
            key_file=str(pki / "client.key")),
        "a client certificate of another CA": tls_etcd.store(
            ca_file=str(pki / "ca.crt"), cert_file=str(tmp_path / "other" / "client.crt"),
            key_file=str(tmp_path / "other" / "client.key")),
        "a key that is not the certificate's": tls_etcd.store(
            ca_file=str(pki / "ca.crt"), cert_file=str(pki / "client.crt"),
            key_file=str(pki / "server.key")),
        "a certificate file that is not there": tls_etcd.store(
            ca_file=str(pki / "ca.crt"), cert_file=str(tmp_path / "none.crt"),
            key_file=str(tmp_path / "none.key")),
        "plain HTTP to a TLS port": EtcdStore(EtcdSettings(
            [tls_etcd.endpoint.replace("https", "http")], "/tls/")),
    }  # fmt: skip
    for why, store in refused.items():
        for call in some_calls(store):
            try:
                call()
            except DatastoreError:
                continue
            raise AssertionError(f"{why}: not refused")
        store.close()
    assert tls_etcd.client().get("t/y") is None


# -- (h) users and passwords ---------------------------------------------------------------


def enable_auth(store: EtcdStore, password: str) -> None:
    store.call("/v3/auth/user/add", {"name": "root", "password": password})
    store.call("/v3/auth/user/grant", {"user": "root", "role": "root"})
    store.call("/v3/auth/enable", {})


def test_username_and_password(etcd: EtcdCluster) -> None:
    enable_auth(etcd.store("/auth/"), "s3cret")
    store = etcd.store("/auth/", username="root", password="s3cret")
    r1 = store.put("a/x", {"v": 1}, expect=0)
    record = store.get("a/x")
    assert record is not None and record.revision == r1
    assert store.keys("a/") == ["a/x"]
    assert "s3cret" not in repr(store)
    for who, bad in {
        "a wrong password": etcd.store("/auth/", username="root", password="nope"),
        "an unknown user": etcd.store("/auth/", username="nobody", password="s3cret"),
        "no user": etcd.store("/auth/"),
    }.items():
        for call in some_calls(bad):
            with pytest.raises(DatastoreError) as caught:
                call()
            assert not isinstance(caught.value, Unavailable), (who, caught.value)
    assert store.get("t/y") is None


async def test_a_watch_with_a_password_survives_an_etcd_restart(
    etcd: EtcdCluster, fast_retry: None, caplog: pytest.LogCaptureFixture
) -> None:
    """Tokens forgotten (auth disabled and enabled again, as an operator might;
    or a restarted etcd that had taken a snapshot since): after a restart the watch
    (whose store makes no other call) and the writer both authenticate again."""
    caplog.set_level(logging.WARNING, logger="bgpd.datastore.etcd")
    enable_auth(etcd.store("/auth/"), "s3cret")
    watcher = etcd.store("/auth/", username="root", password="s3cret")
    writer = etcd.store("/auth/", username="root", password="s3cret")
    async with watching(watcher, "w/", writer.revision()) as it:
        first = writer.put("w/1", {})
        assert summary(await take(it, 1)) == [(first, "w/1", {})]
        writer.call("/v3/auth/disable", {})  # drops every token
        etcd.store("/auth/").call("/v3/auth/enable", {})
        waiting = asyncio.ensure_future(take(it, 1))
        etcd.stop_member(0)
        async with asyncio.timeout(WAIT):
            while not lost_logged(caplog):
                await asyncio.sleep(0.02)
        etcd.start_member(0)
        await asyncio.to_thread(until, lambda: ready(writer))
        second = writer.put("w/2", {})
        assert summary(await waiting) == [(second, "w/2", {})]


# -- records another writer left -----------------------------------------------------------


async def test_a_record_that_is_not_json_is_a_datastore_error(etcd: EtcdCluster) -> None:
    store = etcd.store("/foreign/")
    since = store.revision()
    key = base64.b64encode(b"/foreign/f/bad").decode()
    store.call("/v3/kv/put", {"key": key, "value": base64.b64encode(b"{not json").decode()})
    with pytest.raises(DatastoreError, match="f/bad"):
        store.get("f/bad")
    with pytest.raises(DatastoreError, match="f/bad"):
        store.list("f/")
    assert store.keys("f/") == ["f/bad"]
    async with watching(store, "f/", since) as it:
        with pytest.raises(DatastoreError, match="f/bad"):
            await take(it, 1)


# -- (i) settings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("http://127.0.0.1:2379", ("http", "127.0.0.1", 2379)),
        ("https://etcd.example:12379/", ("https", "etcd.example", 12379)),
        ("  http://10.0.0.1  ", ("http", "10.0.0.1", 2379)),
        ("127.0.0.1:4001", ("http", "127.0.0.1", 4001)),
        ("etcd-0", ("http", "etcd-0", 2379)),
        ("https://[fd00::1]:2379", ("https", "fd00::1", 2379)),
        ("http://[::1]", ("http", "::1", 2379)),
    ],
)
def test_parse_endpoint(url: str, parsed: tuple[str, str, int]) -> None:
    assert parse_endpoint(url) == parsed


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1:2379", "unix:///run/etcd.sock", "HTTP://h:1", "http://h:port",
        "http://h:0", "http://h:²", "http://h:65536", "http://h:70000", "http://h:-1",
        "http://:2379", "http://h:2379/v3", "http://", "http://[::1]:x", "http://h:1:2",
    ],
)  # fmt: skip
def test_parse_endpoint_refuses(url: str) -> None:
    with pytest.raises(DatastoreError, match="etcd endpoint"):
        parse_endpoint(url)


def test_settings_validation() -> None:
    ok = EtcdSettings(["http://a:1", "https://b:2"], "/calico/", timeout=2.5)
    assert ok.endpoints == [("http", "a", 1), ("https", "b", 2)]
    assert (ok.prefix, ok.timeout) == ("/calico/", 2.5)
    assert EtcdSettings(["a"]).prefix == "/bgpd/"
    errors: dict[str, Callable[[], object]] = {
        "no endpoints": lambda: EtcdSettings([]),
        "a bad endpoint": lambda: EtcdSettings(["http://a:1", "gopher://b"]),
        "a prefix without a leading slash": lambda: EtcdSettings(["a"], "bgpd/"),
        "a prefix without a trailing slash": lambda: EtcdSettings(["a"], "/bgpd"),
        "a prefix without slashes": lambda: EtcdSettings(["a"], "bgpd"),
        "an empty prefix": lambda: EtcdSettings(["a"], ""),
        "a certificate without its key": lambda: EtcdSettings(["a"], cert_file="c.pem"),
        "a key without its certificate": lambda: EtcdSettings(["a"], key_file="k.pem"),
        "a user without a password": lambda: EtcdSettings(["a"], username="root"),
        "a password without a user": lambda: EtcdSettings(["a"], password="pw"),
    }
    for why, make in errors.items():
        with pytest.raises(DatastoreError):
            make()
            pytest.fail(why)


def test_repr_never_shows_the_password() -> None:
    settings = EtcdSettings(["https://etcd:2379"], username="root", password="hunter2-Secret")
    store = EtcdStore(settings)
    for text in (repr(settings), str(settings), repr(store), str(store)):
        assert "hunter2" not in text
        assert "etcd:2379" in text
    assert (
        "hunter2"
        not in select.StoreConfig(
            {"datastore": "etcd", "endpoints": "https://etcd:2379", "password": "hunter2-Secret"}
        ).describe()
    )


# -- (j) choosing the backend ---------------------------------------------------------------


def test_the_directory_is_the_default(tmp_path: Path) -> None:
    config = select.from_env({})
    assert config.kind == "directory" and config.describe() == "directory"
    store = config.open(str(tmp_path))
    assert isinstance(store, DirectoryStore) and store.root == f"{tmp_path}/store"
    assert select.from_env({"BGPD_DATASTORE": "directory", "ETCD_ENDPOINTS": "x"}).kind == (
        "directory"
    )


def test_from_env() -> None:
    env = {
        "BGPD_DATASTORE": "etcd", "ETCD_ENDPOINTS": "http://a:1,http://b:2",
        "BGPD_ETCD_PREFIX": "/calico/", "ETCD_CA_CERT_FILE": "/ca.pem",
        "ETCD_CERT_FILE": "/c.pem", "ETCD_KEY_FILE": "/k.pem", "ETCD_USERNAME": "u",
        "ETCD_PASSWORD": "p", "BGPD_ETCD_TIMEOUT": "2.5",
    }  # fmt: skip
    config = select.from_env(env)
    assert config.kind == "etcd"
    store = config.open("/nonexistent")
    assert isinstance(store, EtcdStore)
    s = store.settings
    assert s.endpoints == [("http", "a", 1), ("http", "b", 2)]
    assert (s.prefix, s.ca_file, s.cert_file, s.key_file) == ("/calico/", "/ca.pem", "/c.pem",
                                                              "/k.pem")  # fmt: skip
    assert (s.username, s.password, s.timeout) == ("u", "p", 2.5)
    assert config.describe() == "etcd http://a:1,http://b:2 prefix /calico/"
    # Calico's own name for the variable, and its value etcdv3.
    calico = select.from_env({"DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": "http://a:1"})
    assert calico.kind == "etcd" and calico.describe() == "etcd http://a:1 prefix /bgpd/"
    both = {"BGPD_DATASTORE": "directory", "DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": "x"}
    assert select.from_env(both).kind == "directory"  # ours first


def test_from_env_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BGPD_DATASTORE", "etcd")
    monkeypatch.setenv("ETCD_ENDPOINTS", "http://e:1")
    assert select.from_env().describe() == "etcd http://e:1 prefix /bgpd/"


def test_endpoints_with_spaces_and_empty_items() -> None:
    config = select.from_env({"BGPD_DATASTORE": "etcd", "ETCD_ENDPOINTS": "http://a:1, ,b:2,"})
    store = config.open("/nonexistent")
    assert isinstance(store, EtcdStore)
    assert store.settings.endpoints == [("http", "a", 1), ("http", "b", 2)]


def test_from_cni() -> None:
    env = {"BGPD_DATASTORE": "directory", "ETCD_ENDPOINTS": "http://env:1",
           "ETCD_USERNAME": "env-user", "ETCD_PASSWORD": "env-pw"}  # fmt: skip
    config = select.from_cni(
        {"type": "bgpd-cni", "datastore_type": "etcdv3", "etcd_endpoints": "http://cni:2",
         "etcd_timeout": 3, "etcd_prefix": "/cni/"}, env)  # fmt: skip
    assert config.kind == "etcd"
    assert config.values["endpoints"] == "http://cni:2"  # the config's key beats the env
    assert config.values["username"] == "env-user"  # what the config lacks comes from env
    assert config.values["timeout"] == "3"
    assert config.describe() == "etcd http://cni:2 prefix /cni/"
    # "datastore" (ours) beats "datastore_type" (Calico's).
    assert select.from_cni({"datastore": "etcd", "datastore_type": "directory"}, env).kind == "etcd"
    assert select.from_cni({}, env).kind == "directory"
    assert select.from_cni({}, {"DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": "e"}).kind == "etcd"
    with pytest.raises(DatastoreError, match="etcd_endpoints"):
        select.from_cni({"etcd_endpoints": ["http://a:1"]}, env)
    with pytest.raises(DatastoreError):
        select.from_cni({"datastore": True}, env)


def test_from_args() -> None:
    parser = argparse.ArgumentParser()
    select.add_arguments(parser)
    env = {"BGPD_DATASTORE": "etcd", "ETCD_ENDPOINTS": "http://env:1", "ETCD_PASSWORD": "pw",
           "ETCD_USERNAME": "env-user"}  # fmt: skip
    args = parser.parse_args(["--etcd-endpoints", "http://arg:2", "--etcd-prefix", "/p/"])
    config = select.from_args(args, env)
    assert config.kind == "etcd"
    assert config.values["endpoints"] == "http://arg:2"  # an option beats its variable
    assert (config.values["prefix"], config.values["username"], config.values["password"]) == (
        "/p/",
        "env-user",
        "pw",
    )
    args = parser.parse_args(["--datastore", "directory"])
    assert select.from_args(args, env).kind == "directory"
    args = parser.parse_args(["--datastore", "etcd"])
    with pytest.raises(DatastoreError, match="ETCD_ENDPOINTS"):
        select.from_args(args, {})
    with pytest.raises(SystemExit):
        parser.parse_args(["--datastore", "consul"])
    assert not any("password" in a for a in parser.format_help().split() if a.startswith("--"))
    sub = argparse.ArgumentParser()
    select.add_arguments(sub, default=argparse.SUPPRESS)
    assert vars(sub.parse_args([])) == {}


def test_errors() -> None:
    with pytest.raises(DatastoreError, match="ETCD_ENDPOINTS"):
        select.from_env({"BGPD_DATASTORE": "etcd"})
    with pytest.raises(DatastoreError, match="ETCD_ENDPOINTS"):
        select.from_env({"DATASTORE_TYPE": "etcdv3"})
    with pytest.raises(DatastoreError, match="not one of"):
        select.from_env({"BGPD_DATASTORE": "kubernetes"})
    with pytest.raises(DatastoreError, match="not one of"):
        select.from_cni({"datastore_type": "kubernetes"}, {})
    with pytest.raises(DatastoreError, match="not one of"):
        select.StoreConfig({"datastore": "Etcd", "endpoints": "x"})
    bad_timeout = select.from_env({"BGPD_DATASTORE": "etcd", "ETCD_ENDPOINTS": "a",
                                   "BGPD_ETCD_TIMEOUT": "soon"})  # fmt: skip
    with pytest.raises(DatastoreError, match="timeout"):
        bad_timeout.open("/nonexistent")
    bad_endpoint = select.from_env({"BGPD_DATASTORE": "etcd", "ETCD_ENDPOINTS": "ftp://a"})
    with pytest.raises(DatastoreError, match="endpoint"):
        bad_endpoint.open("/nonexistent")


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"datastore": "directory"},
        {"datastore": "etcd", "endpoints": "http://a:1,https://b:2"},
        {
            "datastore": "etcd",
            "endpoints": "https://a:1",
            "prefix": "/c/",
            "ca_file": "/ca",
            "cert_file": "/c",
            "key_file": "/k",
            "username": "u",
            "password": "p",
            "timeout": "1",
        },
    ],
)
def test_env_and_cni_round_trip(values: dict[str, str]) -> None:
    config = select.StoreConfig(values)
    again = select.from_env(config.env())
    assert (again.kind, again.values) == (config.kind, {"datastore": config.kind, **values})
    from_cni = select.from_cni(config.cni(), {})
    assert (from_cni.kind, from_cni.values) == (config.kind, config.values)
    # A child given the environment over a parent's other settings sees the same.
    noisy = {"DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": "http://other:9", **config.env()}
    if config.kind == "directory":
        assert select.from_env(noisy).kind == "directory"
    else:
        assert select.from_env(noisy).values == again.values
