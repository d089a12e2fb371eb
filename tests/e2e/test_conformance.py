"""Differential conformance: the same crafted frames to femtotcp and to Linux.

probe.py builds the two targets (femtotcp on a TAP, the kernel behind a veth,
both at 192.0.2.2 with TCP and UDP echo on port 7, both with an IPv4
reassembly time of ``probe.FRAG_TIME``; femtotcp is serve's stack, built by
probe_target.py) and runs every probe on both at once; each probe reduces the answers to a small dict of facts. Each test here
asserts femtotcp's observation: equal to Linux's, unless the difference is listed
in ACCEPTED with the reason it is acceptable (and then femtotcp must show exactly
the documented behaviour). A test fails when femtotcp diverges in a way judged
wrong, never because Linux did something new.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from netns import require_kernel
from skippolicy import require_module

# Every probe builds its frames with scapy (probe.py imports it at the top).
require_module("scapy.all", "pip install -e '.[test]'")

import probe  # noqa: E402

# name -> (reason, what femtotcp shows instead). {"answer": None} means "no
# answer at all"; any other dict replaces those fields of Linux's observation.
ACCEPTED: dict[str, tuple[str, dict[str, Any]]] = {
    "arp_broadcast_sender_mac": (
        "Linux answers an ARP request whose sender MAC is broadcast (its reply goes to "
        "ff:ff:ff:ff:ff:ff); femtotcp drops ARP with a group sender MAC (README, hostile "
        "input: such a claim can only poison caches; cf. RFC 1812 3.3.2)",
        {"answer": None}),
    "arp_multicast_sender_mac": (
        "as above, for a multicast sender MAC", {"answer": None}),
    "arp_learn_from_unsolicited_reply": (
        "RFC 826's merge algorithm adds the sender when we are the target, whatever the "
        "opcode, and issue 3 asks for learning from ARP aimed at us; Linux (arp_accept=0) "
        "creates no entry from a reply it did not ask for",
        {"learned": True}),
    "icmp_echo_l2_broadcast": (
        "RFC 1122 3.3.6: a datagram received by link-layer broadcast with a unicast IP "
        "destination SHOULD be silently discarded; femtotcp does, Linux answers",
        {"answer": None}),
    "icmp_echo_from_broadcast_source": (
        "RFC 1122 3.2.1.3: a host MUST silently discard a datagram whose source is a "
        "broadcast address (192.0.2.255 here); Linux answers it",
        {"answer": None}),
    "tcp_syn_from_broadcast_source": (
        "as above (RFC 1122 3.2.1.3): Linux resets a SYN from the subnet broadcast "
        "address, femtotcp drops it", {"answer": None}),
    "est_small_window": (
        "we shrink the window from 65535 to 10 bytes in mid-connection; Linux still "
        "sends past the new right edge (a shrunk window is the receiver's fault, RFC 9293 "
        "3.8.6), femtotcp keeps within it: both are allowed, femtotcp's is the safer",
        {"within_window": True}),
    "tcp_syn_with_ip_options": (
        "a SYN with Record Route: Linux returns the option in its SYN-ACK and in every "
        "later segment of the connection (RFC 1122 4.2.3.8 leaves it to the host; checked "
        "with scapy against Linux 6.x); femtotcp's TCP sends no IP options (ICMP's "
        "replies and errors do return them); the SYN-ACK is otherwise the same",
        {"ihl": 5}),
    "est_rst_burst_rate_limited": (
        "ten in-window RSTs at once on one connection: Linux (6.0+) sends one challenge "
        "ACK per 500 ms per socket (tcp_invalid_ratelimit); femtotcp limits challenge "
        "ACKs stack-wide as RFC 5961 7 recommends (token bucket 1000/s, burst 100), so a "
        "burst on one connection is answered in full: bounded, and RFC-conformant",
        {"limited": False}),
    "est_syn_burst_rate_limited": (
        "as above, for SYNs in ESTABLISHED (RFC 5961 4.2 challenge ACKs)",
        {"limited": False}),
    "est_zero_length_at_window_edge": (
        "an empty segment with SEQ = RCV.NXT + RCV.WND: RFC 9293 3.10.7.4's acceptance "
        "table (RCV.WND > 0: RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND) finds it not acceptable, "
        "so femtotcp answers with an ACK as the RFC says; Linux's tcp_sequence() accepts "
        "SEQ up to the right edge inclusive and stays silent",
        {"answer": "tcp", "flags": "A", "ack_is_rcv_nxt": True, "seq_is_snd_nxt": True}),
}


@pytest.fixture(scope="module")
def results() -> Iterator[dict[str, tuple[dict[str, Any], dict[str, Any]]]]:
    require_kernel()
    with probe.environment() as (femto, linux):
        yield probe.run_all(femto, linux)


NAMES = [*probe.PROBES, "frag_missing_last", "sweep_closed_ports"]


@pytest.mark.parametrize("name", NAMES)
def test_matches_linux(results: dict[str, tuple[dict[str, Any], dict[str, Any]]],
                       name: str) -> None:
    # RFC 6864 4.1: the IP ID of an atomic datagram (DF, unfragmented) carries no
    # meaning; Linux writes 0 in its resets and SYN-ACKs, femtotcp a counter.
    probe.compare(results, name, ACCEPTED, ("df_id_zero",))


def test_both_targets_timed_the_reassembly_out(
        results: dict[str, tuple[dict[str, Any], dict[str, Any]]]) -> None:
    """The reassembly-timeout probe compares two real answers: with both
    reassembly times at ``probe.FRAG_TIME``, each target sent Time Exceeded code 1
    (RFC 792) within the probe's wait, so an equal "no answer" cannot pass."""
    for obs in results["frag_missing_last"]:
        assert (obs.get("answer"), obs.get("type"), obs.get("code")) == ("icmp", 11, 1), obs
