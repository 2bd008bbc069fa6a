"""``bgpctl policy show`` end to end: resources written to a real directory
datastore through ``bgpd.resources``, endpoints as the CNI plugin writes them,
and the policy agent's API (``build_policy_app`` on its unix socket) answering
with counters, or absent.

bgpctl is a blocking client, so each run goes to a worker thread while the
event loop keeps serving."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bgpd.ctl.main import main
from bgpd.datastore.directory import DirectoryStore
from bgpd.node.api import ApiServer, build_policy_app
from bgpd.policy.main import policy_socket_path
from bgpd.resources import store as resources
from bgpd.resources.models import load_resource

NODE = "node1"

CLUSTER = """\
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {team: blue}}
---
apiVersion: v1
kind: Namespace
metadata: {name: y, labels: {team: red}}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {pod: a}}
spec:
  containers:
  - name: c
    ports:
    - {name: serve-80-tcp, containerPort: 80}
    - {name: serve-81-udp, containerPort: 81, protocol: UDP}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {pod: b}}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: y, labels: {pod: a}}
status: {podIP: 10.65.1.1}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-b, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from: [{podSelector: {matchLabels: {pod: b}}}]
    ports: [{port: 80}, {protocol: UDP, port: 81, endPort: 90}, {port: serve-80-tcp}]
  - from:
    - namespaceSelector: {matchLabels: {team: red}}
      podSelector: {matchLabels: {pod: a}}
    - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}
    ports: [{protocol: SCTP}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-egress, namespace: x}
spec: {podSelector: {}, policyTypes: [Egress]}
"""

EXPLAINED = """\
Pod x/a
  endpoint: node node1, interface cali0000000000a
  addresses: 10.65.0.1
  labels: pod=a
  named ports: serve-80-tcp TCP 80, serve-81-udp UDP 81

Ingress: isolated by 1 policy; only what its rules allow passes
  policy x/allow-b (podSelector pod=a)
    rule 0:
      from pods matching pod=b in namespace x
        now (1): x/b (10.65.0.2)
      ports: TCP 80, UDP 81-90, named port serve-80-tcp -> TCP 80 on this pod
{counter0}    rule 1:
      from pods matching pod=a in namespaces matching team=red
        now (1): y/a (10.65.1.1)
      from any address in 10.0.0.0/8 except 10.1.0.0/16
      ports: SCTP any port
{counter1}
Egress: isolated by 1 policy; only what its rules allow passes
  policy x/deny-egress (podSelector <all>)
    allows no egress (it only isolates)

"""


class Agent:
    """The policy agent's PolicySource: fixed counters (or a failure)."""

    def __init__(self) -> None:
        self.broken = False
        self.rules: list[dict[str, Any]] = [
            {"namespace": "x", "policy": "allow-b", "direction": "ingress", "rule": "0",
             "packets": 5, "bytes": 300},
            {"namespace": "x", "policy": "allow-b", "direction": "ingress", "rule": "1",
             "packets": 1234, "bytes": 98765},
            {"namespace": "", "policy": "", "direction": "egress", "rule": "denied",
             "packets": 9, "bytes": 540},
        ]  # fmt: skip

    def status(self) -> dict[str, Any]:
        return {"node": NODE}

    def counters(self) -> list[dict[str, Any]]:
        if self.broken:
            raise RuntimeError("nft is gone")
        return self.rules


def endpoint(ds: DirectoryStore, ns: str, name: str, ip: str, iface: str) -> None:
    """An endpoint on node1, as the CNI plugin writes it."""
    cid = f"c{ns}{name}"
    ds.put(f"endpoints/{NODE}/{cid}.eth0", {
        "containerID": cid, "ifname": "eth0", "hostIfname": iface, "node": NODE,
        "namespace": ns, "pod": name, "state": "ready", "ips": [f"{ip}/32"],
    })  # fmt: skip


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "state"
    ds = DirectoryStore(str(root / "store"))
    try:
        for doc in yaml.safe_load_all(CLUSTER):
            resources.apply(ds, load_resource(doc))
        endpoint(ds, "x", "a", "10.65.0.1", "cali0000000000a")
        endpoint(ds, "x", "b", "10.65.0.2", "cali0000000000b")
    finally:
        ds.close()
    yield root


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BGPD_STATE_DIR", raising=False)
    monkeypatch.delenv("NODENAME", raising=False)


@pytest.fixture
def source() -> Agent:
    return Agent()


@pytest.fixture
async def agent(state: Path, source: Agent) -> Any:
    """The policy agent's API where bgpctl looks: <state>/run/policy-node1.sock."""
    api = ApiServer(app=build_policy_app(source), port=0,
                    socket_path=policy_socket_path(str(state), NODE))  # fmt: skip
    await api.start()
    yield api
    await api.close()


async def bgpctl(capsys: pytest.CaptureFixture[str], state: Path, *args: str,
                 node: str = NODE) -> tuple[int, str, str]:  # fmt: skip
    capsys.readouterr()
    argv = ["--state-dir", str(state), "--node-name", node, *args]
    status = await asyncio.to_thread(main, argv)
    out, err = capsys.readouterr()
    return status, out, err


def no_agent_line(state: Path) -> str:
    sock = policy_socket_path(str(state), NODE)
    return (f"Counters: none (the policy agent of node {NODE} does not answer at unix:{sock}: "
            "No such file or directory)\n")  # fmt: skip


async def test_show_without_agent(capsys: pytest.CaptureFixture[str], state: Path) -> None:
    status, out, err = await bgpctl(capsys, state, "policy", "show", "x/a")
    assert (status, err) == (0, "")
    assert out == EXPLAINED.format(counter0="", counter1="") + no_agent_line(state)


async def test_show_with_agent_counters(
    agent: ApiServer, capsys: pytest.CaptureFixture[str], state: Path
) -> None:
    status, out, err = await bgpctl(capsys, state, "policy", "show", "x/a")
    assert (status, err) == (0, "")
    assert out == EXPLAINED.format(
        counter0="      packets: 5 (300 bytes)\n", counter1="      packets: 1,234 (98,765 bytes)\n"
    ) + (
        "Counters: from the policy agent of node node1 (a rule's packets are those of every pod "
        "there that its policy selects); denied there, all pods: ingress 0, egress 9 packets\n"
    )


async def test_agent_of_the_pods_node(
    agent: ApiServer, capsys: pytest.CaptureFixture[str], state: Path
) -> None:
    """bgpctl run as another node asks the agent of the node the pod is on."""
    status, out, _err = await bgpctl(capsys, state, "policy", "show", "x/a", node="node9")
    assert status == 0
    assert "packets: 1,234 (98,765 bytes)" in out
    # A pod without an endpoint: the agent of --node-name (none at node9).
    status, out, _err = await bgpctl(capsys, state, "policy", "show", "y/a", node="node9")
    assert status == 0
    assert "the policy agent of node node9 does not answer" in out


async def test_json(agent: ApiServer, capsys: pytest.CaptureFixture[str], state: Path) -> None:
    status, out, err = await bgpctl(capsys, state, "policy", "show", "x/a", "-o", "json")
    assert (status, err) == (0, "")
    doc = json.loads(out)
    assert doc["pod"]["ips"] == ["10.65.0.1"]
    assert doc["ingress"]["isolated"] and doc["egress"]["isolated"]
    rule = doc["ingress"]["policies"][0]["rules"][1]
    assert [p["text"] for p in rule["peers"]] == [
        "pods matching pod=a in namespaces matching team=red",
        "any address in 10.0.0.0/8 except 10.1.0.0/16",
    ]
    assert rule["peers"][0]["members"] == [{"namespace": "y", "name": "a", "ips": ["10.65.1.1"]}]
    assert (rule["packets"], rule["bytes"]) == (1234, 98765)
    assert doc["counters"] == {
        "node": NODE, "address": f"unix:{policy_socket_path(str(state), NODE)}",
        "available": True, "denied": {"egress": 9},
    }  # fmt: skip
    assert doc["egress"]["policies"][0] == {
        "namespace": "x", "name": "deny-egress", "podSelector": "<all>", "rules": []}  # fmt: skip


async def test_json_without_agent(capsys: pytest.CaptureFixture[str], state: Path) -> None:
    status, out, _err = await bgpctl(capsys, state, "policy", "show", "x/a", "-o", "json")
    doc = json.loads(out)
    assert status == 0
    assert doc["counters"]["available"] is False
    assert doc["counters"]["error"] == "No such file or directory"
    assert doc["counters"]["answered"] is False
    assert "packets" not in doc["ingress"]["policies"][0]["rules"][0]


async def test_not_isolated(capsys: pytest.CaptureFixture[str], state: Path) -> None:
    status, out, _err = await bgpctl(capsys, state, "policy", "show", "a", "-n", "y")
    assert status == 0
    assert out.startswith(
        "Pod y/a\n  endpoint: none (no interface on any node yet)\n  addresses: 10.65.1.1\n"
        "  labels: pod=a\n\nIngress: not isolated: all traffic allowed\n\n"
        "Egress: not isolated: all traffic allowed\n\n"
    )


async def test_api_option(agent: ApiServer, capsys: pytest.CaptureFixture[str], state: Path,
                          tmp_path: Path) -> None:  # fmt: skip
    elsewhere = tmp_path / "nothing.sock"
    status, out, _err = await bgpctl(capsys, state, "policy", "show", "x/a", "--api",
                                     f"unix:{elsewhere}")  # fmt: skip
    assert status == 0
    assert f"does not answer at unix:{elsewhere}: No such file or directory)\n" in out
    status, out, _err = await bgpctl(capsys, state, "policy", "show", "x/a", "--api",
                                     f"unix:{agent.socket_path}")  # fmt: skip
    assert "packets: 5 (300 bytes)" in out


async def test_agent_error_is_one_line(
    agent: ApiServer, source: Agent, capsys: pytest.CaptureFixture[str], state: Path
) -> None:
    source.broken = True
    status, out, err = await bgpctl(capsys, state, "policy", "show", "x/a")
    assert (status, err) == (0, "")
    last = out.splitlines()[-1]
    sock = policy_socket_path(str(state), NODE)
    assert last == (f"Counters: none (the policy agent of node node1 answers with an error at "
                    f"unix:{sock}: HTTP 500: RuntimeError: nft is gone)")  # fmt: skip


async def test_unknown_pod(capsys: pytest.CaptureFixture[str], state: Path) -> None:
    assert await bgpctl(capsys, state, "policy", "show", "x/nope") == (
        1, "", "bgpctl: pod x/nope not found (no Pod resource and no endpoint)\n")  # fmt: skip


async def test_bad_pod_argument(capsys: pytest.CaptureFixture[str], state: Path) -> None:
    for bad in ("x/", "/a", "x/y/a"):
        status, out, err = await bgpctl(capsys, state, "policy", "show", bad)
        assert (status, out) == (1, "")
        assert err == f"bgpctl: bad pod {bad!r}: use NAMESPACE/POD\n"


async def test_no_datastore(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status, out, err = await bgpctl(capsys, tmp_path / "none", "policy", "show", "x/a")
    assert (status, out) == (1, "")
    assert err.startswith("bgpctl: no datastore at ")
