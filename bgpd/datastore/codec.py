"""JSON for the datastore and the CNI plugin, straight from the C accelerator.

``import json`` costs the plugin ~16 ms per pod: its decoder and encoder import
``re``, which imports ``enum``, ``functools`` and more.  The C scanner and
encoder underneath (``_json``) need none of that; this module builds them once
with the settings ``json.loads`` and ``json.dumps(..., separators=(",", ":"))``
use.  Errors are ``ValueError`` as ``json``'s are.
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar

_WHITESPACE = " \t\n\r"


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _unencodable(value: object) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class _Context:
    """What the C scanner reads from ``json.JSONDecoder``."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_constant)
    memo: ClassVar[dict[str, str]] = {}


_scan = _json.make_scanner(_Context())  # type: ignore[arg-type]
_encode = _json.make_encoder(
    None, _unencodable, _json.encode_basestring_ascii, None, ":", ",", True, False, False
)
_encode_unsorted = _json.make_encoder(
    None, _unencodable, _json.encode_basestring_ascii, None, ":", ",", False, False, False
)


def loads(data: str | bytes) -> Any:
    """One JSON value, with only whitespace around it."""
    text = data.decode() if isinstance(data, bytes) else data
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scan(text, start)
    except StopIteration as stop:
        raise ValueError(f"Expecting value: char {stop.value}") from None
    finally:
        _Context.memo.clear()
    if text[end:].strip(_WHITESPACE):
        raise ValueError(f"Extra data: char {end}")
    return value


def dumps(value: Any, sort_keys: bool = True) -> str:
    """Compact JSON (no spaces), keys sorted unless asked otherwise."""
    return "".join((_encode if sort_keys else _encode_unsorted)(value, 0))
