"""Named counters: every drop has a reason, every reason a counter."""

from __future__ import annotations

from collections import defaultdict


class Counters(defaultdict[str, int]):
    """``counters["ipv4.bad_checksum"] += 1``; missing names read as 0."""

    def __init__(self) -> None:
        super().__init__(int)

    def snapshot(self) -> dict[str, int]:
        return dict(sorted(self.items()))

    def drops(self) -> dict[str, int]:
        """Only the counters that record dropped input (named ``*.drop.*`` or bad/malformed)."""
        return {k: v for k, v in sorted(self.items()) if v and _is_drop(k)}


_DROP_WORDS = ("bad_", "malformed", "truncated", "drop", "invalid", "unsupported", "no_")


def _is_drop(name: str) -> bool:
    leaf = name.rsplit(".", 1)[-1]
    return any(w in leaf for w in _DROP_WORDS)
