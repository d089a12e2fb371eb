"""Device tests. The TAP/TUN ones need the kernel: they reuse the namespace
harness and skip/fail policy of tests/e2e/netns.py."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_E2E = str(Path(__file__).resolve().parent.parent / "e2e")
if _E2E not in sys.path:
    sys.path.insert(0, _E2E)

from netns import Netns, netns, require_kernel  # noqa: E402


@pytest.fixture
def ns() -> Iterator[Netns]:
    """A namespace of the test's own (needs root etc.: skip, or fail under CI=true)."""
    require_kernel()
    with netns("ftphy") as n:
        yield n
