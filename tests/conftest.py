"""Test-wide settings: hypothesis profiles and the rule for missing packages."""

from __future__ import annotations

import os
import shutil

import pytest
from hypothesis import HealthCheck, settings

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
