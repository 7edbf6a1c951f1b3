"""The 24 kHz PCM -> 8 kHz μ-law fallback: G.711 exactness, band limiting, stream continuity."""

from __future__ import annotations

import numpy as np
import pytest

from centralita.media.resample import Pcm24kToUlaw, linear_to_ulaw
from centralita_testing.fake_realtime import _ULAW_TABLE


def _decode(ulaw: bytes) -> np.ndarray:
    return np.array([_ULAW_TABLE[byte] for byte in ulaw], dtype=np.float64)


def _tone(frequency: float, seconds: float, rate: int = 24_000, amplitude: float = 8000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype("<i2").tobytes()


def _level_db(signal: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(signal**2)) + 1e-9)


def test_mu_law_encoding_round_trips_every_code() -> None:
    # Every μ-law code decodes to a value that encodes back to the same code (0x7F and 0xFF are both zero).
    decoded = np.array(_ULAW_TABLE, dtype=np.int16)
    encoded = linear_to_ulaw(decoded)
    mismatches = [code for code in range(256) if encoded[code] != code and {code, encoded[code]} != {0x7F, 0xFF}]
    assert mismatches == []


def test_mu_law_encoding_of_known_values() -> None:
    samples = np.array([0, -1, 32767, -32768, 1000, -1000], dtype=np.int16)
    assert list(linear_to_ulaw(samples)) == [0xFF, 0x7F, 0x80, 0x00, 0xCE, 0x4E]


def test_a_speech_band_tone_keeps_its_level_and_rate() -> None:
    converter = Pcm24kToUlaw()
    ulaw = converter.convert(_tone(1000, 1.0)) + converter.flush()
    assert abs(len(ulaw) - 8000) <= 2  # a third of the samples, nothing lost at the end
    decoded = _decode(ulaw[400:-400])
    spectrum = np.abs(np.fft.rfft(decoded))
    peak_hz = np.argmax(spectrum) * 8000 / len(decoded)
    assert peak_hz == pytest.approx(1000, abs=5)
    assert _level_db(decoded) == pytest.approx(_level_db(8000 * np.sin(np.linspace(0, 200 * np.pi, 8000))), abs=0.5)


def test_a_tone_above_4_khz_is_filtered_out_instead_of_folding_back() -> None:
    # 6 kHz would alias to 2 kHz with plain decimation (keeping every third sample).
    pcm = _tone(6000, 1.0)
    converter = Pcm24kToUlaw()
    filtered = _decode((converter.convert(pcm) + converter.flush())[400:-400])
    decimated = np.frombuffer(pcm, dtype="<i2")[::3].astype(np.float64)[400:-400]
    assert _level_db(decimated) > 70
    assert _level_db(filtered) < _level_db(decimated) - 50


def test_deltas_of_any_size_give_the_same_stream_as_one_piece() -> None:
    pcm = _tone(440, 0.5) + _tone(1800, 0.5)
    whole = Pcm24kToUlaw()
    expected = whole.convert(pcm) + whole.flush()
    pieces = Pcm24kToUlaw()
    out = b""
    for start in range(0, len(pcm), 4801):  # odd sizes: a sample is split between two deltas
        out += pieces.convert(pcm[start : start + 4801])
    out += pieces.flush()
    assert len(out) == len(expected)
    # The same signal: chunking only moves the resampler's rounding (at most a step or two of μ-law).
    difference = np.abs(_decode(out) - _decode(expected))
    assert difference.max() <= 64
    assert np.mean(difference) < 2


def test_reset_drops_what_the_previous_reply_left_in_the_filter() -> None:
    converter = Pcm24kToUlaw()
    converter.convert(_tone(1000, 0.2, amplitude=20000))
    converter.reset()
    silence = converter.convert(bytes(4800)) + converter.flush()
    assert set(silence) <= {0xFF, 0x7F}
