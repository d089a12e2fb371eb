"""The suite's skip policy (tests/skippolicy.py), tested from the outside: a
pytest run in a subprocess with a requirement made to be missing, once under
CI=true (the run fails, naming the requirement) and once without (it skips,
naming it). Also: no test file goes around the policy."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
from _pytest.outcomes import Failed, Skipped
from skippolicy import require_module, require_program, skip_or_fail

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

# A test module whose requirements are missing: a module, a program, a named need.
FAKE_TESTS = '''
from skippolicy import require_module, require_program, skip_or_fail

def test_needs_a_missing_module():
    require_module("femtotcp_no_such_module")

def test_needs_a_missing_program():
    require_program("femtotcp-no-such-program")

def test_needs_netem():
    skip_or_fail("this kernel has no netem qdisc (a fake)", "netem")

def test_needs_nothing():
    assert require_program("sh").endswith("/sh")
'''

# A plugin that makes scapy impossible to import, as on a machine without it.
NO_SCAPY = '''
import sys
sys.modules["scapy"] = None
sys.modules["scapy.all"] = None
'''


def run_pytest(tmp_path: Path, args: list[str], ci: str | None,
               allow: str | None = None) -> tuple[int, str, dict[str, str]]:
    """Run pytest in a subprocess; return (exit status, output, {test name: outcome})."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("CI", "FEMTOTCP_ALLOW_MISSING", "PYTEST_ADDOPTS")}
    if ci is not None:
        env["CI"] = ci
    if allow is not None:
        env["FEMTOTCP_ALLOW_MISSING"] = allow
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(TESTS)])
    junit = tmp_path / f"junit-{ci}-{allow}.xml"
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rfs", "-p", "no:cacheprovider",
                          f"--junitxml={junit}", *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=240)
    outcomes: dict[str, str] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        outcomes[case.get("name", "")] = kinds[0] if kinds else "passed"
    return res.returncode, res.stdout + res.stderr, outcomes


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    path = tmp_path / "test_fake_requirements.py"
    path.write_text(FAKE_TESTS)
    return path


def test_missing_requirements_fail_the_run_under_ci(tmp_path: Path, fake: Path) -> None:
    status, out, outcomes = run_pytest(tmp_path, [str(fake), f"--rootdir={tmp_path}"], "true")
    assert status == 1, out
    assert outcomes == {"test_needs_a_missing_module": "failure",
                        "test_needs_a_missing_program": "failure",
                        "test_needs_netem": "failure",
                        "test_needs_nothing": "passed"}, out
    assert "CI=true and a test requirement is missing" in out
    assert "femtotcp_no_such_module" in out and "femtotcp-no-such-program" in out
    assert "FEMTOTCP_ALLOW_MISSING=netem" in out        # the failure says how to waive it


def test_missing_requirements_skip_with_the_reason_outside_ci(tmp_path: Path,
                                                            fake: Path) -> None:
    status, out, outcomes = run_pytest(tmp_path, [str(fake), f"--rootdir={tmp_path}"], None)
    assert status == 0, out
    assert outcomes == {"test_needs_a_missing_module": "skipped",
                        "test_needs_a_missing_program": "skipped",
                        "test_needs_netem": "skipped",
                        "test_needs_nothing": "passed"}, out
    skips = [line for line in out.splitlines() if line.startswith("SKIPPED")]
    assert len(skips) == 3, out
    assert any("Python module 'femtotcp_no_such_module'" in s for s in skips), out
    assert any("program 'femtotcp-no-such-program'" in s for s in skips), out
    assert any("no netem qdisc" in s for s in skips), out


def test_a_waived_requirement_skips_under_ci_and_only_that_one(tmp_path: Path,
                                                             fake: Path) -> None:
    status, out, outcomes = run_pytest(tmp_path, [str(fake), f"--rootdir={tmp_path}"], "true",
                                       allow="netem,kernel")
    assert status == 1, out
    assert outcomes["test_needs_netem"] == "skipped"
    assert outcomes["test_needs_a_missing_module"] == "failure"
    assert outcomes["test_needs_a_missing_program"] == "failure"
    assert re.search(r"SKIPPED.*no netem qdisc.*waived under CI by "
                     r"FEMTOTCP_ALLOW_MISSING=netem", out), out


@pytest.mark.parametrize("ci", [None, "true"])
def test_without_scapy_only_the_scapy_comparisons_stop(tmp_path: Path, ci: str | None) -> None:
    """A wire module without scapy: its own checks all run and pass; each test
    that compares with scapy skips (fails under CI=true) with the reason."""
    (tmp_path / "noscapy.py").write_text(NO_SCAPY)
    status, out, outcomes = run_pytest(
        tmp_path, ["-p", "noscapy", str(TESTS / "wire" / "test_udp.py")], ci)
    uses_scapy = {n: o for n, o in outcomes.items() if "scapy" in n}
    own = {n: o for n, o in outcomes.items() if "scapy" not in n}
    assert len(uses_scapy) >= 5 and len(own) >= 10, outcomes
    assert set(own.values()) == {"passed"}, out
    if ci is None:
        assert status == 0, out
        assert set(uses_scapy.values()) == {"skipped"}, out
        assert "needs the Python module 'scapy.all'" in out
    else:
        assert status == 1, out
        # The scapy fixture fails in its setup: pytest reports each test as an error.
        assert set(uses_scapy.values()) == {"error"}, out
        assert "CI=true and a test requirement is missing" in out and "scapy.all" in out


# -- in-process, the functions themselves ------------------------------------------

def outcome(call: Callable[[], object]) -> BaseException:
    """What ``call`` raised (a skip too: pytest.raises(Failed) would let a
    Skipped through and turn a broken policy into a skipped test)."""
    try:
        call()
    except BaseException as exc:  # noqa: BLE001 - Skipped and Failed are BaseExceptions
        return exc
    raise AssertionError("the policy neither skipped nor failed")


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "yes"])
def test_ci_values_that_turn_skips_into_failures(monkeypatch: pytest.MonkeyPatch,
                                                 value: str) -> None:
    monkeypatch.setenv("CI", value)
    monkeypatch.delenv("FEMTOTCP_ALLOW_MISSING", raising=False)
    exc = outcome(lambda: skip_or_fail("no tun here"))
    assert isinstance(exc, Failed) and re.search("CI=true.*no tun here", str(exc)), exc
    exc = outcome(lambda: require_module("femtotcp_no_such_module"))
    assert isinstance(exc, Failed) and "femtotcp_no_such_module" in str(exc), exc


@pytest.mark.parametrize("value", [None, "", "false", "0"])
def test_values_that_skip(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    exc = outcome(lambda: skip_or_fail("no tun here"))
    assert isinstance(exc, Skipped) and "no tun here" in str(exc), exc
    exc = outcome(lambda: require_program("femtotcp-no-such-program"))
    assert isinstance(exc, Skipped) and "femtotcp-no-such-program" in str(exc), exc


def test_present_requirements_are_returned() -> None:
    assert require_module("json").dumps([1]) == "[1]"
    assert require_program("sh").endswith("/sh")


# -- nothing goes around the policy ----------------------------------------------------

BYPASS = re.compile(r"pytest\.(skip|importorskip|xfail)\(|pytest\.mark\.(skip|skipif|xfail)\b"
                    r"|unittest\.skip")


def test_every_skip_in_tests_goes_through_the_policy() -> None:
    """Only tests/skippolicy.py may call pytest.skip; a direct skip (or xfail)
    anywhere else would be silent under CI=true."""
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        if path.name in ("skippolicy.py", "test_skippolicy.py"):
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if BYPASS.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
