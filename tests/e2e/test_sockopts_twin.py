"""Socket options as Linux gives them: one program (programs_sockopts.py) reads
and sets options on idle, connected and listening TCP sockets, on UDP sockets
and on IPv6 ones, on the kernel and under femtotcp (in-process, and attached
to a ``femtotcp serve``), and the three transcripts are compared.

Values that depend on the machine rather than on the rules are compared by
rule: the kernel's default congestion control (the stack runs NewReno,
Linux's "reno"), its default buffer sizes and window clamp, SO_SNDBUF's cap
(net.core.wmem_max), TCP_INFO's timing fields and the window scale we offer.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import twin

HERE = Path(__file__).resolve().parent
PROGRAM = HERE / "programs_sockopts.py"
LINUX_BUF_MAX = 212992        # net.core.wmem_max / rmem_max's default
IPV6 = ("--ipv6", "2001:db8::2/64")     # so that AF_INET6 sockets are the stack's too


def _drive(t: twin.Twin) -> dict[str, Any]:
    """A listener in the peer's namespace that takes connections and holds them."""
    with t.peer():
        srv = socket.socket()
        srv.bind((twin.PEER, 0))
        srv.listen(16)
    held: list[socket.socket] = []

    def take() -> None:
        while True:
            try:
                held.append(srv.accept()[0])
            except OSError:
                return

    threading.Thread(target=take, daemon=True).start()
    try:
        answer: dict[str, Any] = json.loads(
            t.ask(f"go {twin.PEER} {srv.getsockname()[1]}", timeout=120))
        return answer
    finally:
        srv.close()
        for c in held:
            c.close()


def _name(value: Any) -> bytes:
    raw = bytes.fromhex(value)
    assert len(raw) == 16 and raw[0] != 0, value      # a NUL-padded name
    return raw.rstrip(b"\0")


def _positive(linux: Any, ours: Any) -> bool:
    return isinstance(ours, int) and ours > 0 and isinstance(linux, int) and linux > 0


def _capped(linux: Any, ours: Any) -> bool:
    """SO_SNDBUF/SO_RCVBUF set far above the cap: doubled cap, at least Linux's default."""
    return linux[0] == ours[0] == "ok" and all(
        v % 2 == 0 and v >= 2 * LINUX_BUF_MAX for v in (linux[1], ours[1]))


def _congestion(linux: Any, ours: Any) -> bool:
    return bool(_name(linux)) and _name(ours) == b"reno"


def _congestion4(linux: Any, ours: Any) -> bool:
    """getsockopt without a length: the name's first four bytes, as an int."""
    return ours == int.from_bytes(b"reno", sys.byteorder, signed=True) and isinstance(linux, int)


def _clamp_set(linux: Any, ours: Any) -> bool:
    return linux[0] == ours[0] and _positive(linux[1], ours[1])


def _result_only(linux: Any, ours: Any) -> bool:
    """The set's result; what is read back after depends on the kernel's route
    cache (IP_MTU reads ENOTCONN there until the next packet)."""
    return bool(linux[0] == ours[0])


def _info(linux: Any, ours: Any) -> bool:
    """TCP_INFO: the same layout and negotiated values; timings by rule."""
    same = ("len", "state", "options", "snd_mss", "rcv_mss", "pmtu", "advmss",
            "bytes_received")
    if any(linux[k] != ours[k] for k in same):
        return False
    if (linux["wscale"] & 15) != (ours["wscale"] & 15):      # the peer's scale
        return False
    if linux["state"] != 1:
        return bool(linux == ours)
    # Established: the handshake's segments and the program's, at least.
    return bool(ours["rto"] >= 200000 and ours["cwnd"] >= 10 and ours["rtt"] >= 0
                and ours["segs"][0] >= 2 and ours["segs"][1] >= 1)


def _info8(linux: Any, ours: Any) -> bool:
    """The struct's first bytes: state ... options, and the peer's window scale."""
    a, b = bytes.fromhex(linux), bytes.fromhex(ours)
    return len(a) == len(b) == 8 and a[:6] == b[:6] and (a[6] & 15) == (b[6] & 15)


def _stack_socket(linux: Any, ours: Any) -> bool:
    return bool(linux == "socket" and ours.startswith("femtotcp."))


RULES: dict[str, Callable[[Any, Any], bool]] = {
    "tcp6.module": _stack_socket, "udp6.module": _stack_socket,
    "conn.SO_RCVBUF": _positive, "conn.SO_SNDBUF": _positive,
    "udp.SO_RCVBUF": _positive, "udp.SO_SNDBUF": _positive,
    "idle.SO_SNDBUF=100000000": _capped, "idle.SO_RCVBUF=100000000": _capped,
    "idle.TCP_CONGESTION": _congestion, "conn.TCP_CONGESTION": _congestion,
    "conn.TCP_CONGESTION4": _congestion4,
    "conn.TCP_WINDOW_CLAMP": _positive, "conn.TCP_WINDOW_CLAMP=0": _clamp_set,
    "conn.IP_MTU=1000": _result_only,
    "idle.TCP_INFO": _info, "listen.TCP_INFO": _info, "conn.TCP_INFO": _info,
    "capped.TCP_INFO": _info, "conn.TCP_INFO8": _info8,
}


def _differences(linux: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in linux.items():
        rule = RULES.get(key)
        if key not in ours:
            out[key] = ("missing", value)
        elif not (rule(value, ours[key]) if rule is not None else ours[key] == value):
            out[key] = (ours[key], value)
    out.update({key: (ours[key], "missing") for key in ours.keys() - linux.keys()})
    return out


def test_socket_options_as_on_linux_in_process_and_attached() -> None:
    """Every option the program touches answers as on Linux: values, defaults,
    Linux's EINVAL ranges (the value kept as it was), ENOPROTOOPT/EOPNOTSUPP for
    what a socket lacks, doubled buffers, TCP_MAXSEG capping the SYN's MSS,
    TCP_INFO's layout, and the same for UDP and IPv6 sockets."""
    def kernel() -> dict[str, Any]:
        with twin.on_kernel(PROGRAM) as k:
            return _drive(k)

    def femto(attached: bool) -> dict[str, Any]:
        with twin.on_femtotcp(PROGRAM, attached=attached, stack_args=IPV6) as f:
            return _drive(f)

    with ThreadPoolExecutor(max_workers=3) as pool:
        runs = pool.submit(kernel), pool.submit(femto, False), pool.submit(femto, True)
        linux, inproc, attached = (run.result() for run in runs)
    assert len(linux) > 200
    for name, ours in (("in-process", inproc), ("attached", attached)):
        diff = _differences(linux, ours)
        assert not diff, f"{name} differs from Linux (femtotcp, linux): {diff}"
