"""COMPRESS=DEFLATE (RFC 4978) in the sans-IO core: the command's grammar and state,
the replies, and the two deflate streams (raw deflate, sync flush, bounded inflate)."""

from __future__ import annotations

import zlib

import pytest

from waypost.imap.proto import (
    Compress,
    CompressError,
    Deflate,
    NeedMore,
    R,
    Rejected,
    State,
    next_state,
    parse_command,
    refusal,
)


def test_rfc4978_example_command_parses():
    # RFC 4978 §3 example:  C: a COMPRESS DEFLATE
    assert parse_command(b"a COMPRESS DEFLATE\r\n") == (Compress("a", "DEFLATE"), b"")
    assert parse_command(b"b compress deflate\r\n") == (Compress("b", "DEFLATE"), b"")
    with pytest.raises(NeedMore):
        parse_command(b"a COMPRESS DEFL")


@pytest.mark.parametrize("line", [b"a COMPRESS\r\n", b"a COMPRESS LZW\r\n", b"a COMPRESS DEFLATE X\r\n",
                                  b'a COMPRESS "DEFLATE"\r\n'])
def test_bad_compress_is_bad(line):
    with pytest.raises(Rejected) as e:
        parse_command(line)
    assert e.value.reply().encode().startswith(b"a BAD")


def test_compress_is_command_auth():
    assert refusal("COMPRESS", State.NOT_AUTHENTICATED) is R.NOT_AUTHENTICATED
    assert refusal("COMPRESS", State.AUTHENTICATED) is None
    assert refusal("COMPRESS", State.SELECTED) is None
    assert next_state(State.SELECTED, "COMPRESS", "OK") is State.SELECTED


def test_replies():
    # RFC 4978 §3:  S: a OK DEFLATE active
    assert R.COMPRESS_ACTIVE.tagged("a").encode() == b"a OK DEFLATE active\r\n"
    assert R.COMPRESSION_ACTIVE.tagged("b").encode().startswith(b"b NO [COMPRESSIONACTIVE] ")


def test_output_is_raw_deflate_decodable_after_each_flush():
    d = Deflate()
    client = zlib.decompressobj(-15)  # raw deflate: no zlib header
    got = b""
    for burst in (b"* OK first\r\n", b"* 1 EXISTS\r\n" * 50, b"a OK done\r\n"):
        wire = d.compress(burst) + d.flush()
        assert wire.endswith(b"\x00\x00\xff\xff")  # the sync flush marker (RFC 1951 §3.2.4 empty block)
        got += client.decompress(wire)
        assert got.endswith(burst)  # decodable without waiting for more
    assert d.plain_out == len(got) and d.octets_out < d.plain_out


def test_input_in_pieces_any_split():
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    wire = c.compress(b"a NOOP\r\nb CAPABILITY\r\n") + c.flush(zlib.Z_SYNC_FLUSH)
    d = Deflate()
    out = b""
    for i in range(len(wire)):
        d.feed(wire[i:i + 1])
        out += d.inflate(1 << 16)
    assert out == b"a NOOP\r\nb CAPABILITY\r\n"
    assert not d.has_more and d.inflate(10) == b""


def test_inflate_is_bounded_by_its_limit():
    """A zip bomb: 64 MiB from a few KiB; each inflate gives at most the limit, and
    what was fed stays compressed until asked for."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    wire = c.compress(b"x" * (64 << 20)) + c.flush(zlib.Z_SYNC_FLUSH)
    assert len(wire) < 128 * 1024
    d = Deflate()
    d.feed(wire)
    first = d.inflate(4096)
    assert len(first) == 4096 and d.has_more
    total = len(first)
    while d.has_more:
        piece = d.inflate(1 << 20)
        assert len(piece) <= 1 << 20
        if not piece:
            break
        total += len(piece)
    assert total == 64 << 20
    assert d.plain_in == total and d.octets_in == len(wire)


def test_corrupt_stream_raises():
    d = Deflate()
    d.feed(b"\xff" * 16)
    with pytest.raises(CompressError):
        d.inflate(1024)


def test_data_after_the_final_block_raises():
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    wire = c.compress(b"a NOOP\r\n") + c.flush()  # Z_FINISH: the stream ends
    d = Deflate()
    d.feed(wire)
    assert d.inflate(1024) == b"a NOOP\r\n"
    d.feed(b"more")
    with pytest.raises(CompressError):
        d.inflate(1024)
