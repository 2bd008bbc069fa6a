"""bgpd-cni end to end in namespaces: what ADD builds, result shapes per version,
CHECK, DEL, GC, STATUS, VERSION, IPv6, host-local with usePodCidr, automatic MTU."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bgpd.cni.dataplane import host_veth_name
from bgpd.ipam.allocator import Ipam
from tests.cni.harness import NETWORK, CniNode, ip
from tests.conftest import require_programs, require_root

POD_ARGS = "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-1"


@pytest.fixture
def node(tmp_path: Path) -> Iterator[CniNode]:
    require_root()
    require_programs("ip", package="iproute2")
    n = CniNode(tmp_path)
    try:
        n.pool("v4", "10.65.0.0/16")
        yield n
    finally:
        n.teardown()


def _serve_once(ns: str, address: str, port: int) -> subprocess.Popen[bytes]:
    """A TCP server in ``ns`` that answers one connection with its own address."""
    code = (
        "import socket,sys\n"
        f"s=socket.socket(socket.AF_INET6 if ':' in {address!r} else socket.AF_INET)\n"
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(({address!r},{port})); s.listen(1); print('ready', flush=True)\n"
        "c,a=s.accept(); c.sendall(('hello from '+" + repr(address) + ").encode()); c.close()\n"
    )
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, "python3", "-c", code], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    return proc


def _connect(ns: str, address: str, port: int) -> str:
    code = (
        "import socket\n"
        f"c=socket.create_connection(({address!r},{port}),timeout=5)\n"
        "print(c.recv(100).decode())\n"
    )
    res = subprocess.run(
        ["ip", "netns", "exec", ns, "python3", "-c", code],
        capture_output=True, text=True, timeout=20, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_add_builds_the_calico_attachment(node: CniNode) -> None:
    pod = node.pod_netns()
    res = node.cni("ADD", "c1", pod, config=node.config(mtu=1400), args=POD_ARGS)
    assert res.ok, res
    assert res.json is not None
    host = host_veth_name("default", "web-1", "c1")
    assert host == "cali" + __import__("hashlib").sha1(b"default.web-1").hexdigest()[:11]
    assert [i["name"] for i in res.json["interfaces"]] == [host, "eth0"]
    assert res.json["interfaces"][0]["mac"] == "ee:ee:ee:ee:ee:ee"
    assert res.json["interfaces"][1]["sandbox"] == f"/var/run/netns/{pod}"
    assert "mtu" not in res.json["interfaces"][1]  # 1.0.0 has no interface MTU
    (entry,) = res.json["ips"]
    address = entry["address"].split("/")[0]
    assert entry == {"address": f"{address}/32", "interface": 1}
    assert res.json["routes"] == [{"dst": "0.0.0.0/0"}]

    link = ip(pod, "-d", "link", "show", "eth0")
    assert "mtu 1400" in link and "veth" in link
    assert f"inet {address}/32" in ip(pod, "addr", "show", "eth0")
    routes = ip(pod, "route")
    assert "default via 169.254.1.1 dev eth0" in routes
    assert "169.254.1.1 dev eth0 scope link" in routes
    assert f"{address} dev {host} scope link" in node.ip("route")
    outer = node.ip("link", "show", host)
    assert "ee:ee:ee:ee:ee:ee" in outer and "state UP" in outer
    for key, want in (
        (f"net.ipv4.conf.{host}.proxy_arp", "1"),
        (f"net.ipv4.conf.{host}.forwarding", "1"),
        (f"net.ipv4.conf.{host}.route_localnet", "1"),
        (f"net.ipv4.neigh.{host}.proxy_delay", "0"),
    ):
        got = subprocess.run(
            ["ip", "netns", "exec", node.ns, "sysctl", "-n", key],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        assert got == want, key
    (key,) = node.records()
    record = node.store.get(key)
    assert record is not None
    assert record.value["state"] == "ready"
    assert record.value["ips"] == [f"{address}/32"]
    assert record.value["hostIfname"] == host
    assert record.value["pod"] == "web-1" and record.value["namespace"] == "default"
    assert node.store.get(f"ipam/handles/{NETWORK}.c1") is not None


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_result_in_the_version_asked(node: CniNode, version: str) -> None:
    pod = node.pod_netns()
    res = node.cni("ADD", "c1", pod, config=node.config(cniVersion=version, mtu=1450))
    assert res.ok, res
    assert res.json is not None and res.json["cniVersion"] == version
    (entry,) = res.json["ips"]
    if version < "1.0.0":
        assert entry["version"] == "4"
    else:
        assert "version" not in entry
    assert ("mtu" in res.json["interfaces"][1]) == (version == "1.1.0")


def test_two_pods_reach_each_other(node: CniNode) -> None:
    pods = [node.pod_netns(), node.pod_netns()]
    addresses = []
    for i, pod in enumerate(pods):
        res = node.cni("ADD", f"c{i}", pod, config=node.config(mtu=1450))
        assert res.ok, res
        assert res.json is not None
        addresses.append(res.json["ips"][0]["address"].split("/")[0])
    assert addresses[0] != addresses[1]
    server = _serve_once(pods[1], addresses[1], 8080)
    try:
        assert _connect(pods[0], addresses[1], 8080) == f"hello from {addresses[1]}"
    finally:
        server.kill()
        server.wait()


def test_ipv6_attachment(node: CniNode) -> None:
    node.pool("v6", "fd00:65::/64")
    pods = [node.pod_netns(), node.pod_netns()]
    config = node.config(mtu=1450, ipam={"assign_ipv6": "true"})
    v6 = []
    for i, pod in enumerate(pods):
        res = node.cni("ADD", f"c{i}", pod, config=config)
        assert res.ok, res
        assert res.json is not None
        families = sorted(":" in e["address"] for e in res.json["ips"])
        assert families == [False, True]
        v6.append(next(e["address"] for e in res.json["ips"] if ":" in e["address"]))
        assert res.json["routes"] == [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]
    assert all(a.endswith("/128") for a in v6)
    addr = ip(pods[0], "-6", "addr", "show", "eth0")
    assert v6[0] in addr and "tentative" not in addr
    assert "default via fe80::ecee:eeff:feee:eeee dev eth0" in ip(pods[0], "-6", "route")
    server = _serve_once(pods[1], v6[1].split("/")[0], 8081)
    try:
        reply = _connect(pods[0], v6[1].split("/")[0], 8081)
        assert reply == f"hello from {v6[1].split('/')[0]}"
    finally:
        server.kill()
        server.wait()


def test_check_passes_then_fails_when_the_route_is_deleted(node: CniNode) -> None:
    pod = node.pod_netns()
    res = node.cni("ADD", "c1", pod, config=node.config(mtu=1450))
    assert res.ok and res.json is not None
    address = res.json["ips"][0]["address"].split("/")[0]
    config = node.config(mtu=1450, prevResult=res.json)
    assert node.cni("CHECK", "c1", pod, config=config).ok
    node.ip("route", "del", f"{address}/32")
    bad = node.cni("CHECK", "c1", pod, config=config)
    assert bad.rc == 1 and bad.json is not None
    assert bad.json["code"] == 102
    assert f"host route to {address}" in bad.json["msg"]
    ip(pod, "route", "del", "default")
    bad = node.cni("CHECK", "c1", pod, config=config)
    assert bad.json is not None and "0.0.0.0/0" in bad.json["msg"]


def test_check_needs_prev_result_and_matching_addresses(node: CniNode) -> None:
    pod = node.pod_netns()
    res = node.cni("ADD", "c1", pod, config=node.config(mtu=1450))
    assert res.ok and res.json is not None
    missing = node.cni("CHECK", "c1", pod, config=node.config(mtu=1450))
    assert missing.json is not None and missing.json["code"] == 7
    assert "prevResult" in missing.json["msg"]
    other = dict(res.json, ips=[{"address": "10.99.0.1/32", "interface": 1}])
    wrong = node.cni("CHECK", "c1", pod, config=node.config(mtu=1450, prevResult=other))
    assert wrong.json is not None and wrong.json["code"] == 102
    unknown = node.cni("CHECK", "nope", pod, config=node.config(mtu=1450, prevResult=res.json))
    assert unknown.json is not None and unknown.json["code"] == 3


def test_check_finds_a_released_address(node: CniNode) -> None:
    pod = node.pod_netns()
    res = node.cni("ADD", "c1", pod, config=node.config(mtu=1450))
    assert res.ok and res.json is not None
    address = res.json["ips"][0]["address"].split("/")[0]
    assert Ipam(node.store, node.name).release_ips([address]) == [address]
    bad = node.cni("CHECK", "c1", pod, config=node.config(mtu=1450, prevResult=res.json))
    assert bad.json is not None and bad.json["code"] == 102 and "IPAM holds" in bad.json["msg"]


def test_del_removes_everything_and_is_idempotent(node: CniNode) -> None:
    pod = node.pod_netns()
    assert node.cni("ADD", "c1", pod, config=node.config(mtu=1450)).ok
    assert node.host_veths()
    for _ in range(2):
        res = node.cni("DEL", "c1", pod)
        assert res.ok and res.stdout == "", res
    assert node.host_veths() == []
    assert node.records() == []
    assert node.store.keys("ipam/handles/") == []
    assert "eth0" not in ip(pod, "link")


def test_gc_releases_what_the_runtime_no_longer_knows(node: CniNode) -> None:
    pods = [node.pod_netns() for _ in range(3)]
    for i, pod in enumerate(pods):
        assert node.cni("ADD", f"c{i}", pod, config=node.config(mtu=1450)).ok
    valid = [{"containerID": "c1", "ifname": "eth0"}]
    config = node.config(cniVersion="1.1.0", **{"cni.dev/valid-attachments": valid})
    env = node.env("GC")
    res = node.run("bgpd-cni", env, config)
    assert res.ok and res.stdout == "", res
    assert [k.rsplit("/", 1)[1] for k in node.records()] == ["c1.eth0"]
    assert node.store.keys("ipam/handles/") == [f"ipam/handles/{NETWORK}.c1"]
    assert len(node.host_veths()) == 1


def test_gc_and_status_need_version_1_1(node: CniNode) -> None:
    for command in ("GC", "STATUS"):
        res = node.run("bgpd-cni", node.env(command), node.config(cniVersion="1.0.0"))
        assert res.json is not None and res.json["code"] == 1


def test_status(node: CniNode) -> None:
    ok = node.run("bgpd-cni", node.env("STATUS"), node.config(cniVersion="1.1.0"))
    assert ok.ok and ok.stdout == ""
    v6 = node.config(cniVersion="1.1.0", ipam={"assign_ipv6": "true"})
    res = node.run("bgpd-cni", node.env("STATUS"), v6)
    assert res.json is not None and res.json["code"] == 50 and "IPv6" in res.json["msg"]
    gone = node.config(cniVersion="1.1.0", state_dir="/proc/none/state")
    res = node.run("bgpd-cni", node.env("STATUS"), gone)
    assert res.json is not None and res.json["code"] == 50


def test_version(node: CniNode) -> None:
    res = node.run("bgpd-cni", {"CNI_COMMAND": "VERSION"}, b'{"cniVersion": "0.4.0"}')
    assert res.json == {
        "cniVersion": "0.4.0",
        "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
    }


def test_automatic_mtu_from_the_uplink_less_vxlan(node: CniNode) -> None:
    node.pool("v4", "10.65.0.0/16", vxlanMode="Always")
    node.ip("link", "add", "eth0", "mtu", "1500", "type", "veth", "peer", "name", "eth0p")
    node.ip("link", "set", "eth0", "up")
    pod = node.pod_netns()
    res = node.cni("ADD", "c1", pod, config=node.config(cniVersion="1.1.0"))
    assert res.ok and res.json is not None
    assert res.json["interfaces"][1]["mtu"] == 1450
    assert "mtu 1450" in ip(pod, "link", "show", "eth0")
    (node.state / "mtu").write_text("1380\n")
    pod2 = node.pod_netns()
    res = node.cni("ADD", "c2", pod2, config=node.config(cniVersion="1.1.0"))
    assert res.ok and res.json is not None and res.json["interfaces"][1]["mtu"] == 1380


def test_host_local_with_use_pod_cidr(node: CniNode) -> None:
    require_programs("/usr/lib/cni/host-local", package="containernetworking-plugins")
    node.store.put(f"resources/nodes/{node.name}", {
        "apiVersion": "projectcalico.org/v3", "kind": "Node",
        "metadata": {"name": node.name}, "status": {"podCIDRs": ["10.70.3.0/24"]},
    })  # fmt: skip
    ipam = {"type": "host-local", "subnet": "usePodCidr", "dataDir": str(node.state / "hl")}
    pod = node.pod_netns()
    res = node.cni("ADD", "c1", pod, config=node.config(mtu=1450, ipam=ipam))
    assert res.ok, res
    assert res.json is not None
    address = res.json["ips"][0]["address"]
    assert address.startswith("10.70.3.") and address.endswith("/32")
    assert f"inet {address}" in ip(pod, "addr", "show", "eth0")
    assert node.cni("DEL", "c1", pod, config=node.config(mtu=1450, ipam=ipam)).ok
    leftover = json.dumps(sorted(p.name for p in (node.state / "hl").rglob("*")))
    assert address.split("/")[0] not in leftover
    node.store.delete(f"resources/nodes/{node.name}")
    bad = node.cni("ADD", "c2", node.pod_netns(), config=node.config(mtu=1450, ipam=ipam))
    assert bad.json is not None and bad.json["code"] == 7 and "usePodCidr" in bad.json["msg"]
