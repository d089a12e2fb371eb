"""The command line: ``femtotcp demo | serve | run | ctl | size | build``.

Every bad flag or value ends in one line naming the problem, and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any, NoReturn

from femtotcp import __version__

PROG = "femtotcp"


class _Parser(argparse.ArgumentParser):
    """argparse, but errors are one line (no usage dump) and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


class UsageError(Exception):
    """A bad value found after parsing; reported like an argparse error."""


def _port(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} out of range 1..65535")
    return value


def _mtu(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 68 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"MTU {value} out of range 68..65535")
    return value


#: ``--busy-poll``'s default where the stack has a process to itself
#: (``serve``, ``gateway``): KVM's default halt polling limit.
BUSY_POLL_DEFAULT_US = 200.0


def busy_poll_usec(text: str) -> float:
    """``--busy-poll USEC``: microseconds, 0 (off) to 1,000,000."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of microseconds: {text!r}") from None
    if not 0 <= value <= 1_000_000:
        raise argparse.ArgumentTypeError(
            f"busy poll {text} us out of range 0..1000000 (0 turns it off)")
    return value


def _modules(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("empty module list")
    return names


def _rst_limit(text: str) -> tuple[float, int]:
    """'1000/200' -> (1000.0, 200); a RATE alone keeps a burst of 200."""
    rate, _, burst = text.partition("/")
    try:
        r, b = float(rate), int(burst) if burst else 200
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"bad RST limit {text!r} (RATE[/BURST], e.g. 1000/200)") from None
    if not r > 0 or b < 1:
        raise argparse.ArgumentTypeError(
            f"bad RST limit {text!r}: the rate must be above 0 and the burst at least 1")
    return r, b


def add_stack_arguments(p: argparse.ArgumentParser) -> None:
    """The flags that build a stack; shared by ``serve`` and ``run``."""
    dev = p.add_argument_group("device")
    dev.add_argument("--tap", metavar="NAME", help="Linux TAP device to create or attach")
    dev.add_argument("--tun", metavar="NAME", help="Linux TUN device (IP only, no Ethernet)")
    dev.add_argument("--mtu", type=_mtu, default=1500, metavar="N", help="MTU (default 1500)")
    dev.add_argument("--mac", metavar="MAC", help="the stack's MAC (default: random, local)")
    dev.add_argument("--pcap", metavar="FILE", help="capture every frame to FILE")
    net = p.add_argument_group("addresses")
    net.add_argument("--ip", metavar="ADDR/PREFIX", help="static IPv4 address")
    net.add_argument("--dhcp", action="store_true", help="get the address by DHCP")
    net.add_argument("--gateway", metavar="IP", help="default router")
    net.add_argument("--dns", metavar="IP", action="append", default=[],
                     help="DNS server (repeatable)")
    net.add_argument("--ipv6", metavar="auto|ADDR/PREFIX", action="append", default=[],
                     help="IPv6: auto (link-local and SLAAC from router advertisements) "
                          "or a static address (repeatable)")
    net.add_argument("--gateway6", metavar="IP6", help="IPv6 default router")
    net.add_argument("--no-ipv6", action="store_true",
                     help="no IPv6 at all (the default without --ipv6)")
    net.add_argument("--acd", action="store_true",
                     help="RFC 5227 conflict detection before using --ip")
    svc = p.add_argument_group("services")
    svc.add_argument("--udp-echo", type=_port, action="append", default=[], metavar="PORT")
    svc.add_argument("--tcp-echo", type=_port, action="append", default=[], metavar="PORT")
    svc.add_argument("--discard", type=_port, action="append", default=[], metavar="PORT")
    svc.add_argument("--chargen", type=_port, action="append", default=[], metavar="PORT")
    p.add_argument("--tcp-rst-limit", type=_rst_limit, metavar="RATE[/BURST]",
                   help="cap the RSTs sent for segments to closed ports at RATE per "
                        "second with bursts of BURST (default: none, as Linux)")
    p.add_argument("--modules", type=_modules, metavar="LIST",
                   help="load only these protocol modules, e.g. arp,ipv4,icmp4,udp")
    p.add_argument("--busy-poll", type=busy_poll_usec, metavar="USEC",
                   help="before sleeping, poll the devices and sockets for up to USEC "
                        "microseconds, adapting to the traffic (as KVM's halt polling): "
                        "shorter round trips for some CPU (default "
                        f"{BUSY_POLL_DEFAULT_US:g} for serve, 0 for a stack in the "
                        "program's process; 0 turns it off)")
    p.add_argument("--log-level", default="warning",
                   choices=["debug", "info", "warning", "error"], help="logging level")


def require(module: str, what: str) -> None:
    """UsageError naming ``module`` when this build was made without it."""
    from femtotcp.stack import modules as modreg
    if not modreg.available(module):
        from femtotcp.host import build_has
        raise UsageError(f"{what} needs the {module} module; this build has: {build_has()}")


def _in_source_tree(what: str) -> None:
    import importlib.util
    if importlib.util.find_spec("femtotcp.build") is None:
        from femtotcp.host import build_has
        raise UsageError(f"{what} needs femtotcp's source tree (a zipapp holds only its "
                         f"modules); this build has: {build_has()}")


def host_options(args: argparse.Namespace) -> Any:
    from femtotcp.host import HostOptions
    opts = HostOptions(
        tap=args.tap, tun=args.tun, ip=args.ip, dhcp=args.dhcp, mac=args.mac,
        gateway=args.gateway, mtu=args.mtu, pcap=args.pcap, udp_echo=args.udp_echo,
        tcp_echo=args.tcp_echo, discard=args.discard, chargen=args.chargen, dns=args.dns,
        ipv6=args.ipv6, gateway6=args.gateway6, no_ipv6=args.no_ipv6,
        modules=args.modules, acd=args.acd,
        tcp_rst_limit=args.tcp_rst_limit, busy_poll=args.busy_poll,
        control=getattr(args, "control", None))
    try:
        opts.validate()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return opts


def open_host(args: argparse.Namespace) -> Any:
    """Build and start a Host from parsed stack flags (raises UsageError / OSError)."""
    from femtotcp.host import Host
    host = Host(host_options(args))
    host.start()
    return host


def build_parser() -> _Parser:
    p = _Parser(prog=PROG, description="A pure-Python user-space TCP/IP stack.")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    d = sub.add_parser("demo", help="an in-memory LAN of stacks (no root needed)")
    d.add_argument("--tap", action="store_true",
                   help="use the Linux kernel as the peer (root, throwaway netns)")
    d.add_argument("--pcap", metavar="FILE", default="femtotcp-demo.pcap",
                   help="where to write the capture (default femtotcp-demo.pcap)")

    s = sub.add_parser("serve", help="run a stack on a TAP/TUN device until interrupted")
    add_stack_arguments(s)
    s.add_argument("--control", metavar="PATH",
                   help="control socket (default /run/femtotcp/IFNAME.sock when root)")

    r = sub.add_parser("run", help="run a Python program with the stack as its network")
    add_stack_arguments(r)
    r.add_argument("--control", metavar="PATH",
                   help="attach to the `femtotcp serve` with this control socket "
                        "(instead of stack flags)")
    r.add_argument("--in-process", action="store_true",
                   help="run the stack in the program's own process (the default "
                        "with stack flags)")
    r.add_argument("-m", dest="module", metavar="MODULE", help="run a library module")
    r.add_argument("-c", dest="code", metavar="COMMAND",
                   help="run the program passed in as a string (as python -c)")
    r.add_argument("program", nargs=argparse.REMAINDER,
                   help="SCRIPT ARGS... (or ARGS for -m MODULE)")

    c = sub.add_parser("ctl", help="talk to a running `femtotcp serve`")
    from femtotcp.stack import modules as modreg
    if modreg.available("ctl"):
        from femtotcp.control.client import add_ctl_arguments
        add_ctl_arguments(c)
    else:
        c.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    if modreg.available("gateway"):
        g = sub.add_parser("gateway", help="user-mode networking for a VM or container")
        from femtotcp.gateway import cli as gateway_cli
        gateway_cli.add_arguments(g)

    z = sub.add_parser("size", help="the size table: interpreter, builds, each module")
    z.add_argument("--json", action="store_true", help="machine-readable output")
    z.add_argument("--quick", action="store_true",
                   help="bytes and lines only (no RSS or import-time runs)")

    b = sub.add_parser("build", help="write a zipapp holding only the modules named")
    b.add_argument("--modules", type=_modules, required=True, metavar="LIST",
                   help="protocol modules, services and faces, e.g. "
                        "arp,ipv4,icmp4,udp,tcp,dns,run")
    b.add_argument("-o", "--output", required=True, metavar="FILE.pyz")
    b.add_argument("--bytecode", action="store_true",
                   help="ship -OO bytecode (.pyc: runs only on this Python version) "
                        "instead of stripped source")
    b.add_argument("--solid", action="store_true",
                   help="all modules in one LZMA stream (smallest; needs lzma at run time)")
    return p


_LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()), format=_LOG_FORMAT)


def _configure_own_logging(level: str) -> None:
    """``run``: femtotcp's loggers get their own handler and the root logger
    stays the program's, untouched, as under ``python``: its ``basicConfig``
    takes effect, and its libraries' records are not printed in our format."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    own = logging.getLogger("femtotcp")
    own.addHandler(handler)
    own.setLevel(getattr(logging, level.upper()))
    own.propagate = False


def cmd_serve(args: argparse.Namespace) -> int:
    from femtotcp.host import Host
    _configure_logging(args.log_level)
    opts = host_options(args)
    if opts.busy_poll is None:
        opts.busy_poll = BUSY_POLL_DEFAULT_US     # the stack has this process to itself
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    from femtotcp.stack import modules as modreg
    if opts.control is None and os.geteuid() == 0 and modreg.available("ctl"):
        opts.control = f"/run/femtotcp/{opts.tap or opts.tun}.sock"
    if opts.control:   # (validated: the ctl module is in this build)
        from femtotcp import control
        control.check_free(opts.control)   # OSError when another serve answers there
    control_server: Any = None
    host = Host(opts)
    try:
        host.start()
        if opts.control:
            # Up before the addresses are (``ctl`` shows the DHCP client's state
            # while it waits); the line below says when they are.
            control_server = control.ControlServer(host, opts.control)
            control_server.start()
        for missing in host.settle(cancel=stop):
            print(f"femtotcp: {missing}", file=sys.stderr)
        if stop.is_set():
            return 0
        print(f"femtotcp: serving on {host.describe()}"
              + (f" control {opts.control}" if control_server else ""), flush=True)
        while not stop.wait(0.5):
            if host.runtime.thread is not None and not host.runtime.thread.is_alive():
                print("femtotcp: the stack thread died", file=sys.stderr)
                return 1
    finally:
        if control_server is not None:
            control_server.close()
        host.close()
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    _configure_own_logging(args.log_level)
    require("run", "run")
    from femtotcp.api import run as api_run
    if args.module and args.code is not None:
        raise UsageError("-m MODULE and -c COMMAND are exclusive")
    if not args.module and args.code is None and not args.program:
        raise UsageError(api_run.NEEDS_PROGRAM)
    if args.control:
        if args.in_process:
            raise UsageError("--control attaches to a running serve; --in-process "
                             "needs stack flags instead")
        given = [flag for flag, value in (("--tap", args.tap), ("--tun", args.tun),
                                          ("--ip", args.ip), ("--dhcp", args.dhcp),
                                          ("--pcap", args.pcap)) if value]
        if given:
            raise UsageError(f"--control attaches to a running serve, whose stack it uses: "
                             f"drop {', '.join(given)}")
        return int(api_run.run_attached(args.control, module=args.module,
                                        argv=list(args.program), command=args.code))
    args.control = None
    opts = host_options(args)
    return int(api_run.run_program(opts, module=args.module, argv=list(args.program),
                                   command=args.code))


def cmd_ctl(args: argparse.Namespace) -> int:
    require("ctl", "ctl")
    from femtotcp import control
    return int(control.ctl_main(args))


def cmd_demo(args: argparse.Namespace) -> int:
    require("demo", "demo")
    from femtotcp import demo
    if args.tap:
        return demo.run_tap(args.pcap)
    return demo.run_memory(args.pcap)


def cmd_size(args: argparse.Namespace) -> int:
    _in_source_tree("size")
    from femtotcp import size
    return size.main((["--json"] if args.json else []) + (["--quick"] if args.quick else []))


def cmd_build(args: argparse.Namespace) -> int:
    _in_source_tree("build")
    from femtotcp import build
    return build.main(args.modules, args.output, bytecode=args.bytecode, solid=args.solid)


def cmd_gateway(args: argparse.Namespace) -> int:
    from femtotcp.gateway import cli as gateway_cli
    return gateway_cli.main(args)


COMMANDS = {"serve": cmd_serve, "run": cmd_run, "ctl": cmd_ctl, "demo": cmd_demo,
            "size": cmd_size, "build": cmd_build, "gateway": cmd_gateway}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    program: list[str] | None = None
    if argv[:1] == ["run"] and "-m" in argv:
        # `run [stack flags] -m MODULE ARGS...`: everything after MODULE is the
        # program's, even when it looks like one of our flags (as `python -m`).
        i = argv.index("-m")
        argv, program = argv[:i + 2], argv[i + 2:]
    args = parser.parse_args(argv)
    if program is not None:
        args.program = program
    try:
        return COMMANDS[args.command](args)
    except (UsageError, ValueError) as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except PermissionError as exc:
        print(f"{PROG} {args.command}: error: {exc} (are you root?)", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
