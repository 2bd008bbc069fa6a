"""Calico's IPAM: pools cut into blocks, blocks claimed by nodes, addresses handed
out from them under handles (CALICO.md §4)."""
