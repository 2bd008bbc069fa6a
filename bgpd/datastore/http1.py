"""A small HTTP/1.1 client, sans-IO, for etcd's JSON gateway (RFC 9112).

``http.client`` costs ~45 ms to import (it pulls in ``email`` and ``ssl``), which the
CNI plugin would pay once per pod; and the watch needs a streaming reader that
works under asyncio.  So the protocol lives here once: ``request`` builds the
bytes of a request, ``ResponseParser`` takes bytes as they arrive and hands out
the status, the headers and the body in pieces, for ``Content-Length``,
chunked (RFC 9112 §7.1) and until-close bodies alike.  The sync driver (``etcd.py``)
and the async one (``etcd_stream.py``) only move bytes.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not from typing: its import costs the CNI plugin ~4 ms

if TYPE_CHECKING:
    from collections.abc import Mapping

#: A header block or chunk-size line longer than this is not a server we know.
MAX_LINE = 64 * 1024
_HEX = frozenset(b"0123456789abcdefABCDEF")
_DIGITS = frozenset(b"0123456789")


class HttpError(Exception):
    """The server's bytes are not HTTP/1.1 as RFC 9112 writes it."""


def request(
    method: str, host: str, path: str, body: bytes = b"",
    headers: Mapping[str, str] | None = None,
) -> bytes:
    """The bytes of one request with a ``Content-Length`` body (RFC 9112 §3, §6.2)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    if body:
        lines.append("Content-Type: application/json")
    for name, value in (headers or {}).items():
        if "\r" in value or "\n" in value:
            raise ValueError(f"header {name}: line breaks are not allowed")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class ResponseParser:
    """One response, fed with ``feed(data)`` (``b""`` at end of stream).

    After each feed: ``status`` and ``headers`` once the head is complete,
    ``take()`` the body bytes that arrived, ``done`` once the body is complete
    (the connection can carry the next request when ``reusable``)."""

    def __init__(self, head_only: bool = False) -> None:
        self._buffer = b""
        self._state = "head"  # head, length, chunk-size, chunk, chunk-end, trailer, close, done
        self._remaining = 0
        self._body: list[bytes] = []
        self._head_only = head_only
        self.status = 0
        self.reason = ""
        self.headers: dict[str, str] = {}
        self.reusable = True

    @property
    def done(self) -> bool:
        return self._state == "done"

    @property
    def head_done(self) -> bool:
        return self._state != "head"

    def take(self) -> bytes:
        """The body bytes received since the last call."""
        data = b"".join(self._body)
        self._body.clear()
        return data

    def feed(self, data: bytes) -> None:
        if not data:
            self._eof()
            return
        self._buffer += data
        while self._buffer and self._step():
            pass

    def _eof(self) -> None:
        if self._state == "close":
            self._body.append(self._buffer)
            self._buffer = b""
            self._state = "done"
            self.reusable = False
        elif self._state != "done":
            raise HttpError(f"connection closed in the middle of a response ({self._state})")

    def _line(self) -> bytes | None:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > MAX_LINE:
                raise HttpError("line too long")
            return None
        line, self._buffer = self._buffer[:end], self._buffer[end + 2:]
        return line

    def _step(self) -> bool:
        """Advance one state; False when more bytes are needed."""
        state = self._state
        if state == "head":
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_LINE:
                    raise HttpError("response head too long")
                return False
            head, self._buffer = self._buffer[:end], self._buffer[end + 4:]
            self._parse_head(head.decode("latin-1"))
            return True
        if state == "length":
            piece = self._buffer[: self._remaining]
            self._buffer = self._buffer[len(piece):]
            self._body.append(piece)
            self._remaining -= len(piece)
            if self._remaining == 0:
                self._state = "done"
            return self._remaining == 0
        if state == "chunk-size":
            line = self._line()
            if line is None:
                return False
            size = line.split(b";", 1)[0].strip()
            if not size or not _HEX.issuperset(size):  # 1*HEXDIG: no sign, 0x or _
                raise HttpError(f"bad chunk size {line[:40]!r}")
            self._remaining = int(size, 16)
            self._state = "chunk" if self._remaining else "trailer"
            return True
        if state == "chunk":
            piece = self._buffer[: self._remaining]
            self._buffer = self._buffer[len(piece):]
            self._body.append(piece)
            self._remaining -= len(piece)
            if self._remaining:
                return False
            self._state = "chunk-end"
            return True
        if state == "chunk-end":
            if len(self._buffer) < 2:
                return False
            if self._buffer[:2] != b"\r\n":
                raise HttpError("chunk not followed by CRLF")
            self._buffer = self._buffer[2:]
            self._state = "chunk-size"
            return True
        if state == "trailer":
            line = self._line()
            if line is None:
                return False
            if not line:
                self._state = "done"
            return True
        if state == "close":
            self._body.append(self._buffer)
            self._buffer = b""
            return False
        return False  # done: anything more belongs to no request of ours

    def _parse_head(self, head: str) -> None:
        status_line, *lines = head.split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise HttpError(f"bad status line {status_line[:80]!r}")
        self.status = int(parts[1])
        self.reason = parts[2] if len(parts) > 2 else ""
        for line in lines:
            name, sep, value = line.partition(":")
            if not sep:
                raise HttpError(f"bad header line {line[:80]!r}")
            self.headers[name.strip().lower()] = value.strip()
        if self.headers.get("connection", "").lower() == "close" or parts[0] == "HTTP/1.0":
            self.reusable = False
        if self._head_only or self.status in (204, 304) or 100 <= self.status < 200:
            self._state = "done"
        elif "chunked" in self.headers.get("transfer-encoding", "").lower():
            self._state = "chunk-size"
        elif "content-length" in self.headers:
            length = self.headers["content-length"]
            if not length or not _DIGITS.issuperset(length.encode()):  # 1*DIGIT
                raise HttpError(f"bad Content-Length {length[:40]!r}")
            self._remaining = int(length)
            self._state = "length" if self._remaining else "done"
        else:
            self._state = "close"
