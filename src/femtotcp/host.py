"""A running host: one stack on one device, driven by the real-time Runtime.

``femtotcp serve``, ``femtotcp run`` and ``femtotcp demo --tap`` all build
their stack here from the same options, so a flag means the same everywhere.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from femtotcp.runtime import Runtime
from femtotcp.stack.config import StackConfig
from femtotcp.stack.interface import Interface
from femtotcp.stack.stack import Stack, need, parse_prefix
from femtotcp.wire import ip_bytes, ip_str, mac_bytes, mac_str

log = logging.getLogger("femtotcp.host")


def build_has() -> str:
    """The modules, services and faces present in this build, for error messages."""
    from femtotcp.stack import modules as modreg
    return ", ".join(modreg.present()) or "no optional module"


@dataclass
class HostOptions:
    """What a user can ask for on the command line (validated by ``validate``)."""

    tap: str | None = None
    tun: str | None = None
    ip: str | None = None
    dhcp: bool = False
    mac: str | None = None
    gateway: str | None = None
    mtu: int = 1500
    pcap: str | None = None
    udp_echo: list[int] = field(default_factory=list)
    tcp_echo: list[int] = field(default_factory=list)
    discard: list[int] = field(default_factory=list)
    chargen: list[int] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    ipv6: list[str] = field(default_factory=list)    # "auto" or ADDR/PREFIX, repeatable
    gateway6: str | None = None
    no_ipv6: bool = False
    modules: list[str] | None = None
    acd: bool = False
    tcp_rst_limit: tuple[float, int] | None = None   # (rate/s, burst) of RSTs to closed ports
    control: str | None = None
    name: str = "femtotcp"
    #: The loop's longest adaptive busy poll in microseconds (None: 0, off).
    busy_poll: float | None = None

    def validate(self) -> None:
        """Raise ValueError with one line naming the first problem."""
        if not self.tap and not self.tun:
            raise ValueError("a device is needed: --tap NAME or --tun NAME")
        if self.tap and self.tun:
            raise ValueError("--tap and --tun are exclusive")
        dev = self.tap or self.tun or ""
        if len(dev.encode()) > 15 or not dev or "/" in dev or " " in dev:
            raise ValueError(f"bad interface name {dev!r} (1-15 characters, no '/' or spaces)")
        if self.ip and self.dhcp:
            raise ValueError("--ip and --dhcp are exclusive")
        if not self.ip and not self.dhcp and not self.ipv6:
            raise ValueError("an address is needed: --ip ADDR/PREFIX, --dhcp "
                             "or --ipv6 auto|ADDR/PREFIX (an IPv6-only host)")
        if self.ip:
            addr, plen = parse_prefix(self.ip)
            if addr[0] in (0, 127) or addr[0] >= 224:
                raise ValueError(f"--ip {self.ip}: not a usable unicast address")
            if "/" not in self.ip:
                raise ValueError(f"--ip {self.ip}: give a prefix length, e.g. {self.ip}/24")
        if self.mac is not None:
            mac = mac_bytes(self.mac)
            if mac[0] & 1:
                raise ValueError(f"--mac {self.mac}: a multicast MAC cannot be an interface's")
        if not 68 <= self.mtu <= 65535:
            raise ValueError(f"--mtu {self.mtu}: out of range 68..65535")
        if self.busy_poll is not None and not 0 <= self.busy_poll <= 1_000_000:
            raise ValueError(f"--busy-poll {self.busy_poll:g}: out of range 0..1000000 us")
        if self.gateway is not None:
            gw = ip_bytes(self.gateway)
            if len(gw) != 4:
                raise ValueError(f"--gateway {self.gateway}: not an IPv4 address")
            if self.ip:
                addr, plen = parse_prefix(self.ip)
                mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
                if int.from_bytes(gw, "big") & mask != int.from_bytes(addr, "big") & mask:
                    raise ValueError(f"--gateway {self.gateway} is not inside {self.ip}")
        for flag, ports in (("--udp-echo", self.udp_echo), ("--tcp-echo", self.tcp_echo),
                            ("--discard", self.discard), ("--chargen", self.chargen)):
            for p in ports:
                if not 1 <= p <= 65535:
                    raise ValueError(f"{flag} {p}: port out of range 1..65535")
        for d in self.dns:
            ip_bytes(d)
        self._validate_ipv6()
        self.check_modules()

    def check_modules(self) -> None:
        """Each flag's module must be in this build (and in ``--modules`` when given)."""
        from femtotcp.stack import modules as modreg
        if self.modules is not None:
            for name in dict.fromkeys(self.modules):
                if name in modreg.MODULES and not modreg.available(name):
                    raise ValueError(f"--modules {name}: not in this build; "
                                     f"this build has: {build_has()}")
            modreg.resolve(self.modules)
        uses = [("--tap", "arp", self.tap), ("--acd", "arp", self.acd),
                ("--tcp-echo", "tcp", self.tcp_echo), ("--discard", "tcp", self.discard),
                ("--chargen", "tcp", self.chargen), ("--udp-echo", "udp", self.udp_echo),
                ("--dns", "dns", self.dns), ("--dhcp", "dhcp", self.dhcp),
                ("--pcap", "pcap", self.pcap), ("--control", "ctl", self.control),
                ("--ipv6", "ipv6", self.ipv6)]
        for flag, mod, used in uses:
            if not used:
                continue
            if not modreg.available(mod):
                raise ValueError(f"{flag} needs the {mod} module; "
                                 f"this build has: {build_has()}")
            wanted = modreg.EXTRAS[mod][1] if mod in modreg.EXTRAS else (mod,)
            if self.modules is not None:
                for dep in wanted:
                    if dep not in self.modules:
                        raise ValueError(f"{flag} needs the {dep} module (--modules)")

    def _validate_ipv6(self) -> None:
        if self.no_ipv6 and (self.ipv6 or self.gateway6):
            raise ValueError("--no-ipv6 cannot go with --ipv6 or --gateway6")
        if not self.ipv6 and not self.gateway6:
            return
        from femtotcp.stack import modules as modreg
        if not modreg.available("ipv6"):
            raise ValueError(f"--ipv6 needs the ipv6 module; this build has: {build_has()}")
        from femtotcp.stack.ipv6 import parse_prefix6
        from femtotcp.wire import ipv6 as wire6

        for value in self.ipv6:
            if value == "auto":
                continue
            try:
                addr, plen = parse_prefix6(value)
            except ValueError as exc:
                raise ValueError(f"--ipv6 {value}: {exc} (want auto or ADDR/PREFIX)") from None
            if "/" not in value:
                raise ValueError(f"--ipv6 {value}: give a prefix length, e.g. {value}/64")
            if addr[0] == 0xFF or addr in (wire6.UNSPECIFIED, wire6.LOOPBACK) \
                    or wire6.is_v4_mapped(addr):
                raise ValueError(f"--ipv6 {value}: not a usable unicast address")
        if self.gateway6 is not None:
            if not self.ipv6:
                raise ValueError("--gateway6 needs --ipv6")
            try:
                gw, _ = parse_prefix6(self.gateway6)
            except ValueError:
                raise ValueError(f"--gateway6 {self.gateway6}: not an IPv6 address") from None
            if "/" in self.gateway6 or gw[0] == 0xFF or gw == wire6.UNSPECIFIED:
                raise ValueError(f"--gateway6 {self.gateway6}: not a unicast IPv6 address")


class Capturing:
    """``start_capture``/``stop_capture`` (``HostLike``, ``--pcap``) on
    ``self.device``, the writer kept in ``self.pcap`` (Host and the gateway)."""

    device: Any
    pcap: Any

    def start_capture(self, path: str) -> None:
        from femtotcp.phy.pcap import PcapWriter
        self.stop_capture()
        self.pcap = PcapWriter(path, linktype=101 if getattr(self.device, "raw_ip", False)
                               else 1)
        self.pcap.attach(self.device)

    def stop_capture(self) -> None:
        if self.pcap is not None:
            self.pcap.detach(self.device)
            self.pcap.close()
            self.pcap = None


class Host(Capturing):
    """A stack, its device and services, on a Runtime."""

    def __init__(self, opts: HostOptions, config: StackConfig | None = None) -> None:
        opts.validate()
        self.opts = opts
        self.runtime = Runtime(busy_poll=(opts.busy_poll or 0.0) / 1e6)
        cfg = config or StackConfig()
        cfg.acd = cfg.acd or opts.acd
        if opts.tcp_rst_limit is not None:
            from femtotcp.proto.tcp.config import TcpConfig
            cfg.tcp = cfg.tcp or TcpConfig()
            cfg.tcp.rst_rate, cfg.tcp.rst_burst = opts.tcp_rst_limit
        modules = opts.modules
        if opts.ipv6:
            cfg.ipv6_accept_ra = cfg.ipv6_autoconf = "auto" in opts.ipv6
            if modules is None:
                from femtotcp.stack import modules as modreg
                modules = [m for m in modreg.DEFAULT_MODULES + ("ipv6", "icmp6")
                           if modreg.available(m)]
        self.stack = Stack(opts.name, modules=modules, config=cfg)
        self.services: list[Any] = []
        self.pcap: Any = None
        self._closers: list[Callable[[], None]] = []
        if opts.tap:
            from femtotcp.phy.tap import TapDevice
            device: Any = TapDevice(opts.tap, mtu=opts.mtu)
        else:
            from femtotcp.phy.tun import TunDevice
            device = TunDevice(opts.tun or "", mtu=opts.mtu)
        self.device = device
        self.iface: Interface = self.stack.add_interface(
            device, mac=opts.mac, ipv4=opts.ip, mtu=opts.mtu)
        if opts.gateway:
            self.stack.add_route("0.0.0.0/0", gateway=opts.gateway, iface=self.iface)
        if opts.ipv6:
            self._configure_ipv6()
        if opts.pcap:
            self.start_capture(opts.pcap)
        self.runtime.add_stack(self.stack)

    def _configure_ipv6(self) -> None:
        """Static IPv6 addresses (DAD runs when the stack starts) and --gateway6."""
        from femtotcp.stack.ipv6 import parse_prefix6
        from femtotcp.stack.routes import Route

        ipv6 = need(self.stack.ipv6, "ipv6")
        for value in self.opts.ipv6:
            if value != "auto":
                addr, plen = parse_prefix6(value)
                ipv6.add_address(self.iface, addr, plen, "static")
        if self.opts.gateway6:
            gw, _ = parse_prefix6(self.opts.gateway6)
            ipv6.routes.add(Route(0, 0, gw, self.iface, "static", 128))

    # -- services -----------------------------------------------------------------
    def _start_services(self) -> None:
        opts, stack = self.opts, self.stack
        if opts.dns:
            stack.load_module("dns")
            need(stack.resolver, "dns").servers = [ip_bytes(d) for d in opts.dns]
        elif "auto" in opts.ipv6 and opts.modules is None:
            from femtotcp.stack import modules as modreg
            if modreg.available("dns"):
                stack.load_module("dns")   # for the RDNSS servers of Router Advertisements
        # The services listen on every address: with IPv6, on ``::`` (dual
        # stack, as a Linux server bound to it), else on 0.0.0.0.
        anywhere = bytes(16) if stack.ipv6 is not None else bytes(4)
        for port in opts.udp_echo:
            from femtotcp.services.echo import start_udp_echo
            self.services.append(start_udp_echo(stack, port, anywhere))
        for port in opts.tcp_echo:
            from femtotcp.services import tcp_echo
            self.services.append(tcp_echo.start(stack, port, anywhere))
        for port in opts.discard:
            from femtotcp.services import discard
            self.services.append(discard.start(stack, port, anywhere))
        for port in opts.chargen:
            from femtotcp.services import chargen
            self.services.append(chargen.start(stack, port, anywhere))
        if opts.dhcp:
            from femtotcp.services import dhcp
            from femtotcp.stack import modules as modreg
            if modreg.available("dns"):
                stack.load_module("dns")   # the lease's DNS servers need a resolver
            client = dhcp.install(stack, self.iface)
            client.apply_dns = not opts.dns   # --dns wins over the lease's servers
            self.services.append(client)
            client.start()

    def start(self, acd_timeout: float = 10.0) -> None:
        """Start the stack and services in the loop thread; raise on an address conflict."""
        self.runtime.start()
        self.runtime.call(self.stack.start)
        if self.stack.config.acd and self.opts.ip:
            addr, _ = parse_prefix(self.opts.ip)
            arp = need(self.stack.arp, "arp")

            def check() -> bool:
                return self.stack.is_local(addr) or addr in arp.conflicts

            deadline_ok = self.runtime.wait_until(check, acd_timeout)
            if addr in arp.conflicts:
                mac = arp.conflicts[addr]
                self.close()
                raise OSError(f"address {ip_str(addr)} is already in use by {mac_str(mac)}")
            if not deadline_ok:
                raise OSError("address conflict detection did not finish")
        self.runtime.call(self._start_services)

    #: How long ``settle`` waits for a DHCP lease (dhclient waits 60 s, with
    #: the ARP check of RFC 5227 a lease takes about 5-8 s here) and, with
    #: ``--ipv6 auto``, for a Router Advertisement once router solicitation
    #: has begun (a router answers within half a second, RFC 4861 6.2.6).
    DHCP_WAIT = 30.0
    RA_WAIT = 5.0

    def settle(self, timeout: float = 10.0,
               cancel: threading.Event | None = None) -> list[str]:
        """Wait until the host's addresses are up, as a host's programs start
        once its network is: duplicate address detection finished for the
        static IPv6 addresses (``--ipv6 ADDR/PREFIX``) and the link-local one
        (RFC 4862 5.4; each DAD starts after its own random delay, about a
        second or two in all); with ``--dhcp``, a lease bound (up to
        ``DHCP_WAIT``); with ``--ipv6 auto`` on Ethernet (a TUN sends no
        router solicitation), the addresses of the prefixes a Router
        Advertisement brought past DAD (up to ``RA_WAIT`` for the advertisement). Until then a program's first connect would meet
        ENETUNREACH. ``run`` starts the program, and ``serve`` says it serves,
        only then. Returns what is still missing (warnings for the user; the
        host goes on and the address comes when it comes). A duplicate is
        logged by the stack and stays unusable. ``cancel`` set (serve's
        SIGINT/SIGTERM) ends the waiting at once."""
        iface, opts = self.iface, self.opts
        missing: list[str] = []

        def wait(predicate: Callable[[], bool], seconds: float) -> bool:
            if cancel is None:
                return self.runtime.wait_until(predicate, seconds)
            return self.runtime.wait_until(lambda: cancel.is_set() or predicate(),
                                           seconds) and not cancel.is_set()

        def dad_done() -> bool:
            return not any(a.state == "tentative" for a in iface.ipv6)

        if not wait(dad_done, timeout):
            missing.append(f"IPv6 duplicate address detection did not end in {timeout:g} s")
        if opts.dhcp:
            def leased() -> bool:
                return any(not a.tentative for a in iface.ipv4)

            if not wait(leased, self.DHCP_WAIT):
                missing.append(f"no DHCP lease after {self.DHCP_WAIT:g} s; going on without "
                               "one (the address comes with the lease)")
        if "auto" in opts.ipv6 and self.stack.ipv6 is not None and not iface.raw_ip:
            ndp = self.stack.ipv6.ndp

            def advertised() -> bool:
                return any(i is iface for i, _ in ndp.routers) or any(
                    a.origin == "slaac" for a in iface.ipv6)

            if wait(advertised, self.RA_WAIT):
                # The prefixes' addresses: past DAD, as the static ones.
                wait(dad_done, timeout)
            else:
                missing.append(f"no Router Advertisement in {self.RA_WAIT:g} s; IPv6 has "
                               "only its link-local and static addresses for now")
        if cancel is not None and cancel.is_set():
            return []
        return missing

    def describe(self) -> str:
        i = self.iface
        addrs = ", ".join(str(a) for a in i.ipv4) or ("DHCP pending" if self.opts.dhcp else "none")
        if i.ipv6 or self.opts.ipv6:
            addrs += "; IPv6 " + (", ".join(f"{a} {a.state}" for a in i.ipv6) or "starting")
        return f"{i.name} mac {mac_str(i.mac)} mtu {i.mtu} addr {addrs}"

    def close(self) -> None:
        """Say goodbye (FIN, DHCP release), then stop the loop and close devices."""
        rt = self.runtime
        if rt.thread is not None and rt.thread.is_alive():
            try:
                rt.call(self._shutdown_services)
                # Give FINs and the DHCP release a moment to leave.
                rt.wait_until(lambda: False, 0.3)
            finally:
                rt.stop()
                rt.join(5)
        self.stop_capture()
        rt.close()

    def _shutdown_services(self) -> None:
        for svc in reversed(self.services):
            try:
                if hasattr(svc, "release"):
                    svc.release()
                svc.close()
            except Exception:
                log.exception("closing a service failed")
        self.stack.close()
