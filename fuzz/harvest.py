"""Seeds for the IPv6 fuzz targets from the project's own IPv6 tests: run them
(pytest, in this process) with the parsers and ``Stack.receive`` watched, and
write what they were handed, as each target's input, to
``fuzz/.work/TARGET/harvest/`` (``fuzz.run`` adds that directory to the
target's corpus when it exists):

    python -m fuzz.harvest [pytest arguments]     # default: the IPv6 test files

* ``stack6``: every IPv6 frame a stack received in the tests, as captured and
  readdressed to the fuzz world's victim (checksums and lengths completed);
* ``ipv6``, ``ipv6ext``, ``icmp6``, ``ndp``, ``mld``: every packet, chain,
  message or ND/MLD body the tests handed to ``ipv6.parse``, ``ipv6ext.walk``,
  ``icmp6.parse``, ``ndp.parse`` and ``mld.parse``, valid and hostile alike.

At most ``PER_TARGET`` distinct inputs per target, none longer than libFuzzer's
``-max_len`` (1600).
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent
WORK = ROOT / ".work"
PER_TARGET = 3000
MAX_LEN = 1600
TESTS = ["tests/wire/test_ipv6.py", "tests/wire/test_icmp6.py", "tests/wire/test_ndp.py",
         "tests/wire/test_mld.py", "tests/stack/test_stack_ipv6.py",
         "tests/stack/test_stack_udp6.py", "tests/hostile/test_ipv6_hostile.py",
         "tests/services/test_dns_ipv6.py"]


class Harvest:
    """Collects inputs per target (distinct, bounded) while the tests run."""

    def __init__(self) -> None:
        self.found: dict[str, dict[bytes, bytes]] = {}
        self.undo: list[Callable[[], None]] = []

    def add(self, target: str, data: bytes) -> None:
        if len(data) > MAX_LEN:
            return
        seen = self.found.setdefault(target, {})
        if len(seen) < PER_TARGET:
            seen.setdefault(hashlib.sha1(data).digest(), data)

    def _wrap(self, owner: Any, name: str, record: Callable[..., None]) -> None:
        real = getattr(owner, name)

        def watched(*args: Any, **kwargs: Any) -> Any:
            try:
                record(*args, **kwargs)
            except Exception:  # noqa: BLE001 - the watcher never changes what the test sees
                pass
            return real(*args, **kwargs)

        setattr(owner, name, watched)
        self.undo.append(lambda: setattr(owner, name, real))

    def install(self) -> None:
        from femtotcp.stack.stack import Stack
        from femtotcp.wire import icmp6, ipv6, ipv6ext, mld, ndp
        from fuzz import targets6 as t6

        def on_receive(_stack: Any, _iface: Any, frame: Any, *_a: Any, **_k: Any) -> None:
            f = bytes(frame)
            if f[12:14] == b"\x86\xdd":
                for how in (0, 1, 2):
                    self.add("stack6", bytes([how << 6 | 4 | 1]) + f)

        def on_ipv6(data: Any, *_a: Any, **_k: Any) -> None:
            self.add("ipv6", b"\x00" + bytes(data))

        def on_walk(nh: int, payload: Any, *_a: Any, first: bool = True, **_k: Any) -> None:
            if nh in t6.EXT_FIRST:
                ctl = t6.EXT_FIRST.index(nh) | (4 if first else 0)
                self.add("ipv6ext", bytes([ctl]) + bytes(payload))

        def on_icmp6(data: Any, *_a: Any, **_k: Any) -> None:
            self.add("icmp6", b"\x01" + bytes(data))

        def on_ndp(icmp: Any, body: Any, src: bytes, dst: bytes, hop: int) -> None:
            if icmp.type not in t6.ND_TYPES:
                return
            s = t6.ND_SOURCES.index(src) if src in t6.ND_SOURCES else \
                1 if src == ipv6.UNSPECIFIED else 0
            d = t6.ND_DESTS.index(dst) if dst in t6.ND_DESTS else \
                1 if ipv6.is_solicited_node(dst) else 0 if dst[0] == 0xFF else 2
            ctl = t6.ND_TYPES.index(icmp.type) | s << 3 | d << 5 | (0x80 if hop != 255 else 0)
            self.add("ndp", bytes([ctl]) + icmp.rest.to_bytes(4, "big") + bytes(body))

        def on_mld(icmp: Any, body: Any) -> None:
            if icmp.type in t6.MLD_TYPES:
                self.add("mld", bytes([t6.MLD_TYPES.index(icmp.type)])
                         + icmp.rest.to_bytes(4, "big") + bytes(body))

        self._wrap(Stack, "receive", on_receive)
        self._wrap(ipv6, "parse", on_ipv6)
        self._wrap(ipv6ext, "walk", on_walk)
        self._wrap(icmp6, "parse", on_icmp6)
        self._wrap(ndp, "parse", on_ndp)
        self._wrap(mld, "parse", on_mld)

    def uninstall(self) -> None:
        for undo in reversed(self.undo):
            undo()
        self.undo.clear()

    def write(self, work: Path = WORK) -> dict[str, int]:
        counts = {}
        for target, items in sorted(self.found.items()):
            out = work / target / "harvest"
            out.mkdir(parents=True, exist_ok=True)
            for old in out.iterdir():
                old.unlink()
            for digest, data in items.items():
                (out / digest.hex()).write_bytes(data)
            counts[target] = len(items)
        return counts


class _Plugin:
    def __init__(self, harvest: Harvest) -> None:
        self.harvest = harvest

    def pytest_sessionstart(self) -> None:
        self.harvest.install()

    def pytest_sessionfinish(self) -> None:
        self.harvest.uninstall()


def main(argv: list[str]) -> int:
    harvest = Harvest()
    args = argv or TESTS
    code = pytest.main(["-q", "-p", "no:cacheprovider", "--no-header", *args],
                       plugins=[_Plugin(harvest)])
    counts = harvest.write()
    for target, n in counts.items():
        print(f"harvest: {target:8} {n:5} inputs -> {WORK / target / 'harvest'}")
    # The tests' own result does not matter here, only that they ran.
    return 0 if counts else int(code) or 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
