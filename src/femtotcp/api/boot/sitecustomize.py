"""Attach a Python child of an attached program to the same ``femtotcp serve``.

``femtotcp run --control PATH`` puts this directory first on ``PYTHONPATH`` and
names the serve's socket service in ``FEMTOTCP_ATTACH``; every Python process
started below it (subprocess, multiprocessing spawn, ``os.exec*`` of python)
imports this module at start-up and patches its socket module onto that serve
(``femtotcp.api.remote.attach_from_environment``). A ``sitecustomize`` found
later on the path still runs. ``python -S``/``-I`` children skip it (and use
the kernel).

Start-up stays as fast as without femtotcp: nothing is imported here. The
process attaches when it first imports ``socket`` (or ``ssl``), right after
that module (and ``ssl``, which must subclass the real socket class) is
loaded, before the importer gets it; a child that never imports them never
loads femtotcp.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:               # (typing is not imported at start-up)
    from typing import Any

#: Modules whose import attaches the process (``ssl`` imports ``socket``).
_TRIGGERS = ("socket", "ssl")


def _attach_now() -> None:
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


def _loaded(name: str) -> bool:
    """``name`` is imported completely (not only begun)."""
    module = sys.modules.get(name)
    if module is None:
        return False
    spec = getattr(module, "__spec__", None)
    return not getattr(spec, "_initializing", False)


class _OnImport:
    """A meta path finder that sees ``socket``/``ssl`` being imported and attaches
    the process once the first of them finishes loading with no other trigger
    still loading (so ``ssl.SSLSocket`` subclasses the real socket class)."""

    @classmethod
    def find_spec(cls, name: str, path: object = None, target: object = None) -> Any:
        if name not in _TRIGGERS:
            return None
        from importlib.machinery import PathFinder
        spec = PathFinder.find_spec(name, path)  # type: ignore[arg-type]
        loader: Any = getattr(spec, "loader", None)
        run = getattr(loader, "exec_module", None)
        if spec is None or run is None:
            # No ssl (a build without it): socket alone decides. Anything else
            # unusual: leave the process on the kernel's network.
            if name != "socket":
                return None
            cls.remove()
            return None

        def exec_module(module: object) -> None:
            try:
                run(module)
            finally:
                try:
                    del loader.exec_module    # back to the class's method
                except AttributeError:
                    pass
            others = [t for t in _TRIGGERS if t != name and t in sys.modules]
            if all(_loaded(t) for t in others):
                cls.remove()
                _attach_now()

        loader.exec_module = exec_module
        # Returning the spec found here makes the import use this loader.
        return spec

    @classmethod
    def remove(cls) -> None:
        try:
            sys.meta_path.remove(cls)
        except ValueError:
            pass


def _attach() -> None:
    if not os.environ.get("FEMTOTCP_ATTACH"):
        return
    if any(t in sys.modules for t in _TRIGGERS):
        _attach_now()
        return
    sys.meta_path.insert(0, _OnImport)


def _chain() -> None:
    """Run the next ``sitecustomize`` on the path, as if this one were not there."""
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or ".") != here]
    from importlib.machinery import PathFinder
    spec = PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    from importlib.util import module_from_spec
    module = module_from_spec(spec)
    spec.loader.exec_module(module)


_attach()
_chain()
