"""TCP tunables, with Linux's defaults (sysctl net.ipv4.tcp_*) where Linux has one."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class TcpConfig:
    # Buffers (bytes). Sockets may override per connection (SO_RCVBUF / SO_SNDBUF).
    rcvbuf: int = 256 * 1024
    sndbuf: int = 256 * 1024
    #: The largest receive buffer a connection may grow to; picks the window scale.
    rcvbuf_max: int = 4 * 1024 * 1024
    #: The most that autotuning may add to all connections' receive buffers
    #: together (a stack-wide bound, as Linux's tcp_mem pressure stops growth).
    rcvbuf_autotune_total: int = 64 * 1024 * 1024
    #: Out-of-order queue per connection: blocks held (contiguous segments merge)
    #: and bytes (0 = the receive buffer size).
    ooo_max_segments: int = 256
    ooo_max_bytes: int = 0
    # Options we offer (RFC 7323, RFC 2018).
    timestamps: bool = True
    sack: bool = True
    window_scaling: bool = True
    # Timers (seconds). RFC 6298 with Linux's 200 ms floor; RFC 9293 MSL.
    rto_initial: float = 1.0
    rto_min: float = 0.2
    rto_max: float = 120.0
    clock_granularity: float = 0.001
    msl: float = 30.0                  # TIME_WAIT lasts 2 * msl (Linux: 60 s)
    max_time_wait: int = 16384         # tcp_max_tw_buckets: beyond it, no TIME_WAIT
    fin_timeout: float = 60.0          # orphaned FIN_WAIT_2 (tcp_fin_timeout)
    delack: float = 0.04               # delayed ACK (Linux's TCP_DELACK_MIN)
    quickack_segments: int = 16        # ACK every segment at the start (slow start)
    #: ACK a batch of segments that arrived together once, at the end of the batch
    #: (like Linux's GRO), but never more than this many full segments late.
    ack_coalescing: bool = True
    ack_coalesce_segments: int = 16
    # Give-up limits (retransmissions), as tcp_syn_retries / synack_retries / retries2.
    syn_retries: int = 6
    synack_retries: int = 5
    retries2: int = 15
    # Keepalive (SO_KEEPALIVE; TCP_KEEPIDLE / KEEPINTVL / KEEPCNT).
    keepalive_idle: float = 7200.0
    keepalive_interval: float = 75.0
    keepalive_count: int = 9
    # Congestion control (RFC 5681, RFC 6928, RFC 3465).
    initial_cwnd_segments: int = 10
    dupthresh: int = 3
    # Listen queues: half-open connections per listener, then SYN cookies.
    max_syn_backlog: int = 256
    syncookies: bool = True
    # RFC 5961 challenge ACKs: a stack-wide token bucket; plus Linux's per-connection
    # limit on ACKs sent in reply to out-of-window segments without data.
    challenge_ack_rate: float = 1000.0
    challenge_ack_burst: int = 100
    invalid_ratelimit: float = 0.5     # tcp_invalid_ratelimit
    # RSTs sent for segments that match no connection. Linux answers every one
    # (RFC 9293 3.10.7.1), so nmap sees closed ports as closed: 0 means no cap.
    # A positive rate caps them with a token bucket of ``rst_burst``.
    rst_rate: float = 0.0
    rst_burst: int = 200
    #: RFC 1337: ignore RSTs in TIME_WAIT (Linux: off).
    rfc1337: bool = False
    #: Smallest MSS accepted from a peer (Linux tcp_min_snd_mss).
    min_snd_mss: int = 48
