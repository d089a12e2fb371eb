"""Issue 16's socket-level rules: the same stdlib program on the kernel and on
femtotcp (tests/e2e/twin.py), driven the same way, must give the same answers."""

from __future__ import annotations

import socket
from pathlib import Path

import twin
from netns import require_program  # noqa: F401 - the policy, for the kernel marker

from femtotcp.wire import icmp4, ipv4, udp

HERE = Path(__file__).resolve().parent
PEER_PORT = 9999

# (ICMP type, code, the 4 bytes after the checksum)
ICMP_CASES = [
    ("port_unreachable", icmp4.DEST_UNREACHABLE, 3, 0),
    ("protocol_unreachable", icmp4.DEST_UNREACHABLE, 2, 0),
    ("host_prohibited", icmp4.DEST_UNREACHABLE, 10, 0),
    ("filtered", icmp4.DEST_UNREACHABLE, 13, 0),
    ("net_unreachable", icmp4.DEST_UNREACHABLE, 0, 0),
    ("host_unreachable", icmp4.DEST_UNREACHABLE, 1, 0),
    ("time_exceeded", icmp4.TIME_EXCEEDED, 0, 0),
    ("source_quench", icmp4.SOURCE_QUENCH, 0, 0),
    ("parameter_problem", icmp4.PARAMETER_PROBLEM, 0, 20 << 24),
]
SEQUENCES = ["so_error so_error recv", "recv recv", "send recv"]


def _icmp_about(sport: int, icmp_type: int, code: int, rest: int) -> bytes:
    """An ICMP error quoting the datagram the program sent (HOST:sport -> PEER)."""
    quoted = ipv4.build(socket.inet_aton(twin.HOST), socket.inet_aton(twin.PEER), 17,
                        udp.build(socket.inet_aton(twin.HOST), socket.inet_aton(twin.PEER),
                                  sport, PEER_PORT, b"knock"))
    return icmp4.build(icmp_type, code, rest, quoted)


def _udp_errors(t: twin.Twin) -> dict[str, str]:
    answers: dict[str, str] = {}
    with t.peer():
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        listener.bind((twin.PEER, PEER_PORT))   # so the peer's kernel sends no error itself
        listener.settimeout(10)
    try:
        for case, icmp_type, code, rest in ICMP_CASES:
            for seq in SEQUENCES:
                sport = int(t.ask(f"open {twin.PEER} {PEER_PORT}"))
                assert listener.recv(100) == b"knock"
                raw.sendto(_icmp_about(sport, icmp_type, code, rest), (twin.HOST, 0))
                listener.sendto(b"after", (twin.HOST, sport))
                answers[f"{case}: {seq}"] = t.ask(f"do {seq}")
                # a "send" op's byte reaches the peer: take it
                if "send" in seq and "sent" in answers[f"{case}: {seq}"]:
                    listener.recv(100)
    finally:
        raw.close()
        listener.close()
    return answers


def test_icmp_errors_reach_connected_udp_sockets_as_on_linux() -> None:
    """RFC 1122 4.1.3.3 as Linux's udp_err applies it: hard errors (port, protocol,
    prohibited unreachables, parameter problem) reach a connected socket once, by
    SO_ERROR, recv or send, whichever comes first; soft ones (net/host unreachable,
    time exceeded, source quench) never, and the next datagram arrives normally."""
    program = HERE / "programs_udp_errors.py"
    with twin.on_kernel(program) as k:
        linux = _udp_errors(k)
    with twin.on_femtotcp(program) as f:
        femto = _udp_errors(f)
    diff = {c: (femto[c], linux[c]) for c in linux if femto.get(c) != linux[c]}
    assert not diff, f"femtotcp differs from Linux (femtotcp, linux): {diff}"
