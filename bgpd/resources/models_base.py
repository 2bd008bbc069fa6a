"""What every Calico v3 resource model shares: the error type and its conversion
from pydantic's, the strict base model, names, labels, metadata and the resource
envelope (apiVersion, kind, metadata).  The value types (AS numbers, durations,
addresses, selectors, communities) are in ``models_values``.

Theory of operation
-------------------
A resource arrives as a plain dict (parsed YAML or JSON).  Each kind is a pydantic
model whose fields carry Calico's camelCase names as aliases (attributes are
snake_case); validation is strict -- no string is taken for a number, no number
for a string, as Go's JSON decoder would not -- and unknown fields are refused,
as Calico's API server does in strict mode: an operator's typo (``ipipmode``)
must not pass silently as "not set".

Rules are written where they belong:

* a value on its own (a CIDR, a duration, a selector) is checked by a
  ``BeforeValidator`` on its type (``models_values``), which may also normalise
  it (a Go duration becomes Go's own rendering, ``120s`` -> ``2m0s``);
* rules across fields of one spec (peerIP and peerSelector exclusive) are a
  ``model_validator(mode="after")`` that raises ``Problems``, a list of
  (path relative to the model, reason);
* rules that need the resource's name are on the resource model.

``convert`` turns pydantic's ``ValidationError`` into our single ``ResourceError``
whose message names each field path and its reason::

    IPPool "pool1": spec.blockSize: 33 is outside 20-32

Empty values mean "not set", as Go's ``omitempty`` does: ``""`` for an optional
string, ``false`` for a plain boolean.  The canonical form (``dump``) leaves
unset fields out, so dump -> load -> dump is a fixed point.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

API_VERSION = "projectcalico.org/v3"
#: Calico's CRD form (the Kubernetes datastore's storage): same field names.
CRD_API_VERSION = "crd.projectcalico.org/v1"
API_VERSIONS = (API_VERSION, CRD_API_VERSION)

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
SUBDOMAIN_MAX = 253
LABEL_MAX = 63
ANNOTATIONS_MAX = 256 * 1024
INT32_MAX = 2**31 - 1


def ascii_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


class ResourceError(ValueError):
    """A resource that Calico would refuse.  ``what`` names it (``IPPool "pool1"``),
    ``problems`` lists (field path, reason); the message joins them."""

    def __init__(self, what: str, problems: list[tuple[str, str]]) -> None:
        self.what = what
        self.problems = problems
        text = "; ".join(f"{path}: {reason}" if path else reason for path, reason in problems)
        super().__init__(f"{what}: {text}" if what else text)


class Problems(ValueError):
    """Raised by cross-field validators: (path relative to the model, reason)."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{p}: {r}" for p, r in items))
        self.items = items


def problem(path: str, reason: str) -> Problems:
    return Problems([(path, reason)])


class Model(BaseModel):
    """Strict, closed, camelCase on the wire."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_by_alias=True,
                              validate_by_name=False, serialize_by_alias=True)


# -- converting pydantic's errors ----------------------------------------------------------


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "a number"
    if isinstance(value, float):
        return "a fraction"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


#: pydantic error type -> our reason (given the offending input).
_REASONS: dict[str, Any] = {
    "extra_forbidden": lambda v, c: "unknown field",
    "missing": lambda v, c: "required",
    "string_type": lambda v, c: f"must be a string, not {type_name(v)}",
    "int_type": lambda v, c: f"must be an integer, not {type_name(v)}",
    "bool_type": lambda v, c: f"must be true or false, not {type_name(v)}",
    "list_type": lambda v, c: f"must be a list, not {type_name(v)}",
    "dict_type": lambda v, c: f"must be a mapping, not {type_name(v)}",
    "model_type": lambda v, c: f"must be a mapping, not {type_name(v)}",
    "model_attributes_type": lambda v, c: f"must be a mapping, not {type_name(v)}",
    "literal_error": lambda v, c: f"{v!r} is not {c['expected']}",
}


def convert(error: ValidationError) -> list[tuple[str, str]]:
    """(path, reason) for each of pydantic's errors, paths by Calico's field names."""
    out: list[tuple[str, str]] = []
    for item in error.errors():
        loc = tuple(item["loc"])
        ctx = item.get("ctx") or {}
        cause = ctx.get("error")
        if isinstance(cause, Problems):
            base = _path(loc)
            for sub, reason in cause.items:
                out.append((f"{base}.{sub}" if base and sub else base or sub, reason))
            continue
        if isinstance(cause, ValueError):
            out.append((_path(loc), str(cause)))
            continue
        make = _REASONS.get(item["type"])
        reason = make(item["input"], ctx) if make else item["msg"]
        out.append((_path(loc), reason))
    return out


# -- names, labels, annotations --------------------------------------------------------------


def check_dns_name(value: str, pattern: re.Pattern[str], longest: int, chars: str) -> str:
    """``value`` when it matches ``pattern`` in at most ``longest`` characters;
    ``chars`` names what it may hold, for the message."""
    if len(value) > longest:
        raise ValueError(f"{value[:20]!r}...: longer than {longest} characters")
    if not pattern.match(value):
        raise ValueError(
            f"{value!r} is not a valid name: {chars}, starting and ending with a letter or digit"
        )
    return value


def check_subdomain(value: str) -> str:
    """A DNS-1123 subdomain, as Kubernetes and Calico name resources."""
    chars = "lower case letters, digits, '-' and '.'"
    return check_dns_name(value, _SUBDOMAIN, SUBDOMAIN_MAX, chars)


def _name(value: object) -> object:
    return check_subdomain(value) if isinstance(value, str) else value




def _qualified_name_problem(key: str) -> str | None:
    """Why ``key`` is not a Kubernetes qualified name (``[prefix/]name``), or None."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or "/" in prefix):
        return f"{key!r}: a prefix must be one DNS subdomain followed by '/'"
    if slash and (len(prefix) > SUBDOMAIN_MAX or not _SUBDOMAIN.match(prefix)):
        return f"{key!r}: prefix {prefix!r} is not a DNS subdomain"
    if not name or len(name) > LABEL_MAX or not _QUALIFIED_NAME.match(name):
        return (f"{key!r}: a name of at most {LABEL_MAX} letters, digits, '-', '_' or '.', "
                "starting and ending with a letter or digit")  # fmt: skip
    return None


def _labels(value: object) -> object:
    if not isinstance(value, dict):
        return value
    for key, text in value.items():
        if not isinstance(key, str):
            raise ValueError(f"label key {key!r} must be a string")
        why = _qualified_name_problem(key)
        if why:
            raise ValueError(f"label key {why}")
        if not isinstance(text, str):
            raise ValueError(f"label {key!r}: value must be a string, not {type_name(text)}")
        if text and (len(text) > LABEL_MAX or not _QUALIFIED_NAME.match(text)):
            raise ValueError(
                f"label {key!r}: value {text!r} must be at most {LABEL_MAX} letters, digits, "
                "'-', '_' or '.', starting and ending with a letter or digit"
            )
    return value


def _annotations(value: object) -> object:
    if not isinstance(value, dict):
        return value
    size = 0
    for key, text in value.items():
        if not isinstance(key, str):
            raise ValueError(f"annotation key {key!r} must be a string")
        why = _qualified_name_problem(key.lower())
        if why:
            raise ValueError(f"annotation key {why}")
        if not isinstance(text, str):
            raise ValueError(f"annotation {key!r}: value must be a string, not {type_name(text)}")
        size += len(key) + len(text)
    if size > ANNOTATIONS_MAX:
        raise ValueError(f"annotations total {size} bytes, more than {ANNOTATIONS_MAX}")
    return value


def _resource_version(value: object) -> object:
    """Kubernetes writes it as a string; we also take the revision as a number."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and value and not value.isdigit():
        raise ValueError(f"{value!r} is not a resource version (a revision number)")
    return value or None


def _timestamp(value: object) -> object:
    return value or None


def _empty_is_unset(value: object) -> object:
    return None if value == "" else value


# Each check below takes any value and refuses a bad string; other types pass on
# to pydantic's strict type check, which names them.  The optional form of a
# type first turns "" into None (unset), as Go's omitempty reads it.

Name = Annotated[str, BeforeValidator(_name)]
OptName = Annotated[str | None, BeforeValidator(_name), BeforeValidator(_empty_is_unset)]
OptStr = Annotated[str | None, BeforeValidator(_empty_is_unset)]
#: Put last in an optional type's Annotated: "" becomes None before other checks.
UNSET = BeforeValidator(_empty_is_unset)
Labels = Annotated[dict[str, str], BeforeValidator(_labels)]
Annotations = Annotated[dict[str, str], BeforeValidator(_annotations)]


class Metadata(Model):
    """ObjectMeta.  Kept: name, labels, annotations, and the server's uid,
    creationTimestamp and resourceVersion (never needed on input: replace uses a
    given resourceVersion as the revision the write must find).  Other
    server-written ObjectMeta fields (generation, managedFields, ...) are
    accepted, as they appear in exported YAML, and dropped."""

    name: Name
    namespace: str | None = None
    labels: Labels | None = None
    annotations: Annotations | None = None
    resource_version: Annotated[str | None, BeforeValidator(_resource_version)] = Field(
        default=None, alias="resourceVersion"
    )
    uid: Annotated[str | None, BeforeValidator(_timestamp)] = None
    creation_timestamp: Annotated[str | None, BeforeValidator(_timestamp)] = Field(
        default=None, alias="creationTimestamp"
    )
    # Server-written, accepted and not kept.
    generate_name: Any = Field(default=None, alias="generateName", exclude=True)
    generation: Any = Field(default=None, exclude=True)
    managed_fields: Any = Field(default=None, alias="managedFields", exclude=True)
    owner_references: Any = Field(default=None, alias="ownerReferences", exclude=True)
    finalizers: Any = Field(default=None, exclude=True)
    deletion_timestamp: Any = Field(default=None, alias="deletionTimestamp", exclude=True)
    deletion_grace: Any = Field(default=None, alias="deletionGracePeriodSeconds", exclude=True)
    self_link: Any = Field(default=None, alias="selfLink", exclude=True)

    def dump(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.labels:
            out["labels"] = dict(self.labels)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        for key, value in (("uid", self.uid), ("creationTimestamp", self.creation_timestamp),
                           ("resourceVersion", self.resource_version)):  # fmt: skip
            if value:
                out[key] = value
        return out


# -- the resource envelope -------------------------------------------------------------------


class Resource(Model):
    """apiVersion, kind and metadata; each kind adds ``spec`` (and Node ``status``).
    ``KIND`` is the kind's canonical name."""

    KIND: ClassVar[str] = ""

    api_version: str = Field(alias="apiVersion")
    kind: str
    metadata: Metadata
    #: Written by the server on other kinds (IPPool conditions): accepted, not kept.
    status: Any = Field(default=None, exclude=True)

    @property
    def name(self) -> str:
        return self.metadata.name

    def __str__(self) -> str:
        return f'{self.KIND} "{self.name}"'

    @model_validator(mode="after")
    def _not_namespaced(self) -> Resource:
        if self.metadata.namespace:
            raise problem(
                "metadata.namespace",
                "namespace should not be specified for a non-namespaced resource. "
                f"{self.KIND} is not a namespaced resource",
            )
        return self

    def dump(self) -> dict[str, Any]:
        """The canonical object: projectcalico.org/v3, Calico's defaults filled in,
        unset fields left out (as ``calicoctl get -o yaml`` shows it)."""
        body = self.model_dump(exclude_none=True, exclude={"api_version", "kind", "metadata"})
        return {"apiVersion": API_VERSION, "kind": self.KIND, "metadata": self.metadata.dump(),
                **body}  # fmt: skip
