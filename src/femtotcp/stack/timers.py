"""The stack's timer heap lives in ``femtotcp.core.timers`` (devices and loops use
it too); this name stays for the modules that import it from here."""

from femtotcp.core.timers import Timer, Timers

__all__ = ["Timer", "Timers"]
