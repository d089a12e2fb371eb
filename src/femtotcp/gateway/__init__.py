"""User-mode networking: a stack that is a guest's router, NAT onto host sockets.

``flows`` is the sans-I/O flow table; ``nat`` carries the guest's TCP, UDP and
ICMP echo over non-blocking host sockets driven by the runtime; ``gateway``
puts a stack, a device, the NAT, DHCP and DNS together (``femtotcp gateway``).
"""
