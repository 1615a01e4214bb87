"""COMPRESS=DEFLATE (RFC 4978) through the real listener: a raw-socket client that
inflates what the server sends and deflates what it sends (imaplib has no COMPRESS),
in the clear and inside STARTTLS, with IDLE, against a zip bomb and a corrupt stream.
"""

from __future__ import annotations

import imaplib
import os
import re
import socket
import ssl
import time
import zlib
from pathlib import Path

import pytest

from support.imap import Raw
from support.server import WaypostInstance, wait_for
from support.tls import client_context

ACCOUNTS = ("fetch", "twice", "tls", "idle", "bomb", "junk")
MESSAGES = 100


class Deflated(Raw):
    """A ``Raw`` transcript that can switch to COMPRESS DEFLATE, counting octets."""

    def __init__(self, port: int) -> None:
        self.inflater: zlib._Decompress | None = None
        self.deflater: zlib._Compress | None = None
        self.wire_in = 0   # octets read from the socket
        super().__init__(port)

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError(self.buf)
        self.wire_in += len(data)
        return self.inflater.decompress(data) if self.inflater is not None else data

    def _raw_line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self.buf += self._recv()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def line(self) -> bytes:
        line = self._raw_line()
        while (m := re.search(rb"\{(\d+)\}$", line)) is not None:
            n = int(m.group(1))
            while len(self.buf) < n:
                self.buf += self._recv()
            line += b"\r\n" + self.buf[:n]
            self.buf = self.buf[n:]
            line += self._raw_line()
        return line

    def send(self, data: bytes) -> None:
        if self.deflater is not None:
            data = self.deflater.compress(data) + self.deflater.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def compress(self) -> list[bytes]:
        reply = self.cmd("z COMPRESS DEFLATE")
        assert reply[-1].startswith(b"z OK"), reply
        assert not self.buf, "nothing may follow the tagged OK uncompressed"
        self.inflater = zlib.decompressobj(-15)
        self.deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
        return reply


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    inst = WaypostInstance(tmp_path_factory.mktemp("imap-compress") / "data",
                           imap={"plaintext_without_tls": True, "max_line_length": 8192})
    for who in ACCOUNTS:
        inst.ok("account", "add", f"{who}@example.test", "--password", "pw")
    inst.start()
    yield inst
    inst.stop()


def login(r: Raw, who: str) -> None:
    assert r.cmd(f"L LOGIN {who}@example.test pw")[-1].startswith(b"L OK")


def append(srv: WaypostInstance, who: str, count: int) -> None:
    im = imaplib.IMAP4("127.0.0.1", srv.imap_port)
    im.login(f"{who}@example.test", "pw")
    for i in range(count):
        msg = (f"From: Sender Number {i} <sender{i}@example.org>\r\n"
               f"To: {who}@example.test\r\n"
               f"Subject: weekly report {i} for the compression test\r\n"
               f"Date: Fri, 04 Dec 2026 12:{i % 60:02d}:00 +0000\r\n"
               f"Message-ID: <{i}.compress@example.org>\r\n"
               "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
               f"body {i}\r\n").encode()
        typ, _ = im.append("INBOX", None, None, msg)
        assert typ == "OK"
    im.logout()


def test_capability_and_refusals(srv):
    """COMPRESS=DEFLATE is advertised; COMPRESS before login, with another algorithm
    or without one is refused and the session goes on uncompressed."""
    r = Deflated(srv.imap_port)
    assert b"COMPRESS=DEFLATE" in r.greeting
    assert r.cmd("a COMPRESS DEFLATE")[-1].startswith(b"a BAD")
    login(r, "twice")
    assert b"COMPRESS=DEFLATE" in r.cmd("c CAPABILITY")[0]
    assert r.cmd("b COMPRESS LZW")[-1].startswith(b"b BAD")
    assert r.cmd("b COMPRESS")[-1].startswith(b"b BAD")
    assert r.cmd("n NOOP")[-1].startswith(b"n OK")
    r.close()


def test_second_compress_is_no_compressionactive(srv):
    r = Deflated(srv.imap_port)
    login(r, "twice")
    r.compress()
    assert r.cmd("n NOOP")[-1].startswith(b"n OK")
    assert r.cmd("y COMPRESS DEFLATE")[-1] == b"y NO [COMPRESSIONACTIVE] Compression is already active"
    assert r.cmd("n2 NOOP")[-1].startswith(b"n2 OK")
    assert r.cmd("o LOGOUT")[-1].startswith(b"o OK")
    r.close()


def test_fetch_100_headers_compressed(srv):
    """The same FETCH of 100 headers before and after COMPRESS: the same responses,
    in far fewer octets on the wire (the figures are printed with -s)."""
    append(srv, "fetch", MESSAGES)
    r = Deflated(srv.imap_port)
    login(r, "fetch")
    assert r.cmd("s SELECT INBOX")[-1].startswith(b"s OK")
    before = r.wire_in
    plain = r.cmd("f FETCH 1:* (UID BODY.PEEK[HEADER])")
    plain_octets = r.wire_in - before
    assert plain[-1].startswith(b"f OK") and len(plain) == MESSAGES + 1
    r.compress()
    before = r.wire_in
    packed = r.cmd("f FETCH 1:* (UID BODY.PEEK[HEADER])")
    packed_octets = r.wire_in - before
    assert packed == plain
    saved = plain_octets - packed_octets
    print(f"\nFETCH of {MESSAGES} headers: {plain_octets} octets plain, {packed_octets} compressed, "
          f"{saved} saved ({100 * saved / plain_octets:.0f}%)")
    assert packed_octets < plain_octets / 3
    # Client to server compressed too: a command split over two deflate flushes.
    assert r.deflater is not None
    r.sock.sendall(r.deflater.compress(b"u UID FETCH 1 (FL") + r.deflater.flush(zlib.Z_SYNC_FLUSH))
    r.send(b"AGS)\r\n")
    out = []
    while not (line := r.line()).startswith(b"u "):
        out.append(line)
    assert line.startswith(b"u OK") and out and b"FLAGS (" in out[0]
    assert r.cmd("o LOGOUT")[-1].startswith(b"o OK")
    r.close()
    srv.expect_log(r"event=imap-compress-end .*plain_out=\d+")


def test_compressed_command_in_the_same_packet_as_compress(srv):
    """A client that sends its first compressed command right behind COMPRESS, in one
    packet: the OK comes uncompressed, then the command's answer compressed."""
    r = Deflated(srv.imap_port)
    login(r, "twice")
    deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
    r.sock.sendall(b"z COMPRESS DEFLATE\r\n" + deflater.compress(b"n NOOP\r\n") + deflater.flush(zlib.Z_SYNC_FLUSH))
    assert r._raw_line().startswith(b"z OK")
    r.inflater = zlib.decompressobj(-15)
    r.buf = r.inflater.decompress(r.buf)
    r.deflater = deflater
    assert r.line().startswith(b"n OK")
    assert r.cmd("c CAPABILITY")[-1].startswith(b"c OK")
    r.close()


def test_compress_inside_starttls(srv):
    sock = socket.create_connection(("127.0.0.1", srv.imap_port), timeout=10)
    f = sock.makefile("rb")
    assert f.readline().startswith(b"* OK")
    sock.sendall(b"s STARTTLS\r\n")
    assert f.readline().startswith(b"s OK")
    tls = client_context().wrap_socket(sock, server_hostname=srv.hostname)
    r = Deflated.__new__(Deflated)
    r.sock, r.buf, r.inflater, r.deflater, r.wire_in = tls, b"", None, None, 0
    login(r, "tls")
    r.compress()
    assert r.cmd("c CAPABILITY")[-1].startswith(b"c OK")
    assert r.cmd("s SELECT INBOX")[-1].startswith(b"s OK")
    assert r.cmd("y COMPRESS DEFLATE")[-1].startswith(b"y NO [COMPRESSIONACTIVE]")
    assert r.cmd("o LOGOUT")[-1].startswith(b"o OK")
    tls.close()


def test_idle_while_compressed(srv):
    """IDLE after COMPRESS: the "+ idling" and the EXISTS of a message appended by
    another session arrive (each burst flushed), DONE ends it."""
    r = Deflated(srv.imap_port)
    login(r, "idle")
    r.compress()
    assert r.cmd("s SELECT INBOX")[-1].startswith(b"s OK")
    r.send(b"i IDLE\r\n")
    assert r.line().startswith(b"+ ")
    append(srv, "idle", 1)
    assert r.line() == b"* 1 EXISTS"
    r.send(b"DONE\r\n")
    lines = []
    while not (line := r.line()).startswith(b"i "):
        lines.append(line)
    assert line.startswith(b"i OK")
    assert r.cmd("n NOOP")[-1].startswith(b"n OK")
    r.close()


def _vm_hwm_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    m = re.search(r"VmHWM:\s+(\d+) kB", status)
    assert m is not None
    return int(m.group(1))


def _serve_pids(srv: WaypostInstance) -> list[int]:
    assert srv.proc is not None
    pgid = os.getpgid(srv.proc.pid)
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if os.getpgid(int(d.name)) == pgid:
                    pids.append(int(d.name))
            except ProcessLookupError:
                continue
    return pids


def test_zip_bomb_is_inflated_in_bounded_chunks(srv):
    """256 MiB of one line, sent as about 256 KiB of deflate: the line is refused as too
    long (imap.max_line_length) and skipped; the session goes on, and the server's
    peak memory grows by far less than the inflated size."""
    r = Deflated(srv.imap_port)
    login(r, "bomb")
    r.compress()
    assert r.deflater is not None
    peak_before = max(_vm_hwm_kib(p) for p in _serve_pids(srv))
    r.sock.sendall(r.deflater.compress(b"b NOOP "))
    chunk = b"x" * (1 << 20)
    for _ in range(256):
        r.sock.sendall(r.deflater.compress(chunk))
    r.send(b"\r\nn NOOP\r\n")
    lines = []
    while not (line := r.line()).startswith(b"n "):
        lines.append(line)
    assert line.startswith(b"n OK")
    assert any(l.startswith(b"b BAD") or l.startswith(b"* BAD") for l in lines), lines
    peak_after = max(_vm_hwm_kib(p) for p in _serve_pids(srv))
    print("\nzip bomb: 256 MiB of one line from the client's deflate; "
          f"server peak RSS {peak_before} KiB before, {peak_after} KiB after")
    assert peak_after - peak_before < 64 * 1024, (peak_before, peak_after)
    r.close()


def test_corrupt_stream_ends_the_session(srv):
    r = Deflated(srv.imap_port)
    login(r, "junk")
    r.compress()
    r.sock.sendall(b"\xff" * 64)  # not a deflate block
    assert r.line() == b"* BYE Corrupt compressed data"
    with pytest.raises((EOFError, ConnectionError)):
        r.line()
    srv.expect_log("event=imap-compress-error")
    # The listener still serves others.
    im = imaplib.IMAP4("127.0.0.1", srv.imap_port)
    im.login("junk@example.test", "pw")
    im.logout()


def test_pipelined_commands_beyond_one_inflate_are_all_answered(srv):
    """1.6 MB of pipelined commands in a few KiB of deflate, more than the server
    inflates at once: the rest waits compressed and every command is answered, in
    order."""
    r = Deflated(srv.imap_port)
    login(r, "twice")
    r.compress()
    assert r.deflater is not None
    count = 1500
    value = "v" * 1000
    batch = b"".join(b'i%d ID ("name" "%s")\r\n' % (i, value.encode()) for i in range(count))
    r.sock.sendall(r.deflater.compress(batch) + r.deflater.flush(zlib.Z_SYNC_FLUSH))
    tags = []
    while len(tags) < count:
        line = r.line()
        if line.startswith(b"i"):
            assert b" OK " in line, line
            tags.append(int(line.split(b" ")[0][1:]))
    assert tags == list(range(count))
    assert r.cmd("n NOOP")[-1].startswith(b"n OK")
    r.close()
