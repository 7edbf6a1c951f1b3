"""The outgoing audio of one call: what waits to be played, the RTP it leaves as, and what the caller heard.

The Realtime API sends the assistant's audio in bursts, faster than real time, as items (one per spoken
message); the caller must get one 160-byte PCMU frame every 20 ms. ``Playout`` sits between the two: the
call pushes each item's audio as it arrives, the 20 ms clock (a ``PacedStream``) asks for the packet of each
slot, and when the caller speaks over the assistant (barge-in) it drops what was not played yet and says how
much of the interrupted item the caller really heard, which is what ``conversation.item.truncate`` needs so
that the model does not believe it said more than it did.

It does no I/O and reads no clock: ``next_frame`` returns the packet to send (the caller of it sends), so the
arithmetic is tested exactly, and whatever runs the 20 ms slots (a pacer thread, an event loop) can drive
it. All methods are thread-safe: audio is pushed by the Realtime receive thread while the pacer's thread
takes frames.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from dataclasses import dataclass
from typing import Final

from centralita.media.rtp import FRAME_BYTES, FRAME_MS, RtpSender

__all__ = ["BargeIn", "Playout", "PlayoutQueue"]

_BYTES_PER_MS: Final = FRAME_BYTES // FRAME_MS  # 8: PCMU at 8000 samples/s, one byte per sample
_INTERRUPTED_KEPT: Final = 32  # ids of interrupted items remembered, to refuse their late audio


class PlayoutQueue:
    """The 160-byte PCMU frames waiting to be played, and the count of those already played.

    Audio arrives in chunks of any length; the bytes that do not fill a whole frame wait for the next chunk,
    so frames never carry a gap in the middle. ``played_ms`` is what barge-in needs: how much of a response
    the caller has actually heard, as opposed to how much was received.
    """

    def __init__(self) -> None:
        self._frames: deque[bytes] = deque()
        self._remainder = bytearray()
        self._frames_played = 0

    def push(self, audio: bytes) -> None:
        """Append PCMU audio of any length."""
        self._remainder += audio
        whole = len(self._remainder) - len(self._remainder) % FRAME_BYTES
        for start in range(0, whole, FRAME_BYTES):
            self._frames.append(bytes(self._remainder[start : start + FRAME_BYTES]))
        del self._remainder[:whole]

    def pop(self) -> bytes | None:
        """The next frame to play, counted as played; None when no whole frame is waiting."""
        if not self._frames:
            return None
        self._frames_played += 1
        return self._frames.popleft()

    def pad_remainder(self) -> int:
        """Complete a trailing partial frame with silence so the end of the audio is played too.

        For the end of a response, when no more audio will follow. PCMU silence is 0xFF. Returns the number
        of padding bytes added (0 if there was no partial frame).
        """
        if not self._remainder:
            return 0
        padding = FRAME_BYTES - len(self._remainder)
        self.push(b"\xff" * padding)
        return padding

    def flush(self) -> float:
        """Drop everything waiting, whole frames and remainder, at once (barge-in); return the ms dropped."""
        dropped = self.queued_bytes
        self._frames.clear()
        self._remainder.clear()
        return dropped / _BYTES_PER_MS

    @property
    def frames_played(self) -> int:
        """Frames handed out by ``pop`` since the queue was created."""
        return self._frames_played

    @property
    def played_ms(self) -> int:
        """Audio handed out by ``pop`` since the queue was created, in ms."""
        return self._frames_played * FRAME_MS

    @property
    def queued_frames(self) -> int:
        """Whole frames waiting (the remainder is not counted)."""
        return len(self._frames)

    @property
    def queued_bytes(self) -> int:
        """Audio waiting, whole frames and remainder, in bytes."""
        return len(self._frames) * FRAME_BYTES + len(self._remainder)

    @property
    def queued_ms(self) -> float:
        """Audio waiting, whole frames and remainder, in ms."""
        return self.queued_bytes / _BYTES_PER_MS


@dataclass(frozen=True, slots=True)
class BargeIn:
    """What a barge-in did: the audio dropped, and how much of the item being played the caller heard.

    ``item_id`` is the assistant item that was playing (or about to play) when the caller spoke, None when
    the call had no assistant audio yet; ``audio_end_ms`` is how much of it the caller heard, never more than
    was received of it: the value for ``conversation.item.truncate``.
    """

    dropped_ms: float
    item_id: str | None
    audio_end_ms: int


@dataclass(slots=True)
class _Item:
    """An assistant item's place in the outgoing audio: where it starts, and how much of it was received."""

    item_id: str
    start: int  # position, in bytes of everything ever pushed, of its first byte
    received: int = 0  # bytes of its audio pushed


class Playout:
    """The outgoing audio of one call: the frame queue, the RTP send state and what was heard of each item.

    Positions are counted in bytes of all the audio ever pushed. The play position (``cursor``) is what has
    been played or dropped so far: everything pushed but what is still queued. An item starts where the
    audio pushed before it ends, so when one item's audio is still queued as the next one arrives (a reply,
    a tool call, then the next reply, all faster than real time) each keeps its own place: a barge-in
    truncates the item the caller was actually hearing, at the point they heard.
    """

    def __init__(self, rng: random.Random) -> None:
        """``rng`` draws the RTP stream's initial SSRC, sequence number and timestamp (RFC 3550 section 5.1)."""
        self._lock = threading.Lock()
        self._queue = PlayoutQueue()
        self._sender = RtpSender(rng)
        self._idle_slots = 0  # 20 ms slots since the last packet, for the next packet's RTP timestamp
        self._pushed = 0
        self._items: deque[_Item] = deque()
        self._interrupted: deque[str] = deque(maxlen=_INTERRUPTED_KEPT)
        self._refused = 0

    # -- the assistant's side --------------------------------------------------------------------------

    def push(self, item_id: str, audio: bytes) -> bool:
        """Queue PCMU ``audio`` of the assistant item ``item_id`` (any length); False when it was refused.

        Audio of an item interrupted by a barge-in is refused: the server may have sent more of it before it
        saw the caller speak, and the caller must not hear the assistant go on.
        """
        with self._lock:
            if item_id in self._interrupted:
                self._refused += len(audio)
                return False
            items = self._items
            if not items or items[-1].item_id != item_id:
                items.append(_Item(item_id, self._pushed))
                cursor = self._pushed - self._queue.queued_bytes
                while len(items) > 1 and items[1].start <= cursor:  # the first has been heard to its end
                    items.popleft()
            items[-1].received += len(audio)
            self._pushed += len(audio)
            self._queue.push(audio)
            return True

    def pad_remainder(self) -> int:
        """Complete the last partial frame with silence (the item's audio is done); the padding in bytes."""
        with self._lock:
            padding = self._queue.pad_remainder()
            self._pushed += padding
            return padding

    def barge_in(self) -> BargeIn:
        """The caller spoke: drop everything queued, and say what was heard of the item being played."""
        with self._lock:
            cursor = self._pushed - self._queue.queued_bytes
            dropped_ms = self._queue.flush()
            self._pushed = cursor  # the dropped audio never happened, as far as positions go
            playing = next((item for item in reversed(self._items) if item.start <= cursor), None)
            self._interrupted.extend(item.item_id for item in self._items)
            self._items.clear()
        if playing is None:
            return BargeIn(dropped_ms, None, 0)
        heard = min(cursor - playing.start, playing.received)
        return BargeIn(dropped_ms, playing.item_id, heard // _BYTES_PER_MS)

    # -- the 20 ms clock's side ------------------------------------------------------------------------

    def next_frame(self, skipped: int = 0) -> bytes | None:
        """The RTP packet to send in this 20 ms slot, or None when no whole frame is waiting.

        ``skipped`` is how many slots the clock skipped before this one (``Pacer.claim``): with the slots
        that passed without a packet, it moves the RTP timestamp on, and the packet after a silence starts a
        new talkspurt (marker bit). Never blocks.
        """
        if skipped < 0:
            raise ValueError(f"skipped must be 0 or more, not {skipped}")
        with self._lock:
            self._idle_slots += skipped
            frame = self._queue.pop()
            if frame is None:
                self._idle_slots += 1
                return None
            if self._idle_slots:
                self._sender.start_talkspurt(self._idle_slots)
                self._idle_slots = 0
            return self._sender.build(frame)

    # -- what tests and reports read -------------------------------------------------------------------

    @property
    def played_ms(self) -> int:
        """Audio sent since the call started, in ms."""
        with self._lock:
            return self._queue.played_ms

    @property
    def queued_ms(self) -> float:
        """Audio waiting to be played, in ms."""
        with self._lock:
            return self._queue.queued_ms

    @property
    def refused_ms(self) -> float:
        """Audio of interrupted items that arrived after their barge-in and was not played, in ms."""
        with self._lock:
            return self._refused / _BYTES_PER_MS

    @property
    def ssrc(self) -> int:
        """The SSRC of the outgoing RTP stream."""
        return self._sender.ssrc
