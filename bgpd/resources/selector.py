"""Calico label selectors: parse once, match many times.

Theory of operation
-------------------
A selector is a boolean expression over an object's labels (a ``str -> str``
mapping), in the language of Calico v3 (libcalico-go ``lib/selector``)::

    or_expr   := and_expr ( "||" and_expr )*
    and_expr  := operation ( "&&" operation )*
    operation := "!"* ( term | "(" or_expr ")" )
    term      := "all()" | "global()" | "has(" key ")"
               | key ( "==" | "!=" | "contains" | "starts with" | "ends with" ) string
               | key ( "in" | "not in" ) "{" [ string ( "," string )* [","] ] "}"

``||`` binds weaker than ``&&``, and ``!`` binds tighter than both (it negates
a single operation; a run of ``!`` collapses to one or none).  An empty or
all-blank selector means ``all()``.

Lexical rules follow Calico's tokenizer exactly, so that this module accepts
the same strings Calico does and rejects the same ones:

* Whitespace is spaces and tabs only (a newline is an unexpected character).
* A string is everything between a quote and the next quote of the same kind,
  ``"..."`` or ``'...'``; there are no escapes, so a value never holds both.
* A label key is a run of ``[A-Za-z0-9_./-]`` -- Calico's tokenizer is looser
  than Kubernetes' key syntax (``projectcalico.org/zone`` and ``-x`` both lex).
* ``has(``, ``all(`` and ``global(`` must be written without a space before
  the parenthesis (``has (k)`` is an error in Calico too); spaces are allowed
  inside.  The words ``all``, ``has``, ``in`` ... are otherwise ordinary keys.
* Operator words are only recognised straight after a key: ``contains``,
  ``starts`` [blanks] ``with``, ``ends`` [blanks] ``with``, ``not`` [blanks]
  ``in``, ``in``.  A lone ``=`` is an error; ``==`` is required.
* A set literal may be empty (``k in {}`` matches nothing, ``k not in {}``
  matches everything) and may end with a comma after a string.

Absent labels: ``!=`` and ``not in`` are true, ``==``, ``in``, ``contains``,
``starts with`` and ``ends with`` are false, ``has(k)`` tests presence.

``global()``: Calico accepts it only as a rule's ``namespaceSelector``, where
it widens the rule's ``selector`` to non-namespaced resources (host endpoints,
global network sets).  libcalico-go's node evaluates it to true and leaves
the scoping to the code that interprets ``namespaceSelector``.  Here the
context is explicit: ``Selector.matches(labels, global_=True)`` says the
labels belong to a non-namespaced ("global") resource, and only then is
``global()`` true; by default it is false.

Parsing builds a small tree of ``__slots__`` nodes (runs of ``!``, double
negations through parentheses and redundant parentheses collapse away);
``matches`` walks it with one ``dict.get`` per comparison.  ``str(selector)``
renders Calico's canonical form -- ``&&``/``||`` groups parenthesised, ``!``
prefixed without a space, set members sorted and de-duplicated, a value
quoted with ``'`` only if it contains ``"`` -- which re-parses to the same
tree, so ``str`` is a fixed point and serves as an identity for equality,
hashing and de-duplication.  (Calico renders ``!(!has(a))`` as ``!!has(a)``;
here it is ``has(a)``.)

The module is imported by the CNI plugin, run once per pod, so it uses
nothing beyond builtins at import time (no ``re``, ``typing``, ``functools``
or ``dataclasses``); ``parse_cached`` is a bounded dict.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    # (kind, value, offset); see _tokenize.
    _Token = tuple[str, str, int]

__all__ = ["Selector", "SelectorError", "parse", "parse_cached"]

_BLANKS = " \t"
_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./-")
_PUNCTUATION = "(){},"
_CACHE_MAX = 1024


class SelectorError(ValueError):
    """A selector that does not parse: ``<problem> at <offset>: <selector>``.

    ``pos`` is the 0-based character offset where the problem was found.
    """

    def __init__(self, problem: str, pos: int, text: str) -> None:
        super().__init__(f"{problem} at {pos}: {text}")
        self.problem = problem
        self.pos = pos
        self.text = text


# --- tokenizer ---------------------------------------------------------------
# A token is (kind, value, offset).  Kinds: the punctuation and operator
# spellings themselves ("(", "&&", "==", "not in", ...), plus "key", "str",
# "has" (value = key), "all", "global" and "eof".


def _skip_blanks(text: str, i: int) -> int:
    n = len(text)
    while i < n and text[i] in _BLANKS:
        i += 1
    return i


def _key_end(text: str, i: int) -> int:
    n = len(text)
    while i < n and text[i] in _KEY_CHARS:
        i += 1
    return i


def _close_paren(text: str, i: int, what: str) -> int:
    """Offset just past the ``)`` that must follow (after blanks) at ``i``."""
    i = _skip_blanks(text, i)
    if not text.startswith(")", i):
        raise SelectorError(f"expected ')' to close {what}(", i, text)
    return i + 1


def _operator(text: str, i: int, key: str) -> tuple[str, int]:
    """The operator word straight after key ``key``, and the offset past it."""
    if text.startswith("contains", i):
        return "contains", i + 8
    for first, second in (("starts", "with"), ("ends", "with"), ("not", "in")):
        if text.startswith(first, i):
            j = _skip_blanks(text, i + len(first))
            if not text.startswith(second, j):
                raise SelectorError(f"expected '{second}' after '{first}'", j, text)
            return f"{first} {second}", j + len(second)
    if text.startswith("in", i):
        return "in", i + 2
    raise SelectorError(f"expected an operator after label {key!r}", i, text)


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    append = tokens.append
    n = len(text)
    i = _skip_blanks(text, 0)
    while i < n:
        c = text[i]
        start = i
        if c in _PUNCTUATION:
            append((c, "", i))
            i += 1
        elif c in "\"'":
            end = text.find(c, i + 1)
            if end < 0:
                raise SelectorError(f"unterminated string, expected closing {c}", i, text)
            append(("str", text[i + 1 : end], i))
            i = end + 1
        elif c == "=":
            if not text.startswith("==", i):
                raise SelectorError("expected '=='", i, text)
            append(("==", "", i))
            i += 2
        elif c == "!":
            if text.startswith("!=", i):
                append(("!=", "", i))
                i += 2
            else:
                append(("!", "", i))
                i += 1
        elif c in "&|":
            if not text.startswith(c + c, i):
                raise SelectorError(f"expected '{c}{c}'", i, text)
            append((c + c, "", i))
            i += 2
        elif c not in _KEY_CHARS:
            raise SelectorError(f"unexpected character {c!r}", i, text)
        elif tokens and tokens[-1][0] == "key":
            kind, i = _operator(text, i, tokens[-1][1])
            append((kind, "", start))
        elif text.startswith("has(", i):
            j = _skip_blanks(text, i + 4)
            end = _key_end(text, j)
            if end == j:
                raise SelectorError("expected a label in has()", j, text)
            append(("has", text[j:end], i))
            i = _close_paren(text, end, "has")
        elif text.startswith("all(", i):
            append(("all", "", i))
            i = _close_paren(text, i + 4, "all")
        elif text.startswith("global(", i):
            append(("global", "", i))
            i = _close_paren(text, i + 7, "global")
        else:
            end = _key_end(text, i)
            append(("key", text[i:end], i))
            i = end
        i = _skip_blanks(text, i)
    append(("eof", "", n))
    return tokens


# --- syntax tree -------------------------------------------------------------


def _quote(value: str) -> str:
    q = "'" if '"' in value else '"'
    return q + value + q


class _Node:
    __slots__ = ()

    def ev(self, labels: Mapping[str, str], glob: bool) -> bool:
        raise NotImplementedError

    def render(self) -> str:
        raise NotImplementedError

    def keys(self, out: set[str]) -> None:
        """Add the label keys this node refers to to ``out``."""


class _All(_Node):
    __slots__ = ()

    def ev(self, labels: Mapping[str, str], glob: bool) -> bool:
        return True

    def render(self) -> str:
        return "all()"


class _Global(_Node):
    __slots__ = ()

    def ev(self, labels: Mapping[str, str], glob: bool) -> bool:
        return glob

    def render(self) -> str:
        return "global()"


class _Has(_Node):
    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        self.key = key

    def ev(self, labels: Mapping[str, str], glob: bool) -> bool:
        return self.key in labels

    def render(self) -> str:
        return f"has({self.key})"

    def keys(self, out: set[str]) -> None:
        out.add(self.key)


class _Compare(_Node):
    """``key <op> "value"``; subclasses define ``op`` and ``ev``."""

    __slots__ = ("key", "value")
    op = ""

    def __init__(self, key: str, value: str) -> None:
        self.key = key
        self.value = value

    def render(self) -> str:
        return f"{self.key} {self.op} {_quote(self.value)}"

    def keys(self, out: set[str]) -> None:
        out.add(self.key)


class _Eq(_Compare):
    __slots__ = ()
    op = "=="

    def ev(self, labels: Mapping[str, str], glob: bool) -> bool:
        return labels.get(self.key) == self.value


class _Ne(_Compare):
    __slots__ = ()
    op = "!="

    def ev(self, labels: Mapping[str, str], glob: bool) -> bool:
        return labels.get(self.key) != self.value


class _Contains(_Compare):
    __slots__ = ()
    op = "contains"

    def ev(self, labels: Mapping[str, str], glob: bool) -> bool:
        v = labels.get(self.key)
        return v is not None and self.value in v


class _StartsWith(_Compare):
    __slots__ = ()
    op = "starts with"

    def ev(self, labels: Mapping[str, str], glob: bool) -> bool:
        v = labels.get(self.key)
        return v is not None and v.startswith(self.value)


class _EndsWith(_Compare):
    __slots__ = ()
    op = "ends with"

    def ev(self, labels: Mapping[str, str], glob: bool) -> bool:
        v = labels.get(self.key)
        return v is not None and v.endswith(self.value)


class _In(_Node):
    __slots__ = ("key", "values")
    op = "in"

    def __init__(self, key: str, values: frozenset[str]) -> None:
        self.key = key
        self.values = values

    def ev(self, labels: Mapping[str, str], glob: bool) -> bool:
        v = labels.get(self.key)
        return v is not None and v in self.values

    def render(self) -> str:
        members = ", ".join(_quote(v) for v in sorted(self.values))
        return f"{self.key} {self.op} {{{members}}}"

    def keys(self, out: set[str]) -> None:
        out.add(self.key)


class _NotIn(_In):
    __slots__ = ()
    op = "not in"

    def ev(self, labels: Mapping[str, str], glob: bool) -> bool:
        v = labels.get(self.key)
        return v is None or v not in self.values


class _Not(_Node):
    __slots__ = ("operand",)

    def __init__(self, operand: _Node) -> None:
        self.operand = operand

    def ev(self, labels: Mapping[str, str], glob: bool) -> bool:
        return not self.operand.ev(labels, glob)

    def render(self) -> str:
        return "!" + self.operand.render()

    def keys(self, out: set[str]) -> None:
        self.operand.keys(out)


class _And(_Node):
    __slots__ = ("operands",)
    joiner = " && "

    def __init__(self, operands: tuple[_Node, ...]) -> None:
        self.operands = operands

    def ev(self, labels: Mapping[str, str], glob: bool) -> bool:
        # An explicit loop: about twice as fast as all() over a generator.
        for operand in self.operands:  # noqa: SIM110
            if not operand.ev(labels, glob):
                return False
        return True

    def render(self) -> str:
        return "(" + self.joiner.join(o.render() for o in self.operands) + ")"

    def keys(self, out: set[str]) -> None:
        for operand in self.operands:
            operand.keys(out)


class _Or(_And):
    __slots__ = ()
    joiner = " || "

    def ev(self, labels: Mapping[str, str], glob: bool) -> bool:
        for operand in self.operands:  # noqa: SIM110 (see _And.ev)
            if operand.ev(labels, glob):
                return True
        return False


_ALL = _All()
_GLOBAL = _Global()
_STRING_OPS: dict[str, type[_Compare]] = {
    "==": _Eq,
    "!=": _Ne,
    "contains": _Contains,
    "starts with": _StartsWith,
    "ends with": _EndsWith,
}


# --- parser ------------------------------------------------------------------


class _Parser:
    """Recursive descent over the token list; ``i`` is the next token."""

    __slots__ = ("i", "text", "tokens")

    def __init__(self, text: str, tokens: list[_Token]) -> None:
        self.text = text
        self.tokens = tokens
        self.i = 0

    def error(self, problem: str, token: _Token) -> SelectorError:
        if token[0] == "eof":
            problem = f"unexpected end of selector, {problem}"
        return SelectorError(problem, token[2], self.text)

    def or_expr(self) -> _Node:
        node = self.and_expr()
        if self.tokens[self.i][0] != "||":
            return node
        operands = [node]
        while self.tokens[self.i][0] == "||":
            self.i += 1
            operands.append(self.and_expr())
        return _Or(tuple(operands))

    def and_expr(self) -> _Node:
        node = self.operation()
        if self.tokens[self.i][0] != "&&":
            return node
        operands = [node]
        while self.tokens[self.i][0] == "&&":
            self.i += 1
            operands.append(self.operation())
        return _And(tuple(operands))

    def operation(self) -> _Node:
        tokens = self.tokens
        negated = False
        while tokens[self.i][0] == "!":
            negated = not negated
            self.i += 1
        token = tokens[self.i]
        kind = token[0]
        self.i += 1
        node: _Node
        if kind == "key":
            node = self.comparison(token[1])
        elif kind == "has":
            node = _Has(token[1])
        elif kind == "all":
            node = _ALL
        elif kind == "global":
            node = _GLOBAL
        elif kind == "(":
            node = self.or_expr()
            close = tokens[self.i]
            if close[0] != ")":
                raise self.error("expected ')'", close)
            self.i += 1
        else:
            raise self.error("expected a label, has(), all(), global(), '!' or '('", token)
        if not negated:
            return node
        # !(!x) is x: keeps the canonical form a fixed point of parse/str.
        return node.operand if isinstance(node, _Not) else _Not(node)

    def comparison(self, key: str) -> _Node:
        tokens = self.tokens
        op = tokens[self.i]
        operand = tokens[self.i + 1] if op[0] != "eof" else op
        cls = _STRING_OPS.get(op[0])
        if cls is not None:
            if operand[0] != "str":
                raise self.error(f"expected a quoted string after '{op[0]}'", operand)
            self.i += 2
            return cls(key, operand[1])
        if op[0] != "in" and op[0] != "not in":
            raise self.error(f"expected an operator after label {key!r}", op)
        if operand[0] != "{":
            raise self.error(f"expected '{{' after '{op[0]}'", operand)
        i = self.i + 2
        values: list[str] = []
        while tokens[i][0] == "str":
            values.append(tokens[i][1])
            i += 1
            if tokens[i][0] != ",":
                break
            i += 1
        if tokens[i][0] != "}":
            raise self.error("expected a quoted string or '}'", tokens[i])
        self.i = i + 1
        return (_In if op[0] == "in" else _NotIn)(key, frozenset(values))


# --- public API --------------------------------------------------------------


class Selector:
    """A parsed selector.  Immutable; equal when the canonical forms are.

    ``text`` is the selector exactly as given to ``parse``; ``str()`` is the
    canonical form.
    """

    __slots__ = ("_canonical", "_keys", "_root", "text")

    def __init__(self, text: str, root: _Node) -> None:
        self.text = text
        self._root = root
        self._canonical: str | None = None
        self._keys: frozenset[str] | None = None

    def matches(self, labels: Mapping[str, str], *, global_: bool = False) -> bool:
        """Whether ``labels`` satisfy the selector.

        ``global_`` says the labels are those of a non-namespaced resource;
        it is the value of ``global()`` (see the module docstring).
        """
        return self._root.ev(labels, global_)

    def labels_used(self) -> frozenset[str]:
        """Every label key the selector refers to, for indexing."""
        if self._keys is None:
            out: set[str] = set()
            self._root.keys(out)
            self._keys = frozenset(out)
        return self._keys

    def __str__(self) -> str:
        if self._canonical is None:
            self._canonical = self._root.render()
        return self._canonical

    def __repr__(self) -> str:
        return f"Selector({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Selector):
            return NotImplemented
        return str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))


def parse(text: str) -> Selector:
    """Parse a Calico selector; raise ``SelectorError`` if it is malformed."""
    tokens = _tokenize(text)
    if tokens[0][0] == "eof":
        return Selector(text, _ALL)
    parser = _Parser(text, tokens)
    try:
        root = parser.or_expr()
    except RecursionError:
        raise SelectorError("parentheses nested too deeply", 0, text) from None
    rest = tokens[parser.i]
    if rest[0] != "eof":
        raise SelectorError("expected '&&', '||' or the end of the selector", rest[2], text)
    return Selector(text, root)


_cache: dict[str, Selector] = {}


def parse_cached(text: str) -> Selector:
    """``parse`` with a bounded memo (cleared when it reaches 1024 entries).

    Selectors are immutable, so callers may share the result.  Errors are not
    cached.
    """
    selector = _cache.get(text)
    if selector is None:
        selector = parse(text)
        if len(_cache) >= _CACHE_MAX:
            _cache.clear()
        _cache[text] = selector
    return selector
