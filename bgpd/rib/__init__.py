"""The RIB (no I/O): Adj-RIB-In with graceful-restart stale marks (``adj_in``),
the receiving speaker's graceful restart (``graceful``), the restarting
speaker's selection deferral (``deferral``), import checks and policy
(``importing``, ``policy``), the decision process (``decision``) over the
Loc-RIB (``loc``), export rules (``export``), UPDATE packing (``updates``) and
the ``Router`` that ties them together for one speaker."""

from .adj_in import AdjRibIn, Route, RouteChange
from .decision import DecisionOptions
from .deferral import InitialConvergence
from .export import Advert, ExportTarget, NextHopMode
from .graceful import GracefulRestartHelper
from .importing import ImportRules
from .loc import LocRib
from .path import BestChange, Path, Source
from .policy import Operator, Policy, PrefixMatch, Rule, Verdict
from .router import Router

__all__ = [
    "AdjRibIn",
    "Advert",
    "BestChange",
    "DecisionOptions",
    "ExportTarget",
    "GracefulRestartHelper",
    "ImportRules",
    "InitialConvergence",
    "LocRib",
    "NextHopMode",
    "Operator",
    "Path",
    "Policy",
    "PrefixMatch",
    "Route",
    "RouteChange",
    "Router",
    "Rule",
    "Source",
    "Verdict",
]
