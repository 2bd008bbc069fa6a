"""The node image's entrypoint: install the CNI plugin, then run the node's
processes in the foreground as PID 1 (calico-node's start-up, without runit).

    entrypoint                  install-cni once (unless INSTALL_CNI=false), then run
                                ``bgpd <name>`` for each name in BGPD_PROCESSES
                                (default ``node``; ``node policy`` with the
                                NetworkPolicy agent; ``reflector`` on route reflectors)
    entrypoint install-cni      the install alone, as an init container runs it
                                (SLEEP=true keeps it running afterwards)
    entrypoint CMD [ARG...]     exec CMD (``bgpctl node status``, ``sh``): no supervision

The processes run in their own process group, so a terminal's Ctrl-C reaches them
once, through us.  PID 1 gets no default signal handling from the kernel: a
SIGTERM (kubelet stopping the pod), SIGINT, SIGHUP, SIGUSR1 or SIGUSR2 is passed
on to every process, and we exit when they have.  When one process ends on its
own, the others get SIGTERM (SIGKILL after BGPD_STOP_TIMEOUT seconds, default 20),
and the container exits with the status of the one that ended first, so that the
kubelet restarts the pod.  Orphans the processes leave are reaped as they exit.

Settings: INSTALL_CNI (true), BGPD_PROCESSES (``node``), BGPD_COMMAND (``bgpd``),
BGPD_STOP_TIMEOUT (20); the install's and the processes' own are in
docker/README.md.  Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from types import FrameType

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


def log(message: str) -> None:
    print(f"entrypoint: {message}", file=sys.stderr, flush=True)


def exit_status(code: int) -> int:
    """A shell's convention: 128 + N for a process ended by signal N."""
    return 128 - code if code < 0 else code


class Supervisor:
    """Runs ``commands`` side by side until the first ends or a signal comes."""

    def __init__(self, commands: Sequence[Sequence[str]], stop_timeout: float) -> None:
        self.commands = [list(c) for c in commands]
        self.stop_timeout = stop_timeout
        self.children: dict[int, subprocess.Popen[bytes]] = {}
        self.signalled: int | None = None  # the signal we were stopped with
        self.first: tuple[str, int] | None = None  # (command, code) of the first to end

    def _forward(self, signum: int, _frame: FrameType | None) -> None:
        if self.signalled is None:
            log(f"{signal.Signals(signum).name} received; passing it on")
            self.signalled = signum
        self._send(signum)

    def _send(self, signum: int) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def _kill(self, _signum: int, _frame: FrameType | None) -> None:
        log(f"still running after {self.stop_timeout:g}s: SIGKILL")
        self._send(signal.SIGKILL)

    def _stop_others(self) -> None:
        self._send(signal.SIGTERM)
        signal.signal(signal.SIGALRM, self._kill)
        signal.setitimer(signal.ITIMER_REAL, self.stop_timeout)

    def run(self) -> int:
        for signum in FORWARDED:
            signal.signal(signum, self._forward)
        for command in self.commands:
            try:
                proc = subprocess.Popen(command, process_group=0)
            except OSError as exc:
                log(f"cannot start {' '.join(command)}: {exc}")
                self.first = (" ".join(command), 127)
                self._stop_others()
                break
            self.children[proc.pid] = proc
            log(f"started {' '.join(command)} (pid {proc.pid})")
            if self.signalled is not None:  # came before this one started
                os.kill(proc.pid, self.signalled)
        return self._wait()

    def _wait(self) -> int:
        clean = True
        while self.children:
            try:
                pid, status = os.wait()  # any child: orphans are ours to reap too
            except ChildProcessError:
                break
            proc = self.children.pop(pid, None)
            if proc is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            proc.returncode = code
            name = " ".join(proc.args)  # type: ignore[arg-type]
            if code not in (0, -(self.signalled or 0), -signal.SIGTERM):
                clean = False
            if self.first is None:
                self.first = (name, code)
                if self.signalled is None:
                    log(f"{name} ended with status {exit_status(code)}; stopping the others")
                    self._stop_others()
            log(f"{name} (pid {pid}) ended with status {exit_status(code)}")
        signal.setitimer(signal.ITIMER_REAL, 0)
        if self.signalled is not None and self.first is not None:
            # Stopped from outside: a clean stop is status 0.
            return 0 if clean else exit_status(self.first[1])
        return exit_status(self.first[1]) if self.first else 0


def process_commands(environ: Mapping[str, str]) -> list[list[str]]:
    program = environ.get("BGPD_COMMAND") or "bgpd"
    names = (environ.get("BGPD_PROCESSES") or "node").replace(",", " ").split()
    return [[program, name] for name in names]


def _false(environ: Mapping[str, str], name: str) -> bool:
    return environ.get(name, "").strip().lower() in ("false", "0", "no")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    environ = os.environ
    sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
    import install_cni  # noqa: PLC0415 - beside this file, in the image and in tests

    if args[:1] == ["install-cni"]:
        return install_cni.main(args[1:])
    if args:
        try:
            os.execvp(args[0], args)
        except OSError as exc:
            log(f"cannot run {args[0]}: {exc}")
            return 127
    if not _false(environ, "INSTALL_CNI"):
        status = install_cni.run(environ, sleep=False)
        if status:
            log("install-cni failed; not starting the node's processes")
            return status
    try:
        timeout = float(environ.get("BGPD_STOP_TIMEOUT") or 20)
    except ValueError:
        log(f"BGPD_STOP_TIMEOUT: {environ['BGPD_STOP_TIMEOUT']!r} is not a number of seconds")
        return 2
    return Supervisor(process_commands(environ), timeout).run()


if __name__ == "__main__":
    sys.exit(main())
