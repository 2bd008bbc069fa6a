"""Loading the golden captures under tests/data (see tests/data/README.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bgpd.messages import IPV4_UNICAST, IPV6_UNICAST, SessionContext

DATA = Path(__file__).resolve().parent.parent / "data"
FAMILIES = {"ipv4-unicast": IPV4_UNICAST, "ipv6-unicast": IPV6_UNICAST}


@dataclass(frozen=True)
class Capture:
    name: str
    stream: bytes
    meta: dict[str, Any]

    @property
    def context(self) -> SessionContext:
        """The session context the peer's bytes were sent under (from both OPENs)."""
        add_path = frozenset(
            FAMILIES[f] for f, mode in self.meta["add_path"].items() if mode in ("both", "receive")
        )
        return SessionContext(
            four_octet_as=self.meta["four_octet_as"],
            add_path_receive=add_path,
            add_path_send=add_path,
            extended_message=self.meta["extended_message"],
        )


def load(name: str, directory: Path = DATA) -> Capture:
    return Capture(
        name,
        (directory / f"{name}.bgp").read_bytes(),
        json.loads((directory / f"{name}.json").read_text()),
    )


NAMES = sorted(p.stem for p in DATA.glob("*.bgp"))
