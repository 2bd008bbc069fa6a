"""``bgpctl policy``: why a pod's traffic is allowed or not.

    bgpctl policy show <namespace>/<pod> [-n NAMESPACE] [--api API] [-o text|json]

Which NetworkPolicies select the pod, per direction (isolated or not: "not
isolated: all traffic allowed" when none does), and what each rule of theirs
allows, in plain words: the peers (with the pods each selector peer picks
now, names and addresses, the first ten), the ports (named ports resolved on
this pod for ingress, on each destination pod for egress).  Computed from the
datastore (``<state-dir>/store``) with the agent's own code
(``bgpd.policy.explain``), so it needs no agent; when the node's policy agent
answers, each rule gets its packet counter from the agent's ``/counters``.

Which agent.  ``--api`` (``unix:/path`` or ``http://host:port``), else the
socket ``<state-dir>/run/policy-<node>.sock`` of the node the pod's endpoint is
on (else of ``--node-name``).  When it does not answer, one line says so and
the explanation is printed all the same (exit 0).

``<pod>`` without a namespace is in ``-n NAMESPACE`` (default ``default``), as
kubectl.  An unknown pod is an error (exit 1).  ``-o json`` prints the same
explanation as one document.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from .context import CtlError

if TYPE_CHECKING:
    import argparse

    from .context import Context

TIMEOUT = 3.0


def socket_path(state: str, node: str) -> str:
    """The policy agent's unix socket (``bgpd.policy.main.policy_socket_path``)."""
    from ..policy.main import policy_socket_path  # noqa: PLC0415

    return policy_socket_path(state, node)


def parse_pod(text: str, namespace: str) -> tuple[str, str]:
    """``ns/name`` or ``name`` (in ``namespace``)."""
    ns, slash, name = text.rpartition("/")
    if not slash:
        ns, name = namespace, text
    if not ns or not name or "/" in ns:
        raise CtlError(f"bad pod {text!r}: use NAMESPACE/POD")
    return ns, name


def fetch_counters(api: str) -> tuple[list[dict[str, Any]] | None, dict[str, Any]]:
    """The agent's counters, or None and why not: ``{"error": ..., "answered": bool}``
    (``answered``: it answered, with an error)."""
    from .node import Unreachable, fetch  # noqa: PLC0415

    try:
        doc = fetch(api, "/counters", timeout=TIMEOUT)
    except Unreachable as exc:
        return None, {"error": str(exc).removeprefix(f"{api}: "), "answered": False}
    except CtlError as exc:
        return None, {"error": str(exc).removeprefix(f"{api}/counters: "), "answered": True}
    counters = doc.get("counters") if isinstance(doc, dict) else None
    if not isinstance(counters, list):
        return None, {"error": "its /counters holds no list of counters", "answered": True}
    return [c for c in counters if isinstance(c, dict)], {}


def cmd_show(args: argparse.Namespace, ctx: Context) -> int:
    from ..policy.explain import UnknownPod, explain, format_text, read  # noqa: PLC0415

    namespace, name = parse_pod(args.pod, args.namespace)
    snap = read(ctx.store)
    endpoints = snap.endpoints.get((namespace, name)) or []
    node = endpoints[0].node if endpoints and endpoints[0].node else ctx.node
    api = args.api or f"unix:{socket_path(ctx.state_dir, node)}"
    counters: list[dict[str, Any]] | None = None
    agent: dict[str, Any] = {"node": node, "address": api}
    if (namespace, name) in snap.cluster.pods:
        counters, why = fetch_counters(api)
        agent.update(why)
    try:
        doc = explain(snap, namespace, name, counters, agent)
    except UnknownPod as exc:
        raise CtlError(str(exc)) from exc
    if args.output == "json":
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        sys.stdout.write(format_text(doc))
    return 0


def register(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    policy = commands.add_parser(
        "policy", parents=parents, help="NetworkPolicy: why a pod's traffic is allowed or not",
        description="Explain the NetworkPolicies that apply to a pod.",
    )  # fmt: skip
    sub = policy.add_subparsers(dest="policy_command", metavar="<policy command>")
    sub.required = True
    show = sub.add_parser(
        "show", parents=parents, help="the policies selecting a pod and what their rules allow",
        description="Which NetworkPolicies select the pod, per direction, and what each rule "
        "allows (peers, their current members, ports), with the node agent's packet counters "
        "when it answers.",
    )  # fmt: skip
    show.add_argument("pod", metavar="NAMESPACE/POD", help="the pod (POD alone: in -n NAMESPACE)")
    show.add_argument(
        "-n", "--namespace", default="default",
        help="the pod's namespace when not given with it (default: default)",
    )  # fmt: skip
    show.add_argument(
        "--api", metavar="API",
        help="the policy agent's API: unix:/path/to.sock or http://HOST:PORT (default: "
        "<state-dir>/run/policy-<node>.sock of the pod's node)",
    )  # fmt: skip
    show.add_argument("-o", "--output", choices=["text", "json"], default="text",
                      help="plain words (default) or one JSON document")  # fmt: skip
    show.set_defaults(run=cmd_show)
