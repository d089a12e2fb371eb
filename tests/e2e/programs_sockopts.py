"""Socket options read and set on every kind of socket (tests/e2e/test_sockopts_twin.py).

Reads one line ``go PEER PORT`` on stdin (a TCP listener on PEER:PORT), runs
the battery and answers one JSON line: {name: value}, where a value is the
option's int, its bytes as hex, ``E<errno>`` for an error, or for a set
``[result, value read back]``.
"""

import json
import socket
import struct
import sys

S, T, IP, IP6 = socket.SOL_SOCKET, socket.IPPROTO_TCP, socket.IPPROTO_IP, socket.IPPROTO_IPV6
IP_MTU, IP_MTU_DISCOVER, IP_RECVERR = 14, 10, 11
out: dict[str, object] = {}


def get(tag: str, sock: socket.socket, level: int, opt: int, buflen: int | None = None) -> None:
    try:
        value = sock.getsockopt(level, opt) if buflen is None else sock.getsockopt(level, opt, buflen)
        out[tag] = value.hex() if isinstance(value, bytes) else value
    except OSError as exc:
        out[tag] = f"E{exc.errno}"


def put(tag: str, sock: socket.socket, level: int, opt: int, value: object,
        buflen: int | None = None) -> None:
    try:
        sock.setsockopt(level, opt, value)  # type: ignore[call-overload]
        res = "ok"
    except OSError as exc:
        res = f"E{exc.errno}"
    get(tag + ".get", sock, level, opt, buflen)
    out[tag] = [res, out.pop(tag + ".get")]


INTS = [("SO_REUSEADDR", S, socket.SO_REUSEADDR), ("SO_KEEPALIVE", S, socket.SO_KEEPALIVE),
        ("SO_BROADCAST", S, socket.SO_BROADCAST), ("SO_OOBINLINE", S, socket.SO_OOBINLINE),
        ("SO_PRIORITY", S, socket.SO_PRIORITY), ("SO_RCVLOWAT", S, socket.SO_RCVLOWAT),
        ("SO_SNDLOWAT", S, socket.SO_SNDLOWAT), ("SO_DONTROUTE", S, socket.SO_DONTROUTE),
        ("SO_MARK", S, socket.SO_MARK), ("SO_REUSEPORT", S, socket.SO_REUSEPORT),
        ("SO_ERROR", S, socket.SO_ERROR), ("SO_LINGER", S, socket.SO_LINGER),
        ("IP_TTL", IP, socket.IP_TTL), ("IP_TOS", IP, socket.IP_TOS),
        ("IP_MTU", IP, IP_MTU), ("IP_MTU_DISCOVER", IP, IP_MTU_DISCOVER),
        ("IP_RECVERR", IP, IP_RECVERR), ("IP_MULTICAST_TTL", IP, socket.IP_MULTICAST_TTL),
        ("IP_MULTICAST_LOOP", IP, socket.IP_MULTICAST_LOOP)]
TCP_INTS = [("TCP_NODELAY", T, socket.TCP_NODELAY), ("TCP_MAXSEG", T, socket.TCP_MAXSEG),
            ("TCP_KEEPIDLE", T, socket.TCP_KEEPIDLE), ("TCP_KEEPINTVL", T, socket.TCP_KEEPINTVL),
            ("TCP_KEEPCNT", T, socket.TCP_KEEPCNT), ("TCP_USER_TIMEOUT", T, socket.TCP_USER_TIMEOUT),
            ("TCP_QUICKACK", T, socket.TCP_QUICKACK), ("TCP_CORK", T, socket.TCP_CORK),
            ("TCP_NOTSENT_LOWAT", T, socket.TCP_NOTSENT_LOWAT), ("TCP_SYNCNT", T, socket.TCP_SYNCNT),
            ("TCP_LINGER2", T, socket.TCP_LINGER2), ("TCP_DEFER_ACCEPT", T, socket.TCP_DEFER_ACCEPT),
            ("TCP_FASTOPEN", T, socket.TCP_FASTOPEN)]


def battery(prefix: str, sock: socket.socket, table: list[tuple[str, int, int]]) -> None:
    for name, level, opt in table:
        get(f"{prefix}.{name}", sock, level, opt)


def tcp_info(tag: str, sock: socket.socket) -> None:
    try:
        raw = sock.getsockopt(T, socket.TCP_INFO, 512)
    except OSError as exc:
        out[tag] = f"E{exc.errno}"
        return
    state, _ca, _retr, _probes, _backoff, options, wscale = struct.unpack_from("7B", raw)
    rto, _ato, snd_mss, rcv_mss = struct.unpack_from("4I", raw, 8)
    pmtu, _rcv_ssthresh, rtt, _rttvar, _ssthresh, cwnd, advmss = struct.unpack_from("7I", raw, 60)
    out[tag] = {"len": len(raw), "state": state, "options": options, "wscale": wscale,
                "rto": rto, "snd_mss": snd_mss, "rcv_mss": rcv_mss, "pmtu": pmtu, "rtt": rtt,
                "cwnd": cwnd, "advmss": advmss,
                "segs": struct.unpack_from("2I", raw, 136) if len(raw) >= 144 else None,
                "bytes_received": struct.unpack_from("Q", raw, 128)[0] if len(raw) >= 136 else None}


def main() -> None:
    _go, peer, port_s = sys.stdin.readline().split()
    port = int(port_s)
    # An unconnected TCP socket.
    u = socket.socket()
    battery("idle", u, INTS + TCP_INTS)
    get("idle.TCP_CONGESTION", u, T, socket.TCP_CONGESTION, 16)
    get("idle.TCP_WINDOW_CLAMP", u, T, socket.TCP_WINDOW_CLAMP)
    get("idle.SO_BINDTODEVICE", u, S, socket.SO_BINDTODEVICE, 16)
    get("idle.SO_BINDTODEVICE4", u, S, socket.SO_BINDTODEVICE)
    get("idle.IP_OPTIONS", u, IP, socket.IP_OPTIONS, 40)
    tcp_info("idle.TCP_INFO", u)
    for value in (10000, 1, 4607, 100000000):
        put(f"idle.SO_SNDBUF={value}", u, S, socket.SO_SNDBUF, value)
        put(f"idle.SO_RCVBUF={value}", u, S, socket.SO_RCVBUF, value)
    put("idle.SO_LINGER=short", u, S, socket.SO_LINGER, b"\1")
    put("idle.SO_LINGER=1,5", u, S, socket.SO_LINGER, struct.pack("ii", 1, 5), 8)
    put("idle.TCP_MAXSEG=0", u, T, socket.TCP_MAXSEG, 0)
    put("idle.TCP_WINDOW_CLAMP=0", u, T, socket.TCP_WINDOW_CLAMP, 0)
    put("idle.TCP_WINDOW_CLAMP=100", u, T, socket.TCP_WINDOW_CLAMP, 100)
    put("idle.TCP_WINDOW_CLAMP=50000", u, T, socket.TCP_WINDOW_CLAMP, 50000)
    put("idle.TCP_MAXSEG=87", u, T, socket.TCP_MAXSEG, 87)
    put("idle.TCP_MAXSEG=600", u, T, socket.TCP_MAXSEG, 600)
    put("idle.IP_MULTICAST_TTL=-1", u, IP, socket.IP_MULTICAST_TTL, -1)
    u.close()
    # A connected one; its MSS capped before connect.
    capped = socket.socket()
    capped.setsockopt(T, socket.TCP_MAXSEG, 600)
    capped.connect((peer, port))
    get("capped.TCP_MAXSEG", capped, T, socket.TCP_MAXSEG)
    tcp_info("capped.TCP_INFO", capped)
    capped.close()
    c = socket.create_connection((peer, port), timeout=10)
    c.sendall(b"hello")
    battery("conn", c, INTS + TCP_INTS)
    get("conn.TCP_CONGESTION", c, T, socket.TCP_CONGESTION, 16)
    get("conn.TCP_CONGESTION4", c, T, socket.TCP_CONGESTION)
    get("conn.TCP_WINDOW_CLAMP", c, T, socket.TCP_WINDOW_CLAMP)
    get("conn.SO_SNDBUF", c, S, socket.SO_SNDBUF)
    get("conn.SO_RCVBUF", c, S, socket.SO_RCVBUF)
    get("conn.SO_BINDTODEVICE", c, S, socket.SO_BINDTODEVICE, 16)
    get("conn.IP_OPTIONS", c, IP, socket.IP_OPTIONS, 40)
    get("conn.TCP_INFO4", c, T, socket.TCP_INFO)
    get("conn.TCP_INFO8", c, T, socket.TCP_INFO, 8)
    get("conn.level9999", c, 9999, 1)
    get("conn.SOL_SOCKET9999", c, S, 9999)
    get("conn.TCP9999", c, T, 9999)
    get("conn.IP9999", c, IP, 9999)
    get("conn.IPV6_V6ONLY", c, IP6, socket.IPV6_V6ONLY)
    put("conn.IPV6_V6ONLY=1", c, IP6, socket.IPV6_V6ONLY, 1)
    tcp_info("conn.TCP_INFO", c)
    sets = [("setlvl", 9999, 1, 1), ("SO_PRIORITY=7", S, socket.SO_PRIORITY, 7),
            ("TCP_MAXSEG=10", T, socket.TCP_MAXSEG, 10), ("IP_TTL=0", IP, socket.IP_TTL, 0),
            ("IP_TTL=256", IP, socket.IP_TTL, 256), ("IP_TTL=9", IP, socket.IP_TTL, 9),
            ("IP_TTL=-1", IP, socket.IP_TTL, -1), ("IP_TOS=300", IP, socket.IP_TOS, 300),
            ("IP_TOS=3", IP, socket.IP_TOS, 3), ("IP_TOS=b", IP, socket.IP_TOS, b"\x10"),
            ("IP_TTL=b", IP, socket.IP_TTL, b"\x07"),
            ("SO_RCVLOWAT=0", S, socket.SO_RCVLOWAT, 0), ("SO_RCVLOWAT=7", S, socket.SO_RCVLOWAT, 7),
            ("SO_SNDLOWAT=7", S, socket.SO_SNDLOWAT, 7), ("SO_KEEPALIVE=5", S, socket.SO_KEEPALIVE, 5),
            ("SO_KEEPALIVE=b", S, socket.SO_KEEPALIVE, b"\1"),
            ("TCP_KEEPIDLE=0", T, socket.TCP_KEEPIDLE, 0), ("TCP_KEEPIDLE=32768", T, socket.TCP_KEEPIDLE, 32768),
            ("TCP_KEEPIDLE=30", T, socket.TCP_KEEPIDLE, 30),
            ("TCP_KEEPCNT=200", T, socket.TCP_KEEPCNT, 200), ("TCP_KEEPCNT=127", T, socket.TCP_KEEPCNT, 127),
            ("TCP_KEEPINTVL=40000", T, socket.TCP_KEEPINTVL, 40000),
            ("TCP_USER_TIMEOUT=-1", T, socket.TCP_USER_TIMEOUT, -1),
            ("TCP_USER_TIMEOUT=1500", T, socket.TCP_USER_TIMEOUT, 1500),
            ("TCP_SYNCNT=0", T, socket.TCP_SYNCNT, 0), ("TCP_SYNCNT=128", T, socket.TCP_SYNCNT, 128),
            ("TCP_SYNCNT=3", T, socket.TCP_SYNCNT, 3),
            ("TCP_LINGER2=-5", T, socket.TCP_LINGER2, -5), ("TCP_LINGER2=500", T, socket.TCP_LINGER2, 500),
            ("TCP_LINGER2=0", T, socket.TCP_LINGER2, 0), ("TCP_LINGER2=10", T, socket.TCP_LINGER2, 10),
            ("TCP_WINDOW_CLAMP=0", T, socket.TCP_WINDOW_CLAMP, 0),
            ("TCP_WINDOW_CLAMP=-1", T, socket.TCP_WINDOW_CLAMP, -1),
            ("TCP_WINDOW_CLAMP=20000", T, socket.TCP_WINDOW_CLAMP, 20000),
            ("TCP_QUICKACK=0", T, socket.TCP_QUICKACK, 0), ("TCP_NODELAY=3", T, socket.TCP_NODELAY, 3),
            ("TCP_NOTSENT_LOWAT=5000", T, socket.TCP_NOTSENT_LOWAT, 5000),
            ("IP_MTU_DISCOVER=6", IP, IP_MTU_DISCOVER, 6), ("IP_MTU_DISCOVER=2", IP, IP_MTU_DISCOVER, 2),
            ("IP_RECVERR=1", IP, IP_RECVERR, 1), ("SO_DONTROUTE=1", S, socket.SO_DONTROUTE, 1),
            ("IP_MULTICAST_TTL=256", IP, socket.IP_MULTICAST_TTL, 256),
            ("IP_MULTICAST_TTL=5", IP, socket.IP_MULTICAST_TTL, 5),
            ("IP_MULTICAST_LOOP=0", IP, socket.IP_MULTICAST_LOOP, 0),
            ("SO_BROADCAST=1", S, socket.SO_BROADCAST, 1), ("SO_OOBINLINE=1", S, socket.SO_OOBINLINE, 1),
            ("SO_ERROR=1", S, socket.SO_ERROR, 1), ("SO_TYPE=1", S, socket.SO_TYPE, 1),
            ("IP_MTU=1000", IP, IP_MTU, 1000), ("SO_SNDBUF=10000", S, socket.SO_SNDBUF, 10000)]
    for name, level, opt, value in sets:
        put(f"conn.{name}", c, level, opt, value)
    for name, value in (("reno", b"reno"), ("nosuch", b"nosuch")):
        put(f"conn.TCP_CONGESTION={name}", c, T, socket.TCP_CONGESTION, value, 16)
    put("conn.SO_BINDTODEVICE=nosuch", c, S, socket.SO_BINDTODEVICE, b"nosuch0", 16)
    put("conn.IP_OPTIONS=empty", c, IP, socket.IP_OPTIONS, b"", 40)
    c.close()
    # A listening one.
    lst = socket.socket()
    lst.bind(("0.0.0.0", 0))
    lst.listen(5)
    get("listen.TCP_MAXSEG", lst, T, socket.TCP_MAXSEG)
    get("listen.IP_MTU", lst, IP, IP_MTU)
    tcp_info("listen.TCP_INFO", lst)
    put("listen.TCP_DEFER_ACCEPT=0", lst, T, socket.TCP_DEFER_ACCEPT, 0)
    lst.close()
    # UDP.
    d = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    battery("udp", d, INTS)
    get("udp.TCP_NODELAY", d, T, socket.TCP_NODELAY)
    get("udp.IPV6_TCLASS", d, IP6, socket.IPV6_TCLASS)
    put("udp.IPV6_TCLASS=1", d, IP6, socket.IPV6_TCLASS, 1)
    get("udp.SO_SNDBUF", d, S, socket.SO_SNDBUF)
    get("udp.SO_RCVBUF", d, S, socket.SO_RCVBUF)
    get("udp.IP_OPTIONS", d, IP, socket.IP_OPTIONS, 40)
    for name, level, opt, value in [
            ("IP_TTL=0", IP, socket.IP_TTL, 0), ("IP_TTL=200", IP, socket.IP_TTL, 200),
            ("IP_TOS=300", IP, socket.IP_TOS, 300), ("IP_TOS=3", IP, socket.IP_TOS, 3),
            ("IP_MULTICAST_TTL=-1", IP, socket.IP_MULTICAST_TTL, -1),
            ("IP_MULTICAST_TTL=256", IP, socket.IP_MULTICAST_TTL, 256),
            ("IP_MULTICAST_TTL=4", IP, socket.IP_MULTICAST_TTL, 4),
            ("IP_MULTICAST_LOOP=0", IP, socket.IP_MULTICAST_LOOP, 0),
            ("IP_MULTICAST_LOOP=9", IP, socket.IP_MULTICAST_LOOP, 9),
            ("SO_BROADCAST=1", S, socket.SO_BROADCAST, 1),
            ("SO_RCVBUF=1", S, socket.SO_RCVBUF, 1), ("SO_SNDBUF=5000", S, socket.SO_SNDBUF, 5000),
            ("IP_MTU_DISCOVER=0", IP, IP_MTU_DISCOVER, 0),
            ("TCP_NODELAY=1", T, socket.TCP_NODELAY, 1)]:
        put(f"udp.{name}", d, level, opt, value)
    d.connect((peer, port))
    get("udp.connected.IP_MTU", d, IP, IP_MTU)
    d.close()
    # IPv6 sockets (unconnected: the options alone).
    for kind, tag in ((socket.SOCK_STREAM, "tcp6"), (socket.SOCK_DGRAM, "udp6")):
        s6 = socket.socket(socket.AF_INET6, kind)
        out[f"{tag}.module"] = type(s6).__module__        # the stack's under femtotcp
        for name, opt in (("IPV6_V6ONLY", socket.IPV6_V6ONLY),
                          ("IPV6_UNICAST_HOPS", socket.IPV6_UNICAST_HOPS),
                          ("IPV6_TCLASS", socket.IPV6_TCLASS),
                          ("IPV6_MULTICAST_HOPS", socket.IPV6_MULTICAST_HOPS),
                          ("IPV6_MULTICAST_LOOP", socket.IPV6_MULTICAST_LOOP)):
            get(f"{tag}.{name}", s6, IP6, opt)
        get(f"{tag}.IP_TTL", s6, IP, socket.IP_TTL)
        for name, opt, value in (("IPV6_UNICAST_HOPS=256", socket.IPV6_UNICAST_HOPS, 256),
                                 ("IPV6_UNICAST_HOPS=-2", socket.IPV6_UNICAST_HOPS, -2),
                                 ("IPV6_UNICAST_HOPS=9", socket.IPV6_UNICAST_HOPS, 9),
                                 ("IPV6_TCLASS=300", socket.IPV6_TCLASS, 300),
                                 ("IPV6_TCLASS=9", socket.IPV6_TCLASS, 9),
                                 ("IPV6_MULTICAST_HOPS=256", socket.IPV6_MULTICAST_HOPS, 256),
                                 ("IPV6_MULTICAST_HOPS=3", socket.IPV6_MULTICAST_HOPS, 3),
                                 ("IPV6_MULTICAST_LOOP=2", socket.IPV6_MULTICAST_LOOP, 2),
                                 ("IPV6_MULTICAST_LOOP=0", socket.IPV6_MULTICAST_LOOP, 0)):
            put(f"{tag}.{name}", s6, IP6, opt, value)
        s6.close()
    print(json.dumps(out, sort_keys=True), flush=True)


main()
