"""Which pods a selector picks, answered from indexes rather than by testing every
pod: the pods of each namespace, and the pods carrying each label key and each
(key, value) pair.  A selector is a chain of set operations on those indexes
(``In``: a union of (key, value) sets; ``NotIn`` and ``DoesNotExist``: a
difference, since an absent label satisfies them), so picking the members of
a peer among 5,000 pods costs set arithmetic in C, not 5,000 calls.

Pods on the host network are never picked (POLICY.md §1.4, hostNetwork: their
traffic is the node's).  A namespace without a Namespace resource but with pods
exists with only its ``kubernetes.io/metadata.name`` label.
"""

from __future__ import annotations

from collections.abc import Iterable, Set
from typing import TypeVar

from .model import LabelSelector, Peer, Pod, PodKey, namespace_labels


class Cluster:
    """Pods and namespaces, indexed for selection."""

    def __init__(self) -> None:
        self.pods: dict[PodKey, Pod] = {}
        self._namespace_objects: dict[str, dict[str, str]] = {}
        self.by_namespace: dict[str, set[PodKey]] = {}
        self._by_label: dict[tuple[str, str], set[PodKey]] = {}
        self._by_key: dict[str, set[PodKey]] = {}

    # -- updates -------------------------------------------------------------

    def put_pod(self, pod: Pod) -> Pod | None:
        """Add or replace a pod; returns the pod it replaced."""
        old = self.remove_pod(pod.key)
        self.pods[pod.key] = pod
        if not pod.host_network:
            self.by_namespace.setdefault(pod.namespace, set()).add(pod.key)
            for k, v in pod.labels.items():
                self._by_label.setdefault((k, v), set()).add(pod.key)
                self._by_key.setdefault(k, set()).add(pod.key)
        return old

    def remove_pod(self, key: PodKey) -> Pod | None:
        pod = self.pods.pop(key, None)
        if pod is None or pod.host_network:
            return pod
        _discard(self.by_namespace, pod.namespace, key)
        for k, v in pod.labels.items():
            _discard(self._by_label, (k, v), key)
            _discard(self._by_key, k, key)
        return pod

    def put_namespace(self, name: str, labels: dict[str, str] | None) -> bool:
        """Set a namespace's labels (None: its resource is gone); True if they changed."""
        before = self.namespace_labels(name)
        if labels is None:
            self._namespace_objects.pop(name, None)
        else:
            self._namespace_objects[name] = labels
        return self.namespace_labels(name) != before

    # -- queries -------------------------------------------------------------

    def namespace_labels(self, name: str) -> dict[str, str]:
        labels = self._namespace_objects.get(name)
        return labels if labels is not None else namespace_labels(name, None)

    def namespaces(self) -> set[str]:
        return set(self._namespace_objects) | set(self.by_namespace)

    def select(self, selector: LabelSelector, candidates: Set[PodKey]) -> set[PodKey]:
        """The candidates whose labels the selector matches (a new set)."""
        out = set(candidates)
        for key, value in selector.labels:
            out &= self._by_label.get((key, value), _EMPTY)
        for r in selector.expressions:
            if not out:
                break
            if r.operator == "Exists":
                out &= self._by_key.get(r.key, _EMPTY)
            elif r.operator == "DoesNotExist":
                out -= self._by_key.get(r.key, _EMPTY)
            else:
                having = _union(self._by_label.get((r.key, v), _EMPTY) for v in r.values)
                if r.operator == "In":
                    out &= having
                else:
                    out -= having
        return out

    def select_in(self, namespace: str, selector: LabelSelector) -> set[PodKey]:
        return self.select(selector, self.by_namespace.get(namespace, _EMPTY))

    def peer_pods(self, policy_namespace: str, peer: Peer) -> set[PodKey]:
        """The pods a selector peer picks: by podSelector in the policy's namespace,
        or in every namespace the namespaceSelector picks (types.go
        NetworkPolicyPeer)."""
        if peer.namespaces is None:
            spaces: Iterable[str] = (policy_namespace,)
        else:
            spaces = [
                n for n in self.namespaces() if peer.namespaces.matches(self.namespace_labels(n))
            ]
        candidates = _union(self.by_namespace.get(n, _EMPTY) for n in spaces)
        return candidates if peer.pods is None else self.select(peer.pods, candidates)

    def peer_has(self, policy_namespace: str, peer: Peer, pod: Pod) -> bool:
        """One pod against a selector peer (the same answer as ``peer_pods``)."""
        if pod.host_network:
            return False
        if peer.namespaces is None:
            if pod.namespace != policy_namespace:
                return False
        elif not peer.namespaces.matches(self.namespace_labels(pod.namespace)):
            return False
        return peer.pods is None or peer.pods.matches(pod.labels)


_EMPTY: frozenset[PodKey] = frozenset()
K = TypeVar("K")


def _union(sets: Iterable[Set[PodKey]]) -> set[PodKey]:
    out: set[PodKey] = set()
    for s in sets:
        out |= s
    return out


def _discard(index: dict[K, set[PodKey]], key: K, item: PodKey) -> None:
    found = index.get(key)
    if found is not None:
        found.discard(item)
        if not found:
            del index[key]
