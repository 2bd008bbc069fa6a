"""Where one ADD of our CNI plugin spends its time, for work on the start-up path.

    python -m bench.cni_profile

Not a registered benchmark: it prints a report, no rows.  In a node namespace
made for it (deleted on the way out, with every pod namespace), with the
plugin folder and pool ``bench.cni`` uses:

1. the interpreter's own start, ``python -IS -c pass`` (the launcher's flags),
   next to ``python -I -c pass`` (with ``site``), median of BENCH_CNI_STARTS;
2. ``import bgpd.cni.plugin`` in a fresh ``-IS`` interpreter, the first ADD in
   that process (with the imports it makes lazily) and a second ADD in it (the
   work alone, warm), each timed with ``perf_counter``;
3. the launcher end to end, ADD and DEL, timed as ``bench.cni`` times them
   (``bench.cni_worker``), next to ``ptp``+``host-local``;
4. ``-X importtime`` of ``import bgpd.cni.plugin``: the slowest modules by their
   own time, and the tree by cumulative time (to depth 2, deeper where 1 ms or
   more); then the modules a real
   ADD through the launcher imports beyond those (lazily);
5. a cProfile of one in-process ADD (``plugin.run`` with an env dict, in a fresh
   ``-IS`` interpreter that imported the plugin module first), by cumulative
   time, top 25.
"""

from __future__ import annotations

import contextlib
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import cni
from .procs import ROOT, namespace

PYTHON = str(ROOT / ".venv" / "bin" / "python")
STARTS = int(os.environ.get("BENCH_CNI_STARTS", "20"))
ROUNDS = int(os.environ.get("BENCH_CNI_PROFILE_PODS", "10"))
IMPORT_PLUGIN = f"import sys; sys.path.insert(0, {str(ROOT)!r}); import bgpd.cni.plugin"

# Run with -IS inside the node namespace: imports the plugin, then ADDs pod A
# (profiled if a stats path is given) and pod B, then DELs both.  Before the
# plugin it imports only sys and time (both built in), so the plugin's imports
# are its own; cProfile (three small modules) comes after.
CHILD = """
import sys, time
sys.path.insert(0, ROOT)
t0 = time.perf_counter()
import bgpd.cni.plugin as plugin
t_import = time.perf_counter() - t0
import cProfile
data = open(CONFIG, "rb").read()
def env(command, pod):
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": command,
            "CNI_CONTAINERID": pod["container"], "CNI_NETNS": pod["netns"],
            "CNI_IFNAME": "eth0", "CNI_PATH": FOLDER, "CNI_ARGS": pod["args"]}
prof = cProfile.Profile() if STATS else None
t0 = time.perf_counter()
if prof:
    prof.enable()
first = plugin.run(env("ADD", PODS[0]), data)
if prof:
    prof.disable()
t_first = time.perf_counter() - t0
t0 = time.perf_counter()
second = plugin.run(env("ADD", PODS[1]), data)
t_second = time.perf_counter() - t0
dels = [plugin.run(env("DEL", pod), data)[0] for pod in PODS]
if prof:
    prof.dump_stats(STATS)
assert first[0] == 0 and second[0] == 0 and dels == [0, 0], (first, second, dels)
print(t_import, t_first, t_second)
"""


def median_ms(argv: list[str], n: int = STARTS) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def parse_importtime(text: str) -> list[tuple[int, int, int, str]]:
    """(self us, cumulative us, depth, module) per ``-X importtime`` line."""
    out = []
    for line in text.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, cumulative, name = line[len("import time:") :].split("|")
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        out.append((int(own), int(cumulative), depth, name.strip()))
    return out


def print_importtime(rows: list[tuple[int, int, int, str]]) -> None:
    total = sum(r[0] for r in rows)
    print(f"  {len(rows)} modules, {total / 1000:.1f} ms in all (inflated by -X importtime)")
    print("  slowest by own time:")
    for own, cumulative, _depth, name in sorted(rows, reverse=True)[:15]:
        print(f"    {own / 1000:7.2f} ms own {cumulative / 1000:7.2f} ms cum  {name}")
    print("  tree by cumulative time (to depth 2, deeper under modules of 1 ms or more):")
    print_tree(rows)


def print_tree(rows: list[tuple[int, int, int, str]]) -> None:
    """The importtime log as a tree: the log is post-order, so a line's children are the
    deeper lines just before it."""
    waiting: list[tuple[int, list[Any]]] = []
    for own, cumulative, depth, name in rows:
        node: list[Any] = [cumulative, own, name, []]
        while waiting and waiting[-1][0] > depth:
            node[3].append(waiting.pop()[1])
        waiting.append((depth, node))

    def show(node: list[Any], level: int) -> None:
        cumulative, own, name, children = node
        if cumulative < 300:  # under 0.3 ms: noise at this resolution
            return
        print(f"    {'  ' * level}{cumulative / 1000:7.2f} ms  {name} (own {own / 1000:.2f})")
        if level < 2 or cumulative >= 1000:
            for child in sorted(children, key=lambda c: -c[0]):
                show(child, level + 1)

    for _depth, node in sorted(waiting, key=lambda t: -t[1][0]):
        show(node, 0)


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="bench-cni-profile-"))
    try:
        with contextlib.ExitStack() as stack:
            report(tmp, stack)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def report(tmp: Path, stack: contextlib.ExitStack) -> None:
    folder = cni.plugin_folder(tmp / "bin")
    cni.pool(tmp / "state")
    configs = cni.network_configs(tmp)
    node = stack.enter_context(namespace("cnip-node"))
    cni.forwarding(node)
    counter = iter(range(1_000_000))

    def pod(plugin: str = "ours") -> dict[str, str]:
        i = next(counter)
        return cni.pod(plugin, i, stack.enter_context(namespace(f"cnip-{i}")))

    config_file = tmp / "ours.json"
    config_file.write_text(json.dumps(configs["ours"]))

    def in_node(argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", node, *argv]

    # Warm the page cache and .pyc files once, untimed.
    subprocess.run([PYTHON, "-IS", "-c", IMPORT_PLUGIN], check=True)

    print("== 1. interpreter start (median of", STARTS, "runs)")
    bare = median_ms([PYTHON, "-IS", "-c", "pass"])
    with_site = median_ms([PYTHON, "-I", "-c", "pass"])
    imported = median_ms([PYTHON, "-IS", "-c", IMPORT_PLUGIN])
    print(f"  python -IS -c pass                 {bare:7.1f} ms")
    print(f"  python -I  -c pass (with site)     {with_site:7.1f} ms")
    print(
        f"  python -IS -c 'import plugin'      {imported:7.1f} ms  (import: {imported - bare:.1f})"
    )

    print("\n== 2. in one -IS process (perf_counter, median of", ROUNDS, "processes)")
    runs = []
    for _ in range(ROUNDS):
        runs.append(child(in_node, folder, config_file, [pod(), pod()], None))
    t_import, t_first, t_second = (statistics.median(r[i] for r in runs) for i in range(3))
    print(f"  import bgpd.cni.plugin             {t_import * 1000:7.1f} ms")
    print(f"  first ADD (with lazy imports)      {t_first * 1000:7.1f} ms")
    print(f"  second ADD (warm: the work alone)  {t_second * 1000:7.1f} ms")

    print("\n== 3. end to end through the launcher (as bench.cni times it,", ROUNDS, "pods)")
    pods = {
        "ours": [pod("ours") for _ in range(ROUNDS)],
        "peer": [pod("peer") for _ in range(ROUNDS)],
    }
    plugins = cni.plugin_table(folder, configs)
    steps = [
        {"plugin": name, "command": command, "pods": pods[name]}
        for command in ("ADD", "DEL")
        for name in ("ours", "peer")
    ]
    times = cni.worker(node, tmp, plugins, steps)["times"]
    for command in ("ADD", "DEL"):
        ours = statistics.median(times["ours"][command]) * 1000
        peer = statistics.median(times["peer"][command]) * 1000
        print(
            f"  {command}: ours {ours:6.1f} ms   ptp+host-local {peer:6.1f} ms"
            f"   ratio {ours / peer:.2f}"
        )
    add = statistics.median(times["ours"]["ADD"]) * 1000
    print(
        f"  ADD split: interpreter {bare:.1f} + import {t_import * 1000:.1f} + first ADD "
        f"{t_first * 1000:.1f} = {bare + (t_import + t_first) * 1000:.1f} ms of {add:.1f} "
        f"(the rest: exec of the launcher, stdin/stdout, exit)"
    )

    print("\n== 4. -X importtime of import bgpd.cni.plugin")
    res = subprocess.run(
        [PYTHON, "-IS", "-X", "importtime", "-c", IMPORT_PLUGIN],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    static = parse_importtime(res.stderr)
    print_importtime(static)
    p = pod()
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": "ADD", "CNI_CONTAINERID": p["container"], "CNI_NETNS": p["netns"],
        "CNI_IFNAME": "eth0", "CNI_PATH": str(folder), "CNI_ARGS": p["args"],
    }  # fmt: skip
    res = subprocess.run(
        in_node([PYTHON, "-IS", "-X", "importtime", str(folder / "bgpd-cni")]),
        input=config_file.read_text(), env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    subprocess.run(
        in_node([str(folder / "bgpd-cni")]), input=config_file.read_text(),
        env={**env, "CNI_COMMAND": "DEL"}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    known = {r[3] for r in static}
    lazy = [r for r in parse_importtime(res.stderr) if r[3] not in known]
    print(f"  imported lazily by a real ADD (launcher): {len(lazy)} modules,"
          f" {sum(r[0] for r in lazy) / 1000:.1f} ms own time")  # fmt: skip
    for own, cumulative, depth, name in lazy:
        if depth == 0 or cumulative >= 300:
            print(
                f"    {'  ' * depth}{cumulative / 1000:7.2f} ms cum {own / 1000:6.2f} own  {name}"
            )

    print("\n== 5. cProfile of one in-process ADD (plugin.run), by cumulative time")
    stats_file = tmp / "add.prof"
    child(in_node, folder, config_file, [pod(), pod()], stats_file)
    stats = pstats.Stats(str(stats_file), stream=sys.stdout)
    stats.strip_dirs().sort_stats("cumulative").print_stats(25)


def child(
    in_node: Callable[[list[str]], list[str]], folder: Path, config: Path,
    pods: list[dict[str, str]], stats: Path | None,
) -> tuple[float, float, float]:  # fmt: skip
    """Run CHILD in a fresh -IS interpreter in the node: (import, first ADD, second ADD)."""
    code = (
        f"ROOT = {str(ROOT)!r}; CONFIG = {str(config)!r}; FOLDER = {str(folder)!r}\n"
        f"PODS = {pods!r}; STATS = {None if stats is None else str(stats)!r}\n" + CHILD
    )
    res = subprocess.run(
        in_node([PYTHON, "-IS", "-c", code]), capture_output=True, text=True, check=False
    )
    if res.returncode != 0:
        raise RuntimeError(f"cni_profile: child failed:\n{res.stderr}")
    t_import, t_first, t_second = map(float, res.stdout.split())
    return t_import, t_first, t_second


if __name__ == "__main__":
    sys.exit(main())
