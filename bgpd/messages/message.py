"""The common face of every BGP message, and KEEPALIVE, the message with no body.

A message class names its ``message_type`` (RFC 4271 §4.1), encodes its body with
``encode_body(context)`` and decodes one with ``decode_body(body, context)``; the
header is added and checked in one place (``codec`` and ``framing``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, ClassVar, TypeVar

from .codes import MessageType
from .context import SessionContext


class Message:
    """Base of the five message types."""

    __slots__ = ()
    message_type: ClassVar[MessageType]

    def encode_body(self, context: SessionContext) -> bytes:
        raise NotImplementedError

    @classmethod
    def decode_body(cls, body: bytes, context: SessionContext) -> Message:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Keepalive(Message):
    """KEEPALIVE: a header and nothing else (RFC 4271 §4.4)."""

    message_type: ClassVar[MessageType] = MessageType.KEEPALIVE

    def encode_body(self, context: SessionContext) -> bytes:
        return b""

    @classmethod
    def decode_body(cls, body: bytes, context: SessionContext) -> Keepalive:
        # The header check already pinned a KEEPALIVE's length to 19.
        return KEEPALIVE


KEEPALIVE = Keepalive()

T = TypeVar("T")


def trusted_builder(cls: type[T]) -> Callable[..., T]:
    """A constructor for values a decoder has already validated.

    It takes every field positionally and skips ``__post_init__``: the hot decode
    path checked each value while parsing, and checking a million prefixes twice
    would halve throughput.  Only decoders use it.  The body is generated, as
    dataclasses generates ``__init__``, because a loop of ``setattr`` calls costs
    several times more than straight-line code.
    """
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    scope: dict[str, Any] = {"new": object.__new__, "cls": cls}
    for name in names:
        # The slot's own descriptor: a direct C call, cheaper than object.__setattr__.
        owner = next(k for k in cls.__mro__ if name in vars(k))
        scope[f"set_{name}"] = vars(owner)[name].__set__
    lines = [f"def build({', '.join(names)}):", "    obj = new(cls)"]
    lines += [f"    set_{n}(obj, {n})" for n in names]
    lines.append("    return obj")
    exec("\n".join(lines), scope)
    build: Callable[..., T] = scope["build"]
    return build


def trusted_copier(cls: type[T]) -> Callable[[T, dict[str, Any]], T]:
    """``copy(obj, changes)``: ``obj`` with the fields named in ``changes`` replaced,
    without ``__init__`` or ``__post_init__``.  The caller checks the changed
    values; the others are the already valid ones of ``obj``."""
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    scope: dict[str, Any] = {"new": object.__new__, "cls": cls}
    lines = ["def copy(old, changes):", "    get = changes.get", "    obj = new(cls)"]
    for name in names:
        owner = next(k for k in cls.__mro__ if name in vars(k))
        scope[f"set_{name}"] = vars(owner)[name].__set__
        lines.append(f"    set_{name}(obj, get({name!r}, old.{name}))")
    lines.append("    return obj")
    exec("\n".join(lines), scope)
    copy: Callable[[T, dict[str, Any]], T] = scope["copy"]
    return copy
