"""The codec against what the installed BIRD 2 and GoBGP send right now.

The golden files are a snapshot; this runs the capture script against the real
daemons from the Debian packages (in network namespaces it creates and removes)
and checks that every message decodes and re-encodes to the same bytes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bgpd.messages import Notification, Open, Update, decode_message, encode_message, iter_messages
from tests.conftest import require_programs, require_root
from tests.messages.golden import load

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.interop

LIVE = {
    "bird2-ebgp": ("bird", "bird2"),
    "bird2-as2": ("bird", "bird2"),
    "gobgp-ebgp": ("gobgpd", "gobgpd"),
    "gobgp-ibgp-addpath": ("gobgpd", "gobgpd"),
}


@pytest.mark.parametrize("name", sorted(LIVE))
def test_live_peer_bytes_round_trip(name: str, tmp_path: Path) -> None:
    program, package = LIVE[name]
    require_root()
    require_programs(program, "ip", package=package)
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "capture_golden.py"),
            "--only",
            name,
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    cap = load(name, tmp_path)
    kinds = []
    for index, (_t, raw) in enumerate(iter_messages(cap.stream, 65535)):
        ctx = cap.context if index else type(cap.context)()
        msg = decode_message(raw, ctx)
        kinds.append(type(msg))
        assert encode_message(msg, ctx) == raw, f"message {index}: {msg}"
    assert kinds[0] is Open and kinds[-1] is Notification
    assert kinds.count(Update) >= 5
