"""The IPAM step of the plugin, and the ``bgpd-ipam`` plugin on its own.

``ipam.type`` ``bgpd-ipam`` (or ``calico-ipam``, so that Calico conflists work
unchanged) runs our IPAM in-process: no second executable to start.  Any other
type is executed from ``CNI_PATH`` as the spec's delegation says; for
``host-local``, the placeholders ``usePodCidr`` and ``usePodCidrIPv6`` in its
subnets are first replaced by the node's pod CIDRs, as Calico's plugin does
(CALICO.md §4.5).

Settings, as Calico's: ``assign_ipv4`` (default true), ``assign_ipv6`` (default
false), ``ipv4_pools`` and ``ipv6_pools`` (names or CIDRs).
"""

from __future__ import annotations

import os

from ..datastore import codec, select
from ..datastore.base import DatastoreError, Unavailable
from ..ipam.allocator import NODES, ExhaustedError, Ipam, PoolError
from . import spec
from .endpoints import handle_of
from .spec import INVALID_CONFIG, NO_ADDRESSES, TRY_AGAIN_LATER, CniError

TYPE_CHECKING = False  # not from typing: its import costs the CNI plugin ~4 ms

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from ..datastore.base import Datastore
    from .spec import Env

OURS = ("bgpd-ipam", "calico-ipam")


def _flag(section: Mapping[str, Any], name: str, default: bool) -> bool:
    value = section.get(name)
    if value is None:
        return default
    if value is True or value is False:
        return bool(value)
    if value in ("true", "false"):
        return bool(value == "true")
    raise CniError(INVALID_CONFIG, f'ipam.{name}: must be "true" or "false", not {value!r}')


def _pools(section: Mapping[str, Any], name: str) -> list[str] | None:
    value = section.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise CniError(INVALID_CONFIG, f"ipam.{name}: must be a list of pool names or CIDRs")
    return value


class Context:
    """The datastore, node and IPAM one invocation works with."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.state_dir = spec.state_dir(config)
        try:
            chosen = select.from_cni(config)
        except DatastoreError as exc:
            raise CniError(INVALID_CONFIG, str(exc)) from None
        try:
            self.store: Datastore = chosen.open(self.state_dir)
        except Unavailable as exc:
            raise CniError(TRY_AGAIN_LATER, f"datastore: {exc}") from None
        except DatastoreError as exc:
            raise CniError(INVALID_CONFIG, f"datastore: {exc}") from None
        self.node = spec.node_name(config, self.state_dir)
        self.ipam = Ipam(self.store, self.node, f"{self.state_dir}/locks/ipam-{self.node}.lock")


def ipam_section(config: Mapping[str, Any]) -> dict[str, Any]:
    section = config.get("ipam")
    if not isinstance(section, dict):
        raise CniError(INVALID_CONFIG, "ipam: an object with a type is required")
    kind = section.get("type")
    if not isinstance(kind, str) or not kind:
        raise CniError(INVALID_CONFIG, "ipam.type: required")
    return section


def network_name(config: Mapping[str, Any]) -> str:
    name = config.get("name")
    if not isinstance(name, str) or not spec.valid_name(name):
        raise CniError(INVALID_CONFIG, f"name: {name!r} must match [a-zA-Z0-9][a-zA-Z0-9_.-]*")
    return name


def _settings(section: Mapping[str, Any]) -> tuple[int, int, list[str] | None, list[str] | None]:
    """(IPv4 count, IPv6 count, IPv4 pools, IPv6 pools) of our IPAM's section."""
    num4 = 1 if _flag(section, "assign_ipv4", True) else 0
    num6 = 1 if _flag(section, "assign_ipv6", False) else 0
    pools4, pools6 = _pools(section, "ipv4_pools"), _pools(section, "ipv6_pools")
    if not num4 and not num6:
        raise CniError(INVALID_CONFIG, "ipam: assign_ipv4 and assign_ipv6 are both false")
    return num4, num6, pools4, pools6


def check_config(ctx: Context, env: Env, config: Mapping[str, Any]) -> None:
    """What ADD can check before it writes anything: our IPAM's settings and the
    pools they name (read, not written), or that a delegated IPAM plugin exists."""
    section = ipam_section(config)
    if section["type"] not in OURS:
        find_plugin(env, section["type"])
        return
    num4, num6, pools4, pools6 = _settings(section)
    namespace = env.pod()[0] or None
    for family, count, names in ((4, num4, pools4), (6, num6, pools6)):
        if count and names:
            try:
                ctx.ipam.eligible_pools(family, names, namespace)
            except PoolError as exc:
                raise CniError(INVALID_CONFIG, f"ipam.ipv{family}_pools: {exc}") from None


def assign(ctx: Context, env: Env, config: Mapping[str, Any]) -> dict[str, Any]:
    """IPAM ADD, in the 1.1.0 result form (addresses with their block's mask)."""
    section = ipam_section(config)
    if section["type"] not in OURS:
        return delegate(ctx, env, config, section)
    num4, num6, pools4, pools6 = _settings(section)
    namespace, pod = env.pod()
    attributes = {"namespace": namespace, "pod": pod} if pod else {}
    handle = handle_of(network_name(config), env.container_id)
    try:
        got = ctx.ipam.auto_assign(
            handle, attributes, num4=num4, num6=num6, pools4=pools4, pools6=pools6,
            namespace=namespace or None,
        )  # fmt: skip
    except PoolError as exc:
        named = pools4 if "IPv4" in str(exc) or pools6 is None else pools6
        field = "ipam.ipv4_pools" if named is pools4 and pools4 else "ipam.ipv6_pools"
        if named:
            raise CniError(INVALID_CONFIG, f"{field}: {exc}") from None
        raise CniError(NO_ADDRESSES, str(exc)) from None
    except ExhaustedError as exc:
        raise CniError(NO_ADDRESSES, str(exc)) from None
    except Unavailable as exc:
        raise CniError(TRY_AGAIN_LATER, f"datastore: {exc}") from None
    return {"ips": [{"address": f"{a.address}/{a.length}"} for a in got], "dns": {}}


def release(ctx: Context, env: Env, config: Mapping[str, Any]) -> None:
    """IPAM DEL: release by handle, and by Calico's legacy ``<namespace>.<pod>``."""
    section = ipam_section(config)
    if section["type"] not in OURS:
        delegate(ctx, env, config, section)
        return
    try:
        ctx.ipam.release_handle(handle_of(network_name(config), env.container_id))
        namespace, pod = env.pod()
        if namespace and pod:
            ctx.ipam.release_handle(f"{namespace}.{pod}")
    except Unavailable as exc:
        raise CniError(TRY_AGAIN_LATER, f"datastore: {exc}") from None


def held(ctx: Context, handle: str) -> set[str]:
    """The addresses a handle holds, read from the blocks themselves."""
    return {block.address(o) for block, o in ctx.ipam.allocations(handle)}


# -- delegation -----------------------------------------------------------------


def pod_cidrs(ctx: Context) -> list[str]:
    record = ctx.store.get(NODES + ctx.node)
    if record is None:
        return []
    status = record.value.get("status") or {}
    spec_ = record.value.get("spec") or {}
    cidrs = status.get("podCIDRs") or spec_.get("podCIDRs") or []
    return [c for c in cidrs if isinstance(c, str)]


def substitute_pod_cidr(ctx: Context, section: dict[str, Any]) -> dict[str, Any]:
    """host-local's ``usePodCidr``/``usePodCidrIPv6`` replaced by the node's pod CIDRs."""
    text = codec.dumps(section)
    if "usePodCidr" not in text:
        return section
    cidrs = pod_cidrs(ctx)
    v4 = next((c for c in cidrs if ":" not in c), None)
    v6 = next((c for c in cidrs if ":" in c), None)

    def fill(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        for marker, cidr in (("usePodCidrIPv6", v6), ("usePodCidr", v4)):
            if value == marker:
                if cidr is None:
                    family = "IPv6" if marker.endswith("IPv6") else "IPv4"
                    raise CniError(
                        INVALID_CONFIG,
                        f"ipam.subnet: {marker}, but node {ctx.node!r} has no {family} pod CIDR",
                    )
                return cidr
        return value

    filled: dict[str, Any] = fill(section)
    return filled


def find_plugin(env: Env, kind: str) -> str:
    for folder in env.path.split(":"):
        candidate = f"{folder}/{kind}"
        if folder and os.access(candidate, os.X_OK):
            return candidate
    raise CniError(INVALID_CONFIG, f"ipam.type: no plugin {kind!r} in CNI_PATH {env.path}")


def delegate(
    ctx: Context, env: Env, config: Mapping[str, Any], section: dict[str, Any]
) -> dict[str, Any]:
    """Run another IPAM plugin with our environment and the configuration (its
    ``ipam`` section filled in); its error passes through unchanged."""
    import subprocess  # noqa: PLC0415 - only delegation pays for it

    if section["type"] == "host-local":
        section = substitute_pod_cidr(ctx, section)
    conf = {**config, "ipam": section}
    proc = subprocess.run(
        [find_plugin(env, section["type"])], input=codec.dumps(conf, sort_keys=False).encode(),
        capture_output=True, env=dict(os.environ), check=False,
    )  # fmt: skip
    out = proc.stdout.decode() or "{}"
    try:
        answer = codec.loads(out)
    except ValueError:
        answer = {"msg": out}
    if proc.returncode != 0:
        raise CniError(
            answer.get("code", spec.INTERNAL),
            f"ipam plugin {section['type']}: {answer.get('msg', '')}",
            answer.get("details", proc.stderr.decode().strip()),
        )
    result: dict[str, Any] = answer
    return result
