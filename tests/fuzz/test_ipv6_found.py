"""What the IPv6 fuzz targets found, as behaviour (the inputs themselves are
replayed by test_stored_inputs.py).

* stack6-ra-preferred-zero: an RA (the world's own, one bit flipped in its
  prefix) announcing a new autonomous prefix with a preferred lifetime of 0.
  The SLAAC address it forms is tentative during DAD, and its lifetime timer
  was set for the preferred deadline, already past; firing changed nothing
  for a tentative address and set the same past deadline again, so the
  virtual clock never moved on (one RA from the link hung the stack). A
  tentative address now waits for its valid lifetime only, and DAD's end
  decides preferred or deprecated and schedules the next deadline.
"""

from __future__ import annotations

import pytest
from femtolan import make_lan

from femtotcp.stack import ipv6 as stack_ipv6
from femtotcp.wire import ethernet, ip_bytes, ipv6, mac_bytes, ndp

ROUTER_LL = ip_bytes("fe80::fe")
ROUTER_MAC = mac_bytes("02:00:00:00:00:fe")
MODULES = ["arp", "ipv4", "udp", "ipv6", "icmp6"]


def _ra(prefix: bytes, valid: int, preferred: int) -> bytes:
    opts = ndp.opt_source_lladdr(ROUTER_MAC) + ndp.opt_prefix(prefix, 64, valid, preferred)
    msg = ndp.build_ra(ROUTER_LL, ipv6.ALL_NODES, router_lifetime=0, options=opts)
    return ethernet.build(ipv6.multicast_mac(ipv6.ALL_NODES), ROUTER_MAC, ethernet.ETH_IPV6,
                          ipv6.build(ROUTER_LL, ipv6.ALL_NODES, ipv6.PROTO_ICMP6, msg,
                                     hop_limit=255))


@pytest.mark.parametrize(("valid", "preferred", "after_dad"), [
    (86400, 0, "deprecated"), (86400, 1, "deprecated"), (86400, 3600, "preferred")])
def test_a_short_preferred_lifetime_during_dad_lets_the_clock_move(
        valid: int, preferred: int, after_dad: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fired: list[bytes] = []
    real = stack_ipv6.Ipv6._lifetime

    def counted(self: stack_ipv6.Ipv6, iface: object, entry: stack_ipv6.Ipv6Address) -> None:
        fired.append(entry.addr)
        assert len(fired) < 50, "the address lifetime timer keeps firing"
        real(self, iface, entry)  # type: ignore[arg-type]

    monkeypatch.setattr(stack_ipv6.Ipv6, "_lifetime", counted)
    lan = make_lan(1, modules=MODULES)
    lan.run(3.0)
    lan.sniffer("router").inject(_ra(ip_bytes("2001:db8:7::"), valid, preferred))
    lan.run(3.0)              # DAD (up to 1 s delay, 1 s wait), then past the deadline
    stack = lan.stacks[0]
    (slaac,) = [a for a in stack.interfaces[0].ipv6 if a.origin == "slaac"]
    assert slaac.state == after_dad
    assert (slaac.addr in stack.local_addresses) is True
    # The next deadline is the real one: deprecation (if still ahead) or expiry.
    assert slaac.timer is not None
    assert len(fired) <= 1
