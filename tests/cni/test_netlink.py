"""The CNI plugin's rtnetlink against the kernel.

Each live test gets two fresh network namespaces, ``host`` (standing in for the
node) and ``pod``, deleted afterwards whatever happens; nothing is created in
the namespace the tests run in, and no packet leaves the two.  What the module
did is read back both with ``ip`` (the kernel's view through another client)
and with the module's own dumps."""

from __future__ import annotations

import errno
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bgpd.cni import netlink
from bgpd.cni.netlink import (
    IFA_F_NODAD,
    IFA_F_TENTATIVE,
    RT_SCOPE_LINK,
    RT_SCOPE_UNIVERSE,
    RTPROT_BOOT,
    RTPROT_STATIC,
    NetlinkError,
    Rtnl,
    enter_netns,
    link_local_from_mac,
    write_sysctl,
)
from tests.conftest import require_programs, require_root

V4, V6 = socket.AF_INET, socket.AF_INET6
HOST_MAC = bytes.fromhex("eeeeeeeeeeee")  # what Calico gives every host end
POD_MAC = bytes.fromhex("5a0102030405")
GATEWAY = socket.inet_pton(V4, "169.254.1.1")
POD_IP = socket.inet_pton(V4, "10.65.0.5")
POD_IP6 = socket.inet_pton(V6, "fd00:65::5")
ANY4, ANY6 = bytes(4), bytes(16)
REPO = Path(__file__).resolve().parents[2]


def ip(ns: str, *args: str, check: bool = True) -> str:
    res = subprocess.run(
        ["ip", "-n", ns, *args], capture_output=True, text=True, timeout=30, check=False
    )
    if check and res.returncode != 0:
        raise RuntimeError(f"ip -n {ns} {' '.join(args)}: {res.stderr.strip()}")
    return res.stdout


def ip_link(ns: str, name: str) -> dict[str, Any]:
    [found] = json.loads(ip(ns, "-d", "-j", "link", "show", "dev", name))
    return dict(found)


def names(ns: str) -> set[str]:
    return {link["ifname"] for link in json.loads(ip(ns, "-j", "link", "show"))}


def inode(path: str) -> int:
    return os.stat(path).st_ino


@pytest.fixture
def pair() -> Iterator[tuple[str, str]]:
    """The names of two new namespaces, "host" and "pod"."""
    require_root()
    require_programs("ip", package="iproute2")
    made: list[str] = []
    try:
        for _ in range(2):
            name = f"cnitest-{secrets.token_hex(4)}"
            subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
            made.append(name)
        yield made[0], made[1]
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], check=False, timeout=30)


@dataclass
class Wired:
    """A pod wired as the CNI plugin wires one: ``calitest0`` in ``host``,
    its peer ``eth0`` in ``pod``, and a socket in each namespace."""

    host: str
    pod: str
    host_nl: Rtnl
    pod_nl: Rtnl
    host_index: int
    pod_index: int

    def up(self) -> None:
        self.host_nl.set_up(self.host_index)
        self.pod_nl.set_up(self.pod_index)


def create(host_nl: Rtnl, pod: str, **kwargs: Any) -> None:
    fd = os.open(f"/var/run/netns/{pod}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        host_nl.create_veth("calitest0", "eth0", fd, 1440, HOST_MAC, **kwargs)
    finally:
        os.close(fd)


@pytest.fixture
def wired(pair: tuple[str, str]) -> Iterator[Wired]:
    host, pod = pair
    with Rtnl(host) as host_nl, Rtnl(pod) as pod_nl:
        create(host_nl, pod, peer_mac=POD_MAC)
        host_link, pod_link = host_nl.link("calitest0"), pod_nl.link("eth0")
        assert host_link is not None and pod_link is not None
        yield Wired(host, pod, host_nl, pod_nl, host_link.index, pod_link.index)


# --- pure --------------------------------------------------------------------


def test_link_local_from_mac_is_modified_eui64() -> None:
    got = socket.inet_ntop(V6, link_local_from_mac(HOST_MAC))
    assert got == "fe80::ecee:eeff:feee:eeee"
    assert socket.inet_ntop(V6, link_local_from_mac(POD_MAC)) == "fe80::5801:2ff:fe03:405"
    assert netlink.inet_ntop(V6, netlink.inet_pton(V6, "fe80::1")) == "fe80::1"
    with pytest.raises(ValueError, match="6 octets"):
        link_local_from_mac(b"\x01\x02")


def test_import_brings_in_only_cheap_modules() -> None:
    """Start-up is the point: no socket, ctypes, typing, dataclasses, enum."""
    code = (
        "import sys; before = set(sys.modules); import bgpd.cni.netlink; "
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    res = subprocess.run(
        [sys.executable, "-S", "-c", code], cwd=REPO, capture_output=True, text=True,
        timeout=60, check=True,
    )  # fmt: skip
    loaded = set(res.stdout.split())
    allowed = {"bgpd", "bgpd.cni", "bgpd.cni.netlink", "__future__", "_socket", "errno"}
    allowed |= {"posix", "struct", "_struct"}
    assert loaded <= allowed, loaded - allowed


def test_requests_checked_before_sending() -> None:
    with pytest.raises(ValueError, match="interface name"):
        netlink.create_veth_request("a-name-of-16-chr", "eth0", -1, 1500)
    with pytest.raises(ValueError, match="4"):
        netlink.add_route_request(V4, POD_IP6, 32)
    with pytest.raises(ValueError, match="gateway"):
        netlink.add_route_request(V4, ANY4, 0, gateway=POD_IP6)
    with pytest.raises(ValueError, match="family"):
        netlink.add_address_request(1, 99, POD_IP, 32)


# --- links -------------------------------------------------------------------


def test_veth_created_with_its_peer_straight_in_the_pod(wired: Wired) -> None:
    host_end, pod_end = ip_link(wired.host, "calitest0"), ip_link(wired.pod, "eth0")
    assert (host_end["mtu"], host_end["address"]) == (1440, "ee:ee:ee:ee:ee:ee")
    assert (pod_end["mtu"], pod_end["address"]) == (1440, "5a:01:02:03:04:05")
    assert host_end["linkinfo"]["info_kind"] == pod_end["linkinfo"]["info_kind"] == "veth"
    # Each end names the other, in the other namespace.
    assert host_end["link_index"] == pod_end["ifindex"] == wired.pod_index
    assert pod_end["link_index"] == host_end["ifindex"] == wired.host_index
    assert names(wired.host) == {"lo", "calitest0"}
    assert names(wired.pod) == {"lo", "eth0"}

    link = wired.host_nl.link("calitest0")
    assert link is not None
    assert (link.name, link.mac, link.mtu, link.kind) == ("calitest0", HOST_MAC, 1440, "veth")
    assert link.link == wired.pod_index
    assert link.link_netnsid == host_end["link_netnsid"] >= 0
    assert not link.up
    peer = wired.pod_nl.link("eth0")
    assert peer is not None
    assert (peer.mac, peer.link, peer.link_netnsid) == (
        POD_MAC, wired.host_index, pod_end["link_netnsid"],
    )  # fmt: skip
    assert wired.host_nl.link("eth0") is None
    assert {x.name for x in wired.host_nl.links()} == {"lo", "calitest0"}
    [lo] = [x for x in wired.pod_nl.links() if x.name == "lo"]
    assert (lo.index, lo.kind, lo.link_netnsid) == (1, "", -1)


def test_set_up(wired: Wired) -> None:
    wired.up()
    for nl, name in ((wired.host_nl, "calitest0"), (wired.pod_nl, "eth0")):
        link = nl.link(name)
        assert link is not None and link.up
    assert "UP" in ip_link(wired.host, "calitest0")["flags"]


def test_veth_twice_is_eexist_and_leaves_nothing_behind(wired: Wired) -> None:
    with pytest.raises(NetlinkError) as caught:
        create(wired.host_nl, wired.pod)
    assert caught.value.errno == errno.EEXIST
    assert "create veth calitest0" in str(caught.value)
    # The pod's name taken, the host's free: still refused, and no host end left.
    fd = os.open(f"/var/run/netns/{wired.pod}", os.O_RDONLY)
    try:
        with pytest.raises(NetlinkError) as caught:
            wired.host_nl.create_veth("calitest1", "eth0", fd, 1440, None)
    finally:
        os.close(fd)
    assert caught.value.errno == errno.EEXIST
    assert names(wired.host) == {"lo", "calitest0"}


def test_delete_link_removes_both_ends(wired: Wired) -> None:
    wired.host_nl.delete_link("calitest0")
    assert names(wired.host) == {"lo"}
    assert names(wired.pod) == {"lo"}
    assert wired.pod_nl.link("eth0") is None
    with pytest.raises(NetlinkError) as caught:
        wired.host_nl.delete_link("calitest0")
    assert caught.value.errno == errno.ENODEV
    wired.host_nl.delete_link("calitest0", missing_ok=True)
    wired.host_nl.delete_link(wired.host_index, missing_ok=True)
    # By index, from the pod's side this time.
    create(wired.host_nl, wired.pod)
    eth0 = wired.pod_nl.link("eth0")
    assert eth0 is not None
    wired.pod_nl.delete_link(eth0.index)
    assert names(wired.host) == {"lo"}


# --- addresses ---------------------------------------------------------------


def test_addresses_v4_and_v6_without_dad(wired: Wired) -> None:
    ip(wired.pod, "link", "set", "lo", "up")
    wired.up()
    other6 = socket.inet_pton(V6, "fd00:65::6")
    nl = wired.pod_nl
    nl.add_address(wired.pod_index, V4, POD_IP, 32)
    nl.add_address(wired.pod_index, V6, POD_IP6, 128, nodad=True)
    nl.add_address(wired.pod_index, V6, other6, 128)  # with DAD, for contrast
    text = ip(wired.pod, "-6", "addr", "show", "dev", "eth0")
    [ours] = [line for line in text.splitlines() if "fd00:65::5/128" in line]
    [theirs] = [line for line in text.splitlines() if "fd00:65::6/128" in line]
    assert "tentative" not in ours
    assert "tentative" in theirs
    assert "inet 10.65.0.5/32" in ip(wired.pod, "-4", "addr", "show", "dev", "eth0")

    found = {(family, addr): (i, n, f) for i, family, addr, n, f in nl.addresses(wired.pod_index)}
    assert found[V4, POD_IP][:2] == (wired.pod_index, 32)
    index, prefixlen, flags = found[V6, POD_IP6]
    assert (index, prefixlen) == (wired.pod_index, 128)
    assert flags & IFA_F_NODAD and not flags & IFA_F_TENTATIVE
    assert found[V6, other6][2] & IFA_F_TENTATIVE
    assert {i for i, *_ in nl.addresses(wired.pod_index)} == {wired.pod_index}
    assert (1, V4, socket.inet_aton("127.0.0.1"), 8) in [a[:4] for a in nl.addresses()]

    with pytest.raises(NetlinkError) as caught:
        nl.add_address(wired.pod_index, V4, POD_IP, 32)
    assert caught.value.errno == errno.EEXIST


def test_link_local_from_mac_as_the_kernel_derives_it(wired: Wired) -> None:
    with enter_netns(f"/var/run/netns/{wired.host}"):
        write_sysctl("net/ipv6/conf/calitest0/addr_gen_mode", "0")  # eui64
    wired.up()  # both ends up: carrier, and the kernel adds the address
    expected = socket.inet_ntop(V6, link_local_from_mac(HOST_MAC))
    deadline = time.monotonic() + 5
    text = ""
    while time.monotonic() < deadline and "fe80::" not in text:
        text = ip(wired.host, "-6", "addr", "show", "dev", "calitest0", "scope", "link")
        time.sleep(0.05)
    assert f"inet6 {expected}/64" in text
    ours = [a for a in wired.host_nl.addresses(wired.host_index) if a[1] == V6]
    assert [(a[2], a[3]) for a in ours] == [(link_local_from_mac(HOST_MAC), 64)]


# --- routes ------------------------------------------------------------------


def route_shapes(nl: Rtnl, family: int, table: int = 254) -> set[tuple[object, ...]]:
    return {
        (r.dst, r.dst_len, r.gateway, r.oif, r.scope, r.protocol, r.type)
        for r in nl.routes(family, table)
    }


def test_routes_of_the_pod_and_to_it(wired: Wired) -> None:
    wired.up()
    pod, host = wired.pod_nl, wired.host_nl
    pod.add_address(wired.pod_index, V4, POD_IP, 32)
    # The pod's side: 169.254.1.1 on the link, and the default route through it.
    pod.add_route(V4, GATEWAY, 32, oif=wired.pod_index, scope=RT_SCOPE_LINK)
    pod.add_route(V4, ANY4, 0, gateway=GATEWAY, oif=wired.pod_index)
    host_ll = link_local_from_mac(HOST_MAC)
    pod.add_route(V6, ANY6, 0, gateway=host_ll, oif=wired.pod_index)
    lines = [line.strip() for line in ip(wired.pod, "route", "show").splitlines()]
    assert "default via 169.254.1.1 dev eth0" in lines
    assert "169.254.1.1 dev eth0 scope link" in lines
    assert "default via fe80::ecee:eeff:feee:eeee dev eth0 metric 1024 pref medium" in ip(
        wired.pod, "-6", "route", "show"
    )
    assert route_shapes(pod, V4) == {
        (GATEWAY, 32, b"", wired.pod_index, RT_SCOPE_LINK, RTPROT_BOOT, 1),
        (ANY4, 0, GATEWAY, wired.pod_index, RT_SCOPE_UNIVERSE, RTPROT_BOOT, 1),
    }
    [default6] = [r for r in pod.routes(V6) if r.dst_len == 0]
    assert (default6.gateway, default6.oif, default6.metric) == (host_ll, wired.pod_index, 1024)
    # Table 255 holds the kernel's local routes (RTN_LOCAL, 2), apart.
    local = [r for r in pod.routes(V4, table=255) if r.dst == POD_IP]
    assert [(r.dst_len, r.type, r.table) for r in local] == [(32, 2, 255)]

    # The host's side: the pod's addresses through its veth.
    host.add_route(V4, POD_IP, 32, oif=wired.host_index, scope=RT_SCOPE_LINK)
    host.add_route(V6, POD_IP6, 128, oif=wired.host_index)
    assert "10.65.0.5 dev calitest0 scope link" in ip(wired.host, "route", "show")
    assert "fd00:65::5 dev calitest0 metric 1024" in ip(wired.host, "-6", "route", "show")
    assert (POD_IP, 32, b"", wired.host_index, RT_SCOPE_LINK, RTPROT_BOOT, 1) in route_shapes(
        host, V4
    )
    assert any(r.dst == POD_IP6 and r.dst_len == 128 for r in host.routes(V6))

    # Once only, unless replaced.
    with pytest.raises(NetlinkError) as caught:
        host.add_route(V4, POD_IP, 32, oif=wired.host_index, scope=RT_SCOPE_LINK)
    assert caught.value.errno == errno.EEXIST
    host.add_route(
        V4, POD_IP, 32, oif=wired.host_index, scope=RT_SCOPE_LINK, protocol=RTPROT_STATIC,
        replace=True,
    )  # fmt: skip
    [replaced] = [r for r in host.routes(V4) if r.dst == POD_IP]
    assert replaced.protocol == RTPROT_STATIC

    host.delete_route(V4, POD_IP, 32)
    host.delete_route(V6, POD_IP6, 128, oif=wired.host_index)
    assert "10.65.0.5" not in ip(wired.host, "route", "show")
    assert not [r for r in host.routes(V6) if r.dst == POD_IP6]
    with pytest.raises(NetlinkError) as caught:
        host.delete_route(V4, POD_IP, 32)
    assert caught.value.errno == errno.ESRCH
    host.delete_route(V4, POD_IP, 32, missing_ok=True)
    # A delete narrowed to another protocol leaves the route alone.
    with pytest.raises(NetlinkError):
        pod.delete_route(V4, ANY4, 0, protocol=RTPROT_STATIC)
    pod.delete_route(V4, ANY4, 0, protocol=RTPROT_BOOT)
    assert (ANY4, 0) not in {(r.dst, r.dst_len) for r in pod.routes(V4)}


def test_errors_carry_the_kernels_reason(wired: Wired) -> None:
    # The device exists but is down: IPv4 refuses, and says why.
    with pytest.raises(NetlinkError) as caught:
        wired.host_nl.add_route(V4, POD_IP, 32, oif=wired.host_index, scope=RT_SCOPE_LINK)
    err = caught.value
    assert err.errno == errno.ENETDOWN
    assert err.text == "Device for nexthop is not up"
    assert err.text in str(err) and f"dev #{wired.host_index}" in str(err)
    assert (err.request, err.index) == (f"add route 10.65.0.5/32 dev #{wired.host_index}", 0)
    # No such device.
    with pytest.raises(NetlinkError) as caught:
        wired.host_nl.add_address(9999, V4, POD_IP, 32)
    assert caught.value.errno == errno.ENODEV
    assert "Device not found" in caught.value.text
    # The kernel gives no text for a route through a missing device: the errno
    # and the request still say what went wrong.
    with pytest.raises(NetlinkError) as caught:
        wired.host_nl.add_route(V4, POD_IP, 32, oif=9999, scope=RT_SCOPE_LINK)
    assert caught.value.errno == errno.ENODEV and "dev #9999" in str(caught.value)
    # A gateway not on any link.
    with pytest.raises(NetlinkError) as caught:
        wired.pod_nl.add_route(V4, ANY4, 0, gateway=GATEWAY)
    assert caught.value.text == "Nexthop has invalid gateway"


def test_batch_reports_the_failing_request(wired: Wired) -> None:
    wired.up()
    missing = netlink.add_route_request(V4, ANY4, 0, gateway=socket.inet_aton("192.0.2.1"))
    requests = [
        netlink.add_address_request(wired.pod_index, V4, POD_IP, 32),
        netlink.add_route_request(V4, GATEWAY, 32, oif=9999, scope=RT_SCOPE_LINK),
        netlink.add_route_request(V4, GATEWAY, 32, oif=wired.pod_index, scope=RT_SCOPE_LINK),
        missing,
    ]
    with pytest.raises(NetlinkError) as caught:
        wired.pod_nl.batch(requests)
    assert caught.value.index == 1
    assert caught.value.request == "add route 169.254.1.1/32 dev #9999"
    # The kernel carried on after the failure.
    assert POD_IP in [a[2] for a in wired.pod_nl.addresses(wired.pod_index)]
    assert [r.oif for r in wired.pod_nl.routes(V4)] == [wired.pod_index]
    # Requests that succeed, and failures tolerated, raise nothing.
    wired.pod_nl.batch(
        [
            netlink.add_route_request(V4, ANY4, 0, gateway=GATEWAY, oif=wired.pod_index),
            netlink.delete_link_request("nosuch0", missing_ok=True),
            netlink.delete_route_request(V4, POD_IP6[:4], 32, missing_ok=True),
        ]
    )
    assert len(wired.pod_nl.routes(V4)) == 2
    wired.pod_nl.batch([])


def test_batch_larger_than_one_datagram(wired: Wired) -> None:
    wired.up()
    requests = [
        netlink.add_route_request(
            V4, bytes((10, 66, n // 256, n % 256)), 32, oif=wired.host_index, scope=RT_SCOPE_LINK
        )
        for n in range(300)
    ]
    requests.insert(200, netlink.add_route_request(V4, GATEWAY, 32, oif=9999))
    with pytest.raises(NetlinkError) as caught:
        wired.host_nl.batch(requests)
    assert caught.value.index == 200
    assert len(wired.host_nl.routes(V4)) == 300


# --- namespaces and sysctls --------------------------------------------------


def test_enter_netns_returns_even_when_the_body_raises(pair: tuple[str, str]) -> None:
    home = inode("/proc/thread-self/ns/net")
    target = f"/var/run/netns/{pair[0]}"
    with enter_netns(target):
        assert inode("/proc/thread-self/ns/net") == inode(target)
    assert inode("/proc/thread-self/ns/net") == home
    with pytest.raises(RuntimeError, match="inside"), enter_netns(target):
        assert inode("/proc/thread-self/ns/net") == inode(target)
        raise RuntimeError("inside")
    assert inode("/proc/thread-self/ns/net") == home


def test_enter_netns_refuses_what_is_not_a_namespace(pair: tuple[str, str], tmp_path: Path) -> None:
    home = inode("/proc/thread-self/ns/net")
    with pytest.raises(FileNotFoundError), enter_netns("/var/run/netns/cnitest-none"):
        pass
    plain = tmp_path / "plain"
    plain.write_text("")
    for path in (str(plain), "/proc/self/ns/uts"):
        with (
            pytest.raises(NetlinkError, match="not a network namespace") as caught,
            enter_netns(path),
        ):
            pass
        assert caught.value.errno == errno.EINVAL
    with pytest.raises(FileNotFoundError):
        Rtnl("cnitest-none")
    assert inode("/proc/thread-self/ns/net") == home


def test_socket_stays_in_its_namespace(pair: tuple[str, str]) -> None:
    """Rtnl(netns) leaves the namespace straight away; its socket does not."""
    home = inode("/proc/thread-self/ns/net")
    with Rtnl(pair[1]) as nl:
        assert inode("/proc/thread-self/ns/net") == home
        nl.create_veth("ping0", "pong0", -1, 1500, None)
    assert names(pair[1]) == {"lo", "ping0", "pong0"}
    assert names(pair[0]) == {"lo"}


def test_write_sysctl_in_a_namespace(wired: Wired) -> None:
    path = "net/ipv4/conf/calitest0/proxy_arp"
    with enter_netns(f"/var/run/netns/{wired.host}"):
        write_sysctl(path, "1")
    read = subprocess.run(
        ["ip", "netns", "exec", wired.host, "cat", f"/proc/sys/{path}"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert read.stdout.strip() == "1"
    assert not os.path.exists(f"/proc/sys/{path}")  # not in the tests' own namespace


def test_setns_through_ctypes_internals_not_the_fallback() -> None:
    # The fallback works too, but costs each pod 7 ms of ``import ctypes``:
    # notice if an interpreter change sends us there.
    if hasattr(os, "setns"):
        pytest.skip("Python 3.12+: os.setns is used")
    assert netlink._load_setns().__name__ == "call"


def test_a_dump_interrupted_every_time_raises_unless_inexact(
    pair: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A link table that changes under every dump (200 pods starting at once) is
    # a fault we cannot cause on demand: the kernel's DUMP_INTR flag is forced.
    host, _ = pair
    real = Rtnl._ask
    monkeypatch.setattr(Rtnl, "_ask", lambda *args: (real(*args)[0], True))
    with Rtnl(host) as nl:
        with pytest.raises(netlink.NetlinkError) as caught:
            nl.links()
        assert caught.value.errno == errno.EAGAIN
        assert [link.name for link in nl.links(exact=False)] == ["lo"]
