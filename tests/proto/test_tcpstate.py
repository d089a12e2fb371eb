"""proto/tcpstate.py: RFC 9293 3.3.2 state names for ctl and the socket API."""

from __future__ import annotations

import enum

from femtotcp.proto.tcpstate import state_name


class _State(enum.Enum):
    SYN_RECEIVED = 3
    TIME_WAIT = 10


def test_names_are_written_with_hyphens_whatever_the_state_type() -> None:
    assert state_name("SYN_RECEIVED") == "SYN-RECEIVED"
    assert state_name("time_wait") == "TIME-WAIT"
    assert state_name("ESTABLISHED") == "ESTABLISHED"
    assert state_name(_State.SYN_RECEIVED) == "SYN-RECEIVED"
    assert state_name(_State.TIME_WAIT) == "TIME-WAIT"
    assert state_name(None) == "UNKNOWN"
