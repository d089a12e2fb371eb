"""Differential conformance for IPv6: the same crafted packets to femtotcp and to Linux.

probe6.py builds the two targets (femtotcp on a TAP, the kernel behind a veth,
both at 2001:db8::2/64 and fe80::2 with TCP and UDP echo on port 7 and an IPv6
reassembly time of ``probe.FRAG_TIME``) and runs every probe on both at once;
each probe reduces the answers to a small dict of facts. Each test asserts
femtotcp's observation: equal to Linux's, unless the difference is listed in
ACCEPTED with the reason it is acceptable (and then femtotcp must show exactly
the documented behaviour), as test_conformance.py does for IPv4.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from netns import require_kernel
from skippolicy import require_module

require_module("scapy.all", "pip install -e '.[test]'")

import probe  # noqa: E402
import probe6  # noqa: E402

# name -> (reason, what femtotcp shows instead). {"answer": None} means "no
# answer at all"; any other dict replaces those fields of Linux's observation.
ACCEPTED: dict[str, tuple[str, dict[str, Any]]] = {
    "nd_ns_unicast": (
        "an NS to our unicast address: RFC 4861 7.2.4 says the Override flag SHOULD be "
        "set (our address is no anycast or proxied one) and leaves the target link-layer "
        "option optional for a unicast solicitation; femtotcp sets O and sends the option, "
        "Linux (ndisc_recv_ns: inc = multicast destination) clears O and omits it",
        {"O": True, "tlla": "ours"}),
    "nd_ns_no_sllao": (
        "a multicast NS from a unicast source without a source link-layer option (the "
        "sender broke RFC 4861 4.3's MUST, but 7.1.1's validity checks do not drop it): "
        "femtotcp answers as 7.2.4 says, resolving the asker first; Linux answers only "
        "when it already has a neighbour entry for the asker (none here)",
        {"answer": "na", "R": False, "S": True, "O": True, "hlim": 255, "tlla": "ours",
         "to": "prober", "target": "2001:db8::2"}),
    "icmp6_echo_nonzero_code": (
        "an Echo Request with code 3: RFC 4443 4.2 says an Echo Reply's code is 0; "
        "femtotcp sends 0, Linux copies the request's code", {"code": 0}),
    "addr_other_prefix": (
        "a packet to 2001:db8:5::2 (another prefix, not ours): a host forwards nothing "
        "and silently discards what is not addressed to it (RFC 1122 3.3.4.2's rule; "
        "RFC 8200 asks no error); Linux, forwarding off, answers from its routing table "
        "with Destination Unreachable code 0 (no route), while an on-link address not "
        "its own (addr_not_ours) gets silence from both", {"answer": None}),
    "addr_v4_mapped_destination": (
        "a packet to ::ffff:192.0.2.2: IPv4-mapped addresses never appear on the wire "
        "(RFC 4038 4.2, RFC 5156 2.2), and femtotcp drops the packet as hostile input "
        "(ipv6.v4_mapped_address); Linux treats it as any address not its own and, "
        "forwarding off, answers Destination Unreachable code 0 from its routing table",
        {"answer": None}),
    "est_packet_too_big_below_minimum": (
        "a Packet Too Big reporting 1000 (< 1280) about an established connection's "
        "segment: RFC 8201 4 has the path MTU estimate go no lower than 1280, and "
        "femtotcp lowers it to 1280 (its next segments fit 1280, unfragmented: RFC 8021); "
        "Linux's tcp_v6_err ignores such a message altogether and keeps 1500",
        {"next_max": 1280}),
}

Results = dict[str, tuple[dict[str, Any], dict[str, Any]]]


@pytest.fixture(scope="module")
def results() -> Iterator[Results]:
    require_kernel()
    with probe6.environment() as (femto, linux):
        yield probe6.run_all(femto, linux)


NAMES = [*probe6.PROBES, *probe6.TIMEOUT_PROBES]


@pytest.mark.parametrize("name", NAMES)
def test_matches_linux(results: Results, name: str) -> None:
    probe.compare(results, name, ACCEPTED)


def test_reassembly_timeout_answers(results: Results) -> None:
    """Both targets sent Time Exceeded code 1 for the datagram whose first fragment
    came (RFC 8200 4.5), so an equal "no answer" cannot pass."""
    for obs in results["frag_missing_last"]:
        assert (obs.get("answer"), obs.get("type"), obs.get("code")) == ("icmp6", 3, 1), obs
