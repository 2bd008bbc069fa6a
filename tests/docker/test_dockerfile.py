"""docker/Dockerfile, read (no Docker engine here): what it copies exists in the
build context (the repository's root), is what pyproject.toml builds from, is not
excluded by its .dockerignore, and its ENTRYPOINT is one of the files it copies,
executable."""

from __future__ import annotations

import fnmatch
import json
import os
import shlex
import tomllib
from pathlib import Path

from tests.docker.harness import DOCKER, REPO

DOCKERFILE = DOCKER / "Dockerfile"
IGNORE = DOCKER / "Dockerfile.dockerignore"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    assert not pending, "a continuation line at the end"
    return out


def copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY from the build context."""
    out = []
    for keyword, rest in instructions():
        if keyword not in ("COPY", "ADD"):
            continue
        assert keyword == "COPY", "ADD fetches and unpacks: COPY only"
        words = shlex.split(rest)
        assert not any(w.startswith("--from") for w in words), "single stage"
        words = [w for w in words if not w.startswith("--")]
        out.append((words[:-1], words[-1]))
    return out


def ignored(path: str) -> bool:
    patterns = [
        p.strip() for p in IGNORE.read_text().splitlines() if p.strip() and not p.startswith("#")
    ]
    assert not any(p.startswith("!") for p in patterns)
    parts = Path(path).parts
    for pattern in patterns:
        bare = pattern.removeprefix("**/")
        if fnmatch.fnmatch(path, pattern) or any(fnmatch.fnmatch(p, bare) for p in parts):
            return True
    return False


def test_every_copied_source_exists_in_the_context_and_is_not_ignored() -> None:
    sources = [s for srcs, _ in copies() for s in srcs]
    assert sources
    for source in sources:
        assert not os.path.isabs(source)
        assert (REPO / source).exists(), f"COPY {source}: not in the build context"
        assert not ignored(source), f"COPY {source}: excluded by {IGNORE.name}"


def test_the_copied_tree_is_what_pyproject_builds() -> None:
    """pip install . in the image sees pyproject.toml, its readme and every package
    its find directive includes, as in the repository."""
    with open(REPO / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)
    copied = {Path(s).parts[0] for srcs, dest in copies() if dest in ("./", "/src/")
              for s in srcs}  # fmt: skip
    assert "pyproject.toml" in copied
    assert project["project"]["readme"] in copied
    includes = project["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.name for p in REPO.iterdir() if (p / "__init__.py").is_file()}
    wanted = {p for p in packages if any(fnmatch.fnmatch(p, inc) for inc in includes)}
    assert wanted == {"bgpd", "reflector"}
    assert wanted <= {Path(s).name for srcs, _ in copies() for s in srcs}
    assert any(k == "RUN" and "pip install" in r and " ." in r for k, r in instructions())


def test_entrypoint_is_a_copied_executable_script() -> None:
    (entry,) = [rest for keyword, rest in instructions() if keyword == "ENTRYPOINT"]
    argv = json.loads(entry)  # exec form: the entrypoint is PID 1, not a shell
    assert isinstance(argv, list) and len(argv) == 1
    target = Path(argv[0])
    sources = {
        str(Path(dest) / Path(s).name): s for srcs, dest in copies() if dest.endswith("/")
        for s in srcs
    }  # fmt: skip
    assert str(target) in sources, f"ENTRYPOINT {target} is not a file COPY puts there"
    source = REPO / sources[str(target)]
    assert os.access(source, os.X_OK)
    # What it imports is copied beside it.
    for name in ("entrypoint.py", "install_cni.py", "install-cni"):
        assert str(target.parent / name) in sources


def test_base_image_is_debian_slim_python_3_11() -> None:
    (base,) = [rest for keyword, rest in instructions() if keyword == "FROM"]
    assert base.startswith("python:3.11-slim")
    with open(REPO / "pyproject.toml", "rb") as f:
        assert tomllib.load(f)["project"]["requires-python"] == ">=3.11"


def test_runtime_packages_include_the_reference_plugins_install_cni_copies() -> None:
    runs = " ".join(rest for keyword, rest in instructions() if keyword == "RUN")
    assert "containernetworking-plugins" in runs  # /usr/lib/cni/{portmap,bandwidth,...}
    assert "nftables" in runs
    assert "rm -rf /var/lib/apt/lists" in runs
