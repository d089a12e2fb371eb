"""The RFC 9293 3.3.2 connection states.

``TcpState`` is a ``StrEnum``: a state compares equal to its RFC name
(``conn.state == "ESTABLISHED"``) and formats as it. A connection changes its
state only in ``TcpConnection._set_state``, which also raises the program's
event and the trace hooks.
"""

from __future__ import annotations

from enum import StrEnum


class TcpState(StrEnum):
    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN_SENT"
    SYN_RECEIVED = "SYN_RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN_WAIT_1"
    FIN_WAIT_2 = "FIN_WAIT_2"
    CLOSE_WAIT = "CLOSE_WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST_ACK"
    TIME_WAIT = "TIME_WAIT"


CLOSED = TcpState.CLOSED
LISTEN = TcpState.LISTEN
SYN_SENT = TcpState.SYN_SENT
SYN_RECEIVED = TcpState.SYN_RECEIVED
ESTABLISHED = TcpState.ESTABLISHED
FIN_WAIT_1 = TcpState.FIN_WAIT_1
FIN_WAIT_2 = TcpState.FIN_WAIT_2
CLOSE_WAIT = TcpState.CLOSE_WAIT
CLOSING = TcpState.CLOSING
LAST_ACK = TcpState.LAST_ACK
TIME_WAIT = TcpState.TIME_WAIT

#: States in which data (and our FIN) may be sent or retransmitted.
SENDING = frozenset({ESTABLISHED, CLOSE_WAIT, FIN_WAIT_1, CLOSING, LAST_ACK})
#: States in which the peer's data is accepted.
RECEIVING = frozenset({ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2})
#: States in which an abort sends a RST (Linux's tcp_need_reset).
RESET_ON_ABORT = frozenset({ESTABLISHED, CLOSE_WAIT, FIN_WAIT_1, FIN_WAIT_2, SYN_RECEIVED})
#: States in which send() queues data.
QUEUEING = frozenset({SYN_SENT, SYN_RECEIVED, ESTABLISHED, CLOSE_WAIT})
