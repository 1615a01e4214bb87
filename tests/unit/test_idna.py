"""Issue 13 item 16: international domain names by IDNA 2008 with UTS #46, not the
IDNA 2003 of Python's built-in codec (which maps ``faß.de`` to another domain)."""

from __future__ import annotations

import pytest

from waypost.address import AddressError, normalize_domain, parse_address
from waypost.router.table import RoutingTable


@pytest.mark.parametrize("text, expected", [
    ("faß.de", "xn--fa-hia.de"),          # IDNA 2003: fass.de, another domain
    ("FAß.DE", "xn--fa-hia.de"),          # UTS #46 maps case
    ("ＦＡß。de", "xn--fa-hia.de"),       # ... full-width letters and the ideographic full stop
    ("βόλος.com", "xn--nxasmm1c.com"),    # final sigma kept (IDNA 2003: xn--nxasmq6b.com)
    ("bücher.example.", "xn--bcher-kva.example"),
    ("fass.de", "fass.de"),
    ("XN--FA-HIA.de", "xn--fa-hia.de"),
])
def test_normalize_domain_uses_idna_2008_with_uts46(text: str, expected: str) -> None:
    assert normalize_domain(text) == expected


@pytest.mark.parametrize("text", ["☃.net", "a_ß.de", "ß" * 64 + ".de", "-ß.de"])
def test_names_idna_2008_disallows_are_refused(text: str) -> None:
    with pytest.raises(AddressError):
        normalize_domain(text)


def test_addresses_and_router_records_read_domains_the_same_way() -> None:
    assert parse_address("Jörg@Faß.de").domain == "xn--fa-hia.de"
    table, errors = RoutingTable.from_text("<info@faß.de> = desk@example.test\nfaß.de = old.example.test\n")
    assert errors == []
    hit = table.lookup("info", "xn--fa-hia.de")
    assert hit is not None and hit.address == "desk@example.test"
    other = table.lookup("info", "fass.de")
    assert other is None
    dom = table.lookup("bob", "xn--fa-hia.de")
    assert dom is not None and dom.domain == "old.example.test"


def test_server_rules_read_domains_the_same_way() -> None:
    from waypost.rules import Envelope, ServerRules

    sr = ServerRules.from_text('sharp: recipient-domain is faß.de => reject "no"\n'
                               'who: sender is Jörg@FAß.de => reject "not him"\n')
    def rcpt(r: str, sender: str = "x@outside.test") -> str | None:
        hit = sr.check_recipient(Envelope(sender=sender, recipients=[r]), r)
        return hit[0] if hit else None
    assert rcpt("a@xn--fa-hia.de") == "sharp" and rcpt("a@Faß.de") == "sharp"
    assert rcpt("a@fass.de") is None
    assert rcpt("a@fass.de", sender="jörg@xn--fa-hia.de") == "who"
    assert rcpt("a@fass.de", sender="jörg@fass.de") is None


def test_minger_answers_about_a_domain_given_in_u_labels(tmp_path, make_db) -> None:
    from waypost.directory import Directory
    from waypost.sharing.peers import directory_code

    db = make_db("w.db")
    d = Directory(db, "faß.de")
    d.add_domain("faß.de")
    d.add_account("joerg@faß.de", None)
    assert directory_code(db, "joerg@Faß.de") == 5
    assert directory_code(db, "joerg@xn--fa-hia.de") == 5
    assert directory_code(db, "joerg@fass.de") == 3
    assert directory_code(db, "joerg@☃.net") == 3
    db.close()
