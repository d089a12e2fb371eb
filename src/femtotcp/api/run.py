"""``femtotcp run``: a Python program in this interpreter, with the stack as its network.

Like ``coverage run``: build and start the host from the stack flags, patch
the socket module (``femtotcp.api.patch``), run the program as ``python -m
MODULE ARGS``, ``python -c COMMAND ARGS`` or ``python SCRIPT ARGS`` would
(``runpy``, ``sys.argv`` and ``sys.path[0]`` set the same way), wait for its non-daemon threads, then unpatch
and close the host (FINs and DHCP release go out). ``SystemExit`` becomes the
exit status. Subprocesses the program starts use the kernel's network.

``run_attached`` (``femtotcp run --control PATH``) runs the program against a
running ``femtotcp serve`` instead: its sockets live in serve
(``femtotcp.api.remote``), and its Python children attach to the same serve.
"""

from __future__ import annotations

import builtins
import importlib.machinery
import io
import os
import runpy
import signal
import sys
import threading
import traceback
import types
import zipfile
from types import FrameType
from typing import Any

from femtotcp.api.patch import patch

NEEDS_PROGRAM = ("run needs a program: SCRIPT ARGS..., -m MODULE ARGS... "
                 "or -c COMMAND ARGS...")


def run_program(opts: Any, module: str | None, argv: list[str],
                command: str | None = None) -> int:
    """Run ``-m module argv...``, ``-c command argv...`` or ``argv[0]`` (a
    script) with ``argv[1:]``; the program's exit status."""
    from femtotcp.host import Host
    if argv and argv[0] == "--":          # `femtotcp run ... -m MOD -- --flag ...`
        argv = argv[1:]
    if not module and command is None and not argv:
        raise ValueError(NEEDS_PROGRAM)
    host = Host(opts)
    try:
        host.start()
        for missing in host.settle():
            print(f"femtotcp: {missing}", file=sys.stderr)
        with patch(host):
            return run_in_process(module, argv, command)
    finally:
        host.close()


def run_attached(control: str, module: str | None, argv: list[str],
                 command: str | None = None) -> int:
    """Run the program here, attached to the ``femtotcp serve`` whose control
    socket is ``control`` (``femtotcp.api.remote``); its Python children attach
    too. The program's exit status."""
    from femtotcp.api import remote
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not module and command is None and not argv:
        raise ValueError(NEEDS_PROGRAM)
    path = remote.service_path(control)
    if not os.path.exists(path):
        raise OSError(f"no femtotcp serve with control socket {control} "
                      f"(its socket service {path} does not exist)")
    net = remote.RemoteNetwork(path)
    remote.attach_environment(path)
    remote.install_spawn_hook()
    with patch(net):
        return run_in_process(module, argv, command)


def run_in_process(module: str | None, argv: list[str], command: str | None = None) -> int:
    """Run the program here (whatever network is patched in); its exit status."""
    if argv and argv[0] == "--":
        argv = argv[1:]
    saved_argv = sys.argv[:]
    saved_path = sys.path[:]
    restore_term = _terminate_as_exit()
    try:
        try:
            if module:
                sys.argv = [module, *argv]
                sys.path.insert(0, os.getcwd())
                runpy.run_module(module, run_name="__main__", alter_sys=True)
            elif command is not None:
                # As ``python -c``: argv[0] is "-c", the current directory first
                # on the path, the code run as __main__.
                sys.argv = ["-c", *argv]
                sys.path.insert(0, "")
                _exec_as_main(compile(command, "<string>", "exec"))
            else:
                script = argv[0]
                if not os.path.exists(script):
                    print(f"femtotcp run: can't open file {script!r}: "
                          "No such file or directory", file=sys.stderr)
                    return 2
                sys.argv = list(argv)
                sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
                _run_script(script)
            status = 0
        except SystemExit as exc:
            status = _exit_status(exc.code)
        except KeyboardInterrupt as exc:
            _uncaught(exc)
            status = 130
        except BaseException as exc:
            _uncaught(exc)
            status = 1
        try:
            _join_program_threads()
        except KeyboardInterrupt:
            status = status or 130
        return status
    finally:
        sys.argv = saved_argv
        sys.path[:] = saved_path
        restore_term()


def _run_script(script: str) -> None:
    """Run a script file as ``python SCRIPT`` does: module ``__main__`` with
    an absolute ``__file__``, a source loader and the builtins module
    (``runpy.run_path`` leaves ``__file__`` as given and ``__loader__`` None).
    A directory or zip file with a ``__main__.py`` goes through runpy."""
    path = os.path.abspath(script)
    if not os.path.isfile(path) or zipfile.is_zipfile(path):
        runpy.run_path(script, run_name="__main__")
        return
    with io.open_code(path) as f:
        source = f.read()
    _exec_as_main(compile(source, path, "exec", dont_inherit=True), __file__=path,
                  __cached__=None, __spec__=None,
                  __loader__=importlib.machinery.SourceFileLoader("__main__", path))


def _exec_as_main(code: types.CodeType, **names: Any) -> None:
    """Run ``code`` as the interpreter runs a program: in a fresh module
    ``__main__`` (with the builtins module and ``names``), which stands in
    ``sys.modules`` while it runs (``python SCRIPT``, ``python -c``)."""
    main = types.ModuleType("__main__")
    main.__dict__.update(names, __builtins__=builtins)
    saved = sys.modules.get("__main__")
    sys.modules["__main__"] = main
    try:
        exec(code, main.__dict__)
    finally:
        if saved is not None:
            sys.modules["__main__"] = saved


def _uncaught(exc: BaseException) -> None:
    """What the interpreter does with an exception the program did not catch:
    ``sys.excepthook`` (the program's, if it set one), with the traceback
    starting at the program's own code, as ``python SCRIPT`` prints it (this
    module's and runpy's frames left out)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename in _RUNNER_FILES:
        tb = tb.tb_next
    try:
        sys.excepthook(type(exc), exc.with_traceback(tb), tb)
    except BaseException:
        traceback.print_exc()


#: Frames of the runner (this module and runpy) above the program's.
_RUNNER_FILES = frozenset({__file__, runpy.__file__, "<frozen runpy>"})


def _exit_status(code: Any) -> int:
    """What the interpreter would exit with for ``SystemExit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _join_program_threads() -> None:
    """The interpreter waits for non-daemon threads before exiting; so do we,
    before the stack goes away under them."""
    me = threading.current_thread()
    while True:
        waiting = [t for t in threading.enumerate()
                   if t is not me and not t.daemon and t.is_alive()
                   and t is not threading.main_thread()]
        if not waiting:
            return
        for t in waiting:
            t.join()


def _terminate_as_exit() -> Any:
    """SIGTERM ends the program like SystemExit (so the host says goodbye),
    unless the program installs its own handler."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except (ValueError, OSError):
        return lambda: None
    if previous not in (signal.SIG_DFL, None):
        return lambda: None

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)

    def restore() -> None:
        if signal.getsignal(signal.SIGTERM) is handler:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

    return restore
