"""core/rand.py: uniform, bounded, and without OpenSSL."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from femtotcp.core import rand


def test_randbelow_stays_in_range_and_reaches_every_value() -> None:
    seen = Counter(rand.randbelow(6) for _ in range(6000))
    assert set(seen) == set(range(6))
    assert min(seen.values()) > 700          # about 1000 each (a 10-sigma margin)


def test_randbits_width() -> None:
    values = [rand.randbits(13) for _ in range(2000)]
    assert all(0 <= v < 2**13 for v in values)
    assert max(values) >= 2**12              # the top bit is used
    assert rand.randbits(1) in (0, 1)


@pytest.mark.parametrize("bad", [0, -1])
def test_bad_bounds(bad: int) -> None:
    with pytest.raises(ValueError):
        rand.randbelow(bad)
    with pytest.raises(ValueError):
        rand.randbits(bad)


def test_blake2s_is_hashlibs() -> None:
    import hashlib
    assert rand.blake2s(b"x", key=b"k", digest_size=4).digest() == \
        hashlib.blake2s(b"x", key=b"k", digest_size=4).digest()


def test_the_stack_loads_no_openssl() -> None:
    """An idle stack with TCP, UDP, ICMP, DNS and DHCP never maps libcrypto
    (secrets/hashlib would: about 3.7 MB of RSS)."""
    code = ("import femtotcp.stack.stack as s, sys\n"
            "st = s.Stack('x', modules=['arp', 'ipv4', 'icmp4', 'udp', 'tcp', 'dns'])\n"
            "import femtotcp.services.dhcp\n"
            "print(sorted(m for m in sys.modules if m in ('_hashlib', '_ssl', 'hashlib', 'secrets')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.strip() == "[]"
