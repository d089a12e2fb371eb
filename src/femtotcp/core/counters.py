"""Named counters: every drop has a reason, every reason a counter."""

from __future__ import annotations

from collections import defaultdict


class Counters(defaultdict[str, int]):
    """``counters["ipv4.bad_checksum"] += 1``; missing names read as 0."""

    def __init__(self) -> None:
        super().__init__(int)
        #: Names known to count dropped input (every Malformed reason seen).
        self.drop_reasons: set[str] = set()

    def drop(self, reason: str) -> None:
        """Count one dropped input under ``reason``."""
        self[reason] += 1
        self.drop_reasons.add(reason)

    def snapshot(self) -> dict[str, int]:
        return dict(sorted(self.items()))

    def drops(self) -> dict[str, int]:
        """Only the counters that record dropped input (named ``*.drop.*`` or bad/malformed)."""
        return {k: v for k, v in sorted(self.items())
                if v and (k in self.drop_reasons or _is_drop(k))}


_DROP_WORDS = ("bad_", "malformed", "truncated", "drop", "invalid", "unsupported", "no_",
               "runt", "martian", "land", "source_route", "reserved", "overlap", "full",
               "oversize", "not_for_us", "too_big", "too_many", "timeout", "duplicate",
               "inconsistent", "unknown", "suppressed", "rate_limited", "ignored", "unmatched",
               "not_ours", "conflict", "zero_", "own_", "mismatch", "after_", "vlan",
               "8023", "l2_broadcast", "not_joined", "not_from_peer", "failed", "overflow")


def _is_drop(name: str) -> bool:
    leaf = name.rsplit(".", 1)[-1]
    return any(w in leaf for w in _DROP_WORDS)
