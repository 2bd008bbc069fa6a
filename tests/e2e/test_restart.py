"""A node's agent killed with SIGKILL in the middle of ping floods loses no
packet, and re-converges when it is started again (CALICO.md §6.1):

- a flood into the node's pods (node1 -> node2) keeps flowing: the peers keep
  its routes through graceful restart;
- a flood out of the node's pods (node2 -> node3) keeps flowing: its own kernel
  routes stay while it is dead and while it restarts (nothing is flushed
  before it has converged again);
- both floods are counted echo by echo (``bgpd.lab.pinger``) until after the
  restarted agent has every session Established again: no echo unanswered;
- re-converged, not just stale: a block claimed after the restart (from a
  second pool) on node3 reaches node2's kernel, and node2's block is still
  routed by its peers."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from bgpd.lab import Lab

from .conftest import DATASTORES, diagnose, running_lab

FLOWING = 200  # replies each flood must have had before and after every step


@pytest.mark.parametrize("datastore", DATASTORES)
def test_sigkill_during_ping_floods_loses_nothing_and_reconverges(
    tmp_path: Path, datastore: str
) -> None:
    with running_lab(tmp_path, nodes=3, mode="mesh", encap="direct", datastore=datastore) as lab:
        run(lab)


def run(lab: Lab) -> None:
    into = lab.flood(lab.pods_on("node1")[0], lab.pods_on("node2")[0].ip)
    out_of = lab.flood(lab.pods_on("node2")[1], lab.pods_on("node3")[0].ip)
    floods = (into, out_of)

    def flowing() -> None:
        for flood in floods:
            lab.wait_flowing(flood, FLOWING)

    flowing()
    (block2,) = lab.blocks()["node2"]
    lab.kill("node2", signal.SIGKILL)
    flowing()
    for peer in ("node1", "node3"):  # kept as stale by the peers
        assert lab.route(peer, block2).startswith(f"{block2} via "), diagnose(lab)
    lab.restart("node2")
    lab.wait_established(timeout=60)
    flowing()
    # Re-converged: a new block on node3, claimed from a second pool, reaches node2.
    block = lab.claim_block("node3", "second-pool", "10.66.0.0/16")
    lab.wait_converged()
    near = lab.net("node3").address
    assert lab.route("node2", block) == f"{block} via {near} dev eth0 proto bird", diagnose(lab)
    for peer in ("node1", "node3"):
        want = f"{block2} via {lab.net('node2').address} dev eth0 proto bird"
        assert lab.route(peer, block2) == want, diagnose(lab)
    flowing()
    for flood in floods:
        result = flood.stop()
        assert result["sent"] > 3 * FLOWING, result
        assert result["lost"] == [] and result["received"] == result["sent"], (
            f"{flood.source.name} -> {flood.target}: {result}\n{diagnose(lab)}"
        )
