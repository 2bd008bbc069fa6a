"""Calico label selectors: operators, precedence, lexing, errors, canonical form."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bgpd.resources import selector as selector_module
from bgpd.resources.selector import Selector, SelectorError, parse, parse_cached

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

REPO = Path(__file__).resolve().parents[2]

# --- every operator, with the label present (matching or not) and absent -----

PRESENT_ABSENT = [
    # selector, labels, expected
    ('a == "x"', {"a": "x"}, True),
    ('a == "x"', {"a": "y"}, False),
    ('a == "x"', {"b": "x"}, False),
    ('a == ""', {"a": ""}, True),
    ('a == ""', {}, False),
    ('a != "x"', {"a": "y"}, True),
    ('a != "x"', {"a": "x"}, False),
    ('a != "x"', {}, True),
    ('a in {"x", "y"}', {"a": "y"}, True),
    ('a in {"x", "y"}', {"a": "z"}, False),
    ('a in {"x", "y"}', {}, False),
    ('a not in {"x", "y"}', {"a": "z"}, True),
    ('a not in {"x", "y"}', {"a": "x"}, False),
    ('a not in {"x", "y"}', {}, True),
    ('a contains "ell"', {"a": "hello"}, True),
    ('a contains "ell"', {"a": "help"}, False),
    ('a contains ""', {"a": ""}, True),
    ('a contains ""', {}, False),
    ('a starts with "he"', {"a": "hello"}, True),
    ('a starts with "he"', {"a": "ohe"}, False),
    ('a starts with "he"', {}, False),
    ('a ends with "lo"', {"a": "hello"}, True),
    ('a ends with "lo"', {"a": "lol"}, False),
    ('a ends with "lo"', {}, False),
    ("has(a)", {"a": ""}, True),
    ("has(a)", {"b": "a"}, False),
    ("!has(a)", {"b": "a"}, True),
    ("!has(a)", {"a": "b"}, False),
    ("all()", {}, True),
    ("all()", {"a": "b"}, True),
    ("", {}, True),
    ("", {"a": "b"}, True),
    (" \t ", {"a": "b"}, True),
    # An empty set: "in" matches nothing, "not in" everything.
    ("a in {}", {"a": ""}, False),
    ("a in {}", {}, False),
    ("a not in {}", {"a": ""}, True),
    ("a not in {}", {}, True),
]


@pytest.mark.parametrize(("text", "labels", "expected"), PRESENT_ABSENT)
def test_operator_with_present_and_absent_labels(
    text: str, labels: dict[str, str], expected: bool
) -> None:
    sel = parse(text)
    assert sel.matches(labels) is expected
    # The canonical form means the same thing.
    assert parse(str(sel)).matches(labels) is expected


def test_global_is_true_only_in_a_global_context() -> None:
    sel = parse("global()")
    assert not sel.matches({})
    assert sel.matches({}, global_=True)
    assert parse("!global()").matches({"a": "b"})
    both = parse('global() && kind == "hep"')
    assert both.matches({"kind": "hep"}, global_=True)
    assert not both.matches({"kind": "hep"})
    assert not both.matches({"kind": "wep"}, global_=True)


def test_any_mapping_will_do() -> None:
    sel = parse('a == "x" && has(b)')
    assert sel.matches(MappingProxyType({"a": "x", "b": ""}))


# --- precedence, parentheses, negation ---------------------------------------


def test_and_binds_tighter_than_or() -> None:
    sel = parse('a == "1" || b == "2" && c == "3"')
    assert str(sel) == '(a == "1" || (b == "2" && c == "3"))'
    assert sel.matches({"a": "1"})
    assert sel.matches({"b": "2", "c": "3"})
    assert not sel.matches({"b": "2"})
    assert not sel.matches({"c": "3"})
    other = parse('a == "1" && b == "2" || c == "3"')
    assert str(other) == '((a == "1" && b == "2") || c == "3")'
    assert other.matches({"c": "3"})
    assert not other.matches({"a": "1"})


def test_parentheses_override_precedence() -> None:
    sel = parse('(a == "1" || b == "2") && c == "3"')
    assert not sel.matches({"a": "1"})
    assert sel.matches({"a": "1", "c": "3"})
    assert sel.matches({"b": "2", "c": "3"})


def test_not_binds_to_one_operation() -> None:
    sel = parse('!a == "1" && b == "2"')
    assert str(sel) == '(!a == "1" && b == "2")'
    assert sel.matches({"b": "2"})
    assert not sel.matches({"a": "1", "b": "2"})
    assert parse('! a == "1" || ! b == "2"').matches({"a": "1"})
    assert not parse('! a == "1" || ! b == "2"').matches({"a": "1", "b": "2"})


@pytest.mark.parametrize(
    ("text", "present"),
    [
        ("has(a)", True),
        ("!has(a)", False),
        ("!!has(a)", True),
        ("!!!has(a)", False),
        ("! !!has(a)", False),
        ("!! ! has(a)", False),
        ("!(!has(a))", True),
        ("!(!(!has(a)))", False),
        ("((((has(a)))))", True),
        ("!((!(has(a))))", True),
    ],
)
def test_repeated_negation(text: str, present: bool) -> None:
    assert parse(text).matches({"a": "x"}) is present
    assert parse(text).matches({}) is not present


def test_nested_parentheses_and_negation() -> None:
    sel = parse('!(!(has(a) && b in {"1", "2"}) || (c != "x" && !(d == "y" || has(e))))')
    # not (not (A and B) or (C and not (D or E))) == (A and B) and not (C and not (D or E))
    assert sel.matches({"a": "", "b": "1", "c": "x"})
    assert sel.matches({"a": "", "b": "2", "c": "z", "e": ""})
    assert not sel.matches({"a": "", "b": "2", "c": "z"})
    assert not sel.matches({"b": "1", "c": "x"})
    assert str(sel) == '!(!(has(a) && b in {"1", "2"}) || (c != "x" && !(d == "y" || has(e))))'


def test_long_chains_are_flat() -> None:
    sel = parse(" && ".join(f"has(k{i})" for i in range(50)))
    labels = {f"k{i}": "" for i in range(50)}
    assert sel.matches(labels)
    del labels["k49"]
    assert not sel.matches(labels)


# --- lexing: quotes, whitespace, keys -----------------------------------------


@pytest.mark.parametrize(
    ("text", "labels"),
    [
        ("a == 'x'", {"a": "x"}),
        ('a == "x"', {"a": "x"}),
        ("a == '\"'", {"a": '"'}),
        ('a == "\'"', {"a": "'"}),
        ("a == 'say \"hi\"'", {"a": 'say "hi"'}),
        ('a in {"\'", \'"\', "c"}', {"a": '"'}),
        ("a in {'x'}", {"a": "x"}),
        ('a == "x y"', {"a": "x y"}),
        ('a == "&& || ! ( ) { } ,"', {"a": "&& || ! ( ) { } ,"}),
        ('a == "üñî"', {"a": "üñî"}),
    ],
)
def test_both_quote_styles_and_literal_contents(text: str, labels: dict[str, str]) -> None:
    assert parse(text).matches(labels)
    assert not parse(text).matches({"a": "other"})


@pytest.mark.parametrize(
    "text",
    [
        'a=="x"&&b!="y"',
        '  a  ==  "x"  &&  b  !=  "y"  ',
        '\ta\t==\t"x"\t&&\tb\t!=\t"y"\t',
        '(a == "x")&&(b != "y")',
        '( a == "x" ) && !( b == "y" )',
        'has( a )&&a in{"x"}&&b not   in{"y",}',
        'has(a) && a starts  with "x" && a ends\twith "x" && a contains"x" && b!="y"',
        "has(a) && a startswith 'x' && a endswith 'x' && b notin {'y'}",
    ],
)
def test_whitespace_variants(text: str) -> None:
    sel = parse(text)
    assert sel.matches({"a": "x"})
    assert sel.matches({"a": "x", "b": "z"})
    assert not sel.matches({"a": "x", "b": "y"})
    assert not sel.matches({"b": "z"})


@pytest.mark.parametrize(
    "key",
    [
        "projectcalico.org/zone",
        "kubernetes.io/hostname",
        "topology.kubernetes.io/region",
        "my-app_1.v2",
        "9lives",
        "a/b/c",
        "-odd",
        # Keywords are only keywords in their place; elsewhere they are keys.
        "all",
        "has",
        "global",
        "in",
        "not",
        "contains",
    ],
)
def test_label_keys(key: str) -> None:
    for text in (f'{key} == "v"', f"has({key})", f'{key} in {{"v"}}'):
        sel = parse(text)
        assert sel.matches({key: "v"}), text
        assert not sel.matches({"other": "v"}), text
        assert sel.labels_used() == {key}


def test_keyword_named_keys_with_keyword_operators() -> None:
    assert parse('in in {"x"}').matches({"in": "x"})
    assert parse('not not in {"x"}').matches({"not": "y"})
    assert parse('contains contains "x"').matches({"contains": "axb"})


# --- errors --------------------------------------------------------------------

ERRORS = [
    ('k = "v"', "expected '==' at 2: k = \"v\""),
    ('a == "x', 'unterminated string, expected closing " at 5: a == "x'),
    ("a == 'x\"", "unterminated string, expected closing ' at 5: a == 'x\""),
    (
        '(a == "x"',
        "unexpected end of selector, expected ')' at 9: (a == \"x\"",
    ),
    ('((a == "x") || has(b)', "unexpected end of selector, expected ')' at 21: "),
    ('a == "x")', "expected '&&', '||' or the end of the selector at 8: "),
    ('a == "x" b == "y"', "expected '&&', '||' or the end of the selector at 9: "),
    ("has(a) all()", "expected '&&', '||' or the end of the selector at 7: "),
    ("has()", "expected a label in has() at 4: has()"),
    ("has( )", "expected a label in has() at 5: "),
    ("has(a", "expected ')' to close has( at 5: "),
    ("has(a b)", "expected ')' to close has( at 6: "),
    ("all(x)", "expected ')' to close all( at 4: "),
    ("global(", "expected ')' to close global( at 7: "),
    ("has (a)", "expected an operator after label 'has' at 4: "),
    ("a", "unexpected end of selector, expected an operator after label 'a' at 1: a"),
    ("a b", "expected an operator after label 'a' at 2: a b"),
    ("a && b", "expected an operator after label 'a' at 2: "),
    ('a "x"', "expected an operator after label 'a' at 2: "),
    ("b == b", "expected a quoted string after '==' at 5: b == b"),
    ("a != ", "unexpected end of selector, expected a quoted string after '!=' at 5: "),
    ("a contains b", "expected a quoted string after 'contains' at 11: "),
    ('a starts "x"', "expected 'with' after 'starts' at 9: "),
    ('a ends wit "x"', "expected 'with' after 'ends' at 7: "),
    ('a not "x"', "expected 'in' after 'not' at 6: "),
    ('a in "x"', "expected '{' after 'in' at 5: "),
    ('a not in ("x")', "expected '{' after 'not in' at 9: "),
    ('a in {"x" "y"}', "expected a quoted string or '}' at 10: "),
    ('a in {"x",, "y"}', "expected a quoted string or '}' at 10: "),
    ("a in {,}", "expected a quoted string or '}' at 6: "),
    ('a in {"x"', "unexpected end of selector, expected a quoted string or '}' at 9: "),
    ("'b1' == b", "expected a label, has(), all(), global(), '!' or '(' at 0: "),
    ("()", "expected a label, has(), all(), global(), '!' or '(' at 1: ()"),
    (")", "expected a label, has(), all(), global(), '!' or '(' at 0: )"),
    ("!", "unexpected end of selector, expected a label, has(), all(), global(), '!' or '('"),
    ("has(a) &&", "unexpected end of selector, expected a label"),
    ("has(a) || || has(b)", "expected a label, has(), all(), global(), '!' or '(' at 10: "),
    ('a == "x" &', "expected '&&' at 9: "),
    ('a == "x" | b == "y"', "expected '||' at 9: "),
    ("%", "unexpected character '%' at 0: %"),
    ('a == "x" && %', "unexpected character '%' at 12: "),
    ('a\n== "x"', "unexpected character '\\n' at 1: "),
    ('a == "x"\n', "unexpected character '\\n' at 8: "),
    ("a ≠ 'x'", "unexpected character '≠' at 2: "),
    ("(" * 3000 + "has(a)" + ")" * 3000, "parentheses nested too deeply at 0: "),
]


@pytest.mark.parametrize(("text", "message"), ERRORS)
def test_errors_name_the_problem_and_position(text: str, message: str) -> None:
    with pytest.raises(SelectorError) as info:
        parse(text)
    assert str(info.value).startswith(message)
    assert info.value.text == text
    assert isinstance(info.value, ValueError)
    with pytest.raises(SelectorError):
        parse_cached(text)


def test_error_attributes() -> None:
    with pytest.raises(SelectorError) as info:
        parse('role = "db"')
    assert (info.value.problem, info.value.pos) == ("expected '=='", 5)
    assert str(info.value) == "expected '==' at 5: role = \"db\""


# --- canonical form, identity, key index, cache -------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("", "all()"),
        (" all() ", "all()"),
        (" (all() )", "all()"),
        (" global( ) ", "global()"),
        ("! (has( b)||! has(a ))", "!(has(b) || !has(a))"),
        ('! (a == "b"&&! c != "d")', '!(a == "b" && !c != "d")'),
        ("a == 'x'", 'a == "x"'),
        ("a == '\"'", "a == '\"'"),
        ('a == "\'"', 'a == "\'"'),
        ("a contains '\"'", "a contains '\"'"),
        ("a startswith '\"'", "a starts with '\"'"),
        ('a endswith "\'"', 'a ends with "\'"'),
        ("a!='\"'", "a != '\"'"),
        ('a in {"d", "a", "b"}', 'a in {"a", "b", "d"}'),
        ('a in {"z", "z", "x", "y", "x", "a"}', 'a in {"a", "x", "y", "z"}'),
        ("a in {'\"', \"'\"}", "a in {'\"', \"'\"}"),
        ('a not in {"b", "a",}', 'a not in {"a", "b"}'),
        ("a in {}", "a in {}"),
        ("!(a == 'b')", '!a == "b"'),
        ('k == "v" && has(x) && y in {"1"}', '(k == "v" && has(x) && y in {"1"})'),
        ('(a == "1" && b == "2") && c == "3"', '((a == "1" && b == "2") && c == "3")'),
        (
            "!(!(k == 'v' && has(t) || all()) && (a in {'b', 'c'}))",
            '!(!((k == "v" && has(t)) || all()) && a in {"b", "c"})',
        ),
    ],
)
def test_canonical_form(text: str, canonical: str) -> None:
    sel = parse(text)
    assert str(sel) == canonical
    assert str(parse(canonical)) == canonical
    assert sel.text == text


def test_equality_and_hash_follow_the_canonical_form() -> None:
    one = parse("a == 'x' && has(b)")
    two = parse('a=="x"&&has( b )')
    assert one == two
    assert hash(one) == hash(two)
    assert len({one, two, parse("has(b) && a == 'x'")}) == 2
    assert one != parse('a == "y" && has(b)')
    assert one != str(one)
    assert repr(one) == "Selector('(a == \"x\" && has(b))')"


def test_labels_used() -> None:
    sel = parse(
        '!(a == "1" || b != "2") && c in {"x"} && d not in {} && has(e)'
        ' && f contains "" && g starts with "" && h ends with "" && all() && !global()'
    )
    assert sel.labels_used() == frozenset("abcdefgh")
    assert sel.labels_used() is sel.labels_used()
    assert parse("").labels_used() == frozenset()
    assert parse("has(a) || has(a)").labels_used() == {"a"}


def test_parse_cached_shares_and_is_bounded() -> None:
    text = 'cached == "yes"'
    first = parse_cached(text)
    assert parse_cached(text) is first
    assert isinstance(first, Selector)
    for i in range(2 * selector_module._CACHE_MAX):
        parse_cached(f'n == "{i}"')
    assert len(selector_module._cache) <= selector_module._CACHE_MAX
    assert parse_cached(text) == first


def test_import_is_cheap() -> None:
    """The CNI plugin imports this once per pod: builtins only at import time."""
    heavy = ("re", "typing", "functools", "dataclasses", "enum", "collections")
    code = (
        "import sys; import bgpd.resources.selector; "
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""


# --- property: random selectors against an independent oracle -----------------

KEYS = ("a", "b", "x.io/c")
VALUES = ("", "1", "2", "12", "it's", 'say "hi"')
LABEL_VALUES = (*VALUES, "21", "x")


@dataclass(frozen=True)
class Gen:
    """A generated selector: its text, what it should mean, and its keys."""

    text: str
    oracle: Callable[[Mapping[str, str], bool], bool]
    keys: frozenset[str]
    bare: bool  # may stand as an operand of && without parentheses


blanks = st.sampled_from(["", " ", "  ", "\t"])


@st.composite
def quoted(draw: st.DrawFn, value: str) -> str:
    quotes = [q for q in "\"'" if q not in value]
    q = draw(st.sampled_from(quotes))
    return q + value + q


def _compare(op: str, key: str, value: str) -> Callable[[Mapping[str, str], bool], bool]:
    if op == "==":
        return lambda m, g: key in m and m[key] == value
    if op == "!=":
        return lambda m, g: key not in m or m[key] != value
    if op == "contains":
        return lambda m, g: key in m and value in m[key]
    if op == "starts with":
        return lambda m, g: key in m and m[key][: len(value)] == value
    return lambda m, g: key in m and (value == "" or m[key][-len(value) :] == value)


@st.composite
def atoms(draw: st.DrawFn) -> Gen:
    kind = draw(st.sampled_from(["all", "global", "has", "cmp", "in", "not in"]))
    w = draw(blanks)
    if kind == "all":
        return Gen("all()", lambda m, g: True, frozenset(), True)
    if kind == "global":
        return Gen(f"global({w})", lambda m, g: g, frozenset(), True)
    key = draw(st.sampled_from(KEYS))
    if kind == "has":
        return Gen(f"has({w}{key}{w})", lambda m, g: key in m, frozenset([key]), True)
    if kind == "cmp":
        op = draw(st.sampled_from(["==", "!=", "contains", "starts with", "ends with"]))
        value = draw(st.sampled_from(VALUES))
        text = f"{key}{w or ' '}{op}{w}{draw(quoted(value))}"
        return Gen(text, _compare(op, key, value), frozenset([key]), True)
    members = draw(st.lists(st.sampled_from(VALUES), max_size=3))
    body = ",".join(draw(quoted(v)) + draw(blanks) for v in members)
    if members and draw(st.booleans()):
        body += ","
    text = f"{key} {kind}{w}{{{body}}}"
    if kind == "in":
        return Gen(text, lambda m, g: key in m and m[key] in members, frozenset([key]), True)
    return Gen(text, lambda m, g: key not in m or m[key] not in members, frozenset([key]), True)


@st.composite
def operands(draw: st.DrawFn, inner: st.SearchStrategy[Gen]) -> Gen:
    child = draw(inner)
    if not child.bare or draw(st.integers(0, 3)) == 0:
        child = Gen(f"({draw(blanks)}{child.text}{draw(blanks)})", child.oracle, child.keys, True)
    nots = draw(st.integers(0, 3))
    if nots == 0:
        return child
    prefix = "".join("!" + draw(blanks) for _ in range(nots))
    oracle = child.oracle
    if nots % 2:
        return Gen(prefix + child.text, lambda m, g: not oracle(m, g), child.keys, True)
    return Gen(prefix + child.text, oracle, child.keys, True)


@st.composite
def chain(draw: st.DrawFn, part: st.SearchStrategy[Gen], op: str) -> Gen:
    parts = draw(st.lists(part, min_size=1, max_size=3))
    if len(parts) == 1:
        return parts[0]
    text = parts[0].text
    for p in parts[1:]:
        text += draw(blanks) + op + draw(blanks) + p.text
    oracles = [p.oracle for p in parts]
    keys = frozenset().union(*(p.keys for p in parts))
    if op == "&&":
        return Gen(text, lambda m, g: all(o(m, g) for o in oracles), keys, False)
    return Gen(text, lambda m, g: any(o(m, g) for o in oracles), keys, False)


def _extend(inner: st.SearchStrategy[Gen]) -> st.SearchStrategy[Gen]:
    # An || of &&s of (negated) operands, without parentheses between the
    # levels: the oracle's any(all(...)) checks the precedence.
    return chain(chain(operands(inner), "&&"), "||")


selectors = st.recursive(atoms(), _extend, max_leaves=12)
label_sets = st.lists(
    st.dictionaries(st.sampled_from(KEYS), st.sampled_from(LABEL_VALUES)), min_size=1, max_size=8
)


@given(selectors, label_sets, blanks, blanks)
def test_random_selectors_match_the_oracle_and_round_trip(
    gen: Gen, labels: list[dict[str, str]], lead: str, trail: str
) -> None:
    sel = parse(lead + gen.text + trail)
    canonical = str(sel)
    again = parse(canonical)
    assert str(again) == canonical
    assert again == sel
    assert sel.labels_used() == gen.keys
    assert again.labels_used() == gen.keys
    for m in labels:
        for g in (False, True):
            expected = gen.oracle(m, g)
            assert sel.matches(m, global_=g) is expected, (gen.text, m, g)
            assert again.matches(m, global_=g) is expected, (canonical, m, g)


@given(st.text(alphabet="ab=!&|(){},\"' \tinotcsw", max_size=30))
def test_arbitrary_text_parses_or_raises_selector_error(text: str) -> None:
    try:
        sel = parse(text)
    except SelectorError as err:
        assert 0 <= err.pos <= len(text)
        return
    assert str(parse(str(sel))) == str(sel)
