"""``bgpd node`` and ``bgpd reflector``: the command line of the node agent.

Settings come from options, else from calico-node's environment variables:
``NODENAME``, ``BGPD_STATE_DIR``, ``IP``/``IP6`` (an address with its prefix
length, ``autodetect`` or ``none``), ``IP_AUTODETECTION_METHOD`` /
``IP6_AUTODETECTION_METHOD``, ``CALICO_ROUTER_ID`` (an address or ``hash``),
``BGPD_API_PORT``, and for the default pool ``CALICO_IPV4POOL_CIDR``,
``CALICO_IPV4POOL_BLOCK_SIZE``, ``CALICO_IPV4POOL_IPIP``,
``CALICO_IPV4POOL_VXLAN``, ``CALICO_IPV4POOL_NAT_OUTGOING``,
``CALICO_IPV4POOL_NODE_SELECTOR`` and ``NO_DEFAULT_POOLS``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from typing import TYPE_CHECKING

from ..datastore import select
from ..datastore.base import Conflict, DatastoreError
from ..datastore.local import node_name, state_dir
from ..runtime import tune_gc
from .agent import AgentOptions, NodeAgent

if TYPE_CHECKING:
    from ..datastore.base import Datastore

log = logging.getLogger("bgpd.node")


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def _setup_logging(fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def default_pool(store: Datastore, env: dict[str, str]) -> None:
    """calico-node's default IPv4 pool, made when no pool exists at all
    (CALICO.md §2.4); ``NO_DEFAULT_POOLS=true`` turns it off."""
    if env.get("NO_DEFAULT_POOLS", "").lower() == "true" or store.keys("resources/ippools/"):
        return
    spec = {
        "cidr": env.get("CALICO_IPV4POOL_CIDR", "192.168.0.0/16"),
        "blockSize": int(env.get("CALICO_IPV4POOL_BLOCK_SIZE", "26")),
        "ipipMode": env.get("CALICO_IPV4POOL_IPIP", "Always"),
        "vxlanMode": env.get("CALICO_IPV4POOL_VXLAN", "Never"),
        "natOutgoing": env.get("CALICO_IPV4POOL_NAT_OUTGOING", "true").lower() == "true",
        "nodeSelector": env.get("CALICO_IPV4POOL_NODE_SELECTOR", "all()"),
        "allowedUses": ["Workload", "Tunnel"],
        "assignmentMode": "Automatic",
    }
    if spec["vxlanMode"] != "Never":
        spec["ipipMode"] = "Never"
    doc = {
        "apiVersion": "projectcalico.org/v3", "kind": "IPPool",
        "metadata": {"name": "default-ipv4-ippool"}, "spec": spec,
    }  # fmt: skip
    with contextlib.suppress(Conflict):
        store.put("resources/ippools/default-ipv4-ippool", doc, expect=0)
        log.info("created the default pool %s", spec["cidr"])


def build_parser() -> argparse.ArgumentParser:
    env = os.environ
    parser = argparse.ArgumentParser(prog="bgpd", description="The node's BGP agent.")
    sub = parser.add_subparsers(dest="role", required=True)
    for role, text in (
        ("node", "the speaker of a Kubernetes node"),
        ("reflector", "the speaker as a dedicated route reflector (masters)"),
    ):
        p = sub.add_parser(role, help=text, description=text)
        p.add_argument("--state-dir", default=None, help="default $BGPD_STATE_DIR or /var/lib/bgpd")
        p.add_argument("--node-name", default=None, help="default $NODENAME, else the hostname")
        p.add_argument("--ip", default=env.get("IP") or None,
                       help="IPv4 address/len, 'autodetect' or 'none' (default $IP)")  # fmt: skip
        p.add_argument("--ip6", default=env.get("IP6") or "none", help="default $IP6, else none")
        p.add_argument("--ip-autodetection-method", default=env.get("IP_AUTODETECTION_METHOD"),
                       help="first-found, interface=RE, skip-interface=RE, can-reach=IP, "
                       "cidr=CIDR")  # fmt: skip
        p.add_argument("--ip6-autodetection-method", default=env.get("IP6_AUTODETECTION_METHOD"))
        p.add_argument("--router-id", default=env.get("CALICO_ROUTER_ID") or None,
                       help="an IPv4 address or 'hash' (default $CALICO_ROUTER_ID)")  # fmt: skip
        p.add_argument("--api-host", default="127.0.0.1")
        p.add_argument("--api-port", type=int, default=int(env.get("BGPD_API_PORT", "9179")),
                       help="TCP port of the status API, 0 for none (a unix socket is always "
                       "served at <state-dir>/run/api-<node>.sock)")  # fmt: skip
        p.add_argument("--secrets-dir", default=None, help="default <state-dir>/secrets")
        p.add_argument("--log-format", choices=("plain", "json"),
                       default=env.get("BGPD_LOG_FORMAT", "plain"))  # fmt: skip
        select.add_arguments(p)
        if role == "reflector":
            p.add_argument("--cluster-id", default=None,
                           help="set routeReflectorClusterID on this node's resource")  # fmt: skip
            p.add_argument("--no-fib", action="store_true", help="do not program the kernel")
    # listed for --help only: bgpd.cli hands `bgpd policy ...` to bgpd.policy.main
    sub.add_parser("policy", help="the NetworkPolicy agent (see bgpd policy --help)")
    return parser


async def run(options: AgentOptions) -> int:
    tune_gc()
    if options.role == "node":
        store = options.open_store()
        default_pool(store, dict(os.environ))
        store.close()
    agent = NodeAgent(options)
    await agent.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("node %s running (%s)", options.node, options.role)
    await stop.wait()
    log.info("stopping; routes stay in the kernel")
    await agent.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.log_format)
    state = args.state_dir or state_dir()
    node = args.node_name or node_name(state)
    try:
        datastore = select.from_args(args)
    except DatastoreError as exc:
        log.error("bgpd %s: %s", args.role, exc)
        return 2
    options = AgentOptions(
        state_dir=state,
        node=node,
        role=args.role,
        fib=not getattr(args, "no_fib", False),
        api_host=args.api_host,
        api_port=args.api_port,
        ip=args.ip,
        ip6=args.ip6,
        ip_method=args.ip_autodetection_method,
        ip6_method=args.ip6_autodetection_method,
        router_id=args.router_id,
        cluster_id=getattr(args, "cluster_id", None),
        secrets_dir=args.secrets_dir,
        datastore=datastore,
    )
    try:
        with contextlib.suppress(KeyboardInterrupt):
            return asyncio.run(run(options))
    except Exception as e:
        log.error("bgpd %s: %s", args.role, e)
        return 1
    return 0
