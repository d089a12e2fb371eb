"""A program's output under ``femtotcp run`` is byte for byte its output under
``python``: femtotcp's own logging has a handler of its own, so the root
logger stays the program's (its ``logging.basicConfig`` takes effect; a
library's warning without any configuration prints bare, through logging's
last resort). The program runs in-process on a TAP in the test's namespace.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from netns import Netns
from test_api_kernel import _drain, femtotcp_run

LOGGING = """
import logging, os, sys, time
deadline = time.monotonic() + 30           # (under femtotcp run: the test saw the TAP)
while len(sys.argv) > 1 and not os.path.exists(sys.argv[1]) and time.monotonic() < deadline:
    time.sleep(0.05)
logging.getLogger("lib").warning("a library warns, nobody configured logging")
logging.getLogger("lib").info("not shown")
logging.basicConfig(level=logging.INFO, format="%(levelname)s|%(name)s|%(message)s",
                    stream=sys.stdout)
logging.getLogger("app").info("configured by the program")
logging.getLogger("app").debug("below the level")
root = logging.getLogger()
print("root", len(root.handlers), root.level)
"""


def test_program_logging_is_the_programs(ns: Netns, tmp_path: Path) -> None:
    script = tmp_path / "logs.py"
    script.write_text(LOGGING)
    expected = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                              timeout=60)
    assert expected.returncode == 0, expected.stderr
    assert "configured by the program" in expected.stdout
    go = tmp_path / "go"
    with femtotcp_run(ns, str(script), str(go), setup=go.touch) as proc:
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            raise AssertionError(_drain(proc)) from None
    assert (proc.returncode, out, err) == (0, expected.stdout, expected.stderr)
