"""``bgpd``: the node's long-running processes.

    bgpd node       the speaker of a Kubernetes node (calico-node's BGP part)
    bgpd reflector  the same speaker as a dedicated route reflector on a master
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from .node.main import main as node_main  # noqa: PLC0415 - keeps `bgpd --help` light

    return node_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
