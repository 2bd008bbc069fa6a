"""Which datastore a process uses: one setting for every process (issue 9).

The directory datastore (``<state-dir>/store``) is the default.  etcd is chosen
by ``--datastore etcd`` or ``BGPD_DATASTORE=etcd`` (Calico's
``DATASTORE_TYPE=etcdv3`` is read as the same), with the cluster's endpoints in
``--etcd-endpoints`` / ``ETCD_ENDPOINTS`` (comma-separated).  The rest has Calico's
names where Calico has one::

    option                  environment           CNI network config
    --datastore             BGPD_DATASTORE        datastore / datastore_type
                            (DATASTORE_TYPE)
    --etcd-endpoints        ETCD_ENDPOINTS        etcd_endpoints
    --etcd-prefix           BGPD_ETCD_PREFIX      etcd_prefix           (default /bgpd/)
    --etcd-ca-cert-file     ETCD_CA_CERT_FILE     etcd_ca_cert_file
    --etcd-cert-file        ETCD_CERT_FILE        etcd_cert_file
    --etcd-key-file         ETCD_KEY_FILE         etcd_key_file
    --etcd-username         ETCD_USERNAME         etcd_username
                            ETCD_PASSWORD         etcd_password
    --etcd-timeout          BGPD_ETCD_TIMEOUT     etcd_timeout          (seconds, default 5)

The password is read from the environment (or the CNI config) only, never from
a command line where ``ps`` would show it.  An option beats its variable; a CNI
config's key beats the plugin's environment.
"""

from __future__ import annotations

import os

from .base import DatastoreError

TYPE_CHECKING = False  # not from typing: its import costs the CNI plugin ~4 ms

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping
    from typing import Any

    from .base import Datastore

KINDS = ("directory", "etcd")
#: (field, environment variable, CNI config key, option).
FIELDS = (
    ("datastore", "BGPD_DATASTORE", "datastore", "--datastore"),
    ("endpoints", "ETCD_ENDPOINTS", "etcd_endpoints", "--etcd-endpoints"),
    ("prefix", "BGPD_ETCD_PREFIX", "etcd_prefix", "--etcd-prefix"),
    ("ca_file", "ETCD_CA_CERT_FILE", "etcd_ca_cert_file", "--etcd-ca-cert-file"),
    ("cert_file", "ETCD_CERT_FILE", "etcd_cert_file", "--etcd-cert-file"),
    ("key_file", "ETCD_KEY_FILE", "etcd_key_file", "--etcd-key-file"),
    ("username", "ETCD_USERNAME", "etcd_username", "--etcd-username"),
    ("password", "ETCD_PASSWORD", "etcd_password", None),
    ("timeout", "BGPD_ETCD_TIMEOUT", "etcd_timeout", "--etcd-timeout"),
)


class StoreConfig:
    """The chosen backend and its settings, as plain strings until opened."""

    __slots__ = ("values",)

    def __init__(self, values: Mapping[str, str | None] | None = None) -> None:
        self.values = {k: v for k, v in (values or {}).items() if v not in (None, "")}
        kind = self.kind
        if kind not in KINDS:
            raise DatastoreError(f"datastore: {kind!r} is not one of {', '.join(KINDS)}")
        if kind == "etcd" and not self.values.get("endpoints"):
            raise DatastoreError("datastore etcd: --etcd-endpoints (ETCD_ENDPOINTS) is required")

    @property
    def kind(self) -> str:
        kind = self.values.get("datastore") or "directory"
        return "etcd" if kind in ("etcdv3", "etcd") else kind

    def describe(self) -> str:
        """For logs and status: the backend and where it is (never a password)."""
        if self.kind == "directory":
            return "directory"
        return f"etcd {self.values['endpoints']} prefix {self.values.get('prefix') or '/bgpd/'}"

    def env(self) -> dict[str, str]:
        """The environment that selects this same datastore in a child process."""
        out = {env: self.values[name] for name, env, _cni, _opt in FIELDS if name in self.values}
        out.setdefault("BGPD_DATASTORE", "directory")
        return out

    def cni(self) -> dict[str, str]:
        """The keys of a CNI network config that select this same datastore."""
        return {key: self.values[name] for name, _env, key, _opt in FIELDS if name in self.values}

    def open(self, state_dir: str, create: bool = True) -> Datastore:
        """The datastore itself.  The directory one lives in ``<state_dir>/store``;
        ``create=False`` refuses to make it (``bgpctl``: a mistyped path is an
        error, not a new empty cluster)."""
        if self.kind == "directory":
            from .directory import DirectoryStore  # noqa: PLC0415

            return DirectoryStore(f"{state_dir}/store", create=create)
        from .etcd import DEFAULT_PREFIX, EtcdSettings, EtcdStore  # noqa: PLC0415

        v = self.values
        try:
            timeout = float(v.get("timeout") or 5.0)
        except ValueError:
            raise DatastoreError(f"etcd timeout {v['timeout']!r} is not a number") from None
        return EtcdStore(EtcdSettings(
            [e for e in v["endpoints"].split(",") if e.strip()],
            prefix=v.get("prefix") or DEFAULT_PREFIX,
            ca_file=v.get("ca_file"), cert_file=v.get("cert_file"), key_file=v.get("key_file"),
            username=v.get("username"), password=v.get("password"), timeout=timeout,
        ))  # fmt: skip


def from_env(env: Mapping[str, str] | None = None) -> StoreConfig:
    env = os.environ if env is None else env
    values = {name: env.get(var) for name, var, _cni, _opt in FIELDS}
    if not values["datastore"]:
        values["datastore"] = env.get("DATASTORE_TYPE")  # calico-node's name
    return StoreConfig(values)


def from_cni(config: Mapping[str, Any], env: Mapping[str, str] | None = None) -> StoreConfig:
    """From a CNI network config's top-level keys (as Calico's plugin reads
    ``datastore_type`` and ``etcd_*``), over the plugin's environment."""
    base = from_env(env).values
    values: dict[str, str | None] = dict(base)
    for name, _env, key, _opt in FIELDS:
        value = config.get(key)
        if name == "datastore" and value is None:
            value = config.get("datastore_type")
        if value is not None:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise DatastoreError(f"{key}: must be a string")
            values[name] = str(value)
    return StoreConfig(values)


def add_arguments(parser: argparse.ArgumentParser, default: object = None) -> None:
    """The datastore options; their defaults come from the environment (``from_args``).
    ``default``: what an option not given leaves (``argparse.SUPPRESS`` for a
    subcommand's copy of options the main parser also takes)."""
    group = parser.add_argument_group("datastore (default: the state directory's)")
    group.add_argument("--datastore", choices=KINDS, default=default,
                       help="directory or etcd (default $BGPD_DATASTORE, else directory)")
    group.add_argument("--etcd-endpoints", default=default, metavar="URLS",
                       help="comma-separated http[s]://host:port (default $ETCD_ENDPOINTS)")
    group.add_argument("--etcd-prefix", default=default,
                       help="the keys' prefix in etcd (default $BGPD_ETCD_PREFIX, else /bgpd/)")
    group.add_argument("--etcd-ca-cert-file", default=default, help="default $ETCD_CA_CERT_FILE")
    group.add_argument("--etcd-cert-file", default=default, help="default $ETCD_CERT_FILE")
    group.add_argument("--etcd-key-file", default=default, help="default $ETCD_KEY_FILE")
    group.add_argument("--etcd-username", default=default,
                       help="default $ETCD_USERNAME; the password only from $ETCD_PASSWORD")
    group.add_argument("--etcd-timeout", default=default, metavar="SECONDS",
                       help="per request (default $BGPD_ETCD_TIMEOUT, else 5)")


def from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> StoreConfig:
    values = dict(from_env(env).values)
    for name, _env, _cni, option in FIELDS:
        if option is not None:
            given = getattr(args, option[2:].replace("-", "_"), None)
            if given is not None:
                values[name] = given
    return StoreConfig(values)
