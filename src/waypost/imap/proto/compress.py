"""COMPRESS=DEFLATE (RFC 4978), sans-IO: the two deflate streams of one connection.

RFC 4978 §4: "DEFLATE is defined in [RFC1951]" — raw deflate, no zlib header or
checksum (``wbits=-15``) — and "the server ... MUST use a Z_SYNC_FLUSH or
Z_FULL_FLUSH after each burst of output", so that the client can decode all of a
response without waiting for more.  The adapter calls ``Deflate.compress`` for every
write and ``Deflate.flush`` once a burst is over.

The client's stream is inflated in bounded steps (``Deflate.inflate(limit)``): a few
compressed octets can stand for gigabytes, so the adapter asks only for as many
plaintext octets as the command parser can use next, and the parser's line and
literal limits then refuse the flood as they would refuse it uncompressed.
"""

from __future__ import annotations

import zlib

__all__ = ["CompressError", "Deflate"]

#: RFC 1951 raw deflate: no zlib header, the largest window.
_WBITS = -15


class CompressError(Exception):
    """The client's deflate stream is corrupt, or it ended (a client never ends it)."""


class Deflate:
    """Both directions of one connection after ``COMPRESS DEFLATE``."""

    __slots__ = ("_in", "_out", "_tail", "_maybe_more", "octets_in", "octets_out", "plain_in", "plain_out")

    def __init__(self, level: int = 6) -> None:
        self._in = zlib.decompressobj(_WBITS)
        self._out = zlib.compressobj(level, zlib.DEFLATED, _WBITS)
        self._tail = b""            # compressed octets received, not inflated yet
        self._maybe_more = False    # the last inflate stopped at its limit
        #: counters: compressed / plain octets in each direction
        self.octets_in = 0
        self.octets_out = 0
        self.plain_in = 0
        self.plain_out = 0

    # -- from the client --------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Compressed octets from the client, kept until ``inflate`` asks for them."""
        self.octets_in += len(data)
        self._tail += data

    @property
    def pending(self) -> int:
        """Compressed octets received and not inflated yet."""
        return len(self._tail)

    @property
    def has_more(self) -> bool:
        """``inflate`` may return more plaintext without more input."""
        return bool(self._tail) or self._maybe_more

    def inflate(self, limit: int) -> bytes:
        """At most ``limit`` (> 0) plaintext octets from what was fed; b"" when there
        is nothing more to inflate yet.  Raises CompressError on a corrupt stream."""
        if self._in.eof:
            if self._tail:
                raise CompressError("data after the end of the deflate stream")
            return b""
        try:
            out = self._in.decompress(self._tail, limit)
        except zlib.error as e:
            raise CompressError(f"corrupt deflate stream: {e}") from None
        self._tail = self._in.unconsumed_tail
        self._maybe_more = len(out) >= limit
        if self._in.eof:
            # RFC 4978 has no way to end compression but closing the connection.
            self._tail = self._in.unused_data + self._tail
            self._maybe_more = False
            if self._tail:
                raise CompressError("data after the end of the deflate stream")
        self.plain_in += len(out)
        return out

    # -- to the client ----------------------------------------------------------------

    def compress(self, data: bytes) -> bytes:
        """Compressed octets for ``data`` (possibly none until ``flush``)."""
        self.plain_out += len(data)
        out = self._out.compress(data)
        self.octets_out += len(out)
        return out

    def flush(self) -> bytes:
        """The end of a burst of output: everything compressed so far, decodable now
        (Z_SYNC_FLUSH)."""
        out = self._out.flush(zlib.Z_SYNC_FLUSH)
        self.octets_out += len(out)
        return out
