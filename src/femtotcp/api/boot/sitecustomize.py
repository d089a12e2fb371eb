"""Attach a Python child of an attached program to the same ``femtotcp serve``.

``femtotcp run --control PATH`` puts this directory first on ``PYTHONPATH`` and
names the serve's socket service in ``FEMTOTCP_ATTACH``; every Python process
started below it (subprocess, multiprocessing spawn, ``os.exec*`` of python)
imports this module at start-up and patches its socket module onto that serve
(``femtotcp.api.remote.attach_from_environment``). A ``sitecustomize`` found
later on the path still runs. ``python -S``/``-I`` children skip it (and use
the kernel).
"""

import importlib.machinery
import os
import sys


def _attach() -> None:
    if not os.environ.get("FEMTOTCP_ATTACH"):
        return
    try:
        from femtotcp.api import remote
    except ImportError:
        extra = os.environ.get("FEMTOTCP_ATTACH_PYTHONPATH")
        if not extra:
            return
        sys.path.append(extra)
        from femtotcp.api import remote
    try:
        remote.attach_from_environment()
    except Exception as exc:  # a child must still start; say why it is not attached
        sys.stderr.write(f"femtotcp: not attached ({exc}); using the kernel's network\n")


def _chain() -> None:
    """Run the next ``sitecustomize`` on the path, as if this one were not there."""
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    from importlib.util import module_from_spec
    module = module_from_spec(spec)
    spec.loader.exec_module(module)


_attach()
_chain()
