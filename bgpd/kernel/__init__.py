"""bgpd/kernel: see DESIGN.md (filled in by the issue that builds it)."""
