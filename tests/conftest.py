"""Shared fixtures. The helpers themselves live in tests/femtolan.py; the skip
policy every test follows lives in tests/skippolicy.py."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

# femtolan and skippolicy are imported by name from every directory below, in
# every pytest import mode (not only the default "prepend").
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from femtolan import Lan, make_lan  # noqa: E402
from skippolicy import require_module  # noqa: E402

from femtotcp.core.counters import Counters  # noqa: E402

# A counter name nobody declared (femtotcp/core/counters.py) is an error in tests.
Counters.strict = True

# Tests assert behaviour, never timing: hypothesis's per-example deadline
# (200 ms) only measures how loaded the machine is.
try:
    from hypothesis import settings as _hypothesis_settings
except ImportError:         # pragma: no cover - hypothesis is a test dependency
    pass
else:
    _hypothesis_settings.register_profile("femtotcp", deadline=None)
    _hypothesis_settings.load_profile("femtotcp")


@pytest.fixture
def lan() -> Callable[..., Lan]:
    """Factory: ``lan(n, config=..., modules=..., faults=..., mtu=...)`` -> Lan
    of ``n`` started stacks on one switch and a virtual clock."""
    return make_lan


@pytest.fixture(scope="session")
def scapy() -> ModuleType:
    """``scapy.all``, the independent encoder/decoder the wire tests compare with.

    Only the tests that take this fixture need scapy: without it they skip with
    the reason (fail under CI=true) and the rest of their module still runs."""
    return require_module("scapy.all", "pip install -e '.[test]'")
