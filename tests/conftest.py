"""Shared fixtures. The helpers themselves live in tests/femtolan.py."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from femtolan import Lan, make_lan

from femtotcp.core.counters import Counters

# A counter name nobody declared (femtotcp/core/counters.py) is an error in tests.
Counters.strict = True


@pytest.fixture
def lan() -> Callable[..., Lan]:
    """Factory: ``lan(n, config=..., modules=..., faults=..., mtu=...)`` -> Lan
    of ``n`` started stacks on one switch and a virtual clock."""
    return make_lan
