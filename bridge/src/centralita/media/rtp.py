"""RTP (RFC 3550) for one call's audio: packets, and the per-call receive and send state.

Asterisk's external media channel exchanges plain RTP with the bridge over UDP: PCMU (payload type 0),
20 ms frames of 160 bytes. Anything can arrive on a UDP port, so ``parse`` trusts nothing and returns
None for garbage rather than raising, and the receiver puts packets back in order (UDP may reorder and
duplicate them) before their audio goes on to the Realtime API.
"""

from __future__ import annotations

import dataclasses
import random
import struct
from collections import deque
from dataclasses import dataclass

RTP_VERSION = 2
PCMU_PAYLOAD_TYPE = 0
FRAME_MS = 20
FRAME_BYTES = 160  # one 20 ms PCMU frame: 8000 samples/s x 0.020 s, one byte (and one timestamp tick) each

_HEADER = struct.Struct("!BBHII")  # V/P/X/CC, M/PT, sequence number, timestamp, SSRC
_EXTENSION_HEADER = struct.Struct("!HH")  # profile-defined id, length in 32-bit words
_MAX_CSRCS = 15
# Payload types 64-95 are where multiplexed RTCP (packet types 192-223) lands when read as RTP (RFC 5761).
_RTCP_CONFLICT = range(64, 96)
# RFC 3550 appendix A.1: how far a sequence number may run ahead (a long loss) or fall behind (a late
# packet) before it is taken for a jump in the numbering rather than part of the same run.
_MAX_DROPOUT = 3000
_MAX_MISORDER = 100
_RECENT_RELEASED = 64  # released sequence numbers remembered to tell duplicates from late packets


def _check_bits(name: str, value: int, bits: int) -> None:
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{name} must fit in {bits} bits (0..{(1 << bits) - 1}), not {value}")


def sequence_delta(sequence: int, reference: int) -> int:
    """How many steps ``sequence`` is ahead of ``reference`` (negative: behind), across the 16-bit wrap.

    65535 -> 0 is one step ahead, not 65535 behind: RTP sequence numbers wrap every 22 minutes at 50 packets
    per second, so a long call always crosses the wrap.
    """
    return ((sequence - reference + 0x8000) & 0xFFFF) - 0x8000


@dataclass(frozen=True, slots=True)
class RtpExtension:
    """An RTP header extension: 16 bits defined by profile and data in whole 32-bit words."""

    profile: int
    data: bytes = b""

    def __post_init__(self) -> None:
        _check_bits("extension profile", self.profile, 16)
        if len(self.data) % 4:
            raise ValueError(f"extension data must be whole 32-bit words, not {len(self.data)} bytes")
        _check_bits("extension length in words", len(self.data) // 4, 16)


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet. ``padding`` counts the padding bytes including the final count byte (0: no padding).

    Building validates every field, so ``to_bytes`` cannot produce a header that lies about its own length.
    """

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension: RtpExtension | None = None
    padding: int = 0

    def __post_init__(self) -> None:
        _check_bits("payload type", self.payload_type, 7)
        _check_bits("sequence", self.sequence, 16)
        _check_bits("timestamp", self.timestamp, 32)
        _check_bits("SSRC", self.ssrc, 32)
        if len(self.csrcs) > _MAX_CSRCS:
            raise ValueError(f"at most {_MAX_CSRCS} CSRCs fit in the header, not {len(self.csrcs)}")
        for csrc in self.csrcs:
            _check_bits("CSRC", csrc, 32)
        _check_bits("padding", self.padding, 8)

    def to_bytes(self) -> bytes:
        """The packet as sent on the wire."""
        first = RTP_VERSION << 6 | len(self.csrcs)
        if self.padding:
            first |= 0x20
        if self.extension is not None:
            first |= 0x10
        second = (0x80 if self.marker else 0) | self.payload_type
        parts = [
            _HEADER.pack(first, second, self.sequence, self.timestamp, self.ssrc),
            struct.pack(f"!{len(self.csrcs)}I", *self.csrcs),
        ]
        if self.extension is not None:
            parts.append(_EXTENSION_HEADER.pack(self.extension.profile, len(self.extension.data) // 4))
            parts.append(self.extension.data)
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes([self.padding]))
        return b"".join(parts)


def parse(data: bytes) -> RtpPacket | None:
    """Parse one datagram; None (never an exception) when it is not a well-formed RTP version 2 packet."""
    if len(data) < _HEADER.size:
        return None
    first, second, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
    if first >> 6 != RTP_VERSION:
        return None
    csrc_count = first & 0x0F
    offset = _HEADER.size + 4 * csrc_count
    if len(data) < offset:
        return None
    csrcs = struct.unpack_from(f"!{csrc_count}I", data, _HEADER.size)
    extension = None
    if first & 0x10:
        if len(data) < offset + _EXTENSION_HEADER.size:
            return None
        profile, words = _EXTENSION_HEADER.unpack_from(data, offset)
        start = offset + _EXTENSION_HEADER.size
        offset = start + 4 * words
        if len(data) < offset:
            return None
        extension = RtpExtension(profile, bytes(data[start:offset]))
    end = len(data)
    padding = 0
    if first & 0x20:
        padding = data[-1]
        # The count includes itself, so 0 is invalid, and padding cannot reach back into the header.
        if padding == 0 or offset + padding > end:
            return None
        end -= padding
    return RtpPacket(
        payload_type=second & 0x7F,
        sequence=sequence,
        timestamp=timestamp,
        ssrc=ssrc,
        payload=bytes(data[offset:end]),
        marker=bool(second & 0x80),
        csrcs=csrcs,
        extension=extension,
        padding=padding,
    )


@dataclass(slots=True)
class RtpReceiverStats:
    """What an RtpReceiver did with the datagrams it was given; every dropped one is counted under its reason."""

    datagrams: int = 0  # everything given to receive()
    released: int = 0  # PCMU packets handed on, in sequence order
    malformed: int = 0  # dropped: not an RTP version 2 packet
    wrong_payload_type: int = 0  # dropped: not PCMU (DTMF events, comfort noise, multiplexed RTCP)
    duplicates: int = 0  # dropped: a copy of a packet already buffered or released
    late: int = 0  # dropped: arrived after its sequence number had been given up for lost
    sequence_jumps: int = 0  # dropped: far out of sequence and not followed by its successor
    lost: int = 0  # sequence numbers skipped because they had not arrived in time (not packets dropped)
    ssrc_changes: int = 0  # times a new SSRC replaced the stream (state reset, new stream accepted)
    sequence_restarts: int = 0  # times the same SSRC restarted its numbering (two packets in a row far off)


class RtpReceiver:
    """Receive state for one call's incoming stream: hands on PCMU packets in sequence order.

    In-order packets go straight through. A gap holds later packets in a small reorder buffer; when more
    than ``reorder_depth`` packets wait behind it, the missing ones are given up for lost, so a lost packet
    costs at most ``reorder_depth`` frames of delay (60 ms by default) and a late one is dropped rather than
    played out of order. Packets of other payload types still take their place in the sequence (a DTMF event
    from the same source is not a gap) but are not handed on.
    """

    def __init__(self, reorder_depth: int = 3) -> None:
        if reorder_depth < 0:
            raise ValueError(f"reorder_depth must be 0 or more, not {reorder_depth}")
        self._depth = reorder_depth
        self._stats = RtpReceiverStats()
        self._ssrc: int | None = None
        self._next_sequence = 0
        self._buffer: dict[int, RtpPacket] = {}
        self._recent: deque[int] = deque(maxlen=_RECENT_RELEASED)
        self._jump_candidate: RtpPacket | None = None

    @property
    def stats(self) -> RtpReceiverStats:
        """A snapshot of the counters."""
        return dataclasses.replace(self._stats)

    @property
    def ssrc(self) -> int | None:
        """The SSRC of the stream being received; None before the first packet."""
        return self._ssrc

    def receive(self, datagram: bytes) -> list[RtpPacket]:
        """Take one datagram; return the PCMU packets it makes ready, in sequence order (often just itself)."""
        self._stats.datagrams += 1
        packet = parse(datagram)
        if packet is None:
            self._stats.malformed += 1
            return []
        if packet.payload_type in _RTCP_CONFLICT:
            # Multiplexed RTCP: its "SSRC" and "sequence" are other fields, so it must not touch the state.
            self._stats.wrong_payload_type += 1
            return []
        released: list[RtpPacket] = []
        if self._ssrc is None:
            self._begin(packet)
        elif packet.ssrc != self._ssrc:
            # A new source (Asterisk changes SSRC when the media path changes): finish the old stream and
            # start afresh on the new one rather than comparing unrelated sequence numbers.
            self._flush(released)
            self._stats.ssrc_changes += 1
            self._begin(packet)
        self._place(packet, released)
        return released

    def drain(self) -> list[RtpPacket]:
        """Release everything still buffered, giving up on the gaps: for when no more packets will come."""
        released: list[RtpPacket] = []
        self._flush(released)
        return released

    def _begin(self, packet: RtpPacket) -> None:
        self._ssrc = packet.ssrc
        self._next_sequence = packet.sequence
        self._buffer.clear()
        self._recent.clear()
        self._jump_candidate = None

    def _flush(self, released: list[RtpPacket]) -> None:
        self._drop_jump_candidate()
        while self._buffer:
            self._skip_gap(released)

    def _place(self, packet: RtpPacket, released: list[RtpPacket]) -> None:
        delta = sequence_delta(packet.sequence, self._next_sequence)
        if delta < -_MAX_MISORDER or delta > _MAX_DROPOUT:
            self._jump(packet, released)
            return
        self._drop_jump_candidate()
        if delta < 0:
            if packet.sequence in self._recent:
                self._stats.duplicates += 1
            else:
                self._stats.late += 1
            return
        if packet.sequence in self._buffer:
            self._stats.duplicates += 1
            return
        self._buffer[packet.sequence] = packet
        self._release_ready(released)
        if len(self._buffer) > self._depth:
            self._skip_gap(released)

    def _jump(self, packet: RtpPacket, released: list[RtpPacket]) -> None:
        """A packet far from the expected sequence: a stray, or the first of a restarted numbering.

        As in RFC 3550 appendix A.1, it takes a second packet that follows it to restart the sequence, so
        one stray packet cannot derail the stream.
        """
        candidate = self._jump_candidate
        if candidate is not None and packet.sequence == (candidate.sequence + 1) & 0xFFFF:
            self._jump_candidate = None
            self._flush(released)
            self._stats.sequence_restarts += 1
            self._begin(candidate)
            self._place(candidate, released)
            self._place(packet, released)
            return
        self._drop_jump_candidate()
        self._jump_candidate = packet

    def _drop_jump_candidate(self) -> None:
        if self._jump_candidate is not None:
            self._jump_candidate = None
            self._stats.sequence_jumps += 1

    def _release_ready(self, released: list[RtpPacket]) -> None:
        """Hand on the buffered packets that continue the sequence without a gap."""
        while (packet := self._buffer.pop(self._next_sequence, None)) is not None:
            self._next_sequence = (self._next_sequence + 1) & 0xFFFF
            self._recent.append(packet.sequence)
            if packet.payload_type == PCMU_PAYLOAD_TYPE:
                self._stats.released += 1
                released.append(packet)
            else:
                self._stats.wrong_payload_type += 1

    def _skip_gap(self, released: list[RtpPacket]) -> None:
        """Give up on the missing packets before the earliest buffered one, and release from there."""
        earliest = min(self._buffer, key=lambda sequence: sequence_delta(sequence, self._next_sequence))
        self._stats.lost += sequence_delta(earliest, self._next_sequence)
        self._next_sequence = earliest
        self._release_ready(released)


class RtpSender:
    """Send state for one call's outgoing stream of 20 ms PCMU frames.

    The initial sequence number, timestamp and SSRC are random (RFC 3550 section 5.1, against plaintext
    attacks and collisions); the random source is injected so tests are reproducible.
    """

    def __init__(self, rng: random.Random) -> None:
        self._ssrc = rng.getrandbits(32)
        self._sequence = rng.getrandbits(16)
        self._timestamp = rng.getrandbits(32)
        self._marker = True  # the first packet starts a talkspurt

    @property
    def ssrc(self) -> int:
        return self._ssrc

    @property
    def sequence(self) -> int:
        """The sequence number of the next packet."""
        return self._sequence

    @property
    def timestamp(self) -> int:
        """The timestamp of the next packet."""
        return self._timestamp

    def start_talkspurt(self, idle_frames: int = 0) -> None:
        """Set the marker bit on the next packet, e.g. after a flush (barge-in) or a pause.

        ``idle_frames`` is how many 20 ms frame slots passed without a packet: the timestamp keeps counting
        samples through silence (RFC 3551 section 4.1), while the sequence number only counts packets.
        """
        if idle_frames < 0:
            raise ValueError(f"idle_frames must be 0 or more, not {idle_frames}")
        self._marker = True
        self._timestamp = (self._timestamp + idle_frames * FRAME_BYTES) & 0xFFFFFFFF

    def build(self, payload: bytes) -> bytes:
        """The next packet carrying one 160-byte PCMU frame, ready to send."""
        if len(payload) != FRAME_BYTES:
            raise ValueError(f"a PCMU frame is {FRAME_BYTES} bytes (20 ms), not {len(payload)}")
        # What RtpPacket(...).to_bytes() gives for this fixed shape (no CSRC, extension or padding), packed
        # directly: this runs 50 times a second on every call. Every field is in range by construction.
        header = _HEADER.pack(
            RTP_VERSION << 6,
            (0x80 if self._marker else 0) | PCMU_PAYLOAD_TYPE,
            self._sequence,
            self._timestamp,
            self._ssrc,
        )
        self._marker = False
        self._sequence = (self._sequence + 1) & 0xFFFF
        self._timestamp = (self._timestamp + FRAME_BYTES) & 0xFFFFFFFF
        return header + payload
