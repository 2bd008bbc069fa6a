"""The ``Datastore`` contract, one suite over both backends: the directory store in
a temporary folder and the etcd store on a real etcd (one member shared by the
module, each test with its own key prefix).  What one backend does here, the
other must do the same."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from bgpd.datastore.base import BadKey, Change, Conflict, DatastoreError
from bgpd.datastore.directory import DirectoryStore
from bgpd.lab.etcd import EtcdCluster
from tests.conftest import running_etcd

if TYPE_CHECKING:
    from bgpd.datastore.base import Datastore

WAIT = 10.0  # seconds: a bound on waiting for a watch, never a delay
_prefixes = itertools.count()


@pytest.fixture(scope="module")
def shared_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """One etcd member for the whole module (starting one costs ~1 s); every test
    has its own key prefix in it."""
    with running_etcd(tmp_path_factory, 1) as cluster:
        yield cluster


@pytest.fixture(params=["directory", "etcd"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Datastore]:
    if request.param == "directory":
        made: Datastore = DirectoryStore(str(tmp_path / "store"))
    else:
        cluster: EtcdCluster = request.getfixturevalue("shared_etcd")
        made = cluster.store(f"/contract-{next(_prefixes)}/")
    try:
        yield made
    finally:
        made.close()


# -- reading and writing --------------------------------------------------------------


def test_get_absent_then_present(store: Datastore) -> None:
    assert store.get("a/x") is None
    value = {"cidr": "10.65.0.0/26", "nested": {"list": [1, None, "é"]}, "n": 2**40}
    revision = store.put("a/x", value)
    record = store.get("a/x")
    assert record is not None
    assert (record.key, record.value, record.revision) == ("a/x", value, revision)


def test_put_returns_growing_revisions(store: Datastore) -> None:
    revisions = [store.put(f"k/{i % 2}", {"i": i}) for i in range(6)]
    assert revisions == sorted(set(revisions))
    record = store.get("k/1")
    assert record is not None and record.revision == revisions[-1]


def test_put_expect_zero_only_when_absent(store: Datastore) -> None:
    first = store.put("pools/p", {"v": 1}, expect=0)
    assert first > 0
    with pytest.raises(Conflict) as caught:
        store.put("pools/p", {"v": 2}, expect=0)
    assert (caught.value.key, caught.value.expected, caught.value.actual) == ("pools/p", 0, first)
    record = store.get("pools/p")
    assert record is not None and (record.value, record.revision) == ({"v": 1}, first)


def test_put_expect_revision_is_compare_and_swap(store: Datastore) -> None:
    r1 = store.put("c", {"n": 1})
    r2 = store.put("c", {"n": 2}, expect=r1)
    assert r2 > r1
    with pytest.raises(Conflict) as caught:
        store.put("c", {"n": 3}, expect=r1)  # stale: r2 was written since
    assert (caught.value.key, caught.value.expected, caught.value.actual) == ("c", r1, r2)
    with pytest.raises(Conflict) as caught:
        store.put("absent", {}, expect=r2)
    assert (caught.value.expected, caught.value.actual) == (r2, 0)
    assert store.get("absent") is None
    record = store.get("c")
    assert record is not None and (record.value, record.revision) == ({"n": 2}, r2)


def test_delete(store: Datastore) -> None:
    assert store.delete("a/x") is False
    r1 = store.put("a/x", {"v": 1})
    store.put("a/y", {"v": 1})
    assert store.delete("a/x") is True
    assert store.get("a/x") is None
    assert store.keys("a/") == ["a/y"]
    assert store.delete("a/x") is False
    assert r1 > 0


def test_delete_with_expect(store: Datastore) -> None:
    r1 = store.put("d", {"n": 1})
    r2 = store.put("d", {"n": 2})
    with pytest.raises(Conflict) as caught:
        store.delete("d", expect=r1)
    assert (caught.value.key, caught.value.expected, caught.value.actual) == ("d", r1, r2)
    with pytest.raises(Conflict) as caught:
        store.delete("d", expect=0)
    assert caught.value.actual == r2
    assert store.get("d") is not None
    assert store.delete("d", expect=r2) is True
    assert store.get("d") is None
    assert store.delete("d", expect=0) is False  # absent, as expected: nothing to do
    with pytest.raises(Conflict) as caught:
        store.delete("d", expect=r2)
    assert caught.value.actual == 0


def test_list_and_keys_in_key_order_under_a_folder(store: Datastore) -> None:
    for key in ("a/c", "a/b", "a/b/deeper", "ab/x", "a.b/y", "top", "a-z/q"):
        store.put(key, {"k": key})
    assert store.keys("a/") == ["a/b", "a/b/deeper", "a/c"]
    assert [(r.key, r.value["k"]) for r in store.list("a/")] == [
        ("a/b", "a/b"), ("a/b/deeper", "a/b/deeper"), ("a/c", "a/c")]  # fmt: skip
    assert store.keys("a/b/") == ["a/b/deeper"]
    assert store.keys("ab/") == ["ab/x"]
    assert store.keys("") == sorted(["a/c", "a/b", "a/b/deeper", "ab/x", "a.b/y", "top", "a-z/q"])
    assert [r.key for r in store.list("")] == store.keys("")
    for record in store.list("a/"):
        got = store.get(record.key)
        assert got is not None and got.revision == record.revision
    assert store.list("nothing/here/") == [] and store.keys("nothing/") == []


def test_a_list_prefix_must_end_with_a_slash(store: Datastore) -> None:
    store.put("ab/x", {})
    with pytest.raises(DatastoreError):
        store.list("a")
    with pytest.raises(DatastoreError):
        store.keys("a")


@pytest.mark.parametrize("key", ["", "/a", "a/", "a//b", "a/.hidden", "a b", "a/ü", "..", "a\\b"])
def test_bad_keys_are_refused(store: Datastore, key: str) -> None:
    for call in (store.get, store.delete, lambda k: store.put(k, {})):
        with pytest.raises(BadKey):
            call(key)
    assert store.keys("") == []


@pytest.mark.parametrize("prefix", ["/", "//", "/a/", "a//", ".x/", "a b/", "../"])
def test_bad_prefixes_are_refused(store: Datastore, prefix: str) -> None:
    with pytest.raises(BadKey):
        store.list(prefix)
    with pytest.raises(BadKey):
        store.keys(prefix)
    with pytest.raises(BadKey):
        store.watch(prefix, 0)


def test_revision_grows_with_writes(store: Datastore) -> None:
    before = store.revision()
    put = store.put("r/x", {})
    assert put > before and store.revision() == put
    store.delete("r/x")
    deleted = store.revision()
    assert deleted > put
    store.put("r/y", {})
    assert store.revision() > deleted


def test_check_passes(store: Datastore) -> None:
    store.check()


# -- watching ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def watching(
    store: Datastore, prefix: str, since: int
) -> AsyncIterator[AsyncIterator[list[Change]]]:
    it = store.watch(prefix, since)
    try:
        yield it
    finally:
        await it.aclose()  # type: ignore[attr-defined]


async def take(it: AsyncIterator[list[Change]], count: int) -> list[Change]:
    """Batches until at least ``count`` changes came."""
    got: list[Change] = []
    async with asyncio.timeout(WAIT):
        while len(got) < count:
            got += await anext(it)
    return got


def summary(changes: list[Change]) -> list[tuple[int, str | None, Any]]:
    return [(c.revision, c.key, None if c.record is None else c.record.value) for c in changes]


async def test_watch_delivers_puts_and_deletes_in_order_under_its_prefix(
    store: Datastore,
) -> None:
    # The directory backend reads a put's record when it delivers the change (the
    # key's value then, None once deleted), so within one burst each key is written
    # once and only keys written before ``since`` are deleted.
    store.put("a/old", {"v": 0})
    since = store.put("a/x", {"v": 1})
    async with watching(store, "a/", since) as it:
        expected: list[tuple[int, str | None, Any]] = []
        for i in range(3):
            store.put("b/y", {"v": i})  # another folder
            store.put(f"ab/{i}", {"v": i})  # "a/" is a folder, not a string prefix
            expected.append((store.put(f"a/{i}", {"i": i}), f"a/{i}", {"i": i}))
        store.delete("b/y")
        assert store.delete("a/old")
        expected.append((store.revision(), "a/old", None))
        expected.append((store.put("a/x", {"v": 2}), "a/x", {"v": 2}))
        changes = await take(it, len(expected))
        assert summary(changes) == expected
        for change in changes:
            if change.record is not None:
                assert (change.record.key, change.record.revision) == (change.key, change.revision)
        # Nothing else is pending: the next write is the next change, a put then
        # its delete each seen as such.
        last = store.put("a/last", {})
        assert summary(await take(it, 1)) == [(last, "a/last", {})]
        store.delete("a/last")
        assert summary(await take(it, 1)) == [(store.revision(), "a/last", None)]


async def test_watch_starts_after_since(store: Datastore) -> None:
    revisions = [store.put(f"a/{i}", {"i": i}) for i in range(4)]
    async with watching(store, "a/", revisions[1]) as it:
        changes = await take(it, 2)
        assert summary(changes) == [
            (revisions[2], "a/2", {"i": 2}), (revisions[3], "a/3", {"i": 3})]  # fmt: skip
        later = store.put("a/4", {"i": 4})
        assert summary(await take(it, 1)) == [(later, "a/4", {"i": 4})]


async def test_watch_from_now_sees_only_later_writes(store: Datastore) -> None:
    store.put("w/before", {})
    async with watching(store, "w/", store.revision()) as it:
        waiting = asyncio.ensure_future(take(it, 1))
        await asyncio.sleep(0.05)  # give a wrong watcher its chance to deliver the past
        assert not waiting.done()
        put = store.put("w/after", {"n": 1})
        assert summary(await waiting) == [(put, "w/after", {"n": 1})]


async def test_watch_of_everything(store: Datastore) -> None:
    since = store.revision()
    async with watching(store, "", since) as it:
        a = store.put("x/1", {})
        b = store.put("y/2", {})
        assert summary(await take(it, 2)) == [(a, "x/1", {}), (b, "y/2", {})]


# -- held records ------------------------------------------------------------------------


async def test_hold_keeps_the_record_while_the_block_runs(store: Datastore) -> None:
    async with store.hold("live/me", {"addr": "10.0.0.1"}, ttl=5):
        record = store.get("live/me")
        assert record is not None and record.value["addr"] == "10.0.0.1"
        assert store.keys("live/") == ["live/me"]
    assert store.get("live/me") is None
    assert store.keys("live/") == []


async def test_hold_refuses_a_bad_key(store: Datastore) -> None:
    with pytest.raises(BadKey):
        store.hold("/bad", {})
