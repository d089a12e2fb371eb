"""The host: Stack, interfaces, neighbour cache, routes, IP input/output."""

from femtotcp.stack.stack import Stack

__all__ = ["Stack"]
