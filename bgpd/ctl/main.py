"""``bgpctl``: the operator's command line, after ``calicoctl``.

    bgpctl [--state-dir DIR] [--node-name NODE] [--datastore etcd --etcd-endpoints URLS ...]
           <command> ...

Each command group lives in its own module with a ``register(subparsers)`` that
adds its parser and sets ``run`` (a function of the parsed arguments and the
``Context`` that returns the exit status): ``resources`` (apply, create, replace,
delete, get), ``node`` (status, routes), ``ipam``, ``policy`` (show) and
``datastore`` (migrate, status).

Exit status: 0 when the command did its work (``ipam check`` finding problems
included, as calicoctl's), 1 on any failure, with one line on stderr.  Usage
errors are failures too (argparse's own 2 is folded into 1).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from ..datastore import select
from ..datastore.base import DatastoreError
from . import datastore, ipam, node, policy, resources
from .context import Context, CtlError, default_node_name, default_state_dir

if TYPE_CHECKING:
    from collections.abc import Sequence

PROG = "bgpctl"


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that reports a usage error to ``main`` instead of exiting 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(f"{self.prog}: {message}")


def _global_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """``--state-dir`` and ``--node-name``, accepted before the command and, without
    defaults of their own (``suppress``), after it."""
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--state-dir", default=default, metavar="DIR",
        help="bgpd's state directory (default: $BGPD_STATE_DIR, else /var/lib/bgpd)",
    )  # fmt: skip
    parser.add_argument(
        "--node-name", default=default, metavar="NODE",
        help="this node's name (default: $NODENAME, else <state-dir>/nodename, else the "
        "hostname)",
    )  # fmt: skip
    select.add_arguments(parser, default)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Operate a bgpd (calico-node replacement) cluster.")
    _global_options(parser, suppress=False)
    common = _Parser(add_help=False)
    _global_options(common, suppress=True)
    commands = parser.add_subparsers(dest="command", metavar="<command>", parser_class=_Parser)
    commands.required = True
    datastore.register(commands, [common])
    ipam.register(commands, [common])
    node.register(commands, [common])
    policy.register(commands, [common])
    resources.register(commands, [common])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        print(exc, file=sys.stderr)
        return 1
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    state_dir = args.state_dir or default_state_dir()
    try:
        chosen = select.from_args(args)
    except DatastoreError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    ctx = Context(state_dir, args.node_name or default_node_name(state_dir), chosen)
    try:
        status: int = args.run(args, ctx)
        return status
    except CtlError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
    except DatastoreError as exc:
        print(f"{PROG}: datastore: {exc}", file=sys.stderr)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{PROG}: {where}{exc.strerror or exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
    finally:
        ctx.close()
    return 1


if __name__ == "__main__":
    sys.exit(main())
