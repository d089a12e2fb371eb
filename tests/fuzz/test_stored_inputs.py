"""Inputs the fuzzers stored (tests/fuzz/inputs/TARGET-*.bin), fed back to their target.

Each entry says what the target must make of it now: the drop reason it must name,
or ``None`` for an input that is valid and must stay accepted. A test also bounds the
work an input may cost by counting label decodes (never by timing).

* dns-slow-*: the slowest inputs atheris found for ``dns`` (just over 10 ms with
  every line instrumented, ~1 ms plain, so not a bug): nine questions whose names
  are up to 745 characters of ``\\DDD`` escapes after pointers. They must stay
  accepted, their names must survive ``canonical`` (what the resolver compares),
  and each label is decoded once per place it sits, not once per use.
* stack6-ra-preferred-zero: an RA whose new prefix has a preferred lifetime of
  0 hung the stack (a SLAAC address's lifetime timer re-armed for a past
  deadline while the address was tentative); see test_ipv6_found.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from femtotcp.wire import dns
from fuzz.targets import TARGETS

INPUTS = Path(__file__).parent / "inputs"

EXPECTED: dict[str, str | None] = {
    "dns-slow-names-escaped.bin": None,
    "dns-slow-2.bin": None,
    "stack6-ra-preferred-zero.bin": None,
}


def test_every_stored_input_has_an_expectation() -> None:
    assert sorted(p.name for p in INPUTS.glob("*.bin")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_stored_input(name: str) -> None:
    data = (INPUTS / name).read_bytes()
    target = TARGETS[name.split("-", 1)[0]]
    if target.before is not None:
        target.before()
    assert target.run(data) == EXPECTED[name]


@pytest.mark.parametrize("name", ["dns-slow-names-escaped.bin", "dns-slow-2.bin"])
def test_escaped_names_cost_one_decode_per_label(name: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    data = (INPUTS / name).read_bytes()[1:]
    calls: list[int] = []
    real = dns._escape_label
    monkeypatch.setattr(dns, "_escape_label", lambda b: calls.append(len(b)) or real(b))
    msg = dns.parse(data)
    assert len(msg.questions) == 9
    # Every label byte sits once in the message: decoding them all at most once each.
    assert sum(calls) + len(calls) <= len(data)
    for q in msg.questions:
        assert dns.canonical(q.name) == dns.canonical(dns.canonical(q.name))
