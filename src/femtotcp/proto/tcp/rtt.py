"""Round-trip time estimation and the retransmission timeout (RFC 6298)."""

from __future__ import annotations


class RttEstimator:
    """SRTT/RTTVAR/RTO per RFC 6298 2. Backoff (5.5) is kept separately so that
    Karn's rule (retain the backed-off RTO until a valid sample) is explicit.
    ``rto`` is a plain attribute, kept current whenever a sample or the
    backoff changes it (the per-segment path reads it on every send)."""

    __slots__ = ("srtt", "rttvar", "base_rto", "rto_min", "rto_max", "granularity",
                 "_backoff", "samples", "rto")

    def __init__(self, initial: float = 1.0, rto_min: float = 0.2, rto_max: float = 120.0,
                 granularity: float = 0.001) -> None:
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.base_rto = initial          # 2.1: before any sample
        self.rto_min = rto_min
        self.rto_max = rto_max
        self.granularity = granularity
        self._backoff = 0
        self.samples = 0
        #: The current timeout, with exponential backoff (5.5), at most rto_max (2.5).
        self.rto = initial if initial < rto_max else rto_max

    def sample(self, r: float) -> None:
        """One RTT measurement R (2.2, 2.3); clears the backoff (Karn, 5.7)."""
        if r < 0:
            return
        srtt = self.srtt
        if srtt is None:
            srtt = r
            rttvar = r / 2
        else:
            delta = srtt - r
            rttvar = 0.75 * self.rttvar + 0.25 * (delta if delta >= 0 else -delta)
            srtt = 0.875 * srtt + 0.125 * r
        self.srtt = srtt
        self.rttvar = rttvar
        var = 4 * rttvar                 # max(G, K*RTTVAR), without the builtin calls
        granularity = self.granularity
        rto = srtt + (var if var > granularity else granularity)
        if rto < self.rto_min:
            rto = self.rto_min
        elif rto > self.rto_max:
            rto = self.rto_max
        self.base_rto = rto
        self._backoff = 0
        self.rto = rto
        self.samples += 1

    @property
    def backoff(self) -> int:
        """How many times the timeout was doubled since the last valid sample."""
        return self._backoff

    @backoff.setter
    def backoff(self, n: int) -> None:
        self._backoff = n
        rto = self.base_rto * (1 << n) if n < 32 else self.rto_max
        self.rto = rto if rto < self.rto_max else self.rto_max
