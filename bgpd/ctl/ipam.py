"""``bgpctl ipam``: show, check and release, in ``calicoctl ipam``'s formats
(CALICO.md §4.4), over the IPAM state the allocator keeps (``bgpd.ipam.allocator``).

    bgpctl ipam show [--ip=IP | --show-blocks | --show-borrowed | --show-configuration]
    bgpctl ipam check [-o FILE] [--show-all-ips] [--show-problem-ips]
    bgpctl ipam release (--ip=IP | --from-report=FILE... --force)

Each command reads what it needs (``gather_*``: records in, plain tuples out) and
prints text made by a pure ``format_*`` function of those tuples, so formats are
tested without a datastore.  Reading never writes: a missing IPAMConfig is shown
with its defaults rather than created.

Releasing from a report.  calicoctl wants the datastore *locked* (every Calico
component paused) before it releases what a report calls leaked, unless
``--force``.  bgpd has no such lock: its datastore is always live, and a pod may
start or stop while the report ages.  So ``--from-report`` always needs
``--force``, and, to make forcing safe, each address is checked again just
before it is released: still allocated, to the handle the report saw, and still
named by no endpoint record.  Addresses that fail the check are left alone.
Several reports may be given: only the addresses leaked in all of them go.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ..ipam.block import Block
from ..ipam.cidr import BITS, CidrError, format_ip, key_of, parse_ip
from . import ipam_check, table
from .context import CtlError

if TYPE_CHECKING:
    import argparse
    from typing import Any

    from ..datastore.base import Datastore
    from ..ipam.pools import Pool
    from .context import Context

    #: (CIDR, addresses, addresses in use)
    BlockUsage = tuple[str, int, int]
    #: (CIDR, addresses, its blocks)
    PoolUsage = tuple[str, int, list[BlockUsage]]
    #: (IP, borrowing node, block, block owner, type, allocated to)
    Borrowed = tuple[str, str, str, str, str, str]

BLOCKS = "ipam/blocks/"
CONFIG = "ipam/config"
#: IPAMConfig's fields as calicoctl shows them, in its order, and their defaults.
CONFIG_FIELDS = (
    ("StrictAffinity", "strictAffinity", False),
    ("AutoAllocateBlocks", "autoAllocateBlocks", True),
    ("MaxBlocksPerHost", "maxBlocksPerHost", 0),
)


def register(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    ipam = commands.add_parser(
        "ipam", parents=parents, help="IP address management",
        description="IP address management: show usage, check consistency, release addresses.",
    )  # fmt: skip
    sub = ipam.add_subparsers(dest="ipam_command", metavar="<ipam command>")
    sub.required = True

    show = sub.add_parser("show", parents=parents, help="show IP usage, an IP, or settings")
    which = show.add_mutually_exclusive_group()
    which.add_argument("--ip", metavar="IP", help="report whether this IP address is in use")
    which.add_argument(
        "--show-blocks", action="store_true", help="show each block's usage as well as each pool's"
    )
    which.add_argument(
        "--show-borrowed",
        action="store_true",
        help='show the "borrowed" addresses: allocated by a node other than the block\'s',
    )
    which.add_argument(
        "--show-configuration", action="store_true", help="show the IPAM configuration"
    )
    show.set_defaults(run=cmd_show)

    check = sub.add_parser("check", parents=parents, help="check IPAM against the endpoint records")
    check.add_argument("-o", "--output", metavar="FILE", help="write a JSON report to FILE")
    check.add_argument("--show-all-ips", action="store_true", help="print every IP checked")
    check.add_argument(
        "--show-problem-ips",
        action="store_true",
        help="print every IP that is leaked or not allocated properly",
    )
    check.set_defaults(run=cmd_check)

    release = sub.add_parser("release", parents=parents, help="release IP addresses")
    what = release.add_mutually_exclusive_group(required=True)
    what.add_argument("--ip", metavar="IP", help="the IP address to release")
    what.add_argument(
        "--from-report",
        metavar="FILE",
        action="append",
        help="release the leaked addresses of an 'ipam check -o' report "
        "(repeat: only those leaked in every report); needs --force",
    )
    release.add_argument(
        "--force",
        action="store_true",
        help="release from reports although bgpd cannot lock the datastore",
    )
    release.set_defaults(run=cmd_release)

    configure = sub.add_parser(
        "configure", parents=parents, help="change the IPAM configuration (IPAMConfig)"
    )
    configure.add_argument(
        "--strictaffinity", choices=("true", "false"),
        help="true: never borrow addresses from other nodes' blocks",
    )  # fmt: skip
    configure.add_argument(
        "--autoallocateblocks", choices=("true", "false"),
        help="false: never claim new blocks (only borrow)",
    )  # fmt: skip
    configure.add_argument(
        "--max-blocks-per-host", type=int, metavar="N",
        help="at most N blocks per node (0: Calico's safeguard of 20); needs strict affinity",
    )  # fmt: skip
    configure.set_defaults(run=cmd_configure)


def _canonical_ip(text: str) -> tuple[int, int, str]:
    try:
        family, value = parse_ip(text)
    except CidrError:
        raise CtlError(f"invalid IP address: {text}") from None
    return family, value, format_ip(family, value)


# -- show: pool and block usage ------------------------------------------------------


def gather_usage(store: Datastore) -> tuple[list[PoolUsage], list[BlockUsage]]:
    """Every pool (name order) with its blocks (key order), and the blocks that lie
    in no pool (their pool was deleted)."""
    from ..ipam.pools import load_pools, pool_for  # noqa: PLC0415

    pools = load_pools(store)
    blocks: dict[str, list[BlockUsage]] = {p.name: [] for p in pools}
    orphans: list[BlockUsage] = []
    for record in store.list(BLOCKS):
        block = Block(record.value)
        usage = (block.cidr, block.size, block.in_use)
        pool = pool_for(pools, block.family, block.network)
        (orphans if pool is None else blocks[pool.name]).append(usage)
    return [(p.cidr, 1 << (BITS[p.family] - p.length), blocks[p.name]) for p in pools], orphans


def _usage_row(kind: str, cidr: str, total: int, in_use: int) -> list[str]:
    def share(n: int) -> str:
        return f"{float(n):.5g} ({100 * n / total:.0f}%)"

    return [kind, cidr, f"{float(total):.5g}", share(in_use), share(total - in_use)]


def format_usage(pools: list[PoolUsage], orphans: list[BlockUsage], show_blocks: bool) -> str:
    """calicoctl's usage table: a row per pool (its addresses in use are those of its
    blocks), each followed by its blocks with ``show_blocks``; blocks in no pool last
    (and only with ``show_blocks``)."""
    rows = []
    for cidr, total, blocks in pools:
        rows.append(_usage_row("IP Pool", cidr, total, sum(b[2] for b in blocks)))
        if show_blocks:
            rows += [_usage_row("Block", *b) for b in blocks]
    if show_blocks:
        rows += [_usage_row("Block", *b) for b in orphans]
    return table.render(["GROUPING", "CIDR", "IPS TOTAL", "IPS IN USE", "IPS FREE"], rows)


# -- show: borrowed addresses ----------------------------------------------------------


def gather_borrowed(store: Datastore) -> tuple[list[Borrowed], int]:
    """The addresses allocated by a node other than their block's (or from a block of
    no node), and how many allocations name no node at all (unclassifiable)."""
    rows: list[Borrowed] = []
    unclassified = 0
    for record in store.list(BLOCKS):
        block = Block(record.value)
        owner = ""
        if block.affinity is not None:
            parts = block.affinity.split(":")
            owner = parts[1] if len(parts) == 2 else parts[0]
        for ordinal, attribute in block.allocated():
            secondary = attribute.get("secondary") or {}
            if "node" not in secondary:
                unclassified += 1
                continue
            if secondary["node"] == owner:
                continue
            kind = allocated_to = ""
            if "pod" in secondary:
                kind = "pod"
                allocated_to = f"{secondary.get('namespace', '')}/{secondary['pod']}"
            elif "type" in secondary:
                kind = secondary["type"]
            rows.append(
                (block.address(ordinal), secondary["node"], block.cidr, owner, kind, allocated_to)
            )
    return rows, unclassified


def format_borrowed(rows: list[Borrowed], unclassified: int) -> str:
    text = table.render(
        ["IP", "BORROWING-NODE", "BLOCK", "BLOCK OWNER", "TYPE", "ALLOCATED-TO"],
        [list(r) for r in rows],
    )
    if unclassified:
        text += (
            f"\nNote: found {unclassified} IP allocations without an explicit node "
            "association. Unable to determine if they are borrowed.\n"
        )
    return text


# -- show: one address ---------------------------------------------------------------


def find_block(
    store: Datastore, family: int, value: int, pools: list[Pool] | None = None
) -> Block | None:
    """The block that holds an address: the one its pool puts it in, else (its pool
    deleted) any block that covers it."""
    from ..ipam.pools import load_pools, pool_for  # noqa: PLC0415

    pool = pool_for(load_pools(store) if pools is None else pools, family, value)
    if pool is not None:
        record = store.get(BLOCKS + key_of(pool.block_of(value)))
        if record is not None:
            return Block(record.value)
    for record in store.list(BLOCKS):
        block = Block(record.value)
        if block.family == family and block.ordinal(value) is not None:
            return block
    return None


def gather_ip(store: Datastore, text: str) -> tuple[str, tuple[str | None, dict[str, str]] | None]:
    """The address (canonical) and, when it is allocated, its handle and attributes."""
    family, value, ip = _canonical_ip(text)
    block = find_block(store, family, value)
    if block is None:
        return ip, None
    ordinal = block.ordinal(value)
    attribute = None if ordinal is None else block.attributes_of(ordinal)
    if attribute is None:
        return ip, None
    return ip, (attribute.get("handle_id"), dict(attribute.get("secondary") or {}))


def format_ip_use(ip: str, use: tuple[str | None, dict[str, str]] | None) -> str:
    """calicoctl's ``--ip`` answer; the handle line is newer calicoctl's."""
    if use is None:
        return f"{ip} is not assigned\n"
    handle, attributes = use
    lines = [f"IP {ip} is in use", f"Handle ID: {handle or '<none>'}"]
    if attributes:
        lines.append("Attributes:")
        lines += [f"  {k}: {attributes[k]}" for k in sorted(attributes)]
    else:
        lines.append("No attributes defined")
    return "\n".join(lines) + "\n"


# -- show: configuration -----------------------------------------------------------------


def gather_configuration(store: Datastore) -> dict[str, Any]:
    """IPAMConfig as stored, over its defaults (read only: never created here)."""
    record = store.get(CONFIG)
    stored = {} if record is None else record.value
    return {key: stored.get(key, default) for _, key, default in CONFIG_FIELDS}


def _go_value(value: object) -> str:
    """A value as Go's ``%#v`` prints a bool or an int."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def format_configuration(config: dict[str, Any]) -> str:
    rows = [[name, _go_value(config[key])] for name, key, _ in CONFIG_FIELDS]
    return table.render(["PROPERTY", "VALUE"], rows)


# -- the commands ----------------------------------------------------------------------


def cmd_show(args: argparse.Namespace, ctx: Context) -> int:
    store = ctx.store
    if args.ip is not None:
        text = format_ip_use(*gather_ip(store, args.ip))
    elif args.show_borrowed:
        text = format_borrowed(*gather_borrowed(store))
    elif args.show_configuration:
        text = format_configuration(gather_configuration(store))
    else:
        text = format_usage(*gather_usage(store), show_blocks=args.show_blocks)
    sys.stdout.write(text)
    return 0


def cmd_check(args: argparse.Namespace, ctx: Context) -> int:
    store = ctx.store

    def write(line: str) -> None:
        print(line, flush=True)

    # A process ID is this machine's: with a datastore that other machines write
    # too (etcd), only this node's creating records can be judged by it.
    node = None if ctx.datastore.kind == "directory" else ctx.node
    checker = ipam_check.run(
        store,
        write,
        show_all_ips=args.show_all_ips,
        show_problem_ips=args.show_problem_ips,
        node=node,
    )
    if args.output:
        try:
            ipam_check.write_report(
                args.output, checker.report(store.revision(), ipam_check.version())
            )
        except OSError as exc:
            raise CtlError(f"report {args.output}: {exc.strerror}") from None
    return 0  # problems found are the report, not a failure (as calicoctl)


def updated_configuration(
    current: dict[str, Any], strict: str | None, auto: str | None, max_blocks: int | None
) -> dict[str, Any]:
    """IPAMConfig with the given changes, checked as Calico checks it (CALICO.md §4.1):
    strictAffinity and autoAllocateBlocks not both false, maxBlocksPerHost not
    negative and, when set, only with strictAffinity."""
    config = dict(current)
    if strict is not None:
        config["strictAffinity"] = strict == "true"
    if auto is not None:
        config["autoAllocateBlocks"] = auto == "true"
    if max_blocks is not None:
        config["maxBlocksPerHost"] = max_blocks
    if config["maxBlocksPerHost"] < 0:
        raise CtlError("maxBlocksPerHost: must not be negative")
    if not config["strictAffinity"] and not config["autoAllocateBlocks"]:
        raise CtlError("strictAffinity and autoAllocateBlocks cannot both be false")
    if config["maxBlocksPerHost"] and not config["strictAffinity"]:
        raise CtlError("maxBlocksPerHost: a non-zero limit requires strictAffinity true")
    return config


def cmd_configure(args: argparse.Namespace, ctx: Context) -> int:
    from ..datastore.base import Conflict  # noqa: PLC0415

    if args.strictaffinity is None and args.autoallocateblocks is None and (
        args.max_blocks_per_host is None
    ):
        raise CtlError("nothing to change: give --strictaffinity, --autoallocateblocks "
                       "or --max-blocks-per-host")  # fmt: skip
    store = ctx.store
    for _ in range(10):
        record = store.get(CONFIG)
        config = updated_configuration(
            gather_configuration(store), args.strictaffinity, args.autoallocateblocks,
            args.max_blocks_per_host,
        )  # fmt: skip
        try:
            store.put(CONFIG, config, expect=0 if record is None else record.revision)
        except Conflict:
            continue
        sys.stdout.write(format_configuration(config))
        return 0
    raise CtlError("IPAMConfig kept changing under us; try again")


def cmd_release(args: argparse.Namespace, ctx: Context) -> int:
    if args.from_report:
        return release_from_reports(ctx, args.from_report, force=args.force)
    _, _, ip = _canonical_ip(args.ip)
    freed = _release(ctx, [ip])
    if not freed:
        raise CtlError(f"IP address {ip} is not assigned")
    print(f"Successfully released IP address {ip}")
    return 0


def _release(ctx: Context, ips: list[str]) -> list[str]:
    from ..ipam.allocator import Ipam  # noqa: PLC0415

    ipam = Ipam(ctx.store, ctx.node, ctx.ipam_lock)
    try:
        return ipam.release_ips(ips)
    finally:
        ipam.close()


def recheck(store: Datastore, leaked: list[tuple[str, str | None]]) -> list[tuple[str, str]]:
    """(ip, why not) for each reported address that must not be released now: no
    longer allocated, allocated to another handle than the report saw, or its handle
    named by an endpoint record now.

    The blocks are read first and the endpoint records after, as the check reads
    them, and just before releasing: the plugin writes its record before it
    allocates, so an address given to a pod since then is seen with its record."""
    from ..cni.endpoints import all_endpoints  # noqa: PLC0415
    from ..ipam.pools import load_pools  # noqa: PLC0415

    pools = load_pools(store)
    refused: list[tuple[str, str]] = []
    for ip, handle in leaked:
        family, value, _ = _canonical_ip(ip)
        block = find_block(store, family, value, pools)
        ordinal = None if block is None else block.ordinal(value)
        attribute = None if block is None or ordinal is None else block.attributes_of(ordinal)
        if attribute is None:
            refused.append((ip, "no longer allocated"))
        elif attribute.get("handle_id") != handle:
            now = attribute.get("handle_id") or "<none>"
            refused.append((ip, f"now allocated to handle {now}"))
    named = {h for r in all_endpoints(store) for h in ipam_check.handles_of(r.value)}
    seen = {ip for ip, _ in refused}
    refused += [
        (ip, f"an endpoint record names handle {handle} now")
        for ip, handle in leaked
        if handle in named and ip not in seen
    ]
    return refused


def release_from_reports(ctx: Context, paths: list[str], *, force: bool) -> int:
    reports = [ipam_check.load_report(p) for p in paths]
    if not force:
        raise CtlError(
            "bgpd cannot lock its datastore (the cluster stays live), so releasing from a "
            "report needs --force; each address is checked again before it is released"
        )
    print(
        "WARNING: Data store is not locked (bgpd has no lock). Releasing with --force; "
        "each address is checked again first."
    )
    leaked = ipam_check.leaked_in_all(reports)
    refused = recheck(ctx.store, leaked)
    for ip, reason in refused:
        print(f"Skipping {ip}: {reason}.")
    skip = {ip for ip, _ in refused}
    chosen = [ip for ip, _ in leaked if ip not in skip]
    if not chosen:
        print("No addresses need to be released.")
        return 0
    print(f"Releasing {len(chosen)} old IPs")
    freed = _release(ctx, chosen)
    if len(freed) != len(chosen):
        print("Warning: report contained addresses which are no longer allocated")
    print(f"Released {len(freed)} IPs successfully")
    return 0
