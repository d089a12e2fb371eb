"""Tunables of a stack, with Linux's defaults where Linux has one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from femtotcp.proto.tcp.config import TcpConfig


@dataclass(slots=True)
class StackConfig:
    ttl: int = 64                      # net.ipv4.ip_default_ttl
    forwarding: bool = False           # hosts deliver locally only
    # Neighbour (ARP) cache, RFC 826 / RFC 1122 2.3.2 and Linux's neigh defaults.
    arp_reachable: float = 30.0        # base_reachable_time: entry trusted without re-checking
    arp_stale_timeout: float = 60.0    # gc_stale_time: unused entries removed after this
    arp_retry: float = 1.0             # retrans_time: at most one request a second per target
    arp_max_requests: int = 3          # mcast_solicit: then resolution fails (EHOSTUNREACH)
    arp_pending_max: int = 101         # packets queued per unresolved neighbour (unres_qlen):
                                       # a 64 KiB datagram is 45 fragments at MTU 1500
    arp_pending_bytes: int = 212992    # and bytes (unres_qlen_bytes)
    arp_cache_max: int = 1024          # gc_thresh3
    acd: bool = False                  # RFC 5227 probing before using an address
    acd_probe_wait: float = 1.0        # RFC 5227 section 1.1 constants
    acd_probe_num: int = 3
    acd_probe_min: float = 1.0
    acd_probe_max: float = 2.0
    acd_announce_wait: float = 2.0
    acd_announce_num: int = 2
    acd_announce_interval: float = 2.0
    # IPv4 reassembly (RFC 791, RFC 815); Linux ipfrag_* defaults.
    reasm_timeout: float = 30.0        # ipfrag_time
    reasm_max_datagrams: int = 64      # datagrams being reassembled at once
    reasm_max_bytes: int = 4 * 1024 * 1024   # ipfrag_high_thresh
    reasm_max_fragments: int = 128     # fragments per datagram (64 KiB / 512-byte minimum)
    pmtu_expires: float = 600.0        # route/mtu_expires: a learned IPv4 path MTU ages out
    # IPv6 (RFC 8200, 4861, 4862); Linux's net.ipv6.conf.* and neigh defaults.
    hop_limit: int = 64                # net.ipv6.conf.all.hop_limit
    ipv6_dad: bool = True              # accept_dad: RFC 4862 5.4 on every address
    ipv6_dad_transmits: int = 1        # dad_transmits
    ipv6_accept_ra: bool = True        # accept_ra: routers, prefixes, MTU, RDNSS
    ipv6_autoconf: bool = True         # autoconf: SLAAC addresses from RA prefixes
    ipv6_link_local: bool = True       # a link-local address on start
    ipv6_temporary: bool = False       # use_tempaddr=2: RFC 8981 temporary addresses,
                                       # preferred as sources
    ipv6_temp_valid: float = 172800.0  # temp_valid_lft (RFC 8981 TEMP_VALID_LIFETIME)
    ipv6_temp_preferred: float = 86400.0  # temp_prefered_lft (TEMP_PREFERRED_LIFETIME)
    ipv6_rtr_solicits: int = 3         # router_solicitations
    ipv6_rtr_solicit_interval: float = 4.0   # router_solicitation_interval
    ipv6_reasm_timeout: float = 60.0   # ip6frag_time (RFC 8200 4.5: 60 s); other caps shared
    ipv6_pmtu_expires: float = 600.0   # route/mtu_expires: a learned path MTU ages out
    ndp_reachable: float = 30.0        # neigh base_reachable_time (RFC 4861 REACHABLE_TIME)
    ndp_retrans: float = 1.0           # retrans_time (RFC 4861 RETRANS_TIMER)
    ndp_delay_first_probe: float = 5.0  # delay_first_probe_time
    ndp_multicast_solicit: int = 3     # mcast_solicit (MAX_MULTICAST_SOLICIT)
    ndp_unicast_solicit: int = 3       # ucast_solicit (MAX_UNICAST_SOLICIT)
    # ICMP errors: token bucket, like Linux's icmp_msgs_per_sec / icmp_msgs_burst.
    icmp_rate: float = 1000.0
    icmp_burst: int = 50
    icmp_rate_per_dest: float = 1.0    # icmp_ratelimit (1000 ms) for each destination
    icmp_burst_per_dest: int = 6
    # UDP receive queue per endpoint.
    udp_rcvbuf: int = 212992           # net.core.rmem_default
    udp_queue_max: int = 1024          # datagrams
    ephemeral_low: int = 32768         # net.ipv4.ip_local_port_range
    ephemeral_high: int = 60999
    # Datagrams to our own addresses waiting for the next poll (loopback).
    local_queue_max: int = 1024
    #: TCP's tunables (the tcp module's ``TcpConfig``; its defaults when None,
    #: and the one in use once the module is loaded).
    tcp: TcpConfig | None = None
