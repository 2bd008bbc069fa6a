"""bgpd: a Python, asyncio-based replacement for calico-node."""
