"""The lab's processes: one node agent per node namespace (and, with the lab's
``policy``, one NetworkPolicy agent beside it), and the helpers that talk to them.

An agent is ``python -m bgpd node --state-dir DIR --node-name NAME --api-port 0``
run with ``ip netns exec <node ns>`` (which execs it, so the PID we hold is the
agent's own: signals and /proc figures reach it, not a wrapper).  Each runs in
a session of its own, so a Ctrl-C typed at the lab's terminal reaches the lab
only, which then ends the agents in order.  Output goes to
``<state>/logs/<node>.log``, each start appending a header line.

The agent's read-only API is HTTP on the unix socket ``<state>/run/api-<node>.sock``
(``bgpd/node/status.py`` has the shapes); :func:`api_get` is a minimal client.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..ctl.node import api_connection
from ..datastore.local import api_socket_path
from .topology import LabError, NodeNet

STOP_TIMEOUT = 10.0


def api_get(socket_path: str, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """``GET path`` on the agent's unix socket: (HTTP status, body).  OSError
    when nobody listens (the agent not started yet, or gone)."""
    conn = api_connection(f"unix:{socket_path}", timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def python_module(*args: str) -> list[str]:
    """This interpreter running a module of this package, wherever it is installed."""
    return [sys.executable, "-m", *args]


@dataclass
class Agent:
    """The node agent of one lab node (``role`` "node"), or its policy agent ("policy")."""

    net: NodeNet
    state_dir: Path
    extra_args: tuple[str, ...] = ()
    role: str = "node"
    proc: subprocess.Popen[bytes] | None = None
    runs: int = 0
    past_pids: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.net.name

    @property
    def log_path(self) -> Path:
        suffix = "" if self.role == "node" else f"-{self.role}"
        return self.state_dir / "logs" / f"{self.name}{suffix}.log"

    @property
    def socket_path(self) -> str:
        if self.role == "policy":
            return f"{self.state_dir}/run/policy-{self.name}.sock"
        return api_socket_path(str(self.state_dir), self.name)

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def argv(self) -> list[str]:
        return [
            "ip", "netns", "exec", self.net.ns,
            *python_module("bgpd", self.role), "--state-dir", str(self.state_dir),
            "--node-name", self.name,
            *(("--api-port", "0") if self.role == "node" else ("--metrics-port", "0")),
            *self.extra_args,
        ]  # fmt: skip

    def start(self) -> None:
        if self.running():
            raise LabError(f"{self.name}: the agent is running already (pid {self.pid})")
        self.runs += 1
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"---- lab: start {self.runs} of {self.name} at {stamp}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=str(self.state_dir),
            )  # fmt: skip
        self.past_pids.append(self.proc.pid)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the agent (by its PID)."""
        if self.proc is None or self.proc.poll() is not None:
            raise LabError(f"{self.name}: the agent is not running")
        os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise LabError(f"{self.name}: agent pid {self.proc.pid} still running") from None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, and SIGKILL if it is still there after ``timeout``; the exit
        status (None if it was not running)."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout)
        return proc.returncode

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        return api_get(self.socket_path, path, timeout)

    def get_json(self, path: str) -> Any:
        status, body = self.get(path)
        if status != 200:
            raise LabError(f"{self.name}: GET {path}: HTTP {status}: {body[:200]!r}")
        return json.loads(body)

    def ready(self) -> bool:
        """/readyz answers 200 (False while the socket is not there yet)."""
        try:
            return self.get("/readyz", timeout=2)[0] == 200
        except OSError:
            return False

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
