"""Following the directory datastore's change log, woken by inotify.

The watcher keeps the log's inode and its offset in it.  Each wake-up reads the
new lines; a log that was cut back (a new inode) is read from its start, and if
its first revision is beyond the next one the watcher expected, history was lost
and the watcher is told to list again (a ``Change`` with key None).  A line is
only taken when complete, so a writer caught mid-append is read on the next wake.

inotify (through ctypes: the standard library has no binding) watches the root
folder for the log being written or replaced; no polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import functools
import os
import struct
from typing import TYPE_CHECKING

from .base import Change, Conflict
from .directory import LOG

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from types import TracebackType
    from typing import Any

    from .directory import DirectoryStore

IN_MODIFY = 0x002
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
_EVENT = struct.Struct("=iIII")  # struct inotify_event { int wd; u32 mask, cookie, len; }



@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _inotify(folder: str) -> int:
    fd = int(_libc().inotify_init1(IN_NONBLOCK | IN_CLOEXEC))
    if fd < 0:
        raise OSError(ctypes.get_errno(), "inotify_init1")
    mask = IN_MODIFY | IN_MOVED_TO | IN_CREATE
    if _libc().inotify_add_watch(fd, os.fsencode(folder), mask) < 0:
        err = ctypes.get_errno()
        os.close(fd)
        raise OSError(err, f"inotify_add_watch {folder}")
    return fd


class LogReader:
    """The unread part of the change log, as (revision, op, key) tuples."""

    def __init__(self, path: str, since: int) -> None:
        self.path = path
        self.since = since
        self.inode = -1
        self.offset = 0
        self.partial = b""

    def read(self) -> tuple[list[tuple[int, str, str]], bool]:
        """New entries after ``since``, and whether history was lost: the log (new,
        or cut back) starts beyond the next revision we wanted."""
        try:
            f = open(self.path, "rb")  # noqa: SIM115 (closed by the with below)
        except FileNotFoundError:
            return [], False
        with f:
            inode = os.fstat(f.fileno()).st_ino
            fresh = inode != self.inode
            if fresh:
                self.inode, self.offset, self.partial = inode, 0, b""
            f.seek(self.offset)
            data = self.partial + f.read()
            self.offset = f.tell()
        lines = data.split(b"\n")
        self.partial = lines.pop()
        entries = []
        lost = False
        for line in lines:
            rev_text, op, key = line.decode().split(" ", 2)
            revision = int(rev_text)
            if fresh:
                fresh = False
                lost = revision > self.since + 1
            if revision <= self.since:
                continue
            entries.append((revision, op, key))
            self.since = revision
        return entries, lost


async def watch_directory(
    store: DirectoryStore, prefix: str, since: int
) -> AsyncIterator[list[Change]]:
    """Batches of changes under ``prefix`` after revision ``since``, each change
    carrying the key's record as it is when read (None once deleted)."""
    loop = asyncio.get_running_loop()
    fd = _inotify(store.root)
    woken = asyncio.Event()

    def wake() -> None:
        try:
            while os.read(fd, 65536):
                pass
        except BlockingIOError:
            pass
        woken.set()

    loop.add_reader(fd, wake)
    reader = LogReader(f"{store.root}/{LOG}", since)
    try:
        while True:
            woken.clear()
            entries, lost = reader.read()
            batch: list[Change] = []
            if lost:
                batch.append(Change(reader.since, None, None))
            for revision, op, key in entries:
                if not key.startswith(prefix):
                    continue
                record = store.get(key) if op == "P" else None
                batch.append(Change(revision, key, record))
            if batch:
                yield batch
                continue
            await woken.wait()
    finally:
        loop.remove_reader(fd)
        os.close(fd)


class DirectoryHold:
    """``DirectoryStore.hold``: writes the record (with the writer's ``pid``) on
    entry and deletes it on exit."""

    def __init__(self, store: DirectoryStore, key: str, value: dict[str, Any]) -> None:
        self.store = store
        self.key = key
        self.value = {**value, "pid": os.getpid()}
        self.revision = 0

    async def __aenter__(self) -> DirectoryHold:
        self.revision = self.store.put(self.key, self.value, durable=False)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with contextlib.suppress(Conflict):
            self.store.delete(self.key, expect=self.revision, durable=False)
