"""The CNI contract (spec 1.1.0, and the versions before it we accept): environment,
errors, versions and result shapes (CALICO.md §5.1).

A plugin reads its operation from ``CNI_COMMAND``, the container from the other
``CNI_*`` variables and the network configuration as JSON on stdin; it answers a
result (ADD, VERSION) or nothing on stdout, and on failure an error object
``{cniVersion, code, msg, details}`` on stdout with exit status 1.

Results are built in 1.1.0 form and converted down: 0.3.x and 0.4.0 carry
``ips[].version``; ``interfaces[].mtu`` exists only from 1.1.0 on.
"""

from __future__ import annotations

from ..datastore import local

TYPE_CHECKING = False  # not from typing: its import costs the CNI plugin ~4 ms

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

SPEC_VERSION = "1.1.0"
SUPPORTED = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

# Error codes, spec §"Error" (1-99 are the spec's, 100 and above the plugin's).
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
INVALID_NETNS = 8
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50
INTERNAL = 999
#: Our own: no address could be allocated (pools full, block limit).
NO_ADDRESSES = 100
#: Our own: ``CNI_IFNAME`` already exists in the container (spec: ADD must fail).
INTERFACE_EXISTS = 101
#: Our own: CHECK found the attachment differs from what ADD made.
CHECK_FAILED = 102
#: Our own: the kernel refused a change.
KERNEL_ERROR = 103

_NAME_FIRST = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_NAME_REST = _NAME_FIRST | frozenset("_.-")


class CniError(Exception):
    """An error to report in the spec's JSON form."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_json(self, version: str) -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out


def version_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in version.split("."))
    except ValueError:
        raise CniError(INCOMPATIBLE_VERSION, f"cniVersion {version!r} is not a version") from None


def check_version(version: object) -> str:
    if not isinstance(version, str) or not version:
        raise CniError(INVALID_CONFIG, "cniVersion: missing from the network configuration")
    if version not in SUPPORTED:
        raise CniError(
            INCOMPATIBLE_VERSION,
            f"cniVersion: incompatible CNI versions: config is {version!r}, plugin supports "
            + ", ".join(SUPPORTED),
        )
    return version


def valid_name(name: str) -> bool:
    """A container ID or network name: ``[a-zA-Z0-9][a-zA-Z0-9_.-]*``."""
    return bool(name) and name[0] in _NAME_FIRST and _NAME_REST.issuperset(name)


def check_ifname(name: str) -> None:
    """Spec: at most 15 characters, not ``.`` or ``..``, no ``/``, ``:`` or space."""
    if not name:
        raise CniError(INVALID_ENVIRONMENT, "CNI_IFNAME: required")
    if len(name) > 15 or name in (".", "..") or any(c in name for c in "/: \t\n"):
        raise CniError(INVALID_ENVIRONMENT, f"CNI_IFNAME: {name!r} is not a valid interface name")


class Env:
    """The ``CNI_*`` variables, checked for what ``command`` needs."""

    __slots__ = ("args", "command", "container_id", "ifname", "netns", "path")

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.command = environ.get("CNI_COMMAND", "")
        self.container_id = environ.get("CNI_CONTAINERID", "")
        self.netns = environ.get("CNI_NETNS", "")
        self.ifname = environ.get("CNI_IFNAME", "")
        self.path = environ.get("CNI_PATH", "")
        self.args = parse_args(environ.get("CNI_ARGS", ""))

    def require(self) -> None:
        """The spec's required variables per operation (CALICO.md §5.1)."""
        command = self.command
        if not command:
            raise CniError(INVALID_ENVIRONMENT, "CNI_COMMAND: required")
        if command not in ("ADD", "DEL", "CHECK", "VERSION", "GC", "STATUS"):
            raise CniError(INVALID_ENVIRONMENT, f"CNI_COMMAND: unknown command {command!r}")
        if command in ("ADD", "DEL", "CHECK"):
            if not self.container_id:
                raise CniError(INVALID_ENVIRONMENT, "CNI_CONTAINERID: required")
            if not valid_name(self.container_id):
                raise CniError(
                    INVALID_ENVIRONMENT,
                    f"CNI_CONTAINERID: {self.container_id!r} must match [a-zA-Z0-9][a-zA-Z0-9_.-]*",
                )
            check_ifname(self.ifname)
            if command != "DEL" and not self.netns:
                raise CniError(INVALID_ENVIRONMENT, "CNI_NETNS: required")
        if command != "VERSION" and not self.path:
            raise CniError(INVALID_ENVIRONMENT, "CNI_PATH: required")

    def pod(self) -> tuple[str, str]:
        """(namespace, pod) from ``CNI_ARGS``, or ("", "") outside Kubernetes."""
        return self.args.get("K8S_POD_NAMESPACE", ""), self.args.get("K8S_POD_NAME", "")


def parse_args(text: str) -> dict[str, str]:
    """``CNI_ARGS``: ``K=V;K2=V2``."""
    out = {}
    for item in text.split(";"):
        if not item:
            continue
        key, eq, value = item.partition("=")
        if not eq:
            raise CniError(INVALID_ENVIRONMENT, f"CNI_ARGS: {item!r} is not KEY=VALUE")
        out[key] = value
    return out


def convert_result(result: Mapping[str, Any], version: str) -> dict[str, Any]:
    """A result built in 1.1.0 form, as ``version`` spells it."""
    out: dict[str, Any] = {"cniVersion": version}
    legacy = version_tuple(version) < (1, 0, 0)
    mtu = version_tuple(version) >= (1, 1, 0)
    if "interfaces" in result:
        out["interfaces"] = [
            {k: v for k, v in i.items() if k != "mtu" or mtu} for i in result["interfaces"]
        ]
    ips = []
    for ip in result.get("ips", ()):
        entry = dict(ip)
        if legacy:
            entry["version"] = "6" if ":" in ip["address"] else "4"
        else:
            entry.pop("version", None)
        ips.append(entry)
    out["ips"] = ips
    if result.get("routes"):
        out["routes"] = list(result["routes"])
    out["dns"] = dict(result.get("dns") or {})
    return out


def state_dir(config: Mapping[str, Any]) -> str:
    """Where the datastore and our local files live: the config's ``state_dir``,
    else ``BGPD_STATE_DIR``, else ``/var/lib/bgpd`` (as every process finds it)."""
    value = config.get("state_dir") or local.state_dir()
    if not isinstance(value, str):
        raise CniError(INVALID_CONFIG, "state_dir: must be a string")
    return value


def node_name(config: Mapping[str, Any], state: str) -> str:
    """The node: config ``nodename``, else as every process finds it
    (``bgpd.datastore.local.node_name``)."""
    value = config.get("nodename")
    if value:
        if not isinstance(value, str):
            raise CniError(INVALID_CONFIG, "nodename: must be a string")
        return value
    return local.node_name(state)
