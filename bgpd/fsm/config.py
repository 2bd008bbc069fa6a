"""What a session is configured with.

Defaults follow Calico's BIRD template (CALICO.md §1.2): connect delay 2 s,
connect retry 5 s, error wait 5 to 30 s, graceful restart on, ADD-PATH off
unless asked; BIRD's own default hold time of 240 s.
"""

from __future__ import annotations

from dataclasses import dataclass

from bgpd.messages import IPV4_UNICAST, AddPathMode, Family


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """One peer's settings (RFC 4271 §8.1.1 session attributes, and capabilities)."""

    local_as: int
    peer_as: int | None  # None accepts any AS (for a dynamic neighbour)
    local_id: int
    hold_time: int = 240
    keepalive_time: int | None = None  # None: one third of the negotiated hold time
    connect_delay: float = 2.0
    connect_retry_time: float = 5.0
    error_wait_min: float = 5.0
    error_wait_max: float = 30.0
    error_forget: float = 300.0  # an Established session this old resets the backoff
    delay_open_time: float | None = None
    send_hold_time: float | None = None  # None: RFC 9687's 8 minutes, or 2 x hold if longer
    passive: bool = False
    families: tuple[Family, ...] = (IPV4_UNICAST,)
    add_path: tuple[tuple[Family, AddPathMode], ...] = ()
    route_refresh: bool = True
    enhanced_route_refresh: bool = True
    extended_message: bool = True
    graceful_restart: bool = True
    restart_time: int = 120
    restarting: bool = False  # set for the first session after our own restart
    forwarding_preserved: bool = True  # our kernel routes survive our restart
    graceful_notification: bool = True  # RFC 8538 N bit
    long_lived_stale_time: int | None = None
    hostname: str | None = None
    role: int | None = None
    strict_role: bool = False
    required_capabilities: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.hold_time != 0 and self.hold_time < 3:
            raise ValueError("hold time is 0 or at least 3 seconds (RFC 4271 §4.2)")
        if not 0 <= self.local_as <= 0xFFFFFFFF:
            raise ValueError("local AS does not fit 32 bits")
        if self.peer_as is not None and not 0 <= self.peer_as <= 0xFFFFFFFF:
            raise ValueError("peer AS does not fit 32 bits")
        if not 0 < self.local_id <= 0xFFFFFFFF:
            raise ValueError("router ID must be a non-zero 32-bit value")
        if not 0 < self.error_wait_min <= self.error_wait_max:
            raise ValueError("error wait needs 0 < min <= max")
        if not 0 <= self.restart_time <= 0xFFF:
            raise ValueError("restart time fits 12 bits (RFC 4724 §3)")

    @property
    def ibgp(self) -> bool:
        return self.peer_as == self.local_as
