"""I18NLEVEL=1 (RFC 5255 §4.3): SEARCH matches with ``collation.fold`` (case folding and
NFKD), so composed and decomposed accents, full-width and compatibility forms find each
other; i;unicode-casemap (RFC 5051) for SORT is in test_imap_sort.py."""

from __future__ import annotations

from waypost.imap.collation import casemap, fold
from waypost.imap.message import MessageView, prefilter, plain_header, searchable
from waypost.imap.proto import Body, EnvelopeField, Header


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


def test_fold() -> None:
    assert fold("ABC") == "abc"
    assert fold("Café") == fold("CAFE\u0301") == "cafe\u0301"
    assert fold("ＣＡＦＥ") == "cafe" and fold("ℌello") == "hello"
    assert fold("Straße") == "strasse"
    assert casemap("Café") == casemap("CAFE\u0301")


def test_search_finds_other_forms() -> None:
    msg = crlf("Subject: =?utf-8?q?Caf=C3=A9_=EF=BC=A1?=\nContent-Type: text/plain; charset=utf-8\n\n"
               "Rendez-vous au cafe\u0301, ℌall ＢＥＥ.\n")
    view = MessageView(msg)
    assert view.envelope_contains("SUBJECT", "CAFE\u0301")  # composed in the field, decomposed asked
    assert view.envelope_contains("SUBJECT", "café a")      # full-width A in the field
    assert view.body_contains("CAFÉ") and view.body_contains("hall bee")
    assert view.text_contains("rendez-vous au café")
    assert not view.body_contains("cafe ")


def test_prefilter_stays_a_necessary_condition() -> None:
    # A plain header that matches keeps passing the filter; one that cannot, does not.
    block = crlf("Subject: Meeting about the Cafe\n\n")
    for key, matches in ((EnvelopeField("SUBJECT", "the CAFE"), True), (Header("Subject", "ＣＡＦＥ"), True),
                         (EnvelopeField("SUBJECT", "tea"), False)):
        f = prefilter(key)
        assert f is not None
        passes = f(searchable(block), plain_header(block))
        assert MessageView(block).envelope_contains("SUBJECT", key.value) is matches
        assert passes or not matches
    assert prefilter(Body("x")) is None
