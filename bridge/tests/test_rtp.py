"""RTP packets, the per-call receiver (order, duplicates, loss, SSRC changes) and the sender."""

from __future__ import annotations

import random
import struct

import pytest

from centralita.media.rtp import (
    FRAME_BYTES,
    RtpExtension,
    RtpPacket,
    RtpReceiver,
    RtpSender,
    parse,
    sequence_delta,
)

SSRC = 0x11223344
FRAME = bytes(range(FRAME_BYTES))


def datagram(sequence: int, *, ssrc: int = SSRC, payload_type: int = 0, payload: bytes = FRAME) -> bytes:
    return RtpPacket(payload_type, sequence, sequence * FRAME_BYTES % 2**32, ssrc, payload).to_bytes()


def sequences(packets: list[RtpPacket]) -> list[int]:
    return [packet.sequence for packet in packets]


class ScriptedRandom(random.Random):
    """A Random whose getrandbits returns the given values in order, to put the sender's start where needed."""

    def __init__(self, *values: int) -> None:
        super().__init__(0)
        self._values = list(values)

    def getrandbits(self, k: int, /) -> int:
        return self._values.pop(0)


# Packets: layout, round trip, garbage.


def test_plain_packet_wire_layout() -> None:
    packet = RtpPacket(payload_type=0, sequence=0x1234, timestamp=0x01020304, ssrc=0xDEADBEEF, payload=b"\xff\x7f")
    assert packet.to_bytes() == bytes.fromhex("80001234 01020304 deadbeef ff7f")


def test_full_packet_wire_layout() -> None:
    packet = RtpPacket(
        payload_type=101,
        sequence=65535,
        timestamp=0xFFFFFFFF,
        ssrc=1,
        payload=b"\xaa",
        marker=True,
        csrcs=(2, 3),
        extension=RtpExtension(0xBEDE, b"\x10\x20\x30\x40"),
        padding=3,
    )
    expected = bytes.fromhex("b2e5ffff ffffffff 00000001 00000002 00000003 bede0001 10203040 aa 000003")
    assert packet.to_bytes() == expected


@pytest.mark.parametrize(
    "packet",
    [
        RtpPacket(0, 0, 0, 0),
        RtpPacket(0, 65535, 2**32 - 1, 2**32 - 1, FRAME),
        RtpPacket(0, 7, 1120, SSRC, FRAME, marker=True),
        RtpPacket(127, 1, 2, 3, b"x", csrcs=tuple(range(15))),
        RtpPacket(0, 1, 2, 3, FRAME, extension=RtpExtension(1)),
        RtpPacket(0, 1, 2, 3, FRAME, extension=RtpExtension(0xFFFF, bytes(8)), padding=255),
        RtpPacket(8, 1, 2, 3, b"", padding=1),
    ],
)
def test_round_trip(packet: RtpPacket) -> None:
    assert parse(packet.to_bytes()) == packet


def test_parse_reads_each_field() -> None:
    data = bytes.fromhex("b2e5ffff ffffffff 00000001 00000002 00000003 bede0001 10203040 aa 000003")
    assert parse(data) == RtpPacket(
        payload_type=101,
        sequence=65535,
        timestamp=0xFFFFFFFF,
        ssrc=1,
        payload=b"\xaa",
        marker=True,
        csrcs=(2, 3),
        extension=RtpExtension(0xBEDE, b"\x10\x20\x30\x40"),
        padding=3,
    )


HEADER = bytes.fromhex("80001234 01020304 deadbeef")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(HEADER[:11], id="shorter-than-header"),
        pytest.param(bytes([0x00]) + HEADER[1:], id="version-0"),
        pytest.param(bytes([0x40]) + HEADER[1:], id="version-1"),
        pytest.param(bytes([0xC0]) + HEADER[1:], id="version-3"),
        pytest.param(bytes([0x81]) + HEADER[1:] + b"\x00\x00\x00", id="csrc-overrun"),
        pytest.param(bytes([0x8F]) + HEADER[1:] + bytes(56), id="csrc-overrun-15"),
        pytest.param(bytes([0x90]) + HEADER[1:] + b"\xbe\xde\x00", id="extension-header-overrun"),
        pytest.param(bytes([0x90]) + HEADER[1:] + b"\xbe\xde\x00\x02" + bytes(7), id="extension-overrun"),
        pytest.param(bytes([0xA0]) + HEADER[1:] + b"\xff\xff\x00", id="padding-zero"),
        pytest.param(bytes([0xA0]) + HEADER[1:] + b"\xff\xff\x04", id="padding-longer-than-payload"),
        pytest.param(bytes([0xA1]) + HEADER[1:] + bytes(4) + b"\x05", id="padding-into-csrc"),
    ],
)
def test_garbage_is_none(data: bytes) -> None:
    assert parse(data) is None


def test_padding_exactly_filling_the_payload_is_valid() -> None:
    packet = parse(bytes([0xA0]) + HEADER[1:] + b"\x00\x00\x03")
    assert packet is not None
    assert packet.payload == b""
    assert packet.padding == 3


def test_random_garbage_never_raises() -> None:
    rng = random.Random(3550)
    for _ in range(5000):
        data = bytearray(rng.randbytes(rng.randrange(0, 64)))
        if data and rng.random() < 0.7:
            data[0] = 0x80 | (data[0] & 0x3F)  # mostly version 2, to reach the deeper checks
        packet = parse(bytes(data))
        if packet is not None:
            assert packet.to_bytes()[:12] == bytes(data[:12])


@pytest.mark.parametrize(
    "fields",
    [
        {"payload_type": 128},
        {"payload_type": -1},
        {"sequence": 65536},
        {"timestamp": 2**32},
        {"ssrc": -1},
        {"csrcs": tuple(range(16))},
        {"csrcs": (2**32,)},
        {"padding": 256},
    ],
)
def test_building_invalid_fields_raises(fields: dict[str, object]) -> None:
    values: dict[str, object] = {"payload_type": 0, "sequence": 0, "timestamp": 0, "ssrc": 0, **fields}
    with pytest.raises(ValueError, match=r"must|at most"):
        RtpPacket(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(("profile", "data"), [(0x10000, b""), (-1, b""), (1, b"abc")])
def test_invalid_extension_raises(profile: int, data: bytes) -> None:
    with pytest.raises(ValueError, match="must"):
        RtpExtension(profile, data)


@pytest.mark.parametrize(
    ("sequence", "reference", "delta"),
    [(5, 5, 0), (6, 5, 1), (4, 5, -1), (0, 65535, 1), (65535, 0, -1), (2, 65534, 4), (32767, 0, 32767)],
)
def test_sequence_delta_wraps(sequence: int, reference: int, delta: int) -> None:
    assert sequence_delta(sequence, reference) == delta


# Receiver.


def test_in_order_packets_go_straight_through() -> None:
    receiver = RtpReceiver()
    for sequence in range(100, 110):
        released = receiver.receive(datagram(sequence))
        assert sequences(released) == [sequence]
        assert released[0].payload == FRAME
    stats = receiver.stats
    assert (stats.datagrams, stats.released, stats.lost) == (10, 10, 0)
    assert receiver.ssrc == SSRC


def test_wraparound_at_65535() -> None:
    receiver = RtpReceiver()
    released = [seq for s in (65533, 65534, 65535, 0, 1, 2) for seq in sequences(receiver.receive(datagram(s)))]
    assert released == [65533, 65534, 65535, 0, 1, 2]
    assert receiver.stats.late == 0


def test_reordering_across_the_wrap() -> None:
    receiver = RtpReceiver()
    assert sequences(receiver.receive(datagram(65534))) == [65534]
    assert sequences(receiver.receive(datagram(0))) == []
    assert sequences(receiver.receive(datagram(1))) == []
    assert sequences(receiver.receive(datagram(65535))) == [65535, 0, 1]
    assert receiver.stats.lost == 0


def test_reordered_packets_are_released_in_order() -> None:
    receiver = RtpReceiver()
    assert sequences(receiver.receive(datagram(10))) == [10]
    assert sequences(receiver.receive(datagram(12))) == []
    assert sequences(receiver.receive(datagram(13))) == []
    assert sequences(receiver.receive(datagram(11))) == [11, 12, 13]
    assert sequences(receiver.receive(datagram(14))) == [14]
    stats = receiver.stats
    assert (stats.released, stats.lost, stats.late, stats.duplicates) == (5, 0, 0, 0)


def test_loss_is_given_up_once_the_buffer_is_full() -> None:
    receiver = RtpReceiver(reorder_depth=3)
    receiver.receive(datagram(10))
    assert [sequences(receiver.receive(datagram(s))) for s in (12, 13, 14)] == [[], [], []]
    assert sequences(receiver.receive(datagram(15))) == [12, 13, 14, 15]
    assert receiver.receive(datagram(11)) == []  # too late now
    stats = receiver.stats
    assert (stats.lost, stats.late, stats.released) == (1, 1, 5)


def test_reorder_depth_zero_never_waits() -> None:
    receiver = RtpReceiver(reorder_depth=0)
    receiver.receive(datagram(10))
    assert sequences(receiver.receive(datagram(12))) == [12]
    assert receiver.receive(datagram(11)) == []
    assert (receiver.stats.lost, receiver.stats.late) == (1, 1)


def test_duplicates_are_dropped() -> None:
    receiver = RtpReceiver()
    assert sequences(receiver.receive(datagram(10))) == [10]
    assert receiver.receive(datagram(10)) == []  # already released
    assert receiver.receive(datagram(12)) == []
    assert receiver.receive(datagram(12)) == []  # already buffered
    assert sequences(receiver.receive(datagram(11))) == [11, 12]
    stats = receiver.stats
    assert (stats.duplicates, stats.late, stats.released) == (2, 0, 3)


def test_other_payload_types_take_their_place_but_are_not_released() -> None:
    receiver = RtpReceiver()
    assert sequences(receiver.receive(datagram(10))) == [10]
    assert receiver.receive(datagram(11, payload_type=101, payload=b"\x01\x00\x00\xa0")) == []
    assert sequences(receiver.receive(datagram(12))) == [12]  # 11 was not a gap
    stats = receiver.stats
    assert (stats.wrong_payload_type, stats.lost, stats.released) == (1, 0, 2)


def test_multiplexed_rtcp_does_not_disturb_the_stream() -> None:
    receiver = RtpReceiver()
    receiver.receive(datagram(10))
    # An RTCP receiver report: packet type 201 reads as marker + payload type 73, with other fields as "SSRC".
    rtcp = struct.pack("!BBHI", 0x81, 201, 7, 0x55667788) + bytes(24)
    assert receiver.receive(rtcp) == []
    assert sequences(receiver.receive(datagram(11))) == [11]
    stats = receiver.stats
    assert (stats.wrong_payload_type, stats.ssrc_changes) == (1, 0)


def test_malformed_datagrams_are_counted() -> None:
    receiver = RtpReceiver()
    assert receiver.receive(b"hello") == []
    assert receiver.receive(b"") == []
    assert receiver.ssrc is None
    assert sequences(receiver.receive(datagram(10))) == [10]
    assert (receiver.stats.malformed, receiver.stats.datagrams) == (2, 3)


def test_ssrc_change_resets_and_accepts_the_new_stream() -> None:
    receiver = RtpReceiver()
    receiver.receive(datagram(10))
    assert receiver.receive(datagram(12)) == []
    # The new stream's numbering is unrelated; what the old stream still held is released first.
    released = receiver.receive(datagram(40000, ssrc=0x99))
    assert [(p.ssrc, p.sequence) for p in released] == [(SSRC, 12), (0x99, 40000)]
    assert sequences(receiver.receive(datagram(40001, ssrc=0x99))) == [40001]
    assert receiver.ssrc == 0x99
    stats = receiver.stats
    assert (stats.ssrc_changes, stats.lost, stats.released) == (1, 1, 4)


def test_sequence_restart_within_one_ssrc() -> None:
    receiver = RtpReceiver()
    receiver.receive(datagram(10))
    receiver.receive(datagram(11))
    assert receiver.receive(datagram(20000)) == []  # far off: held until its successor confirms it
    assert sequences(receiver.receive(datagram(20001))) == [20000, 20001]
    assert sequences(receiver.receive(datagram(20002))) == [20002]
    stats = receiver.stats
    assert (stats.sequence_restarts, stats.sequence_jumps) == (1, 0)


def test_single_stray_sequence_is_dropped() -> None:
    receiver = RtpReceiver()
    receiver.receive(datagram(10))
    assert receiver.receive(datagram(30000)) == []
    assert sequences(receiver.receive(datagram(11))) == [11]
    assert receiver.receive(datagram(9000)) == []
    assert receiver.drain() == []
    stats = receiver.stats
    assert (stats.sequence_jumps, stats.sequence_restarts, stats.released) == (2, 0, 2)


def test_drain_releases_what_waits_behind_a_gap() -> None:
    receiver = RtpReceiver()
    receiver.receive(datagram(10))
    receiver.receive(datagram(13))
    receiver.receive(datagram(12))
    assert sequences(receiver.drain()) == [12, 13]
    assert receiver.drain() == []
    assert receiver.stats.lost == 1


def test_stats_are_a_snapshot() -> None:
    receiver = RtpReceiver()
    before = receiver.stats
    receiver.receive(datagram(1))
    assert before.datagrams == 0
    assert receiver.stats.datagrams == 1


def test_negative_reorder_depth_is_refused() -> None:
    with pytest.raises(ValueError, match="reorder_depth"):
        RtpReceiver(reorder_depth=-1)


# Sender.


def test_sender_start_comes_from_the_injected_random() -> None:
    first = RtpSender(random.Random(42))
    second = RtpSender(random.Random(42))
    other = RtpSender(random.Random(43))
    assert (first.ssrc, first.sequence, first.timestamp) == (second.ssrc, second.sequence, second.timestamp)
    assert (first.ssrc, first.sequence, first.timestamp) != (other.ssrc, other.sequence, other.timestamp)


def test_sender_sequence_timestamp_and_marker() -> None:
    sender = RtpSender(ScriptedRandom(0xCAFEBABE, 1000, 5000))
    packets = [parse(sender.build(bytes([n]) * FRAME_BYTES)) for n in range(4)]
    assert all(packet is not None for packet in packets)
    fields = [(p.sequence, p.timestamp, p.marker, p.ssrc, p.payload_type, p.payload[0]) for p in packets if p]
    assert fields == [
        (1000, 5000, True, 0xCAFEBABE, 0, 0),
        (1001, 5160, False, 0xCAFEBABE, 0, 1),
        (1002, 5320, False, 0xCAFEBABE, 0, 2),
        (1003, 5480, False, 0xCAFEBABE, 0, 3),
    ]


def test_sender_wraps_sequence_and_timestamp() -> None:
    sender = RtpSender(ScriptedRandom(7, 65534, 2**32 - 200))
    packets = [parse(sender.build(FRAME)) for _ in range(3)]
    assert [(p.sequence, p.timestamp) for p in packets if p] == [(65534, 2**32 - 200), (65535, 2**32 - 40), (0, 120)]


def test_marker_after_talkspurt_start() -> None:
    sender = RtpSender(ScriptedRandom(7, 100, 0))
    sender.build(FRAME)
    sender.build(FRAME)
    sender.start_talkspurt()
    third = parse(sender.build(FRAME))
    fourth = parse(sender.build(FRAME))
    assert third is not None
    assert fourth is not None
    assert (third.sequence, third.timestamp, third.marker) == (102, 320, True)
    assert (fourth.sequence, fourth.timestamp, fourth.marker) == (103, 480, False)


def test_idle_frames_advance_the_timestamp_only() -> None:
    sender = RtpSender(ScriptedRandom(7, 100, 0))
    sender.build(FRAME)
    sender.start_talkspurt(idle_frames=5)
    packet = parse(sender.build(FRAME))
    assert packet is not None
    assert (packet.sequence, packet.timestamp, packet.marker) == (101, 160 + 5 * 160, True)


def test_sender_refuses_other_frame_sizes() -> None:
    sender = RtpSender(random.Random(1))
    with pytest.raises(ValueError, match="160 bytes"):
        sender.build(bytes(159))
    with pytest.raises(ValueError, match="idle_frames"):
        sender.start_talkspurt(idle_frames=-1)
    packet = parse(sender.build(FRAME))
    assert packet is not None
    assert packet.marker  # the refused calls consumed neither the first packet's marker nor its sequence
    assert packet.sequence == RtpSender(random.Random(1)).sequence


def test_built_packets_are_byte_for_byte_what_rtp_packet_writes() -> None:
    sender = RtpSender(ScriptedRandom(0xCAFEBABE, 65535, 2**32 - 160))
    first = sender.build(FRAME)
    second = sender.build(bytes(range(FRAME_BYTES)))
    assert first == RtpPacket(0, 65535, 2**32 - 160, 0xCAFEBABE, FRAME, marker=True).to_bytes()
    assert second == RtpPacket(0, 0, 0, 0xCAFEBABE, bytes(range(FRAME_BYTES))).to_bytes()
