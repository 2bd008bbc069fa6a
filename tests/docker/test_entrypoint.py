"""docker/entrypoint: install-cni once, then the node's processes in the foreground,
signals passed on, the container's status theirs.  The processes are a stand-in
``bgpd`` (BGPD_COMMAND) that records its start and the signals it gets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import require_programs, require_root
from tests.docker.harness import DOCKER, Host

FAKE = """\
#!{python}
import os, signal, sys, time
name = sys.argv[1]
folder = os.environ["FAKE_DIR"]
mode = os.environ.get("FAKE_" + name.upper(), "wait")
def record(what):
    with open(os.path.join(folder, name + "." + what), "w") as f:
        f.write("%d %d" % (os.getpid(), os.getppid()))
def on_term(signum, frame):
    record(signal.Signals(signum).name)
    sys.exit(0)
if mode == "ignore":
    signal.signal(signal.SIGTERM, lambda s, f: record("SIGTERM"))
else:
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
record("started")
if mode.startswith("exit"):
    # Not before the others can take a signal (FAKE_WAIT: their names).
    for other in filter(None, os.environ.get("FAKE_WAIT", "").split(",")):
        while not os.path.exists(os.path.join(folder, other + ".started")):
            time.sleep(0.01)
    sys.exit(int(mode[4:]))
while True:
    time.sleep(0.05)
"""


class Node:
    """An entrypoint process with fake processes, in tmp_path."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path / "procs"
        self.dir.mkdir()
        self.fake = tmp_path / "fake-bgpd"
        self.fake.write_text(FAKE.format(python=sys.executable))
        self.fake.chmod(0o755)
        self.host = Host(tmp_path / "host")
        self.log = tmp_path / "entrypoint.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self, **extra: str) -> dict[str, str]:
        defaults = {
            "BGPD_COMMAND": str(self.fake), "FAKE_DIR": str(self.dir), "INSTALL_CNI": "false"
        }
        return self.host.env(**{**defaults, **extra})

    def start(self, *args: str, **extra: str) -> subprocess.Popen[bytes]:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(DOCKER / "entrypoint"), *args], env=self.env(**extra),
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        return self.proc

    def wait_for(self, *names: str) -> None:
        deadline = time.monotonic() + 60
        while not all((self.dir / n).exists() for n in names):
            assert self.proc is not None
            assert self.proc.poll() is None or all((self.dir / n).exists() for n in names), (
                self.log.read_text()
            )
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.02)

    def finish(self, timeout: float = 30) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return Node(tmp_path)


def test_sigterm_reaches_every_process_and_the_container_exits_0(node: Node) -> None:
    proc = node.start(BGPD_PROCESSES="node policy")
    node.wait_for("node.started", "policy.started")
    proc.send_signal(signal.SIGTERM)
    assert node.finish() == 0, node.log.read_text()
    assert (node.dir / "node.SIGTERM").exists()
    assert (node.dir / "policy.SIGTERM").exists()
    assert "SIGTERM received; passing it on" in node.log.read_text()


def test_as_pid_1_of_a_pid_namespace_sigterm_still_stops_everything(node: Node) -> None:
    """In a container the entrypoint is PID 1, which the kernel spares every signal
    it has no handler for; ours has, and passes SIGTERM on."""
    require_root()
    require_programs("unshare", package="util-linux")
    with open(node.log, "wb") as log:
        outer = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--kill-child", sys.executable,
             str(DOCKER / "entrypoint")],
            env=node.env(BGPD_PROCESSES="node policy"), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    node.proc = outer
    node.wait_for("node.started", "policy.started")
    for name in ("node", "policy"):
        assert (node.dir / f"{name}.started").read_text().split()[1] == "1"  # parent: PID 1
    (pid1,) = Path(f"/proc/{outer.pid}/task/{outer.pid}/children").read_text().split()
    os.kill(int(pid1), signal.SIGTERM)
    assert node.finish() == 0, node.log.read_text()
    assert (node.dir / "node.SIGTERM").exists()
    assert (node.dir / "policy.SIGTERM").exists()


def test_other_signals_are_passed_on_too(node: Node) -> None:
    proc = node.start(BGPD_PROCESSES="node")
    node.wait_for("node.started")
    proc.send_signal(signal.SIGHUP)
    assert node.finish() == 0, node.log.read_text()
    assert (node.dir / "node.SIGHUP").exists()


def test_one_process_ending_stops_the_others_with_its_status(node: Node) -> None:
    node.start(BGPD_PROCESSES="node,policy", FAKE_POLICY="exit3", FAKE_WAIT="node")
    assert node.finish() == 3, node.log.read_text()
    assert (node.dir / "node.SIGTERM").exists()  # stopped because policy ended
    assert "ended with status 3; stopping the others" in node.log.read_text()


def test_a_process_ignoring_sigterm_is_killed_after_the_stop_timeout(node: Node) -> None:
    node.start(
        BGPD_PROCESSES="node policy", FAKE_NODE="ignore", FAKE_POLICY="exit4",
        FAKE_WAIT="node", BGPD_STOP_TIMEOUT="0.5",
    )  # fmt: skip
    assert node.finish() == 4, node.log.read_text()
    assert (node.dir / "node.SIGTERM").exists()
    assert "SIGKILL" in node.log.read_text()


def test_default_process_is_bgpd_node(node: Node) -> None:
    proc = node.start()
    node.wait_for("node.started")
    assert sorted(p.name for p in node.dir.iterdir()) == ["node.started"]
    proc.send_signal(signal.SIGTERM)
    assert node.finish() == 0


def test_cni_is_installed_before_the_processes_start(node: Node) -> None:
    proc = node.start(INSTALL_CNI="true", SLEEP="true")  # SLEEP does not hold it up here
    node.wait_for("node.started")
    assert node.host.conflist.is_file()
    assert (node.host.bin / "bgpd-cni").is_file()
    assert node.host.conflist.stat().st_mtime <= (node.dir / "node.started").stat().st_mtime
    proc.send_signal(signal.SIGTERM)
    assert node.finish() == 0


def test_a_failed_install_starts_nothing(node: Node) -> None:
    node.start(INSTALL_CNI="true", CNI_NETWORK_CONFIG="{not json")
    assert node.finish() == 1
    assert list(node.dir.iterdir()) == []
    assert "not starting the node's processes" in node.log.read_text()


def test_a_missing_program_is_status_127(node: Node) -> None:
    node.start(BGPD_COMMAND="/nonexistent/bgpd")
    assert node.finish() == 127
    assert "cannot start /nonexistent/bgpd node" in node.log.read_text()


def test_install_cni_argument_runs_the_install_alone(node: Node) -> None:
    node.start("install-cni", SLEEP="false")
    assert node.finish() == 0, node.log.read_text()
    assert node.host.conflist.is_file()
    assert list(node.dir.iterdir()) == []


def test_a_command_is_executed_in_place(node: Node) -> None:
    proc = node.start("/bin/sh", "-c", 'echo "pid $$"; exit 7')
    assert node.finish() == 7
    assert f"pid {proc.pid}" in node.log.read_text()  # exec: the same process


def test_the_scripts_are_executable() -> None:
    for name in ("entrypoint", "install-cni"):
        path = DOCKER / name
        assert os.access(path, os.X_OK), f"{path} is not executable"
        assert path.read_text().startswith("#!/usr/bin/env python3\n")
