"""Kernel-test policy for tests/e2e (see netns.py for the harness itself).

Every test collected under tests/e2e is marked ``kernel``. A kernel test needs
root, /dev/net/tun, the ``ip`` program and working network namespaces; when
any is missing it is skipped with the reason, except under ``CI=true`` where
it fails instead (CI must not silently skip the kernel tests): the suite's one
policy, tests/skippolicy.py. Programs such as ping, socat, tshark, curl and
dnsmasq go through ``require_program(name)`` (also offered as the
``require_program`` fixture), a netem qdisc through ``netns.add_netem``, with
the same skip/fail policy.

Fixtures:
    ns               a fresh namespace for the test (deleted afterwards)
    require_program  the function ``require_program(name) -> path``
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent
# Tests here (and in tests/phy) import the harness as ``netns``; make that work
# in every pytest import mode, not only the default "prepend".
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

from netns import Netns, netns, require_kernel  # noqa: E402
from netns import require_program as _require_program  # noqa: E402


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.kernel)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("kernel") is not None:
        require_kernel()


@pytest.fixture
def require_program() -> Callable[[str], str]:
    """``require_program("tshark")`` -> path, or skip (fail under CI=true)."""
    return _require_program


@pytest.fixture
def ns(request: pytest.FixtureRequest) -> Iterator[Netns]:
    """A namespace of the test's own, with lo up; removed even when the test fails."""
    require_kernel()
    with netns("ft") as n:
        yield n
