"""IGMP host: version 3 (RFC 3376) by default, as Linux, with the v1 and v2
compatibility modes (RFC 3376 7.2.1) while an older querier is heard.

What it reports is each interface's filter state per group as ``Ipv4``
keeps it (``mcast.IfGroup``: several sockets, one membership; an any-source
join is EXCLUDE {}, a source-specific one INCLUDE {sources}), never
224.0.0.1 (RFC 3376 6). A change is a State-Change Report (RFC 3376 5.1:
TO_EX/TO_IN for a filter-mode change, so TO_EX {} on a join and TO_IN {} on a
leave; ALLOW/BLOCK for sources), sent at once and again Robustness Variable
- 1 times at random within the Unsolicited Report Interval (Linux: 1 s for
v3), computed each time from the state last reported to the state now (so
changes during the retransmissions merge); pending changes go out together
in one report. A query is answered after a random delay up to its Max Resp
Time (RFC 3376 5.2): a General Query with the current state of every group
(IS_EX or IS_IN), a Group-Specific one with that group's, a
Group-and-Source-Specific one with IS_IN of the sources asked that the state
lets in. A v1 or v2 query starts the Older Version Querier Present
timer (Robustness x Query Interval + Query Response Interval); in v2 mode
joins are v2 Reports to the group and leaves v2 Leaves to 224.0.0.2 (when
the last report was ours), in v1 mode v1 Reports and no leaves, and a
report from another host for a group cancels ours (RFC 2236 3). Every timer is one per interface or per group
joined, whatever the queries say: a query flood changes deadlines, never
grows state. Malformed messages are dropped and counted (``wire/igmp``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from femtotcp.core import rand
from femtotcp.stack.ipv4 import multicast_mac
from femtotcp.stack.mcast import NO_STATE, State
from femtotcp.wire import ethernet
from femtotcp.wire import igmp as wire

if TYPE_CHECKING:
    from femtotcp.core.timers import Timer
    from femtotcp.stack.interface import Interface
    from femtotcp.stack.stack import Stack
    from femtotcp.wire.ipv4 import Ipv4Header

ROBUSTNESS = 2                 # RFC 3376 8.1
QUERY_INTERVAL = 125.0         # 8.2
QUERY_RESPONSE_INTERVAL = 10.0  # 8.3
UNSOLICITED_V3 = 1.0           # Linux IGMP_V3_UNSOLICITED_REPORT_INTERVAL
UNSOLICITED_V2 = 10.0          # Linux IGMP_V2_UNSOLICITED_REPORT_INTERVAL (RFC 2236 8.10)
V1_MAX_RESPONSE = 10.0         # RFC 2236 4: a v1 query's Max Resp Time
#: The sources of pending Group-and-Source-Specific queries kept per group;
#: beyond, the answer is the group's whole state (IS_EX {}).
MAX_QUERY_SOURCES = 64
_ANY = b"\0\0\0\0"


class _Iface:
    """One interface's IGMP state."""

    __slots__ = ("v1_until", "v2_until", "changes", "change_timer", "general",
                 "queried", "retries", "reporter")

    def __init__(self) -> None:
        self.v1_until = float("-inf")
        self.v2_until = float("-inf")
        #: State changes still to report: group -> [the state before them,
        #: sends left, the state the last report told, that report's records].
        self.changes: dict[bytes, list[Any]] = {}
        self.change_timer: Timer | None = None
        #: The pending answer to a General Query.
        self.general: Timer | None = None
        #: Pending answers to group(-and-source)-specific queries: group ->
        #: (timer, sources asked; None: the whole group).
        self.queried: dict[bytes, tuple[Timer, set[bytes] | None]] = {}
        #: v1/v2 mode: unsolicited reports still to repeat, group -> timer.
        self.retries: dict[bytes, Timer] = {}
        #: v2 mode: the groups whose last report was ours (RFC 2236 3: only
        #: then is a Leave sent).
        self.reporter: set[bytes] = set()


class Igmp:
    def __init__(self, stack: Stack) -> None:
        ipv4 = stack.ipv4
        if ipv4 is None:
            raise RuntimeError("igmp needs the ipv4 module")
        self.stack = stack
        self.ipv4 = ipv4
        self.ifaces: dict[Interface, _Iface] = {}
        stack.ip_protocols[wire.PROTO] = self.input
        ipv4.on_group_change = self.changed

    def _state(self, iface: Interface) -> _Iface:
        st = self.ifaces.get(iface)
        if st is None:
            st = self.ifaces[iface] = _Iface()
        return st

    def version(self, iface: Interface) -> int:
        """The interface's Host Compatibility Mode (RFC 3376 7.2.1)."""
        st = self.ifaces.get(iface)
        now = self.stack.now
        if st is None:
            return 3
        if st.v1_until > now:
            return 1
        return 2 if st.v2_until > now else 3

    def groups(self, iface: Interface) -> list[bytes]:
        """The groups ``iface`` reports: its memberships but all-hosts, and but
        those in INCLUDE {} (a source-specific join without sources yet)."""
        return [g for g, entry in self.ipv4.joined.get(iface, {}).items()
                if g != wire.ALL_HOSTS and entry.state() != NO_STATE]

    def _member(self, iface: Interface, group: bytes) -> bool:
        return self.ipv4.state(iface, group) != NO_STATE

    # -- state changes ------------------------------------------------------------
    def changed(self, iface: Interface, group: bytes, old: State, new: State) -> None:
        """``Ipv4``'s hook: the interface's filter state for ``group`` went
        from ``old`` to ``new`` (``NO_STATE``: not a member, INCLUDE {})."""
        if group == wire.ALL_HOSTS:
            return
        st = self._state(iface)
        version = self.version(iface)
        if new == NO_STATE:
            reported = group in st.reporter
            st.reporter.discard(group)
            pending = st.queried.pop(group, None)
            if pending is not None:
                pending[0].cancel()
            retry = st.retries.pop(group, None)
            if retry is not None:
                retry.cancel()
        if version == 3:
            pending_change = st.changes.get(group)
            if pending_change is None:
                st.changes[group] = [old, ROBUSTNESS, old, []]
            else:
                pending_change[1] = ROBUSTNESS
            self._send_changes(iface, st)
            return
        # v1/v2 (RFC 3376 7.3.2): source lists are ignored; INCLUDE {} is no member.
        if new != NO_STATE and old == NO_STATE:
            self._send_v12(iface, version, group)
            self._retry_v12(iface, st, group)
        elif new == NO_STATE and old != NO_STATE and version == 2 and reported:
            self._send(iface, wire.ALL_ROUTERS, wire.build_v2(wire.V2_LEAVE, group))
            self.stack.counters["igmp.tx_leave"] += 1

    def _send_changes(self, iface: Interface, st: _Iface) -> None:
        """One report of every pending change (each from the state last
        reported to the state now); then the next retransmission."""
        st.change_timer = None
        records: list[wire.GroupRecord] = []
        for g, entry in list(st.changes.items()):
            now_state = self.ipv4.state(iface, g)
            # A retransmission repeats the last records; a change since, new ones.
            recs = entry[3] if now_state == entry[2] else change_records(
                g, entry[0], entry[2], now_state)
            records += recs
            entry[1] -= 1
            entry[2], entry[3] = now_state, recs
            if entry[1] <= 0 or not recs:
                del st.changes[g]
        self._report(iface, records)
        if st.changes:
            st.change_timer = self.stack.timers.call_later(
                rand.delay(UNSOLICITED_V3), lambda: self._send_changes(iface, st))

    def _retry_v12(self, iface: Interface, st: _Iface, group: bytes) -> None:
        """RFC 2236 3: the unsolicited report repeated once, within the
        Unsolicited Report Interval."""
        old = st.retries.pop(group, None)
        if old is not None:
            old.cancel()

        def again() -> None:
            st.retries.pop(group, None)
            version = self.version(iface)
            if version != 3 and self._member(iface, group):
                self._send_v12(iface, version, group)

        st.retries[group] = self.stack.timers.call_later(rand.delay(UNSOLICITED_V2), again)

    # -- output -------------------------------------------------------------------
    def _send(self, iface: Interface, dst: bytes, message: bytes) -> None:
        src = iface.primary_ipv4() or _ANY      # RFC 3376 4.2.13: 0.0.0.0 before one
        packet = wire.packet(src, dst, message, self.ipv4._next_ident(dst, wire.PROTO))
        self.stack.send_frame(iface, multicast_mac(dst), ethernet.ETH_IPV4, packet)

    def _send_v12(self, iface: Interface, version: int, group: bytes) -> None:
        kind = wire.V1_REPORT if version == 1 else wire.V2_REPORT
        self._send(iface, group, wire.build_v2(kind, group))
        self._state(iface).reporter.add(group)
        self.stack.counters["igmp.tx_report"] += 1

    def _report(self, iface: Interface, records: list[wire.GroupRecord]) -> None:
        """v3 Reports to 224.0.0.22 holding ``records``, as many as the MTU
        needs (RFC 3376 4.2.16)."""
        room = iface.mtu - 24 - 8          # IPv4 header with Router Alert, report header
        batch: list[wire.GroupRecord] = []
        size = 0
        for rec in records:
            n = 8 + 4 * len(rec.sources)
            if batch and size + n > room:
                self._send(iface, wire.ALL_V3_ROUTERS, wire.build_v3_report(batch))
                self.stack.counters["igmp.tx_report"] += 1
                batch, size = [], 0
            batch.append(rec)
            size += n
        if batch:
            self._send(iface, wire.ALL_V3_ROUTERS, wire.build_v3_report(batch))
            self.stack.counters["igmp.tx_report"] += 1

    # -- input --------------------------------------------------------------------
    def input(self, header: Ipv4Header, data: memoryview, iface: Interface,
              packet: memoryview, csum_ok: bool = False) -> None:
        msg = wire.parse(data)          # Malformed: the stack counts its reason
        counters = self.stack.counters
        counters["igmp.rx"] += 1
        if isinstance(msg, wire.IgmpQuery):
            self._query(iface, msg, header.dst)
        elif isinstance(msg, wire.IgmpReport) and msg.type != wire.V2_LEAVE:
            # RFC 2236 3 (v1/v2 modes): another member reported: ours is not
            # needed, and the last report is not ours (no Leave from us).
            st = self.ifaces.get(iface)
            if st is not None and self.version(iface) != 3:
                st.reporter.discard(msg.group)
                pending = st.queried.pop(msg.group, None)
                retry = st.retries.pop(msg.group, None)
                for timer in (pending[0] if pending else None, retry):
                    if timer is not None:
                        timer.cancel()
                if pending is not None or retry is not None:
                    counters["igmp.report_suppressed"] += 1
                    return
            counters["igmp.report_ignored"] += 1
        else:
            counters["igmp.report_ignored"] += 1

    def _query(self, iface: Interface, q: wire.IgmpQuery, dst: bytes) -> None:
        counters = self.stack.counters
        general = q.group == _ANY
        if general and dst != wire.ALL_HOSTS or not general and dst != q.group:
            # RFC 3376 4.1.12: General Queries go to 224.0.0.1, the others to the group.
            counters["igmp.query_bad_destination"] += 1
            return
        if not general and not 224 <= q.group[0] <= 239:
            counters["igmp.query_bad_group"] += 1
            return
        counters["igmp.query"] += 1
        st = self._state(iface)
        now = self.stack.now
        if q.version != 3:
            # RFC 3376 7.2.1: an older querier; its timeout is 8.12's.
            until = now + ROBUSTNESS * QUERY_INTERVAL + QUERY_RESPONSE_INTERVAL
            if q.version == 1:
                st.v1_until = until
            else:
                st.v2_until = until
            if st.changes:           # (v3 state-change retransmissions end)
                st.changes.clear()
            if st.change_timer is not None:
                st.change_timer.cancel()
                st.change_timer = None
        if q.version == 1:
            limit = V1_MAX_RESPONSE
        else:
            limit = max(q.max_response, 1) / 10
        if self.version(iface) != 3:
            self._query_v12(iface, st, q, limit)
            return
        delay = rand.delay(limit)
        general_due = st.general.when if st.general is not None else None
        if general:
            # RFC 3376 5.2 rules 1-2: an earlier pending general answer stands.
            if general_due is not None and general_due <= now + delay:
                return
            if st.general is not None:
                st.general.cancel()
            st.general = self.stack.timers.call_later(delay, lambda: self._answer_general(iface))
            return
        group = q.group
        if not self._member(iface, group):
            return                     # not ours: nothing to answer
        if general_due is not None and general_due <= now + delay:
            return                     # rule 1: the general answer covers it
        old = st.queried.pop(group, None)
        sources: set[bytes] | None = set(q.sources) if q.sources else None
        if old is not None:
            old[0].cancel()
            delay = min(delay, max(0.0, old[0].when - now))
            # Rule 4/5: a group query wins over source lists; lists merge.
            sources = None if sources is None or old[1] is None else old[1] | sources
        if sources is not None and len(sources) > MAX_QUERY_SOURCES:
            sources = None
        st.queried[group] = (self.stack.timers.call_later(
            delay, lambda: self._answer_group(iface, group)), sources)

    def _query_v12(self, iface: Interface, st: _Iface, q: wire.IgmpQuery,
                   limit: float) -> None:
        """RFC 2236 3: each group queried gets a report after a random delay,
        unless one is pending sooner."""
        now = self.stack.now
        groups = self.groups(iface) if q.group == _ANY else (
            [q.group] if self._member(iface, q.group) else [])
        for group in groups:
            delay = rand.delay(limit)
            old = st.queried.get(group)
            if old is not None and old[0].when <= now + delay:
                continue
            if old is not None:
                old[0].cancel()

            def answer(group: bytes = group) -> None:
                st.queried.pop(group, None)
                version = self.version(iface)
                if version != 3 and self._member(iface, group):
                    self._send_v12(iface, version, group)

            st.queried[group] = (self.stack.timers.call_later(delay, answer), None)

    def _answer_general(self, iface: Interface) -> None:
        st = self._state(iface)
        st.general = None
        self._report(iface, [current_record(g, self.ipv4.state(iface, g))
                             for g in self.groups(iface)])

    def _answer_group(self, iface: Interface, group: bytes) -> None:
        st = self._state(iface)
        pending = st.queried.pop(group, None)
        state = self.ipv4.state(iface, group)
        if pending is None or state == NO_STATE:
            return
        asked = pending[1]
        if asked is None:
            self._report(iface, [current_record(group, state)])
            return
        # RFC 3376 5.2: the sources asked that the state lets in, as IS_IN.
        include, sources = state
        wanted = asked & sources if include else asked - sources
        if wanted:
            self._report(iface, [wire.GroupRecord(wire.MODE_IS_INCLUDE, group,
                                                  tuple(sorted(wanted)))])


def current_record(group: bytes, state: State) -> wire.GroupRecord:
    """The Current-State Record of a group (RFC 3376 4.2.12)."""
    include, sources = state
    return wire.GroupRecord(wire.MODE_IS_INCLUDE if include else wire.MODE_IS_EXCLUDE, group,
                            tuple(sorted(sources)))


def change_records(group: bytes, base: State, told: State, new: State
                   ) -> list[wire.GroupRecord]:
    """The State-Change Records that bring a router that last heard ``base``
    (the state before these changes) or ``told`` (what our latest report
    said) to ``new`` (RFC 3376 5.1, with 5.1's merging of changes made while
    retransmitting): TO_EX(new) or TO_IN(new) when either differs from it in
    filter mode; else ALLOW of the sources it lets in now, BLOCK of those
    it no longer does (none when nothing changed)."""
    new_in, b = new
    if base[0] != new_in or told[0] != new_in:
        kind = wire.CHANGE_TO_INCLUDE if new_in else wire.CHANGE_TO_EXCLUDE
        return [wire.GroupRecord(kind, group, tuple(sorted(b)))]
    a1, a2 = base[1], told[1]
    gained, lost = (b - a1) | (b - a2), (a1 - b) | (a2 - b)
    allow, block = (gained, lost) if new_in else (lost, gained)
    out = []
    if allow:
        out.append(wire.GroupRecord(wire.ALLOW_NEW_SOURCES, group, tuple(sorted(allow))))
    if block:
        out.append(wire.GroupRecord(wire.BLOCK_OLD_SOURCES, group, tuple(sorted(block))))
    return out


def install(stack: Stack) -> Igmp:
    return Igmp(stack)
