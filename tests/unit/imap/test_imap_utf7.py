"""Modified UTF-7 (RFC 3501 §5.1.3): the RFC's examples, strictness, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from waypost.imap.proto import utf7_decode, utf7_encode


def test_rfc3501_example() -> None:
    """"a mailbox name which mixes English, Chinese, and Japanese text:
    ~peter/mail/&U,BTFw-/&ZeVnLIqe-" """
    name = "~peter/mail/台北/日本語"
    assert utf7_encode(name) == "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
    assert utf7_decode("~peter/mail/&U,BTFw-/&ZeVnLIqe-") == name
    assert utf7_decode(b"&U,BTF2XlZyyKng-") == "台北日本語"


@pytest.mark.parametrize(
    ("name", "wire"),
    [
        ("", ""),
        ("INBOX", "INBOX"),
        ("&", "&-"),
        ("Tom & Jerry", "Tom &- Jerry"),
        ("é", "&AOk-"),
        ("Entwürfe", "Entw&APw-rfe"),
        ("☺!", "&Jjo-!"),
        ("\U0001f600", "&2D3eAA-"),
        ("a\tb", "a&AAk-b"),
    ],
)
def test_known_forms(name: str, wire: str) -> None:
    assert utf7_encode(name) == wire
    assert utf7_decode(wire) == name


@pytest.mark.parametrize(
    "bad",
    [
        "&Jjo!",  # "not a valid mailbox name because it does not contain a shift to US-ASCII"
        "&U,BTFw-&ZeVnLIqe-",  # "not permitted because it contains a superfluous shift"
        "&AGE-",  # BASE64 for "a", which represents itself
        "&AOk",  # unterminated
        "&AO-",  # stray bits / half a character
        "&AOl-",  # stray bits
        "&2D0-",  # lone high surrogate
        "&Jjo/-",  # "/" is not modified BASE64
        "café",  # 8-bit is not modified UTF-7
        "a\tb",  # control characters must be encoded
    ],
)
def test_strict_decoding(bad: str) -> None:
    with pytest.raises(ValueError):
        utf7_decode(bad)


def test_lone_surrogate_cannot_be_encoded() -> None:
    with pytest.raises(ValueError):
        utf7_encode("\ud800")


names = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)


@given(names)
def test_round_trip(name: str) -> None:
    wire = utf7_encode(name)
    assert wire.isascii() and all(0x20 <= ord(c) <= 0x7E for c in wire)
    assert utf7_decode(wire) == name
    assert utf7_decode(wire.encode("ascii")) == name


@given(st.text(st.sampled_from("&-AZaz09+,/!é"), max_size=20))
def test_whatever_decodes_encodes_back_identically(wire: str) -> None:
    """Strict decoding means one spelling per name: decode then encode is the
    identity on every accepted input."""
    try:
        name = utf7_decode(wire)
    except ValueError:
        return
    assert utf7_encode(name) == wire
