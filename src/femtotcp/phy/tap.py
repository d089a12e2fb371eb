"""Linux TAP devices: Ethernet frames between the stack and the kernel.

``TapDevice`` opens ``/dev/net/tun`` with ``IFF_TAP | IFF_NO_PI`` (no packet
information header: every read/write is exactly one Ethernet frame), makes the
fd non-blocking, sets the MTU and brings the link up. Both the TAP interface
and the ioctl socket used to manage it belong to the network namespace the
calling *thread* is in when the device is constructed (``setns(2)`` is per
thread); the device keeps working from any thread afterwards.

Robustness rules (the kernel side is not ours to control):

- ``_transmit`` never raises: EIO (link is administratively down), ENOBUFS,
  EAGAIN, EINVAL and any other OSError are counted (``tx_link_down``,
  ``tx_nobufs``, ``tx_again``, ``tx_invalid``, ``tx_error``).
- When someone brings the link down and up again (``ip link set``), the same fd
  keeps working: writes while down are counted, traffic resumes after up.
- ``on_readable`` reads until EAGAIN, at most ``max_batch`` frames; the first
  is delivered as soon as it is read (the answer to a lone frame is written
  before the queue is looked at again; a ``poll(2)`` then ends the batch of
  a lone frame without the read that would fail with EAGAIN), the others
  after the batch's reads, at once (``deliver_batch``: the stack merges runs of TCP segments
  among them, stack/gro.py; a wrapper's receiver still gets them one by
  one); a read error other than EAGAIN is counted and ends the batch.
  When the interface is deleted under us (EBADFD) the device stops reading and
  swaps its fd for a never-readable one so the loop cannot spin on it.
- Under a SYN flood (TAP only, with a loop that called ``set_loop``): while
  read batches keep ending full and the kernel offers more than we read, a
  BPF filter on the TAP keeps only a random share of bare TCP SYNs (those
  with TCP options first) and RSTs, so the rest (pings, handshake ACKs, data)
  still gets into the queue; see phy/synshed.py (``shed_syns = False`` turns
  it off).

Offload (``TapDevice(..., offload=True)``, the default, with GRO reads on
unless ``gro=False``; TUN and ``from_fd`` devices have none unless asked): the
TAP is opened with ``IFF_VNET_HDR``, so every read and write starts with a
10-byte ``struct virtio_net_hdr`` (virtio 1.x spec 5.1.6, little-endian).
With ``gro`` the device issues ``TUNSETOFFLOAD(TUN_F_CSUM | TUN_F_TSO4 |
TUN_F_TSO6)``: the
kernel may then hand us partial checksums and TCP super-frames (faster
receiving); without, ``TUNSETOFFLOAD(0)``: the kernel completes and segments
everything it sends us, and only our writes use offload. ``set_gro(False)``
re-issues it at run time: a wrapper that cannot pass super-frames on asks for
MTU-sized frames that way (``FaultyDevice`` passes them on; see
phy/faulty.py). ``offload=False`` gives the plain TAP (no header at all).

- Sending: ``send`` writes a header of zeros (a complete frame);
  ``send_offload(frame, gso_size, csum_start, csum_offset, hdr_len)`` writes a
  frame whose TCP checksum field holds only the pseudo-header sum
  (``VIRTIO_NET_HDR_F_NEEDS_CSUM``) and, with ``gso_size``, a TCP/IPv4
  super-segment of up to 64 KB that the kernel receives as one GSO packet
  (``VIRTIO_NET_HDR_GSO_TCPV4``: it is cut into ``gso_size`` pieces only if
  the kernel forwards it). The kernel takes these whatever ``gro`` says.
  Captures see the super-frame as written (one
  record, the checksum field partial), as tcpdump does on an offloading NIC.
- Receiving: a frame flagged ``DATA_VALID`` (the kernel verified its
  checksum) or ``NEEDS_CSUM`` (the kernel built it and left the checksum
  partial) is vouched for: it goes to the stack's trusted receiver
  (``deliver_checked``; ``checksum_rx`` is True on a vnet-header device) and
  TCP/UDP skip verifying it, as Linux does for CHECKSUM_UNNECESSARY and
  CHECKSUM_PARTIAL. A partial checksum is completed here (sum from
  ``csum_start`` to the end, stored at ``csum_start + csum_offset``) only when
  someone else sees the frame: a capture, or a receiver that verifies (any
  wrapper, which never gets the trusted entry). Every other frame is verified
  by the stack as usual. A GSO frame (``gso_type`` TCPV4, only with ``gro``)
  is delivered whole, larger than the MTU, and the stack accepts oversize
  frames only from a device whose ``gro`` is True.
  Headers the kernel should never send are dropped and counted, never
  raised: an unknown ``gso_type``, or a GSO frame without ``gro``
  (``rx_vnet_bad_gso``), a GSO frame with
  ``gso_size`` 0 (``rx_vnet_bad_gso_size``), a checksum position outside the
  frame (``rx_vnet_bad_csum``), a read shorter than the header plus an
  Ethernet header (``rx_vnet_truncated``), a plain frame over the MTU
  (``rx_oversize``).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import select
import socket
import struct
from typing import NamedTuple

from femtotcp.core.loop import Loop
from femtotcp.phy.base import Device
from femtotcp.phy.synshed import SynShed, attach_filter, link_offered
from femtotcp.wire.checksum import sum_value

log = logging.getLogger("femtotcp.phy.tap")

TUN_PATH = "/dev/net/tun"

# <linux/if_tun.h>
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUNSETOFFLOAD = 0x400454D0
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04

# <linux/virtio_net.h>: struct virtio_net_hdr (legacy 10-byte layout).
VNET_HDR = struct.Struct("<BBHHHH")   # flags, gso_type, hdr_len, gso_size, csum_start/offset
VNET_HDR_LEN = VNET_HDR.size
VIRTIO_NET_HDR_F_NEEDS_CSUM = 0x01
VIRTIO_NET_HDR_F_DATA_VALID = 0x02
VIRTIO_NET_HDR_GSO_NONE = 0
VIRTIO_NET_HDR_GSO_TCPV4 = 1
VIRTIO_NET_HDR_GSO_TCPV6 = 4
VIRTIO_NET_HDR_GSO_ECN = 0x80
_PLAIN_HDR = bytes(VNET_HDR_LEN)
#: Flags by which the kernel vouches for a frame's TCP/UDP checksum.
_VOUCHED = VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID
#: csum_start and csum_offset, at offset 6 of the vnet header.
_CSUM_AT = struct.Struct("<HH")
#: The largest frame a GSO read or write carries: a 64 KB IP packet plus
#: Ethernet and 802.1Q headers.
MAX_GSO_FRAME = 65535 + 18

# <linux/sockios.h>, <linux/if.h>
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCGIFMTU = 0x8921
SIOCSIFMTU = 0x8922
SIOCGIFINDEX = 0x8933
IFF_UP = 0x1
IFF_RUNNING = 0x40

IFNAMSIZ = 16  # including the terminating NUL: names have at most 15 bytes
_IFREQ_SIZE = 40
_IFREQ_SHORT = struct.Struct("16sh")
_IFREQ_INT = struct.Struct("16si")

MIN_MTU = 68
MAX_MTU = 65535

_TX_ERRORS = {
    errno.EIO: "tx_link_down",
    errno.ENOBUFS: "tx_nobufs",
    errno.EAGAIN: "tx_again",
    errno.EINVAL: "tx_invalid",
}


def _check_name(name: str) -> bytes:
    """Validate an interface name the way the kernel will (dev_valid_name)."""
    if not isinstance(name, str):
        raise TypeError(f"interface name must be str, got {type(name).__name__}")
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) >= IFNAMSIZ:
        raise OSError(errno.ENAMETOOLONG,
                      f"interface name {name!r} is too long: at most {IFNAMSIZ - 1} bytes")
    if not raw or name in (".", "..") or any(c in name for c in "/:\0") or \
            any(c.isspace() for c in name):
        raise OSError(errno.EINVAL, f"invalid interface name {name!r}")
    return raw


def _ifreq(fmt: struct.Struct, name: bytes, value: int) -> bytes:
    return fmt.pack(name, value).ljust(_IFREQ_SIZE, b"\0")


class VnetHeader(NamedTuple):
    """``struct virtio_net_hdr`` (virtio 1.x 5.1.6)."""

    flags: int
    gso_type: int
    hdr_len: int
    gso_size: int
    csum_start: int
    csum_offset: int


def build_vnet(gso_type: int = VIRTIO_NET_HDR_GSO_NONE, gso_size: int = 0,
               csum_start: int | None = None, csum_offset: int = 0,
               hdr_len: int = 0) -> bytes:
    """The header for one write: ``csum_start`` set means NEEDS_CSUM."""
    flags = 0 if csum_start is None else VIRTIO_NET_HDR_F_NEEDS_CSUM
    return VNET_HDR.pack(flags, gso_type, hdr_len, gso_size, csum_start or 0, csum_offset)


def parse_vnet(packet: bytes | bytearray | memoryview,
               complete: bool = True) -> tuple[VnetHeader, bytes] | str:
    """Split one read from a vnet-header TAP into the header and a frame ready
    for the stack (checksum completed when the kernel left it partial, unless
    ``complete`` is False: then the checksum position is still checked, and
    the frame keeps the pseudo-header sum, to be delivered as vouched for).

    Returns the frame, or the name of the counter for a frame to drop: the
    header comes from the kernel but is checked like anything from outside."""
    n = len(packet)
    if n < VNET_HDR_LEN + 14:
        return "rx_vnet_truncated"
    hdr = VnetHeader._make(VNET_HDR.unpack_from(packet))
    gso = hdr.gso_type & ~VIRTIO_NET_HDR_GSO_ECN
    if gso not in (VIRTIO_NET_HDR_GSO_NONE, VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6):
        return "rx_vnet_bad_gso"
    if gso != VIRTIO_NET_HDR_GSO_NONE and hdr.gso_size == 0:
        return "rx_vnet_bad_gso_size"
    view = memoryview(packet)[VNET_HDR_LEN:]
    if gso == VIRTIO_NET_HDR_GSO_TCPV6 and bytes(view[12:14]) != b"\x86\xdd":
        return "rx_vnet_bad_gso"          # a TCP/IPv6 super-frame must be IPv6
    if not hdr.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM:
        return hdr, bytes(view)
    start = hdr.csum_start
    pos = start + hdr.csum_offset
    flen = len(view)
    if start < 14 or pos + 2 > flen:
        return "rx_vnet_bad_csum"
    if not complete:
        return hdr, bytes(view)
    # The field holds the pseudo-header sum: the ones' complement sum of
    # everything from csum_start, complemented, completes it (RFC 1071).
    csum = 0xFFFF - sum_value(view[start:]) % 0xFFFF
    frame = bytearray(view)
    frame[pos] = csum >> 8
    frame[pos + 1] = csum & 0xFF
    return hdr, bytes(frame)


def _poller(fd: int) -> select.poll:
    """A ``poll(2)`` set of ``fd`` alone, for reading."""
    ready = select.poll()
    ready.register(fd, select.POLLIN)
    return ready


def _offload_flags(gro: bool) -> int:
    """TUNSETOFFLOAD's argument: partial checksums and TCP super-frames (IPv4, IPv6)
    towards us with GRO, else complete MTU-sized frames only."""
    return (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) if gro else 0


class TunTapDevice(Device):
    """Shared machinery of TAP (Ethernet) and TUN (raw IP) devices."""

    #: IFF_TAP or IFF_TUN; set by the subclass.
    kind_flag = IFF_TAP
    kind_name = "TAP"
    #: frame overhead on top of the IP MTU (Ethernet header + an 802.1Q tag).
    overhead = 18
    _ctl: socket.socket | None
    _nl: socket.socket | None
    #: ``poll(2)`` on the fd: whether more is queued after a batch's first frame.
    _ready: select.poll | None

    def __init__(self, name: str, mtu: int = 1500, up: bool = True,
                 max_batch: int = 128, offload: bool = False,
                 gro: bool | None = None) -> None:
        raw_name = _check_name(name)
        if not isinstance(mtu, int) or not MIN_MTU <= mtu <= MAX_MTU:
            raise ValueError(f"mtu must be an int in {MIN_MTU}..{MAX_MTU}, got {mtu!r}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self._init_state(name, mtu, max_batch, offload, gro)
        self._fd = self._open(raw_name)
        self._ready = _poller(self._fd)
        try:
            self._ctl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            if self.kind_flag == IFF_TAP:
                # The kernel's counters of the TAP (SYN shedding), in its namespace.
                try:
                    self._nl = socket.socket(socket.AF_NETLINK,
                                             socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                             socket.NETLINK_ROUTE)
                except OSError:
                    self._nl = None         # no shedding: frames lost in the queue instead
            self._ifname = self.name.encode()
            self._set_mtu(mtu)
            if up:
                self.set_link(True)
        except BaseException:
            self.close()
            raise

    def _init_state(self, name: str, mtu: int, max_batch: int, offload: bool,
                    gro: bool | None) -> None:
        Device.__init__(self, name, mtu)
        self.max_batch = max_batch
        #: Vnet headers on every read/write, partial checksums and TSO/GRO (TAP only).
        self.offload = bool(offload) and self.kind_flag == IFF_TAP
        #: The kernel may send us partial checksums and GSO super-frames (larger
        #: than the MTU): the stack takes oversize frames only when this is True.
        self.gro = self.offload if gro is None else bool(gro) and self.offload
        #: The fd carries vnet headers (fixed at open; ``offload`` may be turned
        #: off later if the kernel refuses a TSO write).
        self._vnet = self.offload
        #: The kernel's DATA_VALID and NEEDS_CSUM vouch for a frame's checksum.
        self.checksum_rx = self._vnet
        self._fd = -1
        self._ready = None
        self._ctl = None
        self._dead_w = -1  # write end of the never-readable pipe after a detach
        self._buf = bytearray(max(MAX_MTU + self.overhead, MAX_GSO_FRAME) + VNET_HDR_LEN + 4)
        self._view = memoryview(self._buf)
        #: SYN shedding under a flood (phy/synshed.py); set up by ``set_loop``.
        self.shed_syns = self.kind_flag == IFF_TAP
        self._shed: SynShed | None = None
        self._nl: socket.socket | None = None

    @classmethod
    def from_fd(cls, fd: int, name: str = "tapfd", mtu: int = 1500, offload: bool = False,
                max_batch: int = 128, gro: bool | None = None) -> TunTapDevice:
        """Adopt a descriptor that is already a configured TAP/TUN queue (opened
        and TUNSETIFF'd elsewhere, e.g. handed over by a privileged helper, with
        ``IFF_VNET_HDR`` when ``offload``). The fd is made non-blocking and is
        closed with the device; there is no link management (``set_mtu`` and
        ``set_link`` raise EBADF)."""
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        dev = cls.__new__(cls)
        dev._init_state(name, mtu, max_batch, offload, gro)
        os.set_blocking(fd, False)
        dev._fd = fd
        dev._ready = _poller(fd)
        dev._ifname = name.encode()
        return dev

    # -- opening --------------------------------------------------------------
    def _open(self, raw_name: bytes) -> int:
        try:
            fd = os.open(TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise OSError(errno.ENOENT,
                          f"{TUN_PATH} does not exist: the tun driver is not available "
                          "(load it with `modprobe tun`, or pass the device into the "
                          "container)") from None
        except PermissionError as exc:
            raise OSError(exc.errno,
                          f"cannot open {TUN_PATH}: permission denied (creating a "
                          f"{self.kind_name} device needs root or CAP_NET_ADMIN)") from None
        except OSError as exc:
            raise OSError(exc.errno, f"cannot open {TUN_PATH}: {exc.strerror}") from None
        try:
            flags = self.kind_flag | IFF_NO_PI | (IFF_VNET_HDR if self._vnet else 0)
            ifr = fcntl.ioctl(fd, TUNSETIFF, _ifreq(_IFREQ_SHORT, raw_name, flags))
            if self._vnet:
                fcntl.ioctl(fd, TUNSETOFFLOAD, _offload_flags(self.gro))
        except OSError as exc:
            os.close(fd)
            name = raw_name.decode("utf-8", "surrogateescape")
            if exc.errno in (errno.EPERM, errno.EACCES):
                msg = (f"cannot create {self.kind_name} device {name!r}: permission denied "
                       "(needs root or CAP_NET_ADMIN in this network namespace)")
            elif exc.errno == errno.EBUSY:
                msg = (f"cannot create {self.kind_name} device {name!r}: the name is taken "
                       "(a device of that name is already open, by this or another process)")
            elif exc.errno == errno.EINVAL:
                msg = (f"cannot create {self.kind_name} device {name!r}: the name is "
                       "invalid or taken by a device of another type")
            else:
                msg = f"cannot create {self.kind_name} device {name!r}: {exc.strerror}"
            raise OSError(exc.errno, msg) from None
        actual = ifr[:IFNAMSIZ].split(b"\0", 1)[0]
        self.name = actual.decode("utf-8", "surrogateescape")
        return fd

    def set_gro(self, on: bool) -> None:
        """Ask the kernel for GRO super-frames and partial checksums (``on``) or
        for complete MTU-sized frames only: re-issues ``TUNSETOFFLOAD``. A
        wrapper that cannot pass super-frames on calls ``set_gro(False)``.
        Without vnet headers there is nothing to change (``gro`` stays False).
        Frames already queued in the kernel may still arrive as super-frames:
        they are counted and dropped (``rx_vnet_bad_gso``), TCP resends them."""
        on = bool(on) and self._vnet
        if on == self.gro:
            return
        if self._fd >= 0:
            try:
                fcntl.ioctl(self._fd, TUNSETOFFLOAD, _offload_flags(on))
            except OSError as exc:
                raise OSError(exc.errno, f"cannot turn GRO {'on' if on else 'off'} on "
                              f"{self.name!r}: {exc.strerror}") from None
        self.gro = on
        if not on:
            self.counters["rx_gro_off"] += 1

    # -- link management (through the socket created in the device's netns) ---
    def _ctl_socket(self) -> socket.socket:
        if self._ctl is None:
            raise OSError(errno.EBADF, f"{self.kind_name} device {self.name!r} is closed")
        return self._ctl

    def _set_mtu(self, mtu: int) -> None:
        try:
            fcntl.ioctl(self._ctl_socket(), SIOCSIFMTU, _ifreq(_IFREQ_INT, self._ifname, mtu))
        except OSError as exc:
            raise OSError(exc.errno,
                          f"cannot set MTU {mtu} on {self.name!r}: {exc.strerror}") from None
        self.mtu = mtu

    def set_mtu(self, mtu: int) -> None:
        """Change the interface MTU (kernel side and ``self.mtu``)."""
        if not isinstance(mtu, int) or not MIN_MTU <= mtu <= MAX_MTU:
            raise ValueError(f"mtu must be an int in {MIN_MTU}..{MAX_MTU}, got {mtu!r}")
        self._set_mtu(mtu)

    def _flags(self) -> int:
        ifr = fcntl.ioctl(self._ctl_socket(), SIOCGIFFLAGS,
                          _ifreq(_IFREQ_SHORT, self._ifname, 0))
        flags: int = _IFREQ_SHORT.unpack_from(ifr)[1]
        return flags & 0xFFFF

    def set_link(self, up: bool) -> None:
        """Bring the interface administratively up or down (SIOCSIFFLAGS)."""
        try:
            flags = self._flags()
            flags = (flags | IFF_UP) if up else (flags & ~IFF_UP)
            value = flags - 0x10000 if flags & 0x8000 else flags  # signed short
            fcntl.ioctl(self._ctl_socket(), SIOCSIFFLAGS,
                        _ifreq(_IFREQ_SHORT, self._ifname, value))
        except OSError as exc:
            state = "up" if up else "down"
            raise OSError(exc.errno,
                          f"cannot bring {self.name!r} {state}: {exc.strerror}") from None

    @property
    def link_up(self) -> bool:
        """True when the interface is administratively up (as the kernel sees it now)."""
        try:
            return bool(self._flags() & IFF_UP)
        except OSError:
            return False

    @property
    def ifindex(self) -> int:
        ifr = fcntl.ioctl(self._ctl_socket(), SIOCGIFINDEX, _ifreq(_IFREQ_INT, self._ifname, 0))
        index: int = _IFREQ_INT.unpack_from(ifr)[1]
        return index

    def set_loop(self, loop: Loop) -> None:
        """The loop that selects on this device (``Runtime.add_device``): its
        timers drive SYN shedding (phy/synshed.py; TAP only, ``shed_syns``)."""
        if self.shed_syns and self._nl is not None and self._shed is None:
            self._shed = SynShed(loop, self._attach_filter, self._offered, self.counters)

    def _offered(self) -> int | None:
        nl = self._nl
        if nl is None or self._fd < 0:
            return None
        try:
            index = self.ifindex
        except OSError:
            return None
        return link_offered(nl, index)

    def _attach_filter(self, prog: bytes | None) -> None:
        if self._fd < 0 or self._dead_w >= 0:
            raise OSError(errno.EBADF, "the device is closed")
        attach_filter(self._fd, prog)

    # -- the data path --------------------------------------------------------
    def fileno(self) -> int:
        return self._fd

    def on_readable(self) -> None:
        """Read up to ``max_batch`` frames. The first goes to the stack as soon
        as it is read, so a lone frame's answer (a ping's, a handshake's) is
        written before the queue is looked at again; then a ``poll(2)`` says
        whether anything is left (for a lone frame that costs a third of a
        read that fails with EAGAIN, and raises nothing); the rest are read
        back to back until EAGAIN and then delivered (the stack's code stays
        hot over a burst). The stack's per-batch work (``end_batch``) runs
        once, after."""
        if self._fd < 0:
            return
        view = self._view
        counters = self.counters
        mtu_frame = VNET_HDR_LEN + self.mtu + self.overhead
        vnet = self._vnet
        size = len(view)
        shed = self._shed
        nread = 0
        batch: list[tuple[bytes, int]] = []
        while nread < self.max_batch:
            fd = self._fd          # (a frame's handling may have closed the device)
            if fd < 0:
                break
            try:
                if vnet:
                    n = os.readv(fd, (view,))
                else:
                    # A plain frame is read into a bytes object of its own (one
                    # copy fewer than readv into the buffer, then bytes()).
                    frame = os.read(fd, size)
                    n = len(frame)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            except OSError as exc:
                if exc.errno == errno.EBADFD:
                    self._detached(exc)
                else:
                    counters["rx_error"] += 1
                break
            if n <= 0:
                counters["rx_empty"] += 1
                break
            nread += 1
            vouched = 0
            if vnet:
                flags = view[0]
                plain = not view[1] and VNET_HDR_LEN + 14 <= n <= mtu_frame
                if plain and not flags & VIRTIO_NET_HDR_F_NEEDS_CSUM:
                    # complete, no GSO; DATA_VALID: the kernel vouches for it
                    frame = view[VNET_HDR_LEN:n].tobytes()
                    vouched = flags & VIRTIO_NET_HDR_F_DATA_VALID
                elif plain and self._checked is not None and not self._captures:
                    # A partial checksum, no GSO, to the trusted receiver with
                    # nobody capturing: ``parse_vnet(..., False)`` without
                    # its header object (the checksum's position checked,
                    # the frame left as it is).
                    start, offset = _CSUM_AT.unpack_from(view, 6)
                    if start < 14 or start + offset + 2 > n - VNET_HDR_LEN:
                        counters["rx_vnet_bad_csum"] += 1
                        continue
                    frame = view[VNET_HDR_LEN:n].tobytes()
                    vouched = flags & _VOUCHED
                else:
                    # A partial checksum is left as it is when the frame goes
                    # straight to the stack's trusted receiver and nobody
                    # captures (Linux's CHECKSUM_PARTIAL: the bytes never left
                    # the kernel).
                    got = parse_vnet(view[:n], not self.has_checked_receiver
                                     or bool(self._captures))
                    if isinstance(got, str):
                        counters[got] += 1
                        continue
                    hdr, frame = got
                    if hdr.gso_type:
                        if not self.gro:
                            counters["rx_vnet_bad_gso"] += 1     # never negotiated
                            continue
                        counters["rx_gso_frames"] += 1
                    elif len(frame) > self.mtu + self.overhead:
                        counters["rx_oversize"] += 1
                        continue
                    vouched = hdr.flags & _VOUCHED
            if nread > 1:
                batch.append((frame, vouched))
                continue
            if shed is not None and shed.keep < 1.0:
                shed.count([(frame, vouched)])
            if vouched:
                self.deliver_checked(frame)
            else:
                self.deliver(frame)
            ready = self._ready
            if ready is not None and nread < self.max_batch and not ready.poll(0):
                break               # the frame came alone
        else:
            if shed is not None:          # the queue holds more than a batch
                shed.backlogged()
        if shed is not None:
            shed.reads += nread
            if shed.keep < 1.0:
                shed.count(batch)
        if batch:
            # The rest at once: to the stack's batch entry (software GRO
            # merges runs of TCP segments, stack/gro.py) when it gave one,
            # else frame by frame (a wrapper's receiver).
            self.deliver_batch(batch)

    def _detached(self, exc: OSError) -> None:
        """The interface went away (deleted under us): stop reading for good.

        The loop may still select on our fd number; we swap the fd for the read
        end of a pipe that is never written so it never reports readable."""
        self.counters["rx_detached"] += 1
        log.warning("%s device %s is gone (%s); no more frames",
                    self.kind_name, self.name, exc.strerror)
        if self._dead_w >= 0 or self._fd < 0:
            return
        r, w = os.pipe()
        try:
            os.dup2(r, self._fd)
        except OSError:
            os.close(w)
        else:
            self._dead_w = w
        finally:
            os.close(r)

    def send(self, frame: bytes) -> None:
        """``Device.send`` with ``_transmit`` inlined: one call fewer on the
        way from the stack to the write (the tail of a ping's answer)."""
        counters = self.counters
        counters["tx_frames"] += 1
        if self._captures:
            for cap in self._captures:
                cap(frame, True)
        fd = self._fd
        if fd < 0 or self._dead_w >= 0:
            counters["tx_closed" if fd < 0 else "tx_detached"] += 1
            return
        try:
            if self._vnet:
                os.writev(fd, (_PLAIN_HDR, frame))
            else:
                os.write(fd, frame)
        except OSError as exc:
            counters[_TX_ERRORS.get(exc.errno or 0, "tx_error")] += 1

    def _transmit(self, frame: bytes) -> None:
        """The write alone, for ``Device.send``'s contract (``send`` above
        replaces that and writes inline)."""
        counters = self.counters
        fd = self._fd
        if fd < 0 or self._dead_w >= 0:
            counters["tx_closed" if fd < 0 else "tx_detached"] += 1
            return
        try:
            os.writev(fd, (_PLAIN_HDR, frame)) if self._vnet else os.write(fd, frame)
        except OSError as exc:
            counters[_TX_ERRORS.get(exc.errno or 0, "tx_error")] += 1

    def send_offload(self, frame: bytes, gso_size: int, csum_start: int, csum_offset: int,
                     hdr_len: int) -> None:
        """Write one frame with a partial TCP checksum and, when ``gso_size``
        is non-zero, as a TSO super-frame of ``gso_size``-byte segments (TCPV4,
        or TCPV6 for an IPv6 frame). Only on
        an ``offload`` device; never raises (errors are counted like ``send``)."""
        counters = self.counters
        if not self._vnet:
            counters["tx_offload_unsupported"] += 1
            return
        counters["tx_frames"] += 1
        if gso_size:
            counters["tx_gso_frames"] += 1
            counters["tx_gso_segments"] += -(-(len(frame) - hdr_len) // gso_size)
        if self._captures:
            for cap in self._captures:
                cap(frame, True)
        fd = self._fd
        if fd < 0 or self._dead_w >= 0:
            counters["tx_closed" if fd < 0 else "tx_detached"] += 1
            return
        if not gso_size:
            gso = VIRTIO_NET_HDR_GSO_NONE
        elif frame[12:14] == b"\x86\xdd":        # an IPv6 frame (no VLAN on this path)
            gso = VIRTIO_NET_HDR_GSO_TCPV6
        else:
            gso = VIRTIO_NET_HDR_GSO_TCPV4
        header = VNET_HDR.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, gso, hdr_len, gso_size,
                               csum_start, csum_offset)
        try:
            os.writev(fd, (header, frame))
        except OSError as exc:
            counters[_TX_ERRORS.get(exc.errno or 0, "tx_error")] += 1
            if exc.errno == errno.EINVAL and gso_size and self.offload:
                # The kernel refuses our super-frames: stop offering TSO (the
                # lost one is retransmitted per MSS by TCP, as after any loss).
                self.offload = False
                counters["tx_offload_disabled"] += 1
                log.warning("%s device %s refused a TSO write (%s); sending MSS-sized "
                            "segments from now on", self.kind_name, self.name, exc.strerror)

    def close(self) -> None:
        """Close the fd (a non-persistent interface disappears with it). Idempotent."""
        super().close()
        if self._shed is not None:
            self._shed.close()
        if self._nl is not None:
            self._nl.close()
            self._nl = None
        fd, self._fd = self._fd, -1
        self._ready = None
        for f in (fd, self._dead_w):
            if f >= 0:
                try:
                    os.close(f)
                except OSError:
                    pass
        self._dead_w = -1
        if self._ctl is not None:
            self._ctl.close()
            self._ctl = None

    def __enter__(self) -> TunTapDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._fd < 0 else f"fd={self._fd}"
        return f"<{type(self).__name__} {self.name} mtu={self.mtu} {state}>"


class TapDevice(TunTapDevice):
    """A TAP interface: the stack sends and receives whole Ethernet frames.

    The stack owns its MAC address; the TAP's own (kernel-side) MAC is the
    kernel's, so no MAC is taken or set here."""

    kind_flag = IFF_TAP
    kind_name = "TAP"
    overhead = 18

    def __init__(self, name: str = "ftap0", mtu: int = 1500, up: bool = True,
                 max_batch: int = 128, offload: bool = True,
                 gro: bool | None = None) -> None:
        super().__init__(name, mtu, up, max_batch, offload, gro)
