"""NetworkPolicy to nftables: the node's ruleset, kept up to date one event at a time.

The table (POLICY.md §3.7, after Calico's split, §3.1)::

    chain forward  (hook forward)
        ct state established,related accept            replies pass (§1.4)
        mark &= ~ALLOW
        iifname "cali*" iifname != @endpoints drop      a pod not known yet
        iifname vmap @from-pod   -> jump ge-<group>     the sender's egress
        mark &= ~ALLOW
        oifname "cali*" oifname != @endpoints drop
        oifname vmap @to-pod     -> jump gi-<group>     the receiver's ingress
        mark &= ~ALLOW

    chain gi-<group>   one per distinct list of policies isolating an endpoint
        ct state invalid drop
        jump pi-<ns>/<policy>;  mark & ALLOW != 0 -> return     for each policy
        counter drop                                            isolated, nothing allowed

    chain pi-<ns>/<policy>  (po- for egress)   one per policy and direction
        <peer> <ports> counter mark |= ALLOW return comment "ingress 0"

An allow marks and *returns*, so on a same-node flow the sender's egress and the
receiver's ingress are both applied; a drop ends it.  Only forwarded traffic is
policed: the node's own traffic to its pods never reaches the forward hook, so
node-to-pod is always allowed (§1.4), as is a pod's traffic to its own node
(implementation-defined; Calico's manifest default accepts it too).  An
endpoint no policy isolates in a direction has no entry in that map: it passes
unrestricted.  Every endpoint the agent knows is in the set ``endpoints``; a pod
interface that is not (the agent has not seen the pod yet) is dropped, as
Calico's dispatch drops an unknown ``cali*``: a new pod is isolated from its
first packet (§1.4, pod lifecycle).  The CNI plugin records the endpoint before
it makes the veth, so the agent usually knows the interface before it exists.

Group chains are Calico's policy groups (``cali-gi-``) pushed to their end: the
verdict maps dispatch per endpoint interface in O(1), and endpoints whose
policies are the same list share one chain.  So a pod's arrival or departure
touches only set and map elements, and the rule count grows with policies (and
distinct policy lists), never with policies times pods.

Sets (named, shared by every rule that needs them, reference-counted):

* ``p4-<h>``/``p6-<h>``: the addresses of the pods a selector peer picks;
* ``n4-<proto>-<name>``/``n6-``: ``address . protocol . port`` of every pod
  with a container port of that name and protocol (named ports: matched
  against the *destination*, which for ingress is the endpoint itself and for
  egress the peer, POLICY.md §1.3);

An ipBlock is matched inline (``ip saddr 10.0.0.0/8 ip saddr != 10.1.0.0/16``),
not through named interval sets: its CIDRs never change with pods, and nft
(1.0.6) fetches the elements of every named interval set of the table on each
later ``add element``, one netlink round trip per set, which made a pod's
arrival cost twice as much with a few hundred ipBlocks in force.

IPv6: the ``p6-``/``n6-`` sets and the rules matching them exist only once some
pod has an IPv6 address (then for good): an IPv4-only cluster carries no empty
IPv6 half.  The first IPv6 pod rewrites every policy chain once.

``Renderer`` is pure: events in (``put_policy``, ``put_pod``, ``put_namespace``,
``put_endpoint`` and their removals), ``Ruleset`` changes out.  Events that
change which policies apply to an endpoint mark the endpoint; ``flush()``
recomputes those endpoints' groups, so loading 1,000 policies does not
recompute every endpoint 1,000 times.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections import Counter
from dataclasses import dataclass, field

from .model import LabelSelector, Peer, Pod, PodKey, Policy, Port, Rule
from .ruleset import Ruleset
from .selection import Cluster

TABLE = "bgpd-policy"
#: The mark bit an allow sets (Calico's marks live in 0xffff0000; kube-proxy's
#: are 0x4000 and 0x8000).
DEFAULT_MARK = 0x00100000
#: The host ends of the pods' veths (the CNI plugin's names): one the agent does
#: not know yet is dropped, so a new pod is isolated from its first packet.
INTERFACE_PREFIX = "cali"
ENDPOINTS = "endpoints"
FROM_POD = "from-pod"
TO_POD = "to-pod"
INGRESS, EGRESS = "ingress", "egress"
_NFT_PROTO = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}
#: nft's longest chain name is 255 characters (NFT_CHAIN_MAXNAMELEN 256).
_CHAIN_MAX = 255
PolicyKey = tuple[str, str]


def _digest(text: str, n: int = 12) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def _selector_key(s: LabelSelector | None) -> str:
    if s is None:
        return "-"
    exprs = ";".join(f"{r.key} {r.operator} {','.join(sorted(r.values))}" for r in s.expressions)
    return f"{s.labels!r}|{exprs}"


@dataclass(frozen=True, slots=True)
class PeerSetKey:
    """What a selector peer picks, independent of the policy that names it: the
    namespace (podSelector alone) or the namespace selector, and the pod selector."""

    namespace: str | None
    namespaces: LabelSelector | None
    pods: LabelSelector | None

    @staticmethod
    def of(policy_namespace: str, peer: Peer) -> PeerSetKey:
        ns = policy_namespace if peer.namespaces is None else None
        return PeerSetKey(ns, peer.namespaces, peer.pods)

    def peer(self) -> Peer:
        return Peer(pods=self.pods, namespaces=self.namespaces)

    def digest(self) -> str:
        return _digest(
            f"{self.namespace}|{_selector_key(self.namespaces)}|{_selector_key(self.pods)}"
        )


@dataclass(slots=True)
class _PeerSet:
    key: PeerSetKey
    names: tuple[str, str]  # v4, v6
    members: set[PodKey]
    counts: Counter[str] = field(default_factory=Counter)  # address -> members holding it
    refs: int = 0


@dataclass(slots=True)
class _Shared:
    """A set (or chain) shared by reference count."""

    refs: int = 0


def _family(address: str) -> int:
    return 6 if ":" in address else 4


def _bare(address: str) -> str:
    return address.partition("/")[0]


def chain_name(prefix: str, namespace: str, name: str) -> str:
    text = f"{prefix}-{namespace}/{name}"
    return text if len(text) <= _CHAIN_MAX else f"{prefix}-{namespace}/{_digest(name, 16)}"


class Renderer:
    """The wanted ruleset for this node's endpoints, updated event by event."""

    def __init__(
        self, mark: int = DEFAULT_MARK, table: str = TABLE, prefix: str = INTERFACE_PREFIX
    ) -> None:
        self.cluster = Cluster()
        self.mark = mark
        keep = f"0x{0xFFFFFFFF & ~mark:08x}"
        clear = f"meta mark set meta mark and {keep}"
        drop = 'counter drop comment "unknown endpoint"'
        unknown = [f'{{0}}name "{prefix}*" {{0}}name != @{ENDPOINTS} {drop}'] if prefix else []
        self.ruleset = Ruleset(
            table, "forward", "type filter hook forward priority filter; policy accept;",
            [
                "ct state established,related accept",
                clear,
                *(rule.format("iif") for rule in unknown),
                f"iifname vmap @{FROM_POD}",
                clear,
                *(rule.format("oif") for rule in unknown),
                f"oifname vmap @{TO_POD}",
                clear,
            ],
            {FROM_POD: "ifname : verdict", TO_POD: "ifname : verdict"},
        )  # fmt: skip
        self.ruleset.ensure_set(ENDPOINTS, "ifname")
        self.policies: dict[PolicyKey, Policy] = {}
        self._by_namespace: dict[str, set[PolicyKey]] = {}
        self._peer_sets: dict[PeerSetKey, _PeerSet] = {}
        self._named: dict[tuple[str, str], _Shared] = {}  # (protocol, name) -> refs
        self._v6 = False
        self._group_names: dict[tuple[str, tuple[PolicyKey, ...]], tuple[str, list[str]]] = {}
        self._groups: dict[str, _Shared] = {}
        #: chain name -> (namespace, policy, direction), for counters
        self.policy_chains: dict[str, tuple[str, str, str]] = {}
        #: local endpoints: interface -> pod; and pod -> its interfaces
        self.endpoints: dict[str, PodKey] = {}
        self._interfaces: dict[PodKey, set[str]] = {}
        #: local pod -> the policies selecting it, and the reverse
        self.selected_by: dict[PodKey, set[PolicyKey]] = {}
        self._selects: dict[PolicyKey, set[PodKey]] = {}
        self._endpoint_group: dict[tuple[str, str], str] = {}  # (iface, direction) -> group chain
        self._dirty: set[PodKey] = set()

    # -- policies ------------------------------------------------------------

    def put_policy(self, policy: Policy) -> None:
        old = self.policies.get(policy.key)
        if old == policy:
            return
        self._acquire(policy)
        self.policies[policy.key] = policy
        self._by_namespace.setdefault(policy.namespace, set()).add(policy.key)
        self._put_chains(policy)
        if old is not None:
            self._release(old)
        self._reselect(policy.key, old, policy)

    def remove_policy(self, key: PolicyKey) -> None:
        old = self.policies.pop(key, None)
        if old is None:
            return
        names = self._by_namespace.get(key[0])
        if names is not None:
            names.discard(key)
        for prefix in ("pi", "po"):
            chain = chain_name(prefix, *key)
            self.ruleset.drop_chain(chain)
            self.policy_chains.pop(chain, None)
        self._release(old)
        self._reselect(key, old, None)

    def _reselect(self, key: PolicyKey, old: Policy | None, new: Policy | None) -> None:
        """Which local pods the policy selects now; mark those whose policy list
        this change may alter (a pod still selected too: the policy's types may
        have changed)."""
        before = self._selects.pop(key, set())
        after: set[PodKey] = set()
        if new is not None:
            local = {p for p in self.cluster.by_namespace.get(key[0], ()) if p in self._interfaces}
            after = self.cluster.select(new.selector, local) if local else set()
            if after:
                self._selects[key] = after
        for pod in before - after:
            self.selected_by.get(pod, set()).discard(key)
        for pod in after - before:
            self.selected_by.setdefault(pod, set()).add(key)
        self._dirty |= before | after

    # -- reference counting of sets ------------------------------------------

    def _rule_parts(self, policy: Policy) -> tuple[list[PeerSetKey], list[tuple[str, str]]]:
        peers: list[PeerSetKey] = []
        named: list[tuple[str, str]] = []
        for rules in (policy.ingress, policy.egress):
            for rule in rules or ():
                for peer in rule.peers:
                    if peer.ip_block is None:
                        peers.append(PeerSetKey.of(policy.namespace, peer))
                named.extend((p.protocol, p.name) for p in rule.ports if p.name is not None)
        return peers, named

    def _acquire(self, policy: Policy) -> None:
        peers, named = self._rule_parts(policy)
        for key in peers:
            self._peer_set(key).refs += 1
        for proto_name in named:
            self._named_set(*proto_name).refs += 1

    def _release(self, policy: Policy) -> None:
        peers, named = self._rule_parts(policy)
        for key in peers:
            ps = self._peer_sets[key]
            ps.refs -= 1
            if ps.refs == 0:
                del self._peer_sets[key]
                for name in ps.names:
                    self.ruleset.drop_set(name)  # the v6 one may not exist: no-op
        for proto, name in named:
            shared = self._named[(proto, name)]
            shared.refs -= 1
            if shared.refs == 0:
                del self._named[(proto, name)]
                for set_name in self._named_names(proto, name):
                    self.ruleset.drop_set(set_name)

    def _peer_set(self, key: PeerSetKey) -> _PeerSet:
        found = self._peer_sets.get(key)
        if found is not None:
            return found
        digest = key.digest()
        ps = _PeerSet(key, (f"p4-{digest}", f"p6-{digest}"), set())
        self.ruleset.ensure_set(ps.names[0], "ipv4_addr")
        if self._v6:
            self.ruleset.ensure_set(ps.names[1], "ipv6_addr")
        self._peer_sets[key] = ps
        pods = self.cluster.pods
        for pod_key in self.cluster.peer_pods(key.namespace or "", key.peer()):
            ps.members.add(pod_key)
            ps.counts.update(_bare(a) for a in pods[pod_key].ips)
        for family, name in ((4, ps.names[0]), (6, ps.names[1])):
            self.ruleset.add_elements(name, [ip for ip in ps.counts if _family(ip) == family])
        return ps

    def _join(self, ps: _PeerSet, pod: Pod) -> None:
        ps.members.add(pod.key)
        for address in pod.ips:
            ip = _bare(address)
            ps.counts[ip] += 1
            if ps.counts[ip] == 1:
                self.ruleset.add_element(ps.names[_family(ip) == 6], ip)

    def _leave(self, ps: _PeerSet, pod: Pod) -> None:
        ps.members.discard(pod.key)
        for address in pod.ips:
            ip = _bare(address)
            ps.counts[ip] -= 1
            if ps.counts[ip] <= 0:
                del ps.counts[ip]
                self.ruleset.remove_element(ps.names[_family(ip) == 6], ip)

    @staticmethod
    def _named_names(proto: str, name: str) -> tuple[str, str]:
        p = _NFT_PROTO[proto]
        return f"n4-{p}-{name}", f"n6-{p}-{name}"

    def _named_set(self, proto: str, name: str) -> _Shared:
        found = self._named.get((proto, name))
        if found is not None:
            return found
        shared = self._named[(proto, name)] = _Shared()
        v4, v6 = self._named_names(proto, name)
        self.ruleset.ensure_set(v4, "ipv4_addr . inet_proto . inet_service")
        if self._v6:
            self.ruleset.ensure_set(v6, "ipv6_addr . inet_proto . inet_service")
        for pod in self.cluster.pods.values():
            for element, set_name in self._named_elements(pod, proto, name):
                self.ruleset.add_element(set_name, element)
        return shared

    def _named_elements(self, pod: Pod, proto: str, name: str) -> list[tuple[str, str]]:
        if pod.host_network:
            return []
        port = pod.named_port(name, proto)
        if port is None:
            return []
        v4, v6 = self._named_names(proto, name)
        p = _NFT_PROTO[proto]
        return [(f"{_bare(a)} . {p} . {port}", v6 if _family(a) == 6 else v4) for a in pod.ips]

    def _enable_v6(self) -> None:
        """The first IPv6 address: make the IPv6 sets and rewrite every policy chain."""
        self._v6 = True
        for ps in self._peer_sets.values():
            self.ruleset.ensure_set(ps.names[1], "ipv6_addr")
        for proto, name in self._named:
            self.ruleset.ensure_set(self._named_names(proto, name)[1],
                                    "ipv6_addr . inet_proto . inet_service")  # fmt: skip
        for policy in self.policies.values():
            self._put_chains(policy)

    # -- rule text -----------------------------------------------------------

    def _put_chains(self, policy: Policy) -> None:
        for direction, rules in ((INGRESS, policy.ingress), (EGRESS, policy.egress)):
            chain = chain_name("pi" if direction == INGRESS else "po", *policy.key)
            if rules is None:
                self.ruleset.drop_chain(chain)
                self.policy_chains.pop(chain, None)
            else:
                self.ruleset.put_chain(chain, self._policy_rules(policy, direction, rules))
                self.policy_chains[chain] = (policy.namespace, policy.name, direction)

    def _policy_rules(self, policy: Policy, direction: str, rules: tuple[Rule, ...]) -> list[str]:
        peer_field = "saddr" if direction == INGRESS else "daddr"
        allow = f"counter meta mark set meta mark or 0x{self.mark:08x} return"
        out: list[str] = []
        for index, rule in enumerate(rules):
            peers = self._peer_matches(policy, rule.peers, peer_field)
            ports = self._port_matches(rule.ports)
            comment = f'comment "{direction} {index}"'
            for peer_family, peer_text in peers:
                for port_family, port_text in ports:
                    if peer_family and port_family and peer_family != port_family:
                        continue
                    text = " ".join(t for t in (peer_text, port_text, allow, comment) if t)
                    out.append(text)
        return out

    def _peer_matches(
        self, policy: Policy, peers: tuple[Peer, ...], fld: str
    ) -> list[tuple[int, str]]:
        if not peers:
            return [(0, "")]
        out: list[tuple[int, str]] = []
        for peer in peers:
            block = peer.ip_block
            if block is not None:
                ip = "ip6" if block.family == 6 else "ip"
                cidr = ipaddress.ip_network(block.cidr, strict=False)
                text = f"{ip} {fld} {cidr}"
                for e in sorted(block.excepts):
                    text += f" {ip} {fld} != {ipaddress.ip_network(e, strict=False)}"
                out.append((block.family, text))
            else:
                v4, v6 = self._peer_sets[PeerSetKey.of(policy.namespace, peer)].names
                out.append((4, f"ip {fld} @{v4}"))
                if self._v6:
                    out.append((6, f"ip6 {fld} @{v6}"))
        return out

    def _port_matches(self, ports: tuple[Port, ...]) -> list[tuple[int, str]]:
        if not ports:
            return [(0, "")]
        whole: set[str] = set()  # protocols allowed on every port
        numbers: dict[str, set[str]] = {}
        named: list[tuple[int, str]] = []
        for p in ports:
            proto = _NFT_PROTO[p.protocol]
            if p.name is not None:
                v4, v6 = self._named_names(p.protocol, p.name)
                named.append((4, f"ip daddr . meta l4proto . th dport @{v4}"))
                if self._v6:
                    named.append((6, f"ip6 daddr . meta l4proto . th dport @{v6}"))
            elif p.port is None:
                whole.add(proto)
            else:
                numbers.setdefault(proto, set()).add(
                    str(p.port) if p.end is None else f"{p.port}-{p.end}"
                )
        out: list[tuple[int, str]] = [(0, f"meta l4proto {proto}") for proto in sorted(whole)]
        for proto, values in sorted(numbers.items()):
            if proto not in whole:
                out.append((0, f"meta l4proto {proto} th dport {{ {', '.join(sorted(values))} }}"))
        return out + named

    # -- pods, namespaces, endpoints -----------------------------------------

    def put_pod(self, pod: Pod) -> None:
        old = self.cluster.pods.get(pod.key)
        if old == pod:
            return
        if not self._v6 and any(_family(a) == 6 for a in pod.ips):
            self._enable_v6()
        if old is not None:
            self._unindex_pod(old)
        self.cluster.put_pod(pod)
        self._index_pod(pod)

    def remove_pod(self, key: PodKey) -> None:
        old = self.cluster.pods.get(key)
        if old is None:
            return
        self._unindex_pod(old)
        self.cluster.remove_pod(key)
        if key in self._interfaces:
            self._select_local(key)

    def _index_pod(self, pod: Pod) -> None:
        for ps in self._peer_sets.values():
            if self.cluster.peer_has(ps.key.namespace or "", ps.key.peer(), pod):
                self._join(ps, pod)
        for proto, name in self._named:
            for element, set_name in self._named_elements(pod, proto, name):
                self.ruleset.add_element(set_name, element)
        if pod.key in self._interfaces:
            self._select_local(pod.key)

    def _unindex_pod(self, pod: Pod) -> None:
        for ps in self._peer_sets.values():
            if pod.key in ps.members:
                self._leave(ps, pod)
        for proto, name in self._named:
            for element, set_name in self._named_elements(pod, proto, name):
                self.ruleset.remove_element(set_name, element)

    def _select_local(self, pod: PodKey) -> None:
        """Recompute which policies select a local pod."""
        found = self.cluster.pods.get(pod)
        chosen: set[PolicyKey] = set()
        if found is not None and not found.host_network and pod in self._interfaces:
            for key in self._by_namespace.get(found.namespace, ()):
                if self.policies[key].selector.matches(found.labels):
                    chosen.add(key)
        before = self.selected_by.pop(pod, set())
        if chosen:
            self.selected_by[pod] = chosen
        for key in before - chosen:
            self._selects[key].discard(pod)
        for key in chosen - before:
            self._selects.setdefault(key, set()).add(pod)
        self._dirty.add(pod)

    def put_namespace(self, name: str, labels: dict[str, str] | None) -> None:
        if not self.cluster.put_namespace(name, labels):
            return
        for ps in self._peer_sets.values():
            if ps.key.namespaces is None:
                continue
            wanted = self.cluster.peer_pods("", ps.key.peer())
            for key in ps.members - wanted:
                self._leave(ps, self.cluster.pods[key])
            for key in wanted - ps.members:
                self._join(ps, self.cluster.pods[key])

    def put_endpoint(self, interface: str, pod: PodKey) -> None:
        """A local endpoint: the pod's interface on this node (``cali…``)."""
        previous = self.endpoints.get(interface)
        if previous == pod:
            return
        if previous is not None:
            self.remove_endpoint(interface)
        self.endpoints[interface] = pod
        self.ruleset.add_element(ENDPOINTS, f'"{interface}"')
        self._interfaces.setdefault(pod, set()).add(interface)
        self._select_local(pod)

    def remove_endpoint(self, interface: str) -> None:
        pod = self.endpoints.pop(interface, None)
        if pod is None:
            return
        self.ruleset.remove_element(ENDPOINTS, f'"{interface}"')
        names = self._interfaces.get(pod)
        if names is not None:
            names.discard(interface)
            if not names:
                del self._interfaces[pod]
                self._select_local(pod)
        for direction in (INGRESS, EGRESS):
            self._set_group(interface, direction, None)

    # -- groups --------------------------------------------------------------

    def flush(self) -> None:
        """Bring the dirty endpoints' dispatch up to date."""
        dirty, self._dirty = self._dirty, set()
        for pod in dirty:
            interfaces = self._interfaces.get(pod)
            if not interfaces:
                continue
            keys = sorted(self.selected_by.get(pod, ()))
            ingress = [k for k in keys if self.policies[k].ingress is not None]
            egress = [k for k in keys if self.policies[k].egress is not None]
            for interface in interfaces:
                self._set_group(interface, INGRESS, ingress)
                self._set_group(interface, EGRESS, egress)

    def _set_group(self, interface: str, direction: str, policies: list[PolicyKey] | None) -> None:
        """Dispatch ``interface`` to the group of ``policies`` (none: no dispatch,
        the endpoint is not isolated in that direction)."""
        old = self._endpoint_group.pop((interface, direction), None)
        new = self._group(direction, policies) if policies else None
        if new is not None:
            self._endpoint_group[(interface, direction)] = new
        verdict = None if new is None else f"jump {new}"
        self.ruleset.put_map(TO_POD if direction == INGRESS else FROM_POD, interface, verdict)
        if old is not None:
            shared = self._groups[old]
            shared.refs -= 1
            if shared.refs == 0:
                del self._groups[old]
                self.ruleset.drop_chain(old)
                self._group_names = {k: v for k, v in self._group_names.items() if v[0] != old}

    def _group(self, direction: str, policies: list[PolicyKey]) -> str:
        memo = (direction, tuple(policies))
        found = self._group_names.get(memo)
        if found is None:
            prefix = "pi" if direction == INGRESS else "po"
            targets = [chain_name(prefix, *k) for k in policies]
            found = self._group_names[memo] = (
                f"g{direction[0]}-{_digest(' '.join(targets), 16)}",
                targets,
            )
        name, targets = found
        shared = self._groups.get(name)
        if shared is None:
            shared = self._groups[name] = _Shared()
            test = f"meta mark and 0x{self.mark:08x} != 0 return"
            rules = ["ct state invalid drop"]
            for target in targets:
                rules += [f"jump {target}", test]
            rules.append(f'counter drop comment "{direction} denied"')
            self.ruleset.put_chain(name, rules)
        shared.refs += 1
        return name
