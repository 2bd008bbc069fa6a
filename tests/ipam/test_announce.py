"""What the speaker reads from IPAM: the node's confirmed blocks and the addresses it
borrowed, and a change notification when either changes (CALICO.md §1.6)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bgpd.datastore.directory import DirectoryStore
from bgpd.ipam.allocator import CONFIG, Ipam, announcements


def _pool(store: DirectoryStore, cidr: str) -> None:
    store.put("resources/ippools/p", {
        "apiVersion": "projectcalico.org/v3", "kind": "IPPool",
        "metadata": {"name": "p"}, "spec": {"cidr": cidr, "blockSize": 29},
    })  # fmt: skip


def test_blocks_and_borrowed_addresses(tmp_path: Path) -> None:
    store = DirectoryStore(str(tmp_path / "store"))
    _pool(store, "10.90.0.0/28")  # two blocks of 8
    one = Ipam(store, "n1")
    got = one.auto_assign("net.a", {}, num4=1, num6=0)
    (block,) = announcements(store, "n1")[0]
    assert got[0].address.startswith(block.rsplit(".", 1)[0])
    assert announcements(store, "n1") == ([block], [])

    # n2 may not claim blocks of its own: it borrows from n1's.
    store.put(CONFIG, {"strictAffinity": False, "autoAllocateBlocks": False, "maxBlocksPerHost": 0})
    two = Ipam(store, "n2")
    (borrowed,) = two.auto_assign("net.b", {}, num4=1, num6=0)
    assert announcements(store, "n2") == ([], [f"{borrowed.address}/32"])
    assert announcements(store, "n1") == ([block], [])
    two.release_handle("net.b")
    assert announcements(store, "n2") == ([], [])


async def test_a_new_block_is_notified(tmp_path: Path) -> None:
    store = DirectoryStore(str(tmp_path / "store"))
    _pool(store, "10.91.0.0/28")
    since = store.revision()
    changes = store.watch("ipam/", since)

    async def first_affinity() -> str:
        async for batch in changes:
            for change in batch:
                if change.key and change.key.startswith("ipam/affinities/n1/"):
                    assert change.record is not None
                    if change.record.value["state"] == "confirmed":
                        return str(change.record.value["cidr"])
        raise AssertionError("watch ended")

    waiter = asyncio.ensure_future(first_affinity())
    await asyncio.sleep(0)
    await asyncio.to_thread(Ipam(store, "n1").auto_assign, "net.a", {}, num4=1, num6=0)
    cidr = await asyncio.wait_for(waiter, 5)
    assert announcements(store, "n1") == ([cidr], [])
    await changes.aclose()  # type: ignore[attr-defined]
