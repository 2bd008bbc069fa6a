"""``bgpd-ipam``: our IPAM as a CNI IPAM plugin of its own, for chains whose main
plugin is another one (``bridge``, ``ptp``...).  It answers with addresses only (an
IPAM result has no interfaces) and shares everything else with ``bgpd-cni``."""

from __future__ import annotations

import os
import sys

from . import ipam, plugin, spec
from .endpoints import handle_of
from .spec import CHECK_FAILED, INVALID_CONFIG, CniError

TYPE_CHECKING = False  # not from typing: its import costs the CNI plugin ~4 ms

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .spec import Env


def _own(config: dict[str, Any]) -> dict[str, Any]:
    """The configuration with the ipam type forced to ours: this is the plugin."""
    section = ipam.ipam_section(config)
    return {**config, "ipam": {**section, "type": ipam.OURS[0]}}


def cmd_add(env: Env, config: dict[str, Any]) -> dict[str, Any]:
    config = _own(config)
    return ipam.assign(ipam.Context(config), env, config)


def cmd_del(env: Env, config: dict[str, Any]) -> None:
    config = _own(config)
    ipam.release(ipam.Context(config), env, config)


def cmd_check(env: Env, config: dict[str, Any]) -> None:
    config = _own(config)
    previous = config.get("prevResult")
    if not isinstance(previous, dict):
        raise CniError(INVALID_CONFIG, "prevResult: required for CHECK")
    ctx = ipam.Context(config)
    handle = handle_of(ipam.network_name(config), env.container_id)
    have = ipam.held(ctx, handle)
    want = {str(ip.get("address", "")).partition("/")[0] for ip in previous.get("ips") or ()}
    if have != want:
        raise CniError(CHECK_FAILED, f"IPAM holds {sorted(have)} for {handle}, not {sorted(want)}")


def cmd_gc(env: Env, config: dict[str, Any]) -> None:
    config = _own(config)
    network = ipam.network_name(config)
    valid = config.get("cni.dev/valid-attachments", [])
    if not isinstance(valid, list) or not all(isinstance(v, dict) for v in valid):
        raise CniError(INVALID_CONFIG, "cni.dev/valid-attachments: must be a list of objects")
    keep = {v.get("containerID") for v in valid}
    ctx = ipam.Context(config)
    prefix = f"{network}."
    for record in ctx.store.list("ipam/handles/"):
        handle = record.value.get("handleID", "")
        stale = handle.startswith(prefix) and handle[len(prefix) :] not in keep
        if stale and plugin.handle_on_node(ctx, handle):
            ctx.ipam.release_handle(handle)


def cmd_status(env: Env, config: dict[str, Any]) -> None:
    plugin.cmd_status(env, _own(config))


COMMANDS: dict[str, Callable[[Env, dict[str, Any]], dict[str, Any] | None]] = {
    "ADD": cmd_add,
    "DEL": cmd_del,
    "CHECK": cmd_check,
    "GC": cmd_gc,
    "STATUS": cmd_status,
}


def main() -> int:
    return plugin.leave(plugin.finish(*plugin.run(os.environ, sys.stdin.buffer.read(), COMMANDS)))


__all__ = ["main", "spec"]

if __name__ == "__main__":
    sys.exit(main())
