"""The one place that runs nft: a transaction in, the kernel's counters out.

A script is committed as one netlink batch: the kernel takes all of it or none
(a failed transaction leaves the table as it was).  It goes to libnftables, the
library the ``nft`` command is made of, called in-process through ctypes: that
saves the 5-8 ms a fork and exec of ``nft -f -`` costs per transaction, a
sixth of a pod's arrival.  Without the library (``libnftables.so.1``, Debian
package libnftables1, a dependency of nftables) the script goes to ``nft -f -``
on standard input instead; the two give the same result and the same errors.
Either runs in the calling process's network namespace (the library's netlink
socket is opened, once, on first use).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import json
import shutil
import subprocess
import threading
from dataclasses import dataclass
from typing import Any

NFT = "nft"
_NFT_CTX_OUTPUT_JSON = 1 << 4  # libnftables.h: enum nft_output_flags


class _Library:
    """libnftables: one context for scripts, one for JSON listings (nft_ctx_new,
    nft_ctx_buffer_output/error, nft_run_cmd_from_buffer; libnftables(3))."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
            getattr(lib, name).argtypes = [ctypes.c_void_p]
        for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
            getattr(lib, name).restype = ctypes.c_char_p
            getattr(lib, name).argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        self.lib = lib
        self.lock = threading.Lock()
        self.plain = self._context(0)
        self.json = self._context(_NFT_CTX_OUTPUT_JSON)

    def _context(self, flags: int) -> int:
        ctx = self.lib.nft_ctx_new(0)
        if not ctx:
            raise OSError("nft_ctx_new failed")
        self.lib.nft_ctx_buffer_output(ctx)
        self.lib.nft_ctx_buffer_error(ctx)
        if flags:
            self.lib.nft_ctx_output_set_flags(ctx, flags)
        return int(ctx)

    def run(self, script: str, as_json: bool = False) -> tuple[int, str, str]:
        ctx = self.json if as_json else self.plain
        with self.lock:
            code = self.lib.nft_run_cmd_from_buffer(ctx, script.encode())
            out = self.lib.nft_ctx_get_output_buffer(ctx) or b""
            err = self.lib.nft_ctx_get_error_buffer(ctx) or b""
        return int(code), out.decode(errors="replace"), err.decode(errors="replace")


@functools.cache
def _lib() -> _Library | None:
    path = ctypes.util.find_library("nftables") or "libnftables.so.1"
    try:
        return _Library(ctypes.CDLL(path))
    except OSError:
        return None


def _run(script: str, as_json: bool = False) -> tuple[int, str, str]:
    lib = _lib()
    if lib is not None:
        return lib.run(script, as_json)
    argv = [NFT, *(["-j"] if as_json else []), "-f", "-"]
    proc = subprocess.run(argv, input=script.encode(), capture_output=True, check=False)
    return (
        proc.returncode,
        proc.stdout.decode(errors="replace"),
        proc.stderr.decode(errors="replace"),
    )


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
