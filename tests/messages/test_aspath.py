"""AS_PATH semantics and the RFC 6793 transition between 2- and 4-octet speakers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bgpd.messages import AS_TRANS, AsPath, AsPathSegment, reconstruct, to_two_octet
from bgpd.messages.aspath import AsPathError

SEQ, SET, CSEQ, CSET = 2, 1, 3, 4


def test_length_counts_a_set_once_and_confederations_not_at_all() -> None:
    path = AsPath(
        (
            AsPathSegment(CSEQ, (64512, 64513)),
            AsPathSegment(SEQ, (65001, 65002, 65003)),
            AsPathSegment(SET, (1, 2, 3)),
        )
    )
    assert path.length() == 4


def test_first_as_skips_confederation_segments() -> None:
    path = AsPath((AsPathSegment(CSEQ, (64512,)), AsPathSegment(SEQ, (65001, 65002))))
    assert path.first_as() == 65001
    assert AsPath((AsPathSegment(SET, (1, 2)),)).first_as() is None
    assert AsPath().first_as() is None


def test_origin_and_count() -> None:
    path = AsPath.sequence(65001, 65002, 65001)
    assert path.origin_as() == 65001
    assert path.count(65001) == 2


def test_prepend_joins_the_leading_sequence_and_splits_at_255() -> None:
    assert AsPath.sequence(2).prepend(1, 2) == AsPath.sequence(1, 1, 2)
    assert AsPath((AsPathSegment(SET, (5,)),)).prepend(1).segments[0] == AsPathSegment(SEQ, (1,))
    long = AsPath.sequence(*range(1, 256))
    grown = long.prepend(7)
    assert [len(s.asns) for s in grown.segments] == [1, 255]
    assert grown.length() == 256


def test_sequence_longer_than_255_is_split() -> None:
    assert [len(s.asns) for s in AsPath.sequence(*range(600)).segments] == [255, 255, 90]


def test_two_octet_encoding_uses_as_trans() -> None:
    raw = AsPath.sequence(65001, 4200000001).encode(four_octet=False)
    assert raw == bytes([2, 2, 0xFD, 0xE9, 0x5B, 0xA0])
    assert AsPath.decode(raw, False).segments[0].asns == (65001, AS_TRANS)


def test_decode_rejects_malformed() -> None:
    for bad in (b"\x02", b"\x02\x00", b"\x07\x01\x00\x00\x00\x01", b"\x02\x02\x00\x00\x00\x01"):
        with pytest.raises(AsPathError):
            AsPath.decode(bad, True)


def test_constructor_validates() -> None:
    with pytest.raises(ValueError):
        AsPath((AsPathSegment(9, (1,)),))
    with pytest.raises(ValueError):
        AsPath((AsPathSegment(SEQ, ()),))
    with pytest.raises(ValueError):
        AsPath((AsPathSegment(SEQ, (1 << 32,)),))


def test_reconstruct_rfc6793_example() -> None:
    # An OLD speaker prepended its own AS (65002) in front of what a NEW speaker sent.
    as_path = AsPath.sequence(65002, AS_TRANS, 65010, AS_TRANS)
    as4_path = AsPath.sequence(4200000001, 65010, 4200000002)
    assert reconstruct(as_path, as4_path) == AsPath.sequence(65002, 4200000001, 65010, 4200000002)


def test_reconstruct_ignores_a_longer_as4_path() -> None:
    as_path = AsPath.sequence(65002)
    assert reconstruct(as_path, AsPath.sequence(1, 2, 3)) == as_path


def test_reconstruct_without_as4_path_is_identity() -> None:
    as_path = AsPath.sequence(65002, 65003)
    assert reconstruct(as_path, None) is as_path


def test_reconstruct_keeps_a_leading_set() -> None:
    as_path = AsPath((AsPathSegment(SET, (1, 2)), AsPathSegment(SEQ, (AS_TRANS,))))
    got = reconstruct(as_path, AsPath.sequence(4200000001))
    assert got == AsPath((AsPathSegment(SET, (1, 2)), AsPathSegment(SEQ, (4200000001,))))


@given(st.lists(st.integers(1, 0xFFFFFFFF), min_size=1, max_size=30))
def test_to_two_octet_then_reconstruct_gives_the_path_back(asns: list[int]) -> None:
    path = AsPath.sequence(*asns)
    as_path, as4 = to_two_octet(path)
    wire = AsPath.decode(as_path.encode(False), False)  # what an OLD speaker sees
    assert reconstruct(wire, as4) == path
    assert (as4 is None) == all(a <= 0xFFFF for a in asns)


def test_text_form() -> None:
    path = AsPath(
        (
            AsPathSegment(CSEQ, (1,)),
            AsPathSegment(SEQ, (2, 3)),
            AsPathSegment(SET, (4, 5)),
            AsPathSegment(CSET, (6,)),
        )
    )
    assert str(path) == "(1) 2 3 {4 5} [6]"


def test_prepend_extends_the_leading_sequence_or_adds_one() -> None:
    path = AsPath.sequence(65002, 65003)
    assert path.prepend(65001, 2) == AsPath.sequence(65001, 65001, 65002, 65003)
    assert path.prepend(65001).count(65001) == 1
    full = AsPath.sequence(*range(1, 256))
    longer = full.prepend(7)
    assert [len(s.asns) for s in longer.segments] == [1, 255] and longer.length() == 256
    with_set = AsPath((AsPathSegment(SET, (5, 6)),))
    assert with_set.prepend(4).segments[0].asns == (4,)
    with pytest.raises(ValueError):
        path.prepend(1 << 32)
