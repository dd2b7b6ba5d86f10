"""Bounded content decoding: a compressed body never decodes past the body cap in memory.

httpx's decoders hand each compressed chunk to zlib/brotli/zstd whole, and those return all the
output the chunk encodes: a 32 KB zstd body of zeros is a gigabyte in one call, so the body cap
(which counts decoded bytes) was applied only after the damage. Here every decoder is asked for
at most ``room`` bytes - what is left under the cap - and decoding stops there:

* gzip and deflate: ``zlib`` with ``max_length``;
* br: ``brotli.Decompressor.process(output_buffer_limit=...)``;
* zstd: a ``zstandard`` stream writer whose sink refuses output past ``room`` (it decodes in
  ``write_size`` pieces, so at most one piece past the limit exists at any time).

Once a body reaches the cap it is cut there and marked truncated, as before; what the decoder
still holds is dropped with it. Errors in the compressed data raise ``httpx.DecodingError``, which
the fetcher's classification already maps to ``decode_error``.
"""

from __future__ import annotations

import zlib
from typing import IO, Protocol, cast

import brotli
import httpx
import zstandard

_PIECE = 64 * 1024


class BoundedDecoder(Protocol):
    def decode(self, data: bytes, room: int) -> bytes:
        """Decode ``data`` (the next compressed bytes) into at most ``room`` bytes."""


class _Identity:
    def decode(self, data: bytes, room: int) -> bytes:
        return data[:room]


class _Zlib:
    def __init__(self, wbits: int, *, raw_fallback: bool = False) -> None:
        self._wbits = wbits
        self._raw_fallback = raw_fallback  # "deflate" is zlib-wrapped by the RFC, raw in practice
        self._d = zlib.decompressobj(wbits)
        self._started = False

    def decode(self, data: bytes, room: int) -> bytes:
        if room <= 0:
            return b""
        try:
            out = self._d.decompress(self._d.unconsumed_tail + data, room)
        except zlib.error as exc:
            if self._raw_fallback and not self._started:
                self._raw_fallback = False
                self._d = zlib.decompressobj(-zlib.MAX_WBITS)
                return self.decode(data, room)
            raise httpx.DecodingError(str(exc)) from None
        self._started = True
        # a gzip body may hold several members: go on with what follows the first one
        while self._d.eof and self._d.unused_data and len(out) < room and self._wbits > 16:
            rest = self._d.unused_data
            self._d = zlib.decompressobj(self._wbits)
            out += self._d.decompress(rest, room - len(out))
        return out


class _Brotli:
    def __init__(self) -> None:
        self._d = brotli.Decompressor()

    def decode(self, data: bytes, room: int) -> bytes:
        if room <= 0:
            return b""
        try:
            return bytes(self._d.process(data, output_buffer_limit=room))[:room]
        except brotli.error as exc:
            raise httpx.DecodingError(str(exc)) from None


class _Full(Exception):
    """Raised by the zstd sink to stop the decompressor at the cap."""


class _Sink:
    def __init__(self) -> None:
        self.room = 0
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        if self.room <= 0:
            raise _Full
        piece = bytes(data[: self.room])
        self.parts.append(piece)
        self.room -= len(piece)
        return len(data)


class _Zstd:
    def __init__(self) -> None:
        self._sink = _Sink()
        self._w = zstandard.ZstdDecompressor().stream_writer(
            cast(IO[bytes], self._sink), write_size=_PIECE, write_return_read=True, closefd=False
        )
        self._full = False

    def decode(self, data: bytes, room: int) -> bytes:
        if room <= 0 or self._full:
            return b""
        self._sink.room, self._sink.parts = room, []
        try:
            self._w.write(data)
        except _Full:
            self._full = True
        except zstandard.ZstdError as exc:
            raise httpx.DecodingError(str(exc)) from None
        return b"".join(self._sink.parts)


class _Chain:
    """Several encodings (``Content-Encoding: gzip, br``), undone last-applied first."""

    def __init__(self, decoders: list[BoundedDecoder]) -> None:
        self._decoders = decoders

    def decode(self, data: bytes, room: int) -> bytes:
        for decoder in self._decoders:
            data = decoder.decode(data, room)
        return data


def bounded_decoder(content_encoding: str) -> BoundedDecoder:
    """The decoder for a response's ``Content-Encoding`` (unknown codings: bytes as they are,
    which is what httpx does too)."""
    codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
    decoders: list[BoundedDecoder] = []
    for coding in reversed(codings):
        if coding in ("gzip", "x-gzip"):
            decoders.append(_Zlib(zlib.MAX_WBITS | 16))
        elif coding == "deflate":
            decoders.append(_Zlib(zlib.MAX_WBITS, raw_fallback=True))
        elif coding == "br":
            decoders.append(_Brotli())
        elif coding == "zstd":
            decoders.append(_Zstd())
    if not decoders:
        return _Identity()
    return decoders[0] if len(decoders) == 1 else _Chain(decoders)
