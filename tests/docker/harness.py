"""A node's host folders under tmp_path, and docker/'s scripts run as the image runs
them: a subprocess with the settings in its environment.

``Host`` stands for what the pod mounts (``/host/opt/cni/bin``, ``/host/etc/cni/net.d``,
``/host/opt/bgpd``); the host-side paths written into launchers are the same
folders (``BGPD_LIB_DIR`` = ``BGPD_LIB_MOUNT_DIR``), so the launchers written
here run here, with a Python that has no site-packages (``-IS``) standing for the
host's ``python3``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
REFERENCE = Path("/usr/lib/cni")
NODE = "node-a"


def load(name: str) -> ModuleType:
    """A module of docker/ (not a package), imported from its file."""
    spec = importlib.util.spec_from_file_location(name, DOCKER / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def host_python() -> str:
    """The node's python3: Debian's /usr/bin/python3 when it is 3.11 or later (a
    different interpreter from the test's, without this package), else the
    interpreter behind the virtualenv (the launcher's -S keeps the venv out)."""
    candidate = "/usr/bin/python3"
    if os.access(candidate, os.X_OK):
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info >= (3, 11))"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        if probe.stdout.strip() == "True":
            return candidate
    return os.path.realpath(sys.executable)


class Host:
    """The folders install-cni writes to, and its environment."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.bin = root / "opt/cni/bin"
        self.net = root / "etc/cni/net.d"
        self.lib = root / "opt/bgpd"
        self.state = root / "var/lib/bgpd"
        self.reference = REFERENCE
        self.python = host_python()

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "CNI_BIN_MOUNT_DIR": str(self.bin),
            "CNI_SECONDARY_BIN_MOUNT_DIR": str(self.root / "secondary-bin-dir"),
            "CNI_NET_MOUNT_DIR": str(self.net),
            "BGPD_LIB_MOUNT_DIR": str(self.lib),
            "BGPD_LIB_DIR": str(self.lib),
            "BGPD_STATE_DIR": str(self.state),
            "HOST_PYTHON": self.python,
            "CNI_REFERENCE_PLUGINS_DIR": str(self.reference),
            "KUBERNETES_NODE_NAME": NODE,
            "SLEEP": "false",
        }
        env.update(extra)
        return env

    def install(self, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(DOCKER / "install-cni")], env=self.env(**extra),
            capture_output=True, text=True, timeout=120, check=False, cwd=self.root,
        )  # fmt: skip

    @property
    def conflist(self) -> Path:
        return self.net / "10-bgpd.conflist"

    def conf(self) -> dict[str, Any]:
        value = json.loads(self.conflist.read_text())
        assert isinstance(value, dict)
        return value

    def files(self) -> dict[str, bytes]:
        """Every file under the host folders (relative path -> content)."""
        out = {}
        for path in sorted(self.root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                out[str(path.relative_to(self.root))] = path.read_bytes()
        return out

    def temp_files(self) -> list[str]:
        """What an interrupted or careless writer would leave: dot files, *.tmp."""
        return [
            str(p.relative_to(self.root)) for p in self.root.rglob("*")
            if p.name.startswith(".") or p.name.endswith(".tmp")
        ]  # fmt: skip

    def releases(self) -> list[str]:
        folder = self.lib / "releases"
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def plugin_config(conf: dict[str, Any], index: int) -> bytes:
    """One plugin's configuration as libcni hands it over: the list's name and
    cniVersion added (libcni's buildOneConfig)."""
    plugin = dict(conf["plugins"][index])
    plugin["name"] = conf["name"]
    plugin["cniVersion"] = conf["cniVersion"]
    return json.dumps(plugin).encode()


def run_plugin(
    path: Path, command: str, config: bytes, **env: str
) -> subprocess.CompletedProcess[bytes]:
    """A plugin as a runtime runs it: only the CNI_* variables and PATH."""
    environ = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": command, **env}
    return subprocess.run(
        [str(path)], input=config, env=environ, capture_output=True, timeout=60, check=False,
        cwd="/",
    )  # fmt: skip
