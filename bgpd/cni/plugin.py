"""``bgpd-cni``: the CNI plugin the container runtime runs for every pod
(CALICO.md §5; spec 1.1.0).

One invocation is one operation.  The start-up path is part of the goal (a pod
start waits for it): this module and what it imports use only cheap standard
modules (no ``socket``, ``typing``, ``dataclasses``, pydantic or pyroute2), and
the launcher runs Python without ``site`` (``bgpd.cni.install``).

ADD writes the endpoint record first (``creating``), allocates, builds the veth
(``dataplane.add``), and rewrites the record ``ready``; every step registers its
undo, run in reverse on any failure, so a failed ADD leaves no interface, address
or record.  DEL is idempotent.  CHECK compares the kernel and IPAM with the
record and ``prevResult``.  GC releases this network's attachments not in
``cni.dev/valid-attachments``.  STATUS fails with 50 while no ADD could succeed.
"""

from __future__ import annotations

import os
import sys

from ..datastore import codec, local
from ..datastore.base import DatastoreError, Unavailable
from . import dataplane, ipam, spec
from .endpoints import endpoint_key, handle_of, node_endpoints
from .netlink import NetlinkError
from .spec import (
    CHECK_FAILED,
    INTERNAL,
    INVALID_CONFIG,
    NOT_AVAILABLE,
    TRY_AGAIN_LATER,
    UNKNOWN_CONTAINER,
    CniError,
    Env,
)

TYPE_CHECKING = False  # not from typing: its import costs the CNI plugin ~4 ms

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from ..datastore.base import Record

HOST_MAC_TEXT = "ee:ee:ee:ee:ee:ee"


def parse_config(data: bytes) -> dict[str, Any]:
    try:
        config = codec.loads(data or b"null")
    except ValueError as exc:
        raise CniError(spec.DECODE_FAILURE, f"network configuration is not JSON: {exc}") from None
    if not isinstance(config, dict):
        raise CniError(spec.DECODE_FAILURE, "network configuration must be a JSON object")
    return config


def _mtu(config: dict[str, Any]) -> int:
    value = config.get("mtu", 0)
    if not isinstance(value, int) or isinstance(value, bool) or not (0 <= value <= 65535):
        raise CniError(INVALID_CONFIG, f"mtu: {value!r} is not an MTU (0: automatic)")
    if 0 < value < 68:
        raise CniError(INVALID_CONFIG, f"mtu: {value} is below the IPv4 minimum of 68")
    return value


def _run_undo(undo: list[Callable[[], object]]) -> None:
    for step in reversed(undo):
        try:
            step()
        except Exception as exc:
            print(f"bgpd-cni: undo step failed: {exc}", file=sys.stderr)


# -- ADD ------------------------------------------------------------------------


def cmd_add(env: Env, config: dict[str, Any]) -> dict[str, Any]:
    network = ipam.network_name(config)
    mtu = _mtu(config)
    ipam_type = ipam.ipam_section(config)["type"]
    ctx = ipam.Context(config)
    namespace, pod = env.pod()
    host_name = dataplane.host_veth_name(namespace, pod, env.container_id)
    key = endpoint_key(ctx.node, env.container_id, env.ifname)
    record = {
        "containerID": env.container_id, "ifname": env.ifname, "netns": env.netns,
        "hostIfname": host_name, "network": network, "node": ctx.node,
        "namespace": namespace, "pod": pod, "handle": handle_of(network, env.container_id),
        "ipam": ipam_type, "state": "creating", "pid": os.getpid(),
    }  # fmt: skip
    # Bad configuration and a missing netns are refused before anything is written.
    ipam.check_config(ctx, env, config)
    os.close(dataplane.open_netns(env.netns))
    undo: list[Callable[[], object]] = []
    try:
        stale = ctx.store.get(key)
        if stale is not None:
            _clear_stale(ctx, env, config, stale)
        # Endpoint records describe veths, which do not outlive a machine crash:
        # no fsync for them (the allocations they point at are durable).
        ctx.store.put(key, record, durable=False)
        undo.append(lambda: ctx.store.delete(key, durable=False))
        allocated = ipam.assign(ctx, env, config)
        undo.append(lambda: ipam.release(ctx, env, config))
        addresses, routes = _from_ipam(allocated)
        if not mtu:
            from ..ipam.pools import load_pools  # noqa: PLC0415 - only without a configured MTU
            from .mtu import pod_mtu  # noqa: PLC0415
            from .netlink import Rtnl  # noqa: PLC0415

            with Rtnl() as host:
                mtu = pod_mtu(ctx.state_dir, load_pools(ctx.store), host)
        made = dataplane.add(
            env.netns, env.ifname, host_name, mtu=mtu, addresses=addresses, undo=undo,
            routes=routes,
        )  # fmt: skip
        mac = dataplane.mac_text(made.container_mac)
        ready = {
            **record, "state": "ready", "mtu": mtu, "mac": mac,
            "ips": [f"{a.text}/{a.host_length}" for a in addresses],
            "routes": [_route_text(r) for r in routes or ()],
        }  # fmt: skip
        del ready["pid"]
        ctx.store.put(key, ready, durable=False)
    except BaseException:
        _run_undo(undo)
        raise
    result: dict[str, Any] = {
        "interfaces": [
            {"name": host_name, "mac": HOST_MAC_TEXT},
            {"name": env.ifname, "mac": mac, "mtu": mtu, "sandbox": env.netns},
        ],
        "ips": [{"address": f"{a.text}/{a.host_length}", "interface": 1} for a in addresses],
        "routes": [{"dst": _route_text(r)} for r in dataplane.pod_routes(
            {a.family for a in addresses}, routes)],
        "dns": allocated.get("dns") or {},
    }  # fmt: skip
    return result


def _route_text(route: tuple[int, bytes, int]) -> str:
    from .netlink import inet_ntop  # noqa: PLC0415 - loaded by dataplane already

    family, dst, length = route
    return f"{inet_ntop(family, dst)}/{length}"


def _from_ipam(
    allocated: dict[str, Any],
) -> tuple[list[dataplane.Address], list[tuple[int, bytes, int]] | None]:
    """The pod's addresses (each used as /32 or /128, whatever mask IPAM gave, as
    Calico's plugin does) and any custom routes a delegated IPAM returned."""
    addresses = []
    for ip in allocated.get("ips") or ():
        text = str(ip.get("address", "")).partition("/")[0]
        try:
            addresses.append(dataplane.Address(text))
        except OSError:
            raise CniError(INVALID_CONFIG, f"ipam: returned a bad address {text!r}") from None
    if not addresses:
        raise CniError(spec.NO_ADDRESSES, "ipam: returned no address")
    routes = []
    for route in allocated.get("routes") or ():
        dst = str(route.get("dst", ""))
        try:
            routes.append(_route_tuple(dst))
        except (OSError, ValueError):
            raise CniError(INVALID_CONFIG, f"ipam: returned a bad route {dst!r}") from None
    return addresses, routes or None


def _route_tuple(dst: str) -> tuple[int, bytes, int]:
    """``a.b.c.d/n`` (or IPv6) as (family, packed, length)."""
    from .netlink import AF_INET, AF_INET6, inet_pton  # noqa: PLC0415

    address, _, length = dst.partition("/")
    family = AF_INET6 if ":" in address else AF_INET
    return family, inet_pton(family, address), int(length)


def _clear_stale(ctx: ipam.Context, env: Env, config: dict[str, Any], stale: Record) -> None:
    """A record for this very attachment: an ADD repeated without DEL (refused, as
    the spec wants, when the interface is really there), or left by a plugin that
    died (its leftovers removed first)."""
    value = stale.value
    if value.get("state") == "ready":
        from .netlink import Rtnl  # noqa: PLC0415

        try:
            with Rtnl(env.netns) as container:
                present = container.link(env.ifname) is not None
        except OSError:
            present = False
        if present:
            raise CniError(
                spec.INTERFACE_EXISTS,
                f"interface {env.ifname} already exists in the container (ADD twice?)",
            )
    _cleanup(ctx, env, config, value)


def _cleanup(ctx: ipam.Context, env: Env, config: dict[str, Any], value: dict[str, Any]) -> None:
    """Remove what an endpoint record says was (or may have been) made."""
    ifname = value.get("ifname", env.ifname)
    dataplane.delete(value.get("netns", ""), ifname, _host_end(ctx, value))
    handle = value.get("handle")
    if handle and ipam.ipam_section(config)["type"] in ipam.OURS:
        ctx.ipam.release_handle(handle)


def _host_end(ctx: ipam.Context, value: dict[str, Any]) -> str | None:
    """The host veth a record names, to delete by name; None when another
    attachment's record names it too: a later sandbox of the same pod (same host
    name), whose ADD replaced this one's stale host end, owns it now."""
    name = value.get("hostIfname")
    if not name:
        return None
    this = (value.get("containerID"), value.get("ifname"))
    for record in node_endpoints(ctx.store, ctx.node):
        other = record.value
        if other.get("hostIfname") != name:
            continue
        if (other.get("containerID"), other.get("ifname")) != this:
            return None
    return str(name)


# -- DEL ------------------------------------------------------------------------


def cmd_del(env: Env, config: dict[str, Any]) -> None:
    ipam.network_name(config)
    ipam.ipam_section(config)
    ctx = ipam.Context(config)
    key = endpoint_key(ctx.node, env.container_id, env.ifname)
    record = ctx.store.get(key)
    ours = record is not None and record.value.get("containerID") == env.container_id
    host_name = _host_end(ctx, record.value) if record is not None and ours else None
    dataplane.delete(env.netns, env.ifname, host_name)
    ipam.release(ctx, env, config)
    if ours and record is not None:
        ctx.store.delete(key, durable=False)


# -- CHECK ----------------------------------------------------------------------


def cmd_check(env: Env, config: dict[str, Any]) -> None:
    if spec.version_tuple(config["cniVersion"]) < (0, 4, 0):
        raise CniError(spec.INCOMPATIBLE_VERSION, "CHECK needs cniVersion 0.4.0 or later")
    previous = config.get("prevResult")
    if not isinstance(previous, dict):
        raise CniError(INVALID_CONFIG, "prevResult: required for CHECK")
    ipam.network_name(config)
    section = ipam.ipam_section(config)
    ctx = ipam.Context(config)
    record = ctx.store.get(endpoint_key(ctx.node, env.container_id, env.ifname))
    if record is None or record.value.get("state") != "ready":
        what = f"{env.container_id}/{env.ifname}"
        raise CniError(UNKNOWN_CONTAINER, f"no attachment recorded for {what}")
    value = record.value
    ips = sorted(value["ips"])
    claimed = sorted(_host_prefix(str(ip.get("address", ""))) for ip in previous.get("ips") or ())
    if claimed != ips:
        raise CniError(CHECK_FAILED, f"prevResult has addresses {claimed}, ADD made {ips}")
    addresses = [dataplane.Address(ip.partition("/")[0]) for ip in ips]
    routes = _routes_of(value)
    dataplane.check(
        env.netns, env.ifname, value["hostIfname"], mtu=value.get("mtu", 0),
        mac=value.get("mac", ""), addresses=addresses, routes=routes,
    )  # fmt: skip
    if section["type"] in ipam.OURS:
        have = ipam.held(ctx, value["handle"])
        want = {a.text for a in addresses}
        if have != want:
            raise CniError(
                CHECK_FAILED, f"IPAM holds {sorted(have)} for {value['handle']}, not {sorted(want)}"
            )


def _host_prefix(address: str) -> str:
    """An address as the pod has it: /32 or /128, whatever mask was given."""
    bare = address.partition("/")[0]
    return f"{bare}/{128 if ':' in bare else 32}"


def _routes_of(value: dict[str, Any]) -> list[tuple[int, bytes, int]] | None:
    """The custom pod routes a record keeps (a delegated IPAM's), None for the default."""
    return [_route_tuple(text) for text in value.get("routes") or ()] or None


# -- GC and STATUS ----------------------------------------------------------------


def cmd_gc(env: Env, config: dict[str, Any]) -> None:
    """Release every attachment of this network on this node that the runtime no
    longer knows (spec 1.1.0 GC), including ones a killed plugin left half-made."""
    network = ipam.network_name(config)
    ipam.ipam_section(config)
    valid = config.get("cni.dev/valid-attachments", [])
    if not isinstance(valid, list) or not all(isinstance(v, dict) for v in valid):
        raise CniError(INVALID_CONFIG, "cni.dev/valid-attachments: must be a list of objects")
    keep = {(v.get("containerID"), v.get("ifname")) for v in valid}
    keep_containers = {v.get("containerID") for v in valid}
    ctx = ipam.Context(config)
    ctx.store.sweep()
    for record in node_endpoints(ctx.store, ctx.node):
        value = record.value
        if value.get("network") != network:
            continue
        if (value.get("containerID"), value.get("ifname")) in keep:
            continue
        if value.get("state") == "creating" and local.pid_alive(value.get("pid")):
            continue  # an ADD still under way
        _cleanup(ctx, env, config, value)
        ctx.store.delete(record.key, expect=record.revision, durable=False)
    # Handles with no record at all: a plugin killed between IPAM and the record
    # cannot leave one (the record comes first), but a crashed DEL can.
    prefix = f"{network}."
    recorded = {r.value.get("containerID") for r in node_endpoints(ctx.store, ctx.node)}
    for record in ctx.store.list("ipam/handles/"):
        handle = record.value.get("handleID", "")
        container = handle[len(prefix):]
        if not handle.startswith(prefix) or container in keep_containers:
            continue
        if container not in recorded and handle_on_node(ctx, handle):
            ctx.ipam.release_handle(handle)


def handle_on_node(ctx: ipam.Context, handle: str) -> bool:
    """Whether any address of ``handle`` was allocated for this node."""
    return any(
        ((block.attributes_of(o) or {}).get("secondary") or {}).get("node") == ctx.node
        for block, o in ctx.ipam.allocations(handle)
    )


def cmd_status(env: Env, config: dict[str, Any]) -> None:
    """Exit 0 only if an ADD could be served now: the datastore writable and a
    pool usable by this node for each family the config assigns."""
    section = ipam.ipam_section(config)
    try:
        ctx = ipam.Context(config)
        ctx.store.check()
        if section["type"] in ipam.OURS:
            for family, flag, default in ((4, "assign_ipv4", True), (6, "assign_ipv6", False)):
                if ipam._flag(section, flag, default) and not ctx.ipam.eligible_pools(family, None):
                    what = f"no IPv{family} pool is usable on node {ctx.node}"
                    raise CniError(NOT_AVAILABLE, what)
    except (Unavailable, CniError) as exc:
        if isinstance(exc, CniError) and exc.code == NOT_AVAILABLE:
            raise
        raise CniError(NOT_AVAILABLE, f"datastore unavailable: {exc}") from None


def cmd_version(config: dict[str, Any]) -> dict[str, Any]:
    asked = config.get("cniVersion")
    version = asked if asked in spec.SUPPORTED else spec.SPEC_VERSION
    return {"cniVersion": version, "supportedVersions": list(spec.SUPPORTED)}


COMMANDS: dict[str, Callable[[Env, dict[str, Any]], dict[str, Any] | None]] = {
    "ADD": cmd_add,
    "DEL": cmd_del,
    "CHECK": cmd_check,
    "GC": cmd_gc,
    "STATUS": cmd_status,
}


def run(
    environ: Mapping[str, str], data: bytes,
    commands: Mapping[str, Callable[[Env, dict[str, Any]], dict[str, Any] | None]] = COMMANDS,
) -> tuple[int, dict[str, Any] | None]:  # fmt: skip
    """One invocation: (exit status, JSON to print or None)."""
    version = spec.SPEC_VERSION
    try:
        env = Env(environ)  # raises on a malformed CNI_ARGS
        env.require()
        if env.command == "VERSION":
            return 0, cmd_version(parse_config(data) if data.strip() else {})
        config = parse_config(data)
        version = spec.check_version(config.get("cniVersion"))
        if env.command in ("GC", "STATUS") and spec.version_tuple(version) < (1, 1, 0):
            raise CniError(
                spec.INCOMPATIBLE_VERSION,
                f"{env.command} needs cniVersion 1.1.0, config is {version}",
            )
        result = commands[env.command](env, config)
        if result is None:
            return 0, None
        return 0, spec.convert_result(result, version)
    except CniError as exc:
        return 1, exc.to_json(version)
    except Unavailable as exc:
        return 1, CniError(TRY_AGAIN_LATER, f"datastore: {exc}").to_json(version)
    except DatastoreError as exc:
        return 1, CniError(spec.IO_FAILURE, f"datastore: {exc}").to_json(version)
    except NetlinkError as exc:
        return 1, CniError(spec.KERNEL_ERROR, str(exc)).to_json(version)
    except Exception as exc:
        import traceback  # noqa: PLC0415

        trace = traceback.format_exc()
        print(trace, file=sys.stderr)
        return 1, CniError(INTERNAL, f"internal error: {exc!r}", trace).to_json(version)


def finish(status: int, out: dict[str, Any] | None) -> int:
    """Print the answer; the exit status."""
    if out is not None:
        sys.stdout.write(codec.dumps(out, sort_keys=False) + "\n")
    return status


def leave(status: int) -> int:
    """Exit at once, flushed: ``os._exit`` skips the interpreter's teardown
    (~5 ms a pod), which a one-shot process has no use for."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def main() -> int:
    return leave(finish(*run(os.environ, sys.stdin.buffer.read())))


if __name__ == "__main__":
    sys.exit(main())
