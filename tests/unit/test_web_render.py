"""WebUser's reply and forward drafts (``waypost.web.render.draft``): pure, bytes in."""

from __future__ import annotations

from email.message import EmailMessage

from waypost.web import render


def _msg(**fields: str) -> EmailMessage:
    m = EmailMessage()
    for k, v in fields.items():
        m[k.replace("_", "-")] = v
    return m


def test_reply_all_leaves_out_own_addresses_and_keeps_the_thread():
    m = _msg(From="Sam <sam@remote.test>", To="me@example.test, Ann <ann@example.test>",
             Cc="ALIAS@example.test, ann@example.test, bo@x.test", Subject="Re: plan",
             Message_ID="<m2@remote.test>", In_Reply_To="<m1@remote.test>")
    m.set_content("line\n\nafter a blank\n")
    d = render.draft(m.as_bytes(), "all", {"me@example.test", "alias@example.test"})
    assert d.to == "Sam <sam@remote.test>"
    assert d.cc == "Ann <ann@example.test>, bo@x.test"  # no own address, no duplicate
    assert d.subject == "Re: plan"  # not "Re: Re: plan"
    assert d.in_reply_to == "<m2@remote.test>" and d.references == "<m1@remote.test> <m2@remote.test>"
    assert "> line\n>\n> after a blank" in d.body


def test_reply_goes_to_reply_to_and_quotes_the_text_of_html():
    m = _msg(From="list@remote.test", Reply_To="Owner <owner@remote.test>", Subject="news")
    m.set_content("<p>Fish &amp; chips <b>now</b></p><script>x()</script>", subtype="html")
    d = render.draft(m.as_bytes(), "reply", set())
    assert d.to == "Owner <owner@remote.test>" and d.cc == "" and d.subject == "Re: news"
    assert "> Fish & chips now" in d.body and "script" not in d.body and "x()" not in d.body
    assert "list@remote.test wrote:" in d.body


def test_forward_offers_the_attachments_and_says_what_it_forwards():
    m = _msg(From="a@remote.test", To="me@example.test", Subject="Fwd: report", Date="Mon, 01 Jan 2024 10:00:00 +0000")
    m.set_content("see attached")
    m.add_attachment(b"PDF", maintype="application", subtype="pdf", filename="r.pdf")
    d = render.draft(m.as_bytes(), "forward", set())
    assert d.to == "" and d.subject == "Fwd: report"
    assert [a.filename for a in d.attachments] == ["r.pdf"]
    assert "-------- Forwarded message --------\nSubject: Fwd: report\nDate: 2024-01-01" in d.body
    assert render.attachment(m.as_bytes(), d.attachments[0].index) == ("r.pdf", "application/pdf", b"PDF")
