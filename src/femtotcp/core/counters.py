"""Named counters, each declared once with its kind, in one registry.

Every drop has a reason and every reason a counter: ``counters["ipv4.bad_checksum"]
+= 1``. A name must be declared here (``declare``) with its kind: ``DROP`` (input
thrown away, or output refused), ``EVENT`` (something that happened) or
``GAUGE`` (an occupancy now). ``ctl stats`` groups the drops by that kind, not
by guessing from the name. Using an undeclared name is a programming error:
with ``Counters.strict`` (the test suite sets it) it raises
``UndeclaredCounter``, which no receive path catches; otherwise it is counted
like any other (a running stack never fails over a counter's name).

Families of names built at run time (``icmp4.tx_error_<type>_<code>``) are
declared by prefix (``declare_family``).
"""

from __future__ import annotations

from collections import defaultdict
from enum import Enum
from typing import ClassVar


class Kind(Enum):
    DROP = "drop"
    EVENT = "event"
    GAUGE = "gauge"


DROP = Kind.DROP
EVENT = Kind.EVENT
GAUGE = Kind.GAUGE

_DECLARED: dict[str, Kind] = {}
_FAMILIES: dict[str, Kind] = {}


class UndeclaredCounter(BaseException):
    """A counter name nobody declared (a typo): a BaseException so that no
    ``except Exception`` on the receive path can hide it from a test."""


def declare(kind: Kind, names: str) -> None:
    """Declare the whitespace-separated ``names`` as counters of ``kind``."""
    for name in names.split():
        old = _DECLARED.get(name)
        if old is not None and old is not kind:
            raise ValueError(f"counter {name} declared as {old.value} and {kind.value}")
        _DECLARED[name] = kind


def declare_family(kind: Kind, prefix: str) -> None:
    """Declare every name that starts with ``prefix`` (names built at run time)."""
    _FAMILIES[prefix] = kind


def kind_of(name: str) -> Kind | None:
    """The declared kind of ``name``, or None when it was never declared."""
    kind = _DECLARED.get(name)
    if kind is None:
        for prefix, k in _FAMILIES.items():
            if name.startswith(prefix):
                return k
    return kind


def declared() -> dict[str, Kind]:
    """Every name declared one by one (families not included)."""
    return dict(_DECLARED)


class Counters(defaultdict[str, int]):
    """``counters["ipv4.bad_checksum"] += 1``; a declared name not yet counted reads 0."""

    #: Raise ``UndeclaredCounter`` for an undeclared name (tests set this).
    strict: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__(int)

    def __missing__(self, name: str) -> int:
        if kind_of(name) is None and self.strict:
            raise UndeclaredCounter(name)
        self[name] = 0
        return 0

    def drop(self, reason: str) -> None:
        """Count one dropped input under ``reason`` (a ``Malformed`` reason)."""
        self[reason] += 1

    def snapshot(self) -> dict[str, int]:
        return dict(sorted(self.items()))

    def drops(self) -> dict[str, int]:
        """The non-zero counters declared as ``DROP``."""
        return {k: v for k, v in sorted(self.items()) if v and kind_of(k) is DROP}


# -- the declarations, by module -----------------------------------------------------
# arp
declare(DROP, """
    arp.acd_conflict arp.address_conflict arp.bad_htype arp.bad_length
    arp.bad_opcode arp.bad_ptype arp.bad_sender_ip arp.bad_sender_mac arp.cache_full
    arp.not_for_us arp.own_frame arp.pending_dropped arp.pending_overflow
    arp.resolution_failed arp.sender_mismatch arp.truncated
""")
declare(EVENT, """
    arp.gratuitous_update arp.probe_seen arp.rx arp.tx_reply arp.tx_request
""")
# devices (phy/; "in."/"out." are the fault injector's)
declare(DROP, """
    rx_bad_file rx_detached rx_error rx_no_receiver rx_oversize rx_vnet_bad_csum
    rx_vnet_bad_gso rx_vnet_bad_gso_size rx_vnet_truncated tx_again tx_closed
    tx_detached tx_error tx_invalid tx_link_down tx_nobufs tx_offload_unsupported
    tx_too_big in.lost out.lost
""")
declare(EVENT, """
    rx_csum_trusted rx_empty rx_frames rx_gro_off rx_gso_frames tx_frames tx_gso_frames tx_gso_segments
    tx_offload_disabled rx_shed_engaged rx_shed_changes rx_shed_failed in.corrupt_skipped in.corrupted in.delayed in.duplicated
    in.hold_expired in.reordered out.corrupt_skipped out.corrupted out.delayed
    out.duplicated out.hold_expired out.reordered
""")
declare(GAUGE, """
    rx_shed_keep_permille rx_shed_opt_permille rx_shed_plain_permille
""")
# dhcp
declare(DROP, """
    dhcp.bad_chaddr dhcp.bad_cookie dhcp.bad_domain_search dhcp.bad_hlen
    dhcp.bad_message_type dhcp.bad_message_type_for_state dhcp.bad_op
    dhcp.bad_option_length dhcp.bad_overload dhcp.bad_router dhcp.bad_server_id
    dhcp.bad_source_port dhcp.bad_subnet_mask dhcp.bad_xid dhcp.bad_yiaddr
    dhcp.no_lease_time dhcp.no_message_type dhcp.no_server_id dhcp.request_timeout
    dhcp.timers_ignored dhcp.truncated
""")
declare(EVENT, """
    dhcp.bound dhcp.declined dhcp.expired dhcp.nak dhcp.released dhcp.rx
    dhcp.tx_error
""")
# dhcpd
declare(DROP, """
    dhcpd.bad_message_type dhcpd.bad_request dhcpd.lease_table_full
    dhcpd.unknown_client dhcpd.unsupported_relay
""")
declare(EVENT, """
    dhcpd.declined dhcpd.pool_exhausted dhcpd.released
""")
# dns
declare(DROP, """
    dns.bad_count dns.bad_label_type dns.bad_name_length dns.bad_opcode
    dns.bad_pointer dns.bad_qr dns.bad_question dns.bad_rcode dns.bad_rdlength
    dns.bad_source dns.bad_txid dns.too_many_pointers dns.drop_too_many_lookups dns.no_port
    dns.rx_truncated dns.tcp_failed dns.tcp_timeout dns.timeout dns.truncated
    dns.truncated_name
""")
declare(EVENT, """
    dns.cache_hit dns.cname_loop dns.lookups dns.nxdomain dns.rx dns.search_found
    dns.tcp_fallback dns.tcp_short_reply dns.tx_error dns.tx_query
""")
# dnsd
declare(DROP, """
    dnsd.bad_query dnsd.tcp_too_many dnsd.truncated
""")
declare(EVENT, """
    dnsd.not_unicast
""")
# echo
declare(DROP, """
    echo.group_ignored
""")
declare(EVENT, """
    echo.loop_refused
""")
# eth
declare(DROP, """
    eth.8023_length_frame eth.not_for_us eth.oversize eth.own_source eth.runt
    eth.unknown_ethertype eth.untagged_on_vlan eth.vlan_not_configured
""")
# gro (stack/gro.py: software GRO over a device's read batch)
declare(EVENT, """
    gro.merged_frames gro.merged_segments
""")
# icmp4
declare(DROP, """
    icmp4.bad_checksum icmp4.echo_queue_full icmp4.echo_reply_unmatched
    icmp4.echo_to_group_ignored icmp4.error_bad_inner icmp4.error_not_ours
    icmp4.error_rate_limited icmp4.error_suppressed_fragment
    icmp4.error_suppressed_group icmp4.error_suppressed_icmp
    icmp4.error_suppressed_source icmp4.error_truncated icmp4.ignored_type
    icmp4.options_not_echoable icmp4.timestamp_to_group_ignored icmp4.timestamp_truncated icmp4.truncated
    icmp4.unsupported_type
""")
declare(EVENT, """
    icmp4.echo_replied icmp4.error_about_fragment icmp4.error_received icmp4.rx
    icmp4.timestamp_replied
""")
# ip
declare(DROP, """
    ip.bad_version ip.loopback_queue_full ip.no_ipv4_module
""")
declare(EVENT, """
    ip.empty
""")
# ipv4
declare(DROP, """
    ipv4.bad_checksum ipv4.bad_ihl ipv4.bad_option_length ipv4.bad_option_pointer
    ipv4.bad_source ipv4.bad_total_length ipv4.bad_version ipv4.duplicate_option
    ipv4.frag_after_overlap
    ipv4.frag_bad_length ipv4.frag_duplicate ipv4.frag_inconsistent_length
    ipv4.frag_overlap ipv4.frag_too_big ipv4.land ipv4.martian_destination
    ipv4.martian_source ipv4.multicast_not_joined ipv4.no_arp_module ipv4.no_route
    ipv4.not_for_us ipv4.reasm_memory_full ipv4.reasm_table_full ipv4.reasm_timeout
    ipv4.reasm_too_many_fragments ipv4.source_route ipv4.truncated ipv4.tx_martian
    ipv4.tx_too_big ipv4.unicast_in_l2_broadcast ipv4.unknown_protocol
    ipv4.zero_source
""")
declare(EVENT, """
    ipv4.pmtu_lowered ipv4.reassembled ipv4.rx ipv4.tx ipv4.tx_fragments
    ipv4.tx_loopback ipv4.tx_loopback_source ipv4.tx_needs_fragmentation ipv4.tx_tso
""")
# stack
declare(EVENT, """
    stack.internal_error
""")
# tcp
declare(DROP, """
    tcp.bad_checksum tcp.bad_offset tcp.bad_option_length tcp.bad_option_mss
    tcp.bad_option_wscale tcp.data_after_close tcp.data_after_shutdown tcp.data_ignored
    tcp.fin_wait_2_timeout tcp.handshake_timeout tcp.icmp_no_connection
    tcp.icmp_truncated tcp.keepalive_timeout tcp.listen_bad_ack tcp.listen_no_syn
    tcp.listen_overflow tcp.no_ack_flag tcp.no_connection tcp.no_socket
    tcp.ooo_dropped tcp.ooo_pruned tcp.persist_timeout_abort tcp.retransmit_timeout_abort
    tcp.sack_invalid tcp.syn_data_dropped tcp.syn_fin_dropped tcp.syn_queue_overflow
    tcp.syn_received_bad_ack tcp.syn_sent_bad_ack tcp.syncookies_failed
    tcp.time_wait_overflow tcp.truncated
""")
declare(EVENT, """
    tcp.ack_too_old tcp.ack_unsent_data tcp.active_opens tcp.challenge_ack
    tcp.challenge_ack_limited tcp.close_with_rst tcp.connection_refused
    tcp.data_beyond_window tcp.data_discarded_shut_rd tcp.delayed_acks tcp.dupack
    tcp.established tcp.fast_retransmit tcp.icmp_errors tcp.icmp_out_of_window
    tcp.keepalive_probes tcp.listens tcp.not_unicast tcp.old_segment
    tcp.ooo_segments tcp.oow_ack_ratelimited tcp.out_of_window tcp.passive_opens
    tcp.paws_rejected tcp.pmtu_reduced tcp.rcvbuf_grow_limited tcp.rcvbuf_grown
    tcp.recovery_done tcp.reset_received
    tcp.retransmitted_segments tcp.rst_challenged tcp.rst_out_of_window
    tcp.rst_ratelimited tcp.rst_sent tcp.rto_expired tcp.simultaneous_open
    tcp.sws_override tcp.syn_challenged tcp.syn_received_reset
    tcp.syn_retransmit_seen tcp.syn_retransmits tcp.syncookies_accepted
    tcp.syncookies_sent tcp.time_wait_done tcp.time_wait_reset tcp.time_wait_reused
    tcp.tso_sent tcp.tx_error tcp.urgent tcp.urgent_marks tcp.urgent_sent tcp.window_probes tcp.window_update
""")
declare(GAUGE, """
    tcp.accept_queue tcp.ooo_held_bytes tcp.ooo_held_segments tcp.rcvbuf_autotuned
    tcp.syn_queue
""")
# tcp: the early path for SYN floods (proto/tcp/synguard.py)
declare(EVENT, """
    tcp.early_rst tcp.early_syn
""")
# udp
declare(DROP, """
    udp.bad_checksum udp.bad_length udp.no_port udp.not_from_peer udp.rcvbuf_full
    udp.truncated udp.zero_checksum_ipv6
""")
declare(EVENT, """
    udp.icmp_error_soft udp.icmp_error_unconnected udp.icmp_error_no_port udp.rx udp.tx
""")
declare(EVENT, """
    icmp6.error_no_transport icmp6.too_big_not_ours udp.no_port6 ipv6.tx_tso
""")

# ipv6, icmp6, ndp, mld: wire-format reasons (the stack integration adds its own)
declare(DROP, """
    ipv6.bad_fragment_length ipv6.fragment_too_big ipv6.hbh_not_first
    ipv6.incomplete_chain ipv6.rh0 ipv6.unknown_option ipv6.unknown_routing_type
    ipv6.jumbo_option ipv6.bad_jumbo_option
    icmp6.bad_checksum icmp6.bad_quote icmp6.truncated ipv6.bad_multicast_scope
    ipv6.bad_option_length ipv6.bad_padding ipv6.bad_quote_version
    ipv6.bad_router_alert ipv6.bad_version ipv6.ext_chain_too_long
    ipv6.ext_truncated ipv6.jumbogram ipv6.loopback_address ipv6.multicast_source
    ipv6.too_many_ext_headers ipv6.too_many_options ipv6.truncated
    ipv6.truncated_quote ipv6.unspecified_destination ipv6.v4_mapped_address
    mld.bad_hop_limit mld.bad_query_length mld.bad_record_count mld.bad_source
    mld.bad_source_count mld.no_router_alert mld.not_mld mld.truncated ndp.bad_code
    ndp.bad_dnssl_option ndp.bad_hop_limit ndp.bad_lladdr_option ndp.bad_mtu_option
    ndp.bad_option_length ndp.bad_prefix_length ndp.bad_prefix_option
    ndp.bad_rdnss_option ndp.dad_bad_destination ndp.multicast_target ndp.not_nd
    ndp.ra_source_not_link_local ndp.redirect_bad_target
    ndp.redirect_multicast_destination ndp.redirect_source_not_link_local
    ndp.slla_from_unspecified ndp.solicited_to_multicast ndp.truncated
""")

# ipv6, ndp, mld, icmp6: the stack's own (stack/ipv6.py, stack/ndp.py, proto/icmp6.py)
declare(DROP, """
    ipv6.land ipv6.multicast_not_joined ipv6.not_for_us ipv6.unknown_next_header
    ipv6.nested_fragment ipv6.tx_martian ipv6.tx_too_big ipv6.no_route ipv6.no_source
    ipv6.tx_needs_fragmentation ipv6.frag_too_big ipv6.frag_bad_length
    ipv6.reasm_table_full ipv6.frag_after_overlap ipv6.reasm_memory_full
    ipv6.reasm_too_many_fragments ipv6.frag_inconsistent_length ipv6.frag_overlap
    ipv6.reasm_timeout ipv6.frag_duplicate icmp6.module_not_loaded
    ndp.no_source ndp.cache_full ndp.pending_overflow ndp.resolution_failed
    ndp.probe_failed ndp.pending_dropped ndp.ns_not_for_us ndp.ns_for_tentative
    ndp.dad_conflict ndp.na_unsolicited ndp.na_no_tlla ndp.na_for_our_address
    ndp.ra_ignored ndp.ra_bad_mtu ndp.router_list_full ndp.prefix_link_local
    ndp.prefix_bad_lifetimes ndp.prefix_list_full ndp.slaac_bad_prefix_length
    ndp.redirect_not_from_router ndp.redirect_table_full ndp.rs_ignored
    icmp6.echo_queue_full icmp6.echo_no_source icmp6.echo_reply_unmatched
    icmp6.unsupported_type icmp6.error_not_ours icmp6.error_suppressed
    icmp6.error_suppressed_icmp icmp6.error_rate_limited icmp6.error_no_source
    mld.report_ignored ipv6.no_next_header ipv6.tx_bad_source ndp.prefix_multicast
    ndp.slaac_bad_address ndp.temporary_limit
    ipv6.tcp_from_unspecified ipv6.tcp_link_multicast icmp6.echo_from_unspecified
    ndp.fragmented
""")
declare(EVENT, """
    ipv6.rx ipv6.tx ipv6.tx_loopback ipv6.tx_fragments ipv6.rh0_ignored
    ipv6.atomic_fragment ipv6.reassembled ipv6.address_expired ipv6.pmtu_lowered
    icmp6.rx icmp6.echo_replied icmp6.error_received mld.tx_report mld.query
    mld.v1_query mld.tx_v1_report mld.tx_v1_done mld.v1_report_suppressed mld.report_heard
    ndp.tx_ns ndp.tx_na ndp.tx_dad ndp.tx_rs ndp.rx_ns ndp.rx_na ndp.rx_ra
    ndp.rx_redirect ndp.dad_looped ndp.dad_defended ndp.na_not_override
    ndp.router_expired ndp.slaac_address ndp.redirect_accepted ndp.temporary_address
""")

declare_family(EVENT, "icmp6.tx_error_")     # icmp6.tx_error_<type>_<code>
# gateway (gateway/counters.py keeps the list its code uses)
declare(DROP, """
    nat.flow_limit nat.host_loopback_denied nat.tcp_no_flow nat.tcp_refused
    nat.tcp_unreachable nat.tcp_connect_failed nat.tcp_connect_timeout
    nat.tcp_socket_failed nat.udp_socket_failed nat.ping_socket_failed nat.host_busy
    nat.host_send_error nat.host_recv_error nat.forward_accept_error
    nat.forward_connect_failed nat.udp_forward_error gwdns.bad_reply gwdns.malformed
    gwdns.no_upstream gwdns.not_a_query gwdns.refused_busy gwdns.timeout
    gwdns.upstream_error rx_bad_length tx_dropped_full tx_no_peer tx_not_connected
    accept_error gwra.no_link_local switch.bad_source switch.runt switch.same_port
    switch.guest_limit switch.unnamed_peer
""")
declare(EVENT, """
    nat.bytes_in nat.bytes_out nat.tcp_flows_opened nat.tcp_flows_closed
    nat.udp_flows_opened nat.udp_flows_closed nat.icmp_flows_opened
    nat.icmp_flows_closed nat.tcp_idle_expired nat.udp_idle_expired
    nat.icmp_idle_expired nat.tcp_closed nat.tcp_forwarded nat.tcp_guest_reset
    nat.tcp_host_reset nat.tcp_syn_while_connecting nat.icmp_unreachable_sent
    nat.udp_icmp_error nat.udp_forwarded gwdns.forwarded gwdns.host_record
    connections disconnects gwra.tx_ra gwra.rx_rs switch.forwarded switch.flooded
    switch.mac_table_full
""")
declare(GAUGE, """
    nat.flows
""")

# igmp: wire reasons (wire/igmp.py) and the host's (stack/igmp.py)
declare(DROP, """
    igmp.truncated igmp.bad_checksum igmp.bad_query_length igmp.bad_source_count
    igmp.bad_record_count igmp.unknown_type igmp.query_bad_destination
    igmp.query_bad_group udp.multicast_filtered ipv4.multicast_source_filtered
""")
declare(EVENT, """
    igmp.rx igmp.query igmp.tx_report igmp.tx_leave igmp.report_ignored
    igmp.report_suppressed
""")

declare_family(EVENT, "icmp4.tx_error_")     # icmp4.tx_error_<type>_<code>
declare_family(EVENT, "dhcp.rx_")            # dhcp.rx_<message type>
declare_family(EVENT, "dhcp.tx_")
declare_family(EVENT, "dhcpd.tx_")
declare_family(EVENT, "dns.rcode_")          # dns.rcode_<servfail|refused|...>
