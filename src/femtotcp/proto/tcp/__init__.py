"""TCP (RFC 9293) for femtotcp, sans-I/O: segments and a clock in, segments out.

Layout: ``layer`` (the per-stack ``Tcp``: demultiplexing, listen/connect, RSTs,
SYN cookies, ICMP errors), ``connection`` (``TcpConnection``: the facade
programs use and the RFC 9293 state machine), its parts ``sender`` (send
buffer, output, ACK processing, retransmission), ``receiver`` (receive buffer,
out-of-order queue, window, ACK policy) and ``options`` (MSS, window scale,
timestamps, SACK), ``recovery`` (NewReno and SACK loss recovery strategies),
``state`` (``TcpState``), ``env`` (``TcpEnv``: all a connection needs from the
stack, so one can run without a stack), ``seq`` (sequence-number arithmetic),
``timers`` (lazy connection timers), ``listener`` (SYN and accept queues),
``buffers`` (the out-of-order queue), ``congestion`` (NewReno and the SACK
scoreboard), ``rtt`` (RFC 6298), ``isn`` (RFC 6528 ISNs, timestamp offsets,
SYN cookies), ``ports`` (RFC 6056 ephemeral ports), ``config`` (``TcpConfig``,
reachable as ``stack.tcp.config``).

The core API (everything runs in the loop thread; addresses are packed bytes)::

    lst = stack.tcp.listen(local_addr, port, backlog=128)    # OSError(EADDRINUSE)
    lst.accept() -> TcpConnection | None
    lst.on_event = callback       # called when the accept queue grows
    lst.local, lst.readable, lst.close()
    lst.nodelay = True ...        # options inherited by accepted connections

    conn = stack.tcp.connect(dst, port, src=None, sport=0, **options)
                                  # SYN sent; OSError(ENETUNREACH) without a route
    conn.send(data) -> int        # bytes taken (0 = buffer full); raises EPIPE,
                                  # ECONNRESET (once), ENOTCONN ...
    conn.recv(n) -> bytes | None  # b"" = EOF, None = nothing yet; raises the
                                  # pending error once (ConnectionResetError,
                                  # TimeoutError, ConnectionRefusedError ...)
    conn.shutdown(socket.SHUT_WR) # also SHUT_RD, SHUT_RDWR
    conn.close()                  # FIN; RST when unread data is left or linger == 0
    conn.abort()                  # RST
    conn.state                    # TcpState.ESTABLISHED ... (a StrEnum: equal to
                                  # "ESTABLISHED", RFC 9293 names)
    conn.on_state = hook          # hook(conn, old, new) on every state change
    conn.error                    # errno or None
    conn.readable, conn.writable  # for select()
    conn.on_event = callback      # readability/writability/state/error may have changed;
                                  # called in the loop thread, once per receive batch
                                  # (TcpEnv.defer, run at Stack.end_batch), never from
                                  # inside send()/recv()
    conn.local, conn.remote       # (addr, port)
    conn.nodelay, conn.keepalive (+ keepalive_idle/_interval/_count), conn.rcvbuf,
    conn.sndbuf, conn.linger, conn.user_timeout (seconds), conn.maxseg
    conn.set_keepalive(on)        # also (re)arms the timer on a live connection
    conn.info() -> dict           # rtt, rto, cwnd, ssthresh, queues ...

    stack.tcp.connections(), stack.tcp.listeners(), stack.tcp.stats()

Batching: ACKs for full-sized segments that arrived in one device batch go
out once at the end of the batch (at most 16 segments late,
``TcpConfig.ack_coalescing``), and ``on_event`` callbacks too: the connection
defers them with ``Tcp.defer`` and ``Stack.end_batch`` runs them. Whoever
hands frames to ``Stack.receive`` calls ``end_batch`` after each batch (the
loops do; ``Stack.poll`` does too), with or without a loop.

Counters (``stack.counters``) name every drop and event (``tcp.bad_checksum``,
``tcp.paws_rejected``, ``tcp.challenge_ack`` ...); ``tcp.syn_queue``,
``tcp.accept_queue``, ``tcp.ooo_held_segments`` and ``tcp.ooo_held_bytes`` are
gauges of current occupancy.
"""

from __future__ import annotations

from femtotcp.proto.tcp.config import TcpConfig
from femtotcp.proto.tcp.connection import TcpConnection
from femtotcp.proto.tcp.layer import Tcp, install
from femtotcp.proto.tcp.listener import TcpListener

__all__ = ["Tcp", "TcpConfig", "TcpConnection", "TcpListener", "install"]
