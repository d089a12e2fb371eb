"""Several guests on one gateway: a learning Ethernet switch in front of the stack.

With more than one guest device (``--tap`` given several times, or
``--qemu-stream`` with ``--max-guests N``: ``QemuStreamHub`` makes each QEMU
connection a port, and removes it when QEMU goes) the gateway's
stack sees one device, ``GuestSwitch``, and the guests one shared link, as if
each were plugged into a switch whose other port is the gateway. Each guest
gets its own DHCP lease on ``--net`` and reaches the others directly (ARP and
neighbour discovery between them work as on any LAN); the gateway's NAT,
DHCP, DNS and Router Advertisements serve all of them.

The switch learns which port each source MAC sits behind (``MAX_MACS``
entries; the oldest is forgotten first) and sends a unicast frame only there;
broadcast, multicast and unknown unicast go to every other port. Frames to
the stack's own MAC (learned from what it sends) go to the stack only;
broadcast and multicast go to it too. The ports are plain devices (no
offload): a frame one guest sent is whole and checksummed, so it can go to
another guest as it is.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from femtotcp.phy.base import Device

Watch = Callable[[int, bool, bool, Any], None]

MAX_MACS = 4096


class GuestSwitch(Device):
    """One device for the stack, ``ports`` (fd devices the loop reads) for the guests."""

    def __init__(self, ports: Sequence[Device], mtu: int = 1500,
                 name: str | None = None) -> None:
        super().__init__(name or "+".join(p.name for p in ports), mtu)
        self.ports: list[Device] = []
        #: Source MAC -> the port it was last seen on (bounded, least recent first).
        self.macs: OrderedDict[bytes, Device] = OrderedDict()
        #: The stack's own MACs (the sources of what it sends).
        self.own: set[bytes] = set()
        for port in ports:
            self.add_port(port)

    def add_port(self, port: Device) -> None:
        self.ports.append(port)
        port.set_receiver(partial(self._from_port, port))

    def remove_port(self, port: Device) -> None:
        """The port's guest is gone: its MACs are forgotten (the device is not closed)."""
        if port in self.ports:
            self.ports.remove(port)
            port.set_receiver(None)
            for mac in [m for m, p in self.macs.items() if p is port]:
                del self.macs[mac]

    def _learn(self, mac: bytes, port: Device) -> None:
        macs = self.macs
        if macs.get(mac) is port:
            macs.move_to_end(mac)
            return
        if mac[0] & 1 or mac in self.own:
            self.counters["switch.bad_source"] += 1    # a group or our own MAC as source
            return
        macs[mac] = port
        macs.move_to_end(mac)
        if len(macs) > MAX_MACS:
            macs.popitem(last=False)
            self.counters["switch.mac_table_full"] += 1

    def _from_port(self, port: Device, frame: bytes) -> None:
        """A frame one guest sent: to its port, to every other port, to the stack."""
        if len(frame) < 14:
            self.counters["switch.runt"] += 1
            return
        dst = frame[0:6]
        self._learn(frame[6:12], port)
        if dst in self.own:
            self.deliver(frame)
            return
        if not dst[0] & 1:
            out = self.macs.get(dst)
            if out is port:
                self.counters["switch.same_port"] += 1
                return
            if out is not None:
                self.counters["switch.forwarded"] += 1
                out.send(frame)
                return
        self.counters["switch.flooded"] += 1
        for other in self.ports:
            if other is not port:
                other.send(frame)
        if dst[0] & 1:
            self.deliver(frame)

    def _transmit(self, frame: bytes) -> None:
        """A frame of the stack: to the port its destination sits behind, else all."""
        if len(frame) < 14:
            return
        self.own.add(frame[6:12])
        dst = frame[0:6]
        out = None if dst[0] & 1 else self.macs.get(dst)
        if out is not None:
            out.send(frame)
            return
        for port in self.ports:
            port.send(frame)

    def close(self) -> None:
        for port in self.ports:
            port.close()
        super().close()


class _Hub:
    """The Unix socket at ``path`` that a hub's QEMUs reach (``kind``: stream or
    datagram), bound afresh (a stale file replaced) and read by the loop; each
    QEMU becomes a port of ``switch``, at most ``max_guests`` at once."""

    def __init__(self, switch: GuestSwitch, path: str, max_guests: int, mtu: int,
                 kind: int) -> None:
        from femtotcp.phy.qemu import _clear_stale
        self.switch = switch
        self.path = path
        self.max_guests = max_guests
        self.mtu = mtu
        self._watch: Watch | None = None
        _clear_stale(path)
        sock = socket.socket(socket.AF_UNIX, kind | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        try:
            sock.bind(path)
            self._ready(sock)
        except OSError:
            sock.close()
            raise
        self.sock: socket.socket | None = sock

    def _ready(self, sock: socket.socket) -> None:
        """Set up the bound socket (listen, buffers)."""

    def _drop_guests(self) -> None:
        raise NotImplementedError

    def start(self, watch: Watch) -> None:
        self._watch = watch
        if self.sock is not None:
            watch(self.sock.fileno(), True, False, self)

    def close(self) -> None:
        self._drop_guests()
        if self.sock is not None:
            if self._watch is not None:
                self._watch(self.sock.fileno(), False, False, self)
            self.sock.close()
            self.sock = None
            with contextlib.suppress(OSError):
                os.unlink(self.path)


class QemuStreamHub(_Hub):
    """``--qemu-stream unix:PATH --max-guests N``: a listener whose every
    connection (one QEMU each, QEMU's length-prefixed framing) becomes a port
    of ``switch`` until it closes; past ``max_guests`` a connection is closed
    at once (counted ``switch.guest_limit``)."""

    def __init__(self, switch: GuestSwitch, path: str, max_guests: int,
                 mtu: int = 1500) -> None:
        self.accepted = 0
        super().__init__(switch, path, max_guests, mtu, socket.SOCK_STREAM)

    def _ready(self, sock: socket.socket) -> None:
        sock.listen(self.max_guests)

    def on_readable(self) -> None:
        from femtotcp.phy.qemu import QemuStreamDevice
        lst, watch, sw = self.sock, self._watch, self.switch
        if lst is None or watch is None:
            return
        for _ in range(16):
            try:
                conn, _addr = lst.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                sw.counters["accept_error"] += 1
                return
            if len(sw.ports) >= self.max_guests:
                sw.counters["switch.guest_limit"] += 1
                conn.close()
                continue
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            self.accepted += 1
            dev = QemuStreamDevice.from_socket(conn, self.mtu, f"qemu{self.accepted}")
            sw.counters["connections"] += 1
            sw.add_port(dev)
            dev.start(partial(self._port_watch, dev))

    def _port_watch(self, dev: Device, fd: int, read: bool, write: bool,
                    handler: Any) -> None:
        """The port's own selector requests; selecting on nothing means its
        connection closed: the port leaves the switch."""
        if self._watch is not None:
            self._watch(fd, read, write, handler)
        if not read and not write and dev in self.switch.ports:
            self.switch.counters["disconnects"] += 1
            self.switch.remove_port(dev)

    def _drop_guests(self) -> None:
        for port in list(self.switch.ports):
            port.close()


class _DgramPeer(Device):
    """One ``--qemu-dgram`` peer (a QEMU's bound socket address) as a switch port:
    what the stack or another guest sends it goes out of the hub's socket to
    that address."""

    def __init__(self, hub: QemuDgramHub, addr: str, name: str, mtu: int) -> None:
        super().__init__(name, mtu)
        self.hub = hub
        self.addr = addr

    def _transmit(self, frame: bytes) -> None:
        self.hub.send_to(self, frame)


class QemuDgramHub(_Hub):
    """``--qemu-dgram unix:PATH --max-guests N``: one datagram socket whose every
    sender address (a QEMU's ``-netdev dgram,local.path=...``) becomes a port of
    ``switch``. Datagrams from one more sender than N, or from an unnamed
    socket (nothing to answer to), are dropped (``switch.guest_limit``,
    ``switch.unnamed_peer``). A datagram protocol says nothing when a peer goes:
    a port leaves the switch when sending to it finds its socket gone
    (ECONNREFUSED, ENOENT: ``disconnects``), and when a sender is refused for
    the limit the peers are checked first (a ``connect`` to each address, at
    most once per ``PROBE_INTERVAL`` s: nothing is sent to them)."""

    BATCH = 128
    PROBE_INTERVAL = 1.0

    def __init__(self, switch: GuestSwitch, path: str, max_guests: int,
                 mtu: int = 1500) -> None:
        self.joined = 0
        self.peers: dict[str, _DgramPeer] = {}
        self._probed = -1e18
        super().__init__(switch, path, max_guests, mtu, socket.SOCK_DGRAM)

    def _ready(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)

    def on_readable(self) -> None:
        from femtotcp.phy.qemu import recv_frames
        sock, sw = self.sock, self.switch
        if sock is None:
            return
        got: list[tuple[_DgramPeer, bytes]] = []
        for frame, addr in recv_frames(sock, sw.counters, self.BATCH):
            if not addr:
                sw.counters["switch.unnamed_peer"] += 1
                continue
            peer = self.peers.get(addr)
            if peer is None:
                if len(self.peers) >= self.max_guests and not self._reap():
                    sw.counters["switch.guest_limit"] += 1
                    continue
                self.joined += 1
                peer = self.peers[addr] = _DgramPeer(self, addr, f"qemu{self.joined}",
                                                     self.mtu)
                sw.counters["connections"] += 1
                sw.add_port(peer)
            got.append((peer, frame))
        for peer, frame in got:
            if peer.addr in self.peers:
                peer.deliver(frame)

    def _reap(self) -> bool:
        """Drop the peers whose socket is gone; True if that made room."""
        now = time.monotonic()
        if now - self._probed < self.PROBE_INTERVAL:
            return False
        self._probed = now
        for peer in list(self.peers.values()):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            try:
                probe.connect(peer.addr)
            except (ConnectionRefusedError, FileNotFoundError):
                self.drop(peer)
            except OSError:
                pass
            finally:
                probe.close()
        return len(self.peers) < self.max_guests

    def send_to(self, peer: _DgramPeer, frame: bytes) -> None:
        sock, sw = self.sock, self.switch
        if sock is None or self.peers.get(peer.addr) is not peer:
            return
        try:
            sock.sendto(frame, peer.addr)
        except (BlockingIOError, InterruptedError):
            sw.counters["tx_dropped_full"] += 1
        except (ConnectionRefusedError, FileNotFoundError):
            self.drop(peer)
        except OSError:
            sw.counters["tx_error"] += 1

    def drop(self, peer: _DgramPeer) -> None:
        """The peer's socket is gone: its port leaves the switch."""
        if self.peers.get(peer.addr) is peer:
            del self.peers[peer.addr]
            self.switch.counters["disconnects"] += 1
            self.switch.remove_port(peer)

    def _drop_guests(self) -> None:
        for peer in list(self.peers.values()):
            self.drop(peer)
