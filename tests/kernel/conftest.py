"""A fresh network namespace per test: loopback up and a veth pair (``up0`` with
198.18.5.1/24 and 2001:2:0:5::1/64, its peer ``up1``), both ends inside it.
Deleted after the test, which also removes every route and link in it."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import require_programs, require_root

_counter = itertools.count(1)

GATEWAY = socket.inet_aton("198.18.5.2")
GATEWAY6 = socket.inet_pton(socket.AF_INET6, "2001:2:0:5::2")


def ip(ns: str, *args: str, check: bool = True) -> str:
    res = subprocess.run(
        ["ip", "-n", ns, *args], capture_output=True, text=True, timeout=30, check=False
    )
    if check and res.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {res.stderr.strip()}")
    return res.stdout


@dataclass
class Netns:
    name: str

    def ip(self, *args: str, check: bool = True) -> str:
        return ip(self.name, *args, check=check)

    def ifindex(self, dev: str) -> int:
        return int(self.ip("-o", "link", "show", dev).split(":", 1)[0])

    def routes(self, *args: str) -> list[str]:
        """``ip route show`` lines (IPv4 unless ``-6`` is given first)."""
        return [line.strip() for line in self.ip("route", "show", *args).splitlines()]


@pytest.fixture
def netns() -> Iterator[Netns]:
    require_root()
    require_programs("ip", package="iproute2")
    name = f"bgpk-{os.getpid()}-{next(_counter)}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    try:
        ns = Netns(name)
        ns.ip("link", "set", "lo", "up")
        ns.ip("link", "add", "up0", "type", "veth", "peer", "name", "up1")
        ns.ip("link", "set", "up0", "up")
        ns.ip("link", "set", "up1", "up")
        ns.ip("addr", "add", "198.18.5.1/24", "dev", "up0")
        ns.ip("-6", "addr", "add", "2001:2:0:5::1/64", "dev", "up0", "nodad")
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=30)
