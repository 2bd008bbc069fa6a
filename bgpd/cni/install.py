"""Install the plugin launchers into a CNI binary folder (``/opt/cni/bin`` on a
node): ``bgpd-cni`` and ``bgpd-ipam``, each a two-line Python script run with
``-I -S``.  Without ``site`` the interpreter starts in a third of the time (no
site-packages scan, no editable-install finder); the plugins need nothing beyond
the standard library and this package, whose folder the launcher names.

    python -m bgpd.cni.install /opt/cni/bin
"""

from __future__ import annotations

import os
import sys

LAUNCHERS = {"bgpd-cni": "bgpd.cni.plugin", "bgpd-ipam": "bgpd.cni.ipam_plugin"}


#: What the plugins import, compiled at install time: with no byte code (or with
#: PYTHONDONTWRITEBYTECODE set) every pod start would compile it again, ~15 ms.
COMPILED = ("bgpd/__init__.py", "bgpd/cni", "bgpd/ipam", "bgpd/datastore", "bgpd/resources")


def compile_package(package_root: str) -> None:
    import compileall  # noqa: PLC0415 - install time only
    import py_compile  # noqa: PLC0415

    for part in COMPILED:
        path = os.path.join(package_root, part)
        if os.path.isdir(path):
            compileall.compile_dir(path, quiet=1)
        else:
            py_compile.compile(path)


def install(folder: str, python: str = sys.executable) -> list[str]:
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    compile_package(package_root)
    os.makedirs(folder, exist_ok=True)
    written = []
    for name, module in LAUNCHERS.items():
        path = os.path.join(folder, name)
        temp = f"{path}.tmp"
        with open(temp, "w") as f:
            f.write(
                f"#!{python} -IS\n"
                f"import sys; sys.path.insert(0, {package_root!r})\n"
                f"from {module} import main; sys.exit(main())\n"
            )
        os.chmod(temp, 0o755)
        os.replace(temp, path)  # a runtime may be executing the old one
        written.append(path)
    return written


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: python -m bgpd.cni.install FOLDER", file=sys.stderr)
        return 2
    for path in install(sys.argv[1]):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
