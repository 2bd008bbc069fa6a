#!/usr/bin/env python3
"""Capture golden BGP byte streams sent by real BGP speakers (BIRD 2, GoBGP).

The script builds two throw-away network namespaces joined by a veth pair
(198.18.0.0/15 and 2001:2::/48 test addresses only), runs a tiny hand-written
BGP responder in namespace A and a real BGP daemon in namespace B.  The daemon
connects to the responder, sends its routes, withdraws some of them and then
shuts the session down with an administrative-shutdown NOTIFICATION.  Every
byte the daemon sent is written, unchanged, to ``<out>/<name>.bgp``, with a
JSON sidecar ``<out>/<name>.json`` describing what was negotiated.

It is self-contained on purpose: standard library only, and it does not
import the project's ``bgpd`` package, so the captures are independent of the
codec they are used to test.

Usage (as root, with the Debian packages bird2 and gobgpd installed)::

    python3 tools/capture_golden.py --all --out tests/data
    python3 tools/capture_golden.py --only bird2-ebgp --out tests/data
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# --------------------------------------------------------------------------
# Test addressing (benchmarking / documentation ranges only).
# --------------------------------------------------------------------------
OUR_V4 = "198.18.0.1"
PEER_V4 = "198.18.0.2"
OUR_V6 = "2001:2::1"
PEER_V6 = "2001:2::2"
BGP_PORT = 179
GOBGP_API_PORT = 50051
GOBGP_HOSTNAME = "golden-peer"
OUR_AS = 65001
PEER_EBGP_AS = 65002
AS_TRANS = 23456
SHUTDOWN_MESSAGE = "golden capture shutdown"

MARKER = b"\xff" * 16
HEADER_LEN = 19
MSG_OPEN, MSG_UPDATE, MSG_NOTIFICATION, MSG_KEEPALIVE, MSG_ROUTE_REFRESH = 1, 2, 3, 4, 5

AFI_IPV4, AFI_IPV6, SAFI_UNICAST = 1, 2, 1
FAMILY_NAMES = {(AFI_IPV4, SAFI_UNICAST): "ipv4-unicast", (AFI_IPV6, SAFI_UNICAST): "ipv6-unicast"}

CAP_MP, CAP_ROUTE_REFRESH, CAP_EXT_MESSAGE = 1, 2, 6
CAP_GRACEFUL_RESTART, CAP_AS4, CAP_ADD_PATH = 64, 65, 69
ADD_PATH_RECEIVE, ADD_PATH_SEND = 1, 2


# --------------------------------------------------------------------------
# Minimal BGP wire helpers (hand-built with struct, no project code).
# --------------------------------------------------------------------------
def bgp_message(msg_type: int, body: bytes = b"") -> bytes:
    return MARKER + struct.pack("!HB", HEADER_LEN + len(body), msg_type) + body


def capability(code: int, value: bytes = b"") -> bytes:
    return struct.pack("!BB", code, len(value)) + value


def build_open(
    my_as: int, *, as4: bool, add_path: bool, hold_time: int = 90, bgp_id: str = OUR_V4
) -> bytes:
    """Our OPEN: MP v4/v6 unicast, route refresh, GR, [AS4], ext msg, [ADD-PATH]."""
    families = [(AFI_IPV4, SAFI_UNICAST), (AFI_IPV6, SAFI_UNICAST)]
    caps = b""
    for afi, safi in families:
        caps += capability(CAP_MP, struct.pack("!HBB", afi, 0, safi))
    caps += capability(CAP_ROUTE_REFRESH)
    if as4:
        caps += capability(CAP_AS4, struct.pack("!I", my_as))
    gr = struct.pack("!H", 120 & 0x0FFF)  # flags 0, restart time 120 s
    for afi, safi in families:
        gr += struct.pack("!HBB", afi, safi, 0x80)  # forwarding state preserved
    caps += capability(CAP_GRACEFUL_RESTART, gr)
    caps += capability(CAP_EXT_MESSAGE)
    if add_path:
        ap = b"".join(
            struct.pack("!HBB", afi, safi, ADD_PATH_RECEIVE | ADD_PATH_SEND)
            for afi, safi in families
        )
        caps += capability(CAP_ADD_PATH, ap)
    opt_params = struct.pack("!BB", 2, len(caps)) + caps
    two_octet_as = my_as if my_as <= 0xFFFF else AS_TRANS
    body = (
        struct.pack(
            "!BHH4sB", 4, two_octet_as, hold_time, socket.inet_aton(bgp_id), len(opt_params)
        )
        + opt_params
    )
    return bgp_message(MSG_OPEN, body)


def frame_messages(stream: bytes) -> tuple[list[dict[str, int]], int]:
    """Split a byte stream into messages; returns (messages, bytes consumed)."""
    out: list[dict[str, int]] = []
    pos = 0
    while pos + HEADER_LEN <= len(stream):
        length, msg_type = struct.unpack_from("!HB", stream, pos + 16)
        if length < HEADER_LEN or pos + length > len(stream):
            break
        out.append({"type": msg_type, "length": length, "offset": pos})
        pos += length
    return out, pos


def parse_open_capabilities(msg: bytes) -> tuple[int, list[tuple[int, bytes]]]:
    """Return (my_as field, [(cap code, cap value)]) of a whole OPEN message."""
    body = msg[HEADER_LEN:]
    _version, my_as, _hold, _bgp_id, opt_len = struct.unpack_from("!BHH4sB", body)
    pos, end, wide = 10, 10 + opt_len, False
    if opt_len == 255 and len(body) > 11 and body[10] == 255:  # RFC 9072
        (opt_len,) = struct.unpack_from("!H", body, 11)
        pos, end, wide = 13, 13 + opt_len, True
    caps: list[tuple[int, bytes]] = []
    while pos < end:
        if wide:
            ptype, plen = struct.unpack_from("!BH", body, pos)
            pos += 3
        else:
            ptype, plen = body[pos], body[pos + 1]
            pos += 2
        value = body[pos : pos + plen]
        pos += plen
        if ptype != 2:
            continue
        cpos = 0
        while cpos + 2 <= len(value):
            code, clen = value[cpos], value[cpos + 1]
            caps.append((code, value[cpos + 2 : cpos + 2 + clen]))
            cpos += 2 + clen
    return my_as, caps


def mp_families(caps: list[tuple[int, bytes]]) -> set[tuple[int, int]]:
    return {(struct.unpack_from("!H", v)[0], v[3]) for c, v in caps if c == CAP_MP and len(v) >= 4}


def add_path_modes(caps: list[tuple[int, bytes]]) -> dict[tuple[int, int], int]:
    modes: dict[tuple[int, int], int] = {}
    for code, value in caps:
        if code != CAP_ADD_PATH:
            continue
        for pos in range(0, len(value) - 3, 4):
            afi, safi, mode = struct.unpack_from("!HBB", value, pos)
            modes[(afi, safi)] = mode
    return modes


def negotiate(our_open: bytes, peer_open: bytes) -> dict[str, object]:
    _, ours = parse_open_capabilities(our_open)
    peer_my_as, theirs = parse_open_capabilities(peer_open)
    our_codes = {c for c, _ in ours}
    peer_codes = {c for c, _ in theirs}
    families = mp_families(ours) & mp_families(theirs)
    our_ap, peer_ap = add_path_modes(ours), add_path_modes(theirs)
    add_path: dict[str, str | None] = {}
    for fam, name in FAMILY_NAMES.items():
        if fam not in families:
            continue
        ours_m, peer_m = our_ap.get(fam, 0), peer_ap.get(fam, 0)
        we_receive = bool(peer_m & ADD_PATH_SEND and ours_m & ADD_PATH_RECEIVE)
        we_send = bool(ours_m & ADD_PATH_SEND and peer_m & ADD_PATH_RECEIVE)
        add_path[name] = {
            (True, True): "both",
            (True, False): "receive",
            (False, True): "send",
        }.get((we_receive, we_send))
    peer_as = peer_my_as
    for code, value in theirs:
        if code == CAP_AS4 and len(value) == 4:
            (peer_as,) = struct.unpack("!I", value)
    return {
        "four_octet_as": CAP_AS4 in our_codes and CAP_AS4 in peer_codes,
        "add_path": add_path,
        "extended_message": CAP_EXT_MESSAGE in our_codes and CAP_EXT_MESSAGE in peer_codes,
        "families": sorted(FAMILY_NAMES.get(f, f"{f[0]}/{f[1]}") for f in families),
        "peer_as": peer_as,
        "peer_capabilities": [c for c, _ in theirs],
    }


def end_of_rib_family(msg: bytes) -> tuple[int, int] | None:
    """If the UPDATE message is an End-of-RIB marker return its (afi, safi)."""
    body = msg[HEADER_LEN:]
    if len(body) < 4:
        return None
    (wlen,) = struct.unpack_from("!H", body)
    if wlen:
        return None
    (alen,) = struct.unpack_from("!H", body, 2)
    if alen == 0:
        return (AFI_IPV4, SAFI_UNICAST) if len(body) == 4 else None
    attrs, nlri = body[4 : 4 + alen], body[4 + alen :]
    if nlri:
        return None
    flags, code = attrs[0], attrs[1]
    if flags & 0x10:
        (vlen,) = struct.unpack_from("!H", attrs, 2)
        hdr = 4
    else:
        vlen, hdr = attrs[2], 3
    if code == 15 and vlen == 3 and hdr + vlen == len(attrs):
        afi, safi = struct.unpack_from("!HB", attrs, hdr)
        return afi, safi
    return None


def update_withdraws(msg: bytes) -> bool:
    """True if an UPDATE withdraws something (IPv4 field or non-empty MP_UNREACH)."""
    body = msg[HEADER_LEN:]
    (wlen,) = struct.unpack_from("!H", body)
    if wlen:
        return True
    (alen,) = struct.unpack_from("!H", body, 2)
    attrs, pos = body[4 : 4 + alen], 0
    while pos + 3 <= len(attrs):
        flags, code = attrs[pos], attrs[pos + 1]
        if flags & 0x10:
            (vlen,) = struct.unpack_from("!H", attrs, pos + 2)
            pos += 4
        else:
            vlen = attrs[pos + 2]
            pos += 3
        if code == 15 and vlen > 3:
            return True
        pos += vlen
    return False


def parse_notification(msg: bytes) -> dict[str, object]:
    body = msg[HEADER_LEN:]
    info: dict[str, object] = {"code": body[0], "subcode": body[1], "data_hex": body[2:].hex()}
    if body[0] == 6 and body[1] in (2, 4) and len(body) > 2:  # RFC 9003 shutdown communication
        n = body[2]
        info["shutdown_communication"] = body[3 : 3 + n].decode("utf-8", "replace")
    return info


# --------------------------------------------------------------------------
# Responder (runs inside namespace A).
# --------------------------------------------------------------------------
def run_responder(args: argparse.Namespace) -> int:
    our_open = build_open(args.my_as, as4=not args.no_as4, add_path=args.add_path)
    Path(args.our_open).write_bytes(our_open)
    keepalive = bgp_message(MSG_KEEPALIVE)
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((args.listen, BGP_PORT))
    srv.listen(1)
    Path(args.ready).write_text("ready\n")
    deadline = time.monotonic() + args.timeout
    srv.settimeout(max(0.1, deadline - time.monotonic()))
    try:
        conn, peer = srv.accept()
    except TimeoutError:
        print("responder: no connection before timeout", file=sys.stderr)
        return 1
    finally:
        srv.close()
    print(f"responder: connection from {peer[0]}", file=sys.stderr)
    conn.settimeout(0.3)
    conn.sendall(our_open)
    pending = b""
    got_notification = False
    with open(args.raw, "wb") as raw:
        while time.monotonic() < deadline:
            try:
                data = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError as exc:  # e.g. reset after the NOTIFICATION
                print(f"responder: recv error {exc}", file=sys.stderr)
                break
            if not data:
                print("responder: peer closed the connection", file=sys.stderr)
                break
            raw.write(data)
            raw.flush()
            pending += data
            msgs, used = frame_messages(pending)
            pending = pending[used:]
            for m in msgs:
                if m["type"] in (MSG_OPEN, MSG_KEEPALIVE) and not got_notification:
                    with contextlib.suppress(OSError):
                        conn.sendall(keepalive)
                elif m["type"] == MSG_NOTIFICATION:
                    got_notification = True
                    deadline = min(deadline, time.monotonic() + 5.0)
    conn.close()
    if pending:
        print(f"responder: {len(pending)} trailing bytes of an incomplete message", file=sys.stderr)
    return 0 if got_notification else 1


# --------------------------------------------------------------------------
# Route definitions shared by both daemons.
# --------------------------------------------------------------------------
@dataclass
class AttrSet:
    name: str
    v4: list[str]
    v6: list[str]
    origin: str = "igp"  # "igp" | "incomplete"
    path: list[int] = field(default_factory=list)  # left to right, before the peer's own AS
    communities: list[tuple[int, int]] = field(default_factory=list)
    large: list[tuple[int, int, int]] = field(default_factory=list)
    ext_rt: list[tuple[int, int]] = field(default_factory=list)
    med: int | None = None
    local_pref: int | None = None  # used on iBGP sessions only
    aggregator: tuple[int, str] | None = None  # GoBGP only (BIRD filters cannot set it)
    path_id: int | None = None  # GoBGP local path identifier (ADD-PATH variants)


BASE_SETS = [
    AttrSet(
        "A-shared-rich",
        ["10.0.0.0/8", "172.16.0.0/16"],
        ["2001:db8::/32", "2001:db8:1::/48"],
        origin="igp",
        path=[4200000001],
        communities=[(65000, 1), (65535, 65281)],
        large=[(4200000001, 1, 1), (65002, 100, 200)],
        ext_rt=[(65000, 100)],
        med=50,
        local_pref=200,
    ),
    AttrSet(
        "B-shared-plain",
        ["100.64.16.0/20", "192.0.2.0/24"],
        ["2001:db8:2:3::/64"],
        origin="incomplete",
        path=[65010, 4200000002, 4200000002],
        communities=[(65000, 2)],
        large=[(65002, 2, 3)],
        med=100,
    ),
    AttrSet(
        "C-bare",
        ["198.51.100.0/24"],
        ["2001:db8:ff::1/128"],
        origin="igp",
        aggregator=(4200000001, "192.0.2.1"),
    ),
    AttrSet(
        "D-ext-communities",
        ["203.0.113.128/25"],
        [],
        origin="igp",
        ext_rt=[(65000, 200), (4200000001, 7)],
        large=[(65002, 4, 5)],
    ),
]
WITHDRAW_SET = AttrSet(
    "W-withdrawn-later",
    ["203.0.113.7/32"],
    ["2001:db8:ffff::1/128"],
    origin="igp",
    communities=[(65000, 7)],
    med=7,
)
ALT_SET = AttrSet(
    "ALT-second-path",
    ["10.0.0.0/8"],
    ["2001:db8::/32"],
    origin="igp",
    path=[4200000003],
    communities=[(65000, 99)],
    med=200,
    local_pref=50,
    path_id=2,
)


@dataclass
class Variant:
    name: str
    daemon: str  # "bird" | "gobgp"
    ibgp: bool = False
    add_path: bool = False
    our_as4: bool = True
    gobgp_v6_nexthop: bool = True  # False: leave GoBGP to pick the IPv6 next hop
    note: str = ""

    @property
    def peer_as(self) -> int:
        return OUR_AS if self.ibgp else PEER_EBGP_AS

    def attr_sets(self) -> list[AttrSet]:
        sets = list(BASE_SETS)
        if self.add_path:
            sets.append(ALT_SET)
        return sets


VARIANTS = [
    Variant("bird2-ebgp", "bird", note="BIRD 2 eBGP, 4-octet AS, IPv4+IPv6 unicast"),
    Variant(
        "bird2-ibgp-addpath",
        "bird",
        ibgp=True,
        add_path=True,
        note="BIRD 2 iBGP, ADD-PATH both ways for IPv4+IPv6 unicast",
    ),
    Variant(
        "bird2-as2",
        "bird",
        our_as4=False,
        note="BIRD 2 eBGP, our OPEN without 4-octet AS capability (AS_TRANS/AS4_PATH)",
    ),
    Variant("gobgp-ebgp", "gobgp", note="GoBGP eBGP, 4-octet AS, IPv4+IPv6 unicast"),
    Variant(
        "gobgp-ibgp-addpath",
        "gobgp",
        ibgp=True,
        add_path=True,
        note="GoBGP iBGP, ADD-PATH (send-max 8, receive) for IPv4+IPv6 unicast",
    ),
    Variant(
        "gobgp-as2",
        "gobgp",
        our_as4=False,
        gobgp_v6_nexthop=False,
        note="GoBGP eBGP, our OPEN without 4-octet AS capability (AS4_PATH/AS4_AGGREGATOR);"
        " IPv6 next hop left to GoBGP (IPv4-mapped ::ffff:198.18.0.2)",
    ),
]


def describe_routes(v: Variant) -> list[str]:
    out: list[str] = []
    for s in v.attr_sets():
        out.append(describe_set(v, s, "announced"))
    out.append(describe_set(v, WITHDRAW_SET, "announced, then withdrawn after the initial table"))
    if v.daemon == "bird":
        out.append(
            "BIRD static blackhole routes exported by filter golden_export (which sets the"
            " MED); next hops chosen by BIRD (IPv6: 'next hop address 2001:2::2')"
        )
    elif v.gobgp_v6_nexthop:
        out.append("added with 'gobgp global rib add', nexthop 198.18.0.2 / 2001:2::2")
    else:
        out.append(
            "added with 'gobgp global rib add', nexthop 198.18.0.2 for IPv4,"
            " IPv6 next hop left unset"
        )
    return out


def describe_set(v: Variant, s: AttrSet, what: str) -> str:
    parts = [
        f"{s.name} ({what}): ipv4 {', '.join(s.v4) or '-'}; ipv6 {', '.join(s.v6) or '-'}",
        f"origin {s.origin}",
    ]
    if s.path:
        parts.append("as-path (before own AS) " + " ".join(map(str, s.path)))
    if s.communities:
        parts.append("communities " + " ".join(f"{a}:{b}" for a, b in s.communities))
    if s.large:
        parts.append("large-communities " + " ".join(f"{a}:{b}:{c}" for a, b, c in s.large))
    if s.ext_rt:
        parts.append("ext-communities " + " ".join(f"rt {a}:{b}" for a, b in s.ext_rt))
    if s.med is not None:
        parts.append(f"med {s.med}")
    if v.ibgp:
        parts.append(f"local-pref {s.local_pref if s.local_pref is not None else 'default'}")
    if s.aggregator and v.daemon == "gobgp":
        parts.append(f"aggregator {s.aggregator[0]}:{s.aggregator[1]}")
    if s.path_id is not None and v.daemon == "gobgp":
        parts.append(f"local path identifier {s.path_id}")
    return "; ".join(parts)


# --------------------------------------------------------------------------
# Peer configuration builders.
# --------------------------------------------------------------------------
def bird_route_block(v: Variant, s: AttrSet) -> str:
    cmds: list[str] = [f"bgp_origin = ORIGIN_{s.origin.upper()};"]
    for asn in reversed(s.path):
        cmds.append(f"bgp_path.prepend({asn});")
    cmds += [f"bgp_community.add(({a},{b}));" for a, b in s.communities]
    cmds += [f"bgp_large_community.add(({a},{b},{c}));" for a, b, c in s.large]
    cmds += [f"bgp_ext_community.add((rt,{a},{b}));" for a, b in s.ext_rt]
    if v.ibgp and s.local_pref is not None:
        cmds.append(f"bgp_local_pref = {s.local_pref};")
    return "{ " + " ".join(cmds) + " }"


def bird_static(v: Variant, proto: str, channel: str, sets: list[AttrSet]) -> str:
    lines = [f"protocol static {proto} {{", f"  {channel};"]
    for s in sets:
        for pfx in s.v4 if channel == "ipv4" else s.v6:
            lines.append(f"  route {pfx} blackhole {bird_route_block(v, s)};")
    lines.append("}")
    return "\n".join(lines)


def bird_export_filter(v: Variant) -> str:
    """BIRD only sends a MED it was given by the export filter, so set it there.

    Each attribute set that has a MED is recognised by its first community.
    """
    lines = ["filter golden_export {", "  if source != RTS_STATIC then reject;"]
    for s in [*v.attr_sets(), WITHDRAW_SET]:
        if s.med is not None:
            if not s.communities:
                raise ValueError(f"{s.name}: a MED needs a marker community for BIRD")
            a, b = s.communities[0]
            lines.append(f"  if ({a},{b}) ~ bgp_community then bgp_med = {s.med};")
    lines += ["  accept;", "}"]
    return "\n".join(lines)


def bird_config(v: Variant, logfile: Path) -> str:
    sets = list(BASE_SETS)
    parts = [
        f'log "{logfile}" all;',
        f"router id {PEER_V4};",
        "protocol device {}",
        bird_export_filter(v),
        bird_static(v, "static4", "ipv4", sets),
        bird_static(v, "static6", "ipv6", sets),
        bird_static(v, "static4w", "ipv4", [WITHDRAW_SET]),
        bird_static(v, "static6w", "ipv6", [WITHDRAW_SET]),
    ]
    if v.add_path:
        parts.append(bird_static(v, "static4alt", "ipv4", [ALT_SET]))
        parts.append(bird_static(v, "static6alt", "ipv6", [ALT_SET]))
    add_paths = " add paths on;" if v.add_path else ""
    parts.append(
        "\n".join(
            [
                "protocol bgp peer1 {",
                f"  local {PEER_V4} as {v.peer_as};",
                f"  neighbor {OUR_V4} as {OUR_AS};",
                "  connect delay time 1;",
                "  connect retry time 2;",
                "  enable extended messages on;",
                f"  ipv4 {{ import none; export filter golden_export;{add_paths} }};",
                f"  ipv6 {{ import none; export filter golden_export; next hop address {PEER_V6};"
                f"{add_paths} }};",
                "}",
            ]
        )
    )
    return "\n\n".join(parts) + "\n"


def gobgp_config(v: Variant) -> str:
    lines = [
        "[global.config]",
        f"  as = {v.peer_as}",
        f'  router-id = "{PEER_V4}"',
        "  port = -1",
        "",
        "[[neighbors]]",
        "  [neighbors.config]",
        f'    neighbor-address = "{OUR_V4}"',
        f"    peer-as = {OUR_AS}",
        "    admin-down = true",
        "  [neighbors.transport.config]",
        f'    local-address = "{PEER_V4}"',
        "  [neighbors.timers.config]",
        "    connect-retry = 1",
        "    hold-time = 90",
        "  [neighbors.graceful-restart.config]",
        "    enabled = true",
        "    restart-time = 120",
    ]
    for fam in ("ipv4-unicast", "ipv6-unicast"):
        lines += [
            "  [[neighbors.afi-safis]]",
            "    [neighbors.afi-safis.config]",
            f'      afi-safi-name = "{fam}"',
            "    [neighbors.afi-safis.mp-graceful-restart.config]",
            "      enabled = true",
        ]
        if v.add_path:
            lines += [
                "    [neighbors.afi-safis.add-paths.config]",
                "      receive = true",
                "      send-max = 8",
            ]
    return "\n".join(lines) + "\n"


def gobgp_route_args(v: Variant, s: AttrSet, family: str, prefix: str) -> list[str]:
    args = ["global", "rib", "add", "-a", family, prefix]
    if s.path_id is not None:
        args += ["identifier", str(s.path_id)]
    args += ["origin", s.origin]
    if family == "ipv4":
        args += ["nexthop", PEER_V4]
    elif v.gobgp_v6_nexthop:
        args += ["nexthop", PEER_V6]
    if s.path:
        args += ["aspath", ",".join(map(str, s.path))]
    if s.med is not None:
        args += ["med", str(s.med)]
    if v.ibgp and s.local_pref is not None:
        args += ["local-pref", str(s.local_pref)]
    if s.communities:
        args += ["community", ",".join(f"{a}:{b}" for a, b in s.communities)]
    if s.large:
        args += ["large-community", ",".join(f"{a}:{b}:{c}" for a, b, c in s.large)]
    for a, b in s.ext_rt:
        # gobgp's CLI silently clamps "4200000001:7" to 65535:7 (2-octet type);
        # the asdot form gives the 4-octet-AS-specific route target.
        admin = f"{a >> 16}.{a & 0xFFFF}" if a > 0xFFFF else str(a)
        args += ["rt", f"{admin}:{b}"]
    if s.aggregator:
        args += ["aggregator", f"{s.aggregator[0]}:{s.aggregator[1]}"]
    return args


# --------------------------------------------------------------------------
# Orchestration (runs in the root namespace, as root).
# --------------------------------------------------------------------------
class CaptureError(RuntimeError):
    pass


def run(
    cmd: list[str], *, check: bool = True, timeout: float = 20
) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise CaptureError(
            f"command failed ({res.returncode}): {' '.join(cmd)}\n{res.stdout}{res.stderr}"
        )
    return res


class Lab:
    """Two namespaces joined by a veth pair; every started process is tracked by PID."""

    def __init__(self) -> None:
        pid = os.getpid()
        self.ns_a = f"cap-{pid}-a"
        self.ns_b = f"cap-{pid}-b"
        self.if_a = f"cap{pid}a"
        self.if_b = f"cap{pid}b"
        self.created: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []

    def setup(self) -> None:
        for ns in (self.ns_a, self.ns_b):
            run(["ip", "netns", "add", ns])
            self.created.append(ns)
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
        run(
            [
                "ip",
                "link",
                "add",
                self.if_a,
                "netns",
                self.ns_a,
                "type",
                "veth",
                "peer",
                "name",
                self.if_b,
                "netns",
                self.ns_b,
            ]
        )
        # Fixed MACs and link-local addresses (no SLAAC, no DAD) so that every
        # run sees the same interface addresses, e.g. in BIRD's IPv6 next hops.
        for ns, ifname, v4, v6, mac, ll in (
            (self.ns_a, self.if_a, OUR_V4, OUR_V6, "02:00:c6:12:00:01", "fe80::1"),
            (self.ns_b, self.if_b, PEER_V4, PEER_V6, "02:00:c6:12:00:02", "fe80::2"),
        ):
            run(["ip", "-n", ns, "link", "set", ifname, "address", mac, "addrgenmode", "none"])
            run(["ip", "-n", ns, "addr", "add", f"{v4}/24", "dev", ifname])
            run(["ip", "-n", ns, "-6", "addr", "add", f"{v6}/64", "dev", ifname, "nodad"])
            run(["ip", "-n", ns, "-6", "addr", "add", f"{ll}/64", "dev", ifname, "nodad"])
            run(["ip", "-n", ns, "link", "set", ifname, "up"])

    def spawn(self, ns: str, cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
        with open(log, "ab") as fh:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, *cmd],
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.terminate()  # signals exactly this PID
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.procs):
            try:
                self.stop(proc)
            except Exception as exc:  # keep cleaning up
                print(f"warning: could not stop pid {proc.pid}: {exc}", file=sys.stderr)

    def teardown(self) -> None:
        self.stop_all()
        for ns in reversed(self.created):
            res = run(["ip", "netns", "del", ns], check=False)
            if res.returncode != 0:
                print(f"warning: could not delete netns {ns}: {res.stderr}", file=sys.stderr)
        self.created.clear()


def daemon_version(daemon: str) -> str:
    if daemon == "bird":
        res = run(["bird", "--version"], check=False)
        text = (res.stdout + res.stderr).strip()  # "BIRD version 2.0.12"
        return "bird " + text.split()[-1]
    res = run(["gobgpd", "--version"], check=False)
    text = (res.stdout + res.stderr).strip()  # "gobgpd version 3.10.0"
    return "gobgp " + text.split()[-1]


def read_stream(path: Path) -> tuple[bytes, list[dict[str, int]]]:
    data = path.read_bytes() if path.exists() else b""
    msgs, _ = frame_messages(data)
    return data, msgs


def wait_until(pred: Callable[[], bool], timeout: float, what: str, step: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(step)
    raise CaptureError(f"timed out waiting for {what}")


def wait_initial_table(raw: Path, responder: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait for OPEN + End-of-RIB for every negotiated family (or 4 s of quiet)."""
    deadline = time.monotonic() + timeout
    last_size, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        if responder.poll() is not None:
            raise CaptureError("responder exited before the initial table was complete")
        data, msgs = read_stream(raw)
        if len(data) != last_size:
            last_size, last_change = len(data), time.monotonic()
        if msgs and msgs[0]["type"] == MSG_OPEN:
            peer_fams = mp_families(parse_open_capabilities(data[: msgs[0]["length"]])[1])
            wanted = peer_fams & set(FAMILY_NAMES)
            seen = set()
            for m in msgs:
                if m["type"] == MSG_UPDATE:
                    fam = end_of_rib_family(data[m["offset"] : m["offset"] + m["length"]])
                    if fam:
                        seen.add(fam)
            if wanted and wanted <= seen:
                time.sleep(0.5)
                return
            has_update = any(m["type"] == MSG_UPDATE for m in msgs)
            if has_update and time.monotonic() - last_change > 4.0:
                print("  (no End-of-RIB for every family; continuing after quiet period)")
                return
        time.sleep(0.2)
    raise CaptureError("timed out waiting for the initial table")


def wait_withdrawal(raw: Path, before: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last_size, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        data, msgs = read_stream(raw)
        if len(data) != last_size:
            last_size, last_change = len(data), time.monotonic()
        new = [m for m in msgs[before:] if m["type"] == MSG_UPDATE]
        withdrawing = [
            m for m in new if update_withdraws(data[m["offset"] : m["offset"] + m["length"]])
        ]
        if withdrawing and time.monotonic() - last_change > 1.5:
            return
        time.sleep(0.2)
    print("  warning: no withdrawal UPDATE seen before the timeout")


def start_responder(lab: Lab, v: Variant, work: Path) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--responder",
        "--listen",
        OUR_V4,
        "--my-as",
        str(OUR_AS),
        "--raw",
        str(work / "stream.bgp"),
        "--our-open",
        str(work / "our_open.bin"),
        "--ready",
        str(work / "ready"),
        "--timeout",
        "120",
    ]
    if not v.our_as4:
        cmd.append("--no-as4")
    if v.add_path:
        cmd.append("--add-path")
    proc = lab.spawn(lab.ns_a, cmd, work / "responder.log")
    wait_until(
        lambda: (work / "ready").exists() or proc.poll() is not None, 10, "the responder to listen"
    )
    if proc.poll() is not None:
        raise CaptureError("responder failed to start:\n" + tail(work / "responder.log"))
    return proc


def tail(path: Path, n: int = 30) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:])


def capture_bird(lab: Lab, v: Variant, work: Path) -> None:
    conf, sock, log = work / "bird.conf", work / "bird.ctl", work / "bird.log"
    conf.write_text(bird_config(v, log))
    run(["bird", "-p", "-c", str(conf)])
    birdc = ["ip", "netns", "exec", lab.ns_b, "birdc", "-s", str(sock)]
    responder = start_responder(lab, v, work)
    bird = lab.spawn(
        lab.ns_b,
        ["bird", "-f", "-c", str(conf), "-s", str(sock), "-P", str(work / "bird.pid")],
        work / "bird.stdout",
    )
    try:
        wait_until(
            lambda: run([*birdc, "show", "status"], check=False).returncode == 0,
            15,
            "the BIRD control socket",
        )
        wait_initial_table(work / "stream.bgp", responder, 45)
        before = len(read_stream(work / "stream.bgp")[1])
        run([*birdc, "disable", "static4w"])
        run([*birdc, "disable", "static6w"])
        wait_withdrawal(work / "stream.bgp", before, 15)
        run([*birdc, "disable", "peer1", f'"{SHUTDOWN_MESSAGE}"'])
        responder.wait(timeout=30)
    except (CaptureError, subprocess.TimeoutExpired) as exc:
        raise CaptureError(
            f"{exc}\n--- bird.log ---\n{tail(log)}\n--- responder.log ---\n"
            f"{tail(work / 'responder.log')}"
        ) from exc
    finally:
        lab.stop(bird)
        lab.stop(responder)


def capture_gobgp(lab: Lab, v: Variant, work: Path) -> None:
    conf, log = work / "gobgpd.toml", work / "gobgpd.log"
    conf.write_text(gobgp_config(v))
    gobgp = ["ip", "netns", "exec", lab.ns_b, "gobgp", "-u", "127.0.0.1", "-p", str(GOBGP_API_PORT)]
    # GoBGP advertises the host name in an FQDN capability (73): run it in its
    # own UTS namespace with a fixed name so the capture does not depend on
    # (or leak) the name of the machine it was made on.  unshare and sh exec,
    # so the PID we track is gobgpd's own.
    daemon = lab.spawn(
        lab.ns_b,
        [
            "unshare",
            "--uts",
            "--",
            "sh",
            "-c",
            f'hostname {GOBGP_HOSTNAME} && exec "$0" "$@"',
            "gobgpd",
            "-f",
            str(conf),
            "-t",
            "toml",
            "--api-hosts",
            f"127.0.0.1:{GOBGP_API_PORT}",
            "--pprof-disable",
        ],
        log,
    )
    responder: subprocess.Popen[bytes] | None = None
    try:
        wait_until(
            lambda: (
                daemon.poll() is not None or run([*gobgp, "global"], check=False).returncode == 0
            ),
            15,
            "the GoBGP API",
        )
        if daemon.poll() is not None:
            raise CaptureError("gobgpd exited early")
        for s in [*v.attr_sets(), WITHDRAW_SET]:
            for family, prefixes in (("ipv4", s.v4), ("ipv6", s.v6)):
                for pfx in prefixes:
                    run([*gobgp, *gobgp_route_args(v, s, family, pfx)])
        responder = start_responder(lab, v, work)
        run([*gobgp, "neighbor", OUR_V4, "enable"])
        wait_initial_table(work / "stream.bgp", responder, 45)
        before = len(read_stream(work / "stream.bgp")[1])
        for family, prefixes in (("ipv4", WITHDRAW_SET.v4), ("ipv6", WITHDRAW_SET.v6)):
            for pfx in prefixes:
                run([*gobgp, "global", "rib", "del", "-a", family, pfx])
        wait_withdrawal(work / "stream.bgp", before, 15)
        # "disable" sends Cease/Administrative Shutdown too, but the gobgp 3.x CLI
        # does not pass --reason to it; the (deprecated) "shutdown" command does.
        run([*gobgp, "neighbor", OUR_V4, "shutdown", "--reason", SHUTDOWN_MESSAGE])
        responder.wait(timeout=30)
    except (CaptureError, subprocess.TimeoutExpired) as exc:
        raise CaptureError(
            f"{exc}\n--- gobgpd.log ---\n{tail(log)}\n--- responder.log ---\n"
            f"{tail(work / 'responder.log')}"
        ) from exc
    finally:
        lab.stop(daemon)
        if responder is not None:
            lab.stop(responder)


def capture(lab: Lab, v: Variant, out: Path, made_by: str) -> None:
    print(f"== {v.name}: {v.note}")
    with tempfile.TemporaryDirectory(prefix=f"golden-{v.name}-") as tmp:
        work = Path(tmp)
        if v.daemon == "bird":
            capture_bird(lab, v, work)
        else:
            capture_gobgp(lab, v, work)
        data, msgs = read_stream(work / "stream.bgp")
        our_open = (work / "our_open.bin").read_bytes()
    framed = sum(m["length"] for m in msgs)
    if framed != len(data):
        raise CaptureError(f"{v.name}: stream does not frame cleanly ({framed}/{len(data)})")
    if not msgs or msgs[0]["type"] != MSG_OPEN:
        raise CaptureError(f"{v.name}: first message is not an OPEN")
    if msgs[-1]["type"] != MSG_NOTIFICATION:
        raise CaptureError(f"{v.name}: last message is not a NOTIFICATION")
    peer_open = data[: msgs[0]["length"]]
    neg = negotiate(our_open, peer_open)
    last = msgs[-1]
    sidecar = {
        "peer": daemon_version(v.daemon),
        "made_by": made_by,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "description": v.note,
        "session": "iBGP" if v.ibgp else "eBGP",
        "our_as": OUR_AS,
        "peer_as": neg["peer_as"],
        "four_octet_as": neg["four_octet_as"],
        "add_path": neg["add_path"],
        "extended_message": neg["extended_message"],
        "families": neg["families"],
        "peer_capabilities": neg["peer_capabilities"],
        "our_open_hex": our_open.hex(),
        "notification": parse_notification(data[last["offset"] : last["offset"] + last["length"]]),
        "messages": msgs,
        "routes_sent": describe_routes(v),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{v.name}.bgp").write_bytes(data)
    (out / f"{v.name}.json").write_text(sidecar_json(sidecar))
    counts: dict[int, int] = {}
    for m in msgs:
        counts[m["type"]] = counts.get(m["type"], 0) + 1
    print(
        f"   wrote {out / (v.name + '.bgp')}: {len(data)} bytes, messages by type {counts}, "
        f"four_octet_as={neg['four_octet_as']} add_path={neg['add_path']}"
    )


def sidecar_json(sidecar: dict[str, object]) -> str:
    """Indented JSON, but one line per entry of the (long) "messages" list."""
    placeholder = "@MESSAGES@"
    msgs = sidecar["messages"]
    assert isinstance(msgs, list)
    text = json.dumps({**sidecar, "messages": placeholder}, indent=2)
    rows = ",\n    ".join(json.dumps(m) for m in msgs)
    return text.replace(f'"{placeholder}"', "[\n    " + rows + "\n  ]") + "\n"


def check_prerequisites() -> str | None:
    if os.geteuid() != 0:
        return "must run as root (network namespaces, TCP port 179)"
    missing = [
        b
        for b in ("ip", "unshare", "hostname", "bird", "birdc", "gobgpd", "gobgp")
        if shutil.which(b) is None
    ]
    if missing:
        return (
            "missing programs: "
            + ", ".join(missing)
            + " (install the Debian packages bird2 and gobgpd)"
        )
    return None


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--all", action="store_true", help="produce every capture")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="produce one capture (repeatable): " + ", ".join(v.name for v in VARIANTS),
    )
    parser.add_argument("--out", default="tests/data", help="output directory")
    parser.add_argument("--list", action="store_true", help="list the captures and exit")
    # Internal: the responder, run inside namespace A by the orchestrator.
    parser.add_argument("--responder", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--listen", default=OUR_V4, help=argparse.SUPPRESS)
    parser.add_argument("--my-as", type=int, default=OUR_AS, help=argparse.SUPPRESS)
    parser.add_argument("--no-as4", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--add-path", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--raw", help=argparse.SUPPRESS)
    parser.add_argument("--our-open", help=argparse.SUPPRESS)
    parser.add_argument("--ready", help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=120.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.responder:
        return run_responder(args)
    if args.list:
        for v in VARIANTS:
            print(f"{v.name:22} {v.note}")
        return 0
    by_name = {v.name: v for v in VARIANTS}
    unknown = [n for n in args.only if n not in by_name]
    if unknown or not (args.all or args.only):
        parser.error("give --all or --only NAME with NAME in: " + ", ".join(by_name))
    selected = VARIANTS if args.all else [by_name[n] for n in args.only]
    problem = check_prerequisites()
    if problem:
        print(f"capture_golden: {problem}", file=sys.stderr)
        return 2

    # Turn SIGTERM into SystemExit so the finally below still cleans up.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    made_by = "tools/capture_golden.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out = Path(args.out)
    lab = Lab()
    failures: list[str] = []
    try:
        lab.setup()
        for v in selected:
            try:
                capture(lab, v, out, made_by)
            except CaptureError as exc:
                failures.append(v.name)
                print(f"!! {v.name} failed: {exc}", file=sys.stderr)
            finally:
                lab.stop_all()
    finally:
        lab.teardown()
    if failures:
        print("failed captures: " + ", ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
