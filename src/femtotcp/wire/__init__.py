"""Packet formats: parse (validating every length) and build. No state, no I/O.

Addresses are carried as packed ``bytes`` everywhere in the core (4 bytes for
IPv4, 16 for IPv6, 6 for MAC): they hash fast, slice straight out of frames and
need no conversion on the per-packet path. ``ip_str``/``ip_bytes`` convert at
the edges.
"""

from __future__ import annotations

import socket


class Malformed(Exception):
    """A packet failed validation. ``reason`` is the drop counter's name."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def ip_str(addr: bytes) -> str:
    """Packed IPv4/IPv6 address to text."""
    if len(addr) == 4:
        return socket.inet_ntop(socket.AF_INET, addr)
    return socket.inet_ntop(socket.AF_INET6, addr)


def ip_bytes(text: str) -> bytes:
    """Text IPv4/IPv6 address to packed bytes; ValueError names a bad one."""
    try:
        return socket.inet_pton(socket.AF_INET, text)
    except (OSError, TypeError):
        pass
    try:
        return socket.inet_pton(socket.AF_INET6, text)
    except (OSError, TypeError):
        raise ValueError(f"not an IP address: {text!r}") from None


def mac_str(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def mac_bytes(text: str) -> bytes:
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6:
        raise ValueError(f"not a MAC address: {text!r}")
    try:
        out = bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ValueError(f"not a MAC address: {text!r}") from None
    if any(len(p) not in (1, 2) for p in parts):
        raise ValueError(f"not a MAC address: {text!r}")
    return out
