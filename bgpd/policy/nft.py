"""The one place that runs ``nft``: a transaction in, the kernel's counters out.

``nft -f -`` reads the whole script and commits it as one netlink batch: the
kernel takes all of it or none (a failed transaction leaves the table as it
was).  The script goes through standard input, so a transaction of any size is
one process and no temporary file.  Runs in the caller's network namespace.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

NFT = "nft"


class NftError(Exception):
    """nft refused a transaction (its message names the line)."""


@dataclass(frozen=True, slots=True)
class RuleCounter:
    chain: str
    comment: str
    packets: int
    bytes: int


def available() -> bool:
    return shutil.which(NFT) is not None


def apply(script: str, timeout: float = 60) -> None:
    """Commit ``script`` as one transaction; NftError with nft's message if refused."""
    proc = subprocess.run(
        [NFT, "-f", "-"], input=script.encode(), capture_output=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise NftError(
            proc.stderr.decode(errors="replace").strip() or f"nft exited {proc.returncode}"
        )


def delete_table(table: str, family: str = "inet") -> bool:
    """Remove the table if present; False when there was none."""
    proc = subprocess.run([NFT, "delete", "table", family, table], capture_output=True, check=False)
    return proc.returncode == 0


def list_table(table: str, family: str = "inet") -> str:
    proc = subprocess.run([NFT, "list", "table", family, table], capture_output=True, check=False)
    if proc.returncode != 0:
        raise NftError(proc.stderr.decode(errors="replace").strip())
    return proc.stdout.decode()


def counters(table: str, family: str = "inet") -> list[RuleCounter]:
    """Every rule of the table that has a counter: its chain, comment, packets, bytes."""
    proc = subprocess.run(
        [NFT, "-j", "list", "table", family, table], capture_output=True, check=False
    )
    if proc.returncode != 0:
        raise NftError(proc.stderr.decode(errors="replace").strip())
    return parse_counters(json.loads(proc.stdout))


def parse_counters(doc: dict[str, Any]) -> list[RuleCounter]:
    """The counters in ``nft -j`` output (libnftables-json(5): ``{"nftables":
    [{"rule": {"chain", "comment", "expr": [{"counter": {packets, bytes}}, ...]}}]}``)."""
    out = []
    for item in doc.get("nftables", ()):
        rule = item.get("rule")
        if not rule:
            continue
        for expr in rule.get("expr", ()):
            counter = expr.get("counter") if isinstance(expr, dict) else None
            if isinstance(counter, dict):
                packets, octets = int(counter.get("packets", 0)), int(counter.get("bytes", 0))
                out.append(RuleCounter(rule["chain"], rule.get("comment", ""), packets, octets))
                break
    return out
