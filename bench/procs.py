"""Processes and namespaces the benchmarks run in, and what /proc says of them."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
READY_TIMEOUT = 60.0


@contextlib.contextmanager
def namespace(tag: str) -> Iterator[str]:
    """A fresh network namespace with only ``lo`` up; deleted on the way out."""
    name = f"bench-{os.getpid()}-{tag}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@contextlib.contextmanager
def process(
    ns: str, argv: list[str], stdout: Any, stderr: Any, *, cwd: Path = ROOT, stdin: Any = None
) -> Iterator[subprocess.Popen[str]]:
    """A process in ``ns``, ended on the way out (SIGTERM, then SIGKILL), by its PID.

    ``ip netns exec`` enters the namespace and execs the command, so the PID is
    the command's own and /proc/PID/stat measures the speaker, not a wrapper.
    """
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, *argv],
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        cwd=cwd,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def cpu_split(pid: int) -> tuple[float, float]:
    """utime and stime of ``pid`` so far, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        # The command name may hold spaces; the fields after its ')' do not.
        fields = f.read().rpartition(")")[2].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` so far."""
    return sum(cpu_split(pid))


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb(pid: int) -> float:
    """The high-water mark of ``pid``'s resident set (VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


class LineReader:
    """JSON lines from a child's stdout, read on a thread so waits can time out."""

    def __init__(self, proc: subprocess.Popen[str], name: str = "load generator") -> None:
        self.proc = proc
        self.name = name
        self.lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                self.lines.put(json.loads(line))
        self.lines.put(None)

    def wait_for(self, event: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                record = self.lines.get(timeout=max(left, 0.001))
            except queue.Empty:
                raise TimeoutError(f"{self.name}: no {event!r} within {timeout:.0f}s") from None
            if record is None:
                raise RuntimeError(f"{self.name} exited (code {self.proc.wait()}) before {event!r}")
            if record.get("event") == event:
                return record


def wait_until(what: str, check: Callable[[], bool], proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while not check():
        if proc.poll() is not None:
            raise RuntimeError(f"{what}: exited with code {proc.returncode} before ready")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not ready within {READY_TIMEOUT:.0f}s")
        time.sleep(0.05)
