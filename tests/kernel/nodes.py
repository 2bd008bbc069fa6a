"""Lab nodes for the FIB tests: our standalone speaker run inside a node's
namespace (so its kernel table is that namespace's), and pods beside it wired
as the CNI plugin wires them (a veth, the pod's /32, the 169.254.1.1 gateway
answered by proxy ARP)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.interop.lab import Lab, sh, wait_sync

OUR_AS = 65001


def forwarding(ns: str) -> None:
    sh("ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
    sh("ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1")


def add_pod(lab: Lab, node_ns: str, host_if: str, address: str) -> str:
    """A pod namespace behind ``host_if`` in the node, holding ``address``/32."""
    pod = lab.namespace()
    sh("ip", "-n", node_ns, "link", "add", host_if, "type", "veth", "peer", "name", "eth0",
       "netns", pod)  # fmt: skip
    sh("ip", "netns", "exec", node_ns, "sysctl", "-q", "-w", f"net.ipv4.conf.{host_if}.proxy_arp=1")
    sh("ip", "-n", node_ns, "link", "set", host_if, "up")
    sh("ip", "-n", node_ns, "route", "add", f"{address}/32", "dev", host_if)
    sh("ip", "-n", pod, "addr", "add", f"{address}/32", "dev", "eth0")
    sh("ip", "-n", pod, "link", "set", "eth0", "up")
    sh("ip", "-n", pod, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
    sh("ip", "-n", pod, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
    return pod


def ping(ns: str, address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, "ping", "-n", "-q", *args, address],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@dataclass
class Node:
    """Our speaker in namespace ``ns``; ``config`` is its JSON file's content."""

    lab: Lab
    ns: str
    name: str
    config: dict[str, Any] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    runs: int = 0

    @property
    def out(self) -> Path:
        return self.lab.workdir / f"{self.name}-{self.runs}.out"

    def start(self) -> None:
        self.runs += 1
        conf = self.lab.workdir / f"{self.name}-{self.runs}.json"
        conf.write_text(json.dumps(self.config))
        cmd = [sys.executable, "-m", "bgpd.standalone", str(conf)]
        self.proc = self.lab.spawn(self.ns, cmd, self.out)

    def kill(self) -> None:
        assert self.proc is not None
        self.lab.kill(self.proc)  # SIGKILL

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        records = []
        for line in self.out.read_text().splitlines():
            if line.startswith("{"):
                with_event = json.loads(line)
                if name is None or with_event["event"] == name:
                    records.append(with_event)
        return records

    def wait_event(self, name: str, timeout: float = 30) -> dict[str, Any]:
        def seen() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited: {self.out.read_text()[-2000:]}")
            return bool(self.events(name))

        wait_sync(seen, timeout, f"{self.name}: {name}")
        return self.events(name)[0]

    def route(self, prefix: str, *args: str) -> str:
        """The node's route for exactly ``prefix`` (all lines of it), or ''."""
        family = ["-6"] if ":" in prefix else []
        res = sh("ip", *family, "-n", self.ns, "route", "show", *args, "exact", prefix)
        return " ".join(res.stdout.split())

    def wait_route(self, prefix: str, expected: str, timeout: float = 20) -> None:
        """Until the node's route for ``prefix`` reads ``expected`` ('' for none)."""
        wait_sync(lambda: self.route(prefix) == expected, timeout, f"{self.name}: {expected!r}")


def peer(address: str, peer_as: int = OUR_AS, **extra: Any) -> dict[str, Any]:
    """A peer entry that connects fast, as the lab needs."""
    return {
        "address": address,
        "as": peer_as,
        "hold_time": 9,
        "connect_delay": 0.2,
        "connect_retry": 1,
        "error_wait": [0.5, 1],
        **extra,
    }
