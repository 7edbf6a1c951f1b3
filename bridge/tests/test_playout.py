"""A call's outgoing audio: the frame queue, the RTP packets per 20 ms slot, and barge-in's arithmetic.

Exact: no I/O and no real time. The slots come from a ``Pacer`` on a fake clock where the timing matters.
"""

from __future__ import annotations

import random
import threading

import pytest

from centralita.media.pacer import Pacer
from centralita.media.playout import BargeIn, Playout, PlayoutQueue
from centralita.media.rtp import FRAME_BYTES, RtpPacket, parse

START = 5000.0


class FakeClock:
    """A monotonic clock that only moves when slept on or advanced."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


def ms(milliseconds: int, byte: int = 0x10) -> bytes:
    """``milliseconds`` of PCMU audio (8 bytes a millisecond), every byte ``byte``."""
    return bytes([byte]) * (milliseconds * 8)


def packet(data: bytes | None) -> RtpPacket:
    assert data is not None
    parsed = parse(data)
    assert parsed is not None
    return parsed


def play(playout: Playout, slots: int) -> list[bytes | None]:
    return [playout.next_frame() for _ in range(slots)]


# The frame queue.


def test_push_splits_into_frames_and_keeps_the_remainder() -> None:
    queue = PlayoutQueue()
    audio = bytes(range(256)) + bytes(range(144))  # 400 bytes: two frames and 80 bytes over
    queue.push(audio)
    assert queue.queued_frames == 2
    assert queue.queued_ms == 50.0
    assert queue.pop() == audio[:160]
    assert queue.pop() == audio[160:320]
    assert queue.pop() is None  # the 80 bytes left are not a frame yet
    queue.push(b"\x01" * 80)
    assert queue.pop() == audio[320:] + b"\x01" * 80
    assert queue.pop() is None
    assert queue.queued_ms == 0.0


def test_small_pushes_make_a_frame_once_enough_arrived() -> None:
    queue = PlayoutQueue()
    for _ in range(15):
        queue.push(b"\x02" * 10)
        assert queue.pop() is None
    queue.push(b"\x02" * 10)
    assert queue.pop() == b"\x02" * 160
    queue.push(b"")
    assert queue.pop() is None


def test_bytes_come_out_in_order_whatever_the_chunking() -> None:
    rng = random.Random(20)
    audio = rng.randbytes(160 * 300)
    queue = PlayoutQueue()
    played = bytearray()
    position = 0
    while position < len(audio):
        size = rng.randrange(0, 700)
        queue.push(audio[position : position + size])
        position += size
        while (frame := queue.pop()) is not None:
            assert len(frame) == 160
            played += frame
    assert bytes(played) == audio
    assert queue.frames_played == 300


def test_flush_drops_frames_and_remainder_at_once() -> None:
    queue = PlayoutQueue()
    queue.push(bytes(500))  # three frames and 20 bytes: 62.5 ms
    assert queue.flush() == 62.5
    assert queue.pop() is None
    assert queue.queued_ms == 0.0
    queue.push(bytes(140))  # the dropped 20 bytes must not complete this into a frame
    assert queue.pop() is None
    assert queue.flush() == 17.5
    assert queue.flush() == 0.0


def test_played_ms_counts_only_popped_frames() -> None:
    queue = PlayoutQueue()
    queue.push(bytes(160 * 10))
    for _ in range(3):
        queue.pop()
    assert queue.frames_played == 3
    assert queue.played_ms == 60
    assert queue.flush() == 140.0  # barge-in: 7 frames received but never played
    assert queue.played_ms == 60
    queue.push(bytes(320))
    queue.pop()
    assert queue.played_ms == 80
    assert queue.pop() is not None
    assert queue.pop() is None  # an empty pop is not counted
    assert queue.played_ms == 100


def test_pad_remainder_completes_the_last_frame_with_silence() -> None:
    queue = PlayoutQueue()
    queue.push(b"\x05" * 260)
    assert queue.pad_remainder() == 60
    assert queue.pop() == b"\x05" * 160
    assert queue.pop() == b"\x05" * 100 + b"\xff" * 60
    assert queue.pad_remainder() == 0
    assert queue.pop() is None


# RTP out of the queue.


def test_frames_leave_as_consecutive_rtp_packets_carrying_the_audio_in_order() -> None:
    playout = Playout(random.Random(1))
    audio = bytes(range(256)) * 5  # 1280 bytes: 8 frames
    playout.push("item_a", audio)
    packets = [packet(data) for data in play(playout, 8)]
    assert b"".join(p.payload for p in packets) == audio
    assert [p.payload_type for p in packets] == [0] * 8
    assert [p.marker for p in packets] == [True] + [False] * 7  # one talkspurt
    first = packets[0]
    assert [p.sequence for p in packets] == [(first.sequence + n) & 0xFFFF for n in range(8)]
    assert [p.timestamp for p in packets] == [(first.timestamp + 160 * n) & 0xFFFFFFFF for n in range(8)]
    assert {p.ssrc for p in packets} == {playout.ssrc}
    assert playout.next_frame() is None
    assert playout.played_ms == 160


def test_silent_slots_move_the_timestamp_and_the_next_packet_starts_a_talkspurt() -> None:
    playout = Playout(random.Random(2))
    playout.push("item_a", ms(40))
    first, second = (packet(data) for data in play(playout, 2))
    assert play(playout, 5) == [None] * 5  # 100 ms of silence: nothing is sent
    playout.push("item_b", ms(20))
    third = packet(playout.next_frame())
    assert third.marker
    assert third.sequence == (second.sequence + 1) & 0xFFFF  # the sequence counts packets only
    assert third.timestamp == (first.timestamp + 160 * 7) & 0xFFFFFFFF  # the timestamp counts every slot


def test_skipped_slots_count_as_silence() -> None:
    playout = Playout(random.Random(3))
    playout.push("item_a", ms(60))
    first = packet(playout.next_frame())
    second = packet(playout.next_frame(skipped=4))  # the clock fell behind and skipped 4 slots
    assert second.marker
    assert second.timestamp == (first.timestamp + 160 * 5) & 0xFFFFFFFF
    third = packet(playout.next_frame())
    assert not third.marker
    assert third.timestamp == (first.timestamp + 160 * 6) & 0xFFFFFFFF


def test_the_rtp_timestamp_follows_the_slot_grid_through_pauses_and_stalls() -> None:
    """On a fake clock: whatever the gaps and stalls, each packet is stamped with its own slot's time."""
    clock = FakeClock()
    pacer = Pacer(clock, clock.sleep, max_lag_frames=3)
    playout = Playout(random.Random(4))
    rng = random.Random(5)
    sent: list[tuple[int, RtpPacket]] = []
    for _ in range(400):
        if rng.random() < 0.3:
            playout.push("item", ms(rng.choice((20, 40, 100, 250))))
        if rng.random() < 0.02:
            clock.advance(rng.choice((0.05, 0.2, 1.0)))  # the thread stalled: slots are skipped
        skipped = pacer.wait()
        data = playout.next_frame(skipped)
        if data is not None:
            sent.append((pacer.frames - 1, packet(data)))  # the slot this packet went out in
    assert len(sent) > 100
    assert pacer.late_frames > 0  # the stalls did skip slots
    first_slot, first = sent[0]
    for slot, sent_packet in sent:
        assert sent_packet.timestamp == (first.timestamp + 160 * (slot - first_slot)) & 0xFFFFFFFF
    assert [p.sequence for _, p in sent] == [(first.sequence + n) & 0xFFFF for n in range(len(sent))]


def test_pad_remainder_plays_the_end_of_an_item_padded_with_silence() -> None:
    playout = Playout(random.Random(6))
    playout.push("item_a", b"\x05" * 200)
    assert packet(playout.next_frame()).payload == b"\x05" * 160
    assert playout.next_frame() is None  # 40 bytes are not a frame yet
    assert playout.pad_remainder() == 120
    assert packet(playout.next_frame()).payload == b"\x05" * 40 + b"\xff" * 120
    assert playout.pad_remainder() == 0


# Barge-in: what was dropped, and what the caller heard of the item being played.


def test_barge_in_drops_the_queue_and_reports_what_was_heard() -> None:
    playout = Playout(random.Random(7))
    playout.push("item_a", ms(1000))
    play(playout, 10)  # 200 ms heard
    assert playout.barge_in() == BargeIn(dropped_ms=800.0, item_id="item_a", audio_end_ms=200)
    assert playout.next_frame() is None
    assert playout.queued_ms == 0.0


def test_barge_in_before_any_audio_names_no_item() -> None:
    assert Playout(random.Random(8)).barge_in() == BargeIn(dropped_ms=0.0, item_id=None, audio_end_ms=0)


def test_barge_in_counts_the_remainder_as_dropped() -> None:
    playout = Playout(random.Random(9))
    playout.push("item_a", ms(100) + b"\x01" * 20)  # five frames and 20 bytes (2.5 ms)
    play(playout, 2)
    assert playout.barge_in() == BargeIn(dropped_ms=62.5, item_id="item_a", audio_end_ms=40)


def test_what_was_heard_never_exceeds_what_was_received() -> None:
    playout = Playout(random.Random(10))
    playout.push("item_a", b"\x05" * 250)  # 31.25 ms, padded to two frames at the item's end
    playout.pad_remainder()
    play(playout, 2)  # 40 ms played, 9 of them padding
    assert playout.barge_in() == BargeIn(dropped_ms=0.0, item_id="item_a", audio_end_ms=31)


def test_an_item_still_streaming_is_truncated_where_the_caller_was() -> None:
    playout = Playout(random.Random(11))
    playout.push("item_a", ms(100))
    play(playout, 3)  # 60 ms heard
    playout.push("item_a", ms(100))
    play(playout, 2)  # 100 ms heard
    assert playout.barge_in() == BargeIn(dropped_ms=100.0, item_id="item_a", audio_end_ms=100)


def test_the_item_being_heard_is_truncated_not_the_one_queued_behind_it() -> None:
    """A reply, a tool call and the next reply arrive faster than real time: the second item is queued while
    the first still plays. Barging in during the first item truncates the first, at the point heard (the
    arithmetic used to count the play since the second item arrived as heard of the second)."""
    playout = Playout(random.Random(12))
    playout.push("item_a", ms(400))
    play(playout, 5)  # 100 ms of item_a
    playout.push("item_b", ms(400))
    play(playout, 5)  # 200 ms of item_a; nothing of item_b
    assert playout.barge_in() == BargeIn(dropped_ms=600.0, item_id="item_a", audio_end_ms=200)


def test_the_next_item_once_the_first_was_heard_to_its_end() -> None:
    playout = Playout(random.Random(13))
    playout.push("item_a", ms(100))
    playout.push("item_b", ms(400))
    play(playout, 10)  # item_a whole (100 ms), then 100 ms of item_b
    assert playout.barge_in() == BargeIn(dropped_ms=300.0, item_id="item_b", audio_end_ms=100)


def test_an_item_not_started_yet_was_heard_for_0_ms() -> None:
    playout = Playout(random.Random(14))
    playout.push("item_a", ms(100))
    play(playout, 5)  # item_a whole
    playout.push("item_b", ms(100))
    assert playout.barge_in() == BargeIn(dropped_ms=100.0, item_id="item_b", audio_end_ms=0)


def test_many_items_each_keep_their_place() -> None:
    playout = Playout(random.Random(15))
    for index in range(50):
        playout.push(f"item_{index}", ms(60))
        play(playout, 2)  # 40 of each item's 60 ms; the rest waits
    # 50 items x 60 ms pushed, 100 frames (2000 ms) played: item 33 is being heard, 20 ms into it.
    assert playout.barge_in() == BargeIn(dropped_ms=1000.0, item_id="item_33", audio_end_ms=20)


def test_positions_start_afresh_after_a_barge_in() -> None:
    playout = Playout(random.Random(16))
    playout.push("item_a", ms(500))
    play(playout, 5)
    playout.barge_in()
    playout.push("item_b", ms(200))
    play(playout, 4)
    assert playout.barge_in() == BargeIn(dropped_ms=120.0, item_id="item_b", audio_end_ms=80)


def test_late_audio_of_an_interrupted_item_is_never_played() -> None:
    """The server may send more of a reply before it sees the caller speak: that audio must not play."""
    playout = Playout(random.Random(17))
    playout.push("item_a", ms(200))
    play(playout, 3)
    playout.barge_in()
    assert playout.push("item_a", ms(40)) is False
    assert playout.next_frame() is None
    assert playout.refused_ms == 40.0
    assert playout.push("item_b", ms(20)) is True  # the next reply plays
    assert packet(playout.next_frame()).payload == ms(20)


def test_items_queued_behind_the_interrupted_one_are_refused_too() -> None:
    playout = Playout(random.Random(18))
    playout.push("item_a", ms(100))
    playout.push("item_b", ms(100))
    playout.barge_in()
    assert playout.push("item_b", ms(20)) is False
    assert playout.next_frame() is None


def test_push_and_play_from_two_threads_keep_every_byte_in_order() -> None:
    playout = Playout(random.Random(19))
    audio = random.Random(20).randbytes(FRAME_BYTES * 2000)
    done = threading.Event()

    def push() -> None:
        for start in range(0, len(audio), 333):
            playout.push("item_a", audio[start : start + 333])
        playout.pad_remainder()
        done.set()

    pusher = threading.Thread(target=push)
    pusher.start()
    heard = bytearray()
    while not (done.is_set() and playout.queued_ms == 0):
        data = playout.next_frame()
        if data is not None:
            heard += packet(data).payload
    pusher.join()
    assert bytes(heard) == audio


def test_a_negative_skip_is_refused_and_loses_no_frame() -> None:
    playout = Playout(random.Random(21))
    playout.push("item_a", ms(20))
    with pytest.raises(ValueError, match="skipped must be 0 or more, not -1"):
        playout.next_frame(-1)
    assert packet(playout.next_frame()).payload == ms(20)
