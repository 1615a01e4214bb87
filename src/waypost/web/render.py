"""A stored message as WebUser shows it: header fields, the text, the HTML sanitised
by nh3 (remote images dropped unless asked for), and the attachments.  Pure: bytes in,
a ``Shown`` out.  Malformed MIME still renders: whatever the parser makes of it."""

from __future__ import annotations

import email.header
import html
import email.utils
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser, BytesHeaderParser
from typing import TYPE_CHECKING, Sequence
from urllib.parse import quote

import nh3

if TYPE_CHECKING:
    from ..db import MessageRecord

__all__ = ["Attachment", "Draft", "Shown", "Summary", "attachment", "build", "decode_header", "draft", "list_rows",
           "render", "summary"]

#: Tags and attributes kept in message HTML; everything else (script, style, iframe,
#: forms, event handlers, javascript: URLs) goes.
_TAGS = {"a", "abbr", "b", "blockquote", "br", "caption", "code", "col", "colgroup", "dd", "del", "div", "dl",
         "dt", "em", "font", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "li", "ol", "p", "pre",
         "q", "s", "small", "span", "strike", "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th",
         "thead", "tr", "u", "ul", "center"}
_ATTRIBUTES = {"*": {"title", "align", "dir", "lang"}, "a": {"href"}, "img": {"src", "alt", "width", "height"},
               "td": {"colspan", "rowspan"}, "th": {"colspan", "rowspan"}, "font": {"color", "size"}}
#: Longest subject/from shown in a list row.
MAX_FIELD = 300


@dataclass(slots=True)
class Attachment:
    index: int
    filename: str
    content_type: str
    size: int


@dataclass(slots=True)
class Shown:
    subject: str
    sender: str
    to: str
    cc: str
    date: str
    text: str = ""
    html: str = ""                # sanitised
    remote_blocked: int = 0       # remote images left out
    attachments: list[Attachment] = field(default_factory=list)


@dataclass(slots=True)
class Summary:
    subject: str
    sender: str
    date: str


def list_rows(rows: "Sequence[tuple[MessageRecord, Summary, bool, bool]]", box: str) -> str:
    """The rows of a message list (``messages.html``): (message, summary, unread,
    flagged) each.  Made here rather than in the template because it is the hot loop
    of the busiest page: Jinja escaped ten values a row (2.5 ms of CPU for a page of
    50); here only the message's own texts are escaped (numbers, fixed words and the
    quoted mailbox name need none).  HTML, for ``|safe``."""
    escape = html.escape
    link = f"/mail/msg?box={quote(box, safe='')}&amp;uid="
    out = []
    for m, s, unread, flagged in rows:
        out.append(f'<tr class="{"unread" if unread else "read"}" data-uid="{m.uid}"><td><input type="checkbox" '
                   f'name="uid" value="{m.uid}" aria-label="select"> {"★" if flagged else ""}</td>'
                   f'<td>{escape(s.sender)}</td><td><a href="{link}{m.uid}">{escape(s.subject)}</a></td>'
                   f'<td>{escape(s.date)}</td><td>{m.size if m.size >= 0 else ""}</td></tr>\n')
    return "".join(out)


def decode_header(value: object, limit: int = 0) -> str:
    if value is None:
        return ""
    try:
        text = str(email.header.make_header(email.header.decode_header(str(value))))
    except Exception:  # undecodable words: the raw text
        text = str(value)
    text = " ".join(text.split())
    return text[:limit].rstrip() + "…" if limit and len(text) > limit else text


def summary(head: bytes) -> Summary:
    """Subject, From and Date from a message's header section."""
    msg = BytesHeaderParser(policy=policy.compat32).parsebytes(head)
    return Summary(decode_header(msg.get("Subject"), MAX_FIELD) or "(no subject)",
                   decode_header(msg.get("From"), MAX_FIELD), _date(msg.get("Date")))


def _date(value: object) -> str:
    if not value:
        return ""
    try:
        return email.utils.parsedate_to_datetime(str(value)).strftime("%Y-%m-%d %H:%M")
    except (TypeError, ValueError, IndexError, OverflowError):
        return str(value)[:40]


def _parts(msg: Message) -> list[Message]:
    return [p for p in msg.walk() if not p.is_multipart()]


def _is_attachment(part: Message) -> bool:
    disposition = (part.get("Content-Disposition") or "").split(";")[0].strip().lower()
    return disposition == "attachment" or (bool(part.get_filename()) and disposition != "inline") \
        or part.get_content_maintype() not in ("text", "multipart", "message")


def _payload_text(part: Message) -> str:
    try:
        raw = part.get_payload(decode=True)
    except Exception:
        raw = None
    if not isinstance(raw, bytes):
        return str(part.get_payload() or "")
    charset = part.get_content_charset() or "utf-8"
    try:
        return raw.decode(charset, "replace")
    except LookupError:
        return raw.decode("utf-8", "replace")


def sanitize(html: str, remote_images: bool) -> tuple[str, int]:
    """nh3's clean with our allow-lists; ``http(s):`` images dropped unless allowed
    (they tell the sender the message was read).  Returns (html, images dropped)."""
    blocked = 0

    def attribute_filter(tag: str, attr: str, value: str) -> str | None:
        nonlocal blocked
        if tag == "img" and attr == "src":
            v = value.strip().lower()
            if v.startswith("data:image/") and ";base64," in v:
                return value
            if v.startswith(("http:", "https:", "//")):
                if remote_images:
                    return value
                blocked += 1
            return None
        return value

    clean = nh3.clean(html, tags=_TAGS, attributes=_ATTRIBUTES, attribute_filter=attribute_filter,
                      url_schemes={"http", "https", "mailto", "data"}, link_rel="noopener noreferrer nofollow")
    return clean, blocked


def render(data: bytes, remote_images: bool = False) -> Shown:
    msg = BytesParser(policy=policy.compat32).parsebytes(data)
    shown = Shown(decode_header(msg.get("Subject")) or "(no subject)", decode_header(msg.get("From")),
                  decode_header(msg.get("To")), decode_header(msg.get("Cc")), _date(msg.get("Date")))
    for i, part in enumerate(_parts(msg)):
        if _is_attachment(part):
            try:
                size = len(part.get_payload(decode=True) or b"")
            except Exception:
                size = 0
            shown.attachments.append(Attachment(i, decode_header(part.get_filename()) or f"part-{i}",
                                                part.get_content_type(), size))
        elif part.get_content_type() == "text/html" and not shown.html:
            shown.html, shown.remote_blocked = sanitize(_payload_text(part), remote_images)
        elif part.get_content_maintype() == "text" and not shown.text:
            shown.text = _payload_text(part)
    return shown


def attachment(data: bytes, index: int) -> tuple[str, str, bytes] | None:
    """(file name, content type, bytes) of the ``index``-th leaf part, or None."""
    msg = BytesParser(policy=policy.compat32).parsebytes(data)
    parts = _parts(msg)
    if not 0 <= index < len(parts):
        return None
    part = parts[index]
    payload = part.get_payload(decode=True)
    return (decode_header(part.get_filename()) or f"part-{index}", part.get_content_type(),
            payload if isinstance(payload, bytes) else b"")


def build(sender: str, to: str, cc: str, subject: str, body: str, files: list[tuple[str, str, bytes]],
          hostname: str, in_reply_to: str = "", references: str = "") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    if to:
        msg["To"] = to
    if cc:
        msg["Cc"] = cc
    msg["Subject"] = subject
    msg["Date"] = email.utils.formatdate(localtime=True)
    msg["Message-ID"] = email.utils.make_msgid(domain=hostname)
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = references
    msg["MIME-Version"] = "1.0"
    msg.set_content(body)
    for name, ctype, content in files:
        main, _, sub = (ctype or "application/octet-stream").partition("/")
        msg.add_attachment(content, maintype=main or "application", subtype=sub or "octet-stream", filename=name)
    return msg


@dataclass(slots=True)
class Draft:
    """A reply or a forward as the compose form starts it."""

    to: str
    cc: str
    subject: str
    body: str
    in_reply_to: str = ""
    references: str = ""
    attachments: list[Attachment] = field(default_factory=list)   # a forward's, to keep


_RE = ("re:", "aw:", "sv:")
_FWD = ("fwd:", "fw:", "wg:")


def _addresses(values: list[str]) -> list[tuple[str, str]]:
    return [(n, a) for n, a in email.utils.getaddresses([decode_header(v) for v in values]) if a]


def _quote(text: str) -> str:
    return "\n".join("> " + line if line else ">" for line in text.replace("\r\n", "\n").rstrip("\n").split("\n"))


def draft(data: bytes, mode: str, own: set[str]) -> Draft:
    """The compose form's start for ``mode`` ``reply`` (to Reply-To, else From),
    ``all`` (and every other To and Cc, not ``own`` addresses) or ``forward`` (no
    recipient; the original's attachments offered).  RFC 5322 §3.6.4: In-Reply-To is
    the original's Message-ID, References its References (else In-Reply-To) and that."""
    msg = BytesParser(policy=policy.compat32).parsebytes(data)
    shown = render(data)
    text = shown.text
    if not text and shown.html:
        text = html.unescape(nh3.clean(shown.html, tags=set()))  # the HTML's text, for quoting
    subject = shown.subject if shown.subject != "(no subject)" else ""
    if mode == "forward":
        if not subject.lower().startswith(_FWD):
            subject = f"Fwd: {subject}".rstrip()
        head = "\n".join(f"{k}: {v}" for k, v in (("Subject", shown.subject), ("Date", shown.date),
                                                   ("From", shown.sender), ("To", shown.to), ("Cc", shown.cc)) if v)
        body = f"\n\n-------- Forwarded message --------\n{head}\n\n{text}"
        return Draft("", "", subject, body, attachments=list(shown.attachments))
    if not subject.lower().startswith(_RE):
        subject = f"Re: {subject}".rstrip()
    mine = {a.lower() for a in own}
    reply_to = _addresses([str(v) for v in msg.get_all("Reply-To", [])]) or _addresses(
        [str(v) for v in msg.get_all("From", [])])
    to = [(n, a) for n, a in reply_to]
    cc: list[tuple[str, str]] = []
    if mode == "all":
        taken = {a.lower() for _n, a in to} | mine
        for n, a in _addresses([str(v) for v in msg.get_all("To", []) + msg.get_all("Cc", [])]):
            if a.lower() not in taken:
                taken.add(a.lower())
                cc.append((n, a))
        if not to or all(a.lower() in mine for _n, a in to):  # a reply to one's own message
            to = [x for x in to if x[1].lower() not in mine] or to
    msgid = " ".join(str(msg.get("Message-ID") or "").split())
    refs = " ".join(str(msg.get("References") or msg.get("In-Reply-To") or "").split())
    references = f"{refs} {msgid}".strip() if msgid else refs
    who = shown.sender or "someone"
    said = f"On {shown.date}, {who} wrote:" if shown.date else f"{who} wrote:"
    body = f"\n\n{said}\n{_quote(text)}\n" if text else ""
    return Draft(", ".join(email.utils.formataddr(x) for x in to), ", ".join(email.utils.formataddr(x) for x in cc),
                 subject, body, msgid, references[-4000:])
