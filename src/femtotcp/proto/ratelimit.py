"""Token buckets for ICMP errors and challenge ACKs, and the rate limit ICMP
errors of both families share (``ErrorRateLimit``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from femtotcp.stack.stack import Stack


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up."""

    __slots__ = ("rate", "burst", "tokens", "last")

    def __init__(self, rate: float, burst: float, now: float = 0.0) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.last = now

    def take(self, now: float) -> bool:
        elapsed = now - self.last
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.last = now
        elif elapsed < 0:
            # The clock was replaced (a stack attached to a new loop): restart from now.
            self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class PerKeyBuckets:
    """One bucket per key (a destination), bounded in the number of keys."""

    def __init__(self, rate: float, burst: float, max_keys: int = 1024) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self.buckets: dict[bytes, TokenBucket] = {}

    def take(self, key: bytes, now: float) -> bool:
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= self.max_keys:
                del self.buckets[next(iter(self.buckets))]
            bucket = self.buckets[key] = TokenBucket(self.rate, self.burst, now)
        return bucket.take(now)


class ErrorRateLimit:
    """How often ICMP and ICMPv6 errors may leave, one rule for both families
    (RFC 1812 4.3.2.8, RFC 4443 2.4 f; Linux's icmp_global_allow and
    icmp(v6)_xrlim_allow): a token bucket for the whole stack
    (``icmp_rate``/``icmp_burst``) and one per destination
    (``icmp_rate_per_dest``/``icmp_burst_per_dest``, bounded in destinations).
    One per stack, shared by ``Icmp4`` and ``Icmp6`` (the per-destination
    buckets are keyed by 4- or 16-byte addresses). An error to one of our own
    addresses (loopback) is never limited."""

    __slots__ = ("stack", "bucket", "per_dest")

    def __init__(self, stack: Stack) -> None:
        cfg = stack.config
        self.stack = stack
        self.bucket = TokenBucket(cfg.icmp_rate, cfg.icmp_burst, stack.now)
        self.per_dest = PerKeyBuckets(cfg.icmp_rate_per_dest, cfg.icmp_burst_per_dest)

    def allow(self, dst: bytes) -> bool:
        """May an error go to ``dst`` now? (Takes a token from both buckets.)"""
        stack = self.stack
        if stack.is_local(dst):
            return True
        now = stack.now
        return self.per_dest.take(dst, now) and self.bucket.take(now)
