"""ENVELOPE and BODY/BODYSTRUCTURE values and their wire form (RFC 3501 §7.4.2).

The mailstore computes these from a message; this module only writes them.  Every
string field is an ``nstring`` (never an atom), so "7BIT" goes out as ``"7BIT"``.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import wire

__all__ = [
    "Address",
    "BodyStructure",
    "Envelope",
    "MultiPart",
    "SinglePart",
    "address_list_wire",
    "address_wire",
    "envelope_wire",
    "multipart_wire",
    "single_part_wire",
]

Str = str | bytes
ParamList = tuple[tuple[Str, Str], ...]


@dataclass(frozen=True, slots=True)
class Address:
    """address = "(" addr-name SP addr-adl SP addr-mailbox SP addr-host ")"

    ``host`` None with a ``mailbox`` starts an RFC 5322 group (mailbox holds the
    group name); both None end it.
    """

    name: Str | None
    adl: Str | None
    mailbox: Str | None
    host: Str | None

    def encode(self) -> bytes:
        return address_wire(self.name, self.adl, self.mailbox, self.host)


@dataclass(frozen=True, slots=True)
class Envelope:
    """envelope = "(" env-date SP env-subject SP env-from SP env-sender SP
                  env-reply-to SP env-to SP env-cc SP env-bcc SP
                  env-in-reply-to SP env-message-id ")"

    An empty address list is written NIL (env-from = "(" 1*address ")" / nil).
    """

    date: Str | None
    subject: Str | None
    from_: tuple[Address, ...] = ()
    sender: tuple[Address, ...] = ()
    reply_to: tuple[Address, ...] = ()
    to: tuple[Address, ...] = ()
    cc: tuple[Address, ...] = ()
    bcc: tuple[Address, ...] = ()
    in_reply_to: Str | None = None
    message_id: Str | None = None

    def encode(self) -> bytes:
        from_ = _addresses(self.from_)
        # Sender and Reply-To are often From itself (RFC 3501 §7.4.2): written once.
        sender = from_ if self.sender is self.from_ else _addresses(self.sender)
        reply_to = from_ if self.reply_to is self.from_ else _addresses(self.reply_to)
        return envelope_wire(self.date, self.subject, from_, sender, reply_to, _addresses(self.to),
                             _addresses(self.cc), _addresses(self.bcc), self.in_reply_to, self.message_id)


def _addresses(addresses: tuple[Address, ...]) -> bytes:
    return address_list_wire([a.encode() for a in addresses])


@dataclass(frozen=True, slots=True)
class SinglePart:
    """A non-multipart body part (body-type-1part).

    ``lines`` is written for TEXT/* and MESSAGE/RFC822 (body-fld-lines);
    ``envelope`` and ``body`` for MESSAGE/RFC822 (body-type-msg).  The
    extension fields (md5, disposition, language, location) appear only in
    BODYSTRUCTURE, never in BODY.
    """

    type: Str
    subtype: Str
    params: ParamList = ()
    id: Str | None = None
    description: Str | None = None
    encoding: Str = "7BIT"
    size: int = 0
    lines: int | None = None
    envelope: Envelope | None = None
    body: BodyStructure | None = None
    md5: Str | None = None
    disposition: tuple[Str, ParamList] | None = None
    language: tuple[Str, ...] = ()
    location: Str | None = None

    def encode(self, extensible: bool = True) -> bytes:
        message = _upper(self.type) == "MESSAGE" and _upper(self.subtype) == "RFC822"
        return single_part_wire(
            self.type, self.subtype, self.params, self.id, self.description, self.encoding, self.size, self.lines,
            self.envelope.encode() if message and self.envelope is not None else None,
            self.body.encode(extensible) if message and self.body is not None else None,
            self.md5, self.disposition, self.language, self.location, extensible,
        )


@dataclass(frozen=True, slots=True)
class MultiPart:
    """body-type-mpart = 1*body SP media-subtype [SP body-ext-mpart]"""

    parts: tuple[BodyStructure, ...]
    subtype: Str
    params: ParamList = ()
    disposition: tuple[Str, ParamList] | None = None
    language: tuple[Str, ...] = ()
    location: Str | None = None

    def encode(self, extensible: bool = True) -> bytes:
        return multipart_wire([p.encode(extensible) for p in self.parts], self.subtype, self.params,
                              self.disposition, self.language, self.location, extensible)


BodyStructure = SinglePart | MultiPart


# -- the wire forms, from plain values (the classes above, and cached structures) ----


def address_wire(name: Str | None, adl: Str | None, mailbox: Str | None, host: Str | None) -> bytes:
    ns = wire.nstring
    return b"(%b %b %b %b)" % (ns(name), ns(adl), ns(mailbox), ns(host))


def address_list_wire(addresses: list[bytes]) -> bytes:
    """env-from etc. from encoded addresses: "(" 1*address ")" / nil"""
    return b"(" + b"".join(addresses) + b")" if addresses else b"NIL"


def envelope_wire(date: Str | None, subject: Str | None, from_: bytes, sender: bytes, reply_to: bytes, to: bytes,
                  cc: bytes, bcc: bytes, in_reply_to: Str | None, message_id: Str | None) -> bytes:
    """``Envelope.encode`` with the address lists already written."""
    ns = wire.nstring
    return b"(%b %b %b %b %b %b %b %b %b %b)" % (
        ns(date), ns(subject), from_, sender, reply_to, to, cc, bcc, ns(in_reply_to), ns(message_id),
    )


def single_part_wire(type: Str, subtype: Str, params: ParamList, id: Str | None, description: Str | None,
                     encoding: Str, size: int, lines: int | None, envelope: bytes | None, body: bytes | None,
                     md5: Str | None, disposition: tuple[Str, ParamList] | None, language: tuple[Str, ...],
                     location: Str | None, extensible: bool) -> bytes:
    """``SinglePart.encode``; ``envelope`` and ``body`` already written (needed for
    MESSAGE/RFC822 only)."""
    # body-type-1part = (body-type-basic / body-type-msg / body-type-text)
    #                   [SP body-ext-1part]
    # body-fields     = body-fld-param SP body-fld-id SP body-fld-desc SP
    #                   body-fld-enc SP body-fld-octets
    string, ns = wire.string, wire.nstring
    if size < 0:
        raise ValueError("IMAP numbers are unsigned")
    out = b"(%b %b %b %b %b %b %d" % (
        string(type), string(subtype), _params(params), ns(id), ns(description), string(encoding), size,
    )
    kind = _upper(type)
    if kind == "MESSAGE" and _upper(subtype) == "RFC822":
        # body-type-msg = media-message SP body-fields SP envelope
        #                 SP body SP body-fld-lines
        if envelope is None or body is None:
            raise ValueError("a MESSAGE/RFC822 part needs its envelope and body")
        out += b" %b %b %b" % (envelope, body, wire.number(lines or 0))
    elif kind == "TEXT":
        # body-type-text = media-text SP body-fields SP body-fld-lines
        out += b" " + wire.number(lines or 0)
    if extensible:
        # body-ext-1part = body-fld-md5 [SP body-fld-dsp [SP body-fld-lang
        #                  [SP body-fld-loc *(SP body-extension)]]]
        out += b" %b %b %b %b" % (ns(md5), _disposition(disposition), _language(language), ns(location))
    return out + b")"


def multipart_wire(parts: list[bytes], subtype: Str, params: ParamList, disposition: tuple[Str, ParamList] | None,
                   language: tuple[Str, ...], location: Str | None, extensible: bool) -> bytes:
    """``MultiPart.encode`` with the parts already written."""
    if not parts:
        raise ValueError("a multipart body has at least one part")
    out = b"(" + b"".join(parts) + b" " + wire.string(subtype)
    if extensible:
        # body-ext-mpart = body-fld-param [SP body-fld-dsp [SP body-fld-lang
        #                  [SP body-fld-loc *(SP body-extension)]]]
        out += b" %b %b %b %b" % (_params(params), _disposition(disposition), _language(language),
                                  wire.nstring(location))
    return out + b")"


def _upper(value: Str) -> str:
    if type(value) is str:
        return value if value.isupper() else value.upper()
    return (value.decode("ascii", "replace") if isinstance(value, bytes) else value).upper()


def _params(params: ParamList) -> bytes:
    # body-fld-param  = "(" string SP string *(SP string SP string) ")" / nil
    if not params:
        return b"NIL"
    string = wire.string
    return b"(" + b" ".join([string(x) for pair in params for x in pair]) + b")"


def _disposition(value: tuple[Str, ParamList] | None) -> bytes:
    # body-fld-dsp    = "(" string SP body-fld-param ")" / nil
    if value is None:
        return b"NIL"
    return b"(" + wire.string(value[0]) + b" " + _params(value[1]) + b")"


def _language(value: tuple[Str, ...]) -> bytes:
    # body-fld-lang   = nstring / "(" string *(SP string) ")"
    if not value:
        return b"NIL"
    if len(value) == 1:
        return wire.string(value[0])
    return wire.paren(wire.string(v) for v in value)
