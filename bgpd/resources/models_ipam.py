"""IPPool and IPAMConfig (CALICO.md §2.4, §4.1), with the checks of Calico's
validator and of ``clientv3/ippool.go``'s validateAndSetDefaults that need only
the pool itself.  The checks against other pools and existing blocks (overlap,
pool in use) need the datastore: ``store.py``.

IPAM (``bgpd.ipam.pools``) reads a stored pool's ``cidr``, ``blockSize``,
``nodeSelector``, ``namespaceSelector``, ``ipipMode``, ``vxlanMode``,
``natOutgoing``, ``disabled``, ``allowedUses`` and ``assignmentMode``; the
canonical form fills in what Calico defaults (blockSize 26 or 122, both modes
Never, nodeSelector all(), allowedUses [Workload, Tunnel], assignmentMode
Automatic), so every reader sees the same values.

IPAMConfig is one object, named ``default``.  IPAM keeps it flat at
``ipam/config``; ``store.py`` converts.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from .models_base import INT32_MAX, Model, Problems, Resource, problem
from .models_values import Flag, Selector, check_selector, in_range, parse_network

Use = Literal["Workload", "Tunnel", "LoadBalancer"]
DEFAULT_BLOCK_SIZE = {4: 26, 6: 122}
BLOCK_SIZES = {4: (20, 32), 6: (116, 128)}
DEFAULT_USES: tuple[Use, ...] = ("Workload", "Tunnel")
LINK_LOCAL = {4: ipaddress.ip_network("169.254.0.0/16"), 6: ipaddress.ip_network("fe80::/10")}


def _pool_cidr(value: object) -> object:
    """Normalised (``fd00:0::/48`` -> ``fd00::/48``), strictly masked, not link-local."""
    if not isinstance(value, str):
        return value
    network = parse_network(value.strip(), strict=True, need_length=True)
    local = LINK_LOCAL[network.version]
    if network.overlaps(local):
        raise ValueError(f"{value!r} overlaps the IPv{network.version} link-local range {local}")
    return str(network)


def _encap_mode(value: object) -> object:
    return "Never" if value == "" or value is None else value


def _selector_or_all(value: object) -> object:
    return "all()" if value == "" or value is None else value


def _zero_is_unset(value: object) -> object:
    return None if value == 0 and value is not False else value


EncapMode = Annotated[Literal["Always", "CrossSubnet", "Never"], BeforeValidator(_encap_mode)]


class IPPoolSpec(Model):
    cidr: Annotated[str, BeforeValidator(_pool_cidr)]
    vxlan_mode: EncapMode = Field(default="Never", alias="vxlanMode")
    ipip_mode: EncapMode = Field(default="Never", alias="ipipMode")
    nat_outgoing: Flag = Field(default=None, alias="natOutgoing")
    disabled: Flag = None
    disable_bgp_export: Flag = Field(default=None, alias="disableBGPExport")
    block_size: Annotated[int | None, BeforeValidator(_zero_is_unset)] = Field(
        default=None, alias="blockSize"
    )
    node_selector: Annotated[
        str, BeforeValidator(check_selector), BeforeValidator(_selector_or_all)
    ] = Field(
        default="all()", alias="nodeSelector"
    )
    namespace_selector: Selector = Field(default=None, alias="namespaceSelector")
    allowed_uses: list[Use] | None = Field(default=None, alias="allowedUses")
    assignment_mode: Literal["Automatic", "Manual"] = Field(
        default="Automatic", alias="assignmentMode"
    )
    # APIv1 leftovers Calico's v3 refuses (mustBeNil, mustBeFalse).
    ipip: Any = Field(default=None, exclude=True)
    nat_outgoing_v1: Flag = Field(default=None, alias="nat-outgoing", exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_assignment(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("assignmentMode") in ("", None):
            data = {k: v for k, v in data.items() if k != "assignmentMode"}
        return data

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(self.cidr)

    @model_validator(mode="after")
    def _rules(self) -> IPPoolSpec:
        found: list[tuple[str, str]] = []
        if self.ipip is not None:
            found.append(("ipip", "the APIv1 field is not allowed: use ipipMode"))
        if self.nat_outgoing_v1:
            found.append(("nat-outgoing", "the APIv1 field is not allowed: use natOutgoing"))
        network = self.network
        family = network.version
        if self.block_size is None:
            self.block_size = DEFAULT_BLOCK_SIZE[family]
        low, high = BLOCK_SIZES[family]
        if not low <= self.block_size <= high:
            found.append(("blockSize", f"{self.block_size} is outside {low}-{high}"))
        elif not self.disabled and network.prefixlen > self.block_size:
            found.append(("cidr", f"{self.cidr} is smaller than one block (/{self.block_size}): "
                          "an enabled pool needs at least one"))  # fmt: skip
        if not self.allowed_uses:
            self.allowed_uses = list(DEFAULT_USES)
        elif len(set(self.allowed_uses)) != len(self.allowed_uses):
            found.append(("allowedUses", "lists a use twice"))
        ipip = self.ipip_mode != "Never"
        vxlan = self.vxlan_mode != "Never"
        if family == 6 and ipip:
            found.append(("ipipMode", "IPIP is not supported on an IPv6 pool"))
        if ipip and vxlan:
            found.append(("vxlanMode", "cannot enable both VXLAN and IPIP on the same pool"))
        if "LoadBalancer" in self.allowed_uses:
            if len(self.allowed_uses) > 1:
                found.append(("allowedUses", "LoadBalancer cannot be combined with Workload "
                              "or Tunnel"))  # fmt: skip
            if ipip or vxlan:
                found.append(("ipipMode" if ipip else "vxlanMode", "neither IPIP nor VXLAN "
                              "may be enabled on a pool whose allowedUses include LoadBalancer"))
            if self.node_selector != "all()":
                found.append(("nodeSelector", "a LoadBalancer pool's node selector must be "
                              "all()"))  # fmt: skip
            if self.disable_bgp_export:
                found.append(("disableBGPExport", "must not be true on a LoadBalancer pool"))
        if found:
            raise Problems(found)
        return self


class IPPool(Resource):
    """A range of addresses IPAM hands out in blocks, and how they are routed."""

    KIND = "IPPool"
    spec: IPPoolSpec


class IPAMConfigSpec(Model):
    strict_affinity: bool = Field(default=False, alias="strictAffinity")
    auto_allocate_blocks: bool = Field(default=True, alias="autoAllocateBlocks")
    max_blocks_per_host: Annotated[int, in_range(0, INT32_MAX)] = Field(
        default=0, alias="maxBlocksPerHost"
    )

    @model_validator(mode="after")
    def _rules(self) -> IPAMConfigSpec:
        if not self.strict_affinity and not self.auto_allocate_blocks:
            raise problem("autoAllocateBlocks", "strictAffinity and autoAllocateBlocks cannot "
                          "both be false")  # fmt: skip
        if self.max_blocks_per_host and not self.strict_affinity:
            raise problem("maxBlocksPerHost", "a non-zero limit requires strictAffinity: true")
        return self


class IPAMConfig(Resource):
    """IPAM's settings.  It keeps no metadata but its name: the flat record IPAM
    reads has room for nothing else (labels and annotations given are dropped)."""

    KIND = "IPAMConfig"
    spec: IPAMConfigSpec = Field(default_factory=IPAMConfigSpec)

    @model_validator(mode="after")
    def _named_default(self) -> IPAMConfig:
        if self.metadata.name != "default":
            raise problem("metadata.name", f"{self.metadata.name!r}: the IPAMConfig must be "
                          "named 'default'")  # fmt: skip
        return self

    def flat(self) -> dict[str, Any]:
        """The record IPAM reads at ``ipam/config``."""
        return self.spec.model_dump()
