"""The value types Calico's validator knows, as pydantic annotated types: AS
numbers (``64512`` or the dotted ``1.10``), Go durations (kept in Go's own
rendering, ``120s`` -> ``2m0s``), IP addresses and CIDRs of either or one family,
MAC addresses, WireGuard keys, label selectors (parsed by ``selector.py``),
Secret references and BGP communities.

Each check takes any value and refuses a bad string; other types pass on to
pydantic's strict type check, which names them.  An optional type ends with
``UNSET``, so that ``""`` means "not set" as Go's omitempty reads it.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from fractions import Fraction
from typing import Annotated

from pydantic import BeforeValidator, Field

from .models_base import UNSET, Model, OptStr, ascii_digits, type_name
from .selector import SelectorError, parse

AS_MAX = 2**32 - 1

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
        if ascii_digits(text):
            number = int(text)
        else:
            high, dot, low = text.partition(".")
            if not (dot and ascii_digits(high) and ascii_digits(low)):
                raise ValueError(f"{value!r} is not an AS number (N or N.N)")
            if int(high) > 0xFFFF or int(low) > 0xFFFF:
                raise ValueError(f"{value!r}: each half of a dotted AS number is 0-65535")
            number = int(high) << 16 | int(low)
    else:
        raise ValueError(f"must be an AS number, not {type_name(value)}")
    if not 0 <= number <= AS_MAX:
        raise ValueError(f"{number} is outside 0-{AS_MAX}")
    return number


def _as_number(value: object) -> object:
    return None if value is None else parse_as_number(value)


ASNumber = Annotated[int | None, BeforeValidator(_as_number), UNSET]


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
Duration = Annotated[str | None, BeforeValidator(_duration), UNSET]


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
        if not ascii_digits(length) or len(length) > 3 or int(length) > bits:
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
