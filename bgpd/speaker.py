"""The session manager: listening sockets, peers added and removed at run time,
and connection collisions (RFC 4271 §6.8).

Each peer is a ``SessionDriver`` keyed by its address.  An incoming connection
goes to the peer with that address, after the listening socket has checked its
TCP-MD5 signature (the key is installed per peer address on every listening
socket); unknown addresses are closed at once.

Collision (§6.8): when a connection arrives for a peer whose session already has
one in OpenSent or OpenConfirm, the new one runs as a candidate session until
the peer's OPEN names its BGP Identifier.  Then the connection opened by the
speaker with the higher identifier survives; the other is closed with Cease /
Connection Collision Resolution.  A connection arriving while the session is
Established is refused, unless the peer is graceful-restart capable, in which
case the old connection is taken as dead (RFC 4724 §4.2) and the new one wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass

from .fsm import Session, SessionConfig, SessionEvent, SessionState, StateChanged
from .fsm.driver import Endpoint, SessionDriver
from .fsm.sockopts import save_syn, set_md5, set_ttl_security, ttl_acceptable

log = logging.getLogger(__name__)

# Connections taken per wake-up of a listener before the loop serves others.
ACCEPT_BATCH = 64
# Main-session states in which an incoming connection runs as a §6.8 candidate:
# our own connect in flight (Connect), or our connection waiting for OPENs.
_COLLIDING = (SessionState.CONNECT, SessionState.OPENSENT, SessionState.OPENCONFIRM)


@functools.lru_cache(maxsize=65536)
def canonical_address(address: str) -> str:
    """The canonical text of an address (IPv4-mapped IPv6 becomes IPv4); cached, as
    every session event and every accepted connection asks."""
    ip = ipaddress.ip_address(address.split("%", maxsplit=1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


@dataclass
class Peer:
    endpoint: Endpoint
    config: SessionConfig
    driver: SessionDriver
    candidate: SessionDriver | None = None


class Speaker:
    """All BGP sessions of one process."""

    def __init__(
        self,
        listen: list[tuple[str, int]],
        on_event: Callable[[Peer, SessionEvent], None] = lambda p, e: None,
    ) -> None:
        self.listen = listen
        self.on_event = on_event
        self.peers: dict[str, Peer] = {}
        self._sockets: list[socket.socket] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for host, port in self.listen:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and host == "::":
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind((host, port))
            save_syn(sock)
            sock.listen(1024)  # a mesh restart brings every peer at once
            sock.setblocking(False)
            self._sockets.append(sock)
            loop.add_reader(sock.fileno(), self._accept_ready, sock)

    @property
    def ports(self) -> list[int]:
        """The bound ports (useful when listening on port 0)."""
        return [s.getsockname()[1] for s in self._sockets]

    def add_peer(self, endpoint: Endpoint, config: SessionConfig) -> Peer:
        """Add a peer and start its session; the others are untouched."""
        key = canonical_address(endpoint.peer_address)
        if key in self.peers:
            raise ValueError(f"peer {key} exists")
        if endpoint.password:
            self._listener_keys(endpoint.peer_address, endpoint.password)
        peer = Peer(endpoint, config, self._driver(endpoint, config))
        self.peers[key] = peer
        peer.driver.start()
        return peer

    def remove_peer(self, address: str) -> None:
        """Stop the session with Cease and forget the peer."""
        peer = self.peers.pop(canonical_address(address))
        peer.driver.stop()
        if peer.candidate is not None:
            peer.candidate.close()
        if peer.endpoint.password:
            with contextlib.suppress(OSError):
                self._listener_keys(peer.endpoint.peer_address, None)
        asyncio.get_running_loop().call_later(1.0, peer.driver.close)

    async def close(self) -> None:
        """Stop listening and drop every connection without a NOTIFICATION, so peers
        keep our routes for their graceful-restart time (Calico's persist).
        Closing twice is harmless."""
        loop = asyncio.get_running_loop()
        for sock in self._sockets:
            loop.remove_reader(sock.fileno())
            sock.close()
        self._sockets = []
        for peer in self.peers.values():
            peer.driver.close()
            if peer.candidate is not None:
                peer.candidate.close()

    def _listener_keys(self, address: str, password: str | None) -> None:
        """Install (or remove) a peer's TCP-MD5 key on every listener that can
        accept it: those of its family, and dual-stack ``::`` listeners for an
        IPv4 peer, keyed by its IPv4-mapped address (the kernel stores that as
        an IPv4 key)."""
        v4 = ":" not in address
        for sock in self._sockets:
            if sock.family == (socket.AF_INET if v4 else socket.AF_INET6):
                set_md5(sock, address, password)
            elif v4 and not sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY):
                set_md5(sock, f"::ffff:{address}", password)

    def _driver(self, endpoint: Endpoint, config: SessionConfig) -> SessionDriver:
        return SessionDriver(Session(config), endpoint, self._event)

    def _event(self, driver: SessionDriver, event: SessionEvent) -> None:
        peer = self.peers.get(canonical_address(driver.endpoint.peer_address))
        if peer is None:
            return
        if driver is peer.candidate:
            self._candidate_event(peer, event)
            return
        if driver is peer.driver:
            self.on_event(peer, event)

    def _candidate_event(self, peer: Peer, event: SessionEvent) -> None:
        cand = peer.candidate
        assert cand is not None
        if isinstance(event, StateChanged) and event.new == SessionState.IDLE:
            peer.candidate = None
            cand.close()
            return
        if not (isinstance(event, StateChanged) and event.new == SessionState.OPENCONFIRM):
            return
        neg = cand.session.negotiated
        assert neg is not None
        main = peer.driver.session
        if main.state == SessionState.ESTABLISHED:
            # §6.8: an Established connection always wins over a newer one.
            cand.session.open_collision_dump(cand.loop.time())
            cand.flush()
            return
        if main.state not in (SessionState.OPENSENT, SessionState.OPENCONFIRM):
            # Our connect is still pending or has failed: the candidate takes over.
            self._promote(peer, event.new)
            return
        # §6.8: keep the connection opened by the side with the higher identifier.
        if peer.config.local_id < neg.peer_id:
            peer.driver.session.open_collision_dump(peer.driver.loop.time())
            peer.driver.flush()
            self._promote(peer, event.new)
        else:
            cand.session.open_collision_dump(cand.loop.time())
            cand.flush()

    def _promote(self, peer: Peer, state: SessionState) -> None:
        """The candidate becomes the session; the layers above see it enter
        ``state`` (where it stood at this event; later events follow in order)."""
        old = peer.driver
        assert peer.candidate is not None
        peer.driver, peer.candidate = peer.candidate, None
        old.close()
        self.on_event(peer, StateChanged(SessionState.IDLE, state, old.loop.time()))

    def _accept_ready(self, sock: socket.socket) -> None:
        """Take every connection waiting in the listen queue: a mesh restart brings
        them in bursts, and one wake-up per connection would cost a loop pass each."""
        for _ in range(ACCEPT_BATCH):
            try:
                conn, addr = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # out of descriptors, or the peer already gone
                log.warning("accepting a connection failed: %s", e)
                return
            try:
                self._incoming(conn, canonical_address(addr[0]))
            except Exception:
                log.exception("handling a connection from %s failed", addr[0])
                conn.close()

    def _incoming(self, conn: socket.socket, address: str) -> None:
        peer = self.peers.get(address)
        if peer is None:
            log.info("connection from unknown address %s refused", address)
            conn.close()
            return
        if peer.endpoint.ttl_security:
            if not ttl_acceptable(conn, peer.endpoint.ttl_security):
                log.warning("connection from %s refused: too many hops for GTSM", address)
                conn.close()
                return
            set_ttl_security(conn, peer.endpoint.ttl_security)
        main = peer.driver.session
        if peer.driver.accept(conn):
            return
        if main.state == SessionState.ESTABLISHED:
            neg = main.negotiated
            if neg is not None and neg.peer_graceful_restart is not None:
                # RFC 4724 §4.2: the peer restarted; its old connection is gone.
                now = peer.driver.loop.time()
                main.connection_lost(now)
                main.start(now, passive=True)
                peer.driver.flush()
                if peer.driver.accept(conn):
                    return
            conn.close()
            return
        if main.state in _COLLIDING and peer.candidate is None:
            peer.candidate = self._driver(peer.endpoint, peer.config)
            peer.candidate.session.start(peer.candidate.loop.time(), passive=True)
            peer.candidate.accept(conn)
            return
        conn.close()
