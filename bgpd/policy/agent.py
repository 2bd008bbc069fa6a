"""``bgpd policy``: the node's NetworkPolicy agent (POLICY.md; issue 8).

Inputs, all from the datastore (DESIGN.md: processes meet there):

    resources/networkpolicies/<ns>/<name>   NetworkPolicy (networking.k8s.io/v1)
    resources/namespaces/<name>             Namespace: labels
    resources/pods/<ns>/<name>              Pod: labels, container ports, hostNetwork
    endpoints/<node>/<container>.<ifname>   what the CNI plugin made: the pod's
                                            addresses; this node's give the interfaces

A pod is known when it has a Pod resource or an endpoint anywhere; its addresses
are its endpoints' (else the Pod's ``status.podIPs``); a pod without a resource
has no labels.  Every record is validated as the API server would
(``bgpd.resources.models.load_resource``).  A bad one is refused and named in
the status (``errors``) and the log, and what was in force stays: the last good
version of that resource keeps being enforced, and a resource never good is
not enforced at all, so one bad file neither opens a hole nor cuts traffic.

Operation.  At start the agent reads everything, renders the table and loads it
whole (replacing any table of that name a previous run left).  Then it follows
the datastore's change log: each batch of changes becomes events for the
``Renderer``, whose journal becomes one ``nft -f`` transaction.  If nft
refuses one (it should not), the whole table is loaded again from the wanted
state.  After each batch the agent writes ``<state>/run/policy-<node>.json``:
the datastore revision it has enforced, the refused resources, and counts;
tests and operators wait on it.  On exit the table stays (pods stay protected
while the agent restarts); ``--cleanup`` removes it instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..datastore.base import DatastoreError
from ..datastore.presence import hold_presence
from . import nft
from .model import PodKey, namespace_labels, pod_from, policy_from
from .render import DEFAULT_MARK, INTERFACE_PREFIX, TABLE, Renderer

if TYPE_CHECKING:
    from ..datastore.base import Change, Datastore, Record
    from ..datastore.select import StoreConfig

log = logging.getLogger("bgpd.policy")

POLICIES = "resources/networkpolicies/"
NAMESPACES = "resources/namespaces/"
PODS = "resources/pods/"
ENDPOINTS = "endpoints/"
WATCHED = (POLICIES, NAMESPACES, PODS, ENDPOINTS)


@dataclass(slots=True)
class PolicyOptions:
    state_dir: str
    node: str
    table: str = TABLE
    mark: int = DEFAULT_MARK
    prefix: str = INTERFACE_PREFIX
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    cleanup: bool = False
    #: The datastore (``--datastore`` and friends); None: the state directory's.
    datastore: StoreConfig | None = None

    @property
    def status_path(self) -> str:
        return status_path(self.state_dir, self.node)


def status_path(state: str, node: str) -> str:
    return f"{state}/run/policy-{node}.json"


@dataclass(slots=True)
class _Endpoint:
    pod: PodKey
    node: str
    interface: str
    ips: tuple[str, ...]


@dataclass(slots=True)
class ApplyStats:
    transactions: int = 0
    full_loads: int = 0
    failures: int = 0
    last_seconds: float = 0.0
    last_lines: int = 0
    history: list[float] = field(default_factory=list)


def validate(value: dict[str, Any]) -> str | None:
    """None when the stored object is valid; else the API server's complaint."""
    from ..resources.models import ResourceError, load_resource  # noqa: PLC0415 - pydantic: slow import

    try:
        load_resource(value)
    except ResourceError as exc:
        return str(exc)
    return None


class PolicyAgent:
    """Datastore in, nftables out (see the module docstring)."""

    def __init__(self, options: PolicyOptions, store: Datastore) -> None:
        self.options = options
        self.store = store
        self.renderer = Renderer(options.mark, options.table, options.prefix)
        self.revision = 0
        self.errors: dict[str, str] = {}
        self.stats = ApplyStats()
        self._pod_objects: dict[PodKey, dict[str, Any]] = {}
        self._endpoints: dict[str, _Endpoint] = {}
        self._pod_endpoints: dict[PodKey, set[str]] = {}
        self._task: asyncio.Task[None] | None = None
        self._presence = contextlib.AsyncExitStack()
        self.started = time.time()

    # -- life ----------------------------------------------------------------

    async def start(self) -> None:
        self.revision = self.store.revision()
        self._load_all()
        self._apply(full=True)
        self._task = asyncio.get_running_loop().create_task(self._follow(self.revision))
        await self._presence.enter_async_context(
            hold_presence(self.store, self.options.node, "policy")
        )

    async def close(self) -> None:
        with contextlib.suppress(DatastoreError):
            await self._presence.aclose()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.options.cleanup:
            nft.delete_table(self.options.table)

    def _load_all(self) -> None:
        """Read every input afresh (at start, and when the change log lost history)."""
        self.renderer = Renderer(self.options.mark, self.options.table, self.options.prefix)
        self.errors.clear()
        self._pod_objects.clear()
        self._endpoints.clear()
        self._pod_endpoints.clear()
        for record in self.store.list(NAMESPACES):
            self._namespace(record.key, record)
        for record in self.store.list(PODS):
            self._pod(record.key, record)
        for record in self.store.list(ENDPOINTS):
            self._endpoint(record.key, record)
        for record in self.store.list(POLICIES):
            self._policy(record.key, record)
        self.renderer.flush()

    async def _follow(self, since: int) -> None:
        async for batch in self.store.watch("", since):
            try:
                self._batch(batch)
            except Exception:  # our bug: log it, reload whole, keep running
                log.exception("policy agent: handling a change failed; reloading everything")
                self._load_all()
                self._apply(full=True)

    def _batch(self, batch: list[Change]) -> None:
        started = time.perf_counter()
        relevant = 0
        for change in batch:
            self.revision = max(self.revision, change.revision)
            if change.key is None:
                log.warning("datastore history lost: reading everything again")
                self._load_all()
                self._apply(full=True)
                continue
            if change.key.startswith(WATCHED):
                relevant += 1
                self._change(change.key, change.record)
        if relevant:
            self.renderer.flush()
            self._apply(full=False)
            log.debug(
                "%d change(s) enforced in %.1f ms", relevant, (time.perf_counter() - started) * 1e3
            )
        else:
            self._write_status()

    def _change(self, key: str, record: Record | None) -> None:
        if key.startswith(POLICIES):
            self._policy(key, record)
        elif key.startswith(PODS):
            self._pod(key, record)
        elif key.startswith(NAMESPACES):
            self._namespace(key, record)
        else:
            self._endpoint(key, record)

    # -- inputs --------------------------------------------------------------

    def _valid(self, key: str, record: Record | None) -> bool:
        """Whether to take the record (deletions always are); a refused one is
        logged once per version and kept in ``errors``."""
        if record is None:
            self.errors.pop(key, None)
            return True
        problem = validate(record.value)
        if problem is None:
            self.errors.pop(key, None)
            return True
        if self.errors.get(key) != problem:
            log.error("refused %s: %s (what was in force stays)", key, problem)
        self.errors[key] = problem
        return False

    def _policy(self, key: str, record: Record | None) -> None:
        if not self._valid(key, record):
            return
        namespace, _, name = key[len(POLICIES) :].partition("/")
        if record is None:
            self.renderer.remove_policy((namespace, name))
        else:
            self.renderer.put_policy(policy_from(record.value))

    def _namespace(self, key: str, record: Record | None) -> None:
        if not self._valid(key, record):
            return
        name = key[len(NAMESPACES) :]
        labels = None if record is None else namespace_labels(name, record.value)
        self.renderer.put_namespace(name, labels)

    def _pod(self, key: str, record: Record | None) -> None:
        if not self._valid(key, record):
            return
        namespace, _, name = key[len(PODS) :].partition("/")
        if record is None:
            self._pod_objects.pop((namespace, name), None)
        else:
            self._pod_objects[(namespace, name)] = record.value
        self._refresh_pod((namespace, name))

    def _endpoint(self, key: str, record: Record | None) -> None:
        old = self._endpoints.pop(key, None)
        new = None
        if record is not None:
            v = record.value
            if v.get("pod") and v.get("namespace"):
                ips = tuple(str(ip) for ip in v.get("ips") or ())
                new = _Endpoint((v["namespace"], v["pod"]), str(v.get("node", "")),
                                str(v.get("hostIfname", "")), ips)  # fmt: skip
        if old == new:
            if new is not None:
                self._endpoints[key] = new
            return
        local = self.options.node
        if old is not None:
            self._pod_endpoints.get(old.pod, set()).discard(key)
            if (
                old.node == local
                and old.interface
                and (new is None or new.interface != old.interface)
            ):
                self.renderer.remove_endpoint(old.interface)
            self._refresh_pod(old.pod)
        if new is not None:
            self._endpoints[key] = new
            self._pod_endpoints.setdefault(new.pod, set()).add(key)
            self._refresh_pod(new.pod)
            if new.node == local and new.interface:
                self.renderer.put_endpoint(new.interface, new.pod)

    def _refresh_pod(self, pod: PodKey) -> None:
        keys = self._pod_endpoints.get(pod)
        if not keys:
            self._pod_endpoints.pop(pod, None)
        obj = self._pod_objects.get(pod)
        if not keys and obj is None:
            self.renderer.remove_pod(pod)
            return
        ips: list[str] = []
        for key in sorted(keys or ()):
            ips.extend(ip for ip in self._endpoints[key].ips if ip not in ips)
        self.renderer.put_pod(pod_from(obj, pod[0], pod[1], tuple(ips)))

    # -- output --------------------------------------------------------------

    def _apply(self, full: bool) -> None:
        ruleset = self.renderer.ruleset
        started = time.perf_counter()
        script = ruleset.full_script() if full else ruleset.script()
        if script:
            try:
                nft.apply(script)
                self.stats.transactions += 1
                self.stats.full_loads += full
            except nft.NftError as exc:
                self.stats.failures += 1
                if full:
                    log.error("nft refused the whole table: %s", exc)
                    self._write_status()
                    return
                log.error("nft refused a change (%s); loading the whole table", exc)
                nft.apply(ruleset.full_script())
                self.stats.full_loads += 1
            ruleset.commit()
            self.stats.last_seconds = time.perf_counter() - started
            self.stats.last_lines = script.count("\n")
        self._write_status()

    def status(self) -> dict[str, Any]:
        r = self.renderer
        return {
            "node": self.options.node,
            "table": f"inet {self.options.table}",
            "revision": self.revision,
            "pid": os.getpid(),
            "errors": [{"key": k, "error": v} for k, v in sorted(self.errors.items())],
            "policies": len(r.policies),
            "pods": len(r.cluster.pods),
            "endpoints": len(r.endpoints),
            "chains": len(r.ruleset.chains),
            "rules": r.ruleset.rule_count(),
            "sets": len(r.ruleset.sets),
            "transactions": self.stats.transactions,
            "fullLoads": self.stats.full_loads,
            "failures": self.stats.failures,
            "lastApplySeconds": round(self.stats.last_seconds, 6),
        }

    def counters(self) -> list[dict[str, Any]]:
        """The kernel's counters, summed per policy rule (one Kubernetes rule may be
        several nft rules) and per direction of denials."""
        try:
            found = nft.counters(self.options.table)
        except nft.NftError as exc:
            log.warning("reading counters: %s", exc)
            return []
        rules: dict[tuple[str, str, str, str], list[int]] = {}
        denied: dict[str, list[int]] = {}
        chains = self.renderer.policy_chains
        for c in found:
            direction, _, what = c.comment.partition(" ")
            if c.chain in chains:
                ns, name, direction = chains[c.chain]
                total = rules.setdefault((ns, name, direction, what), [0, 0])
            elif what == "denied":
                total = denied.setdefault(direction, [0, 0])
            else:
                continue
            total[0] += c.packets
            total[1] += c.bytes
        out = [
            {"namespace": ns, "policy": name, "direction": d, "rule": rule,
             "packets": p, "bytes": b}
            for (ns, name, d, rule), (p, b) in sorted(rules.items())
        ]  # fmt: skip
        out += [
            {
                "namespace": "",
                "policy": "",
                "direction": d,
                "rule": "denied",
                "packets": p,
                "bytes": b,
            }
            for d, (p, b) in sorted(denied.items())
        ]
        return out

    def _write_status(self) -> None:
        path = self.options.status_path
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(self.status(), f)
        os.replace(tmp, path)
