"""``bgpctl ipam`` end to end: a state directory built with the real allocator and
endpoint records, the CLI run in-process (``main(argv)``) and once as the installed
script, the output compared as text.

Block choice and timestamps are pinned (the allocator picks blocks at random) so
that tables are exact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bgpd.cni.endpoints import endpoint_key
from bgpd.ctl.context import default_node_name
from bgpd.ctl.main import main
from bgpd.datastore.directory import DirectoryStore
from bgpd.ipam import allocator
from bgpd.ipam.allocator import Ipam

NETWORK = "k8s-pod-network"
STAMP = "2024-05-01 12:00:00 +0000 UTC"


@pytest.fixture(autouse=True)
def _pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator, "_random_below", lambda n: 0)
    monkeypatch.setattr(allocator, "_timestamp", lambda: STAMP)
    monkeypatch.delenv("BGPD_STATE_DIR", raising=False)
    monkeypatch.delenv("NODENAME", raising=False)


class Cluster:
    """A state directory: pools, allocations for pods, and their endpoint records."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.store = DirectoryStore(str(state / "store"))

    def ipam(self, node: str) -> Ipam:
        return Ipam(self.store, node, str(self.state / "locks" / f"ipam-{node}.lock"))

    def pool(self, name: str, cidr: str, **spec: Any) -> None:
        self.store.put(
            f"resources/ippools/{name}",
            {
                "apiVersion": "projectcalico.org/v3",
                "kind": "IPPool",
                "metadata": {"name": name},
                "spec": {"cidr": cidr, **spec},
            },
        )

    def config(self, **values: Any) -> None:
        base = {"strictAffinity": False, "autoAllocateBlocks": True, "maxBlocksPerHost": 0}
        self.store.put("ipam/config", {**base, **values})

    def pod(
        self, node: str, cid: str, pod: str, *, namespace: str = "default", v6: bool = False,
        state: str = "ready", record: bool = True, **extra: Any,
    ) -> list[str]:  # fmt: skip
        """Allocate for a pod as the plugin does, write its record; its addresses."""
        handle = f"{NETWORK}.{cid}"
        got = self.ipam(node).auto_assign(
            handle, {"namespace": namespace, "pod": pod}, num4=1, num6=1 if v6 else 0
        )
        ips = [a.address for a in got]
        if record:
            self.record(node, cid, pod, namespace=namespace, state=state, ips=ips, **extra)
        return ips

    def record(
        self, node: str, cid: str, pod: str, *, namespace: str = "default",
        state: str = "ready", ips: list[str] | None = None, **extra: Any,
    ) -> str:  # fmt: skip
        value: dict[str, Any] = {
            "containerID": cid, "ifname": "eth0", "hostIfname": f"cali{cid}",
            "network": NETWORK, "node": node, "namespace": namespace, "pod": pod,
            "handle": f"{NETWORK}.{cid}", "state": state,
        }  # fmt: skip
        if state == "ready":
            value["ips"] = [f"{ip}/{128 if ':' in ip else 32}" for ip in ips or ()]
            value["mac"] = "0a:58:0a:41:00:01"
        value.update(extra)
        key = endpoint_key(node, cid, "eth0")
        self.store.put(key, value)
        return key


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    """Two pools; node n1 with five pods (the first dual-stack)."""
    c = Cluster(tmp_path)
    c.pool("default-ipv4", "10.65.0.0/24")
    c.pool("default-ipv6", "fd00:65::/48")
    c.config()
    c.pod("n1", "c0", "web-0", v6=True)
    for i in range(1, 5):
        c.pod("n1", f"c{i}", f"web-{i}")
    return c


def run(capsys: pytest.CaptureFixture[str], cluster: Cluster, *argv: str) -> tuple[int, str, str]:
    code = main(["--state-dir", str(cluster.state), "--node-name", "n1", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def show_ip(capsys: pytest.CaptureFixture[str], cluster: Cluster, ip: str) -> str:
    return run(capsys, cluster, "ipam", "show", f"--ip={ip}")[1]


# -- show -------------------------------------------------------------------------------


def test_show(capsys: pytest.CaptureFixture[str], cluster: Cluster) -> None:
    code, out, err = run(capsys, cluster, "ipam", "show")
    assert (code, err) == (0, "")
    assert out == (
        "+----------+--------------+------------+------------+-------------------+\n"
        "| GROUPING |     CIDR     | IPS TOTAL  | IPS IN USE |     IPS FREE      |\n"
        "+----------+--------------+------------+------------+-------------------+\n"
        "| IP Pool  | 10.65.0.0/24 |        256 | 5 (2%)     | 251 (98%)         |\n"
        "| IP Pool  | fd00:65::/48 | 1.2089e+24 | 1 (0%)     | 1.2089e+24 (100%) |\n"
        "+----------+--------------+------------+------------+-------------------+\n"
    )


def test_show_blocks(capsys: pytest.CaptureFixture[str], cluster: Cluster) -> None:
    cluster.pod("n2", "d0", "db-0")  # n2 claims the next block
    code, out, _ = run(capsys, cluster, "ipam", "show", "--show-blocks")
    assert code == 0
    assert out == (
        "+----------+---------------+------------+------------+-------------------+\n"
        "| GROUPING |     CIDR      | IPS TOTAL  | IPS IN USE |     IPS FREE      |\n"
        "+----------+---------------+------------+------------+-------------------+\n"
        "| IP Pool  | 10.65.0.0/24  |        256 | 6 (2%)     | 250 (98%)         |\n"
        "| Block    | 10.65.0.0/26  |         64 | 5 (8%)     | 59 (92%)          |\n"
        "| Block    | 10.65.0.64/26 |         64 | 1 (2%)     | 63 (98%)          |\n"
        "| IP Pool  | fd00:65::/48  | 1.2089e+24 | 1 (0%)     | 1.2089e+24 (100%) |\n"
        "| Block    | fd00:65::/122 |         64 | 1 (2%)     | 63 (98%)          |\n"
        "+----------+---------------+------------+------------+-------------------+\n"
    )


def test_show_blocks_of_a_deleted_pool_come_last(
    capsys: pytest.CaptureFixture[str], cluster: Cluster
) -> None:
    cluster.store.delete("resources/ippools/default-ipv6")
    code, out, _ = run(capsys, cluster, "ipam", "show", "--show-blocks")
    assert code == 0
    assert out.splitlines()[3:7] == [
        "| IP Pool  | 10.65.0.0/24  |       256 | 5 (2%)     | 251 (98%) |",
        "| Block    | 10.65.0.0/26  |        64 | 5 (8%)     | 59 (92%)  |",
        "| Block    | fd00:65::/122 |        64 | 1 (2%)     | 63 (98%)  |",
        "+----------+---------------+-----------+------------+-----------+",
    ]


def test_show_borrowed(capsys: pytest.CaptureFixture[str], cluster: Cluster) -> None:
    # n2 may not claim blocks, and strictAffinity is off: it borrows from n1's block.
    cluster.config(autoAllocateBlocks=False)
    assert cluster.pod("n2", "d0", "db-0") == ["10.65.0.5"]
    cluster.ipam("n2").auto_assign(
        "ipip-tunnel-addr-n2", {"type": "ipipTunnelAddress"}, num4=1, num6=0
    )
    code, out, _ = run(capsys, cluster, "ipam", "show", "--show-borrowed")
    assert code == 0
    assert out == (
        "+-----------+----------------+--------------+-------------+-------------------+--------------+\n"
        "|    IP     | BORROWING-NODE |    BLOCK     | BLOCK OWNER |       TYPE        | ALLOCATED-TO |\n"  # noqa: E501
        "+-----------+----------------+--------------+-------------+-------------------+--------------+\n"
        "| 10.65.0.5 | n2             | 10.65.0.0/26 | n1          | pod               | default/db-0 |\n"  # noqa: E501
        "| 10.65.0.6 | n2             | 10.65.0.0/26 | n1          | ipipTunnelAddress |              |\n"  # noqa: E501
        "+-----------+----------------+--------------+-------------+-------------------+--------------+\n"
    )


def test_show_borrowed_counts_allocations_without_a_node(
    capsys: pytest.CaptureFixture[str], cluster: Cluster
) -> None:
    key = "ipam/blocks/10.65.0.0-26"
    block = cluster.store.get(key)
    assert block is not None
    for attribute in block.value["attributes"]:
        attribute["secondary"].pop("node")
    cluster.store.put(key, block.value)
    code, out, _ = run(capsys, cluster, "ipam", "show", "--show-borrowed")
    assert code == 0
    assert out.endswith(
        "\nNote: found 5 IP allocations without an explicit node association. "
        "Unable to determine if they are borrowed.\n"
    )


def test_show_ip_in_use(capsys: pytest.CaptureFixture[str], cluster: Cluster) -> None:
    code, out, _ = run(capsys, cluster, "ipam", "show", "--ip=10.65.0.2")
    assert code == 0
    assert out == (
        "IP 10.65.0.2 is in use\n"
        "Handle ID: k8s-pod-network.c2\n"
        "Attributes:\n"
        "  namespace: default\n"
        "  node: n1\n"
        "  pod: web-2\n"
        f"  timestamp: {STAMP}\n"
    )


def test_show_ip_v6_in_canonical_form(capsys: pytest.CaptureFixture[str], cluster: Cluster) -> None:
    code, out, _ = run(capsys, cluster, "ipam", "show", "--ip", "fd00:0065:0::0")
    assert code == 0
    assert out.splitlines()[:2] == ["IP fd00:65:: is in use", "Handle ID: k8s-pod-network.c0"]


@pytest.mark.parametrize("ip", ["10.65.0.9", "10.65.0.200", "192.0.2.1", "fd00:65::1"])
def test_show_ip_not_assigned(
    capsys: pytest.CaptureFixture[str], cluster: Cluster, ip: str
) -> None:
    code, out, _ = run(capsys, cluster, "ipam", "show", f"--ip={ip}")
    assert (code, out) == (0, f"{ip} is not assigned\n")


def test_show_ip_invalid(capsys: pytest.CaptureFixture[str], cluster: Cluster) -> None:
    code, out, err = run(capsys, cluster, "ipam", "show", "--ip=10.65.0.300")
    assert (code, out, err) == (1, "", "bgpctl: invalid IP address: 10.65.0.300\n")


def test_show_configuration(capsys: pytest.CaptureFixture[str], cluster: Cluster) -> None:
    cluster.config(strictAffinity=True, maxBlocksPerHost=4)
    code, out, _ = run(capsys, cluster, "ipam", "show", "--show-configuration")
    assert code == 0
    assert out == (
        "+--------------------+-------+\n"
        "|      PROPERTY      | VALUE |\n"
        "+--------------------+-------+\n"
        "| StrictAffinity     | true  |\n"
        "| AutoAllocateBlocks | true  |\n"
        "| MaxBlocksPerHost   |     4 |\n"
        "+--------------------+-------+\n"
    )


def test_show_configuration_defaults_without_creating_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    c = Cluster(tmp_path)
    code, out, _ = run(capsys, c, "ipam", "show", "--show-configuration")
    assert code == 0
    assert "| StrictAffinity     | false |" in out
    assert "| AutoAllocateBlocks | true  |" in out
    assert c.store.get("ipam/config") is None


def test_show_options_are_exclusive(capsys: pytest.CaptureFixture[str], cluster: Cluster) -> None:
    code, out, err = run(capsys, cluster, "ipam", "show", "--show-blocks", "--show-borrowed")
    assert (code, out) == (1, "")
    assert err.count("\n") == 1
    assert "not allowed with argument" in err


# -- check ------------------------------------------------------------------------------

CLEAN_CHECK = """\
Checking IPAM for inconsistencies...

Loading all IPAM blocks...
Found 2 IPAM blocks.
 IPAM block 10.65.0.0/26 affinity=host:n1:
 IPAM block fd00:65::/122 affinity=host:n1:
IPAM blocks record 6 allocations.
Found 0 node tunnel and reserved IPs (taken as in use).

Loading all IPAM pools...
  10.65.0.0/24
  fd00:65::/48
Found 2 active IP pools.

Loading all IPAM handles...
Found 5 IPAM handles.

Loading all endpoints...
Found 5 endpoint records (5 ready).
Found 6 endpoint IPs.
Endpoints and nodes are using 6 allocated IPs.

Looking for top (up to 20) nodes by allocations...
  n1 has 6 allocations
Node with most allocations has 6; median is 6

Scanning for IPs that are allocated but not actually in use...
Found 0 IPs that are allocated in IPAM but not actually in use.
Scanning for IPs that are in use by an endpoint but not allocated in IPAM...
Found 0 in-use IPs that are not in active IP pools (IPAM delegated: not counted).
Found 0 in-use IPs that are in active IP pools but have no corresponding IPAM allocation.

Scanning for IPAM handles with no matching IPs...
Found 0 handles with no matching IPs (and 5 handles with matches).
Scanning for IPs with missing handle...
Found 0 handles mentioned in blocks with no matching handle resource.
Scanning for endpoint records left creating by a dead plugin...
Found 0 endpoint records left creating by a dead plugin.
Check complete; found 0 problems.
"""


def test_check_clean(capsys: pytest.CaptureFixture[str], cluster: Cluster) -> None:
    code, out, err = run(capsys, cluster, "ipam", "check")
    assert (code, err) == (0, "")
    assert out == CLEAN_CHECK


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def check(capsys: pytest.CaptureFixture[str], cluster: Cluster, *extra: str) -> list[str]:
    code, out, err = run(capsys, cluster, "ipam", "check", *extra)
    assert (code, err) == (0, "")  # problems are no failure
    return out.splitlines()


def test_check_leaked(capsys: pytest.CaptureFixture[str], cluster: Cluster) -> None:
    cluster.store.delete(endpoint_key("n1", "c3", "eth0"))
    lines = check(capsys, cluster, "--show-problem-ips")
    assert "  10.65.0.3 leaked; handle k8s-pod-network.c3, node n1" in lines
    assert "Found 1 IPs that are allocated in IPAM but not actually in use." in lines
    assert lines[-1] == "Check complete; found 1 problems."


def test_check_leaked_counts_each_address(
    capsys: pytest.CaptureFixture[str], cluster: Cluster
) -> None:
    cluster.store.delete(endpoint_key("n1", "c0", "eth0"))  # dual-stack: two addresses
    lines = check(capsys, cluster)
    assert "Found 2 IPs that are allocated in IPAM but not actually in use." in lines
    assert lines[-1] == "Check complete; found 2 problems."


def test_check_endpoint_on_another_node_holds_its_addresses(
    capsys: pytest.CaptureFixture[str], cluster: Cluster
) -> None:
    # A pod of n2 whose address n2 borrowed: its record is under n2, and counts.
    cluster.config(autoAllocateBlocks=False)
    cluster.pod("n2", "d0", "db-0")
    lines = check(capsys, cluster)
    assert lines[-1] == "Check complete; found 0 problems."
    top = lines.index("Looking for top (up to 20) nodes by allocations...")
    assert lines[top + 1 : top + 4] == [
        "  n1 has 6 allocations",
        "  n2 has 1 allocations",
        "Node with most allocations has 6; median is 1",
    ]


def test_check_legacy_handle_is_in_use(
    capsys: pytest.CaptureFixture[str], cluster: Cluster
) -> None:
    cluster.ipam("n1").auto_assign("default.old-pod", {"pod": "old-pod"}, num4=1, num6=0)
    cluster.record("n1", "e0", "old-pod", ips=[])
    assert check(capsys, cluster)[-1] == "Check complete; found 0 problems."


def test_check_tunnel_addresses_are_in_use(
    capsys: pytest.CaptureFixture[str], cluster: Cluster
) -> None:
    cluster.ipam("n1").auto_assign(
        "ipip-tunnel-addr-n1", {"type": "ipipTunnelAddress"}, num4=1, num6=0
    )
    lines = check(capsys, cluster)
    assert "Found 1 node tunnel and reserved IPs (taken as in use)." in lines
    assert lines[-1] == "Check complete; found 0 problems."


def test_check_missing_handle(capsys: pytest.CaptureFixture[str], cluster: Cluster) -> None:
    cluster.store.delete("ipam/handles/k8s-pod-network.c1")
    lines = check(capsys, cluster, "--show-problem-ips")
    assert "  k8s-pod-network.c1 is in use in a block but doesn't exist." in lines
    assert "Found 1 handles mentioned in blocks with no matching handle resource." in lines
    assert "Found 0 handles with no matching IPs (and 4 handles with matches)." in lines
    assert lines[-1] == "Check complete; found 1 problems."


def test_check_handle_without_addresses(
    capsys: pytest.CaptureFixture[str], cluster: Cluster
) -> None:
    # As a plugin killed between counting the handle up and writing the block leaves it.
    key = "ipam/handles/k8s-pod-network.c2"
    handle = cluster.store.get(key)
    assert handle is not None
    cluster.store.put(key, {**handle.value, "block": {"10.65.0.0/26": 2}})
    lines = check(capsys, cluster, "--show-problem-ips")
    assert (
        "  k8s-pod-network.c2 doesn't have all of its IPs: counts 2 in 10.65.0.0/26, "
        "the block holds 1." in lines
    )
    assert "Found 1 handles with no matching IPs (and 4 handles with matches)." in lines
    assert lines[-1] == "Check complete; found 1 problems."


def test_check_endpoint_without_allocation(
    capsys: pytest.CaptureFixture[str], cluster: Cluster
) -> None:
    cluster.record("n1", "z9", "ghost", ips=["10.65.0.40"])
    lines = check(capsys, cluster, "--show-problem-ips")
    assert (
        "  10.65.0.40 in use by Workload(default/ghost) and in active IPAM pool but has no "
        "IPAM allocation (not allocated)." in lines
    )
    assert (
        "Found 1 in-use IPs that are in active IP pools but have no corresponding IPAM "
        "allocation." in lines
    )
    assert lines[-1] == "Check complete; found 1 problems."


def test_check_endpoint_whose_address_another_handle_holds(
    capsys: pytest.CaptureFixture[str], cluster: Cluster
) -> None:
    cluster.record("n1", "z9", "twin", ips=["10.65.0.1"])
    lines = check(capsys, cluster, "--show-problem-ips")
    assert any("(allocated to handle k8s-pod-network.c1)" in line for line in lines)
    assert lines[-1] == "Check complete; found 1 problems."


def test_check_endpoint_outside_the_pools_is_no_problem(
    capsys: pytest.CaptureFixture[str], cluster: Cluster
) -> None:
    # host-local delegation: the address is none of IPAM's business.
    cluster.record("n1", "h1", "hostlocal", ips=["192.168.7.3"])
    lines = check(capsys, cluster, "--show-problem-ips")
    assert "  192.168.7.3 in use by Workload(default/hostlocal) is not in any active IP pool." in (
        lines
    )
    assert (
        "Found 1 in-use IPs that are not in active IP pools (IPAM delegated: not counted)." in lines
    )
    assert lines[-1] == "Check complete; found 0 problems."


def test_check_creating_by_dead_plugin(
    capsys: pytest.CaptureFixture[str], cluster: Cluster
) -> None:
    pid = dead_pid()
    key = cluster.record("n1", "k1", "starting", state="creating", pid=pid)
    cluster.record("n1", "k2", "busy", state="creating", pid=os.getpid())  # ADD under way
    lines = check(capsys, cluster, "--show-problem-ips")
    assert f"  {key} is creating, but its plugin (pid {pid}) is gone." in lines
    assert "Found 7 endpoint records (2 creating, 5 ready)." in lines
    assert "Found 1 endpoint records left creating by a dead plugin." in lines
    assert lines[-1] == "Check complete; found 1 problems."


def test_check_creating_record_holds_its_addresses(
    capsys: pytest.CaptureFixture[str], cluster: Cluster
) -> None:
    # The plugin died after allocating: one problem (the record), not a leak as well.
    cluster.pod("n1", "k1", "half", state="creating", pid=dead_pid())
    lines = check(capsys, cluster)
    assert "Found 0 IPs that are allocated in IPAM but not actually in use." in lines
    assert lines[-1] == "Check complete; found 1 problems."


def test_check_show_all_ips(capsys: pytest.CaptureFixture[str], cluster: Cluster) -> None:
    lines = check(capsys, cluster, "--show-all-ips")
    assert (
        "  10.65.0.1 allocated; attrs Main:k8s-pod-network.c1 Extra:namespace=default,"
        f"node=n1,pod=web-1,timestamp={STAMP}" in lines
    )
    assert "  10.65.0.1 belongs to Workload(default/web-1)" in lines
    assert "  fd00:65:: belongs to Workload(default/web-0)" in lines


def inject_every_problem(cluster: Cluster) -> None:
    cluster.store.delete(endpoint_key("n1", "c3", "eth0"))  # leaked 10.65.0.3
    cluster.store.delete("ipam/handles/k8s-pod-network.c1")  # missing handle
    key = "ipam/handles/k8s-pod-network.c2"
    handle = cluster.store.get(key)
    assert handle is not None
    cluster.store.put(key, {**handle.value, "block": {"10.65.0.0/26": 3}})  # short handle
    cluster.record("n1", "z9", "ghost", ips=["10.65.0.40"])  # endpoint without allocation
    cluster.record("n2", "k1", "starting", state="creating", pid=dead_pid())


def test_check_every_problem_and_report(
    capsys: pytest.CaptureFixture[str], cluster: Cluster, tmp_path: Path
) -> None:
    inject_every_problem(cluster)
    report_path = tmp_path / "report.json"
    lines = check(capsys, cluster, "-o", str(report_path))
    assert lines[-1] == "Check complete; found 5 problems."
    report = json.loads(report_path.read_text())
    assert report["version"].startswith("bgpctl ")
    assert report["datastoreLocked"] is False
    assert report["datastoreRevision"] == cluster.store.revision()
    problems = {p["kind"]: p for p in report["problems"]}
    assert len(report["problems"]) == 5
    assert problems["leaked"] == {
        "kind": "leaked", "ip": "10.65.0.3", "handle": "k8s-pod-network.c3", "node": "n1",
        "block": "10.65.0.0/26", "detail": "allocated, but no endpoint record names its handle",
    }  # fmt: skip
    assert problems["missing-handle"] == {
        "kind": "missing-handle", "ip": None, "handle": "k8s-pod-network.c1", "node": "n1",
        "block": "10.65.0.0/26", "detail": "1 IPs in 10.65.0.0/26 name it",
    }  # fmt: skip
    assert problems["handle-without-addresses"] == {
        "kind": "handle-without-addresses", "ip": None, "handle": "k8s-pod-network.c2",
        "node": "n1", "block": "10.65.0.0/26",
        "detail": "counts 3 in 10.65.0.0/26, the block holds 1",
    }  # fmt: skip
    assert problems["endpoint-without-allocation"] == {
        "kind": "endpoint-without-allocation", "ip": "10.65.0.40",
        "handle": "k8s-pod-network.z9", "node": "n1", "block": "10.65.0.0/26",
        "detail": "in use by Workload(default/ghost), not allocated",
    }  # fmt: skip
    creating = problems["creating-by-dead-plugin"]
    assert (creating["handle"], creating["node"], creating["ip"]) == (
        "k8s-pod-network.k1", "n2", None,
    )  # fmt: skip
    # calicoctl's map of allocations rides along.
    assert report["allocations"]["10.65.0.3"][0]["inUse"] is False
    assert report["allocations"]["10.65.0.2"][0] == {
        "ip": "10.65.0.2", "block": "10.65.0.0/26", "handle": "k8s-pod-network.c2",
        "node": "n1", "pod": "web-2", "namespace": "default", "creationTimestamp": STAMP,
        "inUse": True, "borrowed": False, "owners": ["Workload(default/web-2)"],
    }  # fmt: skip


def test_check_report_unwritable(
    capsys: pytest.CaptureFixture[str], cluster: Cluster, tmp_path: Path
) -> None:
    code, out, err = run(capsys, cluster, "ipam", "check", "-o", str(tmp_path / "no" / "r.json"))
    assert code == 1
    assert out.endswith("Check complete; found 0 problems.\n")
    assert err.startswith("bgpctl: report ") and err.count("\n") == 1


# -- release ----------------------------------------------------------------------------


def test_release_ip(capsys: pytest.CaptureFixture[str], cluster: Cluster) -> None:
    code, out, err = run(capsys, cluster, "ipam", "release", "--ip=10.65.0.4")
    assert (code, out, err) == (0, "Successfully released IP address 10.65.0.4\n", "")
    assert run(capsys, cluster, "ipam", "show", "--ip=10.65.0.4")[1] == (
        "10.65.0.4 is not assigned\n"
    )
    # The handle lost its address with it: no handle counts what the block lacks.
    assert cluster.store.get("ipam/handles/k8s-pod-network.c4") is None
    assert (cluster.state / "locks" / "ipam-n1.lock").exists()


def test_release_ip_not_assigned(capsys: pytest.CaptureFixture[str], cluster: Cluster) -> None:
    code, out, err = run(capsys, cluster, "ipam", "release", "--ip", "10.65.0.50")
    assert (code, out, err) == (1, "", "bgpctl: IP address 10.65.0.50 is not assigned\n")


def test_release_needs_ip_or_report(capsys: pytest.CaptureFixture[str], cluster: Cluster) -> None:
    code, _, err = run(capsys, cluster, "ipam", "release")
    assert code == 1
    assert "one of the arguments --ip --from-report is required" in err


def make_report(capsys: pytest.CaptureFixture[str], cluster: Cluster, path: Path) -> dict[str, Any]:
    check(capsys, cluster, "-o", str(path))
    report: dict[str, Any] = json.loads(path.read_text())
    return report


def test_release_from_report_needs_force(
    capsys: pytest.CaptureFixture[str], cluster: Cluster, tmp_path: Path
) -> None:
    cluster.store.delete(endpoint_key("n1", "c3", "eth0"))
    report = tmp_path / "r.json"
    make_report(capsys, cluster, report)
    code, out, err = run(capsys, cluster, "ipam", "release", f"--from-report={report}")
    assert (code, out) == (1, "")
    assert err.startswith("bgpctl: bgpd cannot lock its datastore")
    assert "--force" in err and err.count("\n") == 1
    assert "is in use" in run(capsys, cluster, "ipam", "show", "--ip=10.65.0.3")[1]


def test_release_from_report_with_force(
    capsys: pytest.CaptureFixture[str], cluster: Cluster, tmp_path: Path
) -> None:
    inject_every_problem(cluster)
    report = tmp_path / "r.json"
    make_report(capsys, cluster, report)
    code, out, err = run(
        capsys, cluster, "ipam", "release", "--from-report", str(report), "--force"
    )
    assert (code, err) == (0, "")
    assert out == (
        "WARNING: Data store is not locked (bgpd has no lock). Releasing with --force; "
        "each address is checked again first.\n"
        "Releasing 1 old IPs\n"
        "Released 1 IPs successfully\n"
    )
    lines = check(capsys, cluster)
    assert "Found 0 IPs that are allocated in IPAM but not actually in use." in lines
    assert lines[-1] == "Check complete; found 4 problems."  # the others are not releases
    # A second run finds the address gone and leaves everything alone.
    code, out, _ = run(capsys, cluster, "ipam", "release", "--from-report", str(report), "--force")
    assert code == 0
    assert out.splitlines()[1:] == [
        "Skipping 10.65.0.3: no longer allocated.",
        "No addresses need to be released.",
    ]


def test_release_from_report_rechecks_each_address(
    capsys: pytest.CaptureFixture[str], cluster: Cluster, tmp_path: Path
) -> None:
    for cid in ("c1", "c2", "c3"):
        cluster.store.delete(endpoint_key("n1", cid, "eth0"))
    report = tmp_path / "r.json"
    assert len(make_report(capsys, cluster, report)["problems"]) == 3
    # Since the report: c1's record came back; c2's address went and a new pod got it.
    cluster.record("n1", "c1", "web-1", ips=["10.65.0.1"])
    cluster.ipam("n1").release_handle("k8s-pod-network.c2")
    block = cluster.store.get("ipam/blocks/10.65.0.0-26")
    assert block is not None
    ordinal = 2
    block.value["unallocated"].remove(ordinal)
    block.value["unallocated"].insert(0, ordinal)
    cluster.store.put(block.key, block.value)
    assert cluster.pod("n1", "c9", "new") == ["10.65.0.2"]
    code, out, _ = run(capsys, cluster, "ipam", "release", "--from-report", str(report), "--force")
    assert code == 0
    assert out.splitlines()[1:] == [
        "Skipping 10.65.0.2: now allocated to handle k8s-pod-network.c9.",
        "Skipping 10.65.0.1: an endpoint record names handle k8s-pod-network.c1 now.",
        "Releasing 1 old IPs",
        "Released 1 IPs successfully",
    ]
    assert "is in use" in run(capsys, cluster, "ipam", "show", "--ip=10.65.0.1")[1]
    assert "is in use" in run(capsys, cluster, "ipam", "show", "--ip=10.65.0.2")[1]
    assert show_ip(capsys, cluster, "10.65.0.3") == "10.65.0.3 is not assigned\n"


def test_release_from_several_reports_takes_the_common_leaks(
    capsys: pytest.CaptureFixture[str], cluster: Cluster, tmp_path: Path
) -> None:
    cluster.store.delete(endpoint_key("n1", "c3", "eth0"))
    first = tmp_path / "first.json"
    make_report(capsys, cluster, first)
    cluster.store.delete(endpoint_key("n1", "c4", "eth0"))
    second = tmp_path / "second.json"
    make_report(capsys, cluster, second)
    code, out, _ = run(
        capsys, cluster, "ipam", "release", "--from-report", str(first),
        "--from-report", str(second), "--force",
    )  # fmt: skip
    assert code == 0
    assert "Released 1 IPs successfully" in out
    assert show_ip(capsys, cluster, "10.65.0.3") == "10.65.0.3 is not assigned\n"
    assert "is in use" in run(capsys, cluster, "ipam", "show", "--ip=10.65.0.4")[1]


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "not JSON"), ('{"problems": [{"kind": "odd"}]}', "not a bgpctl ipam check")],
)
def test_release_from_a_bad_report(
    capsys: pytest.CaptureFixture[str], cluster: Cluster, tmp_path: Path, content: str,
    message: str,
) -> None:  # fmt: skip
    path = tmp_path / "bad.json"
    path.write_text(content)
    code, out, err = run(capsys, cluster, "ipam", "release", f"--from-report={path}", "--force")
    assert (code, out) == (1, "")
    assert message in err and err.count("\n") == 1


def test_release_from_a_missing_report(
    capsys: pytest.CaptureFixture[str], cluster: Cluster, tmp_path: Path
) -> None:
    code, _, err = run(
        capsys, cluster, "ipam", "release", f"--from-report={tmp_path}/none.json", "--force"
    )
    assert code == 1
    assert err == f"bgpctl: report {tmp_path}/none.json: No such file or directory\n"


# -- the command line itself ----------------------------------------------------------------


def test_missing_datastore_is_an_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["--state-dir", str(tmp_path / "nowhere"), "ipam", "show"])
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert (
        err == f"bgpctl: no datastore at {tmp_path}/nowhere/store (set --state-dir or "
        "BGPD_STATE_DIR, or --datastore etcd)\n"
    )
    assert not (tmp_path / "nowhere").exists()


def test_global_options_after_the_command(
    capsys: pytest.CaptureFixture[str], cluster: Cluster
) -> None:
    code = main(["ipam", "show", "--ip=10.65.0.1", "--state-dir", str(cluster.state)])
    assert code == 0
    assert capsys.readouterr().out.startswith("IP 10.65.0.1 is in use\n")


def test_state_dir_from_the_environment(
    capsys: pytest.CaptureFixture[str], cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BGPD_STATE_DIR", str(cluster.state))
    assert main(["ipam", "show"]) == 0
    assert "10.65.0.0/24" in capsys.readouterr().out


def test_node_name_defaults(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    state = str(cluster.state)
    assert default_node_name(state) == os.uname().nodename
    (cluster.state / "nodename").write_text("written-node\n")
    assert default_node_name(state) == "written-node"
    monkeypatch.setenv("NODENAME", "env-node")
    assert default_node_name(state) == "env-node"


def test_release_takes_the_named_nodes_lock(
    capsys: pytest.CaptureFixture[str], cluster: Cluster
) -> None:
    code = main(["--state-dir", str(cluster.state), "--node-name", "nx", "ipam", "release",
                 "--ip=10.65.0.1"])  # fmt: skip
    assert code == 0
    capsys.readouterr()
    assert (cluster.state / "locks" / "ipam-nx.lock").exists()


@pytest.mark.parametrize(
    "argv", [[], ["ipam"], ["nonsense"], ["ipam", "show", "--bogus"], ["ipam", "frob"]]
)
def test_usage_errors_exit_1_with_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("bgpctl") and err.count("\n") == 1


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ipam", "release", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--from-report" in out and "--force" in out


def test_installed_script(cluster: Cluster) -> None:
    script = Path(sys.executable).parent / "bgpctl"
    assert script.exists(), "pip install -e . makes it"
    env = {**os.environ, "BGPD_STATE_DIR": str(cluster.state), "NODENAME": "n1"}
    done = subprocess.run(
        [str(script), "ipam", "show", "--ip=10.65.0.1"], env=env, capture_output=True,
        text=True, check=False, timeout=60,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith("IP 10.65.0.1 is in use\nHandle ID: k8s-pod-network.c1\n")
    done = subprocess.run(
        [str(script), "ipam", "release", "--ip=10.65.0.99"], env=env, capture_output=True,
        text=True, check=False, timeout=60,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == "bgpctl: IP address 10.65.0.99 is not assigned\n"


def test_configure_changes_and_checks_ipam_config(tmp_path: Path, capsys: Any) -> None:
    ctl = main
    store = DirectoryStore(str(tmp_path / "store"))
    base = ["--state-dir", str(tmp_path), "--node-name", "n1", "ipam", "configure"]
    assert ctl([*base, "--strictaffinity", "true", "--max-blocks-per-host", "4"]) == 0
    assert "| MaxBlocksPerHost   |     4 |" in capsys.readouterr().out
    record = store.get("ipam/config")
    assert record is not None
    assert record.value == {
        "strictAffinity": True, "autoAllocateBlocks": True, "maxBlocksPerHost": 4
    }
    assert ctl([*base, "--strictaffinity", "false"]) == 1
    assert "requires strictAffinity" in capsys.readouterr().err
    assert ctl([*base, "--max-blocks-per-host", "0", "--strictaffinity", "false",
                "--autoallocateblocks", "false"]) == 1  # fmt: skip
    assert "cannot both be false" in capsys.readouterr().err
    after = store.get("ipam/config")
    assert after is not None and after.revision == record.revision
