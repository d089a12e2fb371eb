"""Issue 16's socket-level rules: the same stdlib program on the kernel and on
femtotcp (tests/e2e/twin.py), driven the same way, must give the same answers."""

from __future__ import annotations

import errno
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import twin

from femtotcp.wire import Malformed, ethernet, icmp4, ipv4, tcp, udp

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
    linux, femto = twin.at_once(HERE / "programs_udp_errors.py", _udp_errors)
    diff = {c: (femto[c], linux[c]) for c in linux if femto.get(c) != linux[c]}
    assert not diff, f"femtotcp differs from Linux (femtotcp, linux): {diff}"


# -- TCP closes ----------------------------------------------------------------------

class _Capture:
    """TCP segments on the peer's side of the link (an AF_PACKET socket in the
    peer's namespace), parsed with femtotcp's own wire module."""

    def __init__(self, t: twin.Twin, ifname: str) -> None:
        with t.peer():
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
            self.sock.bind((ifname, 0))
        self.sock.setblocking(False)

    def segments(self) -> list[tuple[str, int, int, int, int, int]]:
        """(source, sport, dport, seq, ack, flags, payload length) seen so far."""
        out = []
        while True:
            try:
                frame = self.sock.recv(65535)
            except BlockingIOError:
                return out
            try:
                eth, payload = ethernet.parse(memoryview(frame))
                if eth.ethertype != ethernet.ETH_IPV4:
                    continue
                ip, body = ipv4.parse(payload, verify_checksum=False)
                if ip.proto != tcp.PROTO:
                    continue
                hdr, data = tcp.parse(body)
            except Malformed:
                continue
            out.append((socket.inet_ntoa(ip.src), hdr.src_port, hdr.dst_port, hdr.seq,
                        hdr.ack, hdr.flags, len(data)))

    def close(self) -> None:
        self.sock.close()


def _peer_read(sock: socket.socket) -> str:
    """What the peer's recv gives once the other side has acted."""
    sock.settimeout(5)
    try:
        data = sock.recv(100)
    except TimeoutError:
        return "timeout"
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc.errno))
    return "eof" if not data else "data"


def _rst_facts(segs: list[tuple[str, int, int, int, int, int]], port: int) -> str:
    """The host's RST on the connection to ``port``: its flags, and whether its
    SEQ/ACK are the ones the peer expects (the peer's last ACK and SND.NXT)."""
    peer_last = [s for s in segs if s[0] == twin.PEER and s[1] == port]
    rsts = [s for s in segs if s[0] == twin.HOST and s[2] == port and s[5] & tcp.RST]
    if not rsts:
        return "no rst"
    rst, last = rsts[0], peer_last[-1] if peer_last else None
    flags = tcp.flags_str(rst[5])
    if last is None:
        return flags
    nxt = (last[3] + last[6] + (1 if last[5] & (tcp.SYN | tcp.FIN) else 0)) % 2**32
    return f"{flags} seq_ok={rst[3] == last[4]} ack_ok={(not rst[5] & tcp.ACK) or rst[4] == nxt}"


def _connect(t: twin.Twin, port: int) -> socket.socket:
    with t.peer():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect((twin.HOST, port))
    return s


def _tcp_closes(t: twin.Twin, ifname: str) -> dict[str, str]:
    out: dict[str, str] = {}
    cap = _Capture(t, ifname)
    try:
        # 1. close() with data unread: RST (RFC 9293 3.10.4, RFC 2525 2.17).
        t.ask("listen 7001")
        c = _connect(t, 7001)
        t.ask("accept")
        c.sendall(b"unread" * 10)
        t.ask("wait_data")
        t.ask("close")
        out["close_with_unread_data"] = _peer_read(c)
        out["close_with_unread_data_rst"] = _rst_facts(cap.segments(), c.getsockname()[1])
        c.close()
        t.ask("close_listener")
        # 2. A listener closed with a connection queued, never accepted.
        t.ask("listen 7002")
        c = _connect(t, 7002)
        # The peer's connect() returned when its final ACK left; give the host
        # time to take it (a queued, completed connection is what is tested;
        # neither side offers anything to wait on without accepting).
        time.sleep(0.5)
        t.ask("close_listener")
        out["listener_closed_with_queued"] = _peer_read(c)
        out["listener_closed_with_queued_rst"] = _rst_facts(cap.segments(),
                                                            c.getsockname()[1])
        c.close()
        # 3. SO_LINGER on, zero timeout, then close(): an abortive close.
        t.ask("listen 7003")
        c = _connect(t, 7003)
        t.ask("accept")
        c.sendall(b"read")
        t.ask("wait_data")
        t.ask("read")              # nothing unread: the RST is linger's alone
        t.ask("linger0")
        t.ask("close")
        out["linger_zero_close"] = _peer_read(c)
        out["linger_zero_close_rst"] = _rst_facts(cap.segments(), c.getsockname()[1])
        c.close()
        t.ask("close_listener")
    finally:
        cap.close()
    return out


def test_tcp_closes_as_on_linux() -> None:
    """Issue 16, TCP 1-3: close with unread data, closing a listener with queued
    connections, and SO_LINGER 0 all reset the peer with RST|ACK at the current
    SEQ/ACK, as Linux does."""
    program = HERE / "programs_tcp_close.py"
    with twin.on_kernel(program) as k:
        linux = _tcp_closes(k, "p0")
    with twin.on_femtotcp(program) as f:
        femto = _tcp_closes(f, twin.TAP)
    assert linux["close_with_unread_data"] == "ECONNRESET", linux
    diff = {c: (femto.get(c), linux[c]) for c in linux if femto.get(c) != linux[c]}
    assert not diff, f"femtotcp differs from Linux (femtotcp, linux): {diff}"


# -- keep-alive -----------------------------------------------------------------------

def _keepalive(t: twin.Twin) -> str:
    with t.peer():
        lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lst.bind((twin.PEER, 7100))
        lst.listen(1)
    try:
        lst.settimeout(10)
        t.ask(f"connect {twin.PEER} 7100")
        conn, _ = lst.accept()
        # The peer goes silent: its kernel drops everything from the host.
        t.peer_ns.run("iptables", "-w", "-A", "INPUT", "-s", twin.HOST, "-j", "DROP")
        answer = t.ask("recv", timeout=70)
        conn.close()
        return answer
    finally:
        lst.close()


def test_keepalive_times_set_after_so_keepalive_as_on_linux(
        require_program: Callable[[str], str]) -> None:
    """Issue 16, 11: TCP_KEEPIDLE/KEEPINTVL/KEEPCNT set after SO_KEEPALIVE take
    effect at once: a silent peer ends the connection with ETIMEDOUT in seconds."""
    require_program("iptables")
    linux, femto = twin.at_once(HERE / "programs_keepalive.py", _keepalive)
    assert linux == "ETIMEDOUT within_10s"
    assert femto == linux


# -- names ----------------------------------------------------------------------------

NAMES = ["h.test", "c.test", "cc.test", "nx.nx", "refused.example"]


def _names(t: twin.Twin) -> dict[str, str]:
    """dnsmasq at the peer: h.test an address, c.test -> h.test and cc.test -> c.test
    CNAMEs, nx.nx a local domain with no such name (NXDOMAIN), and no upstream
    server for anything else (REFUSED)."""
    dnsmasq = t.peer_ns.popen(
        "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--pid-file=", "--no-resolv",
        "--no-hosts", f"--listen-address={twin.PEER}", "--bind-interfaces",
        "--local=/test/", "--local=/nx/", "--host-record=h.test,192.0.2.81",
        "--cname=c.test,h.test", "--cname=cc.test,c.test",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while f"{twin.PEER}:53 " not in t.peer_ns.run("ss", "-lnu", check=False).stdout:
            assert time.monotonic() < deadline, "dnsmasq did not start"
            time.sleep(0.05)
        return {f"{cmd} {name}": t.ask(f"{cmd} {name}") for name in NAMES
                for cmd in ("ex", "canon")}
    finally:
        dnsmasq.terminate()
        dnsmasq.wait(10)


def test_names_as_glibc_gives_them(require_program: Callable[[str], str]) -> None:
    """Issue 16, 12: gethostbyname_ex of a CNAME gives the canonical name first and
    the names asked on the way as aliases; AI_CANONNAME gives the canonical name;
    REFUSED is EAI_AGAIN and NXDOMAIN EAI_NONAME, as glibc has them."""
    require_program("dnsmasq")
    require_program("ss")
    program = HERE / "programs_names.py"
    resolv = f"nameserver {twin.PEER}\noptions attempts:1 timeout:2\n"
    with twin.on_kernel(program, resolv_conf=resolv) as k:
        linux = _names(k)
    with twin.on_femtotcp(program, stack_args=("--dns", twin.PEER)) as f:
        femto = _names(f)
    assert linux["ex cc.test"] == "h.test cc.test,c.test 192.0.2.81", linux
    diff = {c: (femto.get(c), linux[c]) for c in linux if femto.get(c) != linux[c]}
    assert not diff, f"femtotcp differs from glibc (femtotcp, linux): {diff}"


@pytest.mark.parametrize("attached", [False, True], ids=["in-process", "attached"])
def test_names_with_no_name_server_as_glibc_gives_them(attached: bool) -> None:
    """A host with no name server to ask (an empty resolv.conf on Linux; no
    ``--dns``, lease or RA for femtotcp): a name not in the hosts tables is
    EAI_AGAIN, "Temporary failure in name resolution", not EAI_NONAME (which
    says the name does not exist); a numeric address still resolves."""
    program = HERE / "programs_names.py"
    asks = ["ex nothing.example", "canon nothing.example", "ex 198.51.100.7"]
    with twin.on_kernel(program, resolv_conf="options attempts:1 timeout:1\n") as k:
        linux = {a: k.ask(a) for a in asks}
    with twin.on_femtotcp(program, attached=attached) as f:
        femto = {a: f.ask(a) for a in asks}
    assert linux["ex nothing.example"] == "gaierror:EAI_AGAIN", linux
    assert femto == linux


# -- TLS ---------------------------------------------------------------------------------

def _https(t: twin.Twin, cert: Path, body: bytes) -> str:
    assert t.ask("start") == "serving"
    res = t.peer_ns.run("curl", "-sS", "--max-time", "20", "--cacert", str(cert),
                        "--resolve", f"peer.example:4443:{twin.HOST}",
                        "https://peer.example:4443/file.bin", "-o", "-", check=False,
                        timeout=30, text=False)
    if res.returncode == 0 and res.stdout == body:
        return "ok"
    return f"curl {res.returncode}: {res.stderr.decode(errors='replace').strip()}"


def test_https_server_with_a_wrapped_listening_socket(
        tmp_path: Path, require_program: Callable[[str], str]) -> None:
    """Issue 16, 10: the http.server HTTPS recipe wraps the listening socket before
    any connection exists; curl fetches through it, on the kernel and on femtotcp."""
    openssl = require_program("openssl")
    require_program("curl")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=peer.example",
                    "-addext", "subjectAltName=DNS:peer.example"], check=True,
                   capture_output=True, timeout=60)
    www = tmp_path / "www"
    www.mkdir()
    body = bytes(range(97, 123)) * 4000
    (www / "file.bin").write_bytes(body)
    program = HERE / "programs_https.py"
    args = (str(cert), str(key), str(www))
    with twin.on_kernel(program, *args) as k:
        linux = _https(k, cert, body)
    with twin.on_femtotcp(program, *args) as f:
        femto = _https(f, cert, body)
    assert linux == "ok"
    assert femto == linux
