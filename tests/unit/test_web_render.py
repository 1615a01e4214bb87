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


def test_list_rows_escape_the_message_texts_and_quote_the_mailbox():
    from waypost.db import MessageRecord

    rows = [(MessageRecord(7, "7.x", "cur", ("\\Flagged",), 1, 1234, 1.0, 1.0),
             render.Summary('<script>alert(1)</script> & "q"', "Eve <eve@x.test>' onmouseover='x", "<b>today</b>"),
             True, True),
            (MessageRecord(8, "8.x", "cur", (), 1, -1, 1.0, 1.0), render.Summary("plain", "a@x.test", ""), False,
             False)]
    out = render.list_rows(rows, 'A&B "<x>"/c')
    assert "<script>" not in out and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;q&quot;" in out
    assert "Eve &lt;eve@x.test&gt;&#x27; onmouseover=&#x27;x" in out and "&lt;b&gt;today&lt;/b&gt;" in out
    assert 'href="/mail/msg?box=A%26B%20%22%3Cx%3E%22%2Fc&amp;uid=7"' in out
    assert out.count("<tr ") == 2 and 'class="unread" data-uid="7"' in out and "★" in out
    assert 'class="read" data-uid="8"' in out and "<td>1234</td>" in out and "<td></td></tr>" in out
