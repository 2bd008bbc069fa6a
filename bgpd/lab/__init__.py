"""A local cluster in network namespaces on this machine (``make run``,
``python -m bgpd.lab``) and the end-to-end tests' and benchmarks' lab.

- ``topology``: the namespaces: a fabric (one bridge, or two subnets and a
  router for CrossSubnet), the nodes, the pods;
- ``agent``: one node agent per node namespace, and its unix-socket HTTP API;
- ``resources``: the datastore's starting resources and ``apply``;
- ``cluster``: ``Lab``, which puts them together and cleans them all up;
- ``pinger``: a ping flood that reports every lost echo;
- ``__main__``: the command.
"""

from .cluster import Flood, Lab, PingResult, Pod
from .topology import LabError, wait_for

__all__ = ["Flood", "Lab", "LabError", "PingResult", "Pod", "wait_for"]
