"""femtotcp: a pure-Python user-space TCP/IP stack.

The protocol core is sans-I/O (frames and a clock in, frames out); devices in
``phy/`` and the loop in ``runtime`` are the only parts that touch file
descriptors.
"""

__version__ = "0.1.0"
