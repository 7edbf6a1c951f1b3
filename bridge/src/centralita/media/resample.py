"""The fallback for a model that ignores ``audio/pcmu`` output: 24 kHz PCM16 to 8 kHz μ-law, per call.

Centralita asks the Realtime API for μ-law both ways so that no audio is ever converted. Some models are
reported to answer in ``audio/pcm`` (24 kHz, 16-bit little-endian) whatever the session asked for; the call
then converts each delta with a band-limited resampler (libsoxr, through the ``soxr`` package: on the box
Debian's ``python3-soxr``) and encodes G.711 μ-law. A decimator without a low-pass filter would fold
everything above 4 kHz back into the band the caller hears.

The converter keeps the resampler's filter state between deltas (one stream per call, never shared), and
carries an odd trailing byte over to the next delta.
"""

from __future__ import annotations

import sys
from typing import Final

import numpy as np
import numpy.typing as npt

try:
    import soxr
except ImportError as error:  # pragma: no cover - depends on the box
    raise ImportError(
        "the 24 kHz PCM fallback needs the soxr package: on Debian install python3-soxr "
        "(the bridge role does), or pip install 'centralita[resample]'"
    ) from error

INPUT_RATE: Final = 24_000
OUTPUT_RATE: Final = 8_000
_BIAS: Final = 0x84
_CLIP: Final = 32_635
# Segment (exponent) of a biased magnitude, indexed by its bits 7..14: the position of the highest set bit.
_SEGMENT: Final = np.array([max(0, value.bit_length() - 1) for value in range(256)], dtype=np.int32)


def linear_to_ulaw(samples: npt.NDArray[np.int16]) -> bytes:
    """G.711 μ-law bytes for 16-bit linear samples (the 0x84-bias form, as Asterisk and telephones use)."""
    linear = samples.astype(np.int32)
    sign = np.where(linear < 0, 0x80, 0x00)
    magnitude = np.minimum(np.abs(linear), _CLIP) + _BIAS
    segment = _SEGMENT[(magnitude >> 7) & 0xFF]
    mantissa = (magnitude >> (segment + 3)) & 0x0F
    return (~(sign | (segment << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


class Pcm24kToUlaw:
    """Converts one call's stream of 24 kHz PCM16 deltas to 8 kHz μ-law, keeping filter state across deltas."""

    def __init__(self) -> None:
        self._stream = soxr.ResampleStream(INPUT_RATE, OUTPUT_RATE, 1, dtype="int16", quality="HQ")
        self._carry = b""

    def convert(self, pcm: bytes) -> bytes:
        """μ-law for the next piece of the stream (the resampler holds back a few ms until it has more)."""
        data = self._carry + pcm
        usable = len(data) - len(data) % 2
        self._carry = data[usable:]
        samples = np.frombuffer(data[:usable], dtype="<i2")
        if sys.byteorder == "big":  # pragma: no cover - the appliance runs on little-endian machines
            samples = samples.byteswap()
        return linear_to_ulaw(self._stream.resample_chunk(samples.astype(np.int16)))

    def flush(self) -> bytes:
        """What the resampler still holds at the end of a response (its filter's delay line); then start anew."""
        tail = self._stream.resample_chunk(np.zeros(0, dtype=np.int16), last=True)
        self.reset()
        return linear_to_ulaw(tail)

    def reset(self) -> None:
        """Start a new stream (after a barge-in: the old reply's tail must not leak into the next one)."""
        self._stream = soxr.ResampleStream(INPUT_RATE, OUTPUT_RATE, 1, dtype="int16", quality="HQ")
        self._carry = b""
