"""install-cni: put the CNI plugin and its network configuration on the node, as
Calico's install-cni container does (CALICO.md §5; cni-plugin/pkg/install).

The container runtime runs CNI plugins on the host, outside every container, so
what this script installs must run there.  Calico ships static Go binaries; our
plugin is Python, so the host needs ``python3`` 3.11 or later (Debian 12, Ubuntu
24.04, RHEL 9 with python3.11, ...) and gets, from this image:

1. **The library**: the ``bgpd`` package, copied to
   ``<BGPD_LIB_DIR>/releases/bgpd-<content hash>/bgpd`` and byte-compiled there.
   A release is built in a temporary folder and renamed into place, so it is
   complete before anything names it; an unchanged image reinstalls nothing.
   The plugins import only the standard library and this package (no pydantic,
   no pyroute2), so the host needs no pip and no virtualenv.
2. **The launchers** ``bgpd-cni`` and ``bgpd-ipam`` in the CNI bin folder, the
   same three lines ``bgpd.cni.install`` writes (``python3 -IS``, the package
   folder first on ``sys.path``) but naming the host's interpreter and the
   release folder as the host sees them.  A launcher names one release, so a
   plugin started before an upgrade finishes on the code it started with; the
   releases no launcher names any more are removed on the next install, except
   the one just replaced.
3. **The reference plugins** the default chain needs (``portmap``,
   ``bandwidth``) and ``loopback``/``host-local``, copied from the image's
   Debian ``containernetworking-plugins`` only where the host has none: a
   node's own (usually newer) ones are never replaced.
4. **The network configuration**, last (a kubelet declares the node's network
   ready once it sees one, and by then the plugins must be there): the template
   from ``CNI_NETWORK_CONFIG_FILE``, ``CNI_NETWORK_CONFIG`` or the built-in one,
   with Calico's placeholders substituted, checked, and written atomically.

Every file is written to a temporary name that no reader looks at (a leading dot
and ``.tmp``: libcni reads only ``*.conf``, ``*.conflist`` and ``*.json``) and
renamed over the old one, so a kubelet or a runtime never reads half a file.  The
template is rendered and checked before anything is touched: a bad one exits 1
with the reason and leaves the node's files as they were.

Settings (environment; Calico's names where Calico has the setting):

    CNI_BIN_MOUNT_DIR            /host/opt/cni/bin        the host's CNI bin folder, as mounted here
    CNI_SECONDARY_BIN_MOUNT_DIR  /host/secondary-bin-dir  a second bin folder, written when mounted
    CNI_NET_MOUNT_DIR            /host/etc/cni/net.d      the host's CNI config folder, as mounted
    CNI_NET_DIR                  /etc/cni/net.d           that folder as the host sees it
    CNI_CONF_NAME                10-bgpd.conflist         the file written there
    CNI_OLD_CONF_NAME            (none)                   a file removed afterwards (migration)
    CNI_NETWORK_CONFIG           (built in)               the template, JSON with placeholders
    CNI_NETWORK_CONFIG_FILE      (none)                   the template from a file (wins)
    CNI_MTU                      0                        ``__CNI_MTU__`` (0: the plugin decides)
    KUBERNETES_NODE_NAME         NODENAME, else hostname  ``__KUBERNETES_NODE_NAME__``
    BGPD_STATE_DIR               /var/lib/bgpd            ``__STATE_DIR__`` (same path on the host)
    LOG_LEVEL                    info                     ``__LOG_LEVEL__``
    BGPD_DATASTORE               directory                ``__DATASTORE_TYPE__`` (or DATASTORE_TYPE)
    ETCD_ENDPOINTS               (none)                   ``__ETCD_ENDPOINTS__``
    BGPD_ETCD_PREFIX             (none: /bgpd/)           ``__ETCD_PREFIX__``
    ETCD_CA_CERT_FILE            (none)                   ``__ETCD_CA_CERT_FILE__`` (host path)
    ETCD_CERT_FILE               (none)                   ``__ETCD_CERT_FILE__`` (host path)
    ETCD_KEY_FILE                (none)                   ``__ETCD_KEY_FILE__`` (host path)
    SKIP_CNI_BINARIES            (none)                   comma-separated names not to install
    UPDATE_CNI_BINARIES          true                     false: keep a binary the host has
    SLEEP                        true                     stay running after the install
    BGPD_LIB_MOUNT_DIR           /host/opt/bgpd           the host's library folder, as mounted
    BGPD_LIB_DIR                 /opt/bgpd                that folder as the host sees it
    HOST_PYTHON                  /usr/bin/python3         the host's interpreter (3.11 or later)
    CNI_REFERENCE_PLUGINS_DIR    /usr/lib/cni             where the image keeps portmap & co.

Standard library only: it runs in the image before anything else, and its
tests run it as a subprocess.
"""

from __future__ import annotations

import ast
import compileall
import contextlib
import hashlib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

#: The launchers and the module each runs (as ``bgpd.cni.install.LAUNCHERS``).
LAUNCHERS = {"bgpd-cni": "bgpd.cni.plugin", "bgpd-ipam": "bgpd.cni.ipam_plugin"}

#: Reference plugins copied from the image where the host has none: the default
#: chain's portmap and bandwidth, the loopback every runtime runs for ``lo``,
#: and host-local for conflists that delegate IPAM to it (CALICO.md §4.5).
REFERENCE_PLUGINS = ("portmap", "bandwidth", "loopback", "host-local")

#: What the plugin's interpreter must be at least (pyproject's requires-python).
MIN_PYTHON = (3, 11)

#: The default template: Calico's manifest conflist (CALICO.md §5.2 item 10)
#: with our plugin and IPAM, the state folder the node agent shares with the
#: plugin, and ``mtu`` 0 (the plugin reads ``<state_dir>/mtu``, else the uplink).
#: cniVersion 1.0.0 is the newest the Debian portmap/bandwidth 1.1.1 accept; a
#: chain of newer plugins can say 1.1.0 to have GC and STATUS.  ``__CNI_MTU__``
#: stands unquoted, as in Calico's: the template is JSON once substituted.
DEFAULT_TEMPLATE = """\
{
  "name": "k8s-pod-network",
  "cniVersion": "1.0.0",
  "plugins": [
    {
      "type": "bgpd-cni",
      "datastore_type": "__DATASTORE_TYPE__",
      "etcd_endpoints": "__ETCD_ENDPOINTS__",
      "etcd_prefix": "__ETCD_PREFIX__",
      "etcd_ca_cert_file": "__ETCD_CA_CERT_FILE__",
      "etcd_cert_file": "__ETCD_CERT_FILE__",
      "etcd_key_file": "__ETCD_KEY_FILE__",
      "state_dir": "__STATE_DIR__",
      "nodename": "__KUBERNETES_NODE_NAME__",
      "mtu": __CNI_MTU__,
      "ipam": {"type": "bgpd-ipam"}
    },
    {"type": "portmap", "snat": true, "capabilities": {"portMappings": true}},
    {"type": "bandwidth", "capabilities": {"bandwidth": true}}
  ]
}
"""

CONF_EXTENSIONS = (".conflist", ".conf", ".json")  # what libcni reads from net.d
RELEASE_PREFIX = "bgpd-"
STALE_TEMP_SECONDS = 600  # a temporary release folder older than this is a killed install's
_PLACEHOLDER = re.compile(r"__[A-Z][A-Z0-9_]*__")
_LAUNCHER_PATH = re.compile(r"sys\.path\.insert\(0, ('[^']*'|\"[^\"]*\")\)")


class InstallError(Exception):
    """A reason to stop before (or instead of) changing the node; exit status 1."""


def log(message: str) -> None:
    print(f"install-cni: {message}", file=sys.stderr, flush=True)


# -- settings ---------------------------------------------------------------------


def _bool(environ: Mapping[str, str], name: str, default: bool) -> bool:
    value = environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise InstallError(f"{name}: {environ[name]!r} is neither true nor false")


def _path(environ: Mapping[str, str], name: str, default: str) -> str:
    value = environ.get(name) or default
    if not os.path.isabs(value):
        raise InstallError(f"{name}: {value!r} is not an absolute path")
    return value.rstrip("/") or "/"


@dataclass(frozen=True)
class Settings:
    bin_dirs: tuple[str, ...]  # where launchers go, as mounted here; the first must work
    net_mount_dir: str
    net_dir: str
    conf_name: str
    old_conf_name: str
    template: str
    template_source: str
    substitutions: dict[str, str]
    skip: frozenset[str]
    update: bool
    sleep: bool
    lib_mount_dir: str
    lib_dir: str
    host_python: str
    reference_dir: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        primary = _path(environ, "CNI_BIN_MOUNT_DIR", "/host/opt/cni/bin")
        secondary = _path(environ, "CNI_SECONDARY_BIN_MOUNT_DIR", "/host/secondary-bin-dir")
        bin_dirs = [primary]
        if secondary != primary and os.path.isdir(secondary) and os.access(secondary, os.W_OK):
            bin_dirs.append(secondary)
        conf_name = environ.get("CNI_CONF_NAME") or "10-bgpd.conflist"
        if "/" in conf_name or not conf_name.endswith(CONF_EXTENSIONS):
            raise InstallError(
                f"CNI_CONF_NAME: {conf_name!r} must be a file name ending in "
                + ", ".join(CONF_EXTENSIONS) + " (the only files a runtime reads)"
            )
        template, source = _template(environ)
        host_python = environ.get("HOST_PYTHON") or "/usr/bin/python3"
        if not os.path.isabs(host_python) or any(c.isspace() for c in host_python):
            raise InstallError(f"HOST_PYTHON: {host_python!r} must be an absolute path, no spaces")
        return cls(
            bin_dirs=tuple(bin_dirs),
            net_mount_dir=_path(environ, "CNI_NET_MOUNT_DIR", "/host/etc/cni/net.d"),
            net_dir=_path(environ, "CNI_NET_DIR", "/etc/cni/net.d"),
            conf_name=conf_name,
            old_conf_name=environ.get("CNI_OLD_CONF_NAME", ""),
            template=template,
            template_source=source,
            substitutions=_substitutions(environ),
            skip=frozenset(
                n.strip() for n in environ.get("SKIP_CNI_BINARIES", "").split(",") if n.strip()
            ),
            update=_bool(environ, "UPDATE_CNI_BINARIES", True),
            sleep=_bool(environ, "SLEEP", True),
            lib_mount_dir=_path(environ, "BGPD_LIB_MOUNT_DIR", "/host/opt/bgpd"),
            lib_dir=_path(environ, "BGPD_LIB_DIR", "/opt/bgpd"),
            host_python=host_python,
            reference_dir=_path(environ, "CNI_REFERENCE_PLUGINS_DIR", "/usr/lib/cni"),
        )


def _template(environ: Mapping[str, str]) -> tuple[str, str]:
    """(template, where it came from): the file, else the variable, else ours."""
    path = environ.get("CNI_NETWORK_CONFIG_FILE")
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                return f.read(), f"CNI_NETWORK_CONFIG_FILE {path}"
        except OSError as exc:
            raise InstallError(f"CNI_NETWORK_CONFIG_FILE: {exc}") from None
    if environ.get("CNI_NETWORK_CONFIG", "").strip():
        return environ["CNI_NETWORK_CONFIG"], "CNI_NETWORK_CONFIG"
    return DEFAULT_TEMPLATE, "the built-in template"


def _substitutions(environ: Mapping[str, str]) -> dict[str, str]:
    """Placeholder -> text to put in its place.  ``__CNI_MTU__`` stands for a
    number; the others stand inside JSON strings and are escaped for them."""
    mtu = (environ.get("CNI_MTU") or "0").strip()
    if not mtu.isdigit() or int(mtu) > 65535:
        raise InstallError(f"CNI_MTU: {mtu!r} is not an MTU (0 lets the plugin choose)")
    # Calico's fallback: the hostname, lowercased (as the kubelet names the node).
    node = (
        environ.get("KUBERNETES_NODE_NAME") or environ.get("NODENAME")
        or socket.gethostname().strip().lower()
    )  # fmt: skip
    net_dir = _path(environ, "CNI_NET_DIR", "/etc/cni/net.d")
    strings = {
        "__KUBERNETES_NODE_NAME__": node,
        "__STATE_DIR__": environ.get("BGPD_STATE_DIR") or "/var/lib/bgpd",
        "__CNI_NET_DIR__": net_dir,
        "__LOG_LEVEL__": environ.get("LOG_LEVEL") or "info",
        # The datastore, as the node agent selects it (bgpd/datastore/select.py);
        # an empty value is as good as absent to the plugin.
        "__DATASTORE_TYPE__": (
            environ.get("BGPD_DATASTORE") or environ.get("DATASTORE_TYPE") or "directory"
        ),
        "__ETCD_ENDPOINTS__": environ.get("ETCD_ENDPOINTS") or "",
        "__ETCD_PREFIX__": environ.get("BGPD_ETCD_PREFIX") or "",
        "__ETCD_CA_CERT_FILE__": environ.get("ETCD_CA_CERT_FILE") or "",
        "__ETCD_CERT_FILE__": environ.get("ETCD_CERT_FILE") or "",
        "__ETCD_KEY_FILE__": environ.get("ETCD_KEY_FILE") or "",
    }
    out = {k: json.dumps(v)[1:-1] for k, v in strings.items()}
    out["__CNI_MTU__"] = str(int(mtu))
    return out


# -- the network configuration ------------------------------------------------------


def render(settings: Settings) -> tuple[str, dict[str, object]]:
    """The configuration to write, as text and parsed; InstallError if it is not
    one a runtime would load.  Touches nothing."""
    text = settings.template
    for placeholder, value in settings.substitutions.items():
        text = text.replace(placeholder, value)
    try:
        conf = json.loads(text)
    except ValueError as exc:
        raise InstallError(
            f"{settings.template_source} is not valid JSON once substituted: {exc}\n{text}"
        ) from None
    check_conf(conf, settings.conf_name)
    left = sorted(set(_PLACEHOLDER.findall(text)))
    if left:
        log(f"warning: placeholders left as they are: {', '.join(left)}")
    if not text.endswith("\n"):
        text += "\n"
    return text, conf


def check_conf(conf: object, conf_name: str) -> None:
    """What libcni needs of a file in net.d: an object with a ``name`` and a
    ``cniVersion``, and either a ``plugins`` list (``.conflist``) or a ``type``."""
    if not isinstance(conf, dict):
        raise InstallError("the network configuration must be a JSON object")
    for key in ("name", "cniVersion"):
        if not isinstance(conf.get(key), str) or not conf[key]:
            raise InstallError(f"the network configuration has no {key!r}")
    if conf_name.endswith(".conflist"):
        plugins = conf.get("plugins")
        if not isinstance(plugins, list) or not plugins:
            raise InstallError(f"{conf_name}: a .conflist needs a non-empty 'plugins' list")
        for i, plugin in enumerate(plugins):
            if not isinstance(plugin, dict) or not isinstance(plugin.get("type"), str):
                raise InstallError(f"plugins[{i}]: must be an object with a 'type'")
    elif not isinstance(conf.get("type"), str) or "plugins" in conf:
        raise InstallError(
            f"{conf_name}: a single configuration needs a 'type' (name the file .conflist "
            "for a plugin list)"
        )


# -- files ----------------------------------------------------------------------------


def atomic_write(path: str, data: bytes, mode: int) -> None:
    """Write ``path`` so that a reader sees the old file or the new one, whole."""
    folder, name = os.path.split(path)
    fd, temp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    fsync_dir(folder)


def atomic_copy(source: str, path: str) -> None:
    with open(source, "rb") as f:
        data = f.read()
    atomic_write(path, data, os.stat(source).st_mode & 0o7777 | 0o555)


def fsync_dir(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- the library ----------------------------------------------------------------------


def package_dir() -> str:
    """The ``bgpd`` package this image runs (found, not imported)."""
    spec = importlib.util.find_spec("bgpd")
    if spec is None or not spec.submodule_search_locations:
        raise InstallError("the bgpd package is not installed in this image")
    return os.path.abspath(next(iter(spec.submodule_search_locations)))


def _sources(root: str) -> list[str]:
    """The package's files (relative, sorted), without byte code."""
    out = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
        for name in files:
            if not name.endswith((".pyc", ".pyo")) and not name.startswith("."):
                out.append(os.path.relpath(os.path.join(folder, name), root))
    return sorted(out)


def release_name(root: str, files: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for rel in files:
        digest.update(rel.encode() + b"\0")
        with open(os.path.join(root, rel), "rb") as f:
            digest.update(hashlib.sha256(f.read()).digest())
    return RELEASE_PREFIX + digest.hexdigest()[:16]


def install_library(settings: Settings, source: str) -> str:
    """Copy the package into a release folder; its path as the host sees it."""
    files = _sources(source)
    name = release_name(source, files)
    releases = os.path.join(settings.lib_mount_dir, "releases")
    final = os.path.join(releases, name)
    host_path = f"{settings.lib_dir}/releases/{name}"
    if os.path.isdir(final):  # renamed into place only once complete
        log(f"library {host_path} is installed already")
        return host_path
    os.makedirs(releases, mode=0o755, exist_ok=True)
    temp = tempfile.mkdtemp(dir=releases, prefix=".tmp-")
    try:
        os.chmod(temp, 0o755)
        for rel in files:
            target = os.path.join(temp, "bgpd", rel)
            os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
            shutil.copyfile(os.path.join(source, rel), target)
            os.chmod(target, 0o644)
        # Byte code for the image's Python; a host Python of another version
        # writes its own on first use.  ddir: tracebacks name the host's path.
        ok = compileall.compile_dir(
            os.path.join(temp, "bgpd"), ddir=f"{host_path}/bgpd", quiet=1, workers=1
        )
        if not ok:
            raise InstallError(f"the package in {source} does not compile")
        os.rename(temp, final)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        if not os.path.isdir(final):
            raise
    fsync_dir(releases)
    log(f"installed the library in {host_path}")
    return host_path


def launcher_text(host_python: str, release: str, name: str, module: str) -> str:
    """``bgpd.cni.install``'s launcher for the host, with a clear CNI error (50:
    cannot serve ADD) in place of a SyntaxError on a too old host Python."""
    need = ".".join(map(str, MIN_PYTHON))
    error = json.dumps({
        "cniVersion": "1.0.0", "code": 50,
        "msg": f"{name}: needs python3 {need} or later on the node, {host_python} is VERSION",
    })  # fmt: skip
    before, _, after = error.partition("VERSION")
    return (
        f"#!{host_python} -IS\n"
        f"import sys; sys.path.insert(0, {release!r})\n"
        f"if sys.version_info < {MIN_PYTHON!r}: sys.stdout.write({before!r} + "
        f"'%d.%d' % sys.version_info[:2] + {after + chr(10)!r}); sys.exit(1)\n"
        f"from {module} import main; sys.exit(main())\n"
    )


def launcher_release(path: str) -> str | None:
    """The release folder (host path) an installed launcher names, if ours."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            head = f.read(4096)
    except OSError:
        return None
    match = _LAUNCHER_PATH.search(head)
    if not match:
        return None
    try:
        value = ast.literal_eval(match.group(1))
    except (ValueError, SyntaxError):
        return None
    return value if isinstance(value, str) else None


def prune_releases(settings: Settings, keep: set[str]) -> None:
    """Remove releases no launcher names (``keep``: host paths), and temporary
    folders that killed installs left."""
    releases = os.path.join(settings.lib_mount_dir, "releases")
    keep_names = {os.path.basename(k) for k in keep}
    try:
        entries = os.listdir(releases)
    except FileNotFoundError:
        return
    now = time.time()
    for name in entries:
        path = os.path.join(releases, name)
        if name.startswith(".tmp-"):
            try:
                if now - os.stat(path).st_mtime < STALE_TEMP_SECONDS:
                    continue  # another install under way
            except FileNotFoundError:
                continue
        elif not name.startswith(RELEASE_PREFIX) or name in keep_names:
            continue
        shutil.rmtree(path, ignore_errors=True)
        log(f"removed {settings.lib_dir}/releases/{name}")


# -- install ----------------------------------------------------------------------------


def install(settings: Settings, text: str, source: str | None = None) -> list[str]:
    """Everything, in Calico's order (binaries, then ``text``, the rendered
    configuration); the paths written."""
    written: list[str] = []
    try:
        os.makedirs(settings.bin_dirs[0], exist_ok=True)
        os.makedirs(settings.net_mount_dir, exist_ok=True)
    except OSError as exc:
        raise InstallError(f"cannot create {exc.filename}: {exc.strerror}") from None

    release = install_library(settings, source or package_dir())
    keep = {release}
    for folder in settings.bin_dirs:
        for name, module in LAUNCHERS.items():
            path = os.path.join(folder, name)
            old = launcher_release(path)
            if old:
                keep.add(old)  # a plugin started from it may still be running
            if name in settings.skip:
                log(f"skipped {path} (SKIP_CNI_BINARIES)")
                continue
            if os.path.exists(path) and not settings.update:
                log(f"kept {path} (UPDATE_CNI_BINARIES=false)")
                continue
            data = launcher_text(settings.host_python, release, name, module).encode()
            atomic_write(path, data, 0o755)
            written.append(path)
        for name in REFERENCE_PLUGINS:
            path = os.path.join(folder, name)
            source_path = os.path.join(settings.reference_dir, name)
            if name in settings.skip or os.path.exists(path):
                continue  # never replace the node's own
            if not os.path.isfile(source_path):
                log(f"warning: no {source_path} in this image; {path} not installed")
                continue
            atomic_copy(source_path, path)
            written.append(path)
    prune_releases(settings, keep)

    conf_path = os.path.join(settings.net_mount_dir, settings.conf_name)
    atomic_write(conf_path, text.encode(), 0o644)
    written.append(conf_path)
    old = settings.old_conf_name
    if old and old != settings.conf_name and "/" not in old:
        try:
            os.unlink(os.path.join(settings.net_mount_dir, old))
            log(f"removed {os.path.join(settings.net_mount_dir, old)} (CNI_OLD_CONF_NAME)")
        except FileNotFoundError:
            pass
    return written


def wait_for_stop() -> int:
    """SLEEP=true: stay up (a long-running sidecar) until SIGTERM/SIGINT; exit 0.
    The signals are blocked and waited for, which also works as PID 1."""
    stops = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    received = signal.sigwait(stops)
    log(f"{signal.Signals(received).name} received, exiting")
    return 0


def run(environ: Mapping[str, str], *, sleep: bool | None = None,
        wait: Callable[[], int] = wait_for_stop) -> int:  # fmt: skip
    """One install; then, if SLEEP (or ``sleep``) says so, wait.  Exit status."""
    try:
        settings = Settings.from_env(environ)
        log(f"network configuration from {settings.template_source}")
        text, _conf = render(settings)
    except InstallError as exc:
        log(f"error: {exc}")
        log("nothing on the node was changed")
        return 1
    try:
        for path in install(settings, text):
            print(f"installed {path}", flush=True)
    except (InstallError, OSError) as exc:
        log(f"error: {exc}")
        return 1
    conf_path = os.path.join(settings.net_mount_dir, settings.conf_name)
    with open(conf_path, encoding="utf-8") as f:
        sys.stdout.write(f.read())
    sys.stdout.flush()
    if settings.sleep if sleep is None else sleep:
        log("done; sleeping (SLEEP=true)")
        return wait()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args:
        print("usage: install-cni   (settings from the environment: see docker/README.md)",
              file=sys.stderr)  # fmt: skip
        return 2
    return run(os.environ)


if __name__ == "__main__":
    sys.exit(main())
