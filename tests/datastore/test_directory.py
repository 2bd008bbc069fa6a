"""The directory datastore: reads and writes, revisions and compare-and-swap, key
checking, atomic records under concurrent readers and writers (several processes,
one of them killed mid-write), ``check()``, and watching the change log."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import subprocess
import sys
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import pytest

from bgpd.datastore import directory
from bgpd.datastore.base import BadKey, Conflict, DatastoreError, Unavailable
from bgpd.datastore.directory import DirectoryStore
from tests.conftest import IN_CI
from tests.datastore.test_contract import summary, take, watching

FORK = multiprocessing.get_context("fork")
WAIT = 30.0  # seconds: a bound on waits for other processes, never a delay


@pytest.fixture
def store(tmp_path: Path) -> DirectoryStore:
    return DirectoryStore(str(tmp_path / "state"))


# -- reading and writing ---------------------------------------------------------------


def test_put_then_get_returns_the_value_and_its_revision(store: DirectoryStore) -> None:
    assert store.get("ipam/blocks/10.65.0.0-26") is None
    value = {"cidr": "10.65.0.0/26", "nested": {"list": [1, None, "é"]}}
    revision = store.put("ipam/blocks/10.65.0.0-26", value)
    record = store.get("ipam/blocks/10.65.0.0-26")
    assert record is not None
    assert (record.key, record.value, record.revision) == (
        "ipam/blocks/10.65.0.0-26", value, revision)
    assert store.revision() == revision


def test_list_and_keys_give_a_folder_in_key_order(store: DirectoryStore) -> None:
    for key in ("a/c", "a/b", "a/b/deeper", "ab/x", "top"):
        store.put(key, {"k": key})
    assert [r.key for r in store.list("a/")] == ["a/b", "a/b/deeper", "a/c"]
    assert [r.value["k"] for r in store.list("a/")] == ["a/b", "a/b/deeper", "a/c"]
    assert store.keys("a/") == ["a/b", "a/b/deeper", "a/c"]
    assert store.keys("a/b/") == ["a/b/deeper"]
    assert store.keys("") == ["a/b", "a/b/deeper", "a/c", "ab/x", "top"]
    assert [r.key for r in store.list("")] == store.keys("")
    assert store.list("nothing/here/") == [] and store.keys("nothing/") == []
    # A prefix is a folder: "a" would also mean "ab/x", so it is refused.
    with pytest.raises(DatastoreError):
        store.list("a")
    with pytest.raises(DatastoreError):
        store.keys("a")


def test_delete_removes_the_key_and_says_whether_it_was_there(store: DirectoryStore) -> None:
    store.put("a/x", {})
    store.put("a/y", {})
    assert store.delete("a/x") is True
    assert store.get("a/x") is None
    assert store.keys("a/") == ["a/y"]
    assert store.delete("a/x") is False


def test_revisions_only_grow(store: DirectoryStore) -> None:
    seen = [store.revision()]
    assert seen == [0]
    for i in range(5):
        seen.append(store.put(f"k/{i % 2}", {"i": i}))
        assert store.revision() == seen[-1]
    store.delete("k/0")
    seen.append(store.revision())
    with pytest.raises(Conflict):
        store.put("k/1", {}, expect=0)
    assert store.revision() == seen[-1], "a lost compare-and-swap takes no revision"
    assert store.delete("never") is False
    assert store.revision() == seen[-1], "deleting nothing takes no revision"
    seen.append(store.put("k/0", {}))
    assert seen == sorted(set(seen))


def test_expect_zero_creates_only(store: DirectoryStore) -> None:
    first = store.put("pools/p", {"v": 1}, expect=0)
    with pytest.raises(Conflict) as caught:
        store.put("pools/p", {"v": 2}, expect=0)
    assert (caught.value.key, caught.value.expected, caught.value.actual) == ("pools/p", 0, first)
    assert "absent" in str(caught.value) and str(first) in str(caught.value)
    record = store.get("pools/p")
    assert record is not None and record.value == {"v": 1}


def test_expect_revision_is_compare_and_swap(store: DirectoryStore) -> None:
    r1 = store.put("c", {"n": 1})
    r2 = store.put("c", {"n": 2}, expect=r1)
    with pytest.raises(Conflict) as caught:
        store.put("c", {"n": 3}, expect=r1)  # stale: somebody wrote r2 since
    assert (caught.value.key, caught.value.expected, caught.value.actual) == ("c", r1, r2)
    with pytest.raises(Conflict) as caught:
        store.put("absent", {}, expect=r2)
    assert (caught.value.expected, caught.value.actual) == (r2, 0)
    with pytest.raises(Conflict):
        store.delete("c", expect=r1)
    with pytest.raises(Conflict):
        store.delete("c", expect=0)
    record = store.get("c")
    assert record is not None and (record.value, record.revision) == ({"n": 2}, r2)
    assert store.delete("c", expect=r2) is True
    assert store.delete("c", expect=0) is False


BAD_KEYS = ["", "/a", "a/", "a//b", ".a", "a/.b", "a/../b", "a/./b", "a b", "a\nb", "é",
            "a/b*", "a\\b", "a/b?"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_refused_everywhere(store: DirectoryStore, key: str) -> None:
    for action in (lambda: store.get(key), lambda: store.put(key, {}),
                   lambda: store.delete(key)):
        with pytest.raises(BadKey):
            action()
    assert store.keys("") == [] and store.revision() == 0


def test_calico_shaped_keys_are_accepted(store: DirectoryStore) -> None:
    keys = ["ipam/blocks/fd00:1::-122", "ipam/affinities/node-1.example/10.0.0.0-26",
            "ipam/handles/k8s-pod-network.0123abc", "x/user@host:port_9"]
    for key in keys:
        store.put(key, {"key": key})
    assert store.keys("") == sorted(keys)
    assert [r.value["key"] for r in store.list("")] == sorted(keys)


# -- several processes ------------------------------------------------------------------


def _reader(root: str, stop: Event, reads: Any, out: Connection) -> None:
    """Read one key as fast as possible; report reads that did not parse or whose
    parts disagree (a half-written record), and the generations seen."""
    store = DirectoryStore(root, create=False)
    bad: list[str] = []
    generations = set()
    while not stop.is_set():
        try:
            record = store.get("big")
        except DatastoreError as exc:
            bad.append(str(exc))
            continue
        reads.value += 1
        if record is None:
            continue
        value = record.value
        if value["head"] != value["tail"] or len(value["blob"]) != 100_000 + value["head"]:
            bad.append(f"inconsistent generation {value['head']}/{value['tail']}")
        generations.add(value["head"])
    out.send((bad, len(generations)))


def test_a_reader_never_sees_a_half_written_record(store: DirectoryStore) -> None:
    stop = FORK.Event()
    reads = FORK.Value("l", 0, lock=False)
    mine, theirs = FORK.Pipe()
    reader = FORK.Process(target=_reader, args=(store.root, stop, reads, theirs))
    reader.start()
    try:
        generation = 0
        # Rewrite until the reader has read many times over many rewrites.
        while generation < 20 or reads.value < 300:
            generation += 1
            blob = "x" * (100_000 + generation)
            store.put("big", {"head": generation, "blob": blob, "tail": generation})
            assert reader.is_alive(), "the reader stopped"
    finally:
        stop.set()
    assert mine.poll(WAIT)
    bad, generations = mine.recv()
    reader.join(WAIT)
    assert bad == []
    assert generations >= 2, "the reads did not overlap the rewrites"


def _increment(store: DirectoryStore, times: int) -> None:
    for _ in range(times):
        while True:
            record = store.get("counter")
            assert record is not None
            try:
                store.put("counter", {"n": record.value["n"] + 1}, expect=record.revision)
            except Conflict:
                continue
            break


def test_concurrent_compare_and_swap_increments_lose_nothing(store: DirectoryStore) -> None:
    # The store object was used before the fork: every child must still take the
    # lock for itself (a lock fd shared with the parent would not exclude anyone).
    start = store.put("counter", {"n": 0})
    workers = [FORK.Process(target=_increment, args=(store, 40)) for _ in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(WAIT)
        assert worker.exitcode == 0
    record = store.get("counter")
    assert record is not None and record.value == {"n": 240}
    assert record.revision >= start + 240


def _write_forever(root: str, started: Event) -> None:
    store = DirectoryStore(root, create=False)
    for i in range(1_000_000):
        store.put(f"w/{i % 5}", {"i": i, "pad": "p" * (i % 7 * 20_000)})
        if i == 30:
            started.set()


def _log_entries(store: DirectoryStore) -> list[tuple[int, str, str]]:
    with open(os.path.join(store.root, directory.LOG)) as f:
        return [(int(r), op, key) for r, op, key in (line.split() for line in f)]


def test_a_writer_killed_mid_write_leaves_a_usable_store(store: DirectoryStore) -> None:
    for _ in range(3):
        started = FORK.Event()
        writer = FORK.Process(target=_write_forever, args=(store.root, started))
        writer.start()
        assert started.wait(WAIT)
        os.kill(writer.pid or 0, signal.SIGKILL)
        writer.join(WAIT)
        assert writer.exitcode == -signal.SIGKILL
    keys = store.keys("")
    assert keys == [f"w/{i}" for i in range(5)]  # its temporary files are not keys
    records = [store.get(key) for key in keys]  # every one parses
    revisions = [r.revision for r in records if r is not None]
    assert len(revisions) == 5 and len(set(revisions)) == 5
    logged = [revision for revision, _, _ in _log_entries(store)]
    assert logged == sorted(set(logged)), "a revision handed out twice"
    before = store.revision()
    assert before >= max(revisions)
    after = store.put("w/0", {"after": True})
    assert after > before and store.put("w/1", {}) > after
    with pytest.raises(Conflict):  # a stale compare-and-swap still loses
        store.put("w/0", {}, expect=after - 1)


# -- availability ---------------------------------------------------------------------


def test_check_refuses_a_missing_directory(tmp_path: Path) -> None:
    store = DirectoryStore(str(tmp_path / "missing"), create=False)
    with pytest.raises(Unavailable, match="does not exist"):
        store.check()
    with pytest.raises(Unavailable):
        store.put("a", {})
    DirectoryStore(str(tmp_path / "missing")).check()  # created when asked


def test_check_refuses_a_directory_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    root = str(tmp_path / "file" / "state")
    with pytest.raises(Unavailable):
        DirectoryStore(root)
    store = DirectoryStore(root, create=False)
    with pytest.raises(Unavailable):
        store.check()
    with pytest.raises(Unavailable):
        store.put("a", {})
    assert store.get("a") is None and store.list("") == []


_READ_ONLY_PROBE = """
import sys
from bgpd.datastore.base import Unavailable
from bgpd.datastore.directory import DirectoryStore
store = DirectoryStore(sys.argv[1], create=False)
assert store.get("a/b").value == {"v": 1}
for action in (store.check, lambda: store.put("a/b", {"v": 2}), lambda: store.delete("a/b")):
    try:
        action()
    except Unavailable:
        print("unavailable")
    else:
        print("served")
"""


def test_check_refuses_a_read_only_directory(store: DirectoryStore) -> None:
    """Root may write through any mode bits, so the directory is made read-only
    as a mount: a read-only bind mount of it, in a private mount namespace that
    vanishes with the probe process."""
    store.put("a/b", {"v": 1})
    script = ('mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" && '
              'exec "$2" -c "$3" "$1"')
    try:
        done = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
             store.root, sys.executable, _READ_ONLY_PROBE],
            capture_output=True, text=True, timeout=WAIT, check=False,
            cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
        )
    except FileNotFoundError:
        done = None
    if done is None or "mount" in done.stderr or "unshare" in done.stderr:
        reason = "needs root (unshare and mount) to make a read-only directory"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["unavailable"] * 3
    record = store.get("a/b")  # outside the namespace nothing changed
    assert record is not None and record.value == {"v": 1}


# -- watching ---------------------------------------------------------------------------


async def test_watch_delivers_puts_and_deletes_under_its_prefix_only(
    store: DirectoryStore,
) -> None:
    store.put("a/x", {"v": 1})
    async with watching(store, "a/", store.revision()) as it:
        waiting = asyncio.ensure_future(take(it, 1))
        await asyncio.sleep(0)  # one turn: the watcher reads nothing and waits on inotify
        assert not waiting.done()
        store.put("b/y", {"v": 1})  # outside the prefix, and logged first
        put = store.put("a/x", {"v": 2})
        changes = await waiting
        assert summary(changes) == [(put, "a/x", {"v": 2})]
        record = changes[0].record
        assert record is not None and record.revision == put
        store.put("ab/z", {"v": 1})  # "a/" is a folder, not a string prefix of "ab"
        store.delete("a/x")
        deleted = store.revision()
        assert summary(await take(it, 1)) == [(deleted, "a/x", None)]


async def test_watch_follows_a_writer_in_another_thread(store: DirectoryStore) -> None:
    def write() -> None:
        for i in range(40):
            store.put(f"b/{i}", {"i": i})
            store.put(f"a/{i}", {"i": i})

    async with watching(store, "a/", 0) as it:
        writer = asyncio.ensure_future(asyncio.to_thread(write))
        changes = await take(it, 40)
        await writer
    assert [c.key for c in changes] == [f"a/{i}" for i in range(40)]
    assert [c.record.value for c in changes if c.record] == [{"i": i} for i in range(40)]
    revisions = [c.revision for c in changes]
    assert revisions == sorted(set(revisions))


async def test_watch_resumes_after_a_revision(store: DirectoryStore) -> None:
    revisions = [store.put(f"a/{i}", {"i": i}) for i in range(4)]
    async with watching(store, "a/", revisions[1]) as it:
        changes = await take(it, 2)
        assert summary(changes) == [(revisions[2], "a/2", {"i": 2}),
                                    (revisions[3], "a/3", {"i": 3})]
        later = store.put("a/4", {"i": 4})
        assert summary(await take(it, 1)) == [(later, "a/4", {"i": 4})]
    async with watching(store, "a/", 0) as it:  # from the start: all of it, no resync
        assert [c.revision for c in await take(it, 5)] == [*revisions, later]


@pytest.fixture
def short_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(directory, "LOG_LIMIT", 300)
    monkeypatch.setattr(directory, "LOG_KEEP", 150)


@pytest.mark.usefixtures("short_log")
async def test_watch_behind_a_cut_log_is_told_to_list_again(store: DirectoryStore) -> None:
    first = store.put("a/first", {})
    revisions = [store.put(f"a/{i}", {"i": i}) for i in range(60)]
    kept = _log_entries(store)
    assert kept[0][0] > first + 1, "the log was not cut"
    async with watching(store, "a/", first) as it:
        changes = await take(it, 1)
        assert changes[0].key is None and changes[0].record is None
        assert [c.revision for c in changes[1:]] == [r for r, _, _ in kept]
        later = store.put("a/later", {})
        assert summary(await take(it, 1)) == [(later, "a/later", {})]
        # Falling behind while watching: the log is cut past us again.
        for i in range(60):
            store.put(f"a/{i}", {"again": i})
        changes = await take(it, 1)
        assert changes[0].key is None
        assert [c.revision for c in changes[1:]] == [r for r, _, _ in _log_entries(store)]
    assert kept[-1][0] == revisions[-1]


@pytest.mark.usefixtures("short_log")
async def test_a_watcher_keeping_up_is_not_disturbed_by_cuts(store: DirectoryStore) -> None:
    async with watching(store, "a/", store.revision()) as it:
        for i in range(80):
            revision = store.put(f"a/{i}", {"i": i})
            assert summary(await take(it, 1)) == [(revision, f"a/{i}", {"i": i})]
    assert _log_entries(store)[0][0] > 1, "the log was not cut"


def test_sweep_removes_only_dead_writers_temporaries(tmp_path: Path) -> None:
    store = DirectoryStore(str(tmp_path / "s"))
    store.put("a/b", {"x": 1})
    folder = tmp_path / "s" / "a"
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = folder / f".b.json.{dead.pid}"
    live = folder / f".b.json.{os.getpid()}"
    stale.write_text("{")
    live.write_text("{")
    assert store.sweep() == [str(stale)]
    assert not stale.exists() and live.exists()
    assert store.get("a/b") is not None and store.keys("a/") == ["a/b"]
