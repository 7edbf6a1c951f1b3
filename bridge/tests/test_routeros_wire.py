"""The RouterOS API word/sentence codec, checked at every prefix-size boundary and against librouteros."""

from __future__ import annotations

import io
import socket

import pytest
from librouteros import protocol as lib_protocol

from centralita_testing.fake_routeros.wire import (
    MAX_WORD_LENGTH,
    WireClosed,
    WireError,
    WireReader,
    decode_length,
    encode_length,
    encode_sentence,
    encode_word,
    prefix_size,
    write_sentence,
)

BOUNDARIES = [
    (0x00, 1),
    (0x7F, 1),
    (0x80, 2),
    (0x3FFF, 2),
    (0x4000, 3),
    (0x1FFFFF, 3),
    (0x200000, 4),
    (0xFFFFFFF, 4),
    (0x10000000, 5),
    (MAX_WORD_LENGTH, 5),
]


@pytest.mark.parametrize(("length", "size"), BOUNDARIES)
def test_length_prefix_round_trips_at_every_boundary(length: int, size: int) -> None:
    prefix = encode_length(length)
    assert len(prefix) == size
    assert prefix_size(prefix[0]) == size
    assert decode_length(prefix) == length


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        (0, "00"),
        (0x7F, "7f"),
        (0x80, "8080"),
        (130, "8082"),
        (0x3FFF, "bfff"),
        (0x4000, "c04000"),
        (2097140, "dffff4"),
        (0x1FFFFF, "dfffff"),
        (0x200000, "e0200000"),
        (268435440, "effffff0"),
        (0xFFFFFFF, "efffffff"),
        (0x10000000, "f010000000"),
    ],
)
def test_length_prefix_bytes(length: int, expected: str) -> None:
    assert encode_length(length).hex() == expected


@pytest.mark.parametrize("length", [length for length, size in BOUNDARIES if size < 5] + [1, 200, 70000, 3000000])
def test_prefix_agrees_with_librouteros(length: int) -> None:
    assert encode_length(length) == lib_protocol.encode_length(length)
    assert lib_protocol.decode_length(encode_length(length)) == length


@pytest.mark.parametrize("length", [-1, MAX_WORD_LENGTH + 1])
def test_length_out_of_range_is_refused(length: int) -> None:
    with pytest.raises(ValueError, match="word length"):
        encode_length(length)


@pytest.mark.parametrize("first", [0xF1, 0xF7, 0xF8, 0xFF])
def test_reserved_control_bytes_are_refused(first: int) -> None:
    with pytest.raises(WireError, match="control byte"):
        prefix_size(first)
    with pytest.raises(WireError):
        WireReader.from_stream(io.BytesIO(bytes([first, 0, 0, 0, 0]))).read_word()


def test_decode_length_wants_the_whole_prefix() -> None:
    with pytest.raises(WireError):
        decode_length(b"\x80")
    with pytest.raises(WireError):
        decode_length(b"")


@pytest.mark.parametrize("length", [0, 0x7F, 0x80, 0x3FFF, 0x4000, 0x10000])
def test_word_of_each_size_round_trips(length: int) -> None:
    word = "x" * length
    data = encode_word(word)
    reader = WireReader.from_stream(io.BytesIO(data))
    assert reader.read_word() == word


@pytest.mark.parametrize("length", [0x200000, 0xFFFFFFF, 0x10000000, MAX_WORD_LENGTH])
def test_huge_length_is_refused_before_reading_the_word(length: int) -> None:
    """Only the prefix is on the wire: the reader must refuse on the length, not try to read the body."""
    reader = WireReader.from_stream(io.BytesIO(encode_length(length)), max_word_length=0x1FFFFF)
    with pytest.raises(WireError, match="longer than"):
        reader.read_word()


def test_utf8_words_count_bytes_not_characters() -> None:
    word = "=comment=nombre=María Peña Muñoz"
    data = encode_word(word)
    assert data[0] == len(word.encode("utf-8"))
    assert data[0] != len(word)
    assert WireReader.from_stream(io.BytesIO(data)).read_word() == word


def test_invalid_utf8_is_a_wire_error_unless_replaced() -> None:
    data = encode_word(b"\xff\xfe")
    with pytest.raises(WireError, match="utf-8"):
        WireReader.from_stream(io.BytesIO(data)).read_word()
    assert WireReader.from_stream(io.BytesIO(data), errors="replace").read_word() == "\ufffd\ufffd"


def test_sentences_and_empty_sentences() -> None:
    stream = io.BytesIO(encode_sentence(["/ppp/secret/print", "?name=maría"]) + b"\x00" + encode_sentence(["!done"]))
    reader = WireReader.from_stream(stream)
    assert reader.read_sentence() == ["/ppp/secret/print", "?name=maría"]
    assert reader.read_sentence() == []
    assert reader.read_sentence() == ["!done"]
    with pytest.raises(WireClosed):
        reader.read_sentence()


def test_truncated_sentence_is_closed() -> None:
    data = encode_sentence(["!re", "=name=ana"])[:-4]
    with pytest.raises(WireClosed):
        WireReader.from_stream(io.BytesIO(data)).read_sentence()


def test_sentence_over_a_socket_pair_arriving_in_pieces() -> None:
    left, right = socket.socketpair()
    with left, right:
        write_sentence(left, ["!re", "=comment=" + "ñ" * 300, ".tag=7"])
        words = WireReader(lambda n: right.recv(min(n, 3))).read_sentence()  # 3 bytes at a time
        assert words == ["!re", "=comment=" + "ñ" * 300, ".tag=7"]


def test_write_sentence_to_a_stream() -> None:
    stream = io.BytesIO()
    write_sentence(stream, ["/login", "=name=admin"])
    assert stream.getvalue() == b"\x06/login\x0b=name=admin\x00"
