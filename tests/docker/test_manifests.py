"""docker/daemonset.yaml and docker/reflector.yaml, read as the API server would
read them (no cluster here): what must be right for the pods to start and work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bgpd.node import api
from tests.docker.harness import DOCKER, Host, load

install_cni = load("install_cni")

NODE_MANIFEST = DOCKER / "daemonset.yaml"
REFLECTOR_MANIFEST = DOCKER / "reflector.yaml"
MANIFESTS = (NODE_MANIFEST, REFLECTOR_MANIFEST)

CALICO_KINDS = (
    "bgpconfigurations", "bgppeers", "bgpfilters", "ippools", "ipamconfigs", "ipamblocks",
    "blockaffinities", "ipamhandles",
)
#: What the node agent reads or writes through the API server: (group, resource, verb).
NODE_NEEDS = {
    *(("", "nodes", v) for v in ("get", "list", "watch", "patch")),
    ("", "nodes/status", "patch"),
    *(("", r, v) for r in ("pods", "namespaces") for v in ("get", "list", "watch")),
    *(("networking.k8s.io", "networkpolicies", v) for v in ("get", "list", "watch")),
    *(("crd.projectcalico.org", r, v) for r in CALICO_KINDS for v in ("get", "list", "watch")),
}
REFLECTOR_NEEDS = {
    (g, r, v) for g, r, v in NODE_NEEDS if r not in ("pods", "namespaces", "networkpolicies")
}
#: The pod mounts the host's folders where install-cni looks by default, and
#: the library folder the launchers name (BGPD_LIB_DIR) is the one it mounts.
INSTALL_MOUNTS = {
    "/host/opt/cni/bin": "/opt/cni/bin",
    "/host/etc/cni/net.d": "/etc/cni/net.d",
    "/host/opt/bgpd": "/opt/bgpd",
}


def documents(path: Path) -> list[dict[str, Any]]:
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    assert all(isinstance(d, dict) for d in docs)
    return docs


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc


def pod_spec(path: Path) -> dict[str, Any]:
    spec: dict[str, Any] = one(documents(path), "DaemonSet")["spec"]["template"]["spec"]
    return spec


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", ())}


def main_container(spec: dict[str, Any]) -> dict[str, Any]:
    (container,) = spec["containers"]
    return container  # type: ignore[no-any-return]


def install_container(spec: dict[str, Any]) -> dict[str, Any]:
    (container,) = [c for c in spec.get("initContainers", ()) if c["name"] == "install-cni"]
    return container  # type: ignore[no-any-return]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_volume_mount_has_a_volume_and_every_volume_is_mounted(path: Path) -> None:
    spec = pod_spec(path)
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert len(volumes) == len(spec["volumes"]), "duplicate volume names"
    mounted = set()
    for container in spec["containers"] + spec.get("initContainers", []):
        paths = [m["mountPath"] for m in container.get("volumeMounts", ())]
        assert len(paths) == len(set(paths)), f"{container['name']}: a path mounted twice"
        for mount in container.get("volumeMounts", ()):
            assert mount["name"] in volumes, f"{container['name']}: no volume {mount['name']}"
            mounted.add(mount["name"])
    assert mounted == set(volumes), f"volumes never mounted: {set(volumes) - mounted}"


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_probes_ask_the_agents_api_on_its_default_address(path: Path) -> None:
    container = main_container(pod_spec(path))
    for probe, route in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container[probe]["httpGet"]
        assert get["port"] == api.DEFAULT_PORT == 9179
        assert get["host"] == api.DEFAULT_HOST  # the API listens on loopback only
        assert get["path"] == route
    assert pod_spec(path)["hostNetwork"] is True  # so the kubelet's 127.0.0.1 is the agent's


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_node_name_comes_from_spec_node_name(path: Path) -> None:
    spec = pod_spec(path)
    by_field = {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env_of(main_container(spec))["NODENAME"] == by_field
    assert env_of(install_container(spec))["KUBERNETES_NODE_NAME"] == by_field


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_the_pod_runs_privileged_on_the_host_as_system_node_critical(path: Path) -> None:
    daemonset = one(documents(path), "DaemonSet")
    spec = daemonset["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True
    assert spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert spec["priorityClassName"] == "system-node-critical"
    assert main_container(spec)["securityContext"]["privileged"] is True
    assert spec["terminationGracePeriodSeconds"] > 0
    strategy = daemonset["spec"]["updateStrategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}
    labels = daemonset["spec"]["template"]["metadata"]["labels"]
    assert daemonset["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_the_node_agent_tolerates_every_taint() -> None:
    assert {"operator": "Exists"} in pod_spec(NODE_MANIFEST)["tolerations"]


def test_reflectors_run_on_labelled_masters_and_the_node_agent_keeps_off_them() -> None:
    """Both speakers listen on the host's port 179: never both on one node."""
    reflector = pod_spec(REFLECTOR_MANIFEST)
    assert reflector["nodeSelector"]["route-reflector"] == "true"
    tolerated = {(t.get("key"), t.get("effect")) for t in reflector["tolerations"]}
    assert ("node-role.kubernetes.io/control-plane", "NoSchedule") in tolerated
    terms = pod_spec(NODE_MANIFEST)["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]  # fmt: skip
    for term in terms:  # ORed: every term must exclude reflector nodes
        assert {"key": "route-reflector", "operator": "NotIn", "values": ["true"]} in term[
            "matchExpressions"]  # fmt: skip
    assert env_of(main_container(reflector))["BGPD_PROCESSES"] == "reflector"
    node_env = env_of(main_container(pod_spec(NODE_MANIFEST)))
    assert node_env["BGPD_PROCESSES"].split() == ["node", "policy"]


@pytest.mark.parametrize(
    ("path", "needs"), [(NODE_MANIFEST, NODE_NEEDS), (REFLECTOR_MANIFEST, REFLECTOR_NEEDS)],
    ids=["daemonset.yaml", "reflector.yaml"],
)  # fmt: skip
def test_rbac_covers_what_the_agent_reads_and_is_bound_to_its_account(
    path: Path, needs: set[tuple[str, str, str]]
) -> None:
    docs = documents(path)
    role, binding, account = (one(docs, k) for k in (
        "ClusterRole", "ClusterRoleBinding", "ServiceAccount"))  # fmt: skip
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert needs <= granted, f"missing: {sorted(needs - granted)}"
    assert not any("*" in item for item in granted), "no wildcards"
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }  # fmt: skip
    assert binding["subjects"] == [{
        "kind": "ServiceAccount", "name": account["metadata"]["name"],
        "namespace": account["metadata"]["namespace"],
    }]  # fmt: skip
    daemonset = one(docs, "DaemonSet")
    pod = daemonset["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert daemonset["metadata"]["namespace"] == account["metadata"]["namespace"]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_install_cni_container_mounts_what_install_cni_writes(path: Path) -> None:
    spec = pod_spec(path)
    container = install_container(spec)
    assert container["args"] == ["install-cni"]
    env = env_of(container)
    assert env["SLEEP"] == "false"  # an init container must end
    assert env.get("CNI_CONF_NAME", "10-bgpd.conflist") == "10-bgpd.conflist"
    defaults = install_cni.Settings.from_env({"SLEEP": "false", "KUBERNETES_NODE_NAME": "n"})
    assert defaults.bin_dirs[0] in INSTALL_MOUNTS
    assert defaults.net_mount_dir in INSTALL_MOUNTS
    assert INSTALL_MOUNTS[defaults.lib_mount_dir] == defaults.lib_dir
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    for inside, on_host in INSTALL_MOUNTS.items():
        assert mounts[inside]["hostPath"]["path"] == on_host
    assert not any(m.get("readOnly") for m in container["volumeMounts"])


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_the_state_directory_has_the_same_path_on_the_host(path: Path) -> None:
    """The plugin runs on the host and reads the state folder at the path the
    conflist names, which is the container's BGPD_STATE_DIR."""
    spec = pod_spec(path)
    container = main_container(spec)
    state = env_of(container)["BGPD_STATE_DIR"]
    assert env_of(install_container(spec))["BGPD_STATE_DIR"] == state
    volumes = {v["name"]: v for v in spec["volumes"]}
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == state]
    assert volumes[mount["name"]]["hostPath"]["path"] == state
    assert not mount.get("readOnly")


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_the_processes_run_under_the_entrypoint_which_installed_nothing_twice(path: Path) -> None:
    container = main_container(pod_spec(path))
    assert "command" not in container  # the image's ENTRYPOINT: PID 1 passes SIGTERM on
    assert "args" not in container
    assert env_of(container)["INSTALL_CNI"] == "false"  # the init container did


def test_every_container_runs_one_image() -> None:
    images = set()
    for path in MANIFESTS:
        spec = pod_spec(path)
        images |= {c["image"] for c in spec["containers"] + spec.get("initContainers", [])}
    assert len(images) == 1, images


def test_the_configmap_template_renders_as_the_built_in_one(tmp_path: Path) -> None:
    """An operator edits the ConfigMap's copy; as shipped it is the built-in one."""
    config = one(documents(NODE_MANIFEST), "ConfigMap")
    assert config["metadata"]["name"] == "bgpd-config"
    template = config["data"]["cni_network_config"]
    assert config["data"]["veth_mtu"] == "0"
    env = Host(tmp_path).env(CNI_MTU=config["data"]["veth_mtu"])
    from_map = install_cni.Settings.from_env({**env, "CNI_NETWORK_CONFIG": template})
    built_in = install_cni.Settings.from_env(env)
    assert from_map.template_source == "CNI_NETWORK_CONFIG"
    assert built_in.template_source == "the built-in template"
    assert install_cni.render(from_map)[1] == install_cni.render(built_in)[1]
    refs = [
        e["valueFrom"]["configMapKeyRef"]
        for path in MANIFESTS
        for e in install_container(pod_spec(path))["env"]
        if "configMapKeyRef" in e.get("valueFrom", {})
    ]
    assert refs and all(r["name"] == "bgpd-config" and r["key"] in config["data"] for r in refs)
