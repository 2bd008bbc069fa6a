"""``bgpctl datastore``: copy the datastore between backends, and show what one holds.

    bgpctl datastore migrate --to directory|etcd [--to-state-dir DIR]
                             [--to-etcd-endpoints URLS] [--to-etcd-prefix P]
                             [--overwrite] [--dry-run] [--force]
    bgpctl datastore status [-o table|json]

The source of a migration is the datastore the global options select (as for
every command: ``--datastore``/``--etcd-*``, else ``BGPD_DATASTORE``/``ETCD_*``,
else ``<state-dir>/store``).  The destination is described by the ``--to*``
options alone:

- ``--to directory``: ``<DIR>/store``, DIR from ``--to-state-dir`` (default: the
  global ``--state-dir``), created when missing;
- ``--to etcd``: the endpoints from ``--to-etcd-endpoints`` (default
  ``$ETCD_ENDPOINTS``), the prefix from ``--to-etcd-prefix`` (default
  ``$BGPD_ETCD_PREFIX``, else ``/bgpd/``); TLS, user and timeout from the
  environment (``ETCD_CA_CERT_FILE``, ``ETCD_CERT_FILE``, ``ETCD_KEY_FILE``,
  ``ETCD_USERNAME``/``ETCD_PASSWORD``, ``BGPD_ETCD_TIMEOUT``), never from the
  source's ``--etcd-*`` options.

What a migration does, in order:

1. Refuses when source and destination are the same place, or overlap (one
   directory inside the other; on one etcd cluster, recognised by its cluster
   ID, one prefix inside the other): the copy would read its own writes.
2. Notes the source's revision and reads every key under one listing (etcd:
   one consistent snapshot).  Keys under ``status/`` are left out on both sides:
   they are the presence records of running agents (held on leases in etcd),
   which belong to those processes and are written again by them.
3. Refuses an empty source (a wrong ``--etcd-prefix`` or state directory looks
   just like that, and with ``--overwrite`` it would empty the destination).
4. Refuses, naming how many keys it found, a destination that already holds
   keys, unless ``--overwrite``: then the destination is made an exact copy
   (keys absent from the source are deleted; keys already equal are not
   rewritten, so their revisions and watchers are left alone).
5. ``--dry-run`` stops here and says what would be written and deleted: every
   check above runs, nothing is created or written (exit 1 if the real run
   would be refused).
6. Writes every key in key order, values unchanged.  Revisions are the
   destination's own, so resources get new ``resourceVersion``s, as after
   ``calicoctl datastore migrate``.  A failure half-way leaves a partial copy:
   run again with ``--overwrite``.
7. Reads every key back and compares it with the source's value (as canonical
   JSON): any key missing, different or unexpected fails the migration.
8. Notes the source's revision again.  When it moved, lists the source again
   and compares each key's revision with the copy's: a key written or deleted
   during the copy (by a node agent, the CNI plugin, ``bgpctl``...) is missing
   from the destination, and once the processes switch over it is lost (an
   IPAM allocation lost hands the same address out twice).  So this is an
   error, exit 1, naming the keys: stop the writers and run again with
   ``--overwrite`` (which rewrites only what differs).  ``--force`` accepts the
   copy anyway (the warning is still printed, exit 0).  Writes elsewhere in the
   same etcd cluster (other prefixes) and under ``status/`` move the revision
   but are not changes to the copy.

Output: ``Migrated N keys from <source> to <destination>.`` on stdout, after a
line with the source revisions; errors and the warning on stderr as
``bgpctl: ...``, exit 1.  An etcd that does not answer is reported with the
datastore's own message (``etcd: no endpoint answers (...)``), prefixed by which
side it is.

``status`` prints the backend (as ``StoreConfig.describe()``, with the
directory's path), the revision, the number of keys per top-level folder
(``endpoints``, ``ipam``, ``resources``, ``status``...), for etcd the cluster's
members (name, ID, client URLs, and which is the leader) and the answering
member's version and database size, and the agents that record their
presence under ``status/agents/`` (``{node, role, pid, host, started}``).  Their
STATE is ``running``, or, in the directory datastore (where a killed agent
leaves its record behind), ``stale`` when its PID no longer runs.  ``-o json``
prints the same as one JSON document.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from ..datastore import codec, local
from ..datastore.base import DatastoreError, Unavailable
from ..datastore.etcd import DEFAULT_PREFIX
from ..datastore.presence import AGENTS
from ..datastore.select import FIELDS, KINDS, StoreConfig
from . import table
from .context import CtlError

if TYPE_CHECKING:
    import argparse

    from ..datastore.base import Datastore, Record
    from .context import Context

#: Live-presence records of running agents: never migrated, never overwritten.
STATUS = "status/"
#: How many keys a message names before "and N more".
SHOWN = 5


def register(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    datastore = commands.add_parser(
        "datastore", parents=parents, help="migrate the datastore, show its status",
        description="Copy the datastore between the directory and etcd backends, "
        "or show what it holds.",
    )  # fmt: skip
    sub = datastore.add_subparsers(dest="datastore_command", metavar="<datastore command>")
    sub.required = True

    migrate = sub.add_parser(
        "migrate", parents=parents, help="copy every key to another datastore",
        description="Copy every key of the datastore the global options select (the "
        "source) into another one, then read it back and verify it. Keys under status/ "
        "(running agents' presence records) are not copied.",
    )  # fmt: skip
    migrate.add_argument("--to", required=True, choices=KINDS, help="the destination's backend")
    migrate.add_argument(
        "--to-state-dir", metavar="DIR",
        help="--to directory: the destination's state directory (its datastore is "
        "DIR/store; default: the global --state-dir)",
    )  # fmt: skip
    migrate.add_argument(
        "--to-etcd-endpoints", metavar="URLS",
        help="--to etcd: comma-separated http[s]://host:port (default $ETCD_ENDPOINTS; "
        "TLS and user settings from $ETCD_*)",
    )  # fmt: skip
    migrate.add_argument(
        "--to-etcd-prefix", metavar="P",
        help="--to etcd: the keys' prefix (default $BGPD_ETCD_PREFIX, else /bgpd/)",
    )  # fmt: skip
    migrate.add_argument(
        "--overwrite", action="store_true",
        help="replace what the destination holds: it becomes an exact copy (keys absent "
        "from the source are deleted)",
    )  # fmt: skip
    migrate.add_argument("--dry-run", action="store_true", help="check and report, write nothing")
    migrate.add_argument(
        "--force", action="store_true",
        help="exit 0 even if the source changed during the copy (the changes are missing "
        "from the destination)",
    )  # fmt: skip
    migrate.set_defaults(run=cmd_migrate)

    status = sub.add_parser(
        "status", parents=parents, help="backend, revision, keys, etcd members, live agents",
        description="Show which datastore is in use and what it holds.",
    )  # fmt: skip
    status.add_argument(
        "-o", "--output", choices=["table", "json"], default="table",
        help="tables (the default) or one JSON document",
    )  # fmt: skip
    status.set_defaults(run=cmd_status)


# -- where a datastore is -------------------------------------------------------------


def _plural(count: int, word: str = "key") -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _some(keys: list[str]) -> str:
    """Up to ``SHOWN`` keys, and how many more."""
    text = ", ".join(keys[:SHOWN])
    if len(keys) > SHOWN:
        text += f" and {len(keys) - SHOWN} more"
    return text


def describe(config: StoreConfig, state_dir: str) -> str:
    """``StoreConfig.describe()``, with the directory's path."""
    if config.kind == "directory":
        return f"directory {os.path.abspath(state_dir)}/store"
    return config.describe()


def destination_config(args: argparse.Namespace) -> StoreConfig:
    """The destination's settings: the ``--to*`` options over the environment's
    etcd settings (never the source's command line)."""
    values: dict[str, str | None] = {
        name: os.environ.get(env) for name, env, _cni, _opt in FIELDS if name != "datastore"
    }
    values["datastore"] = args.to
    if args.to_etcd_endpoints:
        values["endpoints"] = args.to_etcd_endpoints
    if args.to_etcd_prefix:
        values["prefix"] = args.to_etcd_prefix
    if args.to == "etcd" and not values.get("endpoints"):
        raise CtlError("--to etcd needs --to-etcd-endpoints (or $ETCD_ENDPOINTS)")
    try:
        return StoreConfig(values)
    except DatastoreError as exc:
        raise CtlError(f"destination: {exc}") from None


def _nested(a: str, b: str) -> bool:
    """Whether one of two ``/``-ended prefixes (or paths) holds the other."""
    return a.startswith(b) or b.startswith(a)


def _endpoints(config: StoreConfig) -> set[tuple[str, str, int]]:
    from ..datastore.etcd import parse_endpoint  # noqa: PLC0415

    text = config.values.get("endpoints") or ""
    try:
        return {parse_endpoint(e) for e in text.split(",") if e.strip()}
    except DatastoreError as exc:
        raise CtlError(str(exc)) from None


def same_place(
    source: StoreConfig, source_dir: str, dest: StoreConfig, dest_dir: str
) -> str | None:
    """Why source and destination are (or overlap) the same place, from their
    settings alone; None when they look apart (etcd: see ``same_cluster`` too)."""
    if source.kind != dest.kind:
        return None
    if source.kind == "directory":
        a = os.path.realpath(f"{source_dir}/store") + "/"
        b = os.path.realpath(f"{dest_dir}/store") + "/"
        if a == b:
            return f"both are the directory {a[:-1]}"
        if _nested(a, b):
            return f"the directories {a[:-1]} and {b[:-1]} are inside one another"
        return None
    prefix_a = source.values.get("prefix") or DEFAULT_PREFIX
    prefix_b = dest.values.get("prefix") or DEFAULT_PREFIX
    if _nested(prefix_a, prefix_b) and _endpoints(source) & _endpoints(dest):
        return _prefix_clash(prefix_a, prefix_b)
    return None


def _prefix_clash(a: str, b: str) -> str:
    if a == b:
        return f"both are prefix {a} of one etcd cluster"
    return f"the prefixes {a} and {b} of one etcd cluster are inside one another"


def _cluster_id(store: Datastore) -> str | None:
    """The etcd cluster's ID; None for a directory, or when etcd will not say (a
    user without the permission: the endpoints were compared already)."""
    from ..datastore.etcd import EtcdStore  # noqa: PLC0415

    if not isinstance(store, EtcdStore):
        return None
    try:
        answer = store.status()
    except Unavailable:
        raise
    except DatastoreError:
        return None
    return str(answer.get("header", {}).get("cluster_id") or "") or None


# -- migrate ------------------------------------------------------------------------------


def _open(config: StoreConfig, state_dir: str, create: bool, side: str) -> Datastore:
    try:
        return config.open(state_dir, create=create)
    except DatastoreError as exc:
        raise CtlError(f"{side} {describe(config, state_dir)}: {exc}") from None


def _snapshot(store: Datastore) -> list[Record]:
    """Every record outside ``status/``, in key order."""
    return [r for r in store.list("") if not r.key.startswith(STATUS)]


def _differences(expected: dict[str, str], found: dict[str, str]) -> list[str]:
    """Keys missing, different or unexpected, each with what is wrong."""
    out = []
    for key in sorted(expected.keys() | found.keys()):
        if key not in found:
            out.append(f"{key} (missing)")
        elif key not in expected:
            out.append(f"{key} (unexpected)")
        elif expected[key] != found[key]:
            out.append(f"{key} (different)")
    return out


class _Side:
    """A datastore and how to name it in messages."""

    def __init__(
        self, store: Datastore, config: StoreConfig, state_dir: str, where: str, side: str
    ) -> None:
        self.store = store
        self.config = config
        self.state_dir = state_dir
        self.where = where
        self.side = side
        self.prefix = config.values.get("prefix") or DEFAULT_PREFIX

    def create(self) -> None:
        """Make a directory datastore that is not there yet (opened without
        creating it, so that a refused or dry run leaves nothing behind)."""
        if self.config.kind == "directory":
            self.config.open(self.state_dir, create=True).close()

    def failed(self, exc: DatastoreError) -> CtlError:
        return CtlError(f"{self.side} {self.where}: {exc}")


def cmd_migrate(args: argparse.Namespace, ctx: Context) -> int:
    dest_config = destination_config(args)
    dest_dir = args.to_state_dir or ctx.state_dir
    source_where = describe(ctx.datastore, ctx.state_dir)
    dest_where = describe(dest_config, dest_dir)
    clash = same_place(ctx.datastore, ctx.state_dir, dest_config, dest_dir)
    if clash:
        raise CtlError(f"source and destination are the same place: {clash}")

    try:
        source = _Side(ctx.store, ctx.datastore, ctx.state_dir, source_where, "source")
    except DatastoreError as exc:
        raise CtlError(f"source {source_where}: {exc}") from None
    dest_store = _open(dest_config, dest_dir, False, "destination")
    try:
        dest = _Side(dest_store, dest_config, dest_dir, dest_where, "destination")
        return _migrate(args, source, dest)
    finally:
        dest_store.close()


def _migrate(args: argparse.Namespace, source: _Side, dest: _Side) -> int:
    # Same place, as the clusters themselves say (one cluster, several names).
    try:
        source_cluster = _cluster_id(source.store)
    except DatastoreError as exc:
        raise source.failed(exc) from None
    try:
        dest_cluster = None if source_cluster is None else _cluster_id(dest.store)
    except DatastoreError as exc:
        raise dest.failed(exc) from None
    one_cluster = dest_cluster is not None and source_cluster == dest_cluster
    if one_cluster and _nested(source.prefix, dest.prefix):
        clash = _prefix_clash(source.prefix, dest.prefix)
        raise CtlError(f"source and destination are the same place: {clash}")

    try:
        before = source.store.revision()
        records = _snapshot(source.store)
        skipped = len(source.store.keys(STATUS))
    except DatastoreError as exc:
        raise source.failed(exc) from None
    if not records:
        raise CtlError(
            f"source {source.where} holds no keys: nothing to migrate "
            "(is the state directory or --etcd-prefix right?)"
        )
    wanted = {r.key: codec.dumps(r.value) for r in records}

    try:
        present = {r.key: codec.dumps(r.value) for r in _snapshot(dest.store)}
    except DatastoreError as exc:
        raise dest.failed(exc) from None
    if present and not args.overwrite:
        raise CtlError(
            f"destination {dest.where} already holds {_plural(len(present))} "
            f"({_some(sorted(present))}): use --overwrite to replace them with an exact copy"
        )
    writes = [r for r in records if present.get(r.key) != wanted[r.key]]
    deletes = sorted(present.keys() - wanted.keys())
    unchanged = len(records) - len(writes)

    if args.dry_run:
        print(f"Dry run: would migrate {_plural(len(records))} from {source.where} "
              f"to {dest.where}.")  # fmt: skip
        if args.overwrite and present:
            print(f"Dry run: would write {_plural(len(writes))} ({unchanged} already equal) "
                  f"and delete {_plural(len(deletes))} absent from the source.")  # fmt: skip
        if skipped:
            print(f"Dry run: would skip {_plural(skipped)} under {STATUS} "
                  "(running agents' presence records).")  # fmt: skip
        print("Nothing was written.")
        return 0

    try:
        dest.create()
        dest.store.check()
    except DatastoreError as exc:
        raise dest.failed(exc) from None
    done = 0
    try:
        for record in writes:
            dest.store.put(record.key, record.value)
            done += 1
        for key in deletes:
            dest.store.delete(key)
    except DatastoreError as exc:
        raise CtlError(
            f"destination {dest.where}: {exc}; stopped after writing {done} of "
            f"{_plural(len(writes))}: the destination may hold a partial copy (run again "
            "with --overwrite)"
        ) from None

    try:
        copied = {r.key: codec.dumps(r.value) for r in _snapshot(dest.store)}
    except DatastoreError as exc:
        raise dest.failed(exc) from None
    wrong = _differences(wanted, copied)
    if wrong:
        raise CtlError(
            f"verifying {dest.where}: {_plural(len(wrong))} not as in the source: {_some(wrong)}"
        )

    try:
        after = source.store.revision()
        changed = _changed(source.store, records) if after != before else []
    except DatastoreError as exc:
        raise source.failed(exc) from None

    if skipped:
        print(f"Skipped {_plural(skipped)} under {STATUS} (running agents' presence records).")
    if args.overwrite and present:
        print(f"Overwrite: wrote {_plural(len(writes))}, {unchanged} already equal, "
              f"deleted {len(deletes)} absent from the source.")  # fmt: skip
    print(f"Source revision {before} before the copy, {after} after.")
    print(f"Migrated {_plural(len(records))} from {source.where} to {dest.where}.")
    if changed:
        print(
            f"bgpctl: {'warning: ' if args.force else ''}the source changed during the "
            f"migration (revision {before} -> {after}): the destination misses what was "
            f"written or deleted meanwhile in {_plural(len(changed))} ({_some(changed)}). Stop "
            "every writer (node agents, policy agents, the CNI plugin) and run again with "
            "--overwrite" + ("." if args.force else ", or accept this copy with --force."),
            file=sys.stderr,
        )
        return 0 if args.force else 1
    return 0


def _changed(store: Datastore, records: list[Record]) -> list[str]:
    """Keys (outside ``status/``) written or deleted since ``records`` were read."""
    then = {r.key: r.revision for r in records}
    now = {r.key: r.revision for r in _snapshot(store)}
    return sorted(k for k in then.keys() | now.keys() if then.get(k) != now.get(k))


# -- status -------------------------------------------------------------------------------


def _folder(key: str) -> str:
    head, sep, _ = key.partition("/")
    return head if sep else "(top level)"


def gather_status(ctx: Context) -> dict[str, Any]:
    """The status document (``-o json`` prints it as is)."""
    from ..datastore.etcd import EtcdStore  # noqa: PLC0415

    store = ctx.store
    doc: dict[str, Any] = {
        "datastore": describe(ctx.datastore, ctx.state_dir),
        "kind": ctx.datastore.kind,
        "revision": store.revision(),
    }
    folders: dict[str, int] = {}
    keys = store.keys("")
    for key in keys:
        folders[_folder(key)] = folders.get(_folder(key), 0) + 1
    doc["keys"] = len(keys)
    doc["folders"] = dict(sorted(folders.items()))
    if isinstance(store, EtcdStore):
        try:
            doc["etcd"] = {"members": store.members(), "status": store.status()}
        except Unavailable:
            raise
        except DatastoreError as exc:  # e.g. a user not allowed to see the cluster
            doc["etcd"] = {"error": str(exc)}
    agents = []
    for record in store.list(AGENTS):
        agent = {"key": record.key, **record.value}
        running = ctx.datastore.kind == "etcd" or local.pid_alive(record.value.get("pid"))
        agent["state"] = "running" if running else "stale"
        agents.append(agent)
    doc["agents"] = agents
    return doc


def _member_id(value: object) -> str:
    """etcd's member IDs (decimal in the gateway's JSON) in hex, as etcdctl shows them."""
    try:
        return f"{int(str(value)):x}"
    except ValueError:
        return str(value)


def _bytes(value: object) -> str:
    """A size as etcdctl shows one (SI units: 20 kB, 1.5 MB)."""
    try:
        size = float(str(value))
    except ValueError:
        return str(value)
    units = ["B", "kB", "MB", "GB", "TB"]
    unit = 0
    while size >= 1000 and unit < len(units) - 1:
        size /= 1000
        unit += 1
    if unit == 0:
        return f"{size:.0f} B"
    return f"{size:.1f} {units[unit]}" if size < 10 else f"{size:.0f} {units[unit]}"


def _started(value: object) -> str:
    """An agent's start time: seconds since the epoch as UTC, text as it is."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value))
    return "" if value is None else str(value)


def format_status(doc: dict[str, Any]) -> str:
    out = [
        f"Datastore: {doc['datastore']}\n",
        f"Revision:  {doc['revision']}\n",
        f"Keys:      {doc['keys']}\n",
    ]
    if doc["folders"]:
        out.append("\n")
        rows = [[name, str(count)] for name, count in doc["folders"].items()]
        out.append(table.render(["Folder", "Keys"], rows))
    etcd = doc.get("etcd")
    if etcd is not None and "error" in etcd:
        out.append(f"\netcd cluster: {etcd['error']}\n")
    elif etcd is not None:
        answer = etcd["status"]
        header = answer.get("header", {})
        leader = str(answer.get("leader", ""))
        answered = str(header.get("member_id", ""))
        names = {str(m.get("ID")): m.get("name") or "(unstarted)" for m in etcd["members"]}
        out.append(f"\netcd cluster {_member_id(header.get('cluster_id', ''))}\n")
        rows = []
        for member in sorted(etcd["members"], key=lambda m: (str(m.get("name")), str(m.get("ID")))):
            ident = str(member.get("ID", ""))
            role = "leader" if ident == leader else "follower"
            if member.get("isLearner"):
                role = "learner"
            rows.append([
                names[ident], _member_id(ident), ", ".join(member.get("clientURLs") or []), role,
            ])  # fmt: skip
        out.append(table.render(["Name", "ID", "Client URLs", "Role"], rows))
        in_use = answer.get("dbSizeInUse")
        out.append(
            f"Answered by {names.get(answered, _member_id(answered))}: etcd "
            f"{answer.get('version', '?')}, database {_bytes(answer.get('dbSize', 0))}"
            + (f" ({_bytes(in_use)} in use)" if in_use is not None else "")
            + (", no leader" if leader in ("", "0") else "")
            + "\n"
        )
    out.append("\n")
    if doc["agents"]:
        out.append("Live agents\n")
        rows = [
            [str(a.get("node", "")), str(a.get("role", "")), str(a.get("host", "")),
             str(a.get("pid", "")), _started(a.get("started")), a["state"]]
            for a in sorted(doc["agents"], key=lambda a: (str(a.get("node")), str(a.get("role"))))
        ]  # fmt: skip
        out.append(table.render(["Node", "Role", "Host", "PID", "Started", "State"], rows))
    else:
        out.append(f"No live agents recorded (nothing under {AGENTS}).\n")
    return "".join(out)


def cmd_status(args: argparse.Namespace, ctx: Context) -> int:
    doc = gather_status(ctx)
    if args.output == "json":
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        sys.stdout.write(format_status(doc))
    return 0
