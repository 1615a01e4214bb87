"""ENVELOPE and BODY/BODYSTRUCTURE values and their wire form (RFC 3501 §7.4.2).

The mailstore computes these from a message; this module only writes them.  Every
string field is an ``nstring`` (never an atom), so "7BIT" goes out as ``"7BIT"``.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import wire

__all__ = ["Address", "BodyStructure", "Envelope", "MultiPart", "SinglePart"]

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
        return wire.paren(wire.nstring(v) for v in (self.name, self.adl, self.mailbox, self.host))


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
        parts = [wire.nstring(self.date), wire.nstring(self.subject)]
        for addresses in (self.from_, self.sender, self.reply_to, self.to, self.cc, self.bcc):
            parts.append(b"(" + b"".join(a.encode() for a in addresses) + b")" if addresses else b"NIL")
        parts += [wire.nstring(self.in_reply_to), wire.nstring(self.message_id)]
        return wire.paren(parts)


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
        # body-type-1part = (body-type-basic / body-type-msg / body-type-text)
        #                   [SP body-ext-1part]
        # body-fields     = body-fld-param SP body-fld-id SP body-fld-desc SP
        #                   body-fld-enc SP body-fld-octets
        parts = [
            wire.string(self.type),
            wire.string(self.subtype),
            _params(self.params),
            wire.nstring(self.id),
            wire.nstring(self.description),
            wire.string(self.encoding),
            wire.number(self.size),
        ]
        kind = (_upper(self.type), _upper(self.subtype))
        if kind == ("MESSAGE", "RFC822"):
            # body-type-msg = media-message SP body-fields SP envelope
            #                 SP body SP body-fld-lines
            if self.envelope is None or self.body is None:
                raise ValueError("a MESSAGE/RFC822 part needs its envelope and body")
            parts += [self.envelope.encode(), self.body.encode(extensible), wire.number(self.lines or 0)]
        elif kind[0] == "TEXT":
            # body-type-text = media-text SP body-fields SP body-fld-lines
            parts.append(wire.number(self.lines or 0))
        if extensible:
            # body-ext-1part = body-fld-md5 [SP body-fld-dsp [SP body-fld-lang
            #                  [SP body-fld-loc *(SP body-extension)]]]
            parts += [
                wire.nstring(self.md5),
                _disposition(self.disposition),
                _language(self.language),
                wire.nstring(self.location),
            ]
        return wire.paren(parts)


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
        if not self.parts:
            raise ValueError("a multipart body has at least one part")
        out = b"(" + b"".join(p.encode(extensible) for p in self.parts) + b" " + wire.string(self.subtype)
        if extensible:
            # body-ext-mpart = body-fld-param [SP body-fld-dsp [SP body-fld-lang
            #                  [SP body-fld-loc *(SP body-extension)]]]
            out += b" " + b" ".join(
                (
                    _params(self.params),
                    _disposition(self.disposition),
                    _language(self.language),
                    wire.nstring(self.location),
                )
            )
        return out + b")"


BodyStructure = SinglePart | MultiPart


def _upper(value: Str) -> str:
    return (value.decode("ascii", "replace") if isinstance(value, bytes) else value).upper()


def _params(params: ParamList) -> bytes:
    # body-fld-param  = "(" string SP string *(SP string SP string) ")" / nil
    if not params:
        return b"NIL"
    return wire.paren(wire.string(x) for pair in params for x in pair)


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
