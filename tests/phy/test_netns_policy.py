"""The kernel tests' harness (tests/e2e/netns.py) reports through the suite's one
skip policy (tests/skippolicy.py, tested in tests/test_skippolicy.py)."""

from __future__ import annotations

import netns
import pytest
import skippolicy
from _pytest.outcomes import Failed
from test_skippolicy import outcome


def test_netns_uses_the_suite_policy() -> None:
    assert netns.skip_or_fail is skippolicy.skip_or_fail
    assert netns.require_program is skippolicy.require_program


def test_missing_kernel_requirement_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    monkeypatch.delenv("FEMTOTCP_ALLOW_MISSING", raising=False)
    monkeypatch.setattr(netns, "_kernel_problem", ["no tun here (a fake)"])
    exc = outcome(netns.require_kernel)
    assert isinstance(exc, Failed), exc       # not a skip: CI must not lose kernel tests
    assert "no tun here" in str(exc) and "FEMTOTCP_ALLOW_MISSING=kernel" in str(exc)
