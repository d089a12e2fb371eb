"""``femtotcp gateway``: a stack that is a guest's router, DHCP and DNS server.

The guest's side is an ordinary stack on one device (a TAP, created in
another network namespace with ``netns``); the gateway's host sockets stay in
the namespace it was started in. On ``--net PREFIX`` (QEMU's 10.0.2.0/24 by
default) the stack holds the gateway address (.2) and the DNS address (.3),
serves DHCP from .15 on, forwards DNS to the host's resolvers, and carries the
guest's flows through ``Nat``. On ``--net6 PREFIX/64`` (fd00::/64 by default,
as slirp4netns) it holds ::2 and ::3 likewise and advertises the prefix
(``ra.py``: SLAAC, RDNSS); the guest's IPv6 goes through the same NAT onto
AF_INET6 host sockets. Port forwards listen on host sockets and open
connections to the guest.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from femtotcp.gateway import DEFAULT_NET, DEFAULT_NET6
from femtotcp.gateway.dns_forward import DnsForwarder, resolv_conf_servers
from femtotcp.gateway.flows import Limits
from femtotcp.gateway.nat import Nat, UdpForward
from femtotcp.gateway.ra import RouterAdvertiser
from femtotcp.host import Capturing
from femtotcp.phy.netns import entered_fd
from femtotcp.runtime import Runtime
from femtotcp.stack.config import StackConfig
from femtotcp.stack.stack import Stack, parse_prefix
from femtotcp.wire import ip_bytes, ip_str

log = logging.getLogger("femtotcp.gateway")



@dataclass
class Forward:
    """``-t [ADDR:]HOSTPORT:GUESTPORT``; an IPv6 ADDR in brackets (``[::]:8080:80``)."""

    host_addr: str
    host_port: int
    guest_port: int

    @property
    def v6(self) -> bool:
        return ":" in self.host_addr

    def host(self) -> str:
        """``ADDR:PORT`` of the host socket (``[ADDR]:PORT`` for IPv6)."""
        addr = f"[{self.host_addr}]" if self.v6 else self.host_addr
        return f"{addr}:{self.host_port}"

    @classmethod
    def parse(cls, text: str, flag: str = "-t") -> Forward:
        want = f"{flag} {text}: want [ADDR:]HOSTPORT:GUESTPORT (an IPv6 ADDR in brackets)"
        try:
            if text.startswith("["):
                addr, sep, rest = text[1:].partition("]:")
                if not sep or len(ip_bytes(addr)) != 16:
                    raise ValueError
                addr = ip_str(ip_bytes(addr))
                hp, sep, gp = rest.partition(":")
                if not sep:
                    raise ValueError
            else:
                parts = text.split(":")
                if len(parts) == 2:
                    addr, hp, gp = "0.0.0.0", parts[0], parts[1]
                elif len(parts) == 3:
                    addr, hp, gp = parts
                    if len(ip_bytes(addr)) != 4:
                        raise ValueError
                else:
                    raise ValueError
            host_port, guest_port = int(hp, 10), int(gp, 10)
        except ValueError:
            raise ValueError(want) from None
        for p in (host_port, guest_port):
            if not 1 <= p <= 65535:
                raise ValueError(f"{flag} {text}: port {p} out of range 1..65535")
        return cls(addr, host_port, guest_port)


@dataclass
class GatewayOptions:
    #: The guest's TAP; several (a list) for several guests on one switch.
    tap: str | list[str] | None = None
    #: Where the TAP is made: one namespace for all, or one per TAP (in order).
    netns: str | list[str] | None = None
    qemu_stream: str | None = None
    qemu_dgram: str | None = None
    fd: int | None = None
    net: str = DEFAULT_NET
    #: The guest's IPv6 /64 (None: no IPv6 for the guest).
    net6: str | None = DEFAULT_NET6
    mtu: int = 1500
    pcap: str | None = None
    tcp_forwards: list[str] = field(default_factory=list)
    udp_forwards: list[str] = field(default_factory=list)
    dns_upstream: list[str] = field(default_factory=list)
    host_records: list[str] = field(default_factory=list)
    allow_host_loopback: bool = False
    forward_masquerade: bool = False
    max_flows: int = 4096
    #: ``--qemu-stream``/``--qemu-dgram``: how many QEMUs at once (each a guest on a
    #: switch: a connection, or a sender address).
    max_guests: int = 1
    udp_timeout: float = 120.0
    connect_timeout: float = 20.0
    #: The loop's longest adaptive busy poll, microseconds (0: off).
    busy_poll: float = 200.0
    control: str | None = None
    #: TAP with vnet headers: TSO super-segments to the guest, GRO frames from it.
    offload: bool = True

    def taps(self) -> list[str]:
        return [self.tap] if isinstance(self.tap, str) else list(self.tap or [])

    def netns_for(self) -> list[str | None]:
        """The namespace of each TAP (None: where the gateway runs)."""
        ns = [self.netns] if isinstance(self.netns, str) else list(self.netns or [])
        taps = self.taps()
        return [ns[i] if len(ns) > 1 else (ns[0] if ns else None) for i in range(len(taps))]

    def addresses(self) -> tuple[bytes, int, bytes, bytes, bytes, bytes]:
        """(network, prefixlen, gateway .2, DNS .3, first lease .15, last lease)."""
        addr, plen = parse_prefix(self.net)
        if "/" not in self.net:
            raise ValueError(f"--net {self.net}: give a prefix, e.g. 10.0.2.0/24")
        if plen > 27:
            raise ValueError(f"--net {self.net}: the prefix must be /27 or shorter "
                             "(the first lease is .15)")
        mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
        base = int.from_bytes(addr, "big") & mask
        if base >> 24 in (0, 127) or base >> 24 >= 224:
            raise ValueError(f"--net {self.net}: not a usable unicast network")
        last = min(base + 15 + 254, (base | ~mask & 0xFFFFFFFF) - 1)

        def b(n: int) -> bytes:
            return n.to_bytes(4, "big")
        return b(base), plen, b(base + 2), b(base + 3), b(base + 15), b(last)

    def addresses6(self) -> tuple[bytes, bytes, bytes] | None:
        """(prefix, gateway ::2, DNS ::3) on ``--net6``, or None without IPv6."""
        if self.net6 is None:
            return None
        text = self.net6
        addr, sep, plen = text.partition("/")
        try:
            packed = ip_bytes(addr.strip())
        except ValueError:
            packed = b""
        if len(packed) != 16 or sep and plen != "64":
            raise ValueError(f"--net6 {text}: want an IPv6 /64 prefix, e.g. {DEFAULT_NET6}")
        prefix = packed[:8] + bytes(8)
        if prefix[0] == 0xFF or prefix[:2] == b"\xfe\x80" or prefix == bytes(16):
            raise ValueError(f"--net6 {text}: not a usable unicast prefix")
        return prefix, prefix[:15] + b"\x02", prefix[:15] + b"\x03"

    def records(self) -> dict[str, list[bytes]]:
        """``--host-record NAME=ADDR`` (repeatable, IPv4 for A and IPv6 for AAAA)."""
        out: dict[str, list[bytes]] = {}
        for rec in self.host_records:
            name, sep, addr = rec.partition("=")
            try:
                packed = ip_bytes(addr.strip())
            except ValueError:
                packed = b""
            if not sep or not name.strip() or not packed:
                raise ValueError(f"--host-record {rec}: want NAME=ADDR (IPv4 or IPv6)")
            out.setdefault(name.strip(), []).append(packed)
        return out

    def validate(self) -> None:
        taps = self.taps()
        given = [f for f, v in (("--tap", taps), ("--qemu-stream", self.qemu_stream),
                                ("--qemu-dgram", self.qemu_dgram),
                                ("--fd", self.fd is not None)) if v]
        if len(given) != 1:
            raise ValueError("one guest attachment is needed: --tap NAME, "
                             "--qemu-stream unix:PATH, --qemu-dgram unix:PATH or --fd N"
                             + (f" (got {' and '.join(given)})" if given else ""))
        if not 0 <= self.busy_poll <= 1_000_000:
            raise ValueError(f"--busy-poll {self.busy_poll:g}: out of range 0..1000000 us")
        for tap in taps:
            if not tap or len(tap.encode()) > 15 or "/" in tap or " " in tap:
                raise ValueError(f"--tap {tap!r}: 1-15 characters, no '/' or spaces")
        netns = [self.netns] if isinstance(self.netns, str) else list(self.netns or [])
        if netns and not taps:
            raise ValueError("--netns goes with --tap (the TAP is made in that namespace)")
        if len(netns) > 1 and len(netns) != len(taps):
            raise ValueError(f"--netns given {len(netns)} times for {len(taps)} --tap: give "
                             "it once (every TAP there) or once per --tap, in order")
        if len(set(zip(taps, self.netns_for(), strict=True))) != len(taps):
            raise ValueError("--tap: the same TAP twice in one namespace")
        from femtotcp.phy.qemu import unix_path
        if self.qemu_stream:
            unix_path(self.qemu_stream, "--qemu-stream")
        if self.qemu_dgram:
            unix_path(self.qemu_dgram, "--qemu-dgram")
        if self.fd is not None:
            try:
                kind = os.stat(self.fd).st_mode
            except OSError as exc:
                raise ValueError(f"--fd {self.fd}: {exc.strerror}") from None
            import stat
            if not stat.S_ISSOCK(kind):
                raise ValueError(f"--fd {self.fd}: not a socket")
        if not 576 <= self.mtu <= 65520:
            raise ValueError(f"--mtu {self.mtu}: out of range 576..65520")
        if not 1 <= self.max_guests <= 1024:
            raise ValueError(f"--max-guests {self.max_guests}: out of range 1..1024")
        if self.max_guests > 1 and not (self.qemu_stream or self.qemu_dgram):
            raise ValueError("--max-guests goes with --qemu-stream or --qemu-dgram "
                             "(repeat --tap for TAPs)")
        if self.max_flows < 1:
            raise ValueError(f"--max-flows {self.max_flows}: must be >= 1")
        if not self.udp_timeout > 0:
            raise ValueError(f"--udp-timeout {self.udp_timeout}: must be > 0")
        if not self.connect_timeout > 0:
            raise ValueError(f"--connect-timeout {self.connect_timeout}: must be > 0")
        self.addresses()
        self.addresses6()
        self.records()
        for fw in self.tcp_forwards:
            Forward.parse(fw)
        for fw in self.udp_forwards:
            Forward.parse(fw, "-u")
        for up in self.dns_upstream:
            try:
                ip_bytes(up)
            except ValueError:
                raise ValueError(f"--dns-upstream {up}: not an IP address") from None


def netns_path(spec: str) -> str:
    """``--netns PATH|PID|NAME`` -> the namespace file to open."""
    if spec.isdigit():
        return f"/proc/{spec}/ns/net"
    if "/" in spec:
        return spec
    return f"/run/netns/{spec}"


@contextlib.contextmanager
def in_netns(spec: str | None) -> Iterator[None]:
    """Run the body with the current thread in namespace ``spec`` (None: stay)."""
    if spec is None:
        yield
        return
    path = netns_path(spec)
    try:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise OSError(exc.errno, f"--netns {spec}: cannot open {path}: {exc.strerror}") \
            from None
    with entered_fd(target):
        yield


class Gateway(Capturing):
    """A stack on the guest's device with NAT, DHCP, DNS and port forwards."""

    def __init__(self, opts: GatewayOptions, runtime: Runtime | None = None,
                 device: Any = None) -> None:
        """``device``: use this one instead of the one the options name (tests wrap
        a TAP in a FaultyDevice on ``runtime``)."""
        opts.validate()
        self.opts = opts
        net, plen, gw, dns, first, last = opts.addresses()
        self.gateway_addr, self.dns_addr, self.first_lease = gw, dns, first
        self.runtime = runtime or Runtime(busy_poll=opts.busy_poll / 1e6)
        self.device: Any = device
        #: ``--qemu-stream`` with ``--max-guests N``: the listener making ports.
        self.hub: Any = None
        if device is not None:
            pass
        elif len(opts.taps()) > 1:
            # Several guests: plain TAPs (no offload) behind a learning switch.
            from femtotcp.gateway.switch import GuestSwitch
            from femtotcp.phy.tap import TapDevice
            ports: list[Any] = []
            try:
                for tap, ns in zip(opts.taps(), opts.netns_for(), strict=True):
                    with in_netns(ns):
                        ports.append(TapDevice(tap, mtu=opts.mtu))
            except BaseException:
                for port in ports:
                    port.close()
                raise
            self.device = GuestSwitch(ports, mtu=opts.mtu)
        elif opts.tap:
            from femtotcp.phy.tap import TapDevice
            with in_netns(opts.netns_for()[0]):
                self.device = TapDevice(opts.taps()[0], mtu=opts.mtu, offload=opts.offload,
                                        gro=opts.offload)
        else:
            from femtotcp.phy import qemu
            if opts.fd is not None:
                sock = socket.socket(fileno=opts.fd)
                if sock.type == socket.SOCK_STREAM:
                    self.device = qemu.QemuStreamDevice.from_socket(sock, mtu=opts.mtu)
                else:
                    self.device = qemu.QemuDgramDevice.from_socket(sock, mtu=opts.mtu)
            elif opts.qemu_stream and opts.max_guests > 1:
                # Several QEMUs: each connection a port of a switch.
                from femtotcp.gateway.switch import GuestSwitch, QemuStreamHub
                self.device = GuestSwitch([], mtu=opts.mtu, name="qemu-stream")
                self.hub = QemuStreamHub(self.device,
                                         qemu.unix_path(opts.qemu_stream, "--qemu-stream"),
                                         opts.max_guests, mtu=opts.mtu)
            elif opts.qemu_dgram and opts.max_guests > 1:
                # Several QEMUs: each sender address a port of a switch.
                from femtotcp.gateway.switch import GuestSwitch, QemuDgramHub
                self.device = GuestSwitch([], mtu=opts.mtu, name="qemu-dgram")
                self.hub = QemuDgramHub(self.device,
                                        qemu.unix_path(opts.qemu_dgram, "--qemu-dgram"),
                                        opts.max_guests, mtu=opts.mtu)
            elif opts.qemu_stream:
                self.device = qemu.QemuStreamDevice(
                    qemu.unix_path(opts.qemu_stream, "--qemu-stream"), mtu=opts.mtu)
            else:
                self.device = qemu.QemuDgramDevice(
                    qemu.unix_path(opts.qemu_dgram or "", "--qemu-dgram"), mtu=opts.mtu)
        v6 = opts.addresses6()
        config = StackConfig()
        modules = ["arp", "ipv4", "icmp4", "udp", "tcp"]
        if v6 is not None:
            modules += ["ipv6", "icmp6"]
            # A router on its own link: no solicitations, no RAs taken, no SLAAC
            # for itself, and no DAD (nobody else holds ::2, ::3 or our
            # link-local there; slirp and pasta do none either).
            config.ipv6_accept_ra = config.ipv6_autoconf = config.ipv6_dad = False
            config.ipv6_rtr_solicits = 0
        self.stack = Stack("gateway", modules=modules, config=config)
        self.iface = self.stack.add_interface(self.device, ipv4=f"{ip_str(gw)}/{plen}",
                                              mtu=opts.mtu)
        self.stack.add_address(self.iface, f"{ip_str(dns)}/{plen}")
        if hasattr(self.device, "own"):                   # a GuestSwitch
            self.device.own.add(self.iface.mac)
            for port in self.device.ports:
                self.runtime.add_device(port, self.stack)  # the loop reads each TAP
        self.gateway_addr6: bytes | None = None
        self.dns_addr6: bytes | None = None
        self.ra: RouterAdvertiser | None = None
        if v6 is not None:
            ipv6 = self.stack.ipv6
            assert ipv6 is not None
            prefix6, self.gateway_addr6, self.dns_addr6 = v6
            ipv6.add_address(self.iface, self.gateway_addr6, 64)
            ipv6.add_address(self.iface, self.dns_addr6, 64)
        self.pcap: Any = None
        if opts.pcap:
            self.start_capture(opts.pcap)
        self.runtime.add_stack(self.stack)
        watch = self.runtime.watch_fd
        if hasattr(self.device, "start"):
            self.device.start(watch)          # QEMU devices register their own fds
        if self.hub is not None:
            self.hub.start(watch)
        limits = Limits(max_flows=opts.max_flows, udp_timeout=opts.udp_timeout,
                        tcp_connect_timeout=opts.connect_timeout)
        self.nat = Nat(self.stack, self.iface, watch, gw, limits,
                       allow_host_loopback=opts.allow_host_loopback,
                       gateway_addr6=self.gateway_addr6)
        if v6 is not None and self.dns_addr6 is not None:
            self.ra = RouterAdvertiser(self.stack, self.iface, v6[0], self.dns_addr6)
            self.ra.on_solicit = self.nat.saw6
        from femtotcp.services.dhcp_server import DhcpServer
        self.dhcp = DhcpServer(self.stack, self.iface, ip_str(first), ip_str(last),
                               router=ip_str(gw), dns=[ip_str(dns)])
        upstreams = opts.dns_upstream or resolv_conf_servers()
        self.dns = DnsForwarder(self.stack, dns, watch, upstreams, opts.records(),
                                addr6=self.dns_addr6)
        if upstreams:
            # DNS over TCP (after a truncated answer) goes straight to the upstream.
            for addr in (dns, self.dns_addr6):
                if addr is not None:
                    self.nat.tcp_redirects[(addr, 53)] = (ip_bytes(upstreams[0]), 53)
        #: What the control server shows and may close (``HostLike``).
        self.services: list[Any] = [self.dhcp, self.dns]
        self.forwards: list[_ForwardListener] = []
        self.udp_forwards: list[UdpForward] = []
        for text in opts.tcp_forwards:
            self.add_forward("tcp", text)
        for text in opts.udp_forwards:
            self.add_forward("udp", text)

    # -- port forwards (at start, and at run time from the loop thread) -----------------
    def add_forward(self, proto: str, text: str) -> None:
        flag = "-t" if proto == "tcp" else "-u"
        fw = Forward.parse(text, flag)
        if any((f.host_addr, f.host_port) == (fw.host_addr, fw.host_port)
               for f in self._forwards(proto)):
            raise ValueError(f"{flag} {text}: that host port is forwarded already")
        if proto == "tcp":
            self.forwards.append(_ForwardListener(self, fw))
            return
        sock = forward_socket(fw, socket.SOCK_DGRAM)
        self.udp_forwards.append(UdpForward(self.nat, sock, self.forward_target(fw),
                                            fw.guest_port, self.opts.forward_masquerade, fw))

    def forward_target(self, fw: Forward) -> Callable[[], bytes]:
        """Where a forward's connections and datagrams go, asked at each new one:
        the first lease for an IPv4 host address; for an IPv6 one the guest's
        IPv6 address on --net6 (as pasta does), the first lease when the gateway
        knows none (``Nat.guest6``)."""
        first = self.first_lease
        if not fw.v6:
            return lambda: first
        nat = self.nat
        return lambda: nat.guest6() or first

    def _guest_text(self, fw: Forward) -> str:
        addr = self.forward_target(fw)()
        return (f"[{ip_str(addr)}]" if len(addr) == 16 else ip_str(addr)) + \
            f":{fw.guest_port}"

    def _forwards(self, proto: str) -> list[Forward]:
        if proto == "tcp":
            return [f.fw for f in self.forwards]
        return [u.spec for u in self.udp_forwards if u.spec is not None]

    def remove_forward(self, proto: str, text: str) -> None:
        fw = Forward.parse(text, "-t" if proto == "tcp" else "-u")
        items: list[Any] = self.forwards if proto == "tcp" else self.udp_forwards
        for item in items:
            spec = item.fw if proto == "tcp" else item.spec
            if spec is not None and (spec.host_addr, spec.host_port) == (fw.host_addr,
                                                                          fw.host_port):
                item.close()
                items.remove(item)
                return
        raise KeyError(f"no {proto} forward from {fw.host()}")

    def forward_rows(self) -> list[dict[str, Any]]:
        return [{"proto": proto, "host": f.host(), "guest": self._guest_text(f)}
                for proto in ("tcp", "udp") for f in self._forwards(proto)]

    def flow_rows(self) -> list[dict[str, Any]]:
        now = self.stack.now
        return [f.describe(now) for f in self.nat.table]

    def describe(self) -> str:
        net, plen, *_ = self.opts.addresses()
        path = getattr(self.hub or self.device, "path", None)
        where = self.device.name + (f" {path}" if path
                                    else "")
        v6 = ""
        if self.gateway_addr6 is not None and self.dns_addr6 is not None:
            v6 = (f" net6 {ip_str(self.gateway_addr6[:8] + bytes(8))}/64 router6 "
                  f"{ip_str(self.gateway_addr6)} dns6 {ip_str(self.dns_addr6)}")
        return (f"gateway on {where} net {ip_str(net)}/{plen} router "
                f"{ip_str(self.gateway_addr)} dns {ip_str(self.dns_addr)} first lease "
                f"{ip_str(self.first_lease)}{v6} mtu {self.iface.mtu}; {self.dns.describe()}"
                + "".join(f"; forward {proto} {f.host()} -> {self._guest_text(f)}"
                          for proto in ("tcp", "udp") for f in self._forwards(proto)))

    def start(self) -> None:
        """Start the stack (and the Router Advertisements) in the loop thread."""
        self.runtime.call(self._start)

    def _start(self) -> None:
        self.stack.start()
        if self.ra is not None:
            self.ra.start()

    def close(self) -> None:
        def shutdown() -> None:
            for f in self.forwards:
                f.close()
            for u in self.udp_forwards:
                u.close()
            if self.ra is not None:
                self.ra.close()
            if self.hub is not None:
                self.hub.close()
            self.nat.close()
            self.dns.close()
            self.dhcp.close()
            self.stack.close()
        rt = self.runtime
        if rt.thread is not None and rt.thread.is_alive():
            rt.call(shutdown)
            rt.stop()
            rt.join(5)
        else:
            shutdown()
        self.stop_capture()
        rt.close()


def forward_socket(fw: Forward, kind: int) -> socket.socket:
    """A host socket bound to a forward's address (an IPv6 one takes IPv6 only:
    ``-t 8080:80 -t [::]:8080:80`` forwards both families side by side)."""
    fam = socket.AF_INET6 if fw.v6 else socket.AF_INET
    flag = "-t" if kind == socket.SOCK_STREAM else "-u"
    sock = socket.socket(fam, kind | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if fw.v6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((fw.host_addr, fw.host_port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno or errno.EADDRINUSE,
                      f"{flag} {fw.host()}: {exc.strerror}") from None
    return sock


class _ForwardListener:
    """A host listening socket for one ``-t`` forward."""

    backlog = 128

    def __init__(self, gw: Gateway, fw: Forward) -> None:
        self.gw = gw
        self.fw = fw
        self.target = gw.forward_target(fw)
        sock = forward_socket(fw, socket.SOCK_STREAM)
        try:
            sock.listen(self.backlog)
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno or errno.EADDRINUSE,
                          f"-t {fw.host()}: {exc.strerror}") from None
        self.sock: socket.socket | None = sock
        gw.runtime.watch_fd(sock.fileno(), True, False, self)

    def on_readable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        for _ in range(64):
            try:
                client, addr = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # Out of descriptors: the client waits in the backlog; stop
                # selecting on the listener for a second instead of spinning.
                self.gw.stack.counters["nat.forward_accept_error"] += 1
                self.gw.runtime.watch_fd(sock.fileno(), False, False, self)
                self.gw.stack.timers.call_at(self.gw.stack.now + 1.0, self._rearm)
                return
            self.gw.nat.forward_tcp(client, addr, (self.target(), self.fw.guest_port),
                                    self.gw.opts.forward_masquerade)

    def _rearm(self) -> None:
        if self.sock is not None:
            self.gw.runtime.watch_fd(self.sock.fileno(), True, False, self)

    def close(self) -> None:
        if self.sock is not None:
            self.gw.runtime.watch_fd(self.sock.fileno(), False, False, self)
            self.sock.close()
            self.sock = None
