"""A femtotcp stack on a kernel-facing device, run by a Runtime thread, and
deterministic bulk data: shared by the kernel TCP tests."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

from femtotcp.phy.base import Device
from femtotcp.runtime import Runtime
from femtotcp.stack import Stack

CHUNK = 1 << 20


@contextlib.contextmanager
def running_stack(device: Device, name: str, ipv4: str,
                  mac: str = "02:00:00:00:00:02") -> Iterator[tuple[Runtime, Stack]]:
    """A started stack on ``device``; the loop is stopped and closed afterwards."""
    stack = Stack(name)
    stack.add_interface(device, mac=mac, ipv4=ipv4)
    rt = Runtime()
    rt.add_stack(stack)
    rt.start()
    try:
        rt.call(stack.start)
        yield rt, stack
    finally:
        rt.stop()
        rt.join(5)
        rt.close()


def chunks(nbytes: int, seed: int, size: int = CHUNK) -> Iterator[bytes]:
    """Deterministic pseudo-random data, ``size`` bytes at a time."""
    rnd = random.Random(seed)
    left = nbytes
    while left > 0:
        n = min(left, size)
        yield rnd.randbytes(n)
        left -= n
