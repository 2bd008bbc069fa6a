"""``bgpctl apply|create|replace|delete|get`` end to end: files in, a real state
directory, calicoctl's output compared as text; a bad document anywhere in a
file changes nothing; once as a subprocess and once as the installed script."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bgpd.ctl.main import main
from bgpd.datastore.directory import DirectoryStore
from bgpd.ipam import allocator
from bgpd.ipam.allocator import Ipam
from bgpd.resources import store as resources

RR_TRIO = """\
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: node1, labels: {route-reflector: "true"}}
spec: {bgp: {ipv4Address: 198.18.0.1/24, routeReflectorClusterID: 1.1.1.1}}
---
kind: BGPPeer
apiVersion: projectcalico.org/v3
metadata: {name: peer-with-route-reflectors}
spec: {nodeSelector: all(), peerSelector: route-reflector == "true"}
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {logSeverityScreen: Info, nodeToNodeMeshEnabled: false, asNumber: 63400}
"""

POOLS = """\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: default-ipv4-ippool
spec:
  cidr: 192.168.0.0/16
  ipipMode: Always
  natOutgoing: true
  nodeSelector: all()
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: edge-v6
spec:
  cidr: fd00:65::/48
  vxlanMode: CrossSubnet
  nodeSelector: zone == "edge"
  disabled: true
"""

TOR_PEER = """\
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: rack1-tor
spec:
  peerIP: 192.20.30.40
  asNumber: 64567
  nodeSelector: rack == 'rack-1'
  password:
    secretKeyRef: {name: bgp-secrets, key: rr-password}
"""


class Ctl:
    """bgpctl run in-process against one state directory."""

    def __init__(self, state: Path, capsys: Any) -> None:
        self.state = state
        self.capsys = capsys
        self.store = DirectoryStore(str(state / "store"))

    def file(self, name: str, text: str) -> str:
        path = self.state / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return str(path)

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        status = main(["--state-dir", str(self.state), "--node-name", "node1", *argv])
        out, err = self.capsys.readouterr()
        return status, out, err

    def ok(self, *argv: str) -> str:
        status, out, err = self(*argv)
        assert (status, err) == (0, ""), err
        return out

    def keys(self) -> list[str]:
        return self.store.keys("")


@pytest.fixture
def ctl(tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch) -> Ctl:
    monkeypatch.setattr(resources, "_now", lambda: "2024-05-01T12:00:00Z")
    monkeypatch.setattr(resources, "_uid", lambda: "00000000-0000-4000-8000-000000000001")
    monkeypatch.setattr(allocator, "_random_below", lambda n: 0)
    monkeypatch.delenv("BGPD_STATE_DIR", raising=False)
    return Ctl(tmp_path, capsys)


# -- apply -----------------------------------------------------------------------------------


def test_route_reflector_trio_applies_unchanged(ctl: Ctl) -> None:
    path = ctl.file("rr.yaml", RR_TRIO)
    assert ctl.ok("apply", "-f", path) == "Successfully applied 3 resource(s)\n"
    assert ctl.keys() == ["resources/bgpconfigurations/default",
                          "resources/bgppeers/peer-with-route-reflectors",
                          "resources/nodes/node1"]  # fmt: skip
    node = ctl.store.get("resources/nodes/node1")
    assert node is not None and node.value["metadata"]["labels"] == {"route-reflector": "true"}
    assert node.value["spec"] == {"bgp": {"ipv4Address": "198.18.0.1/24",
                                          "routeReflectorClusterID": "1.1.1.1"}}  # fmt: skip
    # Applying again replaces: same objects, nothing added.
    assert ctl.ok("apply", "-f", path) == "Successfully applied 3 resource(s)\n"
    assert len(ctl.keys()) == 3


def test_one_kind_is_named(ctl: Ctl) -> None:
    out = ctl.ok("apply", "-f", ctl.file("pools.yaml", POOLS))
    assert out == "Successfully applied 2 'IPPool' resource(s)\n"


def test_a_bad_document_changes_nothing(ctl: Ctl) -> None:
    ctl.ok("apply", "-f", ctl.file("first.yaml", TOR_PEER))
    before = (ctl.keys(), ctl.store.revision())
    pools = POOLS.replace("natOutgoing: true", "natOutgoing: true\n  blockSize: 33")
    bad = RR_TRIO + "---\n" + pools
    status, out, err = ctl("apply", "-f", ctl.file("bad.yaml", bad))
    assert (status, out) == (1, "")
    assert err == (
        f"Failed to apply any resources: {ctl.state}/bad.yaml document 4: "
        'IPPool "default-ipv4-ippool": spec.blockSize: 33 is outside 20-32\n'
    )
    assert (ctl.keys(), ctl.store.revision()) == before


def test_a_single_bad_document(ctl: Ctl) -> None:
    status, _, err = ctl("apply", "-f", ctl.file("p.yaml", POOLS.split("---")[1]
                                                 .replace("CrossSubnet", "Sometimes")))
    assert status == 1
    assert err == ("Failed to apply 'IPPool' resource: IPPool \"edge-v6\": spec.vxlanMode: "
                   "'Sometimes' is not 'Always', 'CrossSubnet' or 'Never'\n")  # fmt: skip
    assert ctl.keys() == []


def test_a_document_refused_by_the_datastore_changes_nothing(ctl: Ctl) -> None:
    """Valid on its own, but overlapping a pool written earlier in the same file."""
    overlapping = POOLS + """---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: inner}
spec: {cidr: 192.168.128.0/17}
"""
    status, _, err = ctl("apply", "-f", ctl.file("o.yaml", overlapping))
    assert status == 1
    assert err == (
        f"Failed to apply any 'IPPool' resources: {ctl.state}/o.yaml document 3: "
        "IPPool \"inner\": spec.cidr: 192.168.128.0/17 overlaps IPPool "
        "'default-ipv4-ippool' (192.168.0.0/16)\n"
    )
    assert ctl.keys() == []


def test_unknown_field_is_refused(ctl: Ctl) -> None:
    status, _, err = ctl("apply", "-f", ctl.file("p.yaml", TOR_PEER + "  ttlsecurity: 2\n"))
    assert status == 1
    assert err.endswith('BGPPeer "rack1-tor": spec.ttlsecurity: unknown field\n')


def test_from_stdin(ctl: Ctl, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(TOR_PEER))
    assert ctl.ok("apply", "-f", "-") == "Successfully applied 1 'BGPPeer' resource(s)\n"


def test_json_file(ctl: Ctl) -> None:
    doc = yaml.safe_load(TOR_PEER)
    assert ctl.ok("apply", "-f", ctl.file("p.json", json.dumps(doc, indent=2))) == (
        "Successfully applied 1 'BGPPeer' resource(s)\n"
    )
    status, _, err = ctl("apply", "-f", ctl.file("bad.json", '{"kind": "IPPool", "kind": 1}'))
    assert status == 1 and "key 'kind' is given twice" in err


def test_a_folder_and_recursion(ctl: Ctl) -> None:
    ctl.file("conf/10-pools.yaml", POOLS)
    ctl.file("conf/20-peer.yml", TOR_PEER)
    ctl.file("conf/notes.txt", "not a resource")
    ctl.file("conf/sub/30-rr.json", json.dumps(list(yaml.safe_load_all(RR_TRIO))))
    assert ctl.ok("apply", "-f", str(ctl.state / "conf")) == "Successfully applied 3 resource(s)\n"
    assert ctl.ok("apply", "-R", "-f", str(ctl.state / "conf")) == (
        "Successfully applied 6 resource(s)\n"
    )


def test_lists_in_a_file(ctl: Ctl) -> None:
    listed = {"apiVersion": "v1", "kind": "List", "items": list(yaml.safe_load_all(POOLS))}
    assert ctl.ok("apply", "-f", ctl.file("l.yaml", yaml.safe_dump(listed))) == (
        "Successfully applied 2 'IPPool' resource(s)\n"
    )
    listed["items"][1]["spec"]["cidr"] = "fd00:65::1/48"
    status, _, err = ctl("apply", "-f", ctl.file("bad.yaml", yaml.safe_dump(listed)))
    assert status == 1
    assert err == ("Failed to apply any 'IPPool' resources: IPPool \"edge-v6\" (items[1]): "
                   "spec.cidr: 'fd00:65::1/48' is not strictly masked (host bits set; "
                   "fd00:65::/48?)\n")  # fmt: skip


def test_empty_files(ctl: Ctl) -> None:
    path = ctl.file("empty.yaml", "---\n# nothing\n")
    assert ctl("apply", "-f", path) == (1, "", f"No resources specified in file {path}\n")
    assert ctl.ok("apply", "--skip-empty", "-f", path) == "No resources specified\n"
    (ctl.state / "none").mkdir()
    status, _, err = ctl("apply", "-f", str(ctl.state / "none"))
    assert status == 1 and "No resources specified in directory" in err


def test_missing_file_and_bad_yaml(ctl: Ctl) -> None:
    status, _, err = ctl("apply", "-f", str(ctl.state / "nope.yaml"))
    assert status == 1 and err.startswith("Failed to execute command: ")
    assert "No such file or directory" in err
    status, _, err = ctl("apply", "-f", ctl.file("bad.yaml", "kind: [IPPool\n"))
    assert status == 1 and err.startswith("Failed to execute command: invalid YAML")


def test_yaml_is_read_as_calicos_go_yaml(ctl: Ctl) -> None:
    """64512:50 is a string (PyYAML alone would make it the base-60 number 3870770),
    a timestamp stays text, and a key given twice is an error."""
    config = """\
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default, creationTimestamp: 2024-05-01T12:00:00Z}
spec:
  communities: [{name: mine, value: 64512:50}]
  prefixAdvertisements: [{cidr: 10.0.0.0/8, communities: [mine, 64512:51]}]
"""
    ctl.ok("apply", "-f", ctl.file("c.yaml", config))
    record = ctl.store.get("resources/bgpconfigurations/default")
    assert record is not None
    assert record.value["spec"]["communities"] == [{"name": "mine", "value": "64512:50"}]
    assert record.value["metadata"]["creationTimestamp"] == "2024-05-01T12:00:00Z"
    status, _, err = ctl("apply", "-f", ctl.file("d.yaml", TOR_PEER + "  asNumber: 1\n"))
    assert status == 1 and "key 'asNumber' is given twice" in err


def test_an_applied_node_keeps_the_status_the_agent_wrote(ctl: Ctl) -> None:
    ctl.store.put("resources/nodes/node1", {
        "apiVersion": "projectcalico.org/v3", "kind": "Node", "metadata": {"name": "node1"},
        "spec": {"bgp": {"ipv4Address": "198.18.0.1/24"}},
        "status": {"podCIDRs": ["10.244.1.0/24"]},
    })  # fmt: skip
    ctl.ok("apply", "-f", ctl.file("rr.yaml", RR_TRIO))
    record = ctl.store.get("resources/nodes/node1")
    assert record is not None
    assert record.value["status"] == {"podCIDRs": ["10.244.1.0/24"]}
    assert record.value["spec"]["bgp"]["routeReflectorClusterID"] == "1.1.1.1"
    assert Ipam(ctl.store, "node1").node_labels() == {"route-reflector": "true"}


def test_a_pool_in_use_keeps_its_cidr_and_block_size(ctl: Ctl) -> None:
    ctl.ok("apply", "-f", ctl.file("pools.yaml", POOLS))
    Ipam(ctl.store, "node1").auto_assign("k8s-pod-network.c1", {}, num4=1, num6=0)
    first = POOLS.split("---", maxsplit=1)[0]
    wider = first.replace("192.168.0.0/16", "192.168.0.0/15")
    status, _, err = ctl("apply", "-f", ctl.file("wider.yaml", wider))
    assert status == 1
    assert err.endswith("spec.cidr: cannot change the CIDR of a pool in use "
                        "(192.168.0.0/16 has allocated blocks)\n")  # fmt: skip
    status, _, err = ctl("apply", "-f", ctl.file("p2.yaml", first + "  blockSize: 24\n"))
    assert status == 1
    assert err == ("Failed to apply 'IPPool' resource: IPPool \"default-ipv4-ippool\": "
                   "spec.blockSize: cannot change the block size of a pool in use "
                   "(/26 blocks are allocated)\n")  # fmt: skip
    assert ctl.ok("delete", "ippool", "default-ipv4-ippool").startswith("Successfully deleted 1")


# -- create, replace, delete -----------------------------------------------------------------


def test_create(ctl: Ctl) -> None:
    path = ctl.file("p.yaml", TOR_PEER)
    assert ctl.ok("create", "-f", path) == "Successfully created 1 'BGPPeer' resource(s)\n"
    assert ctl("create", "-f", path) == (
        1, "", "Failed to create 'BGPPeer' resource: resource already exists: BGPPeer(rack1-tor)\n"
    )
    assert ctl.ok("create", "--skip-exists", "-f", path) == (
        "Successfully created 1 'BGPPeer' resource(s)\n"
    )


def test_create_with_one_existing_changes_nothing(ctl: Ctl) -> None:
    ctl.ok("create", "-f", ctl.file("p.yaml", TOR_PEER))
    revision = ctl.store.revision()
    status, _, err = ctl("create", "-f", ctl.file("rr.yaml", RR_TRIO + "---\n" + TOR_PEER))
    assert status == 1
    assert err == (f"Failed to create any resources: {ctl.state}/rr.yaml document 4: "
                   "resource already exists: BGPPeer(rack1-tor)\n")  # fmt: skip
    assert ctl.store.revision() == revision


def test_replace(ctl: Ctl) -> None:
    path = ctl.file("p.yaml", TOR_PEER)
    assert ctl("replace", "-f", path) == (
        1, "", "Failed to replace 'BGPPeer' resource: resource does not exist: BGPPeer(rack1-tor)\n"
    )
    ctl.ok("create", "-f", path)
    ctl.ok("replace", "-f", ctl.file("q.yaml", TOR_PEER.replace("64567", "64568")))
    record = ctl.store.get("resources/bgppeers/rack1-tor")
    assert record is not None and record.value["spec"]["asNumber"] == 64568


def test_replace_honours_resource_version(ctl: Ctl) -> None:
    ctl.ok("create", "-f", ctl.file("p.yaml", TOR_PEER))
    exported = ctl.ok("get", "bgppeer", "rack1-tor", "-o", "yaml")
    ctl.ok("replace", "-f", ctl.file("q.yaml", TOR_PEER.replace("64567", "64568")))
    stale = exported.replace("64567", "64569")
    status, _, err = ctl("replace", "-f", ctl.file("stale.yaml", stale))
    assert status == 1 and "update conflict: BGPPeer(rack1-tor)" in err
    fresh = ctl.ok("get", "bgppeer", "rack1-tor", "-o", "yaml").replace("64568", "64569")
    ctl.ok("replace", "-f", ctl.file("fresh.yaml", fresh))


def test_delete(ctl: Ctl) -> None:
    ctl.ok("apply", "-f", ctl.file("pools.yaml", POOLS))
    assert ctl.ok("delete", "ippool", "edge-v6") == "Successfully deleted 1 'IPPool' resource(s)\n"
    assert ctl("delete", "pool", "edge-v6") == (
        1, "", "Failed to delete 'IPPool' resource: resource does not exist: IPPool(edge-v6)\n"
    )
    assert ctl.ok("delete", "pools", "edge-v6", "--skip-not-exists") == (
        "Successfully deleted 1 'IPPool' resource(s)\n"
    )
    assert ctl.keys() == ["resources/ippools/default-ipv4-ippool"]


def test_delete_from_a_file_is_all_or_nothing(ctl: Ctl) -> None:
    path = ctl.file("all.yaml", RR_TRIO + "---\n" + POOLS)
    ctl.ok("apply", "-f", path)
    ctl.ok("delete", "ippool", "edge-v6")
    status, _, err = ctl("delete", "-f", path)
    assert status == 1 and "resource does not exist: IPPool(edge-v6)" in err
    assert len(ctl.keys()) == 4
    assert ctl.ok("delete", "--skip-not-exists", "-f", path) == (
        "Successfully deleted 5 resource(s)\n"
    )
    assert ctl.keys() == []


def test_delete_usage(ctl: Ctl) -> None:
    assert ctl("delete", "ippool")[0] == 1
    assert ctl("delete", "widget", "x") == (1, "", "resource type 'widget' is not supported\n")
    assert ctl("delete", "ippool", "")[2] == "resource name may not be empty\n"


# -- get -------------------------------------------------------------------------------------


def test_get_tables(ctl: Ctl) -> None:
    ctl.ok("apply", "-f", ctl.file("all.yaml", RR_TRIO + "---\n" + POOLS + "---\n" + TOR_PEER))
    # Go's tabwriter: each column as wide as its widest cell plus 3, trailing spaces
    # included, and a blank line after the table.
    assert ctl.ok("get", "ippool") == (
        "NAME                  CIDR             SELECTOR         \n"
        "default-ipv4-ippool   192.168.0.0/16   all()            \n"
        'edge-v6               fd00:65::/48     zone == "edge"   \n'
        "\n"
    )
    assert ctl.ok("get", "ippools", "-o", "wide") == (
        "NAME                  CIDR             NAT     IPIPMODE   VXLANMODE     DISABLED   "
        "DISABLEBGPEXPORT   SELECTOR         \n"
        "default-ipv4-ippool   192.168.0.0/16   true    Always     Never         false      "
        "false              all()            \n"
        "edge-v6               fd00:65::/48     false   Never      CrossSubnet   true       "
        "false              zone == \"edge\"   \n"
        "\n"
    )
    assert ctl.ok("get", "bgppeers") == (
        "NAME                         PEERIP         NODE               ASN     \n"
        "peer-with-route-reflectors                  all()              0       \n"
        "rack1-tor                    192.20.30.40   rack == 'rack-1'   64567   \n"
        "\n"
    )
    assert ctl.ok("get", "nodes") == "NAME    \nnode1   \n\n"
    assert ctl.ok("get", "no", "-o", "wide") == (
        "NAME    ASN       IPV4            IPV6   \n"
        "node1   (63400)   198.18.0.1/24          \n"
        "\n"
    )
    assert ctl.ok("get", "bgpconfig") == (
        "NAME      LOGSEVERITY   MESHENABLED   ASNUMBER   \n"
        "default   Info          false         63400      \n"
        "\n"
    )


def test_get_names_prints_a_table_each(ctl: Ctl) -> None:
    ctl.ok("apply", "-f", ctl.file("pools.yaml", POOLS))
    out = ctl.ok("get", "ippool", "edge-v6", "default-ipv4-ippool")
    assert out.count("NAME") == 2 and out.index("edge-v6") < out.index("default-ipv4-ippool")
    assert ctl("get", "ippool", "nope") == (1, "", "resource does not exist: IPPool(nope)\n")
    assert ctl("get", "widgets") == (1, "", "resource type 'widgets' is not supported\n")


def test_get_yaml_as_calicoctl_shows_it(ctl: Ctl) -> None:
    ctl.ok("apply", "-f", ctl.file("pools.yaml", POOLS.split("---", maxsplit=1)[0]))
    revision = ctl.store.revision()
    assert ctl.ok("get", "ippool", "default-ipv4-ippool", "-o", "yaml") == f"""\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  creationTimestamp: "2024-05-01T12:00:00Z"
  name: default-ipv4-ippool
  resourceVersion: "{revision}"
  uid: 00000000-0000-4000-8000-000000000001
spec:
  allowedUses:
  - Workload
  - Tunnel
  assignmentMode: Automatic
  blockSize: 26
  cidr: 192.168.0.0/16
  ipipMode: Always
  natOutgoing: true
  nodeSelector: all()
  vxlanMode: Never
"""
    listed = yaml.safe_load(ctl.ok("get", "ippool", "-o", "yaml"))
    assert listed["kind"] == "IPPoolList"
    assert listed["metadata"] == {"resourceVersion": str(revision)}
    assert [i["metadata"]["name"] for i in listed["items"]] == ["default-ipv4-ippool"]


def test_get_json_and_names(ctl: Ctl) -> None:
    ctl.ok("apply", "-f", ctl.file("pools.yaml", POOLS))
    shown = json.loads(ctl.ok("get", "ippool", "edge-v6", "-o", "json"))
    assert list(shown) == ["kind", "apiVersion", "metadata", "spec"]
    assert shown["spec"]["disabled"] is True
    assert ctl.ok("get", "ippool", "-o", "name") == (
        "ippool.projectcalico.org/default-ipv4-ippool\nippool.projectcalico.org/edge-v6\n"
    )


def test_what_get_exports_applies_unchanged(ctl: Ctl) -> None:
    """The round trip an operator makes: get -o yaml > file, edit, apply -f file."""
    ctl.ok("apply", "-f", ctl.file("all.yaml", RR_TRIO + "---\n" + POOLS + "---\n" + TOR_PEER))
    for kind in ("ippool", "bgppeer", "node", "bgpconfig"):
        exported = ctl.ok("get", kind, "-o", "yaml")
        before = json.loads(ctl.ok("get", kind, "-o", "json"))
        assert ctl.ok("apply", "-f", ctl.file(f"{kind}.yaml", exported)).startswith("Successfully")
        after = json.loads(ctl.ok("get", kind, "-o", "json"))
        versions = [(b["metadata"].pop("resourceVersion"), a["metadata"].pop("resourceVersion"))
                    for b, a in zip(before["items"], after["items"], strict=True)]  # fmt: skip
        assert after["items"] == before["items"]
        assert all(int(new) > int(old) for old, new in versions)


def test_ipam_config(ctl: Ctl) -> None:
    ctl.file("ipam.yaml", """\
apiVersion: projectcalico.org/v3
kind: IPAMConfig
metadata: {name: default}
spec: {strictAffinity: true, maxBlocksPerHost: 8}
""")
    assert ctl.ok("apply", "-f", str(ctl.state / "ipam.yaml")) == (
        "Successfully applied 1 'IPAMConfig' resource(s)\n"
    )
    assert ctl.ok("get", "ipamconfig", "-o", "wide") == (
        "NAME      STRICTAFFINITY   AUTOALLOCATEBLOCKS   MAXBLOCKSPERHOST   \n"
        "default   true             true                 8                  \n"
        "\n"
    )
    assert "| MaxBlocksPerHost   |     8 |" in ctl.ok("ipam", "show", "--show-configuration")
    ctl.ok("ipam", "configure", "--max-blocks-per-host", "2")
    assert yaml.safe_load(ctl.ok("get", "ipamconfigs", "default", "-o", "yaml"))["spec"] == {
        "strictAffinity": True, "autoAllocateBlocks": True, "maxBlocksPerHost": 2,
    }  # fmt: skip


def test_no_datastore(tmp_path: Path, capsys: Any) -> None:
    assert main(["--state-dir", str(tmp_path / "nowhere"), "get", "ippool"]) == 1
    assert "no datastore at" in capsys.readouterr().err


# -- as a process ----------------------------------------------------------------------------


def test_as_a_subprocess(tmp_path: Path) -> None:
    DirectoryStore(str(tmp_path / "store"))
    (tmp_path / "rr.yaml").write_text(RR_TRIO)
    env = {**os.environ, "BGPD_STATE_DIR": str(tmp_path), "NODENAME": "node1"}
    done = subprocess.run(
        [sys.executable, "-m", "bgpd.ctl.main", "apply", "-f", "-"], input=RR_TRIO, env=env,
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert (done.returncode, done.stdout, done.stderr) == (
        0, "Successfully applied 3 resource(s)\n", ""
    )
    script = Path(sys.executable).parent / "bgpctl"
    done = subprocess.run(
        [str(script), "get", "bgppeer"], env=env, capture_output=True, text=True, check=False,
        timeout=60,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines()[1].startswith("peer-with-route-reflectors ")
    bad = RR_TRIO.replace("asNumber: 63400", "asNumber: 63400, bogus: 1")
    done = subprocess.run(
        [str(script), "apply", "-f", "-"], input=bad, env=env, capture_output=True, text=True,
        check=False, timeout=60,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == ("Failed to apply any resources: stdin document 3: "
                           "BGPConfiguration \"default\": spec.bogus: unknown field\n")  # fmt: skip


def test_get_more_shapes(ctl: Ctl) -> None:
    assert ctl.ok("get", "bgpfilters") == "NAME   \n\n"
    listed = yaml.safe_load(ctl.ok("get", "bgppeer", "-o", "yaml"))
    assert (listed["kind"], listed["items"]) == ("BGPPeerList", [])
    ctl.ok("apply", "-f", ctl.file("pools.yaml", POOLS))
    two = yaml.safe_load(ctl.ok("get", "ippool", "edge-v6", "default-ipv4-ippool", "-o", "yaml"))
    assert [o["metadata"]["name"] for o in two] == ["edge-v6", "default-ipv4-ippool"]
    shown = json.loads(ctl.ok("get", "IPPool", "-o", "json"))
    assert list(shown) == ["kind", "apiVersion", "metadata", "items"]
    assert list(shown["items"][0]) == ["kind", "apiVersion", "metadata", "spec"]


def test_node_table_without_a_default_configuration(ctl: Ctl) -> None:
    ctl.file("n.yaml", RR_TRIO.split("---", maxsplit=1)[0])
    ctl.ok("apply", "-f", str(ctl.state / "n.yaml"))
    ctl.store.put("resources/nodes/bare", {"metadata": {"name": "bare"}, "spec": {}})
    assert ctl.ok("get", "nodes", "-o", "wide") == (
        "NAME    ASN       IPV4            IPV6   \n"
        "bare                                     \n"
        "node1   (64512)   198.18.0.1/24          \n"
        "\n"
    )


def test_per_node_bgp_configuration_row(ctl: Ctl) -> None:
    ctl.ok("apply", "-f", ctl.file("c.yaml", """\
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: node.node1}
spec: {listenPort: 1790}
"""))
    assert ctl.ok("get", "bgpconfigurations") == (
        "NAME         LOGSEVERITY   MESHENABLED   ASNUMBER   \n"
        "node.node1                 -             -          \n"
        "\n"
    )


def test_usage_errors(ctl: Ctl) -> None:
    path = ctl.file("p.yaml", TOR_PEER)
    assert ctl("delete", "bgppeer", "-f", path)[2] == (
        "give either -f FILE or KIND NAME..., not both\n"
    )
    assert ctl("delete")[2] == "give KIND NAME... or -f FILE\n"
    status, _, err = ctl("apply")
    assert status == 1 and "-f/--filename" in err
    status, _, err = ctl("get", "ippool", "-o", "table")
    assert status == 1 and "invalid choice" in err


def test_a_writer_between_dry_run_and_writes_is_a_partial_success(
    ctl: Ctl, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dry run passed; then another process creates the second peer before we
    do.  calicoctl's words for a batch stopped half-way."""
    second = TOR_PEER.replace("rack1-tor", "rack2-tor")
    real_create = resources.WRITES["create"]

    def racing_create(target: Any, resource: Any) -> dict[str, Any]:
        out = real_create(target, resource)
        if not isinstance(target, resources.DryRun) and resource.name == "rack1-tor":
            ctl.store.put("resources/bgppeers/rack2-tor", {"metadata": {"name": "rack2-tor"}})
        return out

    monkeypatch.setitem(resources.WRITES, "create", racing_create)
    status, out, err = ctl("create", "-f", ctl.file("two.yaml", TOR_PEER + "---\n" + second))
    assert status == 1
    assert out == "Partial success: created the first 1 out of 2 'BGPPeer' resources:\n"
    assert err == "Hit error(s): resource already exists: BGPPeer(rack2-tor)\n"
