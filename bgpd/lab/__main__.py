"""``python -m bgpd.lab``: start a local cluster, show it, keep it until Ctrl-C.

    python -m bgpd.lab [--nodes 3] [--mode mesh|reflector]
                       [--encap direct|vxlan|crosssubnet] [--pods 2] [--state-dir DIR]
                       [--datastore directory|etcd] [--no-policy]

Needs root (network namespaces).  Prints each node's ``bgpctl node status``
and a ping between pods on different nodes, then what to try, and waits.
Ctrl-C (or SIGTERM) removes every pod, agent and namespace it made.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from types import FrameType

from .cluster import DATASTORES, MODES, Lab
from .topology import ENCAPS, MAX_NODES, LabError, sweep_stale


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _bgpctl() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "bgpctl")
    return beside if os.path.exists(beside) else f"{sys.executable} -m bgpd.ctl.main"


def show(lab: Lab) -> None:
    for net in lab.topology.node_nets:
        print(f"\n=== {net.name}: {net.cidr} in namespace {net.ns}")
        print(lab.node_status(net.name), end="", flush=True)
    by_node = {net.name: lab.pods_on(net.name) for net in lab.topology.node_nets}
    sources = [pods[0] for pods in by_node.values() if pods]
    if len(sources) >= 2:
        a, b = sources[0], sources[-1]
        print(f"\n=== ping from {a.name} ({a.ip}, on {a.node}) to {b.name} ({b.ip}, on {b.node})")
        result = lab.ping_result(a, b.ip, count=3)
        for line in result.output.strip().splitlines():
            print(f"  {line}")
    print("\n=== pods")
    for pod in lab.pods:
        print(f"  {pod.name:<14} {pod.ip:<15} namespace {pod.ns}")


def hints(lab: Lab) -> None:
    ctl = f"{_bgpctl()} --state-dir {lab.state}"
    if lab.ctl_netns:
        ctl = f"ip netns exec {lab.ctl_netns} {ctl} {' '.join(lab.datastore_args)}"
    n1 = lab.topology.node_nets[0]
    pods = lab.pods
    lines = [
        "",
        "What to try, as root in another terminal:",
        f"  ip netns exec {n1.ns} ip route",
        f"  {ctl} --node-name {n1.name} node status",
        f"  {ctl} ipam show --show-blocks",
        f"  {ctl} get ippools -o yaml",
        f"  curl -s --unix-socket {lab.state}/run/api-{n1.name}.sock http://node/routes",
        f"  tail -f {lab.state}/logs/{n1.name}.log",
    ]
    if len(pods) >= 2:
        a, b = pods[0], pods[-1]
        lines.append(f"  ip netns exec {a.ns} ping {b.ip}")
    if lab.policy_agents:
        lines += [
            f"  ip netns exec {n1.ns} nft list table inet bgpd-policy",
            f"  {ctl} apply -f my-networkpolicy.yaml    (then: {ctl} policy show <ns>/<pod>)",
        ]
    agent = lab.agents[lab.node_names[-1]]
    lines += [
        f"  kill -9 {agent.pid}    (crash {agent.name}'s agent: its peers keep its routes, and "
        "the lab starts it again, as its DaemonSet would)",
        "",
        "Press Ctrl-C to stop the cluster and remove everything it made.",
    ]
    print("\n".join(lines), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bgpd.lab", description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=3, help=f"1..{MAX_NODES} (default 3)")
    parser.add_argument("--mode", choices=MODES, default="mesh")
    parser.add_argument("--encap", choices=ENCAPS, default="direct")
    parser.add_argument("--pods", type=int, default=2, help="pods per node (default 2)")
    parser.add_argument("--state-dir", help="shared state directory (default: a new temporary one)")
    parser.add_argument("--datastore", choices=DATASTORES, default="directory",
                        help="directory (the state directory's, default) or etcd (a real "
                        "etcd member in the lab's fabric namespace)")  # fmt: skip
    parser.add_argument("--no-policy", dest="policy", action="store_false",
                        help="no NetworkPolicy agent (bgpd policy) beside the node agents")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("python -m bgpd.lab needs root: it makes network namespaces, veths and bridges "
              "(run it as root, or with sudo)", file=sys.stderr)  # fmt: skip
        return 1
    needed = ["ip", "ping", *(["nft"] if args.policy else []),
              *(["etcd"] if args.datastore == "etcd" else [])]  # fmt: skip
    missing = [p for p in needed if shutil.which(p) is None]
    if missing:
        print(f"python -m bgpd.lab needs {', '.join(missing)} (iproute2, iputils-ping, nftables, "
              "etcd-server)",
              file=sys.stderr)  # fmt: skip
        return 1
    signal.signal(signal.SIGTERM, _interrupt)
    swept = sweep_stale()
    if swept:
        print(f"removed {len(swept)} namespaces left by labs that died: {', '.join(swept)}")
    kind = "no encapsulation" if args.encap == "direct" else "VXLAN pool"
    print(f"bgpd lab: {args.nodes} nodes, {args.mode}, {args.encap} ({kind})", flush=True)
    lab = Lab(
        args.nodes, args.mode, args.encap, args.state_dir, args.pods, policy=args.policy,
        datastore=args.datastore, log=lambda text: print(f"  {text}", flush=True),
    )  # fmt: skip
    status = 0
    try:
        lab.start()
        show(lab)
        hints(lab)
        while True:
            time.sleep(1)  # waiting for Ctrl-C; meanwhile, restart an agent that died
            for agent in [*lab.agents.values(), *lab.policy_agents.values()]:
                if not agent.running():
                    code = agent.proc.returncode if agent.proc else None
                    agent.start()
                    print(f"{agent.name}'s agent exited ({code}); started again as pid "
                          f"{agent.pid} (log: {agent.log_path})", flush=True)  # fmt: skip
    except KeyboardInterrupt:
        print("\nstopping: pods, agents, namespaces", flush=True)
    except LabError as exc:
        lab.failed = True
        print(f"lab failed: {exc}", file=sys.stderr)
        status = 1
    except Exception:
        lab.failed = True
        raise
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            lab.close()
        except LabError as exc:
            print(exc, file=sys.stderr)
            status = 1
        if lab.failed:
            print(f"logs kept in {lab.state / 'logs'}", file=sys.stderr)
    if status == 0:
        print("cleaned up", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
