"""The femtotcp command line with the stack's loop thread under cProfile.

``python -c LOOP_PROFILED FILE ARGS...`` runs ``femtotcp ARGS...`` and writes
the loop thread's statistics to FILE when the loop ends (a SIGTERM to
``serve`` or ``gateway`` ends it): cProfile alone (``python -m cProfile``)
sees only the main thread, where those commands wait. ``bench.gateway
--profile`` and ``bench.programs --profile`` start this instead of
``python -m femtotcp``; read FILE with ``python -m pstats FILE``.
"""

from __future__ import annotations

LOOP_PROFILED = """
import cProfile, sys
from femtotcp import runtime
run = runtime.Runtime.run_forever
def profiled(self):
    prof = cProfile.Profile()
    prof.enable()
    try:
        run(self)
    finally:
        prof.disable()
        prof.dump_stats(sys.argv[1])
runtime.Runtime.run_forever = profiled
from femtotcp.cli import main
sys.exit(main(sys.argv[2:]))
"""


def femtotcp_argv(profile: str | None) -> list[str]:
    """What follows ``python`` to run the femtotcp CLI: with ``profile``, its
    loop thread profiled into that file."""
    return ["-c", LOOP_PROFILED, profile] if profile else ["-m", "femtotcp"]
