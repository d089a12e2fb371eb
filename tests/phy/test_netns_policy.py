"""The kernel-test skip/fail policy of tests/e2e/netns.py (no kernel needed)."""

from __future__ import annotations

import pytest
from _pytest.outcomes import Failed, Skipped
from netns import require_program, skip_or_fail


@pytest.mark.parametrize("value", ["true", "TRUE", "1"])
def test_ci_turns_skips_into_failures(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(Failed, match="CI=true.*no tun here"):
        skip_or_fail("no tun here")
    with pytest.raises(Failed, match="no-such-program-ft"):
        require_program("no-such-program-ft")


@pytest.mark.parametrize("value", [None, "", "false", "0"])
def test_outside_ci_it_skips(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    with pytest.raises(Skipped, match="no tun here"):
        skip_or_fail("no tun here")
    with pytest.raises(Skipped, match="no-such-program-ft"):
        require_program("no-such-program-ft")


def test_present_program_gives_its_path() -> None:
    assert require_program("sh").endswith("/sh")
