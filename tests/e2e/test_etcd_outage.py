"""etcd stopped for 30 s under a running cluster, then started again (issue 9);
and a three-member etcd losing one member under a running cluster.

While it is down: every BGP session stays Established, every node keeps every
route, traffic between pods on different nodes loses nothing, the node agents'
status API answers, and a CNI ADD fails with the retryable CNI error (code 11)
leaving no interface behind.  Afterwards, with no process restarted: the ADD
works, a block claimed after the outage reaches every other node's kernel, and
the agents' presence records are there."""

from __future__ import annotations

import json
import time
from pathlib import Path

from bgpd.lab import Lab, Pod
from bgpd.lab.topology import ip, wait_for

from .conftest import diagnose, running_lab

OUTAGE = 30.0


def cali_links(lab: Lab, node: str) -> list[str]:
    out = ip(lab.net(node).ns, "-o", "link", "show")
    return sorted(line.split(":")[1].strip().split("@")[0] for line in out.splitlines()
                  if ": cali" in line)  # fmt: skip


def routed_everywhere(lab: Lab, block: str) -> None:
    """Until every node but the block's own routes it to its node."""
    owner = next(n for n, blocks in lab.blocks().items() if block in blocks)
    others = [n for n in lab.node_names if n != owner]

    def routed() -> bool:
        return all(lab.route(n, block).startswith(f"{block} via ") for n in others)

    wait_for(routed, 30, f"{block} of {owner} routed on {', '.join(others)}")


def snapshot(lab: Lab) -> tuple[dict[str, dict[str, str] | None], dict[str, list[str]]]:
    sessions = {n: lab.sessions(n) for n in lab.node_names}
    routes = {n: sorted(lab.routes(n, "proto", "bird")) for n in lab.node_names}
    return sessions, routes


def test_etcd_down_30s_changes_nothing_and_everything_catches_up(tmp_path: Path) -> None:
    with running_lab(tmp_path, nodes=3, datastore="etcd", pods_per_node=1) as lab:
        assert lab.etcd is not None
        flood = lab.flood(lab.pods_on("node1")[0], lab.pods_on("node2")[0].ip)
        lab.wait_flowing(flood, 100)
        sessions, routes = snapshot(lab)
        assert all(s and set(s.values()) == {"Established"} for s in sessions.values()), sessions
        links = cali_links(lab, "node3")

        lab.etcd.stop_member(0)
        down = time.monotonic()
        failed = Pod("node3-pod8", "node3", lab.topology.pod_namespace(lab.net("node3"), 8),
                     f"{lab.prefix}-node3-pod8")  # fmt: skip
        res = lab.cni("ADD", failed)
        assert res.returncode == 1, res
        error = json.loads(res.stdout)
        assert error["code"] == 11 and "etcd" in error["msg"], error
        assert cali_links(lab, "node3") == links, "a failed ADD left an interface behind"
        while time.monotonic() - down < OUTAGE:
            assert snapshot(lab) == (sessions, routes), diagnose(lab)
            time.sleep(2)
        lab.wait_flowing(flood, 100)

        lab.etcd.start_member(0)
        lab.etcd.wait_ready()
        # The same ADD, retried as a runtime retries it, now works.
        res = lab.cni("ADD", failed)
        assert res.returncode == 0, res
        lab.pods.append(Pod(failed.name, failed.node, failed.ns, failed.container,
                            json.loads(res.stdout)["ips"][0]["address"].split("/")[0]))  # fmt: skip
        # A block claimed now, from a new pool, reaches the other nodes: the agents
        # follow the datastore again without having been restarted.
        block = lab.claim_block("node3", "after-outage", "10.66.0.0/16")
        assert block in lab.blocks()["node3"]
        routed_everywhere(lab, block)
        store = lab.store()
        try:
            agents = store.keys("status/agents/")
        finally:
            store.close()
        assert agents == [f"status/agents/{n}/node" for n in lab.node_names], agents
        assert lab.ping(lab.pods_on("node1")[0], lab.pods[-1].ip) == 0.0, diagnose(lab)
        result = flood.stop()
        assert result["lost"] == [] and result["received"] == result["sent"], result
        assert [a.runs for a in lab.agents.values()] == [1, 1, 1], "an agent was restarted"


def test_a_three_member_etcd_losing_one_member_keeps_the_cluster_working(tmp_path: Path) -> None:
    """Every agent and plugin is given the three members; one is killed (SIGKILL,
    as a machine lost): pods are still made, new blocks still reach every node,
    no session drops and no agent restarts."""
    with running_lab(tmp_path, nodes=3, datastore="etcd", etcd_members=3, pods_per_node=1) as lab:
        assert lab.etcd is not None and len(lab.etcd.endpoints) == 3
        sessions, _routes = snapshot(lab)
        flood = lab.flood(lab.pods_on("node1")[0], lab.pods_on("node3")[0].ip)
        lab.wait_flowing(flood, 50)
        lab.etcd.stop_member(0, kill=True)  # the first endpoint every process tries
        pod = lab.add_pod("node2", 2)
        assert lab.ping(lab.pods_on("node1")[0], pod.ip) == 0.0, diagnose(lab)
        routed_everywhere(lab, lab.claim_block("node1", "two-of-three", "10.67.0.0/16"))
        assert snapshot(lab)[0] == sessions, diagnose(lab)
        result = flood.stop()
        assert result["lost"] == [] and result["received"] == result["sent"], result
        assert [a.runs for a in lab.agents.values()] == [1, 1, 1], "an agent was restarted"
