"""The datastore interface, backend-neutral.

A key is a ``/``-separated path of plain segments (``ipam/blocks/10.65.0.0-26``);
a value is a JSON object.  Every write gets a revision from one counter that only
grows, so a reader can make its write conditional on nothing having changed since
it read (``expect``), as etcd's transactions on ``mod_revision`` do: that is how
two nodes claiming the same block, or two plugins allocating from it, never both
win.  ``expect=0`` means "only if absent".

The interface is synchronous: the short-lived processes (the CNI plugin, ``bgpctl``)
must not pay for an event loop, and the directory backend's operations take well
under a millisecond.  Only watching is asynchronous, for the daemons.

Kept free of ``typing`` and ``dataclasses`` at run time: the CNI plugin imports it
once per pod.
"""

from __future__ import annotations

import builtins

TYPE_CHECKING = False  # not from typing: its import costs the CNI plugin ~4 ms

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from contextlib import AbstractAsyncContextManager
    from typing import Any, Protocol

_SEGMENT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:@-")


class DatastoreError(Exception):
    """Base of the errors a datastore raises."""


class Conflict(DatastoreError):
    """A conditional write lost: the key's revision was not the one expected."""

    def __init__(self, key: str, expected: int, actual: int) -> None:
        what = "absent" if expected == 0 else f"at revision {expected}"
        now = "absent" if actual == 0 else f"at revision {actual}"
        super().__init__(f"{key}: expected {what}, found {now}")
        self.key = key
        self.expected = expected
        self.actual = actual


class Unavailable(DatastoreError):
    """The datastore cannot be used now (missing, unwritable, unreachable): retryable."""


class BadKey(DatastoreError, ValueError):
    """A key that is not a path of plain segments."""


def check_key(key: str, prefix: bool = False) -> str:
    """The key itself when it is valid.  A prefix (for ``list`` and ``watch``) may be
    empty or end in ``/``; a key may not."""
    if prefix and key == "":
        return key
    body = key[:-1] if prefix and key.endswith("/") else key
    for segment in body.split("/"):
        if not segment or segment[0] == "." or not _SEGMENT_CHARS.issuperset(segment):
            raise BadKey(f"bad datastore key {key!r}: segment {segment!r}")
    return key


class Record:
    """One key's value and the revision of its last write."""

    __slots__ = ("key", "revision", "value")

    def __init__(self, key: str, value: dict[str, Any], revision: int) -> None:
        self.key = key
        self.value = value
        self.revision = revision

    def __repr__(self) -> str:
        return f"Record({self.key!r}, revision={self.revision})"


class Change:
    """A key written (``record`` set) or deleted (``record`` None) at ``revision``.
    ``key`` None means the backend lost track (its history was compacted past the
    watcher's revision): the watcher must list again."""

    __slots__ = ("key", "record", "revision")

    def __init__(self, revision: int, key: str | None, record: Record | None) -> None:
        self.revision = revision
        self.key = key
        self.record = record

    def __repr__(self) -> str:
        state = "resync" if self.key is None else "deleted" if self.record is None else "put"
        return f"Change({self.revision}, {self.key!r}, {state})"


if TYPE_CHECKING:

    class Datastore(Protocol):
        """What every backend provides (``directory.py``, ``etcd.py``)."""

        def get(self, key: str) -> Record | None: ...

        def list(self, prefix: str) -> builtins.list[Record]: ...

        def keys(self, prefix: str) -> builtins.list[str]:
            """The keys under ``prefix``, without their values."""

        def put(
            self, key: str, value: dict[str, Any], expect: int | None = None,
            durable: bool = True,
        ) -> int:
            """Write ``value``; with ``expect``, only if the key is at that revision
            (0: absent), else raise Conflict.  Returns the new revision.
            ``durable=False``: the value need not outlive a machine crash (a
            backend may write it faster, or ignore the hint)."""

        def delete(self, key: str, expect: int | None = None, durable: bool = True) -> bool:
            """Remove the key (False when it was absent); with ``expect``, only if
            it is at that revision, else raise Conflict."""

        def revision(self) -> int:
            """The revision of the latest write anywhere."""

        def check(self) -> None:
            """Raise Unavailable when writes cannot be served now."""

        def watch(self, prefix: str, since: int) -> AsyncIterator[builtins.list[Change]]:
            """Batches of changes under ``prefix`` after revision ``since``."""

        def hold(
            self, key: str, value: dict[str, Any], ttl: int = 30
        ) -> AbstractAsyncContextManager[object]:
            """``async with store.hold(key, value)``: a record that lives as long as
            its writer (etcd: on a lease of ``ttl`` seconds, kept alive)."""

        def sweep(self) -> builtins.list[str]:
            """Clear what dead writers left behind (the directory's temporaries)."""

        def close(self) -> None: ...
