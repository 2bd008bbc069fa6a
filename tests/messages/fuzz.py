"""Mutation fuzzing of the decoders: ``python -m tests.messages.fuzz --count N``.

Seeds are the golden captures plus encoder output; each round mutates one seed
(bit flips, byte overwrites, inserts, deletes, truncation, splicing two seeds),
usually repairs the header's length field so the body decoders are reached, and
decodes it under a random session context.  The properties:

1. the decoder raises nothing but ``BgpError``;
2. whatever decodes, re-encodes, and decodes again to an equal value.

It prints the count, the number of accepted/refused messages and any failure
with the hex of the input, and exits 1 on failure.
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import time
import traceback
from dataclasses import dataclass, field

from bgpd.messages import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    BgpError,
    SessionContext,
    decode_message,
    encode_message,
    iter_messages,
)

from .golden import NAMES, load

CONTEXTS = [
    SessionContext(four_octet_as=four, add_path_receive=ap, add_path_send=ap, extended_message=True)
    for four in (True, False)
    for ap in (frozenset(), frozenset({IPV4_UNICAST, IPV6_UNICAST}))
]


def seeds() -> list[bytes]:
    out: list[bytes] = []
    for name in NAMES:
        out += [m for _t, m in iter_messages(load(name).stream, 65535)]
    return out


def mutate(data: bytes, rng: random.Random, corpus: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 8))):
        op = rng.randrange(7)
        pos = rng.randrange(len(buf)) if buf else 0
        if op == 0 and buf:
            buf[pos] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[pos] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif op == 2:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 3 and buf:
            del buf[pos : pos + rng.randint(1, 8)]
        elif op == 4:
            del buf[rng.randrange(len(buf) + 1) :]
        elif op == 5:
            other = rng.choice(corpus)
            cut = rng.randrange(19, len(other) + 1) if len(other) > 19 else len(other)
            buf[pos:] = other[cut:]
        elif op == 6 and len(buf) > 21:
            # Aim at the inner length fields of an UPDATE body or an attribute.
            at = rng.randrange(19, len(buf) - 1)
            buf[at : at + 2] = struct.pack(
                ">H", rng.choice((0, 1, 255, 256, len(buf), rng.randrange(65536)))
            )
    if rng.random() < 0.85 and len(buf) >= 19:
        buf[:16] = b"\xff" * 16
        buf[16:18] = struct.pack(">H", len(buf) & 0xFFFF)
    return bytes(buf)


@dataclass
class Result:
    count: int = 0
    accepted: int = 0
    refused: int = 0
    failures: list[str] = field(default_factory=list)


def check(data: bytes, ctx: SessionContext, result: Result) -> None:
    result.count += 1
    try:
        msg = decode_message(data, ctx)
    except BgpError:
        result.refused += 1
        return
    except Exception:
        result.failures.append(
            f"decoder raised a non-BgpError on {data.hex()}\n{traceback.format_exc()}"
        )
        return
    result.accepted += 1
    try:
        again = decode_message(encode_message(msg, ctx), ctx)
    except Exception:
        result.failures.append(f"re-encoding failed for {data.hex()}\n{traceback.format_exc()}")
        return
    if again != msg:
        result.failures.append(f"round trip changed {data.hex()}: {msg!r} != {again!r}")


def run(count: int, seed: int) -> Result:
    rng = random.Random(seed)
    corpus = seeds()
    result = Result()
    while result.count < count and len(result.failures) < 10:
        check(mutate(rng.choice(corpus), rng, corpus), rng.choice(CONTEXTS), result)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args()
    start = time.perf_counter()
    result = run(args.count, args.seed)
    took = time.perf_counter() - start
    print(
        f"fuzz: seed {args.seed}: {result.count} mutated messages in {took:.1f}s "
        f"({result.count / took:,.0f}/s): {result.accepted} decoded, {result.refused} refused "
        f"with BgpError, {len(result.failures)} failures"
    )
    for failure in result.failures:
        print(failure, file=sys.stderr)
    return 1 if result.failures else 0


if __name__ == "__main__":
    sys.exit(main())
