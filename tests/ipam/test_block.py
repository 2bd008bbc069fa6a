"""Allocation blocks: the order addresses are handed out and come back in, shared
and compacted attribute entries, Calico's JSON shape, and (hypothesis) that any
sequence of assignments and releases keeps the block's three lists consistent."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from bgpd.ipam.block import Block
from bgpd.ipam.cidr import parse_ip

POD = {"node": "n1", "namespace": "default", "pod": "web-0"}
OTHER = {"node": "n1", "namespace": "default", "pod": "web-1"}


def test_a_new_block_is_all_free_in_order() -> None:
    block = Block.new("10.65.0.0/26", "host:n1")
    assert (block.size, block.free, block.in_use, block.empty()) == (64, 64, 0, True)
    assert block.unallocated == list(range(64))
    assert block.allocations == [None] * 64
    assert block.address(0) == "10.65.0.0" and block.address(63) == "10.65.0.63"
    v6 = Block.new("fd00:1::40/122", None)
    assert v6.size == 64 and v6.address(5) == "fd00:1::45" and v6.family == 6


def test_assign_takes_from_the_front() -> None:
    block = Block.new("10.65.0.0/26", "host:n1")
    assert block.assign(3, "h1", POD) == [0, 1, 2]
    assert block.assign(2, "h2", OTHER) == [3, 4]
    assert block.unallocated == list(range(5, 64))
    assert [block.handle_of(o) for o in range(6)] == ["h1", "h1", "h1", "h2", "h2", None]
    assert block.attributes_of(3) == {"handle_id": "h2", "secondary": OTHER}
    assert block.attributes_of(5) is None
    assert (block.free, block.in_use) == (59, 5)


def test_assign_gives_what_there_is() -> None:
    block = Block.new("10.65.0.0/30", None)
    assert block.assign(0, "h", POD) == []
    assert block.attributes == [], "no entry for an assignment of nothing"
    assert block.assign(10, "h", POD) == [0, 1, 2, 3]
    sequence = block.sequence
    assert block.assign(1, "h", POD) == []
    assert block.sequence == sequence, "a full block is not changed"


def test_release_appends_to_the_back() -> None:
    block = Block.new("10.65.0.0/29", None)
    block.assign(4, "h", POD)
    assert block.release([1, 1, 6]) == [1], "a free ordinal is not freed again"
    assert block.unallocated == [4, 5, 6, 7, 1]
    assert block.release([0, 3]) == [0, 3]
    assert block.unallocated == [4, 5, 6, 7, 1, 0, 3]
    # The address freed first is the first of the freed ones to be reused, and
    # only after every never-used one.
    assert block.assign(6, "h2", OTHER) == [4, 5, 6, 7, 1, 0]


def test_sequence_number_counts_changes() -> None:
    block = Block.new("10.65.0.0/29", None)
    block.assign(2, "h", POD)
    block.assign_ordinal(5, "h", POD)
    block.release([0])
    assert block.sequence == 3
    assert block.release([0]) == [] and block.sequence == 3


def test_assign_ordinal_takes_that_address_or_nothing() -> None:
    block = Block.new("10.65.0.0/29", None)
    assert block.assign_ordinal(5, "fixed", POD) is True
    assert 5 not in block.unallocated and block.handle_of(5) == "fixed"
    assert block.assign_ordinal(5, "other", OTHER) is False
    assert block.handle_of(5) == "fixed"
    assert block.assign(8, "h", POD) == [0, 1, 2, 3, 4, 6, 7]


def test_identical_attributes_are_shared_and_compacted_away() -> None:
    block = Block.new("10.65.0.0/28", None)
    block.assign(2, "h1", POD)
    block.assign(2, "h1", POD)  # the same handle and pod: the same entry
    block.assign(1, "h1", {**POD, "pod": "web-9"})  # another pod: another entry
    block.assign(2, "h2", OTHER)
    assert block.attributes == [{"handle_id": "h1", "secondary": POD},
                                {"handle_id": "h1", "secondary": {**POD, "pod": "web-9"}},
                                {"handle_id": "h2", "secondary": OTHER}]
    assert block.allocations[:7] == [0, 0, 0, 0, 1, 2, 2]
    # Release everything the first entry covers: it goes, the others move down.
    assert block.release(block.ordinals_of("h1")[:4]) == [0, 1, 2, 3]
    assert block.attributes == [{"handle_id": "h1", "secondary": {**POD, "pod": "web-9"}},
                                {"handle_id": "h2", "secondary": OTHER}]
    assert block.allocations[:7] == [None, None, None, None, 0, 1, 1]
    assert [block.handle_of(o) for o in (4, 5, 6)] == ["h1", "h2", "h2"]
    block.release([4, 5, 6])
    assert block.attributes == [] and block.empty()


def test_ordinals_of_a_handle_across_its_entries() -> None:
    block = Block.new("10.65.0.0/28", None)
    block.assign(2, "h1", POD)
    block.assign(1, "h2", OTHER)
    block.assign(1, "h1", {**POD, "pod": "x"})
    assert block.ordinals_of("h1") == [0, 1, 3]
    assert block.ordinals_of("h2") == [2]
    assert block.ordinals_of("nobody") == []
    assert [(o, a["handle_id"]) for o, a in block.allocated()] == [
        (0, "h1"), (1, "h1"), (2, "h2"), (3, "h1")]


def test_ordinal_of_an_address() -> None:
    block = Block.new("10.65.0.64/26", None)
    assert block.ordinal(parse_ip("10.65.0.64")[1]) == 0
    assert block.ordinal(parse_ip("10.65.0.127")[1]) == 63
    assert block.ordinal(parse_ip("10.65.0.128")[1]) is None
    assert block.ordinal(parse_ip("10.65.0.63")[1]) is None


def test_json_has_calicos_field_names_and_round_trips() -> None:
    block = Block.new("10.65.0.0/30", "host:n1")
    block.assign(2, "k8s-pod-network.abc", POD)
    block.release([0])
    stored = block.to_json()
    assert stored == {
        "cidr": "10.65.0.0/30",
        "affinity": "host:n1",
        "strictAffinity": False,
        "allocations": [None, 0, None, None],
        "unallocated": [2, 3, 0],
        "attributes": [{"handle_id": "k8s-pod-network.abc", "secondary": POD}],
        "sequenceNumber": 2,
        "deleted": False,
    }
    again = Block(json.loads(json.dumps(stored)))
    assert again.to_json() == stored
    # The copy is independent of the value it was read from.
    again.assign(1, "h", OTHER)
    assert stored["unallocated"] == [2, 3, 0] and stored["allocations"][2] is None


def test_reads_a_block_calico_wrote() -> None:
    calico = {
        "cidr": "192.168.10.0/30", "affinity": None, "strictAffinity": False,
        "allocations": [0, None, 0, None], "unallocated": [3, 1],
        "attributes": [{"handle_id": "k8s-pod-network.0123",
                        "secondary": {"namespace": "kube-system", "node": "n2",
                                      "pod": "coredns-1", "timestamp": "2024-01-01 ..."}}],
        "sequenceNumber": 7, "sequenceNumberForAllocation": {"0": 5, "2": 6}, "deleted": False,
    }
    block = Block(calico)
    assert (block.affinity, block.sequence, block.free) == (None, 7, 2)
    assert block.ordinals_of("k8s-pod-network.0123") == [0, 2]
    assert block.assign(1, "h", POD) == [3]


# -- any sequence of operations ---------------------------------------------------------

HANDLES = st.sampled_from(["h1", "h2", "h3"])
SECONDARY = st.sampled_from([POD, OTHER])
ORDINALS = st.integers(0, 15)
OPERATION = st.one_of(
    st.tuples(st.just("assign"), st.integers(0, 6), HANDLES, SECONDARY),
    st.tuples(st.just("assign_ordinal"), ORDINALS, HANDLES, SECONDARY),
    st.tuples(st.just("release"), st.lists(ORDINALS, max_size=6)),
    st.tuples(st.just("release_handle"), HANDLES),
)


def check_consistent(block: Block, model: dict[int, tuple[str, dict[str, str]]],
                     free_order: list[int]) -> None:
    assert len(block.allocations) == 16
    assert block.unallocated == free_order
    assert len(set(block.unallocated)) == len(block.unallocated)
    # Every ordinal is free (listed once) or allocated, never both.
    assert set(block.unallocated) == {o for o, i in enumerate(block.allocations) if i is None}
    assert set(block.unallocated) | set(model) == set(range(16))
    # Every attribute entry is referenced, none twice over, and each points right.
    referenced = {i for i in block.allocations if i is not None}
    assert referenced == set(range(len(block.attributes)))
    pairs = [(a["handle_id"], json.dumps(a["secondary"], sort_keys=True))
             for a in block.attributes]
    assert len(set(pairs)) == len(pairs)
    for ordinal, (handle, secondary) in model.items():
        assert block.attributes_of(ordinal) == {"handle_id": handle, "secondary": secondary}
    assert Block(json.loads(json.dumps(block.to_json()))).to_json() == block.to_json()


@given(st.lists(OPERATION, max_size=40))
def test_any_sequence_keeps_the_block_consistent(operations: list[tuple[Any, ...]]) -> None:
    block = Block.new("10.65.0.0/28", None)
    model: dict[int, tuple[str, dict[str, str]]] = {}
    free_order = list(range(16))
    for operation in operations:
        kind = operation[0]
        if kind == "assign":
            _, count, handle, secondary = operation
            taken = block.assign(count, handle, secondary)
            assert taken == free_order[:count]
            del free_order[:count]
            model.update((o, (handle, secondary)) for o in taken)
        elif kind == "assign_ordinal":
            _, ordinal, handle, secondary = operation
            assert block.assign_ordinal(ordinal, handle, secondary) is (ordinal not in model)
            if ordinal not in model:
                free_order.remove(ordinal)
                model[ordinal] = (handle, secondary)
        else:
            if kind == "release":
                ordinals = operation[1]
            else:
                ordinals = block.ordinals_of(operation[1])
                assert ordinals == sorted(o for o, (h, _) in model.items() if h == operation[1])
            expected = []
            for ordinal in ordinals:
                if ordinal in model:
                    del model[ordinal]
                    expected.append(ordinal)
            assert block.release(ordinals) == expected
            free_order += expected
        check_consistent(block, model, free_order)
