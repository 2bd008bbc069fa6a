"""``bgpd policy``: the NetworkPolicy agent's command line (issue 8).

    bgpd policy [--state-dir DIR] [--node-name NAME] [--metrics-port N]
                [--table NAME] [--mark 0xN] [--interface-prefix cali] [--cleanup]
                [--log-format plain|json]

It must run in the node's network namespace (where the pods' host interfaces
are).  Besides the status file (``<state>/run/policy-<node>.json``) it serves
``/status``, ``/counters``, ``/healthz`` and ``/metrics`` on a unix socket
(``<state>/run/policy-<node>.sock``, which ``bgpctl policy show`` reads) and,
unless ``--metrics-port 0``, on 127.0.0.1:<port> (default 9091, Felix's
Prometheus port; ``$BGPD_POLICY_METRICS_PORT``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from ..datastore import select
from ..datastore.base import DatastoreError
from ..datastore.local import node_name, state_dir
from ..datastore.select import StoreConfig
from ..runtime import tune_gc
from . import nft
from .agent import PolicyAgent, PolicyOptions
from .render import DEFAULT_MARK, INTERFACE_PREFIX, TABLE

log = logging.getLogger("bgpd.policy")


def policy_socket_path(state: str, node: str) -> str:
    return f"{state}/run/policy-{node}.sock"


def build_parser() -> argparse.ArgumentParser:
    env = os.environ
    p = argparse.ArgumentParser(prog="bgpd policy", description="The node's NetworkPolicy agent.")
    p.add_argument("--state-dir", default=None, help="default $BGPD_STATE_DIR or /var/lib/bgpd")
    p.add_argument("--node-name", default=None, help="default $NODENAME, else the hostname")
    p.add_argument("--metrics-host", default="127.0.0.1")
    p.add_argument("--metrics-port", type=int,
                   default=int(env.get("BGPD_POLICY_METRICS_PORT", "9091")),
                   help="TCP port of /metrics and /status, 0 for none (default 9091)")  # fmt: skip
    p.add_argument("--table", default=TABLE, help=f"the nft table (inet) to own (default {TABLE})")
    p.add_argument("--mark", type=lambda t: int(t, 0), default=DEFAULT_MARK,
                   help=f"the mark bit of an allow (default 0x{DEFAULT_MARK:x})")  # fmt: skip
    p.add_argument("--interface-prefix", default=INTERFACE_PREFIX,
                   help="the pods' host interfaces; one not known yet is dropped "
                   f"(default {INTERFACE_PREFIX}; empty: no such drop)")  # fmt: skip
    p.add_argument("--cleanup", action="store_true", help="remove the table on exit")
    p.add_argument("--log-format", choices=("plain", "json"),
                   default=env.get("BGPD_LOG_FORMAT", "plain"))  # fmt: skip
    select.add_arguments(p)
    return p


async def run(options: PolicyOptions) -> int:
    from ..node.api import ApiServer, build_policy_app  # noqa: PLC0415 - aiohttp: slow import

    tune_gc()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):  # before the status file says we run
        loop.add_signal_handler(sig, stop.set)
    store = (options.datastore or StoreConfig()).open(options.state_dir)
    agent = PolicyAgent(options, store)
    api = ApiServer(
        app=build_policy_app(agent),
        host=options.metrics_host,
        port=options.metrics_port,
        socket_path=policy_socket_path(options.state_dir, options.node),
    )
    await api.start()  # before the status file exists: who reads it may ask the API next
    await agent.start()
    status = agent.status()
    log.info(
        "policy agent for node %s: %d policies, %d local endpoints, %d rules in inet %s",
        options.node, status["policies"], status["endpoints"], status["rules"], options.table,
    )  # fmt: skip
    await stop.wait()
    await api.close()
    await agent.close()
    store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    from ..node.main import _setup_logging  # noqa: PLC0415

    args = build_parser().parse_args(argv)
    _setup_logging(args.log_format)
    if not nft.available():
        log.error("nft is not installed (Debian package nftables)")
        return 1
    state = args.state_dir or state_dir()
    try:
        datastore = select.from_args(args)
    except DatastoreError as exc:
        log.error("bgpd policy: %s", exc)
        return 2
    options = PolicyOptions(
        state_dir=state, node=args.node_name or node_name(state), table=args.table,
        mark=args.mark, prefix=args.interface_prefix, metrics_host=args.metrics_host,
        metrics_port=args.metrics_port, cleanup=args.cleanup, datastore=datastore,
    )  # fmt: skip
    return asyncio.run(run(options))


if __name__ == "__main__":
    sys.exit(main())
