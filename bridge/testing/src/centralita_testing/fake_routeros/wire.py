"""The RouterOS API wire protocol: length-prefixed words grouped into sentences.

A *word* is a length prefix followed by that many bytes (UTF-8 text here). A *sentence* is a run of
words closed by a zero-length word (a single ``0x00`` byte). The prefix is big-endian and grows with the
length, its first byte telling how many bytes it has:

* ``0x00``-``0x7F``: 1 byte, the length itself;
* ``0x80``-``0x3FFF``: 2 bytes, ``length | 0x8000``;
* ``0x4000``-``0x1FFFFF``: 3 bytes, ``length | 0xC00000``;
* ``0x200000``-``0xFFFFFFF``: 4 bytes, ``length | 0xE0000000``;
* ``0x10000000`` and up: 5 bytes, ``0xF0`` then the length in 4 bytes.

A first byte from ``0xF1`` to ``0xFF`` is a reserved control byte and is rejected.

Nothing here trusts the peer: every read is bounded by ``max_word_length``, checked on the prefix
before any byte of the word is read, so a hostile length cannot make the reader allocate a huge buffer.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable, Sequence
from typing import BinaryIO

MAX_WORD_LENGTH = 0xFFFFFFFF  # the largest length the 5-byte prefix can carry
DEFAULT_MAX_WORD_LENGTH = 16 * 1024 * 1024  # what a reader accepts unless told otherwise
_FIVE_BYTE_MARKER = 0xF0


class WireError(Exception):
    """The bytes on the wire break the protocol (bad prefix, word too long, undecodable text)."""


class WireClosed(WireError):
    """The peer closed the connection (in the middle of a sentence or between two)."""


def encode_length(length: int) -> bytes:
    """The prefix for a word of ``length`` bytes, in the shortest of the 1- to 5-byte forms."""
    if length < 0 or length > MAX_WORD_LENGTH:
        raise ValueError(f"word length must be 0..{MAX_WORD_LENGTH:#x}, not {length}")
    if length < 0x80:
        return length.to_bytes(1, "big")
    if length < 0x4000:
        return (length | 0x8000).to_bytes(2, "big")
    if length < 0x200000:
        return (length | 0xC00000).to_bytes(3, "big")
    if length < 0x10000000:
        return (length | 0xE0000000).to_bytes(4, "big")
    return bytes([_FIVE_BYTE_MARKER]) + length.to_bytes(4, "big")


def prefix_size(first_byte: int) -> int:
    """How many bytes (1-5) the prefix starting with ``first_byte`` has; raises on a control byte."""
    if first_byte < 0x80:
        return 1
    if first_byte < 0xC0:
        return 2
    if first_byte < 0xE0:
        return 3
    if first_byte < 0xF0:
        return 4
    if first_byte == _FIVE_BYTE_MARKER:
        return 5
    raise WireError(f"reserved control byte {first_byte:#04x} where a word length was expected")


def decode_length(prefix: bytes) -> int:
    """The word length carried by a complete prefix (as many bytes as ``prefix_size`` said)."""
    if not prefix:
        raise WireError("empty length prefix")
    size = prefix_size(prefix[0])
    if len(prefix) != size:
        raise WireError(f"a prefix starting with {prefix[0]:#04x} has {size} bytes, not {len(prefix)}")
    if size == 5:
        return int.from_bytes(prefix[1:], "big")
    value = int.from_bytes(prefix, "big")
    mask = {1: 0x00, 2: 0x8000, 3: 0xC00000, 4: 0xE0000000}[size]
    return value ^ mask


def encode_word(word: str | bytes, encoding: str = "utf-8") -> bytes:
    """One word: its length prefix, then its bytes."""
    data = word if isinstance(word, bytes) else word.encode(encoding)
    return encode_length(len(data)) + data


def encode_sentence(words: Iterable[str | bytes], encoding: str = "utf-8") -> bytes:
    """A sentence: its words, then the zero-length word that ends it."""
    return b"".join(encode_word(word, encoding) for word in words) + b"\x00"


class WireReader:
    """Reads words and sentences from anything that returns up to ``n`` bytes and ``b""`` at the end.

    Use ``from_socket`` for a socket (``recv``) or ``from_stream`` for a binary file-like object
    (``read``). Socket timeouts and other ``OSError`` pass through unchanged.
    """

    def __init__(
        self,
        read_some: Callable[[int], bytes],
        *,
        encoding: str = "utf-8",
        errors: str = "strict",
        max_word_length: int = DEFAULT_MAX_WORD_LENGTH,
    ) -> None:
        self._read_some = read_some
        self.encoding = encoding
        self.errors = errors
        self.max_word_length = max_word_length

    @classmethod
    def from_socket(
        cls,
        sock: socket.socket,
        *,
        encoding: str = "utf-8",
        errors: str = "strict",
        max_word_length: int = DEFAULT_MAX_WORD_LENGTH,
    ) -> WireReader:
        return cls(sock.recv, encoding=encoding, errors=errors, max_word_length=max_word_length)

    @classmethod
    def from_stream(
        cls,
        stream: BinaryIO,
        *,
        encoding: str = "utf-8",
        errors: str = "strict",
        max_word_length: int = DEFAULT_MAX_WORD_LENGTH,
    ) -> WireReader:
        return cls(stream.read, encoding=encoding, errors=errors, max_word_length=max_word_length)

    def read_exact(self, count: int) -> bytes:
        """Exactly ``count`` bytes; ``WireClosed`` if the peer ends first."""
        chunks: list[bytes] = []
        remaining = count
        while remaining:
            chunk = self._read_some(min(remaining, 65536))
            if not chunk:
                raise WireClosed(f"connection closed with {remaining} of {count} bytes still to read")
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def read_length(self) -> int:
        """One word's length prefix, decoded."""
        first = self.read_exact(1)
        size = prefix_size(first[0])
        prefix = first + self.read_exact(size - 1) if size > 1 else first
        return decode_length(prefix)

    def read_word(self) -> str:
        """One word, decoded; ``""`` is the end of a sentence."""
        length = self.read_length()
        if length > self.max_word_length:
            raise WireError(f"word of {length} bytes is longer than the {self.max_word_length} allowed")
        data = self.read_exact(length) if length else b""
        try:
            return data.decode(self.encoding, self.errors)
        except UnicodeDecodeError as error:
            raise WireError(f"word is not valid {self.encoding}: {error}") from error

    def read_sentence(self) -> list[str]:
        """The words of one sentence, without its terminator; ``[]`` for an empty sentence."""
        words: list[str] = []
        while word := self.read_word():
            words.append(word)
        return words


def write_sentence(sink: socket.socket | BinaryIO, words: Sequence[str | bytes], encoding: str = "utf-8") -> None:
    """Send one sentence whole to a socket (``sendall``) or a binary stream (``write`` + ``flush``)."""
    data = encode_sentence(words, encoding)
    if isinstance(sink, socket.socket):
        sink.sendall(data)
    else:
        sink.write(data)
        sink.flush()
