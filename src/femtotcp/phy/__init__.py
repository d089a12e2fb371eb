"""Devices: memory links and switch, TAP, TUN, pcap, and the fault injector."""
