"""User-mode networking: a stack that is a guest's router, NAT onto host sockets.

``flows`` is the sans-I/O flow table; ``nat`` carries the guest's TCP, UDP and
ICMP echo over non-blocking host sockets driven by the runtime; ``gateway``
puts a stack, a device, the NAT, DHCP and DNS together (``femtotcp gateway``).
"""

#: The guest's networks by default, as QEMU's user networking (and slirp4netns).
DEFAULT_NET = "10.0.2.0/24"
DEFAULT_NET6 = "fd00::/64"
