"""``bgpd policy`` as a process in a namespace of its own: it follows the datastore,
refuses bad resources while keeping what was in force, reports its status and
counters, and leaves its table (or removes it with --cleanup) when it stops."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bgpd.datastore.directory import DirectoryStore
from bgpd.lab.agent import api_get
from tests.conftest import require_programs, require_root

NODE = "node1"


class Running:
    def __init__(self, tmp: Path, ns: str) -> None:
        self.state = tmp / "state"
        self.ns = ns
        self.store = DirectoryStore(str(self.state / "store"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tmp / "policy.log"

    def start(self, *extra: str) -> None:
        argv = ["ip", "netns", "exec", self.ns, sys.executable, "-m", "bgpd", "policy",
                "--state-dir", str(self.state), "--node-name", NODE, "--metrics-port", "0",
                *extra]  # fmt: skip
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        self.synced()

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode

    def status(self) -> dict[str, Any] | None:
        try:
            return dict(json.loads((self.state / "run" / f"policy-{NODE}.json").read_text()))
        except (OSError, ValueError):
            return None

    def synced(self, timeout: float = 30) -> dict[str, Any]:
        """Wait until the agent has enforced every write made so far."""
        want = self.store.revision()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"the agent exited {self.proc.returncode}:\n{self.log.read_text()}")
            found = self.status()
            if found is not None and found["revision"] >= want and found["pid"] == self.proc.pid:
                return found
            time.sleep(0.02)
        pytest.fail(f"the agent did not reach revision {want}:\n{self.log.read_text()}")

    def nft(self, *args: str) -> str:
        proc = subprocess.run(["ip", "netns", "exec", self.ns, "nft", *args],
                              capture_output=True, text=True, check=False)  # fmt: skip
        return proc.stdout if proc.returncode == 0 else f"ERROR {proc.stderr}"

    def table(self) -> str:
        return self.nft("list", "table", "inet", "bgpd-policy")


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Running]:
    require_root()
    require_programs("nft", package="nftables")
    ns = f"polagent-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    running = Running(tmp_path, ns)
    try:
        yield running
    finally:
        if running.proc is not None:
            running.stop()
        subprocess.run(["ip", "netns", "del", ns], check=False)


def netpol(name: str, spec: dict[str, Any], ns: str = "x") -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}  # fmt: skip


ALLOW_80 = {"podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"ports": [{"port": 80, "protocol": "TCP"}]}],
            "policyTypes": ["Ingress"]}  # fmt: skip


def put_pod_and_endpoint(store: DirectoryStore) -> None:
    store.put("resources/pods/x/a", {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "namespace": "x",
                                                       "labels": {"pod": "a"}},
        "spec": {"containers": [{"name": "c",
                                 "ports": [{"containerPort": 80, "protocol": "TCP"}]}]},
    })  # fmt: skip
    store.put("endpoints/node1/c0ffee.eth0", {
        "containerID": "c0ffee", "ifname": "eth0", "hostIfname": "cali0123456789a", "node": NODE,
        "namespace": "x", "pod": "a", "state": "ready", "ips": ["10.65.0.2/32"],
    })  # fmt: skip


def test_follows_the_datastore_and_keeps_the_last_good_policy(agent: Running) -> None:
    agent.start()
    assert "chain forward" in agent.table()
    put_pod_and_endpoint(agent.store)
    agent.store.put("resources/networkpolicies/x/p", netpol("p", ALLOW_80))
    status = agent.synced()
    assert (status["policies"], status["endpoints"], status["errors"]) == (1, 1, [])
    table = agent.table()
    assert "chain pi-x/p" in table and "tcp dport 80" in table
    assert '"cali0123456789a" : jump gi-' in table

    # a bad version (endPort below port) is refused; the good one stays in force
    bad = dict(ALLOW_80, ingress=[{"ports": [{"port": 80, "endPort": 70, "protocol": "TCP"}]}])
    agent.store.put("resources/networkpolicies/x/p", netpol("p", bad))
    status = agent.synced()
    assert [e["key"] for e in status["errors"]] == ["resources/networkpolicies/x/p"]
    assert "endPort" in status["errors"][0]["error"]
    assert "tcp dport 80" in agent.table()

    # a bad new policy is not enforced at all (no allow-all, no drop-all)
    agent.store.put(
        "resources/networkpolicies/x/q",
        netpol("q", {"podSelector": {}, "policyTypes": ["Sideways"]}),
    )
    status = agent.synced()
    assert len(status["errors"]) == 2 and status["policies"] == 1
    assert "pi-x/q" not in agent.table()

    # fixed: enforced; deleted: gone, and its complaint with it
    agent.store.put(
        "resources/networkpolicies/x/p",
        netpol("p", dict(ALLOW_80, ingress=[{"ports": [{"port": 81}]}])),
    )
    agent.store.delete("resources/networkpolicies/x/q")
    status = agent.synced()
    assert status["errors"] == []
    assert "tcp dport 81" in agent.table()
    agent.store.delete("resources/networkpolicies/x/p")
    agent.synced()
    table = agent.table()
    assert "pi-x/p" not in table and "jump gi-" not in table
    assert 'elements = { "cali0123456789a" }' in table  # known: not dropped as unknown


def test_status_counters_and_metrics(agent: Running) -> None:
    put_pod_and_endpoint(agent.store)
    agent.store.put("resources/networkpolicies/x/p", netpol("p", ALLOW_80))
    agent.start()
    sock = str(agent.state / "run" / f"policy-{NODE}.sock")
    code, body = api_get(sock, "/counters")
    assert code == 200
    counters = json.loads(body)["counters"]
    assert {"namespace": "x", "policy": "p", "direction": "ingress", "rule": "0",
            "packets": 0, "bytes": 0} in counters  # fmt: skip
    code, body = api_get(sock, "/metrics")
    text = body.decode()
    assert code == 200
    assert (
        'bgpd_policy_rule_packets_total{direction="ingress",namespace="x",policy="p",rule="0"} 0.0'
        in text
    )
    assert "bgpd_policy_policies 1.0" in text
    code, body = api_get(sock, "/status")
    assert json.loads(body)["rules"] > 0


def test_stop_leaves_the_table_unless_cleanup(agent: Running) -> None:
    agent.start()
    assert agent.stop() == 0
    assert "chain forward" in agent.table()
    agent.start("--cleanup")
    assert agent.stop() == 0
    assert agent.table().startswith("ERROR")


def test_restart_replaces_a_stale_table(agent: Running) -> None:
    agent.nft("add", "table", "inet", "bgpd-policy")
    agent.nft("add", "chain", "inet", "bgpd-policy", "leftover")
    agent.start()
    table = agent.table()
    assert "leftover" not in table and "chain forward" in table
