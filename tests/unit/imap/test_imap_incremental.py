"""Incremental parsing: any prefix of a command is NeedMore, "+" is asked for exactly
at each synchronizing literal, and a stream cut anywhere gives the same commands."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from imap_samples import SAMPLES

from waypost.imap.proto import Command, NeedMore, Noop, Rejected, parse_command

NEXT = b"Z9 NOOP\r\n"


def sync_literal_ends(data: bytes) -> list[int]:
    """Offsets just after each "{n}" CRLF of a synchronizing literal, found by
    walking lines and literals (RFC 3501 §2.2) independently of the parser."""
    ends: list[int] = []
    pos = 0
    while True:
        lf = data.index(b"\n", pos)
        line = data[pos : lf + 1]
        pos = lf + 1
        if not line.endswith(b"}\r\n") or b"{" not in line:
            return ends
        inner = line[line.rindex(b"{") + 1 : -3]
        if inner.endswith(b"+"):
            pos += int(inner[:-1])
        else:
            ends.append(pos)
            pos += int(inner)


@pytest.mark.parametrize("data", SAMPLES, ids=[s[:40].decode("latin-1") for s in SAMPLES])
def test_one_octet_at_a_time(data: bytes) -> None:
    whole, rest = parse_command(data)
    assert rest == b""
    asked: list[int] = []
    for k in range(len(data)):
        with pytest.raises(NeedMore) as more:
            parse_command(data[:k])
        if more.value.continuation_required:
            assert more.value.literal_offset == k
            asked.append(k)
        elif more.value.literal_size is not None:
            # waiting for literal data: the literal started at or before here
            assert more.value.literal_offset is not None and more.value.literal_offset <= k
    assert asked == sync_literal_ends(data)
    assert parse_command(data + NEXT) == (whole, NEXT)


class Adapter:
    """What the asyncio adapter does with the parser, minus the sockets."""

    def __init__(self) -> None:
        self.buf = b""
        self.commands: list[Command] = []
        self.continuations: list[int] = []  # literal offsets answered with "+"
        self.refused: list[Rejected] = []

    def receive(self, data: bytes) -> None:
        self.buf += data
        while True:
            try:
                command, self.buf = parse_command(self.buf)
            except NeedMore as more:
                if more.continuation_required:
                    offset = more.literal_offset
                    assert offset is not None
                    assert offset not in self.continuations, "asked twice for one literal"
                    self.continuations.append(offset)
                return
            except Rejected as refused:
                self.refused.append(refused)
                self.buf = self.buf[refused.discard :]
                continue
            self.continuations.clear()  # offsets are per command
            self.commands.append(command)


def client_stream(data: bytes, chunks: list[int]) -> list[bytes]:
    """Cut ``data`` into pieces, never sending past a synchronizing literal header
    before the server could have answered it (the client waits for "+")."""
    stops = set(sync_literal_ends(data))
    pieces: list[bytes] = []
    pos = 0
    sizes = iter(chunks)
    while pos < len(data):
        end = min(len(data), pos + max(1, next(sizes, 7)))
        for stop in sorted(stops):
            if pos < stop < end:
                end = stop
                break
        pieces.append(data[pos:end])
        pos = end
    return pieces


@settings(max_examples=200, deadline=None)
@given(
    order=st.permutations(range(len(SAMPLES))),
    chunks=st.lists(st.integers(min_value=1, max_value=64), max_size=400),
)
def test_a_stream_cut_anywhere_gives_the_same_commands(order: list[int], chunks: list[int]) -> None:
    picked = [SAMPLES[i] for i in order[:8]]
    expected = [parse_command(s)[0] for s in picked]
    adapter = Adapter()
    asked = 0
    for sample in picked:
        for piece in client_stream(sample, chunks):
            adapter.receive(piece)
        asked += len(sync_literal_ends(sample))
    assert adapter.commands == expected
    assert adapter.refused == []
    assert adapter.buf == b""


def test_pipelined_commands_in_one_read() -> None:
    adapter = Adapter()
    adapter.receive(b"".join(s for s in SAMPLES if not sync_literal_ends(s)) + NEXT)
    assert adapter.commands[-1] == Noop("Z9")
    assert len(adapter.commands) == 1 + sum(1 for s in SAMPLES if not sync_literal_ends(s))


def test_a_bad_command_in_a_pipeline_costs_only_itself() -> None:
    adapter = Adapter()
    adapter.receive(b"A1 NOOP\r\nA2 FETCH x\r\n\r\nA3 NOOP\r\n")
    assert [c.tag for c in adapter.commands] == ["A1", "A3"]
    assert [r.tag for r in adapter.refused] == ["A2", None]


def test_random_cuts_of_one_big_stream() -> None:
    rng = random.Random(3501)
    stream = b"".join(SAMPLES)
    # send everything: a client that does not wait for "+" (LITERAL+ style)
    adapter = Adapter()
    pos = 0
    while pos < len(stream):
        step = rng.randint(1, 50)
        adapter.receive(stream[pos : pos + step])
        pos += step
    assert adapter.commands == [parse_command(s)[0] for s in SAMPLES]
