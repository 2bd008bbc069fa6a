"""The RIB (no I/O).  So far: the Adj-RIB-In with graceful-restart stale marks
(``adj_in``), the RFC 4724 receiving-speaker logic (``graceful``) and the
restarting speaker's selection deferral (``deferral``).  The Loc-RIB, decision
process and Adj-RIB-Out come with the RIB issue."""

from .adj_in import AdjRibIn, Route, RouteChange
from .deferral import InitialConvergence
from .graceful import GracefulRestartHelper

__all__ = ["AdjRibIn", "GracefulRestartHelper", "InitialConvergence", "Route", "RouteChange"]
