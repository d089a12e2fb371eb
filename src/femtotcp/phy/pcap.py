"""Classic libpcap files: a capture writer, a validating reader, a replay device.

Format (the libpcap "savefile", also draft-ietf-opsawg-pcap): a 24-byte global
header (magic, version 2.4, zone, sigfigs, snaplen, link type) followed by
records of a 16-byte header (seconds, sub-seconds, captured length, original
length) and the captured bytes. The magic 0xA1B2C3D4 means microsecond
timestamps, 0xA1B23C4D nanoseconds; read in the wrong byte order it tells the
reader to swap.

- ``PcapWriter`` writes each record with one ``write`` (unbuffered for files
  it opens itself), so tshark can read the file while the stack runs.
- ``PcapReader`` treats the file as hostile: every length is checked before it
  is used and anything wrong raises ``ValueError`` saying what and where.
- ``PcapDevice`` replays a capture into a stack, one frame per loop turn.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING

from femtotcp.phy.base import Device

if TYPE_CHECKING:
    from femtotcp.core.loop import Loop

log = logging.getLogger("femtotcp.phy.pcap")

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101  # raw IPv4/IPv6, no link-layer header

MAGIC_USEC = 0xA1B2C3D4
MAGIC_NSEC = 0xA1B23C4D
_PCAPNG_MAGIC = 0x0A0D0D0A

#: The reader refuses any record bigger than this, whatever the header claims.
MAX_RECORD = 256 * 1024
MAX_SNAPLEN = 262144

_GLOBAL = struct.Struct("<IHHiIII")
_RECORD_FMT = "IIII"


class PcapWriter:
    """Write frames to a pcap file (``path_or_file``: a path or a binary file object).

    ``attach(device)`` records every frame the device sends or receives, with the
    timestamp from ``clock`` (wall-clock seconds by default; pass the loop's
    clock for virtual-time captures). ``snaplen`` defaults to 262144, as
    tcpdump's, so a TSO or GRO super-frame (up to 64 KB and its headers) is
    recorded whole, with its checksum complete for received ones (a device
    completes partial checksums when it has captures: phy/tap.py). Thread-safe: captures arrive on the loop
    thread while another thread may ``close()``."""

    def __init__(self, path_or_file: str | os.PathLike[str] | IO[bytes],
                 clock: Callable[[], float] = time.time, linktype: int = LINKTYPE_ETHERNET,
                 snaplen: int = MAX_SNAPLEN, nanosecond: bool = False) -> None:
        if linktype not in (LINKTYPE_ETHERNET, LINKTYPE_RAW):
            raise ValueError(f"linktype must be {LINKTYPE_ETHERNET} (Ethernet) or "
                             f"{LINKTYPE_RAW} (raw IP), got {linktype!r}")
        if not isinstance(snaplen, int) or not 1 <= snaplen <= MAX_SNAPLEN:
            raise ValueError(f"snaplen must be an int in 1..{MAX_SNAPLEN}, got {snaplen!r}")
        self.clock = clock
        self.linktype = linktype
        self.snaplen = snaplen
        self.nanosecond = nanosecond
        self._scale = 1_000_000_000 if nanosecond else 1_000_000
        self._lock = threading.Lock()
        self._captures: dict[int, tuple[Device, Callable[[bytes, bool], None]]] = {}
        self.packets = 0
        self.dropped_after_close = 0
        self.write_errors = 0
        self._file: IO[bytes] | None
        if isinstance(path_or_file, (str, os.PathLike)):
            self._file = open(path_or_file, "wb", buffering=0)
            self._owned = True
            self.path: str | None = os.fspath(path_or_file)
        else:
            self._file = path_or_file
            self._owned = False
            self.path = None
        magic = MAGIC_NSEC if nanosecond else MAGIC_USEC
        self._emit(_GLOBAL.pack(magic, 2, 4, 0, 0, snaplen, linktype))

    def _emit(self, data: bytes) -> None:
        f = self._file
        assert f is not None
        view = memoryview(data)
        while view:
            n = f.write(view)  # a raw file may write less than asked
            if n is None or n >= len(view):
                break
            if n <= 0:
                raise OSError(errno.EIO, "pcap write made no progress")
            view = view[n:]
        if not self._owned:
            f.flush()

    # -- capturing devices ----------------------------------------------------
    def attach(self, device: Device) -> None:
        """Record every frame ``device`` sends or receives."""
        want = LINKTYPE_RAW if device.raw_ip else LINKTYPE_ETHERNET
        if want != self.linktype:
            raise ValueError(f"device {device.name!r} carries "
                             f"{'raw IP packets' if device.raw_ip else 'Ethernet frames'} "
                             f"but this pcap has linktype {self.linktype}; use "
                             f"linktype={want}")
        if id(device) in self._captures:
            return

        def capture(frame: bytes, outbound: bool) -> None:
            self._capture(frame)

        self._captures[id(device)] = (device, capture)
        device.add_capture(capture)

    def detach(self, device: Device) -> None:
        entry = self._captures.pop(id(device), None)
        if entry is not None:
            device.remove_capture(entry[1])

    def _capture(self, frame: bytes) -> None:
        """Capture callback: never raises into the device's data path."""
        if self._file is None:
            self.dropped_after_close += 1
            return
        try:
            self.write(frame)
        except (OSError, ValueError) as exc:
            self.write_errors += 1
            if self.write_errors == 1:
                log.warning("pcap capture to %s failed: %s", self.path or "<file>", exc)

    # -- writing --------------------------------------------------------------
    def write(self, frame: bytes | bytearray | memoryview, ts: float | None = None) -> None:
        """Append one record (``ts`` defaults to ``clock()``); ValueError once closed."""
        if ts is None:
            ts = self.clock()
        if ts < 0:
            ts = 0.0
        sec = int(ts)
        frac = int(round((ts - sec) * self._scale))
        if frac >= self._scale:
            sec += 1
            frac -= self._scale
        sec &= 0xFFFFFFFF
        length = len(frame)
        caplen = min(length, self.snaplen)
        record = struct.pack("<IIII", sec, frac, caplen, length) + bytes(frame[:caplen])
        with self._lock:
            if self._file is None:
                raise ValueError("write to a closed PcapWriter")
            self._emit(record)
            self.packets += 1

    def flush(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.flush()

    def close(self) -> None:
        """Detach from every device, flush, close the file if we opened it. Idempotent."""
        for device, capture in list(self._captures.values()):
            device.remove_capture(capture)
        self._captures.clear()
        with self._lock:
            f, self._file = self._file, None
            if f is None:
                return
            f.flush()
            if self._owned:
                f.close()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PcapReader:
    """Iterate ``(timestamp, frame)`` over a pcap file, validating everything.

    Accepts both byte orders and microsecond or nanosecond timestamps. Raises
    ``ValueError`` for a bad magic (including pcapng), an unsupported version, a
    truncated header or record, or a record whose captured length exceeds the
    snaplen or ``MAX_RECORD``."""

    def __init__(self, path_or_file: str | os.PathLike[str] | IO[bytes]) -> None:
        if isinstance(path_or_file, (str, os.PathLike)):
            self._file: IO[bytes] = open(path_or_file, "rb")
            self._owned = True
            self.source = os.fspath(path_or_file)
        else:
            self._file = path_or_file
            self._owned = False
            self.source = getattr(path_or_file, "name", "<file>")
        try:
            self._read_global()
        except BaseException:
            self.close()
            raise

    def _fail(self, what: str) -> ValueError:
        return ValueError(f"{self.source}: {what}")

    def _read_global(self) -> None:
        head = self._file.read(24)
        if len(head) < 4:
            raise self._fail(f"not a pcap file: only {len(head)} bytes")
        (magic_le,) = struct.unpack_from("<I", head)
        (magic_be,) = struct.unpack_from(">I", head)
        if magic_le in (MAGIC_USEC, MAGIC_NSEC):
            order, magic = "<", magic_le
        elif magic_be in (MAGIC_USEC, MAGIC_NSEC):
            order, magic = ">", magic_be
        elif magic_le == _PCAPNG_MAGIC:
            raise self._fail("pcapng files are not supported (convert with "
                             "`editcap -F pcap IN OUT`)")
        else:
            raise self._fail(f"not a pcap file: bad magic 0x{magic_le:08x}")
        if len(head) < 24:
            raise self._fail(f"truncated global header: {len(head)} of 24 bytes")
        _m, major, minor, _zone, _sigfigs, snaplen, linktype = struct.unpack(
            order + "IHHiIII", head)
        if major != 2:
            raise self._fail(f"unsupported pcap version {major}.{minor}")
        self.byteorder = "little" if order == "<" else "big"
        self.nanosecond = magic == MAGIC_NSEC
        self.version = (major, minor)
        self.snaplen = snaplen
        # The top bits of the link-type field carry FCS information; the type is the low 16.
        self.linktype = linktype & 0xFFFF
        self._record = struct.Struct(order + _RECORD_FMT)
        self._scale = 1e-9 if self.nanosecond else 1e-6
        self._limit = min(snaplen, MAX_RECORD) if snaplen else MAX_RECORD
        self._offset = 24
        self.index = 0

    def __iter__(self) -> Iterator[tuple[float, bytes]]:
        return self

    def __next__(self) -> tuple[float, bytes]:
        f = self._file
        rec = self._record
        head = f.read(rec.size)
        if not head:
            raise StopIteration
        where = f"record {self.index} at offset {self._offset}"
        if len(head) < rec.size:
            raise self._fail(f"{where}: truncated record header "
                             f"({len(head)} of {rec.size} bytes)")
        sec, frac, caplen, origlen = rec.unpack(head)
        if caplen > self._limit:
            if self.snaplen and caplen > self.snaplen:
                raise self._fail(f"{where}: captured length {caplen} exceeds the "
                                 f"snaplen {self.snaplen}")
            raise self._fail(f"{where}: captured length {caplen} exceeds the "
                             f"{MAX_RECORD}-byte limit")
        data = f.read(caplen)
        if len(data) < caplen:
            raise self._fail(f"{where}: truncated record: {len(data)} of {caplen} bytes")
        self._offset += rec.size + caplen
        self.index += 1
        return sec + frac * self._scale, data

    def close(self) -> None:
        if self._owned:
            self._file.close()

    def __enter__(self) -> PcapReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_pcap(path_or_file: str | os.PathLike[str] | IO[bytes] | bytes) -> list[tuple[float, bytes]]:
    """All records of a pcap file (or of pcap bytes) as a list."""
    src: str | os.PathLike[str] | IO[bytes]
    src = io.BytesIO(path_or_file) if isinstance(path_or_file, bytes) else path_or_file
    with PcapReader(src) as reader:
        return list(reader)


class PcapDevice(Device):
    """Replay a capture into a stack: ``start()`` delivers each frame in turn.

    Each delivery runs on its own loop turn (``loop.call_soon``), so the stack's
    replies go out between frames as they would on a wire. Frames the stack
    sends are counted (attach a ``PcapWriter`` to record them). A capture
    taken on an offloading TAP holds super-frames larger than the MTU, so the
    replay device states ``gro``; nothing it delivers is vouched for (every
    checksum is verified)."""

    gro = True

    def __init__(self, path: str | os.PathLike[str] | IO[bytes], loop: Loop,
                 name: str = "pcap0", mtu: int = 1500) -> None:
        super().__init__(name, mtu)
        self.loop = loop
        self._reader: PcapReader | None = PcapReader(path)
        if self._reader.linktype not in (LINKTYPE_ETHERNET, LINKTYPE_RAW):
            linktype = self._reader.linktype
            self._reader.close()
            raise ValueError(f"cannot replay link type {linktype}: only "
                             f"{LINKTYPE_ETHERNET} (Ethernet) and {LINKTYPE_RAW} (raw IP)")
        self.raw_ip = self._reader.linktype == LINKTYPE_RAW
        self.started = False
        self.error: ValueError | None = None

    @property
    def done(self) -> bool:
        """True once every frame was delivered (or the file turned out bad)."""
        return self.started and self._reader is None

    def start(self) -> None:
        """Begin the replay (after the stack is attached to the loop)."""
        if not self.started:
            self.started = True
            self.loop.call_soon(self._next)

    def _next(self) -> None:
        reader = self._reader
        if reader is None:
            return
        try:
            _ts, frame = next(reader)
        except StopIteration:
            self._finish()
            return
        except ValueError as exc:
            self.error = exc
            self.counters["rx_bad_file"] += 1
            self._finish()
            return
        self.deliver(frame)
        self.loop.call_soon(self._next)

    def _finish(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _transmit(self, frame: bytes) -> None:
        """Frames sent into a replay go nowhere (counted by ``send``)."""

    def close(self) -> None:
        super().close()
        self._finish()
