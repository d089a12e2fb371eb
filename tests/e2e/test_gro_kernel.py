"""Software GRO with the kernel as the sender: a plain TAP (no vnet header, so
the kernel offloads nothing and every frame is MTU-sized), a kernel socket in
the test's namespace sending to the stack's echo. The transfer is byte-exact,
the stack merged most segments of the read batches, a capture saw only
MTU-sized frames (as read), and the kernel found nothing wrong."""

from __future__ import annotations

import time

from netns import Netns, entered
from stackrig import kernel_echo_roundtrip, running_stack

from femtotcp.phy.tap import TapDevice
from femtotcp.services import tcp_echo

KERNEL = "192.0.2.1"
STACK = "192.0.2.2"


def test_kernel_sends_over_a_plain_tap_and_segments_are_merged(ns: Netns) -> None:
    with entered(ns):
        tap = TapDevice("ftgro0", offload=False)
    ns.devices.append(tap)
    assert not tap.offload and not tap.gro and not tap.checksum_rx
    ns.ip("addr", "add", f"{KERNEL}/24", "dev", tap.name)
    longest = [0, 0]                            # inbound frames captured, the longest

    def capture(frame: bytes, outbound: bool) -> None:
        if not outbound:
            longest[0] += 1
            longest[1] = max(longest[1], len(frame))

    with running_stack(tap, "e2e-gro", f"{STACK}/24") as (rt, stack):
        def watch() -> int:
            tap.add_capture(capture)
            return tap.counters["rx_frames"]
        before = rt.call(watch)
        rt.call(tcp_echo.start, stack, 7)
        started = time.monotonic()
        sent, got, n = kernel_echo_roundtrip(ns, STACK, 8_000_000, 23, timeout=120)
        wall = time.monotonic() - started
        counters = rt.call(stack.counters.snapshot)
        dev = rt.call(lambda: dict(tap.counters))
    assert n == 8_000_000 and got == sent
    merged = counters.get("gro.merged_segments", 0)
    segments = 8_000_000 // 1448
    assert counters.get("gro.merged_frames", 0) > 0
    assert merged > segments // 4, counters       # most read batches hold several
    for name in ("tcp.bad_checksum", "ipv4.bad_checksum", "eth.oversize",
                 "stack.internal_error"):
        assert counters.get(name, 0) == 0, (name, counters)
    assert longest[0] == dev["rx_frames"] - before and longest[1] <= 1514
    lines = ns.run("cat", "/proc/net/snmp").stdout.splitlines()
    tcp_names, tcp_values = [ln.split()[1:] for ln in lines if ln.startswith("Tcp:")]
    kernel = dict(zip(tcp_names, map(int, tcp_values), strict=True))
    assert kernel["InErrs"] == 0 and kernel["InCsumErrors"] == 0, kernel
    print(f"8 MB each way over a plain TAP: {wall:.1f} s; {merged} of about {segments} "
          f"segments merged into {counters['gro.merged_frames']} frames")


def test_kernel_sends_over_ipv6_on_a_plain_tap(ns: Netns) -> None:
    """The same over IPv6: 4 MB from the kernel to the stack's echo on ::,
    byte-exact, most segments merged."""
    from test_ipv6_kernel import KERNEL6, STACK6, enable_ipv6, ready, stack6

    from femtotcp.services.tcp_echo import TcpEcho
    from femtotcp.wire import ip_str

    enable_ipv6(ns)
    with entered(ns):
        tap = TapDevice("ftgro6", offload=False)
    ns.devices.append(tap)
    ns.ip("-6", "addr", "add", f"{KERNEL6}/64", "dev", tap.name, "nodad")
    with stack6(tap) as (rt, stack):
        assert rt.wait_until(ready(stack, STACK6), 10)
        rt.call(TcpEcho, stack, 7, bytes(16))
        sent, got, n = kernel_echo_roundtrip(ns, ip_str(STACK6), 4_000_000, 29, timeout=120)
        counters = rt.call(stack.counters.snapshot)
    assert n == 4_000_000 and got == sent
    assert counters.get("gro.merged_segments", 0) > 4_000_000 // 1428 // 4, counters
    for name in ("tcp.bad_checksum", "eth.oversize", "stack.internal_error"):
        assert counters.get(name, 0) == 0, (name, counters)
