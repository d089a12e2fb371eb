"""The fault injector on a virtual clock over a memory wire."""

from __future__ import annotations

import math

import pytest

from femtotcp.phy.faulty import FaultyDevice
from femtotcp.phy.memory import Wire
from femtotcp.runtime import SimLoop
from femtotcp.wire import Malformed, ethernet, icmp4, ip_bytes, ipv4, mac_bytes, udp
from femtotcp.wire.checksum import ones_sum

MAC_A = mac_bytes("02:00:00:00:00:01")
MAC_B = mac_bytes("02:00:00:00:00:02")
IP_A = ip_bytes("192.0.2.1")
IP_B = ip_bytes("192.0.2.2")


def frame(seq: int, size: int = 64) -> bytes:
    """An Ethernet/IPv4/ICMP echo whose sequence number identifies it."""
    packet = ipv4.build(IP_A, IP_B, ipv4.PROTO_ICMP,
                        icmp4.build_echo(icmp4.ECHO_REQUEST, 7, seq, bytes(size)))
    return ethernet.build(MAC_B, MAC_A, ethernet.ETH_IPV4, packet)


def seq_of(f: bytes) -> int:
    return int.from_bytes(f[14 + 20 + 6:14 + 20 + 8], "big")


class Harness:
    """a (faulty) --wire-- b; records arrivals on both sides with virtual times."""

    def __init__(self, **faults: object) -> None:
        self.loop = SimLoop()
        self.wire = Wire(self.loop)
        self.dev = FaultyDevice(self.wire.a, self.loop, **faults)  # type: ignore[arg-type]
        self.at_b: list[tuple[float, bytes]] = []
        self.at_a: list[tuple[float, bytes]] = []
        self.wire.b.set_receiver(lambda f: self.at_b.append((self.loop.now(), f)))
        self.dev.set_receiver(lambda f: self.at_a.append((self.loop.now(), f)))

    def send_out(self, n: int, gap: float = 0.001) -> list[int]:
        for i in range(n):
            self.loop.call_at(i * gap, lambda i=i: self.dev.send(frame(i)))
        self.loop.run()
        return [seq_of(f) for _, f in self.at_b]

    def send_in(self, n: int, gap: float = 0.001) -> list[int]:
        for i in range(n):
            self.loop.call_at(i * gap, lambda i=i: self.wire.b.send(frame(i)))
        self.loop.run()
        return [seq_of(f) for _, f in self.at_a]


def test_no_faults_is_transparent() -> None:
    h = Harness()
    assert h.send_out(20) == list(range(20))
    assert h.send_in(20) == list(range(20))
    assert not any(k.startswith(("in.", "out.")) for k in h.dev.counters)
    assert h.dev.counters["tx_frames"] == 20 and h.dev.counters["rx_frames"] == 20


def test_total_loss() -> None:
    h = Harness(loss=1.0)
    assert h.send_out(10) == []
    assert h.send_in(10) == []
    assert h.dev.counters["out.lost"] == 10 and h.dev.counters["in.lost"] == 10


def test_partial_loss_is_seeded_and_repeats() -> None:
    runs = [Harness(loss=0.3, seed=42).send_out(200) for _ in range(2)]
    assert runs[0] == runs[1]
    assert 100 < len(runs[0]) < 180  # 30 % of 200 lost, give or take
    assert runs[0] == sorted(runs[0])
    other = Harness(loss=0.3, seed=43).send_out(200)
    assert other != runs[0]


def test_duplicate_everything() -> None:
    h = Harness(duplicate=1.0)
    assert h.send_out(5) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert h.dev.counters["out.duplicated"] == 5


def test_reorder_swaps_neighbours() -> None:
    h = Harness(reorder=1.0)
    # 0 is held, 1 overtakes it, 0 follows; 2 is held, 3 overtakes...
    assert h.send_out(6) == [1, 0, 3, 2, 5, 4]
    assert h.dev.counters["out.reordered"] == 3
    assert h.dev.counters["out.hold_expired"] == 0


def test_held_frame_is_released_by_timer() -> None:
    h = Harness(reorder=1.0, hold=0.2)
    h.loop.call_at(0.0, lambda: h.dev.send(frame(0)))
    h.loop.run(until=0.1)
    assert h.at_b == []  # held back, waiting for a frame to overtake it
    h.loop.run()
    assert [(t, seq_of(f)) for t, f in h.at_b] == [(pytest.approx(0.2), 0)]
    assert h.dev.counters["out.hold_expired"] == 1


def test_partial_reorder_delivers_everything_once() -> None:
    h = Harness(reorder=0.3, seed=5)
    got = h.send_out(100)
    assert sorted(got) == list(range(100))
    assert got != list(range(100))
    assert got == Harness(reorder=0.3, seed=5).send_out(100)


def test_corruption_flips_one_bit_inside_the_ip_packet() -> None:
    h = Harness(corrupt=1.0, seed=9)
    h.send_out(50)
    assert len(h.at_b) == 50 and h.dev.counters["out.corrupted"] == 50
    for i, (_, got) in enumerate(h.at_b):
        sent = frame(i)
        diff = [j for j in range(len(sent)) if sent[j] != got[j]]
        assert len(diff) == 1
        assert bin(sent[diff[0]] ^ got[diff[0]]).count("1") == 1
        assert diff[0] >= ethernet.HEADER_LEN  # never in the Ethernet header
        # ... and some checksum (IPv4 header or ICMP) catches it
        with pytest.raises(Malformed):
            header, payload = ipv4.parse(got[14:])
            icmp4.parse(payload)


def test_corruption_stays_out_of_ethernet_padding() -> None:
    # A 28-byte IPv4/UDP packet padded to the 60-byte Ethernet minimum.
    dgram = udp.build(IP_A, IP_B, 1, 2, b"")
    packet = ipv4.build(IP_A, IP_B, ipv4.PROTO_UDP, dgram)
    f = ethernet.build(MAC_B, MAC_A, ethernet.ETH_IPV4, packet).ljust(60, b"\0")
    h = Harness(corrupt=1.0, seed=1)
    for _ in range(40):
        h.dev.send(f)
    h.loop.run()
    for _, got in h.at_b:
        diff = [j for j in range(60) if f[j] != got[j]]
        assert len(diff) == 1 and 14 <= diff[0] < 14 + len(packet)


def test_corrupt_skips_frames_with_nothing_to_corrupt() -> None:
    h = Harness(corrupt=1.0)
    h.dev.send(b"\xff" * 14)
    h.loop.run()
    assert [f for _, f in h.at_b] == [b"\xff" * 14]
    assert h.dev.counters["out.corrupt_skipped"] == 1


def test_corrupted_checksum_oracle() -> None:
    """Sanity for the oracle above: an uncorrupted frame passes both checksums."""
    header, payload = ipv4.parse(frame(3)[14:])
    icmp4.parse(payload)
    assert ones_sum(frame(3)[14:34]) == 0xFFFF


def test_delay_and_jitter() -> None:
    h = Harness(delay=0.1, jitter=0.05, seed=3)
    for i in range(50):
        h.loop.call_at(1.0, lambda i=i: h.dev.send(frame(i)))
    h.loop.run()
    times = [t for t, _ in h.at_b]
    assert len(times) == 50
    assert all(1.1 <= t <= 1.15 for t in times)
    assert len(set(times)) > 1
    assert sorted(seq_of(f) for _, f in h.at_b) == list(range(50))
    assert h.dev.counters["out.delayed"] == 50


def test_fixed_delay_keeps_order() -> None:
    h = Harness(delay=0.25)
    h.loop.call_at(0.0, lambda: h.dev.send(frame(0)))
    h.loop.call_at(0.1, lambda: h.dev.send(frame(1)))
    h.loop.run()
    assert [(t, seq_of(f)) for t, f in h.at_b] == [(0.25, 0), (pytest.approx(0.35), 1)]


def test_directions_are_independent() -> None:
    h = Harness(loss=1.0, inbound=False)
    assert h.send_out(5) == []
    assert h.send_in(5) == list(range(5))
    h = Harness(loss=1.0, outbound=False)
    assert h.send_out(5) == list(range(5))
    assert h.send_in(5) == []


def test_same_seed_same_run_with_every_fault() -> None:
    faults = dict(loss=0.1, duplicate=0.1, reorder=0.2, corrupt=0.1, delay=0.01,
                  jitter=0.02, seed=1234)

    def run() -> list[tuple[float, bytes]]:
        h = Harness(**faults)
        h.send_out(150)
        h.send_in(150)
        return h.at_b + h.at_a

    first = run()
    assert first == run()
    h = Harness(**faults)
    h.send_out(150)
    counters = h.dev.counters
    assert all(counters[f"out.{k}"] > 0
               for k in ("lost", "duplicated", "reordered", "corrupted", "delayed"))


def test_configure_on_the_fly() -> None:
    h = Harness()
    assert h.send_out(3) == [0, 1, 2]
    h.dev.configure(loss=1.0)
    h.at_b.clear()
    assert h.send_out(3) == []
    h.dev.configure(loss=0)
    assert h.send_out(3) == [0, 1, 2]


@pytest.mark.parametrize("kw", [
    {"loss": -0.1}, {"loss": 1.5}, {"duplicate": math.nan}, {"reorder": "0.5"},
    {"corrupt": True}, {"delay": -1}, {"jitter": math.inf}, {"delay": math.nan},
    {"hold": 0}, {"hold": -1},
])
def test_bad_arguments(kw: dict[str, object]) -> None:
    loop = SimLoop()
    with pytest.raises(ValueError, match=next(iter(kw))):
        FaultyDevice(Wire(loop).a, loop, **kw)  # type: ignore[arg-type]


def test_bad_configure_changes_nothing() -> None:
    h = Harness(loss=0.5)
    with pytest.raises(ValueError):
        h.dev.configure(duplicate=0.5, loss=2.0)
    with pytest.raises(ValueError, match="unknown"):
        h.dev.configure(drop=0.5)
    assert h.dev.loss == 0.5 and h.dev.duplicate == 0.0


def test_inner_must_be_a_device() -> None:
    with pytest.raises(TypeError):
        FaultyDevice(object(), SimLoop())  # type: ignore[arg-type]


def test_forwards_to_inner_and_close_drops_pending() -> None:
    h = Harness(delay=1.0, reorder=0.0)
    assert h.dev.fileno() == h.wire.a.fileno() == -1
    assert h.dev.mtu == h.wire.a.mtu and h.dev.raw_ip is False
    h.dev.send(frame(1))
    h.dev.close()
    h.loop.run()
    assert h.at_b == []
    assert not h.wire.a.up  # the inner device was closed too
    h.dev.send(frame(2))
    assert h.dev.counters["tx_closed"] == 1


def test_on_readable_and_fileno_forwarded() -> None:
    from femtotcp.phy.base import Device

    class Fd(Device):
        reads = 0

        def fileno(self) -> int:
            return 42

        def on_readable(self) -> None:
            self.reads += 1
            self.deliver(b"from-fd" * 3)

        def _transmit(self, frame: bytes) -> None:
            pass

    loop = SimLoop()
    inner = Fd("fd0")
    got: list[bytes] = []
    dev = FaultyDevice(inner, loop)
    dev.set_receiver(got.append)
    assert dev.fileno() == 42
    dev.on_readable()
    assert inner.reads == 1 and got == [b"from-fd" * 3]
