"""What every process on a node finds the same way (DESIGN.md, issue 7): the state
directory, the node's name, and whether a process that left a record behind is
still running.  Cheap to import: the CNI plugin uses it once per pod."""

from __future__ import annotations

import os

DEFAULT_STATE_DIR = "/var/lib/bgpd"


def state_dir() -> str:
    """``BGPD_STATE_DIR``, else ``/var/lib/bgpd``."""
    return os.environ.get("BGPD_STATE_DIR") or DEFAULT_STATE_DIR


def node_name(state: str) -> str:
    """``NODENAME`` (as calico-node reads it), else the name the node agent wrote to
    ``<state>/nodename``, else the hostname."""
    value = os.environ.get("NODENAME")
    if value:
        return value
    try:
        with open(f"{state}/nodename") as f:
            written = f.read().strip()
        if written:
            return written
    except OSError:
        pass
    return os.uname().nodename


def api_socket_path(state: str, node: str) -> str:
    """The unix socket a node agent always serves its status API on."""
    return f"{state}/run/api-{node}.sock"


def pid_alive(pid: object) -> bool:
    """Whether process ``pid`` runs (in this PID namespace: the directory datastore
    never spans machines)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
