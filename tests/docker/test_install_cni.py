"""docker/install-cni, run as the init container runs it, against folders standing for
the host's /opt/cni/bin, /etc/cni/net.d and /opt/bgpd."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bgpd.cni import install as cni_install
from bgpd.cni import spec
from bgpd.datastore import select
from tests.conftest import require_programs
from tests.docker.harness import (
    DOCKER,
    NODE,
    REFERENCE,
    Host,
    load,
    plugin_config,
    run_plugin,
)

install_cni = load("install_cni")


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path / "host")


def require_reference(*names: str) -> None:
    require_programs(*(str(REFERENCE / n) for n in names), package="containernetworking-plugins")


def installed(host: Host, **extra: str) -> dict[str, Any]:
    res = host.install(**extra)
    assert res.returncode == 0, res.stderr
    return host.conf()


# -- what lands on the node ------------------------------------------------------------


def test_launchers_are_installed_executable_and_name_the_release(host: Host) -> None:
    installed(host)
    (release,) = host.releases()
    for name, module in install_cni.LAUNCHERS.items():
        path = host.bin / name
        mode = path.stat().st_mode
        assert stat.S_ISREG(mode) and mode & 0o111 == 0o111, oct(mode)
        text = path.read_text()
        assert text.startswith(f"#!{host.python} -IS\n")
        assert str(host.lib / "releases" / release) in text
        assert f"from {module} import main" in text
    # The release holds the package, byte-compiled, and nothing is left half-made.
    package = host.lib / "releases" / release / "bgpd"
    assert (package / "cni" / "plugin.py").is_file()
    assert list((package / "cni" / "__pycache__").glob("plugin.cpython-*.pyc"))
    assert host.temp_files() == []


def test_launchers_match_the_package_installer() -> None:
    """The image's launchers run the modules bgpd.cni.install's do."""
    assert install_cni.LAUNCHERS == cni_install.LAUNCHERS


def test_default_conflist_mirrors_calicos_with_placeholders_substituted(host: Host) -> None:
    conf = installed(host, CNI_MTU="1440")
    text = host.conflist.read_text()
    assert "__" not in text
    assert stat.S_IMODE(host.conflist.stat().st_mode) == 0o644
    assert conf["name"] == "k8s-pod-network"
    assert conf["cniVersion"] == "1.0.0"
    main, portmap, bandwidth = conf["plugins"]
    assert main == {
        "type": "bgpd-cni", "datastore_type": "directory", "etcd_endpoints": "",
        "etcd_prefix": "", "etcd_ca_cert_file": "", "etcd_cert_file": "", "etcd_key_file": "",
        "state_dir": str(host.state), "nodename": NODE, "mtu": 1440,
        "ipam": {"type": "bgpd-ipam"},
    }  # fmt: skip
    assert portmap == {"type": "portmap", "snat": True, "capabilities": {"portMappings": True}}
    assert bandwidth == {"type": "bandwidth", "capabilities": {"bandwidth": True}}


def test_the_datastore_settings_reach_the_conflist(host: Host) -> None:
    """The agent's etcd settings (Calico's names) reach the plugin, which selects
    the same datastore from them (bgpd.datastore.select.from_cni)."""
    conf = installed(host, DATASTORE_TYPE="etcdv3", ETCD_ENDPOINTS="https://10.0.0.1:2379",
                     ETCD_CA_CERT_FILE="/etc/bgpd/tls/ca.pem", BGPD_ETCD_PREFIX="/k/")  # fmt: skip
    main = conf["plugins"][0]
    chosen = select.from_cni(main, env={})
    assert chosen.kind == "etcd"
    assert chosen.values == {
        "datastore": "etcdv3", "endpoints": "https://10.0.0.1:2379", "prefix": "/k/",
        "ca_file": "/etc/bgpd/tls/ca.pem",
    }  # fmt: skip
    assert select.from_cni(installed(host)["plugins"][0], env={}).kind == "directory"


def test_mtu_defaults_to_zero_and_node_name_to_nodename(host: Host) -> None:
    env = host.env(NODENAME="from-nodename")
    del env["KUBERNETES_NODE_NAME"]
    res = subprocess.run(
        [sys.executable, str(DOCKER / "install-cni")], env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    plugin = host.conf()["plugins"][0]
    assert plugin["mtu"] == 0  # the plugin decides: <state_dir>/mtu, else the uplink
    assert plugin["nodename"] == "from-nodename"


def test_our_plugin_accepts_the_installed_configuration(host: Host) -> None:
    """The installed launcher, run by the host's python3 without site-packages, answers
    VERSION for the conflist's version, and a DEL with the conflist's settings
    (state_dir, nodename, datastore, ipam) succeeds against the state folder."""
    conf = installed(host)
    config = plugin_config(conf, 0)
    res = run_plugin(host.bin / "bgpd-cni", "VERSION", config)
    assert res.returncode == 0, res.stderr
    answer = json.loads(res.stdout)
    assert answer["cniVersion"] == conf["cniVersion"]
    assert conf["cniVersion"] in answer["supportedVersions"]
    assert answer["supportedVersions"] == list(spec.SUPPORTED)

    res = run_plugin(
        host.bin / "bgpd-cni", "DEL", config, CNI_CONTAINERID="c0ffee", CNI_IFNAME="eth0",
        CNI_PATH=str(host.bin),
    )  # fmt: skip
    assert res.returncode == 0, (res.stdout, res.stderr)
    assert res.stdout == b""
    assert (host.state / "locks" / f"ipam-{NODE}.lock").exists()

    ipam = dict(conf["plugins"][0]["ipam"], name=conf["name"], cniVersion=conf["cniVersion"])
    res = run_plugin(host.bin / "bgpd-ipam", "VERSION", json.dumps(ipam).encode())
    assert res.returncode == 0, res.stderr
    assert conf["cniVersion"] in json.loads(res.stdout)["supportedVersions"]


@pytest.mark.parametrize(("index", "name"), [(1, "portmap"), (2, "bandwidth")])
def test_reference_plugins_accept_their_part(host: Host, index: int, name: str) -> None:
    """The chained plugins, as installed from the image, support the list's version."""
    require_reference(name)
    conf = installed(host)
    assert conf["plugins"][index]["type"] == name
    path = host.bin / name
    assert path.read_bytes() == (REFERENCE / name).read_bytes()
    assert os.access(path, os.X_OK)
    res = run_plugin(path, "VERSION", plugin_config(conf, index))
    assert res.returncode == 0, res.stderr
    assert conf["cniVersion"] in json.loads(res.stdout)["supportedVersions"]


def test_launcher_refuses_an_old_host_python_with_a_cni_error(host: Host) -> None:
    """On a host whose python3 is older than 3.11 the runtime gets a CNI error
    naming the cause, not a traceback."""
    installed(host)
    text = (host.bin / "bgpd-cni").read_text().split("\n", 1)[1]
    code = "import sys; sys.version_info = (3, 9, 18)\n" + text
    res = subprocess.run(
        [host.python, "-IS", "-c", code], input=b"{}", capture_output=True, timeout=60,
        check=False, env={"CNI_COMMAND": "VERSION"},
    )  # fmt: skip
    assert res.returncode == 1
    error = json.loads(res.stdout)
    assert error["code"] == 50
    assert "needs python3 3.11 or later" in error["msg"] and "is 3.9" in error["msg"]


# -- refusing a bad configuration ------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"CNI_NETWORK_CONFIG": '{"name": "x", "plugins": ['}, "is not valid JSON"),
        ({"CNI_NETWORK_CONFIG": "[1, 2]"}, "must be a JSON object"),
        ({"CNI_NETWORK_CONFIG": '{"cniVersion": "1.0.0", "plugins": [{"type": "a"}]}'},
         "has no 'name'"),
        ({"CNI_NETWORK_CONFIG": '{"name": "n", "cniVersion": "1.0.0", "type": "bgpd-cni"}'},
         "a .conflist needs a non-empty 'plugins' list"),
        ({"CNI_MTU": "jumbo"}, "CNI_MTU: 'jumbo' is not an MTU"),
        ({"CNI_CONF_NAME": "bgpd.yaml"}, "must be a file name ending in"),
        ({"UPDATE_CNI_BINARIES": "maybe"}, "UPDATE_CNI_BINARIES: 'maybe'"),
    ],
)  # fmt: skip
def test_a_bad_configuration_exits_1_and_leaves_the_node_as_it_was(
    host: Host, extra: dict[str, str], message: str
) -> None:
    installed(host)
    (host.bin / "bgpd-cni").write_text("#!/bin/sh\n# the node's previous plugin\n")
    before = host.files()
    mtimes = {p: p.stat().st_mtime_ns for p in host.root.rglob("*")}
    res = host.install(**{"CNI_MTU": "1400", **extra})
    assert res.returncode == 1
    assert message in res.stderr, res.stderr
    assert "install-cni: error:" in res.stderr
    assert "nothing on the node was changed" in res.stderr
    assert host.files() == before
    assert {p: p.stat().st_mtime_ns for p in host.root.rglob("*")} == mtimes
    assert host.temp_files() == []


def test_template_from_a_file_with_calicos_placeholders(host: Host, tmp_path: Path) -> None:
    template = tmp_path / "cni.json"
    template.write_text(
        '{"name": "net", "cniVersion": "0.3.1", "type": "bgpd-cni", "log_level": "__LOG_LEVEL__",'
        ' "nodename": "__KUBERNETES_NODE_NAME__", "mtu": __CNI_MTU__, "kubeconfig":'
        ' "__CNI_NET_DIR__/kubeconfig", "other": "__NOT_OURS__", "ipam": {"type": "calico-ipam"}}'
    )
    res = host.install(
        CNI_NETWORK_CONFIG_FILE=str(template), CNI_CONF_NAME="10-bgpd.conf",
        CNI_NETWORK_CONFIG='{"ignored": true}', LOG_LEVEL="debug", KUBERNETES_NODE_NAME='n"1',
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "placeholders left as they are: __NOT_OURS__" in res.stderr
    conf = json.loads((host.net / "10-bgpd.conf").read_text())
    assert conf["log_level"] == "debug"
    assert conf["nodename"] == 'n"1'  # escaped for JSON
    assert conf["mtu"] == 0
    assert conf["kubeconfig"] == "/etc/cni/net.d/kubeconfig"
    answer = run_plugin(host.bin / "bgpd-cni", "VERSION", (host.net / "10-bgpd.conf").read_bytes())
    assert json.loads(answer.stdout)["cniVersion"] == "0.3.1"


# -- binaries: update, skip, never replace the node's reference plugins ---------------


def test_update_false_keeps_an_existing_binary(host: Host) -> None:
    host.bin.mkdir(parents=True)
    mine = b"#!/bin/sh\necho operator's own\n"
    (host.bin / "bgpd-cni").write_bytes(mine)
    res = host.install(UPDATE_CNI_BINARIES="false")
    assert res.returncode == 0, res.stderr
    assert "kept" in res.stderr and "UPDATE_CNI_BINARIES=false" in res.stderr
    assert (host.bin / "bgpd-cni").read_bytes() == mine
    assert (host.bin / "bgpd-ipam").is_file()  # missing ones are still installed
    assert host.conflist.is_file()


def test_update_true_replaces_our_launchers(host: Host) -> None:
    host.bin.mkdir(parents=True)
    (host.bin / "bgpd-cni").write_text("#!/bin/sh\nold\n")
    installed(host)
    assert "from bgpd.cni.plugin import main" in (host.bin / "bgpd-cni").read_text()


def test_skip_cni_binaries(host: Host) -> None:
    installed(host, SKIP_CNI_BINARIES="bgpd-ipam, portmap")
    assert (host.bin / "bgpd-cni").is_file()
    assert not (host.bin / "bgpd-ipam").exists()
    assert not (host.bin / "portmap").exists()


def test_the_nodes_own_reference_plugins_are_never_replaced(host: Host) -> None:
    require_reference("portmap", "bandwidth")
    host.bin.mkdir(parents=True)
    own = b"#!/bin/sh\n# the node's newer portmap\n"
    (host.bin / "portmap").write_bytes(own)
    installed(host)
    assert (host.bin / "portmap").read_bytes() == own
    assert (host.bin / "bandwidth").read_bytes() == (REFERENCE / "bandwidth").read_bytes()


def test_a_reference_plugin_missing_from_the_image_is_a_warning(host: Host, tmp_path: Path) -> None:
    empty = tmp_path / "no-plugins"
    empty.mkdir()
    installed(host, CNI_REFERENCE_PLUGINS_DIR=str(empty))
    assert not (host.bin / "portmap").exists()
    assert host.conflist.is_file()


def test_secondary_bin_dir_is_written_when_mounted(host: Host) -> None:
    secondary = host.root / "secondary-bin-dir"
    secondary.mkdir(parents=True)
    installed(host)
    assert (secondary / "bgpd-cni").read_bytes() == (host.bin / "bgpd-cni").read_bytes()


def test_old_conf_name_is_removed_after_ours_is_written(host: Host) -> None:
    host.net.mkdir(parents=True)
    (host.net / "10-calico.conflist").write_text("{}")
    (host.net / "99-other.conflist").write_text("{}")
    installed(host, CNI_OLD_CONF_NAME="10-calico.conflist")
    assert sorted(p.name for p in host.net.iterdir()) == ["10-bgpd.conflist", "99-other.conflist"]


# -- atomic replacement, releases ------------------------------------------------------


def test_files_are_replaced_by_rename_never_rewritten_in_place(host: Host) -> None:
    """A reader that opened the old conflist or launcher reads it whole; the path
    gives the new one; no temporary file is left."""
    installed(host, CNI_MTU="1400")
    with open(host.conflist, "rb") as old_conf, open(host.bin / "bgpd-cni", "rb") as old_bin:
        old_conf_inode = os.fstat(old_conf.fileno()).st_ino
        old_bin_inode = os.fstat(old_bin.fileno()).st_ino
        installed(host, CNI_MTU="1300")
        assert b'"mtu": 1400' in old_conf.read()
        assert b"-IS" in old_bin.read()
    assert host.conflist.stat().st_ino != old_conf_inode
    assert (host.bin / "bgpd-cni").stat().st_ino != old_bin_inode
    assert host.conf()["plugins"][0]["mtu"] == 1300
    assert host.temp_files() == []


def _package(tmp_path: Path, marker: str) -> str:
    """A stand-in package: the launchers' modules, answering VERSION."""
    root = tmp_path / f"pkg-{marker}" / "bgpd"
    (root / "cni").mkdir(parents=True)
    (root / "__init__.py").write_text(f"MARK = {marker!r}\n")
    (root / "cni" / "__init__.py").write_text("")
    for module in ("plugin", "ipam_plugin"):
        (root / "cni" / f"{module}.py").write_text(
            "import json, sys\nimport bgpd\n"
            "def main():\n    print(json.dumps({'mark': bgpd.MARK}))\n    return 0\n"
        )
    return str(root)


def test_an_unchanged_package_reuses_its_release(host: Host, tmp_path: Path) -> None:
    """The release is named by its content: the same image installs nothing again."""
    settings = install_cni.Settings.from_env(host.env())
    text, _ = install_cni.render(settings)
    source = _package(tmp_path, "a")
    install_cni.install(settings, text, source)
    first = host.releases()
    mtime = (host.lib / "releases" / first[0]).stat().st_mtime_ns
    install_cni.install(settings, text, source)
    assert host.releases() == first
    assert (host.lib / "releases" / first[0]).stat().st_mtime_ns == mtime


def test_releases_a_launcher_names_are_kept_the_rest_removed(host: Host, tmp_path: Path) -> None:
    """Upgrades: the new release is named by the launchers, the one they named
    before stays (a plugin started from it may still run), older ones go."""
    settings = install_cni.Settings.from_env(host.env())
    text, _ = install_cni.render(settings)
    names = []
    for marker in ("a", "b", "c"):
        install_cni.install(settings, text, _package(tmp_path, marker))
        (release,) = {install_cni.launcher_release(str(host.bin / n)) for n in ("bgpd-cni",
                                                                               "bgpd-ipam")}
        names.append(os.path.basename(release))
        res = run_plugin(host.bin / "bgpd-cni", "VERSION", b"{}")
        assert json.loads(res.stdout) == {"mark": marker}
    assert len(set(names)) == 3
    assert host.releases() == sorted(names[1:])


def test_a_kept_launcher_keeps_its_release(host: Host, tmp_path: Path) -> None:
    settings = install_cni.Settings.from_env(host.env())
    text, _ = install_cni.render(settings)
    install_cni.install(settings, text, _package(tmp_path, "a"))
    pinned = install_cni.launcher_release(str(host.bin / "bgpd-cni"))
    keep = install_cni.Settings.from_env(host.env(UPDATE_CNI_BINARIES="false"))
    for marker in ("b", "c"):
        install_cni.install(keep, text, _package(tmp_path, marker))
    assert install_cni.launcher_release(str(host.bin / "bgpd-cni")) == pinned
    assert os.path.basename(str(pinned)) in host.releases()
    res = run_plugin(host.bin / "bgpd-cni", "VERSION", b"{}")
    assert json.loads(res.stdout) == {"mark": "a"}


def test_stale_temporary_release_folders_are_removed(host: Host) -> None:
    stale = host.lib / "releases" / ".tmp-killed"
    fresh = host.lib / "releases" / ".tmp-running"
    for folder in (stale, fresh):
        (folder / "bgpd").mkdir(parents=True)
    old = time.time() - install_cni.STALE_TEMP_SECONDS - 60
    os.utime(stale, (old, old))
    installed(host)
    assert not stale.exists()
    assert fresh.exists()


# -- SLEEP -------------------------------------------------------------------------------


def test_sleep_true_stays_up_until_sigterm(host: Host, tmp_path: Path) -> None:
    log = tmp_path / "stderr"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, str(DOCKER / "install-cni")], env=host.env(SLEEP="true"),
            stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "sleeping (SLEEP=true)" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        assert host.conflist.is_file()
        assert proc.poll() is None  # installed, and still running
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, log.read_text()
    assert "SIGTERM received, exiting" in log.read_text()


def test_sleep_false_exits_after_the_install(host: Host) -> None:
    res = host.install(SLEEP="false")
    assert res.returncode == 0
    assert "installed " + str(host.conflist) in res.stdout
    assert '"k8s-pod-network"' in res.stdout  # the written configuration, as Calico prints it
