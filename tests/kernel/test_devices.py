"""Tunnel devices and VTEP entries, made in a real namespace and read back with
``ip -d`` and ``bridge``."""

from __future__ import annotations

import json
import socket
import subprocess

import pytest

from bgpd.kernel.devices import DeviceError, Devices
from bgpd.kernel.encap import Vtep, VxlanSpec

from .conftest import Netns

NODE = socket.inet_aton("198.18.5.1")
MAC = bytes.fromhex("661122334455")


def vtep(n: int) -> Vtep:
    return Vtep(
        socket.inet_aton(f"198.18.5.{n}"),
        socket.inet_aton(f"10.244.{n}.0"),
        bytes.fromhex(f"6600000000{n:02x}"),
    )


def vxlan_details(ns: Netns) -> dict[str, object]:
    [link] = json.loads(ns.ip("-d", "-j", "link", "show", "vxlan.calico"))
    return dict(link)


def test_vxlan_device_as_calico_makes_it(netns: Netns) -> None:
    netns.ip("link", "set", "up0", "mtu", "1500")
    devices = Devices(netns.name)
    try:
        index = devices.ensure_vxlan(VxlanSpec(NODE, socket.inet_aton("10.244.1.0"), MAC))
        assert index == netns.ifindex("vxlan.calico")
        link = vxlan_details(netns)
        data = link["linkinfo"]["info_data"]  # type: ignore[index]
        assert (data["id"], data["port"], data["local"], data["learning"]) == (
            4096,
            4789,
            "198.18.5.1",
            False,
        )
        assert data["link"] == "up0"
        assert link["mtu"] == 1450  # the uplink's 1500 minus 50
        assert link["address"] == "66:11:22:33:44:55"
        assert "UP" in link["flags"]  # type: ignore[operator]
        assert "inet 10.244.1.0/32" in netns.ip("addr", "show", "dev", "vxlan.calico")
        # Idempotent: the same device is kept; a new tunnel address replaces the old.
        again = devices.ensure_vxlan(VxlanSpec(NODE, socket.inet_aton("10.244.1.64"), MAC))
        assert again == index
        text = netns.ip("addr", "show", "dev", "vxlan.calico")
        assert "10.244.1.64/32" in text and "10.244.1.0/32" not in text
        # A device of the wrong VNI is replaced.
        changed = devices.ensure_vxlan(
            VxlanSpec(NODE, socket.inet_aton("10.244.1.0"), MAC, vni=4097)
        )
        assert changed != index
        assert vxlan_details(netns)["linkinfo"]["info_data"]["id"] == 4097  # type: ignore[index]
    finally:
        devices.close()


def test_vtep_entries_follow_the_node_list(netns: Netns) -> None:
    devices = Devices(netns.name)
    try:
        index = devices.ensure_vxlan(VxlanSpec(NODE, socket.inet_aton("10.244.1.0"), MAC))
        assert devices.sync_vteps(index, [vtep(2), vtep(3)]) == (4, 0)
        assert devices.sync_vteps(index, [vtep(2), vtep(3)]) == (0, 0)
        neigh = netns.ip("neigh", "show", "dev", "vxlan.calico")
        assert "10.244.2.0 lladdr 66:00:00:00:00:02 PERMANENT" in neigh
        assert "10.244.3.0 lladdr 66:00:00:00:00:03 PERMANENT" in neigh
        bridge = _fdb(netns)
        assert "66:00:00:00:00:02 dst 198.18.5.2" in bridge
        assert "66:00:00:00:00:03 dst 198.18.5.3" in bridge
        # Node 3 leaves, node 4 joins; node 2 moves to a new node IP.
        moved = Vtep(socket.inet_aton("198.18.5.9"), vtep(2).address, vtep(2).mac)
        assert devices.sync_vteps(index, [moved, vtep(4)]) == (3, 3)
        bridge = _fdb(netns)
        assert "66:00:00:00:00:02 dst 198.18.5.9" in bridge
        assert "198.18.5.2" not in bridge and "66:00:00:00:00:03" not in bridge
        assert "66:00:00:00:00:04 dst 198.18.5.4" in bridge
        neigh = netns.ip("neigh", "show", "dev", "vxlan.calico")
        assert "10.244.3.0" not in neigh and "10.244.4.0" in neigh
    finally:
        devices.close()


def _fdb(ns: Netns) -> str:
    return subprocess.run(
        ["bridge", "-n", ns.name, "fdb", "show", "dev", "vxlan.calico"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip


def test_vxlan_needs_the_node_address_on_an_interface(netns: Netns) -> None:
    devices = Devices(netns.name)
    try:
        with pytest.raises(DeviceError, match=r"holds the node address 198\.18\.77\.1"):
            devices.ensure_vxlan(
                VxlanSpec(socket.inet_aton("198.18.77.1"), socket.inet_aton("10.244.1.0"))
            )
        assert devices.ifindex("vxlan.calico") == 0
    finally:
        devices.close()


def test_tunl0(netns: Netns) -> None:
    """tunl0 exists only with the kernel's ipip module: made and addressed where
    the module is, refused with that reason where it is not."""
    devices = Devices(netns.name)
    try:
        try:
            index = devices.ensure_tunl0(socket.inet_aton("10.244.1.1"), mtu=1480)
        except DeviceError as e:
            assert "this kernel has no IPIP support" in str(e)
            assert devices.ifindex("tunl0") == 0
            pytest.skip("this kernel has no IPIP module: tunl0 cannot exist here")
        assert index == netns.ifindex("tunl0")
        assert "inet 10.244.1.1/32" in netns.ip("addr", "show", "dev", "tunl0")
        assert "mtu 1480" in netns.ip("link", "show", "tunl0")
    finally:
        devices.close()
