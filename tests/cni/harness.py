"""A node and its pods in network namespaces, and the plugins run as a runtime runs
them: ``CNI_*`` in the environment, the network configuration on stdin, inside the
node's namespace (``ip netns exec``), from a CNI_PATH folder holding our launchers
and the reference plugins of the Debian package containernetworking-plugins.

Every namespace made is deleted at teardown, which also removes every veth; the
state directory lives under pytest's tmp_path.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from bgpd.cni.install import install
from bgpd.datastore.directory import DirectoryStore

REFERENCE = Path("/usr/lib/cni")
REFERENCE_PLUGINS = ("portmap", "bandwidth", "host-local", "ptp", "loopback")
NETWORK = "k8s-pod-network"
#: The node's own address (every node has its own namespace, so one value serves).
NODE_IP = "198.18.0.1"
_counter = itertools.count(1)


def ip(ns: str, *args: str, check: bool = True) -> str:
    res = subprocess.run(
        ["ip", "-n", ns, *args], capture_output=True, text=True, timeout=30, check=False
    )
    if check and res.returncode != 0:
        raise RuntimeError(f"ip -n {ns} {' '.join(args)}: {res.stderr.strip()}")
    return res.stdout


def plugin_folder(folder: Path) -> Path:
    """Our launchers and links to the reference plugins, as a CNI_PATH."""
    install(str(folder))
    for name in REFERENCE_PLUGINS:
        link = folder / name
        if not link.exists() and (REFERENCE / name).exists():
            link.symlink_to(REFERENCE / name)
    return folder


class Result:
    def __init__(self, proc: subprocess.CompletedProcess[bytes]) -> None:
        self.rc = proc.returncode
        self.stdout = proc.stdout.decode()
        self.stderr = proc.stderr.decode()
        self.json: dict[str, Any] | None = json.loads(self.stdout) if self.stdout.strip() else None

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def __repr__(self) -> str:
        return (
            f"Result(rc={self.rc}, out={self.stdout.strip()!r}, err={self.stderr.strip()[-400:]!r})"
        )


class CniNode:
    """One node namespace (loopback up, forwarding on) with a state directory."""

    def __init__(self, tmp: Path, name: str = "node1") -> None:
        n = next(_counter)
        self.tag = f"{os.getpid() % 10000}-{n}"
        self.name = name
        self.ns = f"cni-{name}-{self.tag}"
        self.state = tmp / f"state-{name}"
        self.bin = plugin_folder(tmp / "bin")
        self.store = DirectoryStore(str(self.state / "store"))
        self.pods: list[str] = []
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        ip(self.ns, "link", "set", "lo", "up")
        # Proxy ARP answers for 169.254.1.1 only if the node has a route to it
        # elsewhere, as a real node's default route gives: an uplink to nowhere.
        ip(self.ns, "link", "add", "up0", "type", "veth", "peer", "name", "up1")
        ip(self.ns, "addr", "add", f"{NODE_IP}/24", "dev", "up0")
        ip(self.ns, "link", "set", "up0", "up")
        ip(self.ns, "link", "set", "up1", "up")
        ip(self.ns, "route", "add", "default", "dev", "up0")
        ip(self.ns, "-6", "route", "add", "default", "dev", "up0")
        self.sysctl("net.ipv4.ip_forward", "1")
        self.sysctl("net.ipv6.conf.all.forwarding", "1")

    def sysctl(self, key: str, value: str, ns: str | None = None) -> None:
        subprocess.run(
            ["ip", "netns", "exec", ns or self.ns, "sysctl", "-qw", f"{key}={value}"], check=True
        )

    def pool(self, name: str, cidr: str, **spec: Any) -> None:
        self.store.put(f"resources/ippools/{name}", {
            "apiVersion": "projectcalico.org/v3", "kind": "IPPool",
            "metadata": {"name": name}, "spec": {"cidr": cidr, **spec},
        })  # fmt: skip

    def pod_netns(self, name: str | None = None) -> str:
        ns = f"cni-pod-{self.tag}-{name or len(self.pods)}"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        ip(ns, "link", "set", "lo", "up")
        self.pods.append(ns)
        return ns

    def config(self, **overrides: Any) -> dict[str, Any]:
        ipam = {"type": "bgpd-ipam", **overrides.pop("ipam", {})}
        return {
            "cniVersion": "1.0.0", "name": NETWORK, "type": "bgpd-cni", "nodename": self.name,
            "state_dir": str(self.state), "ipam": ipam, **overrides,
        }  # fmt: skip

    def env(self, command: str, container: str = "", netns: str = "", ifname: str = "eth0",
            args: str = "") -> dict[str, str]:  # fmt: skip
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
               "CNI_COMMAND": command, "CNI_PATH": str(self.bin)}  # fmt: skip
        if container:
            env["CNI_CONTAINERID"] = container
        if netns:
            env["CNI_NETNS"] = netns if "/" in netns else f"/var/run/netns/{netns}"
        if ifname:
            env["CNI_IFNAME"] = ifname
        if args:
            env["CNI_ARGS"] = args
        return env

    def run(self, plugin: str, env: dict[str, str], config: dict[str, Any] | bytes) -> Result:
        data = config if isinstance(config, bytes) else json.dumps(config).encode()
        proc = subprocess.run(
            ["ip", "netns", "exec", self.ns, str(self.bin / plugin)], input=data, env=env,
            capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        return Result(proc)

    def cni(
        self, command: str, container: str, netns: str = "", *,
        config: dict[str, Any] | None = None, ifname: str = "eth0", args: str = "",
        plugin: str = "bgpd-cni",
    ) -> Result:  # fmt: skip
        env = self.env(command, container, netns, ifname, args)
        return self.run(plugin, env, config if config is not None else self.config())

    def ip(self, *args: str, check: bool = True) -> str:
        return ip(self.ns, *args, check=check)

    def records(self) -> list[str]:
        return self.store.keys(f"endpoints/{self.name}/")

    def host_veths(self) -> list[str]:
        out = self.ip("-o", "link", "show")
        return sorted(
            line.split(": ")[1].split("@")[0] for line in out.splitlines() if ": cali" in line
        )

    def teardown(self) -> None:
        for ns in [*self.pods, self.ns]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        self.store.close()
