"""Calico's projectcalico.org/v3 resources, validated at the edge: the one way in
(``load_resource``, ``load_resources``) and out (``dump``).

    doc (dict from YAML/JSON) --load_resources--> [Resource, ...] --dump--> stored dict

``load_resources`` takes one parsed document: a resource, or a list of them
(``kind: List`` or ``<Kind>List`` with ``items``).  apiVersion may be
``projectcalico.org/v3`` or ``crd.projectcalico.org/v1`` (the CRD form Calico
keeps in Kubernetes, with the same field names).  Any problem is one
``ResourceError`` naming the resource, each field path and the reason::

    IPPool "pool1": spec.blockSize: 33 is outside 20-32

``dump`` gives the canonical stored object (always projectcalico.org/v3, Calico's
defaults filled in, unset fields left out); the rest of the code reads stored
resources as plain dicts with Calico's field names.  ``load(dump(r))`` gives
``r`` back: dump is a fixed point.

Unknown fields are refused, naming the field (Calico's API server rejects them
in strict mode, and a misspelt field silently taken as "unset" would be worse).
The exceptions, written by servers and found in exported YAML: ObjectMeta's
server fields (generation, managedFields, ...) and ``status`` on kinds other than
Node are accepted and dropped.

Kinds: BGPConfiguration, BGPPeer, BGPFilter (``models_bgp``), Node
(``models_node``), IPPool and IPAMConfig (``models_ipam``, which also takes the
newer name IPAMConfiguration); shared types in ``models_base``.

Kubernetes kinds (``models_k8s``), each with its own apiVersion and dumped with
it: NetworkPolicy (``networking.k8s.io/v1``, namespaced), Namespace and Pod
(``v1``; Pod namespaced).  A namespaced resource without ``metadata.namespace``
is in the namespace ``load_resource`` is given ("default" unless told).  A kind
is looked up in its apiVersion: ``projectcalico.org/v3`` NetworkPolicy is
Calico's own kind, which is not supported here.

Import cost: pydantic.  The CNI plugin never imports this package's models (it
reads stored dicts); only ``bgpctl`` and the daemons do.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from .models_base import API_VERSION, API_VERSIONS, Resource, ResourceError, convert
from .models_bgp import BGPConfiguration, BGPFilter, BGPPeer
from .models_ipam import IPAMConfig, IPPool
from .models_k8s import DEFAULT_NAMESPACE, K8S_KINDS, Namespace, NetworkPolicy, Pod
from .models_node import Node

__all__ = [
    "API_VERSION",
    "KINDS",
    "BGPConfiguration",
    "BGPFilter",
    "BGPPeer",
    "IPAMConfig",
    "IPPool",
    "Namespace",
    "NetworkPolicy",
    "Node",
    "Pod",
    "Resource",
    "ResourceError",
    "ALL_KINDS",
    "any_kind",
    "api_version_of",
    "canonical_kind",
    "dump",
    "is_namespaced",
    "load_resource",
    "load_resources",
]

#: Calico's kinds: canonical kind name -> model.
KINDS: dict[str, type[Resource]] = {
    model.KIND: model for model in (BGPConfiguration, BGPPeer, BGPFilter, Node, IPPool, IPAMConfig)
}
#: Calico's and the Kubernetes kinds.
ALL_KINDS: dict[str, type[Resource]] = {**KINDS, **K8S_KINDS}
#: Kind -> the apiVersions it is given with (the first is the one it is dumped with).
VERSIONS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(KINDS, API_VERSIONS),
    **{kind: model.API_VERSIONS for kind, model in K8S_KINDS.items()},
}
#: Other names Calico uses for a kind.
_OTHER_NAMES = {"IPAMConfiguration": "IPAMConfig"}


def canonical_kind(kind: str) -> str | None:
    """A Calico kind's canonical name (``IPAMConfiguration`` -> ``IPAMConfig``), or None."""
    kind = _OTHER_NAMES.get(kind, kind)
    return kind if kind in KINDS else None


def any_kind(kind: str) -> str | None:
    """The canonical name of a Calico or a Kubernetes kind (``Pod``), or None."""
    return canonical_kind(kind) or (kind if kind in K8S_KINDS else None)


def api_version_of(kind: str) -> str:
    """The apiVersion a kind is stored and shown with."""
    return VERSIONS[kind][0]


def is_namespaced(kind: str) -> bool:
    """Whether a kind's resources live in a namespace (NetworkPolicy, Pod)."""
    return bool(getattr(ALL_KINDS[kind], "NAMESPACED", False))


def _describe(doc: dict[str, Any], kind: str, namespace: str) -> str:
    metadata = doc.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not (isinstance(name, str) and name):
        return kind
    if kind in ALL_KINDS and is_namespaced(kind):
        given = metadata.get("namespace") if isinstance(metadata, dict) else None
        name = f"{given if isinstance(given, str) and given else namespace}/{name}"
    return f'{kind} "{name}"'


def _one_of(values: Any) -> str:
    values = list(values)
    return values[0] if len(values) == 1 else f"one of {', '.join(values)}"


def _kinds_of(api_version: str) -> list[str]:
    return [kind for kind, versions in VERSIONS.items() if api_version in versions]


def _check_type(what: str, api_version: object, kind_text: object, kind: str | None) -> None:
    """apiVersion and kind, each naming what they may be.  A known kind given with
    another group's apiVersion is an apiVersion error, except under Calico's
    group, which has kinds of the same names (its own NetworkPolicy)."""
    if api_version is None:
        raise ResourceError(what, [("apiVersion", "required")])
    if kind is not None and api_version not in VERSIONS[kind] + API_VERSIONS:
        raise ResourceError(what, [("apiVersion", f"{api_version!r} is not "
                                    f"{_one_of(VERSIONS[kind])}")])  # fmt: skip
    all_versions = dict.fromkeys(v for versions in VERSIONS.values() for v in versions)
    if api_version not in all_versions:
        raise ResourceError(what, [("apiVersion", f"{api_version!r} is not "
                                    f"{_one_of(all_versions)}")])  # fmt: skip
    if kind_text is None:
        raise ResourceError(what, [("kind", "required")])
    assert isinstance(api_version, str)
    here = _kinds_of(api_version)
    if kind not in here:
        hint = f" ({kind} is apiVersion {api_version_of(kind)})" if kind is not None else ""
        raise ResourceError(what, [("kind", f"{kind_text!r} is not {_one_of(here)}{hint}")])


def load_resource(doc: object, namespace: str = DEFAULT_NAMESPACE) -> Resource:
    """One resource from a parsed document; ResourceError if Calico (or, for a
    Kubernetes kind, the API server) would refuse it.  A namespaced kind without
    ``metadata.namespace`` is put in ``namespace``."""
    if not isinstance(doc, dict):
        raise ResourceError("", [("", f"a resource must be a mapping, not {type(doc).__name__}")])
    kind_text = doc.get("kind")
    kind = any_kind(kind_text) if isinstance(kind_text, str) else None
    what = _describe(doc, kind or (kind_text if isinstance(kind_text, str) else "resource"),
                     namespace)  # fmt: skip
    _check_type(what, doc.get("apiVersion"), kind_text, kind)
    assert kind is not None
    metadata = doc.get("metadata")
    if is_namespaced(kind) and isinstance(metadata, dict) and metadata.get("namespace") in (
        None, "",
    ):  # fmt: skip
        doc = {**doc, "metadata": {**metadata, "namespace": namespace}}
    model = ALL_KINDS[kind]
    try:
        return model.model_validate({**doc, "kind": kind})
    except ValidationError as exc:
        raise ResourceError(what, convert(exc)) from None


def load_resources(doc: object, namespace: str = DEFAULT_NAMESPACE) -> list[Resource]:
    """The resources of one parsed document: a resource, or a list (``kind: List``
    or ``<Kind>List``) whose items are resources (an item of a ``<Kind>List`` may
    leave out its apiVersion and kind).  ``namespace`` as for ``load_resource``."""
    if isinstance(doc, dict) and isinstance(doc.get("kind"), str) and doc["kind"].endswith("List"):
        kind_text = doc["kind"]
        of = any_kind(kind_text[: -len("List")]) if kind_text != "List" else None
        if kind_text != "List" and of is None:
            raise ResourceError(kind_text, [("kind", f"{kind_text!r} is not List or a list of "
                                             f"one of {', '.join(ALL_KINDS)}")])  # fmt: skip
        items = doc.get("items")
        if items is None:
            return []
        if not isinstance(items, list):
            raise ResourceError(kind_text, [("items", "must be a list")])
        out = []
        for i, item in enumerate(items):
            if of is not None and isinstance(item, dict):
                item = {"apiVersion": doc.get("apiVersion"), "kind": of, **item}
            try:
                out.append(load_resource(item, namespace))
            except ResourceError as exc:
                raise ResourceError(f"{exc.what or kind_text} (items[{i}])", exc.problems) from None
        return out
    return [load_resource(doc, namespace)]


def dump(resource: Resource) -> dict[str, Any]:
    """The canonical stored object (see ``Resource.dump``)."""
    return resource.dump()
