"""Timing of outgoing audio: a 20 ms frame clock and the queue of frames waiting to be played.

The Realtime API delivers audio in bursts, much faster than real time, while the caller's side expects one
160-byte frame every 20 ms: sent too fast, Asterisk's jitter buffer overflows and drops audio; too slow,
the caller hears gaps. The pacer and the queue do no I/O, and the clock and sleep are injected, so the
timing is tested exactly with a fake clock.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

from centralita.rtp import FRAME_BYTES, FRAME_MS

FRAME_SECONDS = FRAME_MS / 1000
_BYTES_PER_MS = FRAME_BYTES / FRAME_MS  # 8: PCMU at 8000 samples/s, one byte per sample


class Pacer:
    """A deadline-based frame clock: frame n is due at start + n x 20 ms.

    Deadlines come from the start time, never from "now + 20 ms", so oversleeping and the time spent
    between frames do not accumulate into drift. A sender that falls behind by up to ``max_lag_frames``
    catches up by sending without sleeping; one that falls further behind (a stalled event loop, a
    suspended VM) skips the missed slots instead of bursting them, and the skipped slots are counted.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        *,
        frame_seconds: float = FRAME_SECONDS,
        max_lag_frames: int = 3,
    ) -> None:
        if not frame_seconds > 0:
            raise ValueError(f"frame_seconds must be greater than 0, not {frame_seconds}")
        if max_lag_frames < 0:
            raise ValueError(f"max_lag_frames must be 0 or more, not {max_lag_frames}")
        self._clock = clock
        self._sleep = sleep
        self._frame_seconds = frame_seconds
        self._max_lag = max_lag_frames * frame_seconds
        self._start: float | None = None
        self._frame = 0
        self._late_frames = 0
        self._resyncs = 0

    @property
    def next_deadline(self) -> float | None:
        """When the next frame is due (clock time); None until the first ``wait``."""
        if self._start is None:
            return None
        return self._start + self._frame * self._frame_seconds

    @property
    def frames(self) -> int:
        """Frame slots passed so far, sent or skipped."""
        return self._frame

    @property
    def late_frames(self) -> int:
        """Frame slots skipped because the sender fell too far behind."""
        return self._late_frames

    @property
    def resyncs(self) -> int:
        """How many times the pacer skipped ahead."""
        return self._resyncs

    def wait(self) -> int:
        """Block until the next frame is due, then claim it; return how many slots were skipped first.

        The first call starts the clock and returns at once. A non-zero return means that much audio time
        passed unsent: the RTP timestamp should jump by as many frames (``RtpSender.start_talkspurt``).
        """
        now = self._clock()
        if self._start is None:
            self._start = now
        deadline = self._start + self._frame * self._frame_seconds
        skipped = 0
        if now < deadline:
            self._sleep(deadline - now)
        elif now - deadline > self._max_lag:
            # Jump to the slot that contains "now"; the grid stays anchored at the start time.
            skipped = math.floor((now - deadline) / self._frame_seconds)
            self._frame += skipped
            self._late_frames += skipped
            self._resyncs += 1
        self._frame += 1
        return skipped


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
        dropped = len(self._frames) * FRAME_BYTES + len(self._remainder)
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
    def queued_ms(self) -> float:
        """Audio waiting, whole frames and remainder, in ms."""
        return (len(self._frames) * FRAME_BYTES + len(self._remainder)) / _BYTES_PER_MS
