"""The timing loop of ``bench.cni``, run inside the node's network namespace.

    ip netns exec NODE python -m bench.cni_worker PLAN.json

The plan holds, per plugin, its binary, network configuration and CNI_PATH,
and a list of steps: a command (ADD or DEL), a plugin and the pods to run it for,
one after another.  Every invocation of every plugin is made the same way: a
``subprocess.run`` of the binary with the configuration on stdin, the ``CNI_*``
variables a runtime sets (and PATH) as its whole environment, and stdout and
stderr captured; the time is ``time.perf_counter`` around that call alone.

This process entered the namespace before it started, so no ``ip netns exec``
is inside any measured call.  It imports nothing of bgpd.  A failed invocation
stops the run (exit 1, the plugin's output on stderr): a fast wrong answer does
not count.  Prints one JSON object: {plugin: {command: [seconds, ...]}, and
"results": {plugin: {pod: [addresses]}} for the ADDs.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from typing import Any


def invoke(
    plugin: dict[str, Any], command: str, pod: dict[str, str]
) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": pod["container"],
        "CNI_NETNS": pod["netns"],
        "CNI_IFNAME": "eth0",
        "CNI_PATH": plugin["path"],
        "CNI_ARGS": pod["args"],
    }
    data = plugin["config"]
    argv = [plugin["binary"]]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, input=data, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - t0
    return elapsed, proc


def main(argv: list[str]) -> int:
    with open(argv[0]) as f:
        plan = json.load(f)
    plugins = {name: {**p, "config": p["config"].encode()} for name, p in plan["plugins"].items()}
    times: dict[str, dict[str, list[float]]] = {n: {"ADD": [], "DEL": []} for n in plugins}
    results: dict[str, dict[str, list[str]]] = {n: {} for n in plugins}
    gc.disable()  # no collection pause inside a measured call, for either plugin
    for step in plan["steps"]:
        name, command = step["plugin"], step["command"]
        plugin = plugins[name]
        for pod in step["pods"]:
            elapsed, proc = invoke(plugin, command, pod)
            if proc.returncode != 0:
                print(
                    f"cni_worker: {name} {command} {pod['container']}: exit {proc.returncode}\n"
                    f"stdout: {proc.stdout.decode(errors='replace').strip()}\n"
                    f"stderr: {proc.stderr.decode(errors='replace').strip()[-2000:]}",
                    file=sys.stderr,
                )
                return 1
            if command == "ADD":
                result = json.loads(proc.stdout)
                results[name][pod["container"]] = [ip["address"] for ip in result.get("ips", ())]
            if step.get("timed", True):
                times[name][command].append(elapsed)
        gc.collect()
    json.dump({"times": times, "results": results}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
