"""Fixtures for tests against real peers: a ``Lab`` that is always torn down, and
our speaker run in the test's event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from bgpd.standalone import StandaloneSpeaker
from tests.conftest import require_root

from .lab import OUR_AS, Lab, Recorder


@pytest.fixture
def lab() -> Iterator[Lab]:
    require_root()
    lab = Lab()
    try:
        yield lab
    finally:
        lab.teardown()


SpeakerFactory = Callable[..., Awaitable[tuple[StandaloneSpeaker, Recorder]]]


@pytest.fixture
async def speaker() -> AsyncIterator[SpeakerFactory]:
    """Start our speaker from a configuration document; closed after the test."""
    started: list[StandaloneSpeaker] = []

    async def make(
        listen: list[tuple[str, int]], peers: list[dict[str, Any]], **doc: Any
    ) -> tuple[StandaloneSpeaker, Recorder]:
        rec = Recorder()
        full = {
            "local_as": OUR_AS,
            "router_id": "198.18.255.1",
            "listen": listen,
            "peers": peers,
            **doc,
        }
        app = StandaloneSpeaker(full, on_event=rec)
        await app.start()
        started.append(app)
        return app, rec

    try:
        yield make
    finally:
        for app in started:
            await app.close()
