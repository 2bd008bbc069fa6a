"""``bgpd-decode``: print the messages of raw BGP byte streams, one per line.

A stream is a file of concatenated messages as they crossed a TCP session (the
golden captures under tests/data are such files).  A sidecar ``<name>.json`` with
``four_octet_as``, ``add_path`` and ``extended_message`` gives the negotiated
context; without one the modern default applies.  Until the daemon exists this
is what ``make run`` shows.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from bgpd.messages import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    BgpError,
    Message,
    Notification,
    Open,
    SessionContext,
    Update,
    decode_message,
    iter_messages,
    prefix_to_text,
)

_FAMILIES = {"ipv4-unicast": IPV4_UNICAST, "ipv6-unicast": IPV6_UNICAST}


def context_for(path: Path) -> SessionContext:
    sidecar = path.with_suffix(".json")
    if not sidecar.exists():
        return SessionContext(extended_message=True)
    meta = json.loads(sidecar.read_text())
    add_path = frozenset(
        _FAMILIES[f] for f, mode in meta.get("add_path", {}).items() if mode in ("both", "receive")
    )
    return SessionContext(
        four_octet_as=meta.get("four_octet_as", True),
        add_path_receive=add_path,
        add_path_send=add_path,
        extended_message=meta.get("extended_message", False),
    )


def describe(msg: Message) -> str:
    if isinstance(msg, Open):
        caps = ", ".join(type(c).__name__ for c in msg.capabilities)
        return f"OPEN as {msg.asn} hold {msg.hold_time} id {msg.bgp_id:#010x} caps [{caps}]"
    if isinstance(msg, Update):
        eor = msg.end_of_rib_family
        if eor is not None:
            return f"UPDATE End-of-RIB {eor}"
        parts = []
        if msg.withdrawn:
            parts.append("withdraw " + " ".join(prefix_to_text(p, 1) for p in msg.withdrawn))
        if msg.mp_unreach is not None and msg.mp_unreach.withdrawn:
            afi = msg.mp_unreach.family.afi
            parts.append(
                "withdraw " + " ".join(prefix_to_text(p, afi) for p in msg.mp_unreach.withdrawn)
            )
        announced = [prefix_to_text(p, 1) for p in msg.nlri]
        if msg.mp_reach is not None:
            announced += [prefix_to_text(p, msg.mp_reach.family.afi) for p in msg.mp_reach.nlri]
        if announced:
            parts.append("announce " + " ".join(announced) + f" {msg.attributes.describe()}")
        return "UPDATE " + "; ".join(parts)
    if isinstance(msg, Notification):
        return f"NOTIFICATION {msg}"
    return type(msg).__name__.upper()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Decode raw BGP byte streams.")
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # quiet under `| head`
    status = 0
    for path in args.files:
        print(f"== {path}")
        ctx = context_for(path)
        try:
            for index, (_t, raw) in enumerate(iter_messages(path.read_bytes(), 65535)):
                msg = decode_message(raw, ctx if index else SessionContext())
                print(f"  {index:3d} {describe(msg)}")
        except BgpError as e:
            print(f"  error: {e}")
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
