"""pcap writer, validating reader and replay device."""

from __future__ import annotations

import io
import struct
import subprocess
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from netns import require_program

from femtotcp.phy.memory import Wire
from femtotcp.phy.pcap import (
    LINKTYPE_ETHERNET,
    LINKTYPE_RAW,
    MAX_RECORD,
    MAX_SNAPLEN,
    PcapDevice,
    PcapReader,
    PcapWriter,
    read_pcap,
)
from femtotcp.phy.tun import TunDevice
from femtotcp.runtime import SimLoop
from femtotcp.wire import arp, ethernet, icmp4, ip_bytes, ipv4, mac_bytes

MAC_A = mac_bytes("02:00:00:00:00:01")
MAC_B = mac_bytes("02:00:00:00:00:02")
IP_A = ip_bytes("192.0.2.1")
IP_B = ip_bytes("192.0.2.2")


def arp_frame() -> bytes:
    return ethernet.build(ethernet.BROADCAST, MAC_A, ethernet.ETH_ARP,
                          arp.build(arp.REQUEST, MAC_A, IP_A, b"\0" * 6, IP_B))


def ping_frame(seq: int = 1) -> bytes:
    packet = ipv4.build(IP_A, IP_B, ipv4.PROTO_ICMP,
                        icmp4.build_echo(icmp4.ECHO_REQUEST, 0x1234, seq, b"x" * 32))
    return ethernet.build(MAC_B, MAC_A, ethernet.ETH_IPV4, packet)


def global_header(order: str = "<", magic: int = 0xA1B2C3D4, snaplen: int = 65535,
                  linktype: int = 1, major: int = 2) -> bytes:
    return struct.pack(order + "IHHiIII", magic, major, 4, 0, 0, snaplen, linktype)


def record(data: bytes, order: str = "<", sec: int = 1, frac: int = 0,
           caplen: int | None = None, origlen: int | None = None) -> bytes:
    caplen = len(data) if caplen is None else caplen
    origlen = len(data) if origlen is None else origlen
    return struct.pack(order + "IIII", sec, frac, caplen, origlen) + data


# -- writer + reader round trips ---------------------------------------------------
def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "a.pcap"
    frames = [arp_frame(), ping_frame(1), ping_frame(2)]
    with PcapWriter(path) as w:
        for i, f in enumerate(frames):
            w.write(f, ts=1000.25 + i)
        assert w.packets == 3
    with PcapReader(path) as r:
        got = list(r)
        assert r.linktype == LINKTYPE_ETHERNET and r.byteorder == "little"
        # tcpdump's default snaplen: a 64 KB TSO/GRO super-frame is kept whole
        assert not r.nanosecond and r.snaplen == MAX_SNAPLEN == 262144
    assert [f for _, f in got] == frames
    assert [ts for ts, _ in got] == pytest.approx([1000.25, 1001.25, 1002.25])


def test_nanosecond_writer(tmp_path: Path) -> None:
    path = tmp_path / "ns.pcap"
    with PcapWriter(path, nanosecond=True) as w:
        w.write(b"\x01" * 20, ts=5.000000123)
    ts, frame = read_pcap(path)[0]
    assert frame == b"\x01" * 20
    assert ts == pytest.approx(5.000000123, abs=1e-9)
    assert PcapReader(path).nanosecond


def test_timestamp_rounding_carries_into_seconds() -> None:
    buf = io.BytesIO()
    w = PcapWriter(buf)
    w.write(b"x" * 14, ts=7.9999999)  # rounds to 8.000000, not 7 s + 1000000 us
    w.write(b"x" * 14, ts=-3.0)  # clamped to 0
    sec, usec = struct.unpack_from("<II", buf.getvalue(), 24)
    assert (sec, usec) == (8, 0)
    sec, usec = struct.unpack_from("<II", buf.getvalue(), 24 + 16 + 14)
    assert (sec, usec) == (0, 0)


def test_snaplen_truncates_but_keeps_original_length() -> None:
    buf = io.BytesIO()
    with PcapWriter(buf, snaplen=64) as w:
        w.write(b"y" * 100, ts=1.0)
    _, _, caplen, origlen = struct.unpack_from("<IIII", buf.getvalue(), 24)
    assert (caplen, origlen) == (64, 100)
    assert read_pcap(buf.getvalue()) == [(1.0, b"y" * 64)]


def test_writer_arguments_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="linktype"):
        PcapWriter(io.BytesIO(), linktype=105)
    with pytest.raises(ValueError, match="snaplen"):
        PcapWriter(io.BytesIO(), snaplen=0)
    w = PcapWriter(tmp_path / "c.pcap")
    w.close()
    w.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        w.write(b"z" * 14)


def test_caller_file_is_flushed_not_closed() -> None:
    buf = io.BytesIO()
    w = PcapWriter(buf)
    w.write(ping_frame())
    w.close()
    assert not buf.closed
    assert len(read_pcap(buf.getvalue())) == 1


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("magic,scale", [(0xA1B2C3D4, 1e-6), (0xA1B23C4D, 1e-9)])
def test_reader_byte_orders_and_resolutions(order: str, magic: int, scale: float) -> None:
    data = global_header(order, magic, linktype=101) + record(b"\x45" + b"\0" * 19, order,
                                                              sec=3, frac=500)
    r = PcapReader(io.BytesIO(data))
    assert r.byteorder == ("little" if order == "<" else "big")
    assert r.linktype == LINKTYPE_RAW
    [(ts, frame)] = list(r)
    assert ts == pytest.approx(3 + 500 * scale)
    assert frame == b"\x45" + b"\0" * 19


def test_scapy_reads_ours_and_we_read_scapys(tmp_path: Path, scapy: ModuleType) -> None:
    rdpcap, wrpcap, Ether = scapy.rdpcap, scapy.wrpcap, scapy.Ether

    ours = tmp_path / "ours.pcap"
    with PcapWriter(ours) as w:
        w.write(ping_frame(), ts=1.5)
    pkts = rdpcap(str(ours))
    assert bytes(pkts[0]) == ping_frame()
    assert float(pkts[0].time) == pytest.approx(1.5)

    theirs = tmp_path / "theirs.pcap"
    wrpcap(str(theirs), [Ether(arp_frame())], nano=True)
    [(_, frame)] = read_pcap(theirs)
    assert frame == arp_frame()


# -- hostile files ---------------------------------------------------------------
HOSTILE = {
    "empty": (b"", "only 0 bytes"),
    "bad magic": (b"\xde\xad\xbe\xef" + b"\0" * 20, "bad magic 0xefbeadde"),
    "pcapng": (struct.pack("<I", 0x0A0D0D0A) + b"\0" * 28, "pcapng"),
    "short global header": (global_header()[:20], "truncated global header"),
    "version 1": (global_header(major=1), "unsupported pcap version"),
    "short record header": (global_header() + b"\0" * 10, "truncated record header"),
    "short record": (global_header() + record(b"abc", caplen=10), "truncated record: 3 of 10"),
    "caplen over snaplen": (global_header(snaplen=100) + record(b"a" * 101), "exceeds the snaplen"),
    "caplen over cap": (global_header(snaplen=0x7FFFFFFF)
                        + struct.pack("<IIII", 0, 0, MAX_RECORD + 1, MAX_RECORD + 1),
                        "limit"),
    "caplen 4G": (global_header(snaplen=0) + struct.pack("<IIII", 0, 0, 0xFFFFFFFF, 1), "limit"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_files_raise_value_error(name: str) -> None:
    data, message = HOSTILE[name]
    with pytest.raises(ValueError, match=message):
        read_pcap(data)


def test_error_names_record_and_offset() -> None:
    data = global_header() + record(b"a" * 20) + record(b"b" * 5, caplen=9)
    with pytest.raises(ValueError, match="record 1 at offset 60"):
        read_pcap(data)


def test_good_records_before_a_bad_one_are_yielded() -> None:
    data = global_header() + record(b"a" * 20) + b"\x01\x02"
    r = PcapReader(io.BytesIO(data))
    assert next(r)[1] == b"a" * 20
    with pytest.raises(ValueError):
        next(r)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(min_value=0, max_value=400),
       st.integers(min_value=0, max_value=255))
def test_mutated_files_never_raise_anything_but_value_error(
        tail: bytes, pos: int, value: int) -> None:
    data = bytearray(global_header() + record(ping_frame()) + record(arp_frame()) + tail)
    if pos < len(data):
        data[pos] = value
    try:
        for _, frame in PcapReader(io.BytesIO(bytes(data))):
            assert len(frame) <= MAX_RECORD
    except ValueError:
        pass


# -- capturing devices -------------------------------------------------------------
def test_attach_records_both_directions_with_loop_clock() -> None:
    loop = SimLoop(start=100.0)
    wire = Wire(loop, latency=0.5)
    got: list[bytes] = []
    wire.b.set_receiver(got.append)
    buf = io.BytesIO()
    w = PcapWriter(buf, clock=loop.now)
    w.attach(wire.a)
    w.attach(wire.b)
    w.attach(wire.a)  # twice is once
    wire.a.send(ping_frame())
    loop.run()
    assert got == [ping_frame()]
    records = read_pcap(buf.getvalue())
    assert records == [(100.0, ping_frame()), (100.5, ping_frame())]  # sent, then received

    w.detach(wire.b)
    wire.a.send(arp_frame())
    loop.run()
    assert len(read_pcap(buf.getvalue())) == 3
    w.close()
    wire.a.send(arp_frame())  # captures are gone after close: the device must not care
    loop.run()
    assert len(read_pcap(buf.getvalue())) == 3


def test_capture_after_close_is_counted_not_raised() -> None:
    loop = SimLoop()
    wire = Wire(loop)
    w = PcapWriter(io.BytesIO())
    w.attach(wire.a)
    capture = wire.a._captures[0]
    w.close()
    capture(b"q" * 14, True)  # a straggler already in flight
    assert w.dropped_after_close == 1


def test_capture_write_error_does_not_reach_the_device() -> None:
    class Broken(io.BytesIO):
        fail = False

        def write(self, data: object) -> int:  # type: ignore[override]
            if self.fail:
                raise OSError(28, "No space left on device")
            return super().write(data)  # type: ignore[arg-type]

    loop = SimLoop()
    wire = Wire(loop)
    f = Broken()
    w = PcapWriter(f)
    w.attach(wire.a)
    f.fail = True
    wire.a.send(ping_frame())
    assert w.write_errors == 1


def test_attach_refuses_mismatched_link_type() -> None:
    loop = SimLoop()
    wire = Wire(loop)
    with pytest.raises(ValueError, match="linktype=101|linktype 101"):
        PcapWriter(io.BytesIO(), linktype=LINKTYPE_RAW).attach(wire.a)

    raw = Wire(loop).a
    raw.raw_ip = True
    with pytest.raises(ValueError, match="raw IP"):
        PcapWriter(io.BytesIO()).attach(raw)
    assert TunDevice.raw_ip


# -- tshark reads what we write ------------------------------------------------------
def tshark_lines(path: Path) -> list[str]:
    tshark = require_program("tshark")
    res = subprocess.run([tshark, "-r", str(path), "-T", "fields", "-e", "frame.protocols"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return [line for line in res.stdout.splitlines() if line.strip()]


def test_tshark_reads_file_while_it_is_still_open(tmp_path: Path) -> None:
    path = tmp_path / "live.pcap"
    w = PcapWriter(path)
    w.write(arp_frame(), ts=1.0)
    w.write(ping_frame(), ts=2.0)
    lines = tshark_lines(path)  # no close, no flush: each record is already on disk
    assert len(lines) == 2
    assert "arp" in lines[0] and "icmp" in lines[1]
    w.write(ping_frame(2), ts=3.0)
    assert len(tshark_lines(path)) == 3
    w.close()


def test_tshark_reads_raw_ip(tmp_path: Path) -> None:
    path = tmp_path / "raw.pcap"
    with PcapWriter(path, linktype=LINKTYPE_RAW, nanosecond=True) as w:
        w.write(ping_frame()[14:], ts=1.0)
    [line] = tshark_lines(path)
    assert "ip" in line and "icmp" in line


def test_tshark_agrees_on_timestamps(tmp_path: Path) -> None:
    tshark = require_program("tshark")
    path = tmp_path / "ts.pcap"
    with PcapWriter(path) as w:
        w.write(ping_frame(), ts=1234.567891)
    res = subprocess.run([tshark, "-r", str(path), "-T", "fields", "-e", "frame.time_epoch"],
                         capture_output=True, text=True, timeout=60)
    assert float(res.stdout.strip()) == pytest.approx(1234.567891, abs=1e-6)


# -- replay device -------------------------------------------------------------------
def test_pcap_device_replays_one_frame_per_loop_turn(tmp_path: Path) -> None:
    path = tmp_path / "replay.pcap"
    frames = [arp_frame(), ping_frame(1), ping_frame(2)]
    with PcapWriter(path) as w:
        for f in frames:
            w.write(f, ts=1.0)
    loop = SimLoop()
    dev = PcapDevice(path, loop)
    got: list[bytes] = []
    dev.set_receiver(got.append)
    assert not dev.raw_ip and not dev.done
    dev.start()
    loop.step()
    assert got == frames[:1]  # one per turn, so replies can interleave
    loop.run()
    assert got == frames and dev.done and dev.error is None
    dev.send(b"reply" * 4)
    assert dev.counters["tx_frames"] == 1 and dev.counters["rx_frames"] == 3


def test_pcap_device_stops_at_a_bad_record() -> None:
    data = global_header(linktype=101) + record(b"\x45" * 20) + b"\x00\x01"
    loop = SimLoop()
    dev = PcapDevice(io.BytesIO(data), loop)
    assert dev.raw_ip
    got: list[bytes] = []
    dev.set_receiver(got.append)
    dev.start()
    loop.run()
    assert got == [b"\x45" * 20]
    assert dev.done and isinstance(dev.error, ValueError)
    assert dev.counters["rx_bad_file"] == 1


def test_pcap_device_refuses_other_link_types() -> None:
    with pytest.raises(ValueError, match="link type 105"):
        PcapDevice(io.BytesIO(global_header(linktype=105)), SimLoop())
