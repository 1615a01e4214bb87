"""Big messages (issue 15 point 5): streamed to the spool while they arrive, memory per
session bounded, nothing answered 250 lost by a kill -9 in the middle of a transfer.

Real clients over 127.0.0.1: the standard library's smtplib, and literal sessions
(support.transcript) where a test must stop a client in the middle of its text.
"""

from __future__ import annotations

import hashlib
import json
import os
import smtplib
import threading
from pathlib import Path

from support.server import WaypostInstance, wait_for
from support.transcript import Transcript

MiB = 1024 * 1024
SIZE = 20 * MiB
SESSIONS = 10


def big_text(tag: str, size: int = SIZE) -> bytes:
    """A message of ``size`` octets: a header section, then lines of 78 octets with
    CRLF, some starting with a dot (dot-stuffed on the wire, unstuffed in the store)."""
    head = f"From: <x@outside.example>\r\nSubject: big {tag}\r\nX-Tag: {tag}\r\n\r\n".encode()
    line = (f".{tag} ".encode() + b"0123456789abcdef" * 5)[:76] + b"\r\n"
    plain = (tag.encode() + b" " + b"z" * 80)[:76] + b"\r\n"
    block = (line + plain * 9) * 64
    n = (size - len(head)) // len(block) + 1
    return head + (block * n)[: size - len(head) - 2] + b"\r\n"


def stuffed(text: bytes) -> bytes:
    """RFC 5321 §4.5.2 dot-stuffing, as a client sends it."""
    return (b"\r\n" + text).replace(b"\r\n.", b"\r\n..")[2:]


def server_rss(inst: WaypostInstance) -> int:
    """The RSS, in octets, of every process of the server (its process group)."""
    assert inst.proc is not None
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[2]) != inst.proc.pid:
                continue
            for line in Path(entry.path, "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            continue
    return total


def stored_text(files: list[Path], tag: str) -> list[bytes]:
    """The texts of the stored messages with this tag, from the client's first header
    field on (the fields added in front by us are cut)."""
    marker = b"From: <x@outside.example>\r\nSubject: big " + tag.encode() + b"\r\n"
    out = []
    for path in files:
        raw = path.read_bytes()
        at = raw.find(marker)
        if at >= 0:
            out.append(raw[at:])
    return out


def envelope(t: Transcript, rcpt: str = "alice@example.test") -> None:
    t.cmd("EHLO big.client", 250)
    t.cmd("MAIL FROM:<x@outside.example> SIZE=%d" % (SIZE + 10), 250, "2.1.0")
    t.cmd(f"RCPT TO:<{rcpt}>", 250, "2.1.5")


def test_ten_big_messages_at_once_are_streamed_with_bounded_memory(tmp_path):
    """10 sessions x 20 MiB, half DATA and half BDAT: every one is held at its last
    octets until all have sent the rest of their text; then the server holds about
    200 MiB of text that it has not acknowledged.  It must be in the spool's tmp/,
    not in memory: the server's RSS grows by far less than one message per session."""
    inst = WaypostInstance(tmp_path / "data")
    inst.ok("account", "add", "alice@example.test", "--no-password")
    inst.start()
    texts = {f"s{i}": big_text(f"s{i}") for i in range(SESSIONS)}
    sent = threading.Barrier(SESSIONS + 1, timeout=240)
    go = threading.Event()
    replies: dict[str, str] = {}
    errors: list[BaseException] = []

    def client(tag: str, bdat: bool) -> None:
        try:
            with Transcript("127.0.0.1", inst.smtp_port, timeout=240) as t:
                t.expect(220)
                envelope(t)
                text = texts[tag]
                if bdat:
                    # RFC 3030: chunks of 1 MiB, each answered; the last octet in BDAT 1 LAST.
                    for at in range(0, len(text) - 1, MiB):
                        chunk = text[at:min(at + MiB, len(text) - 1)]
                        t.send_raw(b"BDAT %d\r\n" % len(chunk) + chunk)
                        t.expect(250, "2.0.0")
                    sent.wait()
                    go.wait(240)
                    t.send_raw(b"BDAT 1 LAST\r\n" + text[-1:])
                else:
                    t.cmd("DATA", 354)
                    wire = stuffed(text)
                    t.send_raw(wire[:-2])
                    sent.wait()
                    go.wait(240)
                    t.send_raw(wire[-2:] + b".\r\n")
                replies[tag] = t.expect(250, "2.0.0").text
                t.cmd("QUIT", 221)
        except BaseException as e:  # reported by the test thread
            errors.append(e)
            sent.abort()

    base = server_rss(inst)
    threads = [threading.Thread(target=client, args=(tag, i % 2 == 1)) for i, tag in enumerate(texts)]
    for th in threads:
        th.start()
    try:
        sent.wait()
        # Every client has sent all but its last octets; the server has read all but
        # what the sockets still hold (flow control: it reads no faster than it writes).
        spool_tmp = inst.own_spool() / "tmp"
        streams = wait_for(lambda: len(s := [p for p in spool_tmp.iterdir() if p.name.startswith("stream.")])
                           == SESSIONS and s, timeout=60, what="a spool stream per session")
        wait_for(lambda: sum(p.stat().st_size for p in streams) >= SESSIONS * (SIZE - 4 * MiB),
                 timeout=120, what="the texts to reach the spool")
        peak = server_rss(inst)
    finally:
        go.set()
        for th in threads:
            th.join(300)
    assert not errors, errors
    grown = peak - base
    print(f"rss base {base / MiB:.1f} MiB, with {SESSIONS} sessions mid-text {peak / MiB:.1f} MiB")
    # Held in memory, the texts alone would be 200 MiB (and were 505 MiB of peak RSS
    # before streaming); streamed, each session holds at most about 3 MiB.
    assert grown < 64 * MiB, f"RSS grew by {grown / MiB:.1f} MiB for {SESSIONS} sessions"
    assert len(replies) == SESSIONS and all("queued as" in r for r in replies.values())
    files = wait_for(lambda: len(f := inst.messages("alice@example.test")) == SESSIONS and f, timeout=120,
                     what="every big message in the Maildir")
    for tag, text in texts.items():
        got = stored_text(files, tag)
        assert len(got) == 1, tag
        assert hashlib.sha256(got[0]).hexdigest() == hashlib.sha256(text).hexdigest(), tag
    assert not [p for p in (inst.own_spool() / "tmp").iterdir()]
    inst.stop()


def test_kill9_in_the_middle_of_a_big_message_loses_nothing_answered(tmp_path):
    """Two big messages answered 250 (smtplib), one to a remote domain that cannot be
    reached, so that it is still in the spool (format 2) at the kill; a third big one
    in the middle of its text.  After kill -9 and a restart: the answered ones are whole
    (delivered, or queued and readable), the unfinished one is nowhere, tmp/ is empty."""
    inst = WaypostInstance(tmp_path / "data", delivery={"smtp_port": 9, "connect_timeout": 1.0},
                           dns={"nameservers": ["127.0.0.1:9"], "timeout": 0.5})
    inst.ok("account", "add", "alice@example.test", "--no-password")
    inst.start()
    first, second, third = big_text("k1"), big_text("k2"), big_text("k3")
    with smtplib.SMTP("127.0.0.1", inst.smtp_port, timeout=120) as c:
        c.sendmail("x@outside.example", ["alice@example.test"], first)
        c.sendmail("x@outside.example", ["alice@example.test", "joe@unreachable.test"], second)
    wait_for(lambda: inst.log_lines(r"event=deferred"), timeout=30, what="the remote copy to be deferred")
    queued = inst.queue_ids()
    assert len(queued) == 1
    spool_file = inst.data / "spool" / "queue" / queued[0]
    assert spool_file.read_bytes()[:16] == b"WAYPOST-SPOOL 2\n"

    t = Transcript("127.0.0.1", inst.smtp_port, timeout=60)
    t.expect(220)
    envelope(t)
    t.cmd("DATA", 354)
    t.send_raw(stuffed(third)[: 12 * MiB])
    spool_tmp = inst.own_spool() / "tmp"
    wait_for(lambda: any(p.name.startswith("stream.") and p.stat().st_size > 8 * MiB for p in spool_tmp.iterdir()),
             timeout=60, what="the third message to be streamed")
    inst.kill9()
    t.close()

    inst.start()
    inst.expect_log(r"event=recovered .*removed_tmp=1")
    assert not list(spool_tmp.iterdir())
    assert inst.queue_ids() == queued
    shown = json.loads(inst.ok("queue", "show", queued[0], "--json"))
    assert [r["address"] for r in shown["recipients"] if r["status"] != "delivered"] == ["joe@unreachable.test"]
    assert "Subject: big k2" in inst.ok("queue", "show", queued[0], "--body")
    # The queued copy reads back whole: the spool file holds our Received field, then
    # the text exactly as the client sent it (unstuffed).
    from waypost.queue.spool import read_spool_file

    envelope_read, message = read_spool_file(spool_file)
    assert message.startswith(b"Received: ") and message.endswith(second)
    assert envelope_read["size"] == len(message)
    files = wait_for(lambda: len(f := inst.messages("alice@example.test")) >= 2 and f, timeout=60,
                     what="the two answered messages in alice's Maildir")
    for tag, text in (("k1", first), ("k2", second)):
        got = stored_text(files, tag)
        assert 1 <= len(got) <= 2 and all(g == text for g in got), tag
    assert not stored_text(files, "k3")
    inst.stop()
