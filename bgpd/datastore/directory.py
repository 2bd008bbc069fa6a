"""The directory datastore: the embedded default, one state directory on this machine.

Layout under the root::

    <key>.json      {"revision": N, "value": {...}}, one file per key
    .lock           flock'd around every write: the one writer at a time
    .revision       the last revision handed out (text)
    .changes        the change log: one line "<revision> P|D <key>" per write

A write, under the lock: check ``expect`` against the file on disk; take the next
revision *first* (so a writer killed half-way skips a number but never hands the
same one out twice, which would let a stale compare-and-swap pass), above the
key's own; write a temporary file, fsync, rename over the key, fsync the
directory; append to the change log.  Readers take no lock: a rename is atomic, so a reader
sees the old file or the new one, never half of either.

Watchers (``watch.py``) follow the change log with inotify.  The log is cut back
when it grows past ``LOG_LIMIT``; a watcher that had not read that far is told to
list again, as etcd says "compacted".

Several processes, and several lab nodes sharing one state directory, use it
safely; it never spans machines (that is the etcd backend's job).
"""

from __future__ import annotations

import builtins
import fcntl
import os

from . import codec, local
from .base import Conflict, DatastoreError, Record, Unavailable, check_key

TYPE_CHECKING = False  # not from typing: its import costs the CNI plugin ~4 ms

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from typing import Any

    from .base import Change
    from .watch import DirectoryHold

LOG = ".changes"
LOG_LIMIT = 4 * 1024 * 1024
#: How much of the log survives a cut: enough for any watcher that is merely busy.
LOG_KEEP = 1024 * 1024


class DirectoryStore:
    """The datastore in a directory (``root``), created when missing."""

    def __init__(self, root: str, create: bool = True) -> None:
        self.root = os.path.abspath(root)
        if create:
            try:
                os.makedirs(self.root, exist_ok=True)
            except OSError as exc:
                raise Unavailable(f"state directory {self.root}: {exc.strerror}") from None
        self._lock_fd = -1
        self._lock_pid = 0

    def __repr__(self) -> str:
        return f"DirectoryStore({self.root!r})"

    def close(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    # -- reading ----------------------------------------------------------------

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}.json"

    def _read(self, key: str, path: str) -> Record | None:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            return None
        except OSError as exc:
            raise Unavailable(f"{path}: {exc.strerror}") from None
        try:
            stored = codec.loads(data)
            return Record(key, stored["value"], stored["revision"])
        except (ValueError, KeyError, TypeError) as exc:
            # Writes are atomic, so this is damage from outside: say where.
            raise DatastoreError(f"{path}: unreadable record ({exc})") from None

    def get(self, key: str) -> Record | None:
        return self._read(check_key(key), self._path(key))

    def list(self, prefix: str) -> builtins.list[Record]:
        """Every record whose key starts with ``prefix`` (empty, or ending in ``/``:
        a folder of keys), in key order."""
        check_key(prefix, prefix=True)
        if prefix and not prefix.endswith("/"):
            raise DatastoreError(f"list prefix {prefix!r} must end in '/'")
        records = []
        for key, path in sorted(self._walk(f"{self.root}/{prefix}".rstrip("/"), prefix)):
            record = self._read(key, path)
            if record is not None:
                records.append(record)
        return records

    def keys(self, prefix: str) -> builtins.list[str]:
        """The keys under ``prefix`` (as for ``list``), without reading them."""
        check_key(prefix, prefix=True)
        if prefix and not prefix.endswith("/"):
            raise DatastoreError(f"keys prefix {prefix!r} must end in '/'")
        return sorted(k for k, _ in self._walk(f"{self.root}/{prefix}".rstrip("/"), prefix))

    def _walk(self, folder: str, prefix: str) -> Iterator[tuple[str, str]]:
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise Unavailable(f"{folder}: {exc.strerror}") from None
        for entry in entries:
            if entry.name.startswith("."):
                continue  # our own files and writers' temporaries
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(entry.path, f"{prefix}{entry.name}/")
            elif entry.name.endswith(".json"):
                yield f"{prefix}{entry.name[:-5]}", entry.path

    def revision(self) -> int:
        try:
            with open(f"{self.root}/.revision", "rb") as f:
                return int(f.read() or b"0")
        except FileNotFoundError:
            return 0

    # -- writing ----------------------------------------------------------------

    def _lock(self) -> int:
        if self._lock_pid != os.getpid():
            # A copy of this object made by fork shares the parent's open lock file,
            # and flock does not keep two holders of one open file apart: open anew.
            self.close()
        if self._lock_fd < 0:
            try:
                self._lock_fd = os.open(
                    f"{self.root}/.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644
                )
            except OSError as exc:
                raise Unavailable(f"state directory {self.root}: {exc.strerror}") from None
            self._lock_pid = os.getpid()
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        return self._lock_fd

    def _unlock(self) -> None:
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _next_revision(self, floor: int) -> int:
        """The next revision, above the counter and above ``floor`` (the key's own
        revision now): so a key's revisions always grow, even if the counter lost
        its last writes with the machine (it is not synced: a killed process
        loses nothing from the page cache, and a machine crash takes every
        process holding an older read with it)."""
        fd = os.open(f"{self.root}/.revision", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            revision = max(int(os.pread(fd, 32, 0) or b"0"), floor) + 1
            text = str(revision).encode()
            os.pwrite(fd, text, 0)
            os.ftruncate(fd, len(text))
        finally:
            os.close(fd)
        return revision

    def _current(self, key: str, path: str) -> int:
        record = self._read(key, path)
        return 0 if record is None else record.revision

    def put(
        self, key: str, value: dict[str, Any], expect: int | None = None, durable: bool = True
    ) -> int:
        """Write ``value`` (see ``Datastore.put``).  ``durable=False`` skips the
        fsyncs, for records of state that a machine crash wipes out anyway (the
        CNI plugin's endpoint records describe veths, which do not survive one);
        the write is still atomic."""
        path = self._path(check_key(key))
        data_prefix = b'{"revision": '
        body = codec.dumps(value).encode()
        self._lock()
        try:
            actual = self._current(key, path)
            if expect is not None and actual != expect:
                raise Conflict(key, expect, actual)
            revision = self._next_revision(actual)
            folder, name = path.rsplit("/", 1)
            temp = f"{folder}/.{name}.{os.getpid()}"
            data = data_prefix + str(revision).encode() + b', "value": ' + body + b"}\n"
            try:
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            except FileNotFoundError:
                os.makedirs(folder, exist_ok=True)
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, data)
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temp, path)
            if durable:
                _fsync_dir(folder)
            self._log(revision, "P", key)
            return revision
        except OSError as exc:
            raise Unavailable(f"writing {key}: {exc.strerror}") from None
        finally:
            self._unlock()

    def delete(self, key: str, expect: int | None = None, durable: bool = True) -> bool:
        path = self._path(check_key(key))
        self._lock()
        try:
            actual = self._current(key, path)
            if expect is not None and actual != expect:
                raise Conflict(key, expect, actual)
            if actual == 0:
                return False
            revision = self._next_revision(actual)
            os.unlink(path)
            if durable:
                _fsync_dir(path.rsplit("/", 1)[0])
            self._log(revision, "D", key)
            return True
        except OSError as exc:
            raise Unavailable(f"deleting {key}: {exc.strerror}") from None
        finally:
            self._unlock()

    def _log(self, revision: int, op: str, key: str) -> None:
        """Append to the change log (caller holds the lock), cutting it back when long.
        Not fsynced: after a crash, daemons list everything again anyway."""
        path = f"{self.root}/{LOG}"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, f"{revision} {op} {key}\n".encode())
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if size > LOG_LIMIT:
            with open(path, "rb") as f:
                f.seek(size - LOG_KEEP)
                f.readline()  # a partial line
                tail = f.read()
            temp = f"{self.root}/.changes.cut"
            with open(temp, "wb") as f:
                f.write(tail)
            os.rename(temp, path)

    def sweep(self) -> builtins.list[str]:
        """Remove the temporary files of writers that died before their rename
        (``.<key>.json.<pid>`` with no such process); the paths removed.  Readers
        never see them; this only gives the disk space back."""
        removed = []
        for folder, _dirs, files in os.walk(self.root):
            for name in files:
                if not name.startswith(".") or not name.endswith(tuple("0123456789")):
                    continue
                stem, _, pid = name.rpartition(".")
                if not stem.endswith(".json") or not pid.isdigit() or local.pid_alive(int(pid)):
                    continue
                try:
                    os.unlink(f"{folder}/{name}")
                    removed.append(f"{folder}/{name}")
                except FileNotFoundError:
                    pass
        return removed

    def check(self) -> None:
        """Raise Unavailable unless a write could be served now: the directory is
        there, writable, and its lock can be taken."""
        if not os.path.isdir(self.root):
            raise Unavailable(f"state directory {self.root} does not exist")
        if not os.access(self.root, os.W_OK):
            raise Unavailable(f"state directory {self.root} is not writable")
        self._lock()
        self._unlock()

    def watch(self, prefix: str, since: int) -> AsyncIterator[builtins.list[Change]]:
        # Here, not at the top: asyncio and ctypes would cost the CNI plugin's start-up.
        from .watch import watch_directory  # noqa: PLC0415

        return watch_directory(self, check_key(prefix, prefix=True), since)

    def hold(self, key: str, value: dict[str, Any], ttl: int = 30) -> DirectoryHold:
        """The record for as long as the ``async with`` block runs.  There are no
        leases on one machine: the record names its writer's ``pid``, so a reader can
        tell one left by a writer that was killed (``local.pid_alive``)."""
        from .watch import DirectoryHold  # noqa: PLC0415

        return DirectoryHold(self, check_key(key), value)


def _fsync_dir(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

