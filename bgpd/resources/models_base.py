"""What every Calico v3 resource model shares: the error type, metadata, and the
value types Calico's validator knows (names, AS numbers, Go durations, addresses,
selectors, communities).

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
  ``BeforeValidator`` on its type below, which may also normalise it (a Go
  duration becomes Go's own rendering, ``120s`` -> ``2m0s``);
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

import base64
import binascii
import ipaddress
import re
from fractions import Fraction
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from .selector import SelectorError, parse

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
AS_MAX = 2**32 - 1
INT32_MAX = 2**31 - 1


def _digits(text: str) -> bool:
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


def _type_name(value: object) -> str:
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
    "string_type": lambda v, c: f"must be a string, not {_type_name(v)}",
    "int_type": lambda v, c: f"must be an integer, not {_type_name(v)}",
    "bool_type": lambda v, c: f"must be true or false, not {_type_name(v)}",
    "list_type": lambda v, c: f"must be a list, not {_type_name(v)}",
    "dict_type": lambda v, c: f"must be a mapping, not {_type_name(v)}",
    "model_type": lambda v, c: f"must be a mapping, not {_type_name(v)}",
    "model_attributes_type": lambda v, c: f"must be a mapping, not {_type_name(v)}",
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


def check_subdomain(value: str) -> str:
    """A DNS-1123 subdomain, as Kubernetes and Calico name resources."""
    if len(value) > SUBDOMAIN_MAX:
        raise ValueError(f"{value[:20]!r}...: longer than {SUBDOMAIN_MAX} characters")
    if not _SUBDOMAIN.match(value):
        raise ValueError(
            f"{value!r} is not a valid name: lower case letters, digits, '-' and '.', "
            "starting and ending with a letter or digit"
        )
    return value


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
            raise ValueError(f"label {key!r}: value must be a string, not {_type_name(text)}")
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
            raise ValueError(f"annotation {key!r}: value must be a string, not {_type_name(text)}")
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


# -- numbers ---------------------------------------------------------------------------------


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def in_range(low: int, high: int) -> BeforeValidator:
    """An integer between ``low`` and ``high`` (a string or boolean is left for the
    strict type check to refuse)."""

    def check(value: object) -> object:
        if is_int(value) and not low <= value <= high:  # type: ignore[operator]
            raise ValueError(f"{value} is outside {low}-{high}")
        return value

    return BeforeValidator(check)


def parse_as_number(value: object) -> int:
    """An AS number as Calico's numorstring takes it: an integer 0-4294967295, or a
    string of one, or the "asdot" form ``a.b`` (two 16-bit halves)."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        if _digits(text):
            number = int(text)
        else:
            high, dot, low = text.partition(".")
            if not (dot and _digits(high) and _digits(low)):
                raise ValueError(f"{value!r} is not an AS number (N or N.N)")
            if int(high) > 0xFFFF or int(low) > 0xFFFF:
                raise ValueError(f"{value!r}: each half of a dotted AS number is 0-65535")
            number = int(high) << 16 | int(low)
    else:
        raise ValueError(f"must be an AS number, not {_type_name(value)}")
    if not 0 <= number <= AS_MAX:
        raise ValueError(f"{number} is outside 0-{AS_MAX}")
    return number


def _as_number(value: object) -> object:
    return None if value is None else parse_as_number(value)


ASNumber = Annotated[int | None, BeforeValidator(_as_number), BeforeValidator(_empty_is_unset)]


# -- Go durations ----------------------------------------------------------------------------

_NS = {"ns": 1, "us": 10**3, "\u00b5s": 10**3, "\u03bcs": 10**3, "ms": 10**6,
       "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}  # fmt: skip
_NUMBER = re.compile(r"([0-9]*)(?:\.([0-9]*))?")
_UNIT = re.compile(r"[^0-9.]*")
INT64_MAX = 2**63 - 1


def parse_duration(text: str) -> int:
    """Nanoseconds of a Go duration (``time.ParseDuration``): ``300ms``, ``1.5h``,
    ``2h45m``; ``0`` alone needs no unit."""
    body = text
    negative = body[:1] == "-"
    if body[:1] in "+-":
        body = body[1:]
    if body == "0":
        return 0
    if not body:
        raise ValueError(f"{text!r} is not a duration")
    total = Fraction(0)
    while body:
        number = _NUMBER.match(body)
        assert number is not None
        whole, frac = number.group(1), number.group(2)
        if not whole and not frac:
            raise ValueError(f"{text!r} is not a duration (like 90s, 2m30s or 1h)")
        body = body[number.end():]
        unit_match = _UNIT.match(body)
        assert unit_match is not None
        unit = unit_match.group(0)
        if not unit:
            raise ValueError(f"{text!r}: missing unit (ns, us, ms, s, m or h)")
        if unit not in _NS:
            raise ValueError(f"{text!r}: unknown unit {unit!r} (ns, us, ms, s, m or h)")
        body = body[len(unit):]
        value = Fraction(int(whole or "0"))
        if frac:
            value += Fraction(int(frac), 10 ** len(frac))
        total += value * _NS[unit]
    nanoseconds = int(total)
    if nanoseconds > INT64_MAX:
        raise ValueError(f"{text!r}: duration out of range")
    return -nanoseconds if negative else nanoseconds


def _fraction(value: int, precision: int) -> tuple[str, int]:
    digits, rest = value % 10**precision, value // 10**precision
    if not digits:
        return "", rest
    return "." + str(digits).rjust(precision, "0").rstrip("0"), rest


def format_duration(nanoseconds: int) -> str:
    """Go's ``time.Duration.String``: ``2m0s``, ``1h0m0s``, ``1.5s``, ``300ms``."""
    sign = "-" if nanoseconds < 0 else ""
    u = abs(nanoseconds)
    if u < 10**9:
        if u == 0:
            return "0s"
        unit, precision = ("ns", 0) if u < 10**3 else ("\u00b5s", 3) if u < 10**6 else ("ms", 6)
        frac, whole = _fraction(u, precision)
        return f"{sign}{whole}{frac}{unit}"
    frac, seconds = _fraction(u, 9)
    out = f"{seconds % 60}{frac}s"
    minutes = seconds // 60
    if minutes:
        out = f"{minutes % 60}m{out}"
        if minutes // 60:
            out = f"{minutes // 60}h{out}"
    return sign + out


def _duration(value: object) -> object:
    if not isinstance(value, str):
        return value  # the strict str check names the type
    nanoseconds = parse_duration(value.strip())
    if nanoseconds < 0:
        raise ValueError(f"{value!r}: must not be negative")
    return format_duration(nanoseconds)


#: Kept in Go's rendering, as ``calicoctl get -o yaml`` shows a metav1.Duration.
Duration = Annotated[str | None, BeforeValidator(_duration), BeforeValidator(_empty_is_unset)]


# -- addresses -------------------------------------------------------------------------------


def ip_family(text: str) -> int:
    """4 or 6 for an IP address, else ValueError (no zone: Go's ParseIP takes none)."""
    try:
        if "%" in text:
            raise ValueError(text)
        return ipaddress.ip_address(text).version
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address") from None


def _ip_of(family: int | None) -> BeforeValidator:
    def check(value: object) -> object:
        if isinstance(value, str):
            found = ip_family(value)
            if family is not None and found != family:
                raise ValueError(f"{value!r} is not an IPv{family} address")
        return value

    return BeforeValidator(check)


def parse_network(
    text: str, *, strict: bool, need_length: bool = False
) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An IP network from ``address/length`` (or, unless ``need_length``, a bare
    address: a /32 or /128), as Go's ParseCIDR reads it; ``strict`` refuses host bits."""
    address, slash, length = text.partition("/")
    ip_family(address)
    ip = ipaddress.ip_address(address)
    bits = ip.max_prefixlen
    if slash:
        if not _digits(length) or len(length) > 3 or int(length) > bits:
            raise ValueError(f"{text!r}: the prefix length must be 0-{bits}")
        prefix = int(length)
    elif need_length:
        raise ValueError(f"{text!r} is not a CIDR (address/length)")
    else:
        prefix = bits
    network = ipaddress.ip_network((ip, prefix), strict=False)
    if strict and network.network_address != ip:
        raise ValueError(f"{text!r} is not strictly masked (host bits set; {network}?)")
    return network


def _cidr_of(family: int | None, strict: bool) -> BeforeValidator:
    def check(value: object) -> object:
        if isinstance(value, str):
            network = parse_network(value, strict=strict)
            if family is not None and network.version != family:
                raise ValueError(f"{value!r} is not an IPv{family} CIDR")
        return value

    return BeforeValidator(check)


UNSET = BeforeValidator(_empty_is_unset)
IP = Annotated[str | None, _ip_of(None), UNSET]
IPv4 = Annotated[str | None, _ip_of(4), UNSET]
IPv6 = Annotated[str | None, _ip_of(6), UNSET]
#: An address with its prefix length (host bits allowed), e.g. a node's 10.0.0.5/24.
CIDRv4 = Annotated[str | None, _cidr_of(4, strict=False), UNSET]
CIDRv6 = Annotated[str | None, _cidr_of(6, strict=False), UNSET]
#: Required: an address or a network, host bits allowed.
CIDR = Annotated[str, _cidr_of(None, strict=False)]
#: Required: an address or a strictly masked network (Calico's "net" validator).
Net = Annotated[str, _cidr_of(None, strict=True)]
NetV4 = Annotated[str | None, _cidr_of(4, strict=True), UNSET]
NetV6 = Annotated[str | None, _cidr_of(6, strict=True), UNSET]

_MAC = re.compile(
    r"^(?:[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){5}|[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4})$"
)


def _mac(value: object) -> object:
    if isinstance(value, str) and not _MAC.match(value):
        raise ValueError(f"{value!r} is not a MAC address")
    return value


Mac = Annotated[str | None, BeforeValidator(_mac), UNSET]


def _wireguard_key(value: object) -> object:
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            raise ValueError(f"{value!r} is not a WireGuard public key (32 bytes, base64)")
    return value


WireguardKey = Annotated[str | None, BeforeValidator(_wireguard_key), UNSET]


# -- selectors, secrets, communities -------------------------------------------------------


def check_selector(value: object) -> object:
    if isinstance(value, str):
        try:
            parse(value)
        except SelectorError as exc:
            raise ValueError(f"invalid selector: {exc}") from None
    return value


Selector = Annotated[str | None, BeforeValidator(check_selector), UNSET]


def _false_is_unset(value: object) -> object:
    return None if value is False else value


#: A plain Go bool with omitempty: false is the same as absent, and is left out.
Flag = Annotated[bool | None, BeforeValidator(_false_is_unset)]


class SecretKeyRef(Model):
    """A key of a Kubernetes Secret in calico-node's namespace."""

    name: OptStr = None
    key: str
    optional: bool | None = None


class Password(Model):
    secret_key_ref: SecretKeyRef | None = Field(default=None, alias="secretKeyRef")


_STANDARD = re.compile(r"^([0-9]+):([0-9]+)$")
_LARGE = re.compile(r"^([0-9]+):([0-9]+):([0-9]+)$")


def community_problem(value: str) -> str | None:
    """Why ``value`` is not a BGP community (``aa:nn``, 16-bit parts, or the large
    ``aa:nn:mm``, 32-bit parts), or None."""
    for pattern, bits in ((_STANDARD, 16), (_LARGE, 32)):
        match = pattern.match(value)
        if match:
            if any(int(part) >= 1 << bits for part in match.groups()):
                return f"{value!r}: each part must be a {bits}-bit number"
            return None
    return f"{value!r} is not a community value (aa:nn or aa:nn:mm)"


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
