"""A short pass of the mutation fuzzer (``make fuzz`` runs a million)."""

from __future__ import annotations

import contextlib
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd.messages import BgpError, SessionContext, decode_message

from .fuzz import run


def test_mutation_fuzz_short_pass() -> None:
    result = run(20_000, seed=random.randrange(1 << 30))
    assert result.failures == []
    assert result.accepted > 1000 and result.refused > 1000


@settings(max_examples=500)
@given(st.binary(max_size=200), st.booleans())
def test_random_bytes_raise_only_bgp_errors(data: bytes, four: bool) -> None:
    frame = b"\xff" * 16 + (19 + len(data)).to_bytes(2, "big")
    for mtype in range(1, 6):
        with contextlib.suppress(BgpError):
            decode_message(frame + bytes([mtype]) + data, SessionContext(four_octet_as=four))
