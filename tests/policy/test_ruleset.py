"""The ruleset journal, pure and against the kernel: any sequence of changes,
applied as incremental transactions, leaves the kernel's table identical to a
fresh full load of the same wanted state."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd.policy import nft
from bgpd.policy.model import ContainerPort, Pod, policy_from
from bgpd.policy.render import Renderer
from bgpd.policy.ruleset import Ruleset
from tests.conftest import require_programs, require_root


def fresh() -> Ruleset:
    return Ruleset("t", "base", "type filter hook forward priority filter; policy accept;", [],
                   {"m": "ifname : verdict"})  # fmt: skip


def test_undone_changes_leave_no_trace() -> None:
    rs = fresh()
    rs.ensure_set("s", "ipv4_addr")
    rs.add_element("s", "10.0.0.1")
    rs.put_chain("c", ["counter"])
    rs.put_map("m", "cali1", "jump c")
    rs.commit()
    rs.add_element("s", "10.0.0.2")
    rs.remove_element("s", "10.0.0.2")
    rs.remove_element("s", "10.0.0.1")
    rs.add_element("s", "10.0.0.1")
    rs.put_map("m", "cali1", None)
    rs.put_map("m", "cali1", "jump c")
    rs.drop_chain("c")
    rs.put_chain("c", ["counter"])
    assert rs.script() == "flush chain inet t c\nadd rule inet t c counter\n"
    rs.commit()
    rs.ensure_set("new", "ipv4_addr")
    rs.add_element("new", "10.0.0.3")
    rs.drop_set("new")
    assert rs.script() == ""


def test_script_order() -> None:
    rs = fresh()
    rs.ensure_set("old", "ipv4_addr")
    rs.put_chain("gone", ["ip saddr @old counter"])
    rs.put_map("m", "cali1", "jump gone")
    rs.commit()
    rs.ensure_set("fresh", "ipv4_addr", interval=True)
    rs.add_element("fresh", "10.0.0.0/8")
    rs.put_chain("kept", ["ip saddr @fresh counter"])
    rs.put_map("m", "cali1", "jump kept")
    rs.drop_chain("gone")
    rs.drop_set("old")
    assert rs.script().splitlines() == [
        "add set inet t fresh { type ipv4_addr; flags interval; }",
        "add chain inet t kept",
        "add element inet t fresh { 10.0.0.0/8 }",
        "add rule inet t kept ip saddr @fresh counter",
        'delete element inet t m { "cali1" }',
        'add element inet t m { "cali1" : jump kept }',
        "flush chain inet t gone",
        "delete chain inet t gone",
        "delete set inet t old",
    ]


# -- against the kernel -------------------------------------------------------

NAMESPACES = ("x", "y")
PODS = [(ns, name) for ns in NAMESPACES for name in ("a", "b", "c")]
SPECS = [
    {"podSelector": {}, "policyTypes": ["Ingress"]},
    {"podSelector": {"matchLabels": {"pod": "a"}},
     "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}],
                  "ports": [{"port": 80}, {"port": "http"}]}]},
    {"podSelector": {"matchExpressions": [{"key": "pod", "operator": "In", "values": ["a", "c"]}]},
     "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"env": "prod"}}}],
                 "ports": [{"protocol": "UDP", "port": 53, "endPort": 60}]}],
     "policyTypes": ["Egress"]},
    {"podSelector": {},
     "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.1.0/24"]}}]}],
     "egress": [{}]},
]  # fmt: skip

events = st.lists(
    st.one_of(
        st.tuples(st.just("policy"), st.sampled_from(NAMESPACES), st.integers(0, len(SPECS))),
        st.tuples(
            st.just("pod"), st.sampled_from(PODS), st.sampled_from(["a", "b", "c", "v6", None])
        ),
        st.tuples(st.just("endpoint"), st.sampled_from(PODS), st.booleans()),
        st.tuples(st.just("namespace"), st.sampled_from(NAMESPACES), st.booleans()),
    ),
    min_size=1,
    max_size=12,
)


def apply_event(r: Renderer, event: tuple[object, ...]) -> None:
    kind = event[0]
    if kind == "policy":
        ns, index = str(event[1]), int(event[2])  # type: ignore[call-overload]
        if index == len(SPECS):
            r.remove_policy((ns, "p"))
        else:
            r.put_policy(
                policy_from({"metadata": {"namespace": ns, "name": "p"}, "spec": SPECS[index]})
            )
    elif kind == "pod":
        (ns, name), label = event[1], event[2]  # type: ignore[misc]
        if label is None:
            r.remove_pod((ns, name))
        elif label == "v6":  # dual-stack: the first one brings the IPv6 half of the table
            ips = (f"10.0.{PODS.index((ns, name))}.9/32", f"fd00::{PODS.index((ns, name)) + 1}/128")
            r.put_pod(Pod(ns, name, {"pod": "b"}, ips, (ContainerPort("http", "TCP", 8080),)))
        else:
            ip = f"10.0.{PODS.index((ns, name))}.{'abc'.index(label) + 1}/32"
            r.put_pod(Pod(ns, name, {"pod": label}, (ip,), (ContainerPort("http", "TCP", 8080),)))
    elif kind == "endpoint":
        (ns, name), present = event[1], event[2]  # type: ignore[misc]
        if present:
            r.put_endpoint(f"cali{ns}{name}", (ns, name))
        else:
            r.remove_endpoint(f"cali{ns}{name}")
    else:
        ns, prod = str(event[1]), bool(event[2])
        r.put_namespace(ns, {"env": "prod"} if prod else None)


@pytest.fixture(scope="module")
def two_netns() -> Iterator[tuple[str, str]]:
    require_root()
    require_programs("nft", package="nftables")
    names = (f"nftinc-{uuid.uuid4().hex[:8]}", f"nftfull-{uuid.uuid4().hex[:8]}")
    for n in names:
        subprocess.run(["ip", "netns", "add", n], check=True)
    try:
        yield names
    finally:
        for n in names:
            subprocess.run(["ip", "netns", "del", n], check=False)


def nft_in(ns: str, script: str) -> None:
    proc = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script.encode(),
                          capture_output=True, check=False)  # fmt: skip
    assert proc.returncode == 0, f"{proc.stderr.decode()}\n--- script ---\n{script}"


def listing(ns: str) -> list[str]:
    """The table as nft reports it, with handles dropped and hash-ordered elements sorted."""
    command = ["ip", "netns", "exec", ns, "nft", "-j", "list", "table", "inet", "bgpd-policy"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    items = []
    for item in json.loads(out)["nftables"]:
        for body in item.values():
            if isinstance(body, dict):
                body.pop("handle", None)
                if "elem" in body:
                    body["elem"] = sorted(json.dumps(e, sort_keys=True) for e in body["elem"])
        items.append(json.dumps(item, sort_keys=True))
    return sorted(items)


@settings(max_examples=25)
@given(batches=st.lists(events, min_size=1, max_size=4))
def test_incremental_equals_full_load(
    two_netns: tuple[str, str], batches: list[list[tuple[object, ...]]]
) -> None:
    inc, full = two_netns
    r = Renderer()
    r.flush()
    nft_in(inc, r.ruleset.full_script())
    r.ruleset.commit()
    for batch in batches:
        for event in batch:
            apply_event(r, event)
        r.flush()
        script = r.ruleset.script()
        if script:
            nft_in(inc, script)
        r.ruleset.commit()
    nft_in(full, r.ruleset.full_script())
    assert listing(inc) == listing(full)


@pytest.mark.parametrize("way", ["libnftables", "nft -f"])
def test_nft_refusal_is_an_error(way: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both ways to nft (the library in-process, the command as fallback) refuse a
    bad script with nft's message and change nothing."""
    require_programs("nft", package="nftables")
    if way == "nft -f":
        monkeypatch.setattr(nft, "_lib", lambda: None)
    elif nft._lib() is None:
        pytest.fail("libnftables.so.1 (Debian package libnftables1, with nftables) not loadable")
    with pytest.raises(nft.NftError, match="Error"):
        nft.apply("add rule inet no-such-table-here c nonsense\n")
    with pytest.raises(nft.NftError, match="No such file or directory"):
        nft.list_table("no-such-table-here")
