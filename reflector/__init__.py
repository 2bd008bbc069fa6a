"""RFC 4456 route reflection rules plugged into the RIB's import and export."""

from .rules import RouteReflector, cluster_id_value, is_client

__all__ = ["RouteReflector", "cluster_id_value", "is_client"]
