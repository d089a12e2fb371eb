"""The NAT flow table, sans-I/O: guest endpoints, states, byte counts, limits, idle expiry.

A flow is one guest conversation the gateway carries on a host socket:

- TCP: keyed by the guest's (address, port) and the remote (address, port);
  states ``connecting`` (host connect running, the guest's SYN held),
  ``established``, ``closing`` (a FIN seen on either side), ``closed``.
- UDP: keyed by the guest's (address, port) only: one host socket per guest
  endpoint whatever the remote (endpoint-independent mapping, RFC 4787 4.1,
  REQ-1), so replies from any remote come back (endpoint-independent
  filtering, as slirp and pasta).
- ICMP echo: keyed by the guest's address and echo identifier.

Idle timeouts follow the NAT behaviour RFCs: an established TCP flow lives
at least 2 h 4 min idle (RFC 5382 REQ-5), a transitory one (connecting or
closing) 4 min; a UDP flow at least 2 min (RFC 4787 REQ-5); ICMP echo 60 s
(RFC 5508 REQ-1). Time is always passed in (the stack's clock).

The table enforces ``max_flows``: ``open`` returns None and counts
``nat.flow_limit`` instead of growing. ``expire(now)`` removes and returns the
flows whose idle time passed; ``next_expiry()`` says when to call it next.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from femtotcp.wire import ip_str

TCP = "tcp"
UDP = "udp"
ICMP = "icmp"

CONNECTING = "connecting"
ESTABLISHED = "established"
CLOSING = "closing"
CLOSED = "closed"
#: UDP and ICMP flows are "active" from the first datagram on.
ACTIVE = "active"

Endpoint = tuple[bytes, int]
FlowKey = tuple[str, bytes, int, bytes, int]

#: Counter names by protocol (literal, so each can be declared once).
_OPENED = {TCP: "nat.tcp_flows_opened", UDP: "nat.udp_flows_opened",
           ICMP: "nat.icmp_flows_opened"}
_CLOSED = {TCP: "nat.tcp_flows_closed", UDP: "nat.udp_flows_closed",
           ICMP: "nat.icmp_flows_closed"}
_EXPIRED = {TCP: "nat.tcp_idle_expired", UDP: "nat.udp_idle_expired",
            ICMP: "nat.icmp_idle_expired"}


@dataclass(slots=True)
class Limits:
    """Bounds of the NAT (all per gateway, except the per-flow buffer)."""

    max_flows: int = 4096
    #: Bytes a TCP flow holds in each direction between the two sockets.
    flow_buffer: int = 1024 * 1024
    tcp_established_timeout: float = 7440.0      # RFC 5382 REQ-5: >= 2 h 4 min
    tcp_transitory_timeout: float = 240.0        # RFC 5382 REQ-5: 4 min
    tcp_connect_timeout: float = 20.0            # host connect; then RST to the guest
    udp_timeout: float = 120.0                   # RFC 4787 REQ-5: >= 2 min
    icmp_timeout: float = 60.0                   # RFC 5508 REQ-1

    def validate(self) -> None:
        if self.max_flows < 1:
            raise ValueError(f"max_flows must be >= 1, got {self.max_flows}")
        if self.flow_buffer < 1024:
            raise ValueError(f"flow_buffer must be >= 1024 bytes, got {self.flow_buffer}")
        for name in ("tcp_established_timeout", "tcp_transitory_timeout",
                     "tcp_connect_timeout", "udp_timeout", "icmp_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")


@dataclass(slots=True, eq=False)
class Flow:
    proto: str
    guest: Endpoint
    remote: Endpoint            # UDP: the first remote (informational only)
    key: FlowKey
    state: str
    created: float
    last_active: float
    bytes_out: int = 0          # guest -> host
    bytes_in: int = 0           # host -> guest
    packets_out: int = 0
    packets_in: int = 0
    #: The host-socket side's object for this flow (set by the gateway).
    handle: Any = field(default=None, repr=False)

    def describe(self, now: float) -> dict[str, Any]:
        """One row of ``ctl flows``."""
        return {"proto": self.proto,
                "guest": endpoint_str(self.guest),
                "remote": endpoint_str(self.remote),
                "state": self.state, "bytes_out": self.bytes_out, "bytes_in": self.bytes_in,
                "idle": round(now - self.last_active, 3)}


def endpoint_str(ep: Endpoint) -> str:
    """``192.0.2.15:80``, ``[2001:db8::1]:80``."""
    addr = ip_str(ep[0])
    return f"[{addr}]:{ep[1]}" if len(ep[0]) == 16 else f"{addr}:{ep[1]}"


def flow_key(proto: str, guest: Endpoint, remote: Endpoint) -> FlowKey:
    """TCP is keyed by both ends; UDP and ICMP by the guest end only (RFC 4787)."""
    if proto == TCP:
        return (proto, guest[0], guest[1], remote[0], remote[1])
    return (proto, guest[0], guest[1], b"", 0)


class FlowTable:
    def __init__(self, limits: Limits | None = None,
                 counters: MutableMapping[str, int] | None = None) -> None:
        self.limits = limits or Limits()
        self.limits.validate()
        #: The stack's counters (any mapping of name -> count; a private one by default).
        self.counters: MutableMapping[str, int] = (
            counters if counters is not None else defaultdict(int))
        self.flows: dict[FlowKey, Flow] = {}

    def __len__(self) -> int:
        return len(self.flows)

    def __iter__(self) -> Iterator[Flow]:
        return iter(list(self.flows.values()))

    def get(self, proto: str, guest: Endpoint, remote: Endpoint) -> Flow | None:
        return self.flows.get(flow_key(proto, guest, remote))

    def open(self, proto: str, guest: Endpoint, remote: Endpoint, now: float) -> Flow | None:
        """A new flow, or None when the table is full (counted ``nat.flow_limit``)
        or the flow exists already (the caller looks it up first)."""
        key = flow_key(proto, guest, remote)
        if key in self.flows:
            return None
        if len(self.flows) >= self.limits.max_flows:
            self.counters["nat.flow_limit"] += 1
            return None
        state = CONNECTING if proto == TCP else ACTIVE
        flow = Flow(proto, guest, remote, key, state, now, now)
        self.flows[key] = flow
        self.counters[_OPENED[proto]] += 1
        self.counters["nat.flows"] = len(self.flows)
        return flow

    def set_state(self, flow: Flow, state: str, now: float) -> None:
        flow.state = state
        flow.last_active = now

    def outbound(self, flow: Flow, nbytes: int, now: float) -> None:
        """Guest -> host traffic on ``flow``."""
        flow.bytes_out += nbytes
        flow.packets_out += 1
        flow.last_active = now
        self.counters["nat.bytes_out"] += nbytes

    def inbound(self, flow: Flow, nbytes: int, now: float) -> None:
        """Host -> guest traffic on ``flow``."""
        flow.bytes_in += nbytes
        flow.packets_in += 1
        flow.last_active = now
        self.counters["nat.bytes_in"] += nbytes

    def remove(self, flow: Flow) -> None:
        if self.flows.get(flow.key) is flow:
            del self.flows[flow.key]
            flow.state = CLOSED
            self.counters[_CLOSED[flow.proto]] += 1
            self.counters["nat.flows"] = len(self.flows)

    def timeout(self, flow: Flow) -> float:
        """How long ``flow`` may stay idle in its state."""
        lim = self.limits
        if flow.proto == TCP:
            if flow.state == CONNECTING:
                return lim.tcp_connect_timeout
            if flow.state == ESTABLISHED:
                return lim.tcp_established_timeout
            return lim.tcp_transitory_timeout
        if flow.proto == UDP:
            return lim.udp_timeout
        return lim.icmp_timeout

    def deadline(self, flow: Flow) -> float:
        return flow.last_active + self.timeout(flow)

    def next_expiry(self) -> float | None:
        """The earliest time a flow may expire (None with no flows)."""
        if not self.flows:
            return None
        return min(self.deadline(f) for f in self.flows.values())

    def expire(self, now: float) -> list[Flow]:
        """Remove and return the flows idle past their timeout (counted by protocol)."""
        gone = [f for f in self.flows.values() if now >= self.deadline(f)]
        for f in gone:
            if f.state == CONNECTING:
                self.counters["nat.tcp_connect_timeout"] += 1
            else:
                self.counters[_EXPIRED[f.proto]] += 1
            self.remove(f)
        return gone
