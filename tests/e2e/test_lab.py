"""The lab itself: its network, its pinger, its clean-up whatever happens, and
``python -m bgpd.lab`` (what ``make run`` runs) from start to Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bgpd.datastore.directory import DirectoryStore
from bgpd.lab import Lab, LabError
from bgpd.lab.__main__ import main as lab_main
from bgpd.lab.pinger import checksum
from bgpd.lab.resources import apply, bgp_configuration, ippool, to_yaml
from bgpd.lab.topology import Topology, leftovers, netns_names, sh, sweep_stale, wait_for

from .conftest import require_lab, running_lab


def test_checksum_is_rfc_1071() -> None:
    # RFC 1071 §3's example: the one's complement sum of these words is 0xddf2.
    assert checksum(bytes.fromhex("0001f203f4f5f6f7")) == ~0xDDF2 & 0xFFFF
    assert checksum(b"\x01") == ~0x0100 & 0xFFFF


def pinger(ns: str, target: str, *args: str) -> dict[str, object]:
    res = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "bgpd.lab.pinger", target, *args],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    result: dict[str, object] = json.loads(res.stdout.splitlines()[-1])
    return result


def test_topology_flat_and_cross_subnet() -> None:
    """Flat: nodes reach each other on one bridge, the fabric routes nothing.
    CrossSubnet: the fabric routes between the two subnets; node 2 is on the other."""
    require_lab()
    flat, cross = Topology(3, "direct"), Topology(3, "crosssubnet")
    try:
        nets = flat.build()
        assert [n.address for n in nets] == ["198.18.1.1", "198.18.1.2", "198.18.1.3"]
        got = pinger(nets[0].ns, nets[2].address, "--count", "20", "--interval", "0.001")
        assert got["received"] == 20 and got["lost"] == []
        assert sh("ip", "netns", "exec", flat.fabric, "sysctl", "-n",
                  "net.ipv4.ip_forward").stdout.strip() == "0"  # fmt: skip
        nets = cross.build()
        assert [n.subnet for n in nets] == ["198.18.1.0/24", "198.18.2.0/24", "198.18.1.0/24"]
        got = pinger(nets[0].ns, nets[1].address, "--count", "20", "--interval", "0.001")
        assert got["received"] == 20  # through the fabric's router
        # Lost echoes are reported: nothing answers 198.18.1.99.
        got = pinger(nets[0].ns, "198.18.1.99", "--count", "5", "--interval", "0.01",
                     "--linger", "0.2")  # fmt: skip
        assert got["sent"] == 5 and got["received"] == 0 and got["lost"] == [0, 1, 2, 3, 4]
    finally:
        assert flat.teardown() == [] and cross.teardown() == []
    assert leftovers(flat.prefix) == [] and leftovers(cross.prefix) == []


def test_a_failed_start_leaves_nothing(tmp_path: Path) -> None:
    require_lab()
    lab = Lab(nodes=2, state_dir=tmp_path, agent_args=("--no-such-option",))
    with pytest.raises(LabError, match="agent exited"), lab:
        pytest.fail("the lab started with agents that cannot start")
    assert lab.leftovers() == ([], [])
    assert (tmp_path / "logs" / "node1.log").exists()  # kept for the post-mortem


def test_an_interrupt_inside_the_lab_leaves_nothing(tmp_path: Path) -> None:
    require_lab()
    lab = Lab(nodes=2, state_dir=tmp_path, pods_per_node=1)
    with pytest.raises(KeyboardInterrupt), lab:
        assert len(lab.pods) == 2 and lab.ping(lab.pods[0], lab.pods[1].ip, count=1) == 0.0
        raise KeyboardInterrupt
    assert lab.leftovers() == ([], [])
    # The pods went through CNI DEL: no endpoint record, no address allocated.
    store = lab.store()
    try:
        assert store.keys("endpoints/") == [] and store.keys("ipam/handles/") == []
    finally:
        store.close()


def test_stale_namespaces_of_dead_labs_are_swept(tmp_path: Path) -> None:
    require_lab()
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"bgpdlab{dead.pid}x1-node1"
    sh("ip", "netns", "add", stale)
    with running_lab(tmp_path, nodes=1, pods_per_node=0) as lab:
        assert stale in sweep_stale()
        assert stale not in netns_names()
        assert leftovers(lab.prefix)  # a live lab's namespaces are left alone


def test_python_m_bgpd_lab_runs_until_ctrl_c(tmp_path: Path) -> None:
    """What ``make run`` runs: the status of every node, a ping between pods on
    different nodes, what to try; a crashed agent started again; Ctrl-C removes
    everything."""
    require_lab()
    out = tmp_path / "out.txt"
    with open(out, "w") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bgpd.lab", "--nodes", "2", "--pods", "1",
             "--state-dir", str(tmp_path / "state")],
            stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_for(lambda: "Press Ctrl-C" in out.read_text() or proc.poll() is not None, 120,
                 "the lab to be up")  # fmt: skip
        text = out.read_text()
        assert proc.poll() is None, text
        assert text.count("IPv4 BGP status") == 2, text
        rows = re.findall(r"node-to-node mesh \| up +\| [\d:]+ \| Established", text)
        assert len(rows) == 2, text
        assert " 0% packet loss" in text, text
        assert "node status" in text and "ip route" in text, text
        assert any(name.startswith(f"bgpdlab{proc.pid}x") for name in netns_names())
        # The agent crashed as the hint says: the lab starts it again.
        match = re.search(r"kill -9 (\d+)", text)
        assert match is not None, text
        os.kill(int(match.group(1)), signal.SIGKILL)
        wait_for(lambda: "started again as pid" in out.read_text(), 60, "the agent's restart")
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(60) == 0, out.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "cleaned up" in out.read_text()
    assert not [n for n in netns_names() if n.startswith(f"bgpdlab{proc.pid}x")]


def test_python_m_bgpd_lab_needs_root(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert lab_main([]) == 1
    assert "needs root" in capsys.readouterr().err


def test_apply_validates_as_calico_does(tmp_path: Path) -> None:
    """The lab's own resources pass Calico's validation; a bad one is refused
    with its field, and nothing of its file is written."""
    apply(str(tmp_path), to_yaml(ippool("vxlan"), bgp_configuration()))
    store = DirectoryStore(str(tmp_path / "store"))
    try:
        pool = store.get("resources/ippools/lab-pool")
        assert pool is not None and pool.value["spec"]["vxlanMode"] == "Always"
        bad = ippool("direct", cidr="10.99.0.0/16", name="bad")
        bad["spec"]["blockSize"] = 33
        good = ippool("direct", cidr="10.98.0.0/16", name="good")
        with pytest.raises(LabError, match="blockSize"):
            apply(str(tmp_path), to_yaml(good, bad))
        assert store.get("resources/ippools/good") is None
        assert store.get("resources/ippools/bad") is None
    finally:
        store.close()
