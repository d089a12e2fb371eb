"""A fault-injecting wrapper around any device: loss, duplication, reordering,
corruption, delay and jitter, seeded so that a run repeats exactly.

``FaultyDevice(inner, loop, ...)`` sits between a stack and ``inner``: the stack
sends through it and it installs itself as ``inner``'s receiver. Faults apply in
the chosen directions (``outbound``: stack -> medium, ``inbound``: medium ->
stack), each direction with its own ``random.Random`` derived from ``seed``, in
this order per frame:

1. loss: the frame is dropped;
2. corruption: one random bit is flipped after the Ethernet header, inside the
   IP packet when the frame carries one (so the IP/ICMP/UDP/TCP checksums catch
   it, as the Ethernet FCS would have on a real link);
3. duplication: the frame goes on twice;
4. reordering: the frame is held back until the next frame in the same
   direction has passed it, or until ``hold`` seconds have gone by (so nothing
   is held forever);
5. delay: ``delay`` plus a uniform ``[0, jitter]`` seconds, via ``loop.call_at``
   (jitter alone can reorder frames too, as on real paths).

Every fault is counted in ``self.counters`` as ``"<in|out>.<fault>"``. The
randomness is for tests, not for security, so ``random.Random`` is right here.

Offload, decided by ``inner``'s capabilities: faults are meant per frame as a
link sees them, so with inbound faults the wrapper asks an ``inner`` that
delivers GRO super-frames for MTU-sized frames (``inner.set_gro(False)``: a
TAP re-issues ``TUNSETOFFLOAD``), and the same loss rate means the same as
without offload. Without inbound faults, or when ``inner`` cannot turn GRO
off, super-frames pass through whole (``gro`` is the inner device's, read
live) and each fault applies to a whole super-frame, as netem's do to a GSO
packet. Either way nothing the wrapper delivers is vouched for: it installs
itself with ``inner.set_receiver(fn)`` alone and its own ``checksum_rx`` is
False (phy/base.py), so a corrupted frame is caught by the TCP/UDP checksum.
TSO writes do not pass through (``offload`` stays False).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from femtotcp.phy.base import Device

if TYPE_CHECKING:
    from femtotcp.core.loop import Loop
    from femtotcp.core.timers import Timer

log = logging.getLogger("femtotcp.phy.faulty")

_PROBABILITIES = ("loss", "duplicate", "reorder", "corrupt")
_DURATIONS = ("delay", "jitter")


def _probability(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a probability (a number in [0, 1]), got {value!r}")
    p = float(value)
    if not 0.0 <= p <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
    return p


def _duration(name: str, value: object, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    d = float(value)
    if not math.isfinite(d) or d < 0 or (positive and d == 0):
        need = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be a finite number of seconds {need}, got {value!r}")
    return d


class _Direction:
    """Per-direction state: its random stream, the held-back frame, its sink."""

    __slots__ = ("prefix", "enabled", "rng", "sink", "held", "held_timer")

    def __init__(self, prefix: str, enabled: bool, seed: int | str,
                 sink: Callable[[bytes], None]) -> None:
        self.prefix = prefix
        self.enabled = enabled
        # Random(str) seeds through SHA-512: identical across runs and platforms.
        self.rng = random.Random(f"femtotcp-faulty:{seed}:{prefix}")
        self.sink = sink
        self.held: bytes | None = None
        self.held_timer: Timer | None = None


class FaultyDevice(Device):
    """Wrap ``inner`` and apply seeded faults to its frames (see the module doc)."""

    def __init__(self, inner: Device, loop: Loop, loss: float = 0.0, duplicate: float = 0.0,
                 reorder: float = 0.0, corrupt: float = 0.0, delay: float = 0.0,
                 jitter: float = 0.0, seed: int | str = 0, inbound: bool = True,
                 outbound: bool = True, hold: float = 0.05, name: str | None = None) -> None:
        if not isinstance(inner, Device):
            raise TypeError(f"inner must be a Device, got {type(inner).__name__}")
        super().__init__(name or f"{inner.name}+faults", inner.mtu)
        self.inner = inner
        self.loop = loop
        self.raw_ip = inner.raw_ip
        self.seed = seed
        self.loss = self.duplicate = self.reorder = self.corrupt = 0.0
        self.delay = self.jitter = 0.0
        self.hold = 0.05
        self.configure(loss=loss, duplicate=duplicate, reorder=reorder, corrupt=corrupt,
                       delay=delay, jitter=jitter, hold=hold)
        self._closed = False
        self._in = _Direction("in", inbound, seed, self.deliver)
        self._out = _Direction("out", outbound, seed, inner.send)
        if inbound and inner.capabilities.gro:
            try:
                inner.set_gro(False)
            except OSError as exc:
                log.info("%s keeps delivering GRO super-frames (%s): faults apply to "
                         "them whole", inner.name, exc.strerror)
        inner.set_receiver(self._from_inner)

    def configure(self, **settings: float) -> None:
        """Change fault settings on the fly (e.g. ``loss=1.0`` for a partition).

        Every value is validated before any is applied."""
        checked: dict[str, float] = {}
        for key, value in settings.items():
            if key in _PROBABILITIES:
                checked[key] = _probability(key, value)
            elif key in _DURATIONS:
                checked[key] = _duration(key, value)
            elif key == "hold":
                checked[key] = _duration(key, value, positive=True)
            else:
                raise ValueError(f"unknown fault setting {key!r}")
        for key, v in checked.items():
            setattr(self, key, v)

    # -- forwarding to the wrapped device -------------------------------------
    @property
    def gro(self) -> bool:  # type: ignore[override]
        """The inner device's: its super-frames pass through the faults whole."""
        return self.inner.gro

    def set_gro(self, on: bool) -> None:
        self.inner.set_gro(on)

    def fileno(self) -> int:
        return self.inner.fileno()

    def on_readable(self) -> None:
        self.inner.on_readable()

    def close(self) -> None:
        """Drop held and delayed frames, then close the wrapped device."""
        self._closed = True
        for d in (self._in, self._out):
            d.held = None
            if d.held_timer is not None:
                d.held_timer.cancel()
                d.held_timer = None
        super().close()
        self.inner.close()

    # -- the fault pipeline ---------------------------------------------------
    def _transmit(self, frame: bytes) -> None:
        if self._closed:
            self.counters["tx_closed"] += 1
            return
        self._process(self._out, frame)

    def _from_inner(self, frame: bytes) -> None:
        if self._closed:
            return
        self._process(self._in, frame)

    def _process(self, d: _Direction, frame: bytes) -> None:
        if not d.enabled:
            d.sink(frame)
            return
        rng = d.rng
        counters = self.counters
        if self.loss and rng.random() < self.loss:
            counters[d.prefix + ".lost"] += 1
            return
        if self.corrupt and rng.random() < self.corrupt:
            frame = self._corrupt(d, frame)
        if self.duplicate and rng.random() < self.duplicate:
            counters[d.prefix + ".duplicated"] += 1
            self._reorder_stage(d, frame)
        self._reorder_stage(d, frame)

    def _corrupt_span(self, frame: bytes) -> tuple[int, int]:
        """The byte range a flipped bit must land in to be caught by a checksum."""
        n = len(frame)
        start = 0
        if not self.raw_ip:
            start = 14
            if n >= 18 and frame[12] == 0x81 and frame[13] == 0x00:
                start = 18  # past the 802.1Q tag
        end = n
        if n >= start + 1:
            version = frame[start] >> 4
            if version == 4 and n >= start + 4:
                end = min(n, start + int.from_bytes(frame[start + 2:start + 4], "big"))
            elif version == 6 and n >= start + 6:
                end = min(n, start + 40 + int.from_bytes(frame[start + 4:start + 6], "big"))
        return start, end

    def _corrupt(self, d: _Direction, frame: bytes) -> bytes:
        start, end = self._corrupt_span(frame)
        if end <= start:
            self.counters[d.prefix + ".corrupt_skipped"] += 1
            return frame
        bit = d.rng.randrange((end - start) * 8)
        data = bytearray(frame)
        data[start + (bit >> 3)] ^= 1 << (bit & 7)
        self.counters[d.prefix + ".corrupted"] += 1
        return bytes(data)

    def _reorder_stage(self, d: _Direction, frame: bytes) -> None:
        if d.held is None and self.reorder and d.rng.random() < self.reorder:
            d.held = frame
            d.held_timer = self.loop.call_at(self.loop.now() + self.hold,
                                             lambda: self._release(d))
            self.counters[d.prefix + ".reordered"] += 1
            return
        self._delay_stage(d, frame)
        held = d.held
        if held is not None:
            d.held = None
            if d.held_timer is not None:
                d.held_timer.cancel()
                d.held_timer = None
            self._delay_stage(d, held)

    def _release(self, d: _Direction) -> None:
        """Timer: nothing overtook the held frame within ``hold``; let it go."""
        held = d.held
        d.held = None
        d.held_timer = None
        if held is not None and not self._closed:
            self.counters[d.prefix + ".hold_expired"] += 1
            self._delay_stage(d, held)

    def _delay_stage(self, d: _Direction, frame: bytes) -> None:
        wait = self.delay
        if self.jitter:
            wait += d.rng.uniform(0.0, self.jitter)
        if wait > 0:
            self.counters[d.prefix + ".delayed"] += 1
            self.loop.call_at(self.loop.now() + wait, lambda: self._emit(d, frame))
        else:
            d.sink(frame)

    def _emit(self, d: _Direction, frame: bytes) -> None:
        if not self._closed:
            d.sink(frame)
