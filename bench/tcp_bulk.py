"""TCP bulk throughput between the Linux kernel and femtotcp over a TAP device.

The stack runs in this process on a real-time ``Runtime`` thread; the kernel
side lives in a network namespace made for the run (192.0.2.1/24, the stack is
192.0.2.2/24, MTU 1500). The kernel's end is a plain Python socket created from
a thread that entered the namespace.

- kernel -> stack: the kernel sends to the stack's discard service and waits
  for the service's FIN (so every byte was consumed);
- stack -> kernel: the kernel reads from the stack's chargen service;
- the TAP offloads (TSO writes, GRO reads, partial checksums);
  ``FEMTOTCP_BENCH_OFFLOAD=tx`` keeps only the TSO writes (the TapDevice
  default) and ``FEMTOTCP_BENCH_OFFLOAD=0`` measures a plain TAP;
- the kernel's own figure: the same transfer over a veth pair between two
  namespaces;
- ping RTT kernel -> stack, and this process's RSS;
- the ping floor: a bare Python loop on a plain TAP (select, read, answer the
  ICMP echo in place, write) in the same set-up, so the stack's per-packet
  overhead shows as the difference.
"""

from __future__ import annotations

import contextlib
import cProfile
import io
import os
import pstats
import re
import secrets
import select
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from femtotcp.phy import netns as nsmod
from femtotcp.phy.tap import VNET_HDR_LEN, TapDevice
from femtotcp.runtime import Runtime
from femtotcp.services import chargen, discard
from femtotcp.stack import Stack

KERNEL = "192.0.2.1"
STACK = "192.0.2.2"
KERNEL6 = "2001:db8:b::1"
STACK6 = "2001:db8:b::2"
MB = 1_000_000
CHUNK = 1 << 20


@dataclass
class Rig:
    ns: str
    tap: TapDevice
    stack: Stack
    rt: Runtime
    discard: Any
    chargen: Any


@contextlib.contextmanager
def namespace(prefix: str = "ftbench") -> Iterator[str]:
    name = f"{prefix}-{os.getpid()}-{secrets.token_hex(2)}"
    nsmod.create(name)
    try:
        yield name
    finally:
        nsmod.delete(name)


def offload_default() -> tuple[bool, bool]:
    """(offload, gro) for the bench's TAP from FEMTOTCP_BENCH_OFFLOAD: "gro" (the
    default: TSO writes and GRO reads), "tx" (TSO writes only, the TapDevice
    default) or "0" (a plain TAP)."""
    mode = os.environ.get("FEMTOTCP_BENCH_OFFLOAD", "gro").lower()
    if mode in ("0", "no", "off", "none", ""):
        return False, False
    return True, mode not in ("tx", "tso")


@contextlib.contextmanager
def rig(mtu: int = 1500, offload: bool | None = None,
        gro: bool | None = None, ipv6: bool = False) -> Iterator[Rig]:
    """A namespace with the kernel on one side of a TAP and the stack on the other
    (the TAP's offload as ``offload_default`` says unless given). With ``ipv6``
    the stack loads IPv6 too (KERNEL6/STACK6) and its services listen on ::."""
    if offload is None:
        offload, default_gro = offload_default()
        gro = default_gro if gro is None else gro
    with namespace() as ns:
        with nsmod.entered(ns):
            tap = TapDevice("ftbench0", mtu=mtu, offload=offload, gro=bool(gro))
        subprocess.run(["ip", "-n", ns, "addr", "add", f"{KERNEL}/24", "dev", tap.name],
                       check=True)
        any_addr = bytes(4)
        if ipv6:
            for key in ("all", "default", tap.name):
                subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                                f"net.ipv6.conf.{key}.disable_ipv6=0"], check=True)
            subprocess.run(["ip", "-n", ns, "addr", "add", f"{KERNEL6}/64", "nodad", "dev",
                            tap.name], check=True)
            from femtotcp.stack.modules import DEFAULT_MODULES
            stack = Stack("bench", modules=[*DEFAULT_MODULES, "ipv6", "icmp6"])
            any_addr = bytes(16)
        else:
            stack = Stack("bench")
        iface = stack.add_interface(tap, mac="02:00:00:00:00:02", ipv4=f"{STACK}/24")
        if stack.ipv6 is not None:
            stack.ipv6.add_address(iface, socket.inet_pton(socket.AF_INET6, STACK6), 64)
        rt = Runtime()
        rt.add_stack(stack)
        rt.start()
        try:
            rt.call(stack.start)
            if stack.ipv6 is not None:
                six = socket.inet_pton(socket.AF_INET6, STACK6)
                rt.wait_until(lambda: six in stack.local_addresses, 10)
            svc_discard = rt.call(discard.start, stack, 9, any_addr)
            svc_chargen = rt.call(chargen.start, stack, 19, any_addr)
            yield Rig(ns, tap, stack, rt, svc_discard, svc_chargen)
        finally:
            rt.stop()
            rt.join(5)
            rt.close()


def _kernel_socket(ns: str, host: str, port: int, timeout: float = 60.0) -> socket.socket:
    with nsmod.entered(ns):
        sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    return sock


def _send_all(sock: socket.socket, nbytes: int) -> None:
    block = memoryview(os.urandom(CHUNK))
    left = nbytes
    while left > 0:
        n = sock.send(block[:min(left, CHUNK)])
        left -= n


def _recv_exact(sock: socket.socket, nbytes: int) -> int:
    buf = bytearray(CHUNK)
    got = 0
    while got < nbytes:
        n = sock.recv_into(buf, min(CHUNK, nbytes - got))
        if n == 0:
            break
        got += n
    return got


def kernel_to_stack(r: Rig, nbytes: int, host: str = STACK) -> float:
    """MB/s from a kernel socket into the stack's discard service."""
    sock = _kernel_socket(r.ns, host, 9)
    start = time.perf_counter()
    _send_all(sock, nbytes)
    sock.shutdown(socket.SHUT_WR)
    while sock.recv(65536):
        pass                                 # the service's FIN: everything consumed
    elapsed = time.perf_counter() - start
    sock.close()
    return nbytes / elapsed / MB


def stack_to_kernel(r: Rig, nbytes: int, host: str = STACK) -> float:
    """MB/s from the stack's chargen service into a kernel socket."""
    sock = _kernel_socket(r.ns, host, 19)
    start = time.perf_counter()
    got = _recv_exact(sock, nbytes)
    elapsed = time.perf_counter() - start
    sock.close()
    if got < nbytes:
        raise RuntimeError(f"chargen stopped after {got} bytes")
    return nbytes / elapsed / MB


def ping_stats(ns: str, host: str = STACK, count: int = 20,
               interval: float = 0.05) -> tuple[float, float] | None:
    """(min, average) ping RTT in milliseconds (None when ping is missing or fails)."""
    try:
        res = subprocess.run(["ip", "netns", "exec", ns, "ping", "-c", str(count), "-i",
                              str(interval), "-q", host], capture_output=True, text=True,
                             timeout=30 + count * interval)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"= ([\d.]+)/([\d.]+)/", res.stdout)
    return (float(m.group(1)), float(m.group(2))) if m else None


def ping_rtt(ns: str, host: str = STACK, count: int = 20) -> float | None:
    """Average ping RTT in milliseconds (None when ping is missing or fails)."""
    got = ping_stats(ns, host, count)
    return got[1] if got else None


FLOOR = "192.0.2.3"
FLOOR_MAC = bytes.fromhex("020000000003")


def _echo_in_place(frame: bytearray) -> bool:
    """Turn an Ethernet/IPv4 ICMP echo request into its reply, in place: swap
    the addresses, type 8 -> 0, and adjust the ICMP checksum for that change
    (RFC 1624: the field drops by 0x0800). No checks beyond what that needs."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 1:
        return False
    icmp = 14 + (frame[14] & 0x0F) * 4
    if len(frame) < icmp + 8 or frame[icmp] != 8:
        return False
    frame[0:6], frame[6:12] = frame[6:12], frame[0:6]
    frame[26:30], frame[30:34] = frame[30:34], frame[26:30]
    frame[icmp] = 0
    csum = int.from_bytes(frame[icmp + 2:icmp + 4], "big") + 0x0800
    csum = (csum & 0xFFFF) + (csum >> 16)
    frame[icmp + 2:icmp + 4] = csum.to_bytes(2, "big")
    return True


def echo_answerer(fd: int, offload: bool, mtu: int = 1500,
                  written: Callable[[], None] | None = None) -> Callable[[], None]:
    """The floor's handler: every frame the TAP ``fd`` holds (vnet headers
    first when ``offload``) read, echo requests answered in place and
    written back; ``written()`` after each write."""
    hdr = bytes(VNET_HDR_LEN) if offload else b""
    skip = len(hdr)
    view = memoryview(bytearray(65536 + skip if offload else mtu + 18))

    def answer() -> None:
        while True:
            try:
                n = os.readv(fd, (view,))
            except BlockingIOError:
                break
            frame = bytearray(view[skip:n])
            if _echo_in_place(frame):
                if offload:
                    os.writev(fd, (hdr, frame))
                else:
                    os.write(fd, frame)
                if written is not None:
                    written()
    return answer


def ping_floor(mtu: int = 1500, count: int = 100,
               stats: Callable[..., Any] = ping_stats, offload: bool = False,
               in_runtime: bool = False) -> Any:
    """(min, average) ping RTT (ms) of a bare Python echo loop on a TAP:
    the floor under any Python stack's ping (or what ``stats(ns, host, count,
    interval)`` makes of the pings). The kernel side has a static neighbour
    entry, so the loop only ever sees echo requests. ``offload``: the TAP
    carries vnet headers with TSO/GRO on, as the stack's does when it is
    measured with offload (the loop then reads past the header and writes
    one before the reply), so both are measured on the same device.
    ``in_runtime``: the same echo handler run by femtotcp's event loop (a
    ``Runtime`` thread with the TAP's fd in its epoll, ``watch_fd``) instead
    of the bare ``select`` loop: the floor plus the loop's own cost, with no
    stack work at all."""
    with namespace("ftfloor") as ns:
        with nsmod.entered(ns):
            tap = TapDevice("ftfloor0", mtu=mtu, offload=offload, gro=offload)
        subprocess.run(["ip", "-n", ns, "addr", "add", f"{KERNEL}/24", "dev", tap.name],
                       check=True)
        subprocess.run(["ip", "-n", ns, "neigh", "replace", FLOOR, "lladdr",
                        FLOOR_MAC.hex(":"), "dev", tap.name, "nud", "permanent"], check=True)
        fd = tap.fileno()
        stop = threading.Event()
        answer = echo_answerer(fd, offload, mtu)

        def loop() -> None:
            while not stop.is_set():
                if select.select([fd], [], [], 0.2)[0]:
                    answer()

        rt: Runtime | None = None
        if in_runtime:
            rt = Runtime()
            rt.start()
            rt.call(rt.watch_fd, fd, True, False, _Readable(answer))
            th = rt.thread
        else:
            th = threading.Thread(target=loop, daemon=True)
            th.start()
        try:
            return stats(ns, FLOOR, count, 0.01)
        finally:
            stop.set()
            if rt is not None:
                rt.stop()
                rt.join(5)
                rt.close()
            elif th is not None:
                th.join(5)
            tap.close()


class _Readable:
    """What ``Runtime.watch_fd`` calls: ``on_readable``."""

    def __init__(self, call: Callable[[], None]) -> None:
        self.on_readable = call


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def kernel_veth(nbytes: int, mtu: int = 1500) -> float:
    """MB/s of the kernel alone: a socket pair across a veth between two namespaces."""
    with namespace("ftvetha") as a, namespace("ftvethb") as b:
        subprocess.run(["ip", "link", "add", "ftva", "netns", a, "type", "veth", "peer",
                        "name", "ftvb", "netns", b], check=True)
        subprocess.run(["ip", "-n", a, "addr", "add", "198.51.100.1/24", "dev", "ftva"],
                       check=True)
        subprocess.run(["ip", "-n", b, "addr", "add", "198.51.100.2/24", "dev", "ftvb"],
                       check=True)
        subprocess.run(["ip", "-n", a, "link", "set", "ftva", "up", "mtu", str(mtu)], check=True)
        subprocess.run(["ip", "-n", b, "link", "set", "ftvb", "up", "mtu", str(mtu)], check=True)
        with nsmod.entered(b):
            lst = socket.socket()
            lst.bind(("198.51.100.2", 5001))
            lst.listen(1)
        result: list[int] = []

        def server() -> None:
            conn, _ = lst.accept()
            result.append(_recv_exact(conn, nbytes))
            conn.close()

        th = threading.Thread(target=server)
        th.start()
        sock = _kernel_socket(a, "198.51.100.2", 5001)
        start = time.perf_counter()
        _send_all(sock, nbytes)
        sock.shutdown(socket.SHUT_WR)
        th.join(120)
        elapsed = time.perf_counter() - start
        sock.close()
        lst.close()
        return nbytes / elapsed / MB


def profiled(r: Rig, fn: Callable[[], Any], top: int = 25) -> str:
    """Run ``fn`` with cProfile enabled in the stack's loop thread; the report."""
    prof = cProfile.Profile()
    r.rt.call(prof.enable)
    try:
        fn()
    finally:
        r.rt.call(prof.disable)
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()
