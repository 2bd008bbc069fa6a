"""A real etcd cluster on loopback, for the lab, the tests and the benchmarks.

``EtcdCluster(base, members=3).start()`` runs that many ``etcd`` processes (the
Debian package etcd-server) on free loopback ports, each with its data directory
under ``base``; ``endpoints`` is what ``--etcd-endpoints`` takes.  Members can be
stopped and started again (``stop_member``/``start_member``: same name, data and
ports, as an operator's restart), and ``close`` stops every process it started,
by PID.  Nothing here is for production: a real cluster is the operator's.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from ..cni.netlink import enter_netns, netns_path
from ..datastore.base import DatastoreError
from ..datastore.etcd import EtcdSettings, EtcdStore

ETCD = "etcd"


def available() -> bool:
    return shutil.which(ETCD) is not None


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 now."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class EtcdMember:
    def __init__(
        self, name: str, data_dir: Path, client_port: int, peer_port: int,
        host: str = "127.0.0.1",
    ) -> None:
        self.host = host
        self.name = name
        self.data_dir = data_dir
        self.client_port = client_port
        self.peer_port = peer_port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def client_url(self) -> str:
        return f"http://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class EtcdCluster:
    """``members`` etcd processes forming one cluster (see the module)."""

    def __init__(
        self, base: str | Path, members: int = 1, snapshot_count: int = 0,
        host: str = "127.0.0.1", netns: str | None = None,
    ) -> None:
        self.base = Path(base)
        # A namespace of our own has every port free; loopback here is shared.
        ports = [2379 + i for i in range(2 * members)] if netns else free_ports(2 * members)
        self.host = host
        self.netns = netns
        self.members = [
            EtcdMember(f"m{i}", self.base / f"m{i}", ports[2 * i], ports[2 * i + 1], host)
            for i in range(members)
        ]
        self.token = f"bgpd-lab-{os.getpid()}-{ports[0]}"
        self.past_pids: list[int] = []  # every process started, for leak checks
        self.snapshot_count = snapshot_count

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    @property
    def endpoints_text(self) -> str:
        return ",".join(self.endpoints)

    def _command(self, member: EtcdMember) -> list[str]:
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        inside = ["ip", "netns", "exec", self.netns] if self.netns else []
        command = [*inside,
            ETCD, "--name", member.name, "--data-dir", str(member.data_dir),
            "--listen-client-urls", member.client_url,
            "--advertise-client-urls", member.client_url,
            "--listen-peer-urls", member.peer_url,
            "--initial-advertise-peer-urls", member.peer_url,
            "--initial-cluster", initial, "--initial-cluster-token", self.token,
            "--initial-cluster-state", "new",
            "--log-level", "warn", "--logger", "zap",
        ]  # fmt: skip
        if self.snapshot_count:
            command += ["--snapshot-count", str(self.snapshot_count)]
        return command

    def start_member(self, index: int) -> None:
        member = self.members[index]
        if member.running:
            return
        member.data_dir.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.base / f"{member.name}.log", "ab")  # noqa: SIM115 (kept by the process)
        with log:
            member.process = subprocess.Popen(
                self._command(member), stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        self.past_pids.append(member.process.pid)

    def stop_member(self, index: int, kill: bool = False) -> None:
        member = self.members[index]
        process = member.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        member.process = None

    def start(self, timeout: float = 30.0) -> EtcdCluster:
        for i in range(len(self.members)):
            self.start_member(i)
        self.wait_ready(timeout)
        return self

    def store(self, prefix: str = "/bgpd/", **kwargs: object) -> EtcdStore:
        settings = EtcdSettings(self.endpoints, prefix, **kwargs)  # type: ignore[arg-type]
        if self.netns:
            return NetnsEtcdStore(settings, self.netns)
        return EtcdStore(settings)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until a linearizable read succeeds (a leader and a quorum), or raise."""
        deadline = time.monotonic() + timeout
        store = self.store()
        last: Exception | None = None
        try:
            while time.monotonic() < deadline:
                for member in self.members:
                    if member.process is not None and member.process.poll() is not None:
                        raise RuntimeError(f"etcd {member.name} exited: {self.log_tail(member)}")
                try:
                    store.check()
                    return
                except DatastoreError as exc:
                    last = exc
                    time.sleep(0.1)
        finally:
            store.close()
        raise TimeoutError(f"etcd not ready after {timeout:.0f} s: {last}")

    def log_tail(self, member: EtcdMember, lines: int = 10) -> str:
        with contextlib.suppress(OSError):
            text = (self.base / f"{member.name}.log").read_text(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return ""

    def close(self) -> None:
        for i in range(len(self.members)):
            self.stop_member(i)

    def __enter__(self) -> EtcdCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class NetnsEtcdStore(EtcdStore):
    """An EtcdStore whose connections are made inside network namespace ``netns``
    (the lab's etcd lives in its fabric namespace): a socket stays in the namespace
    it was created in, so only the connect runs there.  Synchronous calls only."""

    def __init__(self, settings: EtcdSettings, netns: str) -> None:
        super().__init__(settings)
        self.netns = netns

    def _connect(self, index: int) -> socket.socket:
        with enter_netns(netns_path(self.netns)):
            return super()._connect(index)
