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

Import cost: pydantic.  The CNI plugin never imports this package's models (it
reads stored dicts); only ``bgpctl`` and the daemons do.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from .models_base import API_VERSION, API_VERSIONS, Resource, ResourceError, convert
from .models_bgp import BGPConfiguration, BGPFilter, BGPPeer
from .models_ipam import IPAMConfig, IPPool
from .models_node import Node

__all__ = [
    "API_VERSION",
    "KINDS",
    "BGPConfiguration",
    "BGPFilter",
    "BGPPeer",
    "IPAMConfig",
    "IPPool",
    "Node",
    "Resource",
    "ResourceError",
    "canonical_kind",
    "dump",
    "load_resource",
    "load_resources",
]

#: Canonical kind name -> model.
KINDS: dict[str, type[Resource]] = {
    model.KIND: model for model in (BGPConfiguration, BGPPeer, BGPFilter, Node, IPPool, IPAMConfig)
}
#: Other names Calico uses for a kind.
_OTHER_NAMES = {"IPAMConfiguration": "IPAMConfig"}


def canonical_kind(kind: str) -> str | None:
    """The kind's canonical name (``IPAMConfiguration`` -> ``IPAMConfig``), or None."""
    kind = _OTHER_NAMES.get(kind, kind)
    return kind if kind in KINDS else None


def _describe(doc: dict[str, Any], kind: str) -> str:
    metadata = doc.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return f'{kind} "{name}"' if isinstance(name, str) and name else kind


def _kinds() -> str:
    return ", ".join(KINDS)


def load_resource(doc: object) -> Resource:
    """One resource from a parsed document; ResourceError if Calico would refuse it."""
    if not isinstance(doc, dict):
        raise ResourceError("", [("", f"a resource must be a mapping, not {type(doc).__name__}")])
    kind_text = doc.get("kind")
    kind = canonical_kind(kind_text) if isinstance(kind_text, str) else None
    what = _describe(doc, kind or (kind_text if isinstance(kind_text, str) else "resource"))
    api_version = doc.get("apiVersion")
    if api_version is None:
        raise ResourceError(what, [("apiVersion", "required")])
    if api_version not in API_VERSIONS:
        raise ResourceError(what, [("apiVersion", f"{api_version!r} is not one of "
                                    f"{', '.join(API_VERSIONS)}")])  # fmt: skip
    if kind_text is None:
        raise ResourceError(what, [("kind", "required")])
    if kind is None:
        raise ResourceError(what, [("kind", f"{kind_text!r} is not one of {_kinds()}")])
    model = KINDS[kind]
    try:
        return model.model_validate({**doc, "kind": kind})
    except ValidationError as exc:
        raise ResourceError(what, convert(exc)) from None


def load_resources(doc: object) -> list[Resource]:
    """The resources of one parsed document: a resource, or a list (``kind: List``
    or ``<Kind>List``) whose items are resources (an item of a ``<Kind>List`` may
    leave out its apiVersion and kind)."""
    if isinstance(doc, dict) and isinstance(doc.get("kind"), str) and doc["kind"].endswith("List"):
        kind_text = doc["kind"]
        of = canonical_kind(kind_text[: -len("List")]) if kind_text != "List" else None
        if kind_text != "List" and of is None:
            raise ResourceError(kind_text, [("kind", f"{kind_text!r} is not List or a list of "
                                             f"one of {_kinds()}")])  # fmt: skip
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
                out.append(load_resource(item))
            except ResourceError as exc:
                raise ResourceError(f"{exc.what or kind_text} (items[{i}])", exc.problems) from None
        return out
    return [load_resource(doc)]


def dump(resource: Resource) -> dict[str, Any]:
    """The canonical stored object (see ``Resource.dump``)."""
    return resource.dump()
