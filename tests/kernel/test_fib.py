"""The FIB's plan, without a kernel: adoption, pruning only after convergence,
other protocols' routes left alone, refusals retried with growing delays."""

from __future__ import annotations

import socket

from bgpd.kernel.fib import RETRY_FIRST, Fib
from bgpd.kernel.rtnl import RTN_BLACKHOLE, RTPROT_STATIC, KernelRoute, NextHop

V4 = socket.AF_INET
HOP = NextHop(socket.inet_aton("198.18.5.2"))
OTHER = NextHop(socket.inet_aton("198.18.5.3"))


def r(fib: Fib, third: int, hop: NextHop = HOP) -> KernelRoute:
    return fib.route(V4, bytes([10, 0, third, 0]), 24, nexthops=(hop,))


def test_adopts_what_is_still_wanted_and_prunes_only_after_convergence() -> None:
    fib = Fib()
    kept, changed, stale = r(fib, 1), r(fib, 2), r(fib, 3)
    seen = [kept, changed, stale]
    fib.observe_table([KernelRoute(V4, x.dst, 24, nexthops=(NextHop(HOP.gateway, 7),))
                       for x in seen])  # fmt: skip
    fib.want(kept)
    fib.want(r(fib, 2, OTHER))
    ops = fib.plan(0.0)
    # The kernel's chosen interface (7) matches a wanted "any interface": adopted.
    assert [(o.delete, o.replace, o.route) for o in ops] == [(False, True, r(fib, 2, OTHER))]
    fib.result(ops[0], 0, "", 0.0)
    assert fib.plan(0.0) == []  # stale stays until convergence
    fib.converge()
    (gone,) = fib.plan(0.0)
    assert gone.delete and gone.route.dest == stale.dest
    fib.result(gone, 0, "", 0.0)
    assert stale.dest not in fib.installed and fib.plan(0.0) == []


def test_another_protocols_route_blocks_the_key_until_it_goes() -> None:
    fib = Fib()
    mine = r(fib, 1)
    static = KernelRoute(V4, mine.dst, 24, nexthops=(OTHER,), protocol=RTPROT_STATIC)
    fib.observe(static, True)
    fib.want(mine)
    assert fib.plan(0.0) == []
    fib.observe(static, False)
    (op,) = fib.plan(0.0)
    assert not op.delete and not op.replace and op.route == mine
    # Another table or metric is not our business at all.
    fib.observe(KernelRoute(V4, mine.dst, 24, nexthops=(OTHER,), table=7, protocol=3), True)
    assert not fib.foreign


def test_refusals_back_off_and_an_interface_coming_up_retries_at_once() -> None:
    fib = Fib()
    mine = r(fib, 1)
    fib.want(mine)
    (op,) = fib.plan(0.0)
    fib.result(op, 101, "Nexthop has invalid gateway", 0.0)
    assert fib.plan(0.5) == [] and fib.next_retry() == RETRY_FIRST
    (op,) = fib.plan(RETRY_FIRST)
    fib.result(op, 101, "", RETRY_FIRST)
    assert fib.next_retry() == RETRY_FIRST + 2 * RETRY_FIRST
    fib.retry_now()
    (op,) = fib.plan(RETRY_FIRST + 0.1)
    fib.result(op, 0, "", RETRY_FIRST + 0.1)
    assert fib.installed[mine.dest] == mine and not fib.refused


def test_a_route_deleted_behind_our_back_is_planned_again() -> None:
    fib = Fib()
    mine = r(fib, 1)
    fib.want(mine)
    (op,) = fib.plan(0.0)
    fib.result(op, 0, "", 0.0)
    fib.observe(mine, False)
    (again,) = fib.plan(0.0)
    assert again.route == mine and not again.replace


def test_unwanted_routes_go_once_converged_and_esrch_counts_as_gone() -> None:
    fib = Fib()
    fib.converge()
    hole = fib.route(V4, bytes([10, 0, 9, 0]), 26, type=RTN_BLACKHOLE)
    fib.want(hole)
    (op,) = fib.plan(0.0)
    fib.result(op, 0, "", 0.0)
    fib.unwant(hole.dest)
    (op,) = fib.plan(0.0)
    assert op.delete
    fib.result(op, 3, "", 0.0)
    assert not fib.installed and not fib.refused
