"""A femtotcp stack on a kernel-facing device, run by a Runtime thread, and
deterministic bulk data: shared by the kernel TCP tests."""

from __future__ import annotations

import contextlib
import hashlib
import random
import socket
import threading
from collections.abc import Iterator
from typing import Any

from netns import entered

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


def kernel_echo_roundtrip(ns: Any, addr: str, nbytes: int, seed: int, port: int = 7,
                          timeout: float = 120.0) -> tuple[str, str, int]:
    """A kernel socket in ``ns`` sends ``nbytes`` to the echo at ``addr:port`` and
    reads them back. Returns (sha256 sent, sha256 received, bytes received)."""
    with entered(ns):
        sock = socket.create_connection((addr, port), timeout=timeout)
    sent = hashlib.sha256()
    errors: list[BaseException] = []

    def sender() -> None:
        try:
            for chunk in chunks(nbytes, seed):
                sent.update(chunk)
                sock.sendall(chunk)
            sock.shutdown(socket.SHUT_WR)
        except BaseException as exc:  # handed to the test thread
            errors.append(exc)

    th = threading.Thread(target=sender, daemon=True)
    th.start()
    got = hashlib.sha256()
    total = 0
    buf = bytearray(CHUNK)
    while (n := sock.recv_into(buf)):
        got.update(memoryview(buf)[:n])
        total += n
    th.join(timeout)
    sock.close()
    assert not errors, errors
    return sent.hexdigest(), got.hexdigest(), total
