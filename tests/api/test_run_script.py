"""``femtotcp run SCRIPT`` runs the script as ``python SCRIPT`` does: the same
``__file__`` (absolute), ``__loader__`` and ``__builtins__``, and an uncaught
exception goes to ``sys.excepthook`` with a traceback that starts at the
script (no frames of the runner), so the program's output is byte for byte
the interpreter's. Each case runs the script both ways and compares."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from femtotcp.api.run import run_in_process

_SCRIPTS = {
    "globals": """
        import sys
        print(__file__, sys.argv[0], sys.argv[1:], sys.path[0])
        print(type(__loader__).__name__, type(__builtins__).__name__, __spec__, __cached__)
        print(sys.modules["__main__"].__file__ == __file__, __name__)
    """,
    "chained": """
        def inner():
            raise ValueError("inner")
        try:
            inner()
        except ValueError as exc:
            raise KeyError("outer") from exc
    """,
    "hook": """
        import sys
        def hook(kind, value, tb):
            print("hook", kind.__name__, value, tb.tb_frame.f_code.co_filename,
                  tb.tb_lineno)
        sys.excepthook = hook
        raise RuntimeError("to the hook")
    """,
    "syntax": """
        print("never")
        def broken(:
    """,
}


def _interpreter(tmp_path: Path, rel: str) -> tuple[int, str, str]:
    res = subprocess.run([sys.executable, rel, "a1"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    return res.returncode, res.stdout, res.stderr


def _ours(tmp_path: Path, rel: str, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)   # (the script may set its own)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = run_in_process(None, [rel, "a1"])
    return status, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("name", sorted(_SCRIPTS))
def test_script_runs_as_the_interpreter_runs_it(name: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sub").mkdir()
    rel = f"sub/{name}.py"
    (tmp_path / rel).write_text(textwrap.dedent(_SCRIPTS[name]))
    expected = _interpreter(tmp_path, rel)
    assert _ours(tmp_path, rel, monkeypatch) == expected
    assert str(tmp_path) in expected[1] + expected[2]     # (absolute paths shown)
