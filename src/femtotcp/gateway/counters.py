"""Every counter name the gateway, its guest switch and the QEMU devices use, by kind.

Main's counter registry (``core/counters.py``, strict in tests) wants each name
declared once; core/ imports nothing outside itself, so on merge these lines go
there as ``declare(DROP, DROPS)``, ``declare(EVENT, EVENTS)``, ``declare(GAUGE,
GAUGES)`` (tests/gateway/test_gateway_counters.py keeps this list complete).
"""

#: Input thrown away or output refused.
DROPS = """
    nat.flow_limit nat.host_loopback_denied nat.tcp_no_flow nat.tcp_refused
    nat.tcp_unreachable nat.tcp_connect_failed nat.tcp_connect_timeout
    nat.tcp_socket_failed nat.udp_socket_failed nat.ping_socket_failed nat.host_busy
    nat.host_send_error nat.host_recv_error nat.forward_accept_error
    nat.forward_connect_failed nat.udp_forward_error
    gwdns.bad_reply gwdns.malformed gwdns.no_upstream gwdns.not_a_query
    gwdns.refused_busy gwdns.timeout gwdns.upstream_error
    rx_bad_length tx_dropped_full tx_no_peer tx_not_connected accept_error
    gwra.no_link_local switch.bad_source switch.runt switch.same_port switch.guest_limit
    switch.unnamed_peer
"""

#: Things that happened.
EVENTS = """
    nat.bytes_in nat.bytes_out nat.tcp_flows_opened nat.tcp_flows_closed
    nat.udp_flows_opened nat.udp_flows_closed nat.icmp_flows_opened
    nat.icmp_flows_closed nat.tcp_idle_expired nat.udp_idle_expired
    nat.icmp_idle_expired nat.tcp_closed nat.tcp_forwarded nat.tcp_guest_reset
    nat.tcp_host_reset nat.tcp_syn_while_connecting nat.icmp_unreachable_sent
    nat.udp_icmp_error nat.udp_forwarded
    gwdns.forwarded gwdns.host_record
    connections disconnects
    gwra.tx_ra gwra.rx_rs switch.forwarded switch.flooded switch.mac_table_full
"""

#: Occupancy now.
GAUGES = """
    nat.flows
"""
