"""The thin asyncio driver: one socket and one timer handle per session core.

It only moves things: bytes from the socket into ``Session.receive_data``,
``data_to_send()`` into one ``transport.write``, the core's earliest deadline into
one ``loop.call_at`` handle, and the core's ``Connect``/``Disconnect`` requests
into socket operations.  Every other event goes to ``on_event`` for the layers
above.  Nothing here decides anything about BGP.

Back-pressure: when the kernel's send buffer fills, asyncio pauses writing and
``writable`` turns False; the RIB checks it before generating more UPDATEs for
this peer and awaits ``drained()``.  Keepalives are written regardless, from
the timer, so RIB work never delays them.
"""

from __future__ import annotations

import asyncio
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


class _Protocol(asyncio.Protocol):
    def __init__(self, driver: SessionDriver) -> None:
        self.driver = driver

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.driver._attached(transport, self)

    def data_received(self, data: bytes) -> None:
        self.driver._data(self, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.driver._lost(self, exc)

    def pause_writing(self) -> None:
        self.driver._writable(self, False)

    def resume_writing(self) -> None:
        self.driver._writable(self, True)


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
        self.transport: asyncio.Transport | None = None
        self._protocol: _Protocol | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._incoming = False
        self._adopting = False
        self._drained = asyncio.Event()
        self._drained.set()

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

    def accept(self, sock: socket.socket) -> bool:
        """Take an incoming connection the listener matched to this peer.

        Refused (False) when this session already has a connection: collision
        handling (RFC 4271 §6.8) is the speaker's, which owns both.
        """
        if self.transport is not None or self.session.connected or self._adopting:
            return False
        if self.session.state not in (SessionState.CONNECT, SessionState.ACTIVE):
            return False  # Idle: not started, stopped, or waiting out an error
        if self._connecting is not None:
            self._connecting.cancel()
            self._connecting = None
        self._incoming = True
        self._adopting = True
        self.loop.create_task(self._adopt(sock))
        return True

    def close(self) -> None:
        """Drop everything without telling the peer (process exit keeps routes: GR)."""
        if self._timer is not None:
            self._timer.cancel()
        if self._connecting is not None:
            self._connecting.cancel()
        if self.transport is not None:
            self.transport.abort()

    # -- plumbing

    async def _adopt(self, sock: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(lambda: _Protocol(self), sock)
        except OSError as e:
            log.warning("peer %s: accepting failed: %s", self.endpoint.peer_address, e)
            sock.close()
        finally:
            self._adopting = False

    async def _connect(self) -> None:
        ep = self.endpoint
        try:
            sock = prepare_socket(ep)
            try:
                async with asyncio.timeout(ep.connect_timeout):
                    await self.loop.sock_connect(sock, (ep.peer_address, ep.peer_port))
                self._incoming = False
                await self.loop.create_connection(lambda: _Protocol(self), sock=sock)
            except BaseException:
                if self.transport is None:
                    sock.close()
                raise
        except (OSError, TimeoutError) as e:
            log.info("peer %s: connect failed: %s", ep.peer_address, e)
            self.session.connection_lost(self.loop.time())
            self.flush()
        finally:
            self._connecting = None

    def _attached(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self.transport = transport
        self._protocol = protocol
        # Pause as soon as the kernel refuses bytes: the RIB stops generating for
        # this peer and SendHoldTimer (RFC 9687) measures how long it refuses.
        transport.set_write_buffer_limits(high=0)
        self.session.connection_made(self.loop.time(), outgoing=not self._incoming)
        self.flush()

    def _data(self, protocol: _Protocol, data: bytes) -> None:
        if protocol is self._protocol:
            self.session.receive_data(data, self.loop.time())
            self.flush()

    def _lost(self, protocol: _Protocol, exc: Exception | None) -> None:
        if protocol is not self._protocol:
            return
        self.transport = None
        self._protocol = None
        self._drained.set()
        if self.session.connected:
            self.session.connection_lost(self.loop.time())
            self.flush()

    def _writable(self, protocol: _Protocol, writable: bool) -> None:
        if protocol is not self._protocol:
            return
        now = self.loop.time()
        if writable:
            self._drained.set()
            self.session.transmit_resumed(now)
        else:
            self._drained.clear()
            self.session.transmit_blocked(now)
        self.flush()

    def _on_timer(self) -> None:
        self._timer = None
        self.session.handle_timer(self.loop.time())
        self.flush()

    def flush(self) -> None:
        """Write what the core queued, act on its requests, re-arm the one timer."""
        data = self.session.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)
        while (event := self.session.next_event()) is not None:
            if isinstance(event, Connect):
                if self._connecting is None and self.transport is None:
                    self._connecting = self.loop.create_task(self._connect())
            elif isinstance(event, Disconnect):
                if self.transport is not None:
                    self._protocol = None  # late callbacks from it are ignored
                    if event.abort:
                        self.transport.abort()
                    else:
                        self.transport.close()  # after the queued NOTIFICATION is written
                    self.transport = None
                    self._drained.set()
            else:
                try:
                    self.on_event(self, event)
                except Exception:
                    log.exception("event handler failed for %s", type(event).__name__)
        deadline = self.session.get_timer()
        # A later deadline keeps the armed handle: it fires early, finds nothing
        # due and re-arms.  Every KEEPALIVE received pushes the hold timer back,
        # and re-arming lazily saves a cancel and a heap push per message.
        if self._timer is not None and (deadline is None or deadline < self._timer.when()):
            self._timer.cancel()
            self._timer = None
        if deadline is not None and self._timer is None:
            self._timer = self.loop.call_at(deadline, self._on_timer)
