"""``bgpctl apply|create|replace|delete|get``: Calico resources from files, as
``calicoctl`` manages them (CALICO.md §2), and the Kubernetes kinds the policy
agent reads (NetworkPolicy, Namespace, Pod).

    bgpctl apply   -f FILE [-R] [--skip-empty] [-n NS]
    bgpctl create  -f FILE [-R] [--skip-empty] [--skip-exists] [-n NS]
    bgpctl replace -f FILE [-R] [--skip-empty] [-n NS]
    bgpctl delete  (<kind> <name>... | -f FILE [-R]) [--skip-not-exists] [-n NS]
    bgpctl get     <kind> [<name>...] [-o ps|wide|yaml|json|name] [-n NS | -A]

Namespaces, as calicoctl and kubectl: NetworkPolicy and Pod are namespaced.
``-n NS`` (default ``default``) is the namespace of the names given, of a
listing, and of a document that names none (a document's own
``metadata.namespace`` wins); ``-A`` lists every namespace, with a NAMESPACE
column.  Both are ignored for the cluster-scoped kinds; ``-A`` with names is
refused, as kubectl refuses it.

FILE is YAML (several documents separated by ``---``) or JSON, ``-`` for stdin,
or a folder of ``.yaml``, ``.yml`` and ``.json`` files (``-R``: and its
subfolders).  A document may be a resource, a list of them (``kind: List`` or
``IPPoolList`` with ``items``) or a sequence of them.

All or nothing.  Every document is parsed and validated, then the whole batch
is run against a dry run of the datastore (``store.DryRun``: existence, pool
overlaps, pools in use, resourceVersion), and only then written.  So a bad
document anywhere in a file changes nothing, where calicoctl would have written
the documents before it.  Only a concurrent writer that gets in between the dry
run and the writes can still stop a batch half-way; that is reported as
calicoctl reports it ("Partial success: applied the first N out of M").

YAML is read as Calico's Go YAML reads it: no base-60 numbers (``64512:50`` is a
string, not 3870770) and no timestamps (``creationTimestamp`` stays text);
a key given twice is an error.

Output follows calicoctl: ``Successfully applied 2 'IPPool' resource(s)`` (or
``Successfully applied 3 resource(s)`` for mixed kinds) on stdout; on failure
``Failed to apply 'IPPool' resource: <reason>`` (``Failed to apply any
resources: ...`` for several documents) on stderr, exit status 1.  ``get``
prints calicoctl's tables (Go's tabwriter, columns padded by 3, each table
followed by a blank line; one table per name asked for), or the objects as
YAML (keys sorted, as calicoctl's) or JSON; a list without names is a
``<Kind>List``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

    import yaml

    from ..resources import store as resources
    from ..resources.models import Resource
    from ..resources.store import StoreError
    from .context import Context

# pydantic's models cost ~0.4 s to build: imported when a command here runs, not
# when bgpctl starts (``bgpctl ipam`` never needs them).

#: calicoctl's names for the kinds (singular, plural, short).
KIND_NAMES = {
    name: kind
    for kind, names in {
        "BGPConfiguration": ("bgpconfiguration", "bgpconfigurations", "bgpconfig", "bgpconfigs"),
        "BGPPeer": ("bgppeer", "bgppeers", "bgpp", "bgpps", "bp", "bps"),
        "Node": ("node", "nodes", "no", "nos"),
        "IPPool": ("ippool", "ippools", "ipp", "ipps", "pool", "pools"),
        "IPAMConfig": ("ipamconfig", "ipamconfigs", "ipamconfiguration", "ipamconfigurations"),
        "BGPFilter": ("bgpfilter", "bgpfilters", "bgpf", "bgpfs", "bf", "bfs"),
        "NetworkPolicy": ("networkpolicy", "networkpolicies", "netpol", "netpols"),
        "Namespace": ("namespace", "namespaces", "ns"),
        "Pod": ("pod", "pods", "po"),
    }.items()
    for name in names
}
DEFAULT_NAMESPACE = "default"
PAST = {"apply": "applied", "create": "created", "replace": "replaced", "delete": "deleted"}
FORMATS = ("ps", "wide", "yaml", "json", "name")


class Failed(Exception):
    """The command's one line of failure for stderr (calicoctl's wording)."""


def register(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    for action, text in (("apply", "create or replace resources from a file"),
                         ("create", "create resources from a file"),
                         ("replace", "replace existing resources from a file")):  # fmt: skip
        parser = commands.add_parser(action, parents=parents, help=text, description=text + ".")
        _file_options(parser, required=True)
        _namespace_option(parser, "of documents that name none")
        if action == "create":
            parser.add_argument("--skip-exists", action="store_true",
                                help="do not fail on a resource that already exists")  # fmt: skip
        parser.set_defaults(run=cmd_write, action=action)

    delete = commands.add_parser(
        "delete", parents=parents, help="delete resources by kind and name, or from a file",
        description="Delete resources named on the command line or in a file.",
    )  # fmt: skip
    delete.add_argument("kind", nargs="?", metavar="KIND", help="e.g. ippool, bgppeer, node")
    delete.add_argument("names", nargs="*", metavar="NAME")
    _file_options(delete, required=False)
    _namespace_option(delete, "of the names given, and of documents that name none")
    _all_namespaces_option(delete)
    delete.add_argument("--skip-not-exists", action="store_true",
                        help="do not fail on a resource that does not exist")  # fmt: skip
    delete.set_defaults(run=cmd_delete, action="delete")

    get = commands.add_parser(
        "get", parents=parents, help="show resources",
        description="Show resources of one kind: all of them, or those named.",
    )  # fmt: skip
    get.add_argument("kind", metavar="KIND", help="e.g. ippool, bgppeer, node, bgpconfig")
    get.add_argument("names", nargs="*", metavar="NAME")
    get.add_argument("-o", "--output", choices=FORMATS, default="ps",
                     help="ps (a table, the default), wide (more columns), yaml, json or name")
    _namespace_option(get, "to show")
    _all_namespaces_option(get)
    get.set_defaults(run=cmd_get)


def _namespace_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("-n", "--namespace", default=DEFAULT_NAMESPACE, metavar="NS",
                        help=f"the namespace {what} (namespaced kinds: networkpolicy, pod; "
                        f"default: {DEFAULT_NAMESPACE})")  # fmt: skip


def _all_namespaces_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-A", "--all-namespaces", action="store_true",
                        help="every namespace (namespaced kinds)")  # fmt: skip


def _file_options(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument("-f", "--filename", required=required, metavar="FILE",
                        help="YAML or JSON file, '-' for stdin, or a folder")  # fmt: skip
    parser.add_argument("-R", "--recursive", action="store_true",
                        help="with a folder, its subfolders too")  # fmt: skip
    parser.add_argument("--skip-empty", action="store_true",
                        help="do not fail on a file with no resources")  # fmt: skip


def kind_of(name: str) -> str:
    from ..resources.models import any_kind  # noqa: PLC0415

    kind = KIND_NAMES.get(name.lower()) or any_kind(name)
    if kind is None:
        raise Failed(f"resource type '{name}' is not supported")
    return kind


# -- reading files ---------------------------------------------------------------------------

_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


@cache
def _loader() -> type[yaml.SafeLoader]:
    """YAML 1.1 as go-yaml reads it: PyYAML's base-60 numbers and timestamps left
    out, and a key given twice refused."""
    import yaml  # noqa: PLC0415

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
            self.flatten_mapping(node)
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if isinstance(key, str | int | float | bool) and key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} is given twice", key_node.start_mark
                    )
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    Loader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT, _TIMESTAMP)]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    Loader.add_implicit_resolver(
        _INT, re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)"
                         r"|[-+]?0x[0-9a-fA-F_]+)$"), list("-+0123456789"),
    )  # fmt: skip
    Loader.add_implicit_resolver(
        _FLOAT, re.compile(r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?"
                           r"|\.[0-9_]+(?:[eE][-+][0-9]+)?|[-+]?\.(?:inf|Inf|INF)"
                           r"|\.(?:nan|NaN|NAN))$"), list("-+0123456789."),
    )  # fmt: skip
    return Loader


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"key {key!r} is given twice")
        out[key] = value
    return out


def parse_documents(text: str) -> list[Any]:
    """The documents of a YAML or JSON text; a top-level sequence is several."""
    if text.lstrip()[:1] in ("{", "["):
        try:
            docs = [json.loads(text, object_pairs_hook=_no_duplicates)]
        except ValueError as exc:
            raise Failed(f"Failed to execute command: invalid JSON: {exc}") from None
    else:
        import yaml  # noqa: PLC0415

        try:
            docs = list(yaml.load_all(text, Loader=_loader()))  # a SafeLoader
        except yaml.YAMLError as exc:
            raise Failed(f"Failed to execute command: invalid YAML: {exc}") from None
    out: list[Any] = []
    for doc in docs:
        if isinstance(doc, list):
            out += doc
        elif doc is not None:
            out.append(doc)
    return out


def _files(path: str, recursive: bool) -> list[str]:
    if path == "-" or not os.path.isdir(path):
        return [path]
    found = []
    for entry in sorted(os.scandir(path), key=lambda e: e.name):
        if entry.is_dir():
            if recursive:
                found += _files(entry.path, recursive)
        elif entry.name.endswith((".yaml", ".yml", ".json")):
            found.append(entry.path)
    return found


class Item:
    """One resource to write or delete, and where it was given (``namespace``:
    None for a cluster-scoped kind)."""

    __slots__ = ("kind", "name", "namespace", "resource", "version", "where")

    def __init__(self, where: str, kind: str, name: str, resource: Resource | None = None,
                 version: str | None = None, *, namespace: str | None = None) -> None:  # fmt: skip
        self.where = where
        self.kind = kind
        self.name = name
        self.resource = resource
        self.version = version
        self.namespace = namespace

    @classmethod
    def of(cls, where: str, resource: Resource) -> Item:
        from ..resources.store import resource_namespace  # noqa: PLC0415

        return cls(where, resource.KIND, resource.name, resource,
                   resource.metadata.resource_version,
                   namespace=resource_namespace(resource))  # fmt: skip


def read_resources(path: str, recursive: bool = False, skip_empty: bool = False,
                   namespace: str = DEFAULT_NAMESPACE) -> list[Item]:  # fmt: skip
    """Every resource in ``path``, with where it came from (a namespaced resource
    that names no namespace is in ``namespace``).  Failed (or _ResourceFailure,
    naming the document) on the first bad document."""
    from ..resources.models import ResourceError, any_kind, load_resources  # noqa: PLC0415

    entries: list[Item] = []
    kinds: list[str] = []
    docs: list[tuple[str, Any]] = []
    for name in _files(path, recursive):
        try:
            if name == "-":
                text = sys.stdin.read()
            else:
                with open(name, encoding="utf-8") as f:
                    text = f.read()
        except OSError as exc:
            raise Failed(f"Failed to execute command: {name}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise Failed(f"Failed to execute command: {name}: not UTF-8 text") from None
        found = parse_documents(text)
        if not found and not skip_empty:
            raise Failed(f"No resources specified in file {'stdin' if name == '-' else name}")
        shown = "stdin" if name == "-" else name
        docs += [(f"{shown} document {i + 1}", doc) for i, doc in enumerate(found)]
    for _, doc in docs:
        kinds += _kinds_of(doc, any_kind)
    for where, doc in docs:
        try:
            entries += [Item.of(where, r) for r in load_resources(doc, namespace)]
        except ResourceError as exc:
            where = where if len(docs) > 1 else ""
            raise _ResourceFailure(where, str(exc), kinds, len(kinds)) from None
    if not entries and not skip_empty and os.path.isdir(path):
        raise Failed(f"No resources specified in directory {path}")
    return entries


def _kinds_of(doc: object, canonical: Any) -> list[str]:
    """The kinds a document names, one per resource (a list's items each), for the
    failure message of a document that did not load."""
    if not isinstance(doc, dict) or not isinstance(doc.get("kind"), str):
        return ["resource"]
    kind: str = doc["kind"]
    if kind.endswith("List") and isinstance(doc.get("items"), list):
        if kind != "List":
            return [canonical(kind[: -len("List")]) or kind] * len(doc["items"])
        return [k for item in doc["items"] for k in _kinds_of(item, canonical)]
    return [canonical(kind) or kind]


class _ResourceFailure(Exception):
    def __init__(self, where: str, reason: str, kinds: list[str], count: int) -> None:
        super().__init__(f"{where}: {reason}" if where else reason)
        self.kinds = kinds
        self.count = count


def _failure(action: str, kinds: list[str], count: int, reason: str) -> Failed:
    """calicoctl's "nothing was done" line."""
    single = kinds[0] if kinds and len(set(kinds)) == 1 else None
    if count == 1 and single:
        return Failed(f"Failed to {action} '{single}' resource: {reason}")
    if single:
        return Failed(f"Failed to {action} any '{single}' resources: {reason}")
    return Failed(f"Failed to {action} any resources: {reason}")


def _success(action: str, kinds: list[str], count: int) -> str:
    if kinds and len(set(kinds)) == 1:
        return f"Successfully {PAST[action]} {count} '{kinds[0]}' resource(s)"
    return f"Successfully {PAST[action]} {count} resource(s)"


# -- apply, create, replace, delete ----------------------------------------------------------


def _run_batch(
    ctx: Context, action: str, entries: list[Item], skip: type[StoreError] | None
) -> int:
    """Dry run, then for real; prints the outcome and returns the exit status."""
    from ..resources import store as resources  # noqa: PLC0415
    from ..resources.store import DryRun, StoreError  # noqa: PLC0415

    def one(target: resources.Store, item: Item) -> None:
        try:
            if item.resource is None or action == "delete":
                resources.delete(target, item.kind, item.name, item.version, item.namespace)
            else:
                resources.WRITES[action](target, item.resource)
        except StoreError as exc:
            if skip is None or not isinstance(exc, skip):
                raise

    kinds = [item.kind for item in entries]
    store = ctx.store
    dry = DryRun(store)
    for item in entries:
        try:
            one(dry, item)
        except StoreError as exc:
            prefix = f"{item.where}: " if len(entries) > 1 and item.where else ""
            raise _failure(action, kinds, len(entries), f"{prefix}{exc}") from None
    done = 0
    for item in entries:
        try:
            one(store, item)
        except StoreError as exc:
            if done == 0:
                raise _failure(action, kinds, len(entries), str(exc)) from None
            single = f" '{kinds[0]}'" if len(set(kinds)) == 1 else ""
            print(f"Partial success: {PAST[action]} the first {done} out of {len(entries)}"
                  f"{single} resources:")  # fmt: skip
            raise Failed(f"Hit error(s): {exc}") from None
        done += 1
    print(_success(action, kinds, done))
    return 0


def _fail(exc: Failed) -> int:
    print(exc, file=sys.stderr)
    return 1


def _read(args: argparse.Namespace, action: str) -> list[Item]:
    try:
        entries = read_resources(args.filename, args.recursive, args.skip_empty, args.namespace)
    except _ResourceFailure as exc:
        raise _failure(action, exc.kinds, exc.count, str(exc)) from None
    return entries


def cmd_write(args: argparse.Namespace, ctx: Context) -> int:
    action: str = args.action
    try:
        _checked_namespace(args.namespace)
        entries = _read(args, action)
        if not entries:
            print("No resources specified")
            return 0
        from ..resources.store import AlreadyExists  # noqa: PLC0415

        skip = AlreadyExists if getattr(args, "skip_exists", False) else None
        return _run_batch(ctx, action, entries, skip)
    except Failed as exc:
        return _fail(exc)


def _namespace(kind: str, args: argparse.Namespace) -> str | None:
    """The namespace of the names given on the command line: -n's; None for a
    cluster-scoped kind.  ``-A`` with names is refused, as kubectl refuses it."""
    from ..resources.models import is_namespaced  # noqa: PLC0415

    if not is_namespaced(kind):
        return None
    if getattr(args, "all_namespaces", False):
        raise Failed(f"a resource cannot be {'deleted' if args.run is cmd_delete else 'shown'} "
                     "by name across all namespaces (-A): give -n NAMESPACE")  # fmt: skip
    return _checked_namespace(args.namespace)


def _checked_namespace(namespace: str) -> str:
    from ..resources.models_k8s import check_dns_label  # noqa: PLC0415

    try:
        return check_dns_label(namespace)
    except ValueError as exc:
        raise Failed(f"invalid namespace: {exc}") from None


def cmd_delete(args: argparse.Namespace, ctx: Context) -> int:
    from ..resources.store import NotFound  # noqa: PLC0415

    skip = NotFound if args.skip_not_exists else None
    try:
        if args.filename is not None:
            if args.kind is not None:
                raise Failed("give either -f FILE or KIND NAME..., not both")
            _checked_namespace(args.namespace)
            entries = _read(args, "delete")
            if not entries:
                print("No resources specified")
                return 0
            return _run_batch(ctx, "delete", entries, skip)
        if args.kind is None or not args.names:
            raise Failed("give KIND NAME... or -f FILE")
        kind = kind_of(args.kind)
        if "" in args.names:
            raise Failed("resource name may not be empty")
        namespace = _namespace(kind, args)
        return _run_batch(ctx, "delete", [Item("", kind, n, namespace=namespace)
                                          for n in args.names], skip)  # fmt: skip
    except Failed as exc:
        return _fail(exc)


# -- get -------------------------------------------------------------------------------------


def _go(value: object) -> str:
    """A value as Go's templates print it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _labels(labels: dict[str, str]) -> str:
    """Labels as kubectl's --show-labels prints them: sorted ``k=v`` pairs."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "<none>"


def _columns(kind: str, obj: dict[str, Any], wide: bool, default_as: str,
             all_namespaces: bool = False) -> list[tuple[str, str]]:  # fmt: skip
    """calicoctl's default (and ``-o wide``) columns for one object; with
    ``all_namespaces``, a namespaced kind's first column is its NAMESPACE."""
    cols = _kind_columns(kind, obj, wide, default_as)
    if all_namespaces and kind in ("NetworkPolicy", "Pod"):
        return [("NAMESPACE", obj.get("metadata", {}).get("namespace", "")), *cols]
    return cols


def _kind_columns(kind: str, obj: dict[str, Any], wide: bool,
                  default_as: str) -> list[tuple[str, str]]:  # fmt: skip
    spec = obj.get("spec") or {}
    name = ("NAME", obj.get("metadata", {}).get("name", ""))
    if kind == "IPPool":
        cols = [name, ("CIDR", _go(spec.get("cidr")))]
        if wide:
            cols += [("NAT", _go(bool(spec.get("natOutgoing")))),
                     ("IPIPMODE", _go(spec.get("ipipMode") or "Never")),
                     ("VXLANMODE", _go(spec.get("vxlanMode") or "Never")),
                     ("DISABLED", _go(bool(spec.get("disabled")))),
                     ("DISABLEBGPEXPORT", _go(bool(spec.get("disableBGPExport"))))]  # fmt: skip
        return [*cols, ("SELECTOR", _go(spec.get("nodeSelector")))]
    if kind == "BGPPeer":
        where = spec.get("node") or spec.get("nodeSelector") or "(global)"
        return [name, ("PEERIP", _go(spec.get("peerIP"))), ("NODE", where),
                ("ASN", _go(spec.get("asNumber", 0)))]  # fmt: skip
    if kind == "Node":
        if not wide:
            return [name]
        bgp = spec.get("bgp")
        asn = "" if bgp is None else _go(bgp.get("asNumber")) or f"({default_as})"
        return [name, ("ASN", asn), ("IPV4", _go((bgp or {}).get("ipv4Address"))),
                ("IPV6", _go((bgp or {}).get("ipv6Address")))]  # fmt: skip
    if kind == "BGPConfiguration":
        mesh = spec.get("nodeToNodeMeshEnabled")
        return [name, ("LOGSEVERITY", _go(spec.get("logSeverityScreen"))),
                ("MESHENABLED", "-" if mesh is None else _go(mesh)),
                ("ASNUMBER", _go(spec.get("asNumber")) or "-")]  # fmt: skip
    if kind == "IPAMConfig":
        cols = [name, ("STRICTAFFINITY", _go(spec.get("strictAffinity"))),
                ("AUTOALLOCATEBLOCKS", _go(spec.get("autoAllocateBlocks")))]  # fmt: skip
        return [*cols, ("MAXBLOCKSPERHOST", _go(spec.get("maxBlocksPerHost")))] if wide else cols
    if kind == "NetworkPolicy":
        from ..resources.models_k8s import describe_selector  # noqa: PLC0415

        cols = [name, ("POD-SELECTOR", describe_selector(spec.get("podSelector") or {}))]
        return [*cols, ("POLICY-TYPES", ",".join(spec.get("policyTypes") or []))] if wide else cols
    if kind == "Pod":
        status = obj.get("status") or {}
        ips = [p.get("ip", "") for p in status.get("podIPs") or []]
        return [name, ("NODE", spec.get("nodeName") or "<none>"),
                ("IP", (",".join(ips) if wide else status.get("podIP")) or "<none>")]  # fmt: skip
    if kind == "Namespace":
        return [name, ("LABELS", _labels(obj.get("metadata", {}).get("labels") or {}))]
    return [name]


def tabwriter(rows: list[list[str]]) -> str:
    """Go's text/tabwriter as calicoctl sets it up (minwidth 5, padding 3, every
    cell tab-terminated): each column as wide as its widest cell plus 3."""
    if not rows:
        return ""
    widths = [max(5, max(len(row[i]) for row in rows) + 3) for i in range(len(rows[0]))]
    return "".join("".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + "\n"
                   for row in rows)  # fmt: skip


def format_tables(kind: str, tables: list[list[dict[str, Any]]], wide: bool,
                  default_as: str = "64512", all_namespaces: bool = False) -> str:  # fmt: skip
    """One table per list of objects, each followed by a blank line."""
    out = []
    for objects in tables:
        first = _columns(kind, objects[0] if objects else {}, wide, default_as, all_namespaces)
        rows = [[heading for heading, _ in first]]
        rows += [[value for _, value in _columns(kind, o, wide, default_as, all_namespaces)]
                 for o in objects]  # fmt: skip
        out.append(tabwriter(rows) + "\n")
    return "".join(out)


@cache
def _dumper() -> type[yaml.SafeDumper]:
    """Keys sorted, and double quotes where a plain string would read as another
    type, as Go's yaml writes them (``resourceVersion: "12"``)."""
    import yaml  # noqa: PLC0415

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        tag = dumper.resolve(yaml.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
        style = '"' if tag != "tag:yaml.org,2002:str" else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return Dumper
_ORDER = ("kind", "apiVersion", "metadata", "spec", "status", "items")


def _go_json_order(obj: dict[str, Any]) -> dict[str, Any]:
    """Go's struct order: kind, apiVersion, metadata, spec, status."""
    rank = {k: i for i, k in enumerate(_ORDER)}
    return {k: obj[k] for k in sorted(obj, key=lambda k: (rank.get(k, len(rank)), k))}


def format_objects(objects: list[dict[str, Any]] | dict[str, Any], output: str) -> str:
    if output == "json":
        shown = ([_go_json_order(o) for o in objects] if isinstance(objects, list)
                 else _go_json_order(objects))  # fmt: skip
        return json.dumps(shown, indent=2, ensure_ascii=False) + "\n"
    import yaml  # noqa: PLC0415

    return str(yaml.dump(objects, Dumper=_dumper(), default_flow_style=False, sort_keys=True,
                         allow_unicode=True))  # fmt: skip


def _object_name(kind: str, name: str) -> str:
    """``-o name``: calicoctl's ``ippool.projectcalico.org/p``, kubectl's
    ``networkpolicy.networking.k8s.io/deny`` and ``pod/a``."""
    from ..resources.models import api_version_of  # noqa: PLC0415

    group = api_version_of(kind).rpartition("/")[0]
    return f"{kind.lower()}.{group}/{name}" if group else f"{kind.lower()}/{name}"


def cmd_get(args: argparse.Namespace, ctx: Context) -> int:
    from ..resources import store as resources  # noqa: PLC0415
    from ..resources.models import api_version_of, is_namespaced  # noqa: PLC0415
    from ..resources.store import NotFound  # noqa: PLC0415

    try:
        kind = kind_of(args.kind)
        all_namespaces = bool(args.all_namespaces) and is_namespaced(kind)
        store = ctx.store
        if args.names:
            namespace = _namespace(kind, args)
            try:
                found = [resources.get(store, kind, name, namespace) for name in args.names]
            except NotFound as exc:
                raise Failed(str(exc)) from None
            tables = [[o] for o in found]
            shown: Any = found[0] if len(found) == 1 else found
        else:
            namespace = None if all_namespaces else _checked_namespace(args.namespace)
            listed = resources.list_resources(store, kind, namespace)
            tables = [listed]
            shown = {"apiVersion": api_version_of(kind), "kind": f"{kind}List",
                     "metadata": {"resourceVersion": str(store.revision())}, "items": listed}
    except Failed as exc:
        return _fail(exc)
    if args.output in ("yaml", "json"):
        if isinstance(shown, dict) and "items" in shown:
            shown = {**shown, "items": [_go_json_order(o) for o in shown["items"]]}
        sys.stdout.write(format_objects(shown, args.output))
    elif args.output == "name":
        for objects in tables:
            for o in objects:
                print(_object_name(kind, o["metadata"]["name"]))
    else:
        default_as = "64512"
        if kind == "Node" and args.output == "wide":
            try:
                config = resources.get(store, "BGPConfiguration", "default")
                default_as = str(config.get("spec", {}).get("asNumber", 64512))
            except NotFound:
                pass
        sys.stdout.write(format_tables(kind, tables, args.output == "wide", default_as,
                                       all_namespaces))  # fmt: skip
    return 0
