"""SEARCH of HEADER and the envelope keys from the per-field strings a worker keeps
(``message.field_strings``, ``search._Field``) answers exactly what the message's
header answers (RFC 3501 §6.4.4; folding, RFC 2047 words, addresses as parsed,
fields given twice, no such field, an empty needle, a needle across two values)."""

from __future__ import annotations

import itertools

import pytest

from waypost.imap.commands import search
from waypost.imap.message import MessageView, field_filter, field_keys, field_strings, matcher
from waypost.imap.proto import And, Body, DateKey, EnvelopeField, Header, Not, Or

HEADERS = [
    b"From: Alice Example <alice@sender.test>\r\nSubject: Quarterly report\r\n\r\n",
    b"From: alice(Alice Example)@sender.test\r\nTo: bob@rcpt.test, carol@rcpt.test\r\n"
    b"Subject: =?UTF-8?Q?Stra=C3=9Fe_und_caf=C3=A9?=\r\n\r\n",
    b"From: =?UTF-8?Q?Alice?= <alice (x) @ (y) sender . test>\r\nX-Tag: needle-7f3a\r\n\r\n",
    b"From: bob@sender.test\r\nSubject: folded\r\n  over two lines\r\nX-Tag: one\r\nX-Tag: two\r\n\r\n",
    b"Subject: no from here\r\nX-TAG:  needle-7F3A\r\n\r\n",
    b"from: \"Alice \\\"Al\\\" Example\" <alice@sender.test>\r\ncc: Dave <dave@rcpt.test>\r\n\r\n",
    b"Subject: caf\xc3\xa9 8-bit\r\nX-Tag:\r\n\r\n",
    b"To: undisclosed-recipients:;\r\n\r\n",
    b"No-Colon-Line\r\nSubject: after a bad line\r\n\r\n",
]

KEYS = [
    Header("X-Tag", "needle-7f3a"), Header("x-tag", ""), Header("X-Tag", "one"), Header("X-Tag", "one\ntwo"),
    Header("X-Tag", "e two"), Header("Subject", "over two"), Header("SUBJECT", "STRASSE"), Header("Subject", "café"),
    Header("From", "alice@sender.test"), Header("bad name", "x"), Header("Ärger", ""), Header("To", ""),
    EnvelopeField("FROM", "alice@sender.test"), EnvelopeField("FROM", "Alice Example"), EnvelopeField("FROM", ""),
    EnvelopeField("TO", "carol"), EnvelopeField("CC", "dave <dave@rcpt.test>"), EnvelopeField("BCC", ""),
    EnvelopeField("SUBJECT", "report"), EnvelopeField("SUBJECT", "straße"), EnvelopeField("FROM", "al\"")
]


def _answers_from_strings(block: bytes) -> MessageView:
    cache: dict[tuple[bytes, bool], object] = {}

    def strings(wanted: bytes, addresses: bool):
        return cache.setdefault((wanted, addresses), field_strings(block, wanted, addresses))
    return MessageView(lambda: pytest.fail("the message was read"), strings=strings)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", KEYS, ids=repr)
def test_the_strings_answer_as_the_header_does(key) -> None:
    for block in HEADERS:
        whole = MessageView(block + b"body\r\n")
        cached = _answers_from_strings(block)
        if isinstance(key, Header):
            assert cached.header_contains(key.name, key.value) is whole.header_contains(key.name, key.value), block
        else:
            assert cached.envelope_contains(key.field, key.value) is whole.envelope_contains(key.field, key.value), block


class _Msg:
    def __init__(self, uid: int, view: MessageView) -> None:
        self.seq = self.uid = uid
        self.flags = ()
        self.size = self.modseq = 0
        self.internaldate = 0.0
        self.savedate = None
        self._view = view

    def view(self) -> MessageView:
        return self._view


def _field_of(wanted: bytes, addresses: bool) -> search._Field:
    field = search._Field()
    for uid, block in enumerate(HEADERS, 1):
        field.add(uid, field_strings(block, wanted, addresses))
    return field


@pytest.mark.parametrize("key", KEYS + [
    And((Header("X-Tag", "needle"), EnvelopeField("SUBJECT", "no"))),
    Or(EnvelopeField("FROM", "bob"), Header("X-Tag", "needle")),
    Not(EnvelopeField("FROM", "alice")),
    Or(And((Header("X-Tag", ""), Header("Subject", "folded"))), EnvelopeField("TO", "bob")),
], ids=repr)
def test_the_field_scan_and_filter_find_the_matches(key) -> None:
    """``_Field.scan`` over the joined strings, with ``field_filter``'s clauses, keeps
    every match, and exactly the matches when it says it is exact."""
    keys = field_keys(key)
    assert keys is not None
    fields = {k: _field_of(*k) for k in keys}
    test = matcher(key, len(HEADERS), len(HEADERS))
    matches = [uid for uid, block in enumerate(HEADERS, 1) if test(_Msg(uid, MessageView(block + b"x\r\n")))]
    clauses, exact = field_filter(key)
    passed = search._by_fields(fields, clauses) if clauses else list(range(1, len(HEADERS) + 1))
    assert set(matches) <= set(passed)
    if exact:
        assert passed == matches
    for (wanted, addresses), field in fields.items():  # every needle as scan finds it, against brute force
        for needle in ("needle-7f3a", "e", "one\ntwo", "\n", "alice", "straße", ""):
            brute = [uid for uid, block in enumerate(HEADERS, 1)
                     if (lambda v, a: any(needle in s for s in v + a) if needle else bool(v))(
                         *field_strings(block, wanted, addresses))]
            assert field.scan(needle) == brute, (wanted, needle)


def test_keys_reading_more_than_fields_are_not_answered_from_them() -> None:
    assert field_keys(And((Header("X", "y"), Body("z")))) is None
    assert field_keys(Or(Header("X", "y"), DateKey("BEFORE", __import__("datetime").date(2020, 1, 1), sent=True))) is None
    assert field_keys(Not(EnvelopeField("FROM", "a"))) == {(b"from", True)}


def test_a_field_counts_what_it_holds_and_the_budget_holds() -> None:
    memory = search._Memory(400_000)
    one = memory.field((1, 1, b"subject", False))
    for uid in range(1, 1001):
        one.add(uid, field_strings(b"Subject: " + b"x" * 100 + b"\r\n\r\n", b"subject", False))
    before = one.size
    assert before > 1000 * 100
    assert one.scan("xxx") == list(range(1, 1001))
    assert one.size > before + 1000 * 100  # the joined copy is counted
    one.drop_except({u: None for u in range(1, 11)})
    assert len(one.covered) == 10 and sorted(one.values) == list(range(1, 11))
    assert one.size < before / 50
    for i, uid in itertools.product(range(2, 8), range(1, 1001)):
        memory.field((i, 1, b"subject", False)).add(uid, (("y" * 100,), ()))
    memory.trim()
    assert memory.held() <= 400_000
    assert (7, 1, b"subject", False) in memory.boxes and (1, 1, b"subject", False) not in memory.boxes
