"""The node agent (``bgpd node``, ``bgpd reflector``): Calico resources and IPAM
state in the datastore, rendered into the speaker's configuration and applied
live; the local status API and metrics."""
