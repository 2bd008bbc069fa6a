"""The thin asyncio driver: one socket and one timer handle per session core.

It only moves things: bytes from the socket into ``Session.receive_data``,
``data_to_send()`` into one ``send``, the core's earliest deadline into one
``loop.call_at`` handle, and the core's ``Connect``/``Disconnect`` requests into
socket operations.  Every other event goes to ``on_event`` for the layers above.
Nothing here decides anything about BGP.

The socket is driven directly with ``add_reader``/``add_writer`` rather than
through an asyncio transport: a transport costs a task, a protocol object and
two scheduled callbacks per connection, which for a mesh restart of a thousand
peers was most of the time spent establishing.  An accepted connection is read
at once, before the first write: the peer's OPEN has usually arrived by then, so
our OPEN and KEEPALIVE leave in one segment.

Back-pressure: when the kernel refuses bytes, the rest waits in the driver,
``writable`` turns False and the core is told (``transmit_blocked``), which
starts SendHoldTimer (RFC 9687); the RIB checks ``writable`` before generating
more UPDATEs for this peer and awaits ``drained()``.  Keepalives are written
regardless, from the timer, so RIB work never delays them.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass

from bgpd.messages import Notification

from .events import Connect, Disconnect, SessionEvent
from .session import Session
from .sockopts import set_md5, set_multihop, set_ttl_security
from .states import SessionState

log = logging.getLogger(__name__)

# One read takes what a full-size UPDATE burst leaves in the receive buffer.
READ_SIZE = 256 * 1024
# How long a closing connection may take to hand its last NOTIFICATION over.
CLOSE_LINGER = 5.0


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how to reach the peer (Calico BGPPeer: peerIP, port, sourceAddress,
    password, ttlSecurity; BIRD ``multihop``)."""

    peer_address: str
    peer_port: int = 179
    local_address: str | None = None
    password: str | None = None
    ttl_security: int | None = None
    multihop: int | None = None
    connect_timeout: float = 5.0

    @property
    def family(self) -> socket.AddressFamily:
        return socket.AF_INET6 if ":" in self.peer_address else socket.AF_INET


def prepare_socket(endpoint: Endpoint) -> socket.socket:
    """A non-blocking TCP socket with MD5, GTSM or multihop TTL applied, bound to the
    source address when one is configured."""
    sock = socket.socket(endpoint.family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if endpoint.password:
            set_md5(sock, endpoint.peer_address, endpoint.password)
        if endpoint.ttl_security:
            set_ttl_security(sock, endpoint.ttl_security)
        elif endpoint.multihop:
            set_multihop(sock, endpoint.multihop)
        if endpoint.local_address:
            sock.bind((endpoint.local_address, 0))
    except BaseException:
        sock.close()
        raise
    return sock


class _Closing:
    """A connection being closed after its last bytes (a NOTIFICATION) are handed to
    the kernel; it no longer belongs to any session."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, rest: bytes) -> None:
        self.loop = loop
        self.sock = sock
        self.rest = rest
        loop.add_writer(sock.fileno(), self._write_ready)
        self.deadline = loop.call_later(CLOSE_LINGER, self.close)

    def _write_ready(self) -> None:
        try:
            sent = self.sock.send(self.rest)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        self.rest = self.rest[sent:]
        if not self.rest:
            self.close()

    def close(self) -> None:
        self.deadline.cancel()
        if self.sock.fileno() >= 0:
            self.loop.remove_writer(self.sock.fileno())
            self.sock.close()


class SessionDriver:
    """Runs one ``Session`` on the event loop."""

    def __init__(
        self,
        session: Session,
        endpoint: Endpoint,
        on_event: Callable[[SessionDriver, SessionEvent], None] = lambda d, e: None,
    ) -> None:
        self.session = session
        self.endpoint = endpoint
        self.on_event = on_event
        self.loop = asyncio.get_running_loop()
        self.sock: socket.socket | None = None
        self._fd = -1
        self._pending = b""  # what the kernel refused, written when it is writable
        self._timer: asyncio.TimerHandle | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._drained = asyncio.Event()
        self._drained.set()
        #: Called when a full send buffer has drained (the RIB sends what it held).
        self.on_writable: Callable[[], None] | None = None

    # -- what the layers above call

    def start(self, passive: bool | None = None) -> None:
        self.session.start(self.loop.time(), passive)
        self.flush()

    def stop(self, notification: Notification | None = None) -> None:
        self.session.stop(self.loop.time(), notification)
        self.flush()

    def send(self, data: bytes) -> None:
        """Queue encoded UPDATEs (the RIB encodes once for many peers)."""
        self.session.send_encoded(data, self.loop.time())
        self.flush()

    @property
    def writable(self) -> bool:
        return self._drained.is_set()

    async def drained(self) -> None:
        await self._drained.wait()

    def local_address(self) -> str | None:
        """The address our end of the connection is bound to, while connected."""
        if self.sock is None:
            return None
        try:
            name = self.sock.getsockname()
        except OSError:
            return None
        return str(name[0]) if name else None

    def accept(self, sock: socket.socket) -> bool:
        """Take an incoming connection the listener matched to this peer.

        Refused (False) when this session already has a connection, or is opening
        one: collision handling (RFC 4271 §6.8) is the speaker's, which owns both
        and decides once the OPENs are in.  (Cancelling our own connect instead
        loses both connections when two speakers connect to each other at once.)
        """
        if self.sock is not None or self.session.connected or self._connecting is not None:
            return False
        if self.session.state not in (SessionState.CONNECT, SessionState.ACTIVE):
            return False  # Idle: not started, stopped, or waiting out an error
        self._attach(sock, outgoing=False)
        return True

    def close(self) -> None:
        """Drop everything without telling the peer (process exit keeps routes: GR)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        self._disconnect(abort=True)

    # -- plumbing

    async def _connect(self) -> None:
        ep = self.endpoint
        try:
            sock = prepare_socket(ep)
            try:
                async with asyncio.timeout(ep.connect_timeout):
                    await self.loop.sock_connect(sock, (ep.peer_address, ep.peer_port))
            except BaseException:
                sock.close()
                raise
        except (OSError, TimeoutError) as e:
            log.info("peer %s: connect failed: %s", ep.peer_address, e)
            self._connecting = None
            self.session.connection_lost(self.loop.time())
            self.flush()
            return
        self._connecting = None
        self._attach(sock, outgoing=True)

    def _attach(self, sock: socket.socket, outgoing: bool) -> None:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self._fd = sock.fileno()
        self._pending = b""
        self._drained.set()
        self.session.connection_made(self.loop.time(), outgoing=outgoing)
        if not outgoing:
            # The peer's OPEN is usually here already: answer it in the same write.
            self._read_ready()
            if self.sock is not sock:
                return
        self.loop.add_reader(self._fd, self._read_ready)
        self.flush()

    def _read_ready(self) -> None:
        sock = self.sock
        if sock is None:
            return
        try:
            data = sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._lost(e)
            return
        if not data:
            self._lost(None)
            return
        self.session.receive_data(data, self.loop.time())
        self.flush()

    def _lost(self, exc: OSError | None) -> None:
        if exc is not None and exc.errno not in (errno.ECONNRESET, errno.EPIPE):
            log.info("peer %s: connection failed: %s", self.endpoint.peer_address, exc)
        self._disconnect(abort=True)
        if self.session.connected:
            self.session.connection_lost(self.loop.time())
            self.flush()

    def _write(self, sock: socket.socket, data: bytes) -> None:
        if self._pending:
            self._pending += data
            return
        try:
            sent = sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as e:
            # Reported from the loop, not from inside the flush that wrote.
            self.loop.call_soon(self._lost_if, sock, e)
            return
        if sent < len(data):
            self._pending = data[sent:]
            self.loop.add_writer(self._fd, self._write_ready)
            self._drained.clear()
            self.session.transmit_blocked(self.loop.time())

    def _lost_if(self, sock: socket.socket, exc: OSError) -> None:
        if self.sock is sock:
            self._lost(exc)

    def _write_ready(self) -> None:
        sock = self.sock
        if sock is None or not self._pending:
            return
        try:
            sent = sock.send(self._pending)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._lost(e)
            return
        self._pending = self._pending[sent:]
        if not self._pending:
            self.loop.remove_writer(self._fd)
            self._drained.set()
            self.session.transmit_resumed(self.loop.time())
            self.flush()
            if self.on_writable is not None:
                self.on_writable()

    def _disconnect(self, abort: bool) -> None:
        sock = self.sock
        if sock is None:
            return
        rest = self._pending
        self.loop.remove_reader(self._fd)
        if rest:
            self.loop.remove_writer(self._fd)
        self.sock = None
        self._fd = -1
        self._pending = b""
        self._drained.set()
        if rest and not abort:
            _Closing(self.loop, sock, rest)  # the NOTIFICATION still goes out
        else:
            sock.close()

    def _on_timer(self) -> None:
        self._timer = None
        self.session.handle_timer(self.loop.time())
        self.flush()

    def flush(self) -> None:
        """Write what the core queued, act on its requests, re-arm the one timer."""
        session = self.session
        data = session.data_to_send()
        if data and self.sock is not None:
            self._write(self.sock, data)
        while (event := session.next_event()) is not None:
            if isinstance(event, Connect):
                if self._connecting is None and self.sock is None:
                    self._connecting = self.loop.create_task(self._connect())
            elif isinstance(event, Disconnect):
                self._disconnect(event.abort)
            else:
                try:
                    self.on_event(self, event)
                except Exception:
                    log.exception("event handler failed for %s", type(event).__name__)
        deadline = session.get_timer()
        # A later deadline keeps the armed handle: it fires early, finds nothing
        # due and re-arms.  Every KEEPALIVE received pushes the hold timer back,
        # and re-arming lazily saves a cancel and a heap push per message.
        timer = self._timer
        if timer is not None and (deadline is None or deadline < timer.when()):
            timer.cancel()
            timer = self._timer = None
        if deadline is not None and timer is None:
            self._timer = self.loop.call_at(deadline, self._on_timer)
