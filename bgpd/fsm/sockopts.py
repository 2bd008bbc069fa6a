"""Socket options a BGP session needs that Python's socket module does not name.

- TCP-MD5 (RFC 2385): ``TCP_MD5SIG`` with ``struct tcp_md5sig`` from
  ``include/uapi/linux/tcp.h``::

      struct tcp_md5sig {
          struct __kernel_sockaddr_storage tcpm_addr;  /* 128 octets */
          __u8   tcpm_flags;
          __u8   tcpm_prefixlen;
          __u16  tcpm_keylen;
          __u32  tcpm_ifindex;
          __u8   tcpm_key[TCP_MD5SIG_MAXKEYLEN];      /* 80 octets */
      };

  Set on a listening socket once per peer address, and on a connecting socket
  before ``connect``.
- GTSM / TTL security (RFC 5082): send with TTL (hop limit) 255 and refuse
  segments that arrive with less than ``256 - hops``: ``IP_MINTTL`` and
  ``IPV6_MINHOPCOUNT``, as BIRD's ``ttl security on; multihop N``.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

TCP_MD5SIG = 14
TCP_MD5SIG_MAXKEYLEN = 80
IP_MINTTL = 21
IPV6_MINHOPCOUNT = 73
TCP_SAVE_SYN = 27
TCP_SAVED_SYN = 28
_SOCKADDR_STORAGE = 128


def _sockaddr(address: str) -> bytes:
    """``struct sockaddr_in``/``sockaddr_in6`` padded to sockaddr_storage, port 0."""
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        raw = struct.pack("=H", socket.AF_INET) + b"\0\0" + ip.packed
    else:
        raw = struct.pack("=H", socket.AF_INET6) + b"\0\0" + b"\0\0\0\0" + ip.packed + b"\0\0\0\0"
    return raw.ljust(_SOCKADDR_STORAGE, b"\0")


def tcp_md5sig(address: str, key: bytes) -> bytes:
    """The ``struct tcp_md5sig`` value for one peer (an empty key removes it)."""
    if len(key) > TCP_MD5SIG_MAXKEYLEN:
        raise ValueError(f"TCP-MD5 keys are at most {TCP_MD5SIG_MAXKEYLEN} octets")
    return (
        _sockaddr(address)
        + struct.pack("=BBHI", 0, 0, len(key), 0)
        + key.ljust(TCP_MD5SIG_MAXKEYLEN, b"\0")
    )


def set_md5(sock: socket.socket, peer_address: str, password: str | None) -> None:
    """Sign (and require signatures on) segments to and from ``peer_address``."""
    key = (password or "").encode()
    sock.setsockopt(socket.IPPROTO_TCP, TCP_MD5SIG, tcp_md5sig(peer_address, key))


def set_ttl_security(sock: socket.socket, hops: int) -> None:
    """GTSM (RFC 5082 §3): send TTL 255, accept only TTL >= 256 - ``hops``."""
    if not 1 <= hops <= 255:
        raise ValueError("TTL security hops is 1..255")
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MINHOPCOUNT, 256 - hops)
    else:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)
        sock.setsockopt(socket.IPPROTO_IP, IP_MINTTL, 256 - hops)


def set_multihop(sock: socket.socket, ttl: int) -> None:
    """Outgoing TTL for an eBGP multihop session without GTSM (BIRD ``multihop``)."""
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, ttl)
    else:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)


def save_syn(listener: socket.socket) -> None:
    """Keep the SYN of every connection the listener accepts (Linux 4.2+)."""
    listener.setsockopt(socket.IPPROTO_TCP, TCP_SAVE_SYN, 1)


def syn_ttl(conn: socket.socket) -> int | None:
    """The TTL (hop limit) the connection's SYN arrived with, if it was saved.

    The kernel hands the saved SYN out once and frees it.
    """
    try:
        headers = conn.getsockopt(socket.IPPROTO_TCP, TCP_SAVED_SYN, 512)
    except OSError:
        return None
    if len(headers) >= 20 and headers[0] >> 4 == 4:
        return headers[8]
    if len(headers) >= 40 and headers[0] >> 4 == 6:
        return headers[7]
    return None


def ttl_acceptable(conn: socket.socket, hops: int) -> bool:
    """Did the SYN come from at most ``hops`` hops away (RFC 5082 §3)?"""
    ttl = syn_ttl(conn)
    return ttl is not None and ttl >= 256 - hops
