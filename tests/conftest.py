"""Test-wide settings: hypothesis profiles and the rule for missing packages."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from bgpd.lab.etcd import EtcdCluster

settings.register_profile(
    "default", deadline=None, max_examples=100, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("default")

IN_CI = os.environ.get("CI") == "true"


def require_programs(*names: str, package: str) -> None:
    """Skip when a program is missing on a laptop; fail under CI=true (DEVELOPERS.md)."""
    missing = [n for n in names if shutil.which(n) is None]
    if not missing:
        return
    reason = f"needs {', '.join(missing)} from the Debian package {package} (make test installs it)"
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


def require_root() -> None:
    if os.geteuid() != 0:
        reason = "needs root for network namespaces"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)


def require_etcd() -> None:
    require_programs("etcd", package="etcd-server")


@contextlib.contextmanager
def running_etcd(tmp_path_factory: pytest.TempPathFactory, members: int) -> Iterator[EtcdCluster]:
    """``members`` real etcd members on free loopback ports, stopped (by PID) afterwards."""
    require_etcd()
    cluster = EtcdCluster(tmp_path_factory.mktemp(f"etcd{members}"), members=members)
    try:
        yield cluster.start()
    finally:
        cluster.close()


@pytest.fixture
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """A one-member etcd for one test."""
    with running_etcd(tmp_path_factory, 1) as cluster:
        yield cluster


@pytest.fixture
def etcd3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """A three-member etcd cluster for one test."""
    with running_etcd(tmp_path_factory, 3) as cluster:
        yield cluster
