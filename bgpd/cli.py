"""``bgpd``: the node's long-running processes.

    bgpd node       the speaker of a Kubernetes node (calico-node's BGP part)
    bgpd reflector  the same speaker as a dedicated route reflector on a master
    bgpd policy     the NetworkPolicy agent (nftables)
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["policy"]:
        from .policy.main import main as policy_main  # noqa: PLC0415 - keeps `bgpd --help` light

        return policy_main(args[1:])
    from .node.main import main as node_main  # noqa: PLC0415

    return node_main(args)


if __name__ == "__main__":
    sys.exit(main())
