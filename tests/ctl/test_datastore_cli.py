"""``bgpctl datastore migrate|status`` end to end: a directory datastore seeded with
``bgpctl apply`` and the real allocator, a real etcd on loopback (the ``etcd``
fixtures), the CLI run in-process (``main(argv)``).

The round trip the issue names: directory -> etcd -> a fresh directory, every
key's value equal at each step; and the refusals that keep a migration from
destroying anything (a destination that holds keys, the same place twice, an
empty source, a source that changed during the copy)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bgpd.cni.endpoints import endpoint_key
from bgpd.ctl import datastore as ctl_datastore
from bgpd.ctl.main import build_parser, main
from bgpd.datastore.base import DatastoreError, Unavailable
from bgpd.datastore.directory import DirectoryStore
from bgpd.datastore.etcd import EtcdStore
from bgpd.datastore.select import FIELDS
from bgpd.ipam import allocator
from bgpd.ipam.allocator import Ipam
from bgpd.lab.etcd import EtcdCluster, free_ports

RESOURCES = """\
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: default-ipv4-ippool}
spec: {cidr: 10.65.0.0/16, ipipMode: Always, natOutgoing: true, nodeSelector: all()}
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {logSeverityScreen: Info, nodeToNodeMeshEnabled: true, asNumber: 64512}
---
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: node1, labels: {rack: r1}}
spec: {bgp: {ipv4Address: 198.18.0.1/24}}
"""
NETWORK = "k8s-pod-network"
#: 2024-05-01 12:00:00 UTC
STARTED = 1714564800
AGENT = {"node": "node1", "role": "node", "host": "host1", "started": STARTED}


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    """No datastore setting leaks in from the environment running the tests."""
    monkeypatch.setattr(allocator, "_random_below", lambda n: 0)
    for var in ("BGPD_STATE_DIR", "NODENAME", "DATASTORE_TYPE"):
        monkeypatch.delenv(var, raising=False)
    for _name, var, _cni, _opt in FIELDS:
        monkeypatch.delenv(var, raising=False)


class Ctl:
    """bgpctl run in-process."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        status = main(["--node-name", "node1", *argv])
        out, err = self.capsys.readouterr()
        return status, out, err

    def ok(self, *argv: str) -> str:
        status, out, err = self(*argv)
        assert (status, err) == (0, ""), err
        return out

    def fails(self, *argv: str) -> str:
        status, out, err = self(*argv)
        assert status == 1, out
        return err


@pytest.fixture
def ctl(capsys: pytest.CaptureFixture[str]) -> Ctl:
    return Ctl(capsys)


def seed(ctl: Ctl, state: Path) -> DirectoryStore:
    """A node's datastore as it looks in use: resources applied with bgpctl, a pod's
    address allocated by the real allocator with its endpoint record, and a
    running agent's presence record."""
    store = DirectoryStore(str(state / "store"))
    path = state / "resources.yaml"
    path.write_text(RESOURCES)
    assert ctl.ok("--state-dir", str(state), "apply", "-f", str(path)) == (
        "Successfully applied 3 resource(s)\n"
    )
    ipam = Ipam(store, "node1", str(state / "locks" / "ipam-node1.lock"))
    got = ipam.auto_assign(
        f"{NETWORK}.c0", {"namespace": "default", "pod": "web-0"}, num4=1, num6=0
    )
    store.put(endpoint_key("node1", "c0", "eth0"), {
        "containerID": "c0", "ifname": "eth0", "hostIfname": "calic0", "network": NETWORK,
        "node": "node1", "namespace": "default", "pod": "web-0", "handle": f"{NETWORK}.c0",
        "state": "ready", "ips": [f"{got[0].address}/32"], "mac": "0a:58:0a:41:00:01",
    })  # fmt: skip
    store.put("status/agents/node1-node", {**AGENT, "pid": os.getpid()}, durable=False)
    return store


def contents(store: Any, prefix: str = "") -> dict[str, Any]:
    """Every key's value outside ``status/``."""
    return {r.key: r.value for r in store.list(prefix) if not r.key.startswith("status/")}


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


# -- the round trip ----------------------------------------------------------------------


def test_directory_to_etcd_and_back(ctl: Ctl, tmp_path: Path, etcd: EtcdCluster) -> None:
    source = seed(ctl, tmp_path / "a")
    expected = contents(source)
    assert {k.split("/")[0] for k in expected} == {"endpoints", "ipam", "resources"}
    assert len(expected) >= 7  # 3 resources, IPAM's block, affinity, handle, an endpoint

    out = ctl.ok("--state-dir", str(tmp_path / "a"), "datastore", "migrate",
                 "--to", "etcd", "--to-etcd-endpoints", etcd.endpoints_text)  # fmt: skip
    where = f"etcd {etcd.endpoints_text} prefix /bgpd/"
    revision = source.revision()
    assert out == (
        "Skipped 1 key under status/ (running agents' presence records).\n"
        f"Source revision {revision} before the copy, {revision} after.\n"
        f"Migrated {len(expected)} keys from directory {tmp_path}/a/store to {where}.\n"
    )
    store = etcd.store()
    try:
        assert contents(store) == expected
        assert store.keys("") == sorted(expected)  # status/ was not copied
    finally:
        store.close()

    # The other commands read the migrated datastore.
    on_etcd = ("--datastore", "etcd", "--etcd-endpoints", etcd.endpoints_text)
    listing = ctl.ok(*on_etcd, "get", "ippools")
    assert "default-ipv4-ippool   10.65.0.0/16" in listing
    usage = "| IP Pool  | 10.65.0.0/16 |     65536 | 1 (0%)     | 65535 (100%) |"
    assert usage in ctl.ok(*on_etcd, "ipam", "show")  # the allocation came along

    # And back, into a directory that does not exist yet.
    out = ctl.ok(*on_etcd, "datastore", "migrate", "--to", "directory",
                 "--to-state-dir", str(tmp_path / "b"))  # fmt: skip
    assert out.endswith(
        f"Migrated {len(expected)} keys from {where} to directory {tmp_path}/b/store.\n"
    )
    assert contents(DirectoryStore(str(tmp_path / "b" / "store"), create=False)) == expected


def test_migrate_between_directories_and_etcd_prefixes(
    ctl: Ctl, tmp_path: Path, etcd: EtcdCluster
) -> None:
    expected = contents(seed(ctl, tmp_path / "a"))
    ctl.ok("--state-dir", str(tmp_path / "a"), "datastore", "migrate", "--to", "directory",
           "--to-state-dir", str(tmp_path / "b"))  # fmt: skip
    assert contents(DirectoryStore(str(tmp_path / "b" / "store"))) == expected
    # Two prefixes side by side in one cluster are two places.
    ctl.ok("--state-dir", str(tmp_path / "b"), "datastore", "migrate", "--to", "etcd",
           "--to-etcd-endpoints", etcd.endpoints_text, "--to-etcd-prefix", "/one/")  # fmt: skip
    ctl.ok("--datastore", "etcd", "--etcd-endpoints", etcd.endpoints_text,
           "--etcd-prefix", "/one/", "datastore", "migrate", "--to", "etcd",
           "--to-etcd-endpoints", etcd.endpoints_text, "--to-etcd-prefix", "/two/")  # fmt: skip
    two = etcd.store(prefix="/two/")
    try:
        assert contents(two) == expected
    finally:
        two.close()


def test_destination_from_the_environment(
    ctl: Ctl, tmp_path: Path, etcd: EtcdCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ETCD_ENDPOINTS`` and ``BGPD_ETCD_PREFIX`` describe the destination when its
    options are not given; the source stays what the global options select."""
    expected = contents(seed(ctl, tmp_path / "a"))
    monkeypatch.setenv("ETCD_ENDPOINTS", etcd.endpoints_text)
    monkeypatch.setenv("BGPD_ETCD_PREFIX", "/env/")
    out = ctl.ok("--state-dir", str(tmp_path / "a"), "datastore", "migrate", "--to", "etcd",
                 "--datastore", "directory")  # fmt: skip
    assert out.endswith(f"to etcd {etcd.endpoints_text} prefix /env/.\n")
    store = etcd.store(prefix="/env/")
    try:
        assert contents(store) == expected
    finally:
        store.close()


# -- refusals ----------------------------------------------------------------------------


def test_refuses_a_destination_that_holds_keys(ctl: Ctl, tmp_path: Path, etcd: EtcdCluster) -> None:
    seed(ctl, tmp_path / "a")
    store = etcd.store()
    try:
        store.put("resources/ippools/old", {"spec": {"cidr": "10.99.0.0/16"}})
        store.put("ipam/config", {"strictAffinity": True})
        before = store.revision()
        err = ctl.fails("--state-dir", str(tmp_path / "a"), "datastore", "migrate",
                        "--to", "etcd", "--to-etcd-endpoints", etcd.endpoints_text)  # fmt: skip
        assert err == (
            f"bgpctl: destination etcd {etcd.endpoints_text} prefix /bgpd/ already holds "
            "2 keys (ipam/config, resources/ippools/old): use --overwrite to replace them "
            "with an exact copy\n"
        )
        assert store.revision() == before
        # Into a directory too.
        DirectoryStore(str(tmp_path / "b" / "store")).put("resources/nodes/x", {})
        err = ctl.fails("--state-dir", str(tmp_path / "a"), "datastore", "migrate",
                        "--to", "directory", "--to-state-dir", str(tmp_path / "b"))  # fmt: skip
        assert "already holds 1 key (resources/nodes/x)" in err
    finally:
        store.close()


def test_overwrite_makes_an_exact_copy(ctl: Ctl, tmp_path: Path, etcd: EtcdCluster) -> None:
    expected = contents(seed(ctl, tmp_path / "a"))
    pool = "resources/ippools/default-ipv4-ippool"
    store = etcd.store()
    try:
        store.put("resources/ippools/stale", {"spec": {"cidr": "10.99.0.0/16"}})  # absent
        store.put(pool, {"spec": {"cidr": "10.1.0.0/16"}})  # different
        equal = "resources/nodes/node1"
        store.put(equal, expected[equal])  # already equal: left alone
        kept = store.get(equal)
        held = store.put("status/agents/node2-node", {**AGENT, "node": "node2"})
        out = ctl.ok("--state-dir", str(tmp_path / "a"), "datastore", "migrate", "--to", "etcd",
                     "--to-etcd-endpoints", etcd.endpoints_text, "--overwrite")  # fmt: skip
        assert (
            f"Overwrite: wrote {len(expected) - 1} keys, 1 already equal, "
            "deleted 1 absent from the source.\n"
        ) in out
        assert contents(store) == expected
        assert store.get(equal).revision == kept.revision  # type: ignore[union-attr]
        # A live agent's record in the destination belongs to it: kept.
        assert store.get("status/agents/node2-node").revision == held  # type: ignore[union-attr]
        # Running it again is harmless and rewrites nothing.
        before = store.revision()
        out = ctl.ok("--state-dir", str(tmp_path / "a"), "datastore", "migrate", "--to", "etcd",
                     "--to-etcd-endpoints", etcd.endpoints_text, "--overwrite")  # fmt: skip
        assert f"wrote 0 keys, {len(expected)} already equal, deleted 0" in out
        assert store.revision() == before
    finally:
        store.close()


def test_refuses_the_same_place(ctl: Ctl, tmp_path: Path, etcd: EtcdCluster) -> None:
    seed(ctl, tmp_path / "a")
    a = str(tmp_path / "a")
    err = ctl.fails("--state-dir", a, "datastore", "migrate", "--to", "directory")
    assert err == (
        f"bgpctl: source and destination are the same place: both are the directory {a}/store\n"
    )
    (tmp_path / "link").symlink_to(a)
    err = ctl.fails("--state-dir", a, "datastore", "migrate", "--to", "directory",
                    "--to-state-dir", str(tmp_path / "link"))  # fmt: skip
    assert "same place: both are the directory" in err
    err = ctl.fails("--state-dir", a, "datastore", "migrate", "--to", "directory",
                    "--to-state-dir", f"{a}/store/inner")  # fmt: skip
    assert "same place: the directories" in err and "inside one another" in err

    ctl.ok("--state-dir", a, "datastore", "migrate", "--to", "etcd",
           "--to-etcd-endpoints", etcd.endpoints_text)  # fmt: skip
    on_etcd = ("--datastore", "etcd", "--etcd-endpoints", etcd.endpoints_text)
    err = ctl.fails(*on_etcd, "datastore", "migrate", "--to", "etcd",
                    "--to-etcd-endpoints", etcd.endpoints_text)  # fmt: skip
    assert err == (
        "bgpctl: source and destination are the same place: both are prefix /bgpd/ of one "
        "etcd cluster\n"
    )
    # The same cluster under another name, and a prefix inside the source's.
    other_name = etcd.endpoints[0].replace("127.0.0.1", "localhost")
    err = ctl.fails(*on_etcd, "datastore", "migrate", "--to", "etcd",
                    "--to-etcd-endpoints", other_name,
                    "--to-etcd-prefix", "/bgpd/copy/")  # fmt: skip
    assert err == (
        "bgpctl: source and destination are the same place: the prefixes /bgpd/ and "
        "/bgpd/copy/ of one etcd cluster are inside one another\n"
    )


def test_refuses_an_empty_source(ctl: Ctl, tmp_path: Path, etcd: EtcdCluster) -> None:
    seed(ctl, tmp_path / "a")
    store = etcd.store(prefix="/typo/")
    store.put("status/agents/x", AGENT)  # presence records alone are not a datastore
    store.close()
    err = ctl.fails("--datastore", "etcd", "--etcd-endpoints", etcd.endpoints_text,
                    "--etcd-prefix", "/typo/", "datastore", "migrate", "--to", "directory",
                    "--to-state-dir", str(tmp_path / "a"), "--overwrite")  # fmt: skip
    assert "source etcd" in err and "prefix /typo/ holds no keys: nothing to migrate" in err
    assert len(contents(DirectoryStore(str(tmp_path / "a" / "store")))) > 0
    # A refused migration into a new directory leaves nothing behind.
    err = ctl.fails("--datastore", "etcd", "--etcd-endpoints", etcd.endpoints_text,
                    "--etcd-prefix", "/typo/", "datastore", "migrate", "--to", "directory",
                    "--to-state-dir", str(tmp_path / "new"))  # fmt: skip
    assert "holds no keys" in err and not (tmp_path / "new").exists()


def test_dry_run_writes_nothing(ctl: Ctl, tmp_path: Path, etcd: EtcdCluster) -> None:
    expected = contents(seed(ctl, tmp_path / "a"))
    a = str(tmp_path / "a")
    store = etcd.store()
    try:
        before = store.revision()
        out = ctl.ok("--state-dir", a, "datastore", "migrate", "--to", "etcd",
                     "--to-etcd-endpoints", etcd.endpoints_text, "--dry-run")  # fmt: skip
        assert out == (
            f"Dry run: would migrate {len(expected)} keys from directory {a}/store to etcd "
            f"{etcd.endpoints_text} prefix /bgpd/.\n"
            "Dry run: would skip 1 key under status/ (running agents' presence records).\n"
            "Nothing was written.\n"
        )
        assert store.keys("") == [] and store.revision() == before
        # Into a directory: not even created.
        ctl.ok("--state-dir", a, "datastore", "migrate", "--to", "directory",
               "--to-state-dir", str(tmp_path / "b"), "--dry-run")  # fmt: skip
        assert not (tmp_path / "b").exists()
        # With --overwrite: what would be written and deleted.
        store.put("resources/ippools/stale", {})
        before = store.revision()
        out = ctl.ok("--state-dir", a, "datastore", "migrate", "--to", "etcd",
                     "--to-etcd-endpoints", etcd.endpoints_text,
                     "--dry-run", "--overwrite")  # fmt: skip
        assert (
            f"Dry run: would write {len(expected)} keys (0 already equal) and delete 1 key "
            "absent from the source.\n"
        ) in out
        assert store.keys("") == ["resources/ippools/stale"] and store.revision() == before
        # A dry run refuses what the real run would refuse.
        err = ctl.fails("--state-dir", a, "datastore", "migrate", "--to", "etcd",
                        "--to-etcd-endpoints", etcd.endpoints_text, "--dry-run")  # fmt: skip
        assert "already holds 1 key" in err
    finally:
        store.close()


def test_unreachable_etcd(ctl: Ctl, tmp_path: Path) -> None:
    seed(ctl, tmp_path / "a")
    nobody = f"http://127.0.0.1:{free_ports(1)[0]}"
    err = ctl.fails("--state-dir", str(tmp_path / "a"), "datastore", "migrate",
                    "--to", "etcd", "--to-etcd-endpoints", nobody)  # fmt: skip
    assert err.startswith(
        f"bgpctl: destination etcd {nobody} prefix /bgpd/: etcd: no endpoint answers "
        f"({nobody}: Connection refused"
    )
    err = ctl.fails("--datastore", "etcd", "--etcd-endpoints", nobody, "datastore", "migrate",
                    "--to", "directory", "--to-state-dir", str(tmp_path / "b"))  # fmt: skip
    assert err.startswith(f"bgpctl: source etcd {nobody} prefix /bgpd/: etcd: no endpoint answers")
    assert not (tmp_path / "b").exists()
    err = ctl.fails("--datastore", "etcd", "--etcd-endpoints", nobody, "datastore", "status")
    assert err.startswith("bgpctl: datastore: etcd: no endpoint answers")


def test_failure_half_way(
    ctl: Ctl, tmp_path: Path, etcd: EtcdCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """etcd lost after some keys: a partial copy, said so; --overwrite completes it."""
    expected = contents(seed(ctl, tmp_path / "a"))
    put = EtcdStore.put
    calls = []

    def flaky(self: EtcdStore, key: str, value: dict[str, Any], **kw: Any) -> int:
        calls.append(key)
        if len(calls) == 3:
            raise Unavailable("etcd: no endpoint answers (simulated)")
        return put(self, key, value, **kw)

    monkeypatch.setattr(EtcdStore, "put", flaky)
    a = str(tmp_path / "a")
    err = ctl.fails("--state-dir", a, "datastore", "migrate", "--to", "etcd",
                    "--to-etcd-endpoints", etcd.endpoints_text)  # fmt: skip
    assert err == (
        f"bgpctl: destination etcd {etcd.endpoints_text} prefix /bgpd/: etcd: no endpoint "
        f"answers (simulated); stopped after writing 2 of {len(expected)} keys: the "
        "destination may hold a partial copy (run again with --overwrite)\n"
    )
    monkeypatch.setattr(EtcdStore, "put", put)
    ctl.fails("--state-dir", a, "datastore", "migrate", "--to", "etcd",
              "--to-etcd-endpoints", etcd.endpoints_text)  # fmt: skip
    out = ctl.ok("--state-dir", a, "datastore", "migrate", "--to", "etcd",
                 "--to-etcd-endpoints", etcd.endpoints_text, "--overwrite")  # fmt: skip
    assert f"Overwrite: wrote {len(expected) - 2} keys, 2 already equal" in out
    store = etcd.store()
    try:
        assert contents(store) == expected
    finally:
        store.close()


def test_bad_destination_settings(ctl: Ctl, tmp_path: Path) -> None:
    seed(ctl, tmp_path / "a")
    a = str(tmp_path / "a")
    err = ctl.fails("--state-dir", a, "datastore", "migrate", "--to", "etcd")
    assert err == "bgpctl: --to etcd needs --to-etcd-endpoints (or $ETCD_ENDPOINTS)\n"
    err = ctl.fails("--state-dir", a, "datastore", "migrate", "--to", "etcd",
                    "--to-etcd-endpoints", "http://127.0.0.1:1",
                    "--to-etcd-prefix", "bgpd")  # fmt: skip
    assert "must start and end with '/'" in err
    err = ctl.fails("--state-dir", str(tmp_path / "missing"), "datastore", "migrate",
                    "--to", "directory", "--to-state-dir", a)  # fmt: skip
    assert err.startswith(f"bgpctl: no datastore at {tmp_path}/missing/store")


def test_destination_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """An etcd destination: endpoints and prefix from the ``--to*`` options, else the
    environment; TLS and user from the environment only, never the source's
    command line."""
    monkeypatch.setenv("BGPD_DATASTORE", "etcd")
    monkeypatch.setenv("ETCD_ENDPOINTS", "https://env:2379")
    monkeypatch.setenv("ETCD_CA_CERT_FILE", "/env/ca.pem")
    monkeypatch.setenv("ETCD_USERNAME", "bgpd")
    monkeypatch.setenv("ETCD_PASSWORD", "secret")
    args = build_parser().parse_args([
        "--etcd-endpoints", "https://source:2379", "--etcd-ca-cert-file", "/source/ca.pem",
        "datastore", "migrate", "--to", "etcd", "--to-etcd-prefix", "/new/",
    ])  # fmt: skip
    assert ctl_datastore.destination_config(args).values == {
        "datastore": "etcd", "endpoints": "https://env:2379", "prefix": "/new/",
        "ca_file": "/env/ca.pem", "username": "bgpd", "password": "secret",
    }  # fmt: skip
    args = build_parser().parse_args([
        "datastore", "migrate", "--to", "etcd", "--to-etcd-endpoints", "https://to:2379",
    ])  # fmt: skip
    assert ctl_datastore.destination_config(args).values["endpoints"] == "https://to:2379"
    args = build_parser().parse_args(["datastore", "migrate", "--to", "directory"])
    assert ctl_datastore.destination_config(args).kind == "directory"


def test_source_changed_during_the_copy(
    ctl: Ctl, tmp_path: Path, etcd: EtcdCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write to the source while copying is an error naming the key; ``--force``
    accepts the copy; ``--overwrite`` afterwards catches up."""
    source = seed(ctl, tmp_path / "a")
    a = str(tmp_path / "a")
    put = EtcdStore.put
    late = ["endpoints/node1/c9.eth0"]  # a pod starts on the node during the copy

    def put_and_meddle(self: EtcdStore, key: str, value: dict[str, Any], **kw: Any) -> int:
        if late:
            source.put(late.pop(), {"pod": "late"})
            source.put("status/agents/node1-policy", {**AGENT, "role": "policy"})  # not a change
        return put(self, key, value, **kw)

    monkeypatch.setattr(EtcdStore, "put", put_and_meddle)
    before = source.revision()
    status, out, err = ctl("--state-dir", a, "datastore", "migrate", "--to", "etcd",
                           "--to-etcd-endpoints", etcd.endpoints_text)  # fmt: skip
    assert status == 1
    assert f"Source revision {before} before the copy, {before + 2} after.\n" in out
    assert err == (
        f"bgpctl: the source changed during the migration (revision {before} -> "
        f"{before + 2}): the destination misses what was written or deleted meanwhile in "
        "1 key (endpoints/node1/c9.eth0). Stop every writer (node agents, policy agents, "
        "the CNI plugin) and run again with --overwrite, or accept this copy with --force.\n"
    )
    store = etcd.store()
    try:
        assert store.get("endpoints/node1/c9.eth0") is None
        monkeypatch.setattr(EtcdStore, "put", put)
        out = ctl.ok("--state-dir", a, "datastore", "migrate", "--to", "etcd",
                     "--to-etcd-endpoints", etcd.endpoints_text, "--overwrite")  # fmt: skip
        assert "Overwrite: wrote 1 key," in out
        assert contents(store) == contents(source)
    finally:
        store.close()

    # --force: the same warning, exit 0.
    late.append("endpoints/node1/c10.eth0")
    monkeypatch.setattr(EtcdStore, "put", put_and_meddle)
    status, out, err = ctl("--state-dir", a, "datastore", "migrate", "--to", "etcd",
                           "--to-etcd-endpoints", etcd.endpoints_text, "--to-etcd-prefix",
                           "/forced/", "--force")  # fmt: skip
    assert status == 0
    assert err.startswith("bgpctl: warning: the source changed during the migration")
    assert "(endpoints/node1/c10.eth0)" in err and err.endswith("run again with --overwrite.\n")


# -- status ------------------------------------------------------------------------------


def test_status_of_a_directory(ctl: Ctl, tmp_path: Path) -> None:
    store = seed(ctl, tmp_path / "a")
    gone = dead_pid()  # an agent killed: its record stays behind in a directory
    store.put("status/agents/node2-policy", {**AGENT, "node": "node2", "role": "policy",
                                             "pid": gone, "started": "yesterday"})  # fmt: skip
    keys = store.keys("")
    assert len(keys) == 10
    out = ctl.ok("--state-dir", str(tmp_path / "a"), "datastore", "status")
    head, _, agents = out.partition("Live agents\n")
    assert head == (
        f"Datastore: directory {tmp_path}/a/store\n"
        f"Revision:  {store.revision()}\n"
        "Keys:      10\n"
        "\n"
        "+-----------+------+\n"
        "|  FOLDER   | KEYS |\n"
        "+-----------+------+\n"
        "| endpoints |    1 |\n"
        "| ipam      |    4 |\n"
        "| resources |    3 |\n"
        "| status    |    2 |\n"
        "+-----------+------+\n"
        "\n"
    )
    lines = agents.splitlines()
    assert [c.strip() for c in lines[1].split("|")[1:-1]] == [
        "NODE", "ROLE", "HOST", "PID", "STARTED", "STATE",
    ]  # fmt: skip
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in lines[3:5]]
    assert rows == [
        ["node1", "node", "host1", str(os.getpid()), "2024-05-01T12:00:00Z", "running"],
        ["node2", "policy", "host1", str(gone), "yesterday", "stale"],
    ]
    assert len(lines) == 6 and lines[0] == lines[2] == lines[5]

    doc = json.loads(ctl.ok("--state-dir", str(tmp_path / "a"), "datastore", "status",
                            "-o", "json"))  # fmt: skip
    assert doc["kind"] == "directory" and doc["keys"] == 10 and "etcd" not in doc
    assert doc["folders"] == {"endpoints": 1, "ipam": 4, "resources": 3, "status": 2}
    assert [(a["node"], a["state"]) for a in doc["agents"]] == [
        ("node1", "running"), ("node2", "stale"),
    ]  # fmt: skip


def test_status_of_etcd(ctl: Ctl, tmp_path: Path, etcd3: EtcdCluster) -> None:
    expected = contents(seed(ctl, tmp_path / "a"))
    ctl.ok("--state-dir", str(tmp_path / "a"), "datastore", "migrate", "--to", "etcd",
           "--to-etcd-endpoints", etcd3.endpoints_text)  # fmt: skip
    on_etcd = ("--datastore", "etcd", "--etcd-endpoints", etcd3.endpoints_text)
    out = ctl.ok(*on_etcd, "datastore", "status")
    lines = out.splitlines()
    assert lines[0] == f"Datastore: etcd {etcd3.endpoints_text} prefix /bgpd/"
    assert lines[1].startswith("Revision:  ") and int(lines[1].split()[1]) > len(expected)
    assert lines[2] == f"Keys:      {len(expected)}"
    assert "| status" not in out  # not migrated
    members = [line for line in lines if line.startswith("| m")]
    assert [m.split("|")[1].strip() for m in members] == ["m0", "m1", "m2"]
    assert [m.split("|")[3].strip() for m in members] == etcd3.endpoints
    assert sorted(m.split("|")[4].strip() for m in members) == ["follower", "follower", "leader"]
    answered = next(line for line in lines if line.startswith("Answered by m"))
    assert ": etcd 3." in answered and ", database " in answered and " kB" in answered
    assert lines[-1] == "No live agents recorded (nothing under status/agents/)."

    store = etcd3.store()
    try:
        store.put("status/agents/node1-node", {**AGENT, "pid": 4242})
    finally:
        store.close()
    doc = json.loads(ctl.ok(*on_etcd, "datastore", "status", "-o", "json"))
    assert doc["kind"] == "etcd" and doc["folders"]["status"] == 1
    assert len(doc["etcd"]["members"]) == 3 and doc["etcd"]["status"]["version"].startswith("3.")
    assert doc["agents"] == [{"key": "status/agents/node1-node", **AGENT, "pid": 4242,
                              "state": "running"}]  # fmt: skip
    out = ctl.ok(*on_etcd, "datastore", "status")
    assert out.splitlines()[-2] == (
        "| node1 | node | host1 | 4242 | 2024-05-01T12:00:00Z | running |"
    )


def test_status_when_etcd_will_not_describe_itself(
    ctl: Ctl, etcd: EtcdCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user without the permission to list members: the rest is still shown."""

    def refused(self: EtcdStore) -> Any:
        raise DatastoreError("etcd: etcdserver: permission denied")

    monkeypatch.setattr(EtcdStore, "members", refused)
    out = ctl.ok("--datastore", "etcd", "--etcd-endpoints", etcd.endpoints_text,
                 "datastore", "status")  # fmt: skip
    assert out == (
        f"Datastore: etcd {etcd.endpoints_text} prefix /bgpd/\n"
        "Revision:  1\n"
        "Keys:      0\n"
        "\n"
        "etcd cluster: etcd: etcdserver: permission denied\n"
        "\n"
        "No live agents recorded (nothing under status/agents/).\n"
    )


def test_format_helpers() -> None:
    assert ctl_datastore._bytes(20480) == "20 kB"
    assert ctl_datastore._bytes("1500000") == "1.5 MB"
    assert ctl_datastore._bytes(999) == "999 B"
    assert ctl_datastore._member_id("1986562606974855432") == "1b91b02a70cf6908"
    assert ctl_datastore._started(STARTED) == "2024-05-01T12:00:00Z"
    assert ctl_datastore._started(None) == ""
