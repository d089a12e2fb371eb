"""The one skip policy of the test suite.

A test whose requirement is missing (a program, a Python module, root and
network namespaces, a kernel feature, a part of the stack left out of the
build) calls one of these. Outside CI it is skipped with the reason; under
``CI=true`` (also ``1`` or ``yes``) it fails with the same reason instead: CI
must run every test, and a skip there would hide a test that never ran.

- ``skip_or_fail(reason, need)``: the policy itself; works inside a test, a
  fixture or at module level. ``need`` names the requirement in one word
  ("netem", "kernel", a program or module name).
- ``require_program(name) -> path``: a program on PATH.
- ``require_module(name) -> module``: ``pytest.importorskip`` under the policy.

Nothing in tests/ calls ``pytest.skip``, ``pytest.importorskip`` or
``pytest.mark.skipif`` directly (tests/test_skippolicy.py checks that).

A CI machine that cannot have a requirement at all (a kernel built without
netem, say) states so once, by name: ``FEMTOTCP_ALLOW_MISSING=netem,kernel``
(comma-separated ``need`` names). Those requirements skip with their reason
under CI=true too; every other missing requirement still fails. The waiver is
explicit and shows in the skip reason, so a CI log says what did not run.

The kernel requirements (root, /dev/net/tun, ``ip``, namespaces) are probed by
``require_kernel()`` in tests/e2e/netns.py, which reports through this policy.
"""

from __future__ import annotations

import importlib
import os
import shutil
from types import ModuleType
from typing import NoReturn

import pytest


def in_ci() -> bool:
    """True when the environment says this is CI (CI=true), where skips are failures."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def allowed_missing() -> frozenset[str]:
    """The requirement names FEMTOTCP_ALLOW_MISSING waives under CI=true."""
    raw = os.environ.get("FEMTOTCP_ALLOW_MISSING", "")
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


def skip_or_fail(reason: str, need: str = "") -> NoReturn:
    """Skip the current test (or module), or fail it under CI=true unless the
    requirement ``need`` is waived by FEMTOTCP_ALLOW_MISSING."""
    if in_ci():
        if not need or need not in allowed_missing():
            pytest.fail(f"CI=true and a test requirement is missing: {reason}"
                        + (f" (waive with FEMTOTCP_ALLOW_MISSING={need})" if need else ""),
                        pytrace=False)
        reason = f"{reason} [waived under CI by FEMTOTCP_ALLOW_MISSING={need}]"
    pytest.skip(reason, allow_module_level=True)


def require_program(name: str) -> str:
    """The path of program ``name``, or skip (fail under CI) when it is missing."""
    path = shutil.which(name)
    if path is None:
        skip_or_fail(f"this test needs the program {name!r}, which is not installed", name)
    return path


def require_module(name: str, hint: str = "") -> ModuleType:
    """Import module ``name``, or skip (fail under CI) when it cannot be imported."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        skip_or_fail(f"this test needs the Python module {name!r} ({exc})"
                     + (f": {hint}" if hint else ""), name)
