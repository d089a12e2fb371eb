"""The ``femtotcp gateway`` subcommand's flags and its foreground loop."""

from __future__ import annotations

import argparse
import logging
import signal
from typing import TYPE_CHECKING

from femtotcp.cli import BUSY_POLL_DEFAULT_US, busy_poll_usec
from femtotcp.gateway import DEFAULT_NET, DEFAULT_NET6

if TYPE_CHECKING:
    from femtotcp.gateway.gateway import GatewayOptions


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tap", metavar="NAME", action="append",
                   help="the guest's TAP device (created by the gateway); repeat it for "
                        "several guests on one link (each its own lease; no offload then)")
    p.add_argument("--qemu-stream", metavar="unix:PATH",
                   help="listen for QEMU's -netdev stream,server=off,addr.type=unix,"
                        "addr.path=PATH")
    p.add_argument("--qemu-dgram", metavar="unix:PATH",
                   help="bind PATH for QEMU's -netdev dgram (remote.path=PATH)")
    p.add_argument("--netns", metavar="PATH|PID|NAME", action="append",
                   help="create the TAP in this network namespace (a container's); the "
                        "gateway's own sockets stay where it was started. Once for every "
                        "--tap, or once per --tap in the same order")
    p.add_argument("--fd", type=int, metavar="N",
                   help="an inherited socket to the guest: SOCK_STREAM with QEMU's length "
                        "prefix, SOCK_DGRAM one frame per datagram (-netdev socket,fd=N)")
    p.add_argument("--net", metavar="PREFIX", default=DEFAULT_NET,
                   help=f"the guest's network (default {DEFAULT_NET}: gateway .2, DNS .3, "
                        "first lease .15)")
    p.add_argument("--net6", metavar="PREFIX/64", default=DEFAULT_NET6,
                   help=f"the guest's IPv6 prefix (default {DEFAULT_NET6}: gateway ::2, DNS "
                        "::3, advertised for SLAAC with the DNS as RDNSS)")
    p.add_argument("--no-ipv6", dest="ipv6", action="store_false",
                   help="no IPv6 for the guest")
    p.add_argument("--mtu", type=int, default=1500, help="the guest link's MTU (default 1500)")
    p.add_argument("--pcap", metavar="FILE", help="capture the guest side")
    p.add_argument("-t", dest="tcp_forwards", action="append", default=[],
                   metavar="[ADDR:]HOSTPORT:GUESTPORT",
                   help="forward a host TCP port (an IPv6 ADDR in brackets: [::]:8080:80)")
    p.add_argument("-u", dest="udp_forwards", action="append", default=[],
                   metavar="[ADDR:]HOSTPORT:GUESTPORT", help="forward a host UDP port")
    p.add_argument("--dns-upstream", action="append", default=[], metavar="ADDR",
                   help="ask this resolver (default: /etc/resolv.conf's)")
    p.add_argument("--host-record", action="append", default=[], metavar="NAME=ADDR",
                   help="answer NAME with ADDR in the guest's DNS")
    p.add_argument("--allow-host-loopback", action="store_true",
                   help="the gateway address reaches the host's 127.0.0.1")
    p.add_argument("--forward-masquerade", action="store_true",
                   help="port forwards show the guest the gateway, not the real client")
    p.add_argument("--max-guests", type=int, default=1, metavar="N",
                   help="--qemu-stream/--qemu-dgram: take up to N QEMUs at once (connections, "
                        "or sender addresses), each a guest on one link (default 1: one "
                        "guest, the last to connect or send)")
    p.add_argument("--max-flows", type=int, default=4096, help="NAT flow limit (default 4096)")
    p.add_argument("--no-offload", dest="offload", action="store_false",
                   help="no vnet header on the TAP (no TSO to the guest, no GRO from it)")
    p.add_argument("--udp-timeout", type=float, default=120.0,
                   help="seconds an idle UDP flow lives (default 120, RFC 4787)")
    p.add_argument("--connect-timeout", type=float, default=20.0,
                   help="seconds a host connect may take before the guest gets a RST "
                        "(default 20)")
    p.add_argument("--busy-poll", type=busy_poll_usec, default=BUSY_POLL_DEFAULT_US,
                   metavar="USEC",
                   help="before sleeping, poll the guest and host sockets for up to USEC "
                        "microseconds, adapting to the traffic (as KVM's halt polling): "
                        "shorter round trips for some CPU (default "
                        f"{BUSY_POLL_DEFAULT_US:g}; 0 turns it off)")
    p.add_argument("--control", metavar="PATH",
                   help="control socket for `femtotcp ctl --control PATH` (stats, flows, "
                        "forward add|del|list, ...)")
    p.add_argument("--log-level", default="info",
                   choices=["debug", "info", "warning", "error"])


def options(args: argparse.Namespace) -> GatewayOptions:
    from femtotcp.gateway.gateway import GatewayOptions
    tap = args.tap[0] if args.tap and len(args.tap) == 1 else args.tap
    netns = args.netns[0] if args.netns and len(args.netns) == 1 else args.netns
    return GatewayOptions(tap=tap, netns=netns, qemu_stream=args.qemu_stream,
                          qemu_dgram=args.qemu_dgram, fd=args.fd, net=args.net,
                          net6=args.net6 if args.ipv6 else None,
                          mtu=args.mtu,
                          pcap=args.pcap, tcp_forwards=args.tcp_forwards,
                          udp_forwards=args.udp_forwards,
                          dns_upstream=args.dns_upstream, host_records=args.host_record,
                          allow_host_loopback=args.allow_host_loopback,
                          forward_masquerade=args.forward_masquerade,
                          max_flows=args.max_flows, max_guests=args.max_guests,
                          udp_timeout=args.udp_timeout,
                          offload=args.offload, connect_timeout=args.connect_timeout,
                          busy_poll=args.busy_poll,
                          control=args.control)


def main(args: argparse.Namespace) -> int:
    from femtotcp.gateway.gateway import Gateway
    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    opts = options(args)
    _raise_fd_limit(opts.max_flows)
    if opts.control:
        from femtotcp import control as ctl
        ctl.check_free(opts.control)   # OSError when another server answers there
    gw = Gateway(opts)
    rt = gw.runtime

    def on_signal(signum: int, frame: object) -> None:
        rt.stop()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    server = None
    try:
        rt.start()
        gw.start()
        if opts.control:
            from femtotcp.gateway.control import serve
            server = serve(gw, opts.control)
        print(f"femtotcp: {gw.describe()}"
              + (f"; control {opts.control}" if server else ""), flush=True)
        while rt.running:
            rt.join(0.5)
    finally:
        if server is not None:
            server.close()
        gw.close()
    return 0


def _raise_fd_limit(max_flows: int) -> None:
    """Every flow holds a host socket: lift the soft descriptor limit towards the
    hard one (as far as ``max_flows`` and some spare need)."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max_flows + 256
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            logging.getLogger("femtotcp.gateway").warning(
                "cannot raise the descriptor limit to %d: flows may be refused early", want)
