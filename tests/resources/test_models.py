"""Calico v3 resource models: operators' real YAML applies unchanged, Calico's
defaults are filled in, every validation rule refuses with the field and the
reason, and the canonical form is a fixed point (dump -> load -> dump)."""

from __future__ import annotations

import copy
import ipaddress
import re
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from bgpd.resources.models import (
    KINDS,
    BGPConfiguration,
    BGPPeer,
    IPPool,
    Node,
    ResourceError,
    canonical_kind,
    dump,
    load_resource,
    load_resources,
)
from bgpd.resources.models_bgp import split_peer_ip
from bgpd.resources.models_values import (
    community_problem,
    format_duration,
    parse_as_number,
    parse_duration,
    parse_network,
)

V3 = "projectcalico.org/v3"


def load_one(text: str) -> dict[str, Any]:
    """YAML text -> the canonical object, checking that it is a fixed point."""
    (resource,) = load_resources(yaml.safe_load(text))
    out = dump(resource)
    assert dump(load_resource(copy.deepcopy(out))) == out
    return out


def refused(doc: dict[str, Any]) -> ResourceError:
    with pytest.raises(ResourceError) as caught:
        load_resources(doc)
    return caught.value


def pool(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": V3, "kind": "IPPool", "metadata": {"name": "pool1"},
            "spec": {"cidr": "10.65.0.0/16", **spec}}  # fmt: skip


def peer(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": V3, "kind": "BGPPeer", "metadata": {"name": "peer1"}, "spec": spec}


def bgp_config(name: str = "default", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": V3, "kind": "BGPConfiguration", "metadata": {"name": name},
            "spec": spec}  # fmt: skip


def bgp_filter(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": V3, "kind": "BGPFilter", "metadata": {"name": "filter1"}, "spec": spec}


def node(spec: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"apiVersion": V3, "kind": "Node", "metadata": {"name": "node1"}, "spec": spec,
            **extra}  # fmt: skip


def ipam_config(name: str = "default", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": V3, "kind": "IPAMConfig", "metadata": {"name": name}, "spec": spec}


# -- operators' YAML, as in Calico's documentation ---------------------------------------------

DEFAULT_POOL = """
apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: default-ipv4-ippool
spec:
  cidr: 192.168.0.0/16
  ipipMode: Always
  natOutgoing: true
  nodeSelector: all()
  blockSize: 26
"""


def test_default_ipv4_pool_applies_with_calicos_defaults() -> None:
    assert load_one(DEFAULT_POOL) == {
        "apiVersion": V3,
        "kind": "IPPool",
        "metadata": {"name": "default-ipv4-ippool"},
        "spec": {
            "cidr": "192.168.0.0/16", "vxlanMode": "Never", "ipipMode": "Always",
            "natOutgoing": True, "blockSize": 26, "nodeSelector": "all()",
            "allowedUses": ["Workload", "Tunnel"], "assignmentMode": "Automatic",
        },
    }  # fmt: skip


def test_ipv6_vxlan_pool_for_one_zone() -> None:
    out = load_one("""
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: zone-a-v6, labels: {zone: a}}
spec:
  cidr: "fd00:10:0::/48"
  vxlanMode: CrossSubnet
  nodeSelector: topology.kubernetes.io/zone == "a"
  namespaceSelector: "!has(isolated)"
  allowedUses: [Workload]
  assignmentMode: Manual
  disableBGPExport: true
""")
    spec = out["spec"]
    assert spec["cidr"] == "fd00:10::/48"  # normalised
    assert spec["blockSize"] == 122
    assert spec["ipipMode"] == "Never"
    assert spec["allowedUses"] == ["Workload"]
    assert spec["assignmentMode"] == "Manual"
    assert spec["disableBGPExport"] is True
    assert out["metadata"]["labels"] == {"zone": "a"}


TOR_PEER = """
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata:
  name: rack1-tor
spec:
  peerIP: 192.20.30.40
  asNumber: 64567
  nodeSelector: rack == 'rack-1'
  keepOriginalNextHop: true
  maxRestartTime: 15m
  password:
    secretKeyRef:
      name: bgp-secrets
      key: rr-password
"""


def test_peer_to_a_tor_switch_with_a_password() -> None:
    assert load_one(TOR_PEER)["spec"] == {
        "nodeSelector": "rack == 'rack-1'",
        "peerIP": "192.20.30.40",
        "asNumber": 64567,
        "keepOriginalNextHop": True,
        "password": {"secretKeyRef": {"name": "bgp-secrets", "key": "rr-password"}},
        "sourceAddress": "UseNodeIP",
        "maxRestartTime": "15m0s",
        "reversePeering": "Auto",
    }


RR_TRIO = """
apiVersion: projectcalico.org/v3
kind: Node
metadata: {name: node1, labels: {route-reflector: "true"}}
spec: {bgp: {ipv4Address: 198.18.0.1/24, routeReflectorClusterID: 1.1.1.1}}
---
kind: BGPPeer
apiVersion: projectcalico.org/v3
metadata: {name: peer-with-route-reflectors}
spec: {nodeSelector: all(), peerSelector: route-reflector == "true"}
---
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {logSeverityScreen: Info, nodeToNodeMeshEnabled: false, asNumber: 63400}
"""


def test_route_reflector_trio_applies_unchanged() -> None:
    node_doc, peer_doc, config = (
        dump(r) for doc in yaml.safe_load_all(RR_TRIO) for r in load_resources(doc)
    )
    assert node_doc == {
        "apiVersion": V3, "kind": "Node",
        "metadata": {"name": "node1", "labels": {"route-reflector": "true"}},
        "spec": {"bgp": {"ipv4Address": "198.18.0.1/24", "routeReflectorClusterID": "1.1.1.1"}},
    }  # fmt: skip
    assert peer_doc["spec"] == {
        "nodeSelector": "all()", "peerSelector": 'route-reflector == "true"',
        "sourceAddress": "UseNodeIP", "reversePeering": "Auto",
    }  # fmt: skip
    assert config["spec"] == {
        "logSeverityScreen": "Info", "nodeToNodeMeshEnabled": False, "asNumber": 63400,
        "listenPort": 179, "bindMode": "None", "serviceLoadBalancerAggregation": "Enabled",
    }  # fmt: skip


FULL_BGP_CONFIGURATION = """
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata:
  name: default
spec:
  logSeverityScreen: Info
  nodeToNodeMeshEnabled: true
  nodeMeshMaxRestartTime: 120s
  nodeMeshPassword:
    secretKeyRef: {name: bgp-secrets, key: mesh-password}
  asNumber: 63400
  serviceClusterIPs:
    - cidr: 10.96.0.0/12
  serviceExternalIPs:
    - cidr: 104.244.42.129/32
    - cidr: 172.217.3.0/24
  serviceLoadBalancerIPs:
    - cidr: 198.51.100.0/24
  serviceLoadBalancerAggregation: Disabled
  listenPort: 178
  bindMode: NodeIP
  ignoredInterfaces: [eth9, "docker*"]
  localWorkloadPeeringIPV4: 169.254.255.1
  localWorkloadPeeringIPV6: "fd00::1"
  communities:
    - name: bgp-large-community
      value: "63400:300:100"
  prefixAdvertisements:
    - cidr: 172.218.4.0/26
      communities:
        - bgp-large-community
        - "63400:120"
"""


def test_full_bgp_configuration() -> None:
    spec = load_one(FULL_BGP_CONFIGURATION)["spec"]
    assert spec["nodeMeshMaxRestartTime"] == "2m0s"  # Go's rendering of 120s
    assert spec["listenPort"] == 178
    assert spec["bindMode"] == "NodeIP"
    assert spec["serviceLoadBalancerAggregation"] == "Disabled"
    assert spec["prefixAdvertisements"] == [
        {"cidr": "172.218.4.0/26", "communities": ["bgp-large-community", "63400:120"]}
    ]
    assert spec["communities"] == [{"name": "bgp-large-community", "value": "63400:300:100"}]


def test_per_node_bgp_configuration_gets_no_defaults() -> None:
    """Unset there means "as in default": a filled-in listenPort would override it."""
    out = load_one("""
apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: node.rack1-node3}
spec:
  logSeverityScreen: debug
  listenPort: 1790
""")
    assert out["spec"] == {"logSeverityScreen": "Debug", "listenPort": 1790}


BGP_FILTER = """
apiVersion: projectcalico.org/v3
kind: BGPFilter
metadata:
  name: tor-filter
spec:
  exportV4:
    - action: Accept
      matchOperator: In
      cidr: 77.0.0.0/16
      prefixLength: {min: 24, max: 28}
      source: RemotePeers
    - action: Reject
      interface: "*.calico"
  importV4:
    - action: Reject
      matchOperator: NotIn
      cidr: 44.0.0.0/16
  exportV6:
    - action: Reject
      matchOperator: NotEqual
      cidr: "9000::/64"
  importV6:
    - action: Accept
      matchOperator: Equal
      cidr: "5000::/64"
      prefixLength: {max: 96}
"""


def test_bgp_filter() -> None:
    spec = load_one(BGP_FILTER)["spec"]
    assert spec["exportV4"][0] == {"source": "RemotePeers", "matchOperator": "In",
                                   "action": "Accept", "cidr": "77.0.0.0/16",
                                   "prefixLength": {"min": 24, "max": 28}}  # fmt: skip
    assert spec["exportV4"][1] == {"interface": "*.calico", "action": "Reject"}
    assert spec["importV6"][0]["prefixLength"] == {"max": 96}


FULL_NODE = """
apiVersion: projectcalico.org/v3
kind: Node
metadata:
  name: worker-1.example.com
  labels:
    kubernetes.io/hostname: worker-1.example.com
    route-reflector: ""
  annotations:
    projectcalico.org/kube-labels: '{"a": "b"}'
spec:
  bgp:
    asNumber: 64512
    ipv4Address: 10.0.0.5/24
    ipv6Address: "fd00::5/64"
    ipv4IPIPTunnelAddr: 192.168.10.1
  ipv4VXLANTunnelAddr: 192.168.11.1
  vxlanTunnelMACAddr: "66:d8:0b:94:f6:1a"
  ipv6VXLANTunnelAddr: "fd00:200::1"
  vxlanTunnelMACAddrV6: "66-d8-0b-94-f6-1b"
  wireguard:
    interfaceIPv4Address: 192.168.12.1
  addresses:
    - address: 10.0.0.5/24
      type: CalicoNodeIP
    - address: 10.0.0.5
      type: InternalIP
  orchRefs:
    - nodeName: worker-1
      orchestrator: k8s
status:
  podCIDRs: [10.244.1.0/24, "fd00:244:1::/64"]
  wireguardPublicKey: jlkVyQYooZYzI2wFfNhSZez5eWh44yfq1wKVjLvSXgY=
"""


def test_full_node_keeps_spec_and_status() -> None:
    out = load_one(FULL_NODE)
    assert out["spec"]["bgp"]["ipv4Address"] == "10.0.0.5/24"  # host bits are the point
    assert out["spec"]["addresses"][1] == {"address": "10.0.0.5", "type": "InternalIP"}
    assert out["status"]["podCIDRs"] == ["10.244.1.0/24", "fd00:244:1::/64"]
    assert out["metadata"]["labels"]["route-reflector"] == ""


def test_ipam_config_fills_defaults() -> None:
    out = load_one("""
apiVersion: projectcalico.org/v3
kind: IPAMConfig
metadata: {name: default}
spec: {strictAffinity: true}
""")
    assert out["spec"] == {"strictAffinity": True, "autoAllocateBlocks": True,
                           "maxBlocksPerHost": 0}  # fmt: skip


def test_crd_form_as_kubectl_exports_it() -> None:
    """crd.projectcalico.org/v1, with the server's metadata: accepted, normalised to v3;
    uid, creationTimestamp and resourceVersion kept, the rest dropped; status dropped."""
    out = load_one("""
apiVersion: crd.projectcalico.org/v1
kind: IPPool
metadata:
  annotations:
    projectcalico.org/metadata: '{"uid":"x","creationTimestamp":"2024-05-01T12:00:00Z"}'
  creationTimestamp: "2024-05-01T12:00:00Z"
  generation: 1
  name: default-ipv4-ippool
  resourceVersion: "1234"
  uid: 5bd1e4b1-0b3c-4b7e-9d55-1b7d7b0e7a3e
  managedFields:
    - manager: calico-node
      operation: Update
spec:
  allowedUses: [Workload, Tunnel]
  blockSize: 26
  cidr: 192.168.0.0/16
  ipipMode: Always
  natOutgoing: true
  nodeSelector: all()
  vxlanMode: Never
status:
  conditions: []
""")
    assert out["apiVersion"] == V3
    assert out["metadata"]["resourceVersion"] == "1234"
    assert out["metadata"]["uid"] == "5bd1e4b1-0b3c-4b7e-9d55-1b7d7b0e7a3e"
    assert "generation" not in out["metadata"] and "status" not in out


def test_lists() -> None:
    typed = {"apiVersion": V3, "kind": "IPPoolList", "metadata": {"resourceVersion": "9"},
             "items": [{"metadata": {"name": "a"}, "spec": {"cidr": "10.1.0.0/16"}},
                       {"apiVersion": V3, "kind": "IPPool", "metadata": {"name": "b"},
                        "spec": {"cidr": "10.2.0.0/16"}}]}  # fmt: skip
    assert [r.name for r in load_resources(typed)] == ["a", "b"]
    mixed = {"apiVersion": "v1", "kind": "List", "items": [pool(), peer(peerIP="10.0.0.1")]}
    assert [type(r) for r in load_resources(mixed)] == [IPPool, BGPPeer]
    assert load_resources({"apiVersion": V3, "kind": "BGPPeerList", "items": None}) == []
    error = refused({"apiVersion": "v1", "kind": "List", "items": [pool(), pool(blockSize=40)]})
    assert str(error) == 'IPPool "pool1" (items[1]): spec.blockSize: 40 is outside 20-32'


def test_kind_names() -> None:
    assert canonical_kind("IPAMConfiguration") == "IPAMConfig"
    assert canonical_kind("Pod") is None
    assert set(KINDS) == {"BGPConfiguration", "BGPPeer", "BGPFilter", "Node", "IPPool",
                          "IPAMConfig"}  # fmt: skip
    doc = ipam_config()
    doc["kind"] = "IPAMConfiguration"
    assert dump(load_resource(doc))["kind"] == "IPAMConfig"


# -- defaults --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"cidr": "10.0.0.0/8"}, {"blockSize": 26, "ipipMode": "Never", "vxlanMode": "Never"}),
        ({"cidr": "fd00::/48"}, {"blockSize": 122}),
        ({"cidr": "10.0.0.0/8", "ipipMode": "", "vxlanMode": ""}, {"ipipMode": "Never"}),
        ({"cidr": "10.0.0.0/8", "blockSize": 0}, {"blockSize": 26}),
        ({"cidr": "10.0.0.0/8", "nodeSelector": ""}, {"nodeSelector": "all()"}),
        ({"cidr": "10.0.0.0/8", "allowedUses": []}, {"allowedUses": ["Workload", "Tunnel"]}),
        ({"cidr": "10.0.0.0/8", "assignmentMode": ""}, {"assignmentMode": "Automatic"}),
        ({"cidr": "10.0.0.0/8"}, {"allowedUses": ["Workload", "Tunnel"]}),
    ],
)
def test_pool_defaults(spec: dict[str, Any], expected: dict[str, Any]) -> None:
    out = dump(load_resource(pool(**spec)))["spec"]
    assert {k: out[k] for k in expected} == expected


def test_pool_omits_false_and_empty_as_calicoctl_does() -> None:
    spec = dump(load_resource(pool(natOutgoing=False, disabled=False, namespaceSelector="")))
    assert {"natOutgoing", "disabled", "disableBGPExport", "namespaceSelector"}.isdisjoint(
        spec["spec"]
    )


def test_empty_values_are_unset() -> None:
    out = dump(load_resource(peer(peerIP="", node="", sourceAddress="", reversePeering="",
                                  nextHopMode="", asNumber=0, maxRestartTime="")))  # fmt: skip
    assert out["spec"] == {"sourceAddress": "UseNodeIP", "reversePeering": "Auto"}


def test_bgp_configuration_default_from_nothing() -> None:
    config = load_resource(bgp_config())
    assert isinstance(config, BGPConfiguration)
    assert dump(config)["spec"] == {
        "logSeverityScreen": "Info", "nodeToNodeMeshEnabled": True, "asNumber": 64512,
        "listenPort": 179, "bindMode": "None", "serviceLoadBalancerAggregation": "Enabled",
    }  # fmt: skip


def test_node_without_status_has_none() -> None:
    resource = load_resource(node({"bgp": {"ipv4Address": "10.0.0.1/24"}}))
    assert isinstance(resource, Node) and resource.status is None
    assert "status" not in dump(resource)


# -- refusals: each rule, with its field and reason ------------------------------------------


def test_message_names_resource_field_and_reason() -> None:
    assert str(refused(pool(blockSize=33))) == 'IPPool "pool1": spec.blockSize: 33 is outside 20-32'


REFUSALS: list[tuple[str, dict[str, Any], str, str]] = [
    # envelope and metadata
    ("api version", {**pool(), "apiVersion": "v1"}, "apiVersion", "is not one of"),
    ("no api version", {k: v for k, v in pool().items() if k != "apiVersion"}, "apiVersion",
     "required"),
    ("kind", {**pool(), "kind": "Pod"}, "kind", "'Pod' is not one of"),
    ("no kind", {k: v for k, v in pool().items() if k != "kind"}, "kind", "required"),
    ("no metadata", {k: v for k, v in pool().items() if k != "metadata"}, "metadata", "required"),
    ("name", {**pool(), "metadata": {"name": "Pool_1"}}, "metadata.name", "not a valid name"),
    ("name length", {**pool(), "metadata": {"name": "a" * 254}}, "metadata.name", "longer than"),
    ("namespace", {**pool(), "metadata": {"name": "p", "namespace": "kube-system"}},
     "metadata.namespace", "IPPool is not a namespaced resource"),
    ("label key", {**pool(), "metadata": {"name": "p", "labels": {"a/b/c": "x"}}},
     "metadata.labels", "prefix"),
    ("label value", {**pool(), "metadata": {"name": "p", "labels": {"a": "-x"}}},
     "metadata.labels", "value '-x'"),
    ("label type", {**pool(), "metadata": {"name": "p", "labels": {"a": True}}},
     "metadata.labels", "must be a string"),
    ("annotation key", {**pool(), "metadata": {"name": "p", "annotations": {"a b": "x"}}},
     "metadata.annotations", "annotation key"),
    ("unknown metadata", {**pool(), "metadata": {"name": "p", "nmae": "q"}}, "metadata.nmae",
     "unknown field"),
    ("spec not a mapping", {**pool(), "spec": ["x"]}, "spec", "must be a mapping"),
    # IPPool
    ("unknown field", pool(ipipmode="Always"), "spec.ipipmode", "unknown field"),
    ("no cidr", {**pool(), "spec": {}}, "spec.cidr", "required"),
    ("cidr", pool(cidr="10.0.0/8"), "spec.cidr", "not an IP address"),
    ("bare address", pool(cidr="10.0.0.0"), "spec.cidr", "address/length"),
    ("host bits", pool(cidr="10.0.0.1/8"), "spec.cidr", "not strictly masked"),
    ("prefix length", pool(cidr="10.0.0.0/33"), "spec.cidr", "prefix length must be 0-32"),
    ("link local v4", pool(cidr="169.254.0.0/20"), "spec.cidr", "link-local range 169.254.0.0/16"),
    ("covers link local", pool(cidr="169.0.0.0/8"), "spec.cidr", "link-local"),
    ("link local v6", pool(cidr="fe80::/64"), "spec.cidr", "link-local range fe80::/10"),
    ("block size v4", pool(blockSize=19), "spec.blockSize", "19 is outside 20-32"),
    ("block size v6", pool(cidr="fd00::/48", blockSize=115), "spec.blockSize", "outside 116-128"),
    ("block size type", pool(blockSize="26"), "spec.blockSize", "must be an integer, not a string"),
    ("smaller than a block", pool(cidr="10.0.0.0/27"), "spec.cidr", "smaller than one block"),
    ("ipip mode", pool(ipipMode="always"), "spec.ipipMode", "is not 'Always', 'CrossSubnet'"),
    ("vxlan mode", pool(vxlanMode="Sometimes"), "spec.vxlanMode", "'Sometimes' is not"),
    ("ipip on v6", pool(cidr="fd00::/48", ipipMode="CrossSubnet"), "spec.ipipMode",
     "IPIP is not supported on an IPv6 pool"),
    ("both encaps", pool(ipipMode="Always", vxlanMode="Always"), "spec.vxlanMode",
     "cannot enable both VXLAN and IPIP"),
    ("lb encap", pool(allowedUses=["LoadBalancer"], vxlanMode="Always"), "spec.vxlanMode",
     "LoadBalancer"),
    ("lb mixed", pool(allowedUses=["LoadBalancer", "Workload"]), "spec.allowedUses",
     "cannot be combined"),
    ("lb selector", pool(allowedUses=["LoadBalancer"], nodeSelector="a == 'b'"),
     "spec.nodeSelector", "all()"),
    ("lb export", pool(allowedUses=["LoadBalancer"], disableBGPExport=True),
     "spec.disableBGPExport", "LoadBalancer"),
    ("use", pool(allowedUses=["Pods"]), "spec.allowedUses[0]", "'Pods' is not"),
    ("use twice", pool(allowedUses=["Tunnel", "Tunnel"]), "spec.allowedUses", "twice"),
    ("assignment", pool(assignmentMode="Auto"), "spec.assignmentMode", "'Auto' is not"),
    ("node selector", pool(nodeSelector="zone = 'a'"), "spec.nodeSelector", "invalid selector"),
    ("namespace selector", pool(namespaceSelector="has(a"), "spec.namespaceSelector",
     "invalid selector"),
    ("nat type", pool(natOutgoing="true"), "spec.natOutgoing", "must be true or false"),
    ("v1 ipip", pool(ipip={"enabled": True}), "spec.ipip", "use ipipMode"),
    ("v1 nat", pool(**{"nat-outgoing": True}), "spec.nat-outgoing", "use natOutgoing"),
    # BGPPeer
    ("peer ip", peer(peerIP="10.0.0.300"), "spec.peerIP", "is not an IP address, <IPv4>:<port>"),
    ("peer port", peer(peerIP="10.0.0.1:0"), "spec.peerIP", "port 0 is outside 1-65535"),
    ("peer v6 port", peer(peerIP="[fd00::1]:70000"), "spec.peerIP", "outside 1-65535"),
    ("peer v6 no brackets", peer(peerIP="fd00::1:179:1:1:1:1:1"), "spec.peerIP", "not an IP"),
    ("node and selector", peer(node="n1", nodeSelector="all()"), "spec.node",
     "must be empty when nodeSelector is set"),
    ("ip and selector", peer(peerIP="10.0.0.1", peerSelector="all()"), "spec.peerIP",
     "must be empty when peerSelector is set"),
    ("as and selector", peer(peerSelector="all()", asNumber=65000), "spec.asNumber",
     "must be empty when peerSelector is set"),
    ("as range", peer(peerIP="10.0.0.1", asNumber=4294967296), "spec.asNumber",
     "4294967296 is outside 0-4294967295"),
    ("as dotted", peer(peerIP="10.0.0.1", asNumber="1.65536"), "spec.asNumber", "0-65535"),
    ("as text", peer(peerIP="10.0.0.1", asNumber="AS65000"), "spec.asNumber",
     "not an AS number"),
    ("as float", peer(peerIP="10.0.0.1", asNumber=1.5), "spec.asNumber", "not a fraction"),
    ("local as", peer(peerIP="10.0.0.1", localASNumber=-1), "spec.localASNumber", "outside"),
    ("next hop", peer(nextHopMode="Other"), "spec.nextHopMode", "'Other' is not"),
    ("keep and mode", peer(keepOriginalNextHop=True, nextHopMode="Self"),
     "spec.keepOriginalNextHop", "deprecated"),
    ("source address", peer(sourceAddress="NodeIP"), "spec.sourceAddress", "'NodeIP' is not"),
    ("reverse", peer(reversePeering="Off"), "spec.reversePeering", "'Off' is not"),
    ("reachable family", peer(peerIP="[fd00::1]:179", reachableBy="10.0.0.1"),
     "spec.reachableBy", "not of peerIP's address family"),
    ("reachable no ip", peer(reachableBy="10.0.0.1"), "spec.reachableBy",
     "must be empty when peerIP is empty"),
    ("reachable address", peer(peerIP="10.0.0.1", reachableBy="gw"), "spec.reachableBy",
     "not an IP address"),
    ("ttl", peer(ttlSecurity=256), "spec.ttlSecurity", "256 is outside 0-255"),
    ("allowed local as", peer(numAllowedLocalASNumbers=-1), "spec.numAllowedLocalASNumbers",
     "outside"),
    ("password key", peer(password={"secretKeyRef": {"name": "s"}}),
     "spec.password.secretKeyRef.key", "required"),
    ("password shape", peer(password={"secret": "x"}), "spec.password.secret", "unknown field"),
    ("restart time", peer(maxRestartTime="2 minutes"), "spec.maxRestartTime", "unknown unit"),
    ("restart negative", peer(maxRestartTime="-1s"), "spec.maxRestartTime", "negative"),
    ("restart number", peer(maxRestartTime=120), "spec.maxRestartTime", "must be a string"),
    ("workload selector as", peer(localWorkloadSelector="app == 'bgp'"), "spec.asNumber",
     "required when localWorkloadSelector"),
    ("workload selector ip", peer(localWorkloadSelector="app == 'bgp'", asNumber=65001,
                                  peerIP="10.0.0.1"), "spec.peerIP", "localWorkloadSelector"),
    ("filter name", peer(filters=["Bad_Name"]), "spec.filters[0]", "not a valid name"),
    ("peer node name", peer(node="Node_1"), "spec.node", "not a valid name"),
    # BGPConfiguration
    ("config name", bgp_config("global"), "metadata.name", "'default' or 'node.<node name>'"),
    ("config node name", bgp_config("node."), "metadata.name", "not a valid name"),
    ("config node prefix", bgp_config("nodes.a"), "metadata.name", "'node.<node name>'"),
    ("node config mesh", bgp_config("node.n1", nodeToNodeMeshEnabled=True),
     "spec.nodeToNodeMeshEnabled", "only be set on the default"),
    ("node config as", bgp_config("node.n1", asNumber=65000), "spec.asNumber",
     "only be set on the default"),
    ("node config services", bgp_config("node.n1", serviceClusterIPs=[{"cidr": "10.96.0.0/12"}]),
     "spec.serviceClusterIPs", "only be set on the default"),
    ("log level", bgp_config(logSeverityScreen="Verbose"), "spec.logSeverityScreen",
     "'Verbose' is not one of Trace, Debug, Info, Warning, Error, Fatal"),
    ("bind mode", bgp_config(bindMode="All"), "spec.bindMode", "'All' is not"),
    ("listen port", bgp_config(listenPort=0), "spec.listenPort", "0 is outside 1-65535"),
    ("listen port high", bgp_config(listenPort=65536), "spec.listenPort", "outside 1-65535"),
    ("aggregation", bgp_config(serviceLoadBalancerAggregation="On"),
     "spec.serviceLoadBalancerAggregation", "'On' is not"),
    ("service cidr", bgp_config(serviceClusterIPs=[{"cidr": "10.96.0.1/12"}]),
     "spec.serviceClusterIPs[0].cidr", "not strictly masked"),
    ("community value", bgp_config(communities=[{"name": "c", "value": "65536:1"}],
                                   prefixAdvertisements=[{"cidr": "10.0.0.0/8",
                                                          "communities": ["c"]}]),
     "spec.communities[0].value", "16-bit"),
    ("large community", bgp_config(communities=[{"name": "c", "value": "1:2:4294967296"}],
                                   prefixAdvertisements=[{"cidr": "10.0.0.0/8",
                                                          "communities": ["c"]}]),
     "spec.communities[0].value", "32-bit"),
    ("community format", bgp_config(communities=[{"name": "c", "value": "1-2"}],
                                    prefixAdvertisements=[{"cidr": "10.0.0.0/8",
                                                           "communities": ["c"]}]),
     "spec.communities[0].value", "aa:nn or aa:nn:mm"),
    ("community unused", bgp_config(communities=[{"name": "c", "value": "1:2"}]),
     "spec.communities", "not used in prefixAdvertisements"),
    ("community unknown", bgp_config(prefixAdvertisements=[{"cidr": "10.0.0.0/8",
                                                            "communities": ["nope"]}]),
     "spec.prefixAdvertisements[0].communities[0]", "is neither a community value"),
    ("advert no communities", bgp_config(prefixAdvertisements=[{"cidr": "10.0.0.0/8",
                                                                "communities": []}]),
     "spec.prefixAdvertisements[0].communities", "at least 1"),
    ("advert cidr", bgp_config(prefixAdvertisements=[{"cidr": "10.0.0.0/33",
                                                      "communities": ["1:1"]}]),
     "spec.prefixAdvertisements[0].cidr", "prefix length"),
    ("mesh password", bgp_config(nodeToNodeMeshEnabled=False,
                                 nodeMeshPassword={"secretKeyRef": {"name": "s", "key": "k"}}),
     "spec.nodeMeshPassword", "nodeToNodeMeshEnabled is false"),
    ("mesh restart", bgp_config(nodeToNodeMeshEnabled=False, nodeMeshMaxRestartTime="1m"),
     "spec.nodeMeshMaxRestartTime", "nodeToNodeMeshEnabled is false"),
    ("mesh restart format", bgp_config(nodeMeshMaxRestartTime="1 m"),
     "spec.nodeMeshMaxRestartTime", "unknown unit"),
    ("ignored interface", bgp_config(ignoredInterfaces=["*"]), "spec.ignoredInterfaces",
     "not '*' alone"),
    ("workload peering v4", bgp_config(localWorkloadPeeringIPV4="fd00::1"),
     "spec.localWorkloadPeeringIPV4", "not an IPv4 address"),
    # BGPFilter
    ("filter v4 cidr", bgp_filter(exportV4=[{"action": "Accept", "cidr": "fd00::/64",
                                             "matchOperator": "In"}]),
     "spec.exportV4[0].cidr", "not an IPv4 CIDR"),
    ("filter v6 cidr", bgp_filter(importV6=[{"action": "Accept", "cidr": "10.0.0.0/8",
                                             "matchOperator": "In"}]),
     "spec.importV6[0].cidr", "not an IPv6 CIDR"),
    ("filter masked", bgp_filter(importV4=[{"action": "Accept", "cidr": "10.0.0.1/8",
                                            "matchOperator": "In"}]),
     "spec.importV4[0].cidr", "not strictly masked"),
    ("filter operator needed", bgp_filter(exportV4=[{"action": "Reject", "cidr": "10.0.0.0/8"}]),
     "spec.exportV4[0].matchOperator", "required when cidr is set"),
    ("filter cidr needed", bgp_filter(exportV4=[{"action": "Reject", "matchOperator": "In"}]),
     "spec.exportV4[0].cidr", "required when matchOperator is set"),
    ("filter length needs cidr", bgp_filter(exportV4=[{"action": "Reject",
                                                       "prefixLength": {"min": 8}}]),
     "spec.exportV4[0].cidr", "required when prefixLength is set"),
    ("filter length v4", bgp_filter(exportV4=[{"action": "Reject", "cidr": "10.0.0.0/8",
                                               "matchOperator": "In",
                                               "prefixLength": {"max": 33}}]),
     "spec.exportV4[0].prefixLength.max", "33 is outside 0-32"),
    ("filter length v6", bgp_filter(exportV6=[{"action": "Reject", "cidr": "fd00::/8",
                                               "matchOperator": "In",
                                               "prefixLength": {"min": 129}}]),
     "spec.exportV6[0].prefixLength.min", "129 is outside 0-128"),
    ("filter min above max", bgp_filter(exportV4=[{"action": "Reject", "cidr": "10.0.0.0/8",
                                                   "matchOperator": "In",
                                                   "prefixLength": {"min": 28, "max": 24}}]),
     "spec.exportV4[0].prefixLength.min", "above max 24"),
    ("filter action", bgp_filter(exportV4=[{"cidr": "10.0.0.0/8", "matchOperator": "In"}]),
     "spec.exportV4[0].action", "required"),
    ("filter action value", bgp_filter(exportV4=[{"action": "Allow"}]),
     "spec.exportV4[0].action", "'Allow' is not"),
    ("filter source", bgp_filter(exportV4=[{"action": "Accept", "source": "LocalPeers"}]),
     "spec.exportV4[0].source", "'LocalPeers' is not"),
    ("filter operator", bgp_filter(exportV4=[{"action": "Accept", "cidr": "10.0.0.0/8",
                                              "matchOperator": "Contains"}]),
     "spec.exportV4[0].matchOperator", "'Contains' is not"),
    ("filter interface", bgp_filter(exportV4=[{"action": "Accept", "interface": "a" * 16}]),
     "spec.exportV4[0].interface", "1-15"),
    # IPAMConfig
    ("ipam name", ipam_config("global"), "metadata.name", "must be named 'default'"),
    ("ipam both false", ipam_config(strictAffinity=False, autoAllocateBlocks=False),
     "spec.autoAllocateBlocks", "cannot both be false"),
    ("ipam max needs strict", ipam_config(maxBlocksPerHost=4), "spec.maxBlocksPerHost",
     "requires strictAffinity"),
    ("ipam max negative", ipam_config(strictAffinity=True, maxBlocksPerHost=-1),
     "spec.maxBlocksPerHost", "outside 0-2147483647"),
    ("ipam unknown", ipam_config(strictAfinity=True), "spec.strictAfinity", "unknown field"),
    # Node
    ("node ipv4", node({"bgp": {"ipv4Address": "fd00::1/64"}}), "spec.bgp.ipv4Address",
     "not an IPv4 CIDR"),
    ("node ipv4 junk", node({"bgp": {"ipv4Address": "10.0.0.5/40"}}), "spec.bgp.ipv4Address",
     "prefix length"),
    ("node ipv6", node({"bgp": {"ipv6Address": "10.0.0.5/24"}}), "spec.bgp.ipv6Address",
     "not an IPv6 CIDR"),
    ("rr cluster id", node({"bgp": {"routeReflectorClusterID": "fd00::1"}}),
     "spec.bgp.routeReflectorClusterID", "not an IPv4 address"),
    ("rr cluster id junk", node({"bgp": {"routeReflectorClusterID": "cluster-1"}}),
     "spec.bgp.routeReflectorClusterID", "not an IP address"),
    ("node as", node({"bgp": {"asNumber": "x"}}), "spec.bgp.asNumber", "not an AS number"),
    ("node empty bgp", node({"bgp": {}}), "spec.bgp", "must not be empty"),
    ("ipip tunnel", node({"bgp": {"ipv4IPIPTunnelAddr": "10.0.0.1/32"}}),
     "spec.bgp.ipv4IPIPTunnelAddr", "not an IP address"),
    ("vxlan mac", node({"vxlanTunnelMACAddr": "66:d8:0b:94:f6"}), "spec.vxlanTunnelMACAddr",
     "not a MAC address"),
    ("vxlan v6 addr", node({"ipv6VXLANTunnelAddr": "10.0.0.1"}), "spec.ipv6VXLANTunnelAddr",
     "not an IPv6 address"),
    ("node address type", node({"addresses": [{"address": "10.0.0.5/24", "type": "Other"}]}),
     "spec.addresses[0].type", "'Other' is not"),
    ("node address", node({"addresses": [{"address": "10.0.0.5/24/1"}]}),
     "spec.addresses[0].address", "prefix length"),
    ("orchestrator", node({"orchRefs": [{"nodeName": "x"}]}), "spec.orchRefs[0].orchestrator",
     "required"),
    ("wireguard", node({"wireguard": {"interfaceIPv6Address": "10.0.0.1"}}),
     "spec.wireguard.interfaceIPv6Address", "not an IPv6"),
    ("pod cidrs", node({}, status={"podCIDRs": ["10.244.0.0/33"]}), "status.podCIDRs[0]",
     "prefix length"),
    ("wireguard key", node({}, status={"wireguardPublicKey": "abc"}), "status.wireguardPublicKey",
     "WireGuard public key"),
    ("node status field", node({}, status={"phase": "Ready"}), "status.phase", "unknown field"),
]


@pytest.mark.parametrize(
    ("doc", "path", "reason"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_refused_with_field_and_reason(doc: dict[str, Any], path: str, reason: str) -> None:
    error = refused(doc)
    assert any(p == path and reason in r for p, r in error.problems), error.problems
    assert f"{path}: " in str(error)


def test_all_problems_of_a_spec_are_reported() -> None:
    error = refused(pool(cidr="10.0.0.1/8", foo=1, blockSize="x"))
    assert [p for p, _ in error.problems] == ["spec.cidr", "spec.blockSize", "spec.foo"]


def test_not_a_mapping() -> None:
    assert "must be a mapping" in str(refused(["x"]))  # type: ignore[arg-type]


# -- values ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [("120s", "2m0s"), ("2m30s", "2m30s"), ("1.5h", "1h30m0s"), ("90s", "1m30s"),
     ("300ms", "300ms"), ("1500ms", "1.5s"), ("0", "0s"), ("1h", "1h0m0s"), ("2us", "2\u00b5s"),
     ("5\u03bcs", "5\u00b5s"), ("1ns", "1ns"), ("+3s", "3s"), ("1h2m3.004s", "1h2m3.004s"),
     (".5s", "500ms"), ("1.s", "1s")],
)  # fmt: skip
def test_go_durations(text: str, shown: str) -> None:
    assert format_duration(parse_duration(text)) == shown


@pytest.mark.parametrize("text", ["", "5", "1x", "1.5", "s", ".s", "1h-2m", "9999999999h"])
def test_bad_go_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_durations_round_trip(nanoseconds: int) -> None:
    assert parse_duration(format_duration(nanoseconds)) == nanoseconds


@pytest.mark.parametrize(
    ("value", "number"),
    [(64512, 64512), ("64512", 64512), ("1.10", 65546), ("65535.65535", 4294967295),
     (0, 0), ("0.0", 0)],
)  # fmt: skip
def test_as_numbers(value: object, number: int) -> None:
    assert parse_as_number(value) == number


@pytest.mark.parametrize("value", [True, -1, 2**32, "1.2.3", "65536.0", "", "a.b", "١٢"])
def test_bad_as_numbers(value: object) -> None:
    with pytest.raises(ValueError):
        parse_as_number(value)


# -- dump -> load -> dump is a fixed point ---------------------------------------------------

NAMES = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)


@st.composite
def pools(draw: st.DrawFn) -> dict[str, Any]:
    v6 = draw(st.booleans())
    if v6:
        length = draw(st.integers(48, 122))
        network = draw(st.integers(0, 2 ** (length - 8) - 1)) << (128 - length) | 0xFD << 120
        cidr = f"{ipaddress.IPv6Address(network)}/{length}"
        block = draw(st.integers(max(length, 116), 128))
        modes = {"vxlanMode": draw(st.sampled_from(["Always", "CrossSubnet", "Never", ""]))}
    else:
        length = draw(st.integers(8, 26))
        first = draw(st.sampled_from([10, 100, 172, 192]))
        cidr = f"{first}.0.0.0/{length}" if length >= 8 else f"{first}.0.0.0/8"
        block = draw(st.integers(max(length, 20), 32))
        encap = draw(st.sampled_from(["ipipMode", "vxlanMode"]))
        modes = {encap: draw(st.sampled_from(["Always", "CrossSubnet", "Never", ""]))}
    spec: dict[str, Any] = {"cidr": cidr, "blockSize": block, **modes}
    for field in ("natOutgoing", "disabled", "disableBGPExport"):
        if draw(st.booleans()):
            spec[field] = draw(st.booleans())
    if draw(st.booleans()):
        spec["nodeSelector"] = draw(st.sampled_from(["all()", "zone == 'a'", "!has(edge)", ""]))
    if draw(st.booleans()):
        spec["allowedUses"] = draw(st.sampled_from([["Workload"], ["Tunnel", "Workload"], []]))
    if draw(st.booleans()):
        spec["assignmentMode"] = draw(st.sampled_from(["Automatic", "Manual"]))
    return {"apiVersion": draw(st.sampled_from([V3, "crd.projectcalico.org/v1"])),
            "kind": "IPPool", "metadata": {"name": draw(NAMES)}, "spec": spec}  # fmt: skip


@st.composite
def peers(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if draw(st.booleans()):
        spec["peerSelector"] = draw(st.sampled_from(["route-reflector == 'true'", "all()"]))
    else:
        address = draw(st.sampled_from(["10.0.0.1", "fd00::1"]))
        port = draw(st.none() | st.integers(1, 65535))
        spec["peerIP"] = address if port is None else (
            f"{address}:{port}" if "." in address else f"[{address}]:{port}"
        )
        spec["asNumber"] = draw(st.integers(1, 2**32 - 1) | st.just("64512.1"))
    if draw(st.booleans()):
        spec["nodeSelector"] = "rack == 'r1'"
    elif draw(st.booleans()):
        spec["node"] = draw(NAMES)
    if draw(st.booleans()):
        spec["maxRestartTime"] = draw(st.sampled_from(["120s", "0", "1h", "1.5m", "250ms"]))
    if draw(st.booleans()):
        spec["ttlSecurity"] = draw(st.integers(0, 255))
    for field, values in (("sourceAddress", ["UseNodeIP", "None"]),
                          ("reversePeering", ["Auto", "Manual"]),
                          ("nextHopMode", ["Auto", "Self", "Keep"])):  # fmt: skip
        if draw(st.booleans()):
            spec[field] = draw(st.sampled_from(values))
    if draw(st.booleans()):
        spec["filters"] = draw(st.lists(NAMES, max_size=3))
    return {"apiVersion": V3, "kind": "BGPPeer", "metadata": {"name": draw(NAMES)}, "spec": spec}


@st.composite
def configurations(draw: st.DrawFn) -> dict[str, Any]:
    default = draw(st.booleans())
    spec: dict[str, Any] = {}
    if draw(st.booleans()):
        spec["logSeverityScreen"] = draw(st.sampled_from(["info", "DEBUG", "Warning", ""]))
    if draw(st.booleans()):
        spec["listenPort"] = draw(st.integers(1, 65535))
    if default:
        if draw(st.booleans()):
            spec["nodeToNodeMeshEnabled"] = draw(st.booleans())
        if draw(st.booleans()):
            spec["asNumber"] = draw(st.integers(0, 2**32 - 1))
    if draw(st.booleans()):
        value = draw(st.sampled_from(["65000:100", "4200000000:1:2"]))
        spec["communities"] = [{"name": "c1", "value": value}]
        spec["prefixAdvertisements"] = [{"cidr": "10.0.0.0/8", "communities": ["c1", "1:2"]}]
    name = "default" if default else f"node.{draw(NAMES)}"
    return {"apiVersion": V3, "kind": "BGPConfiguration", "metadata": {"name": name}, "spec": spec}


@given(pools() | peers() | configurations())
def test_dump_load_dump_is_stable(doc: dict[str, Any]) -> None:
    first = dump(load_resource(doc))
    again = dump(load_resource(copy.deepcopy(first)))
    assert again == first
    assert first["apiVersion"] == V3


@given(pools())
def test_generated_pools_are_valid(doc: dict[str, Any]) -> None:
    out = dump(load_resource(doc))
    assert out["spec"]["blockSize"] >= int(out["spec"]["cidr"].split("/")[1])


# -- value parsers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "strict", "need_length", "network"),
    [("10.0.0.0/8", True, False, "10.0.0.0/8"), ("10.0.0.5", True, False, "10.0.0.5/32"),
     ("10.0.0.5/24", False, False, "10.0.0.0/24"), ("fd00:0::/48", True, True, "fd00::/48"),
     ("::/0", True, True, "::/0")],
)  # fmt: skip
def test_networks(text: str, strict: bool, need_length: bool, network: str) -> None:
    assert str(parse_network(text, strict=strict, need_length=need_length)) == network


@pytest.mark.parametrize(
    ("text", "need_length", "reason"),
    [("10.0.0.0/255.0.0.0", False, "prefix length"), ("10.0.0.0/+8", False, "prefix length"),
     ("10.0.0.0/0008", False, "prefix length"), ("fe80::1%eth0/64", False, "not an IP address"),
     ("10.0.0.5", True, "address/length"), ("10.0.0.1/24", False, "not strictly masked"),
     ("10.0.0.0/", False, "prefix length"), ("010.0.0.0/8", False, "not an IP address")],
)  # fmt: skip
def test_bad_networks(text: str, need_length: bool, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        parse_network(text, strict=True, need_length=need_length)


@pytest.mark.parametrize(
    ("value", "reason"),
    [("65535:65535", None), ("0:0", None), ("4294967295:0:4294967295", None),
     ("65536:1", "16-bit"), ("1:2:4294967296", "32-bit"), ("1:2:3:4", "aa:nn or aa:nn:mm"),
     ("no-export", "aa:nn or aa:nn:mm"), ("1:", "aa:nn or aa:nn:mm")],
)  # fmt: skip
def test_communities(value: str, reason: str | None) -> None:
    why = community_problem(value)
    assert why is None if reason is None else reason in (why or "")


@pytest.mark.parametrize(
    ("mac", "good"),
    [("66:d8:0b:94:f6:1a", True), ("66-D8-0B-94-F6-1A", True), ("66d8.0b94.f61a", True),
     ("66:d8:0b:94:f6", False), ("66:d8:0b:94:f6:1a:00:00", False), ("zz:d8:0b:94:f6:1a", False)],
)  # fmt: skip
def test_mac_addresses(mac: str, good: bool) -> None:
    doc = node({"vxlanTunnelMACAddr": mac})
    if good:
        assert dump(load_resource(doc))["spec"]["vxlanTunnelMACAddr"] == mac
    else:
        assert refused(doc).problems[0][0] == "spec.vxlanTunnelMACAddr"


def test_peer_ip_forms() -> None:
    assert split_peer_ip("10.0.0.1") == ("10.0.0.1", None)
    assert split_peer_ip("10.0.0.1:1790") == ("10.0.0.1", 1790)
    assert split_peer_ip("[fd00::1]:179") == ("fd00::1", 179)
    assert split_peer_ip("fd00::1") == ("fd00::1", None)
    for bad in ("[fd00::1]", "10.0.0.1:", "host:179", "[10.0.0.1]:179x", "10.0.0.1:65536"):
        with pytest.raises(ValueError):
            split_peer_ip(bad)
