"""Server responses as values, and their exact wire form.

Three kinds (RFC 3501 §7): status responses (``Tagged``, ``Untagged``: OK NO BAD
PREAUTH BYE, with an optional response code), server data (``*Data``: one class per
untagged response) and the command continuation request (``ContinueRequest``).
Each value has ``encode() -> bytes``, CRLF included; ``encode_all`` joins several.

Response codes are values too (``Code`` and the classes below it); ``Codes`` names
the ones without arguments.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal

from . import wire
from .fetch import Att, Section
from .sequence import SequenceSet
from .structure import BodyStructure, Envelope

__all__ = [
    "AclData",
    "AppendUid",
    "BadUrl",
    "BadCharset",
    "BinaryItem",
    "BinarySizeItem",
    "BodySectionItem",
    "BodyStructureItem",
    "CapabilityCode",
    "CapabilityData",
    "Code",
    "Codes",
    "ContinueRequest",
    "CopyUid",
    "ESearchData",
    "EnabledData",
    "EnvelopeItem",
    "ExistsData",
    "ExpungeData",
    "PreviewItem",
    "VanishedData",
    "UidBatchesData",
    "FetchData",
    "FetchItem",
    "FlagsData",
    "FlagsItem",
    "HighestModSeq",
    "IdData",
    "InternalDateItem",
    "ListData",
    "ListRightsData",
    "LsubData",
    "Modified",
    "ModSeqItem",
    "MyRightsData",
    "QuotaData",
    "QuotaRootData",
    "NamespaceData",
    "PermanentFlags",
    "RecentData",
    "Response",
    "ResponseCode",
    "Rfc822Item",
    "SearchData",
    "SizeItem",
    "SortData",
    "StatusData",
    "Tagged",
    "ThreadData",
    "ThreadNode",
    "UidItem",
    "UidNext",
    "UidValidity",
    "Unseen",
    "Untagged",
    "encode_all",
]

CRLF = b"\r\n"


# -- response codes -------------------------------------------------------------------
#
# resp-text-code  = "ALERT" /
#                   "BADCHARSET" [SP "(" astring *(SP astring) ")" ] /
#                   capability-data / "PARSE" /
#                   "PERMANENTFLAGS" SP "("
#                   [flag-perm *(SP flag-perm)] ")" /
#                   "READ-ONLY" / "READ-WRITE" / "TRYCREATE" /
#                   "UIDNEXT" SP nz-number / "UIDVALIDITY" SP nz-number /
#                   "UNSEEN" SP nz-number /
#                   atom [SP 1*<any TEXT-CHAR except "]">]


@dataclass(frozen=True, slots=True)
class Code:
    """atom [SP 1*<any TEXT-CHAR except "]">]: a code without structured arguments."""

    name: str
    argument: str | None = None

    def encode(self) -> bytes:
        out = wire.atom(self.name)
        if self.argument:
            out += b" " + wire.text(self.argument).replace(b"]", b" ")
        return out


@dataclass(frozen=True, slots=True)
class BadCharset:
    """ "BADCHARSET" [SP "(" astring *(SP astring) ")" ]: the charsets we support."""

    charsets: tuple[str, ...] = ()
    name: ClassVar[str] = "BADCHARSET"

    def encode(self) -> bytes:
        if not self.charsets:
            return b"BADCHARSET"
        return b"BADCHARSET " + wire.paren(wire.astring(c) for c in self.charsets)


@dataclass(frozen=True, slots=True)
class CapabilityCode:
    """capability-data as a response code: [CAPABILITY IMAP4rev1 ...]"""

    capabilities: tuple[str, ...]
    name: ClassVar[str] = "CAPABILITY"

    def encode(self) -> bytes:
        return b"CAPABILITY " + b" ".join(wire.atom(c) for c in self.capabilities)


@dataclass(frozen=True, slots=True)
class PermanentFlags:
    """ "PERMANENTFLAGS" SP "(" [flag-perm *(SP flag-perm)] ")" ; may include \\*"""

    flags: tuple[str, ...]
    name: ClassVar[str] = "PERMANENTFLAGS"

    def encode(self) -> bytes:
        return b"PERMANENTFLAGS " + wire.flag_list(self.flags)


@dataclass(frozen=True, slots=True)
class UidNext:
    uid: int
    name: ClassVar[str] = "UIDNEXT"

    def encode(self) -> bytes:
        return b"UIDNEXT " + wire.number(self.uid)


@dataclass(frozen=True, slots=True)
class UidValidity:
    value: int
    name: ClassVar[str] = "UIDVALIDITY"

    def encode(self) -> bytes:
        return b"UIDVALIDITY " + wire.number(self.value)


@dataclass(frozen=True, slots=True)
class Unseen:
    seq: int
    name: ClassVar[str] = "UNSEEN"

    def encode(self) -> bytes:
        return b"UNSEEN " + wire.number(self.seq)


@dataclass(frozen=True, slots=True)
class AppendUid:
    """RFC 4315 §4:  resp-code-apnd = "APPENDUID" SP nz-number SP append-uid
                     append-uid     = uniqueid / uid-set
                     ; only permitted if client uses [MULTIAPPEND]
                     ; to append multiple messages."""

    uidvalidity: int
    uid: int | SequenceSet
    name: ClassVar[str] = "APPENDUID"

    def encode(self) -> bytes:
        if isinstance(self.uid, SequenceSet):
            if self.uid.uses_star:
                raise ValueError("uid-set has no '*'")
            return b"APPENDUID " + wire.number(self.uidvalidity) + b" " + str(self.uid).encode("ascii")
        return b"APPENDUID " + wire.number(self.uidvalidity) + b" " + wire.number(self.uid)


@dataclass(frozen=True, slots=True)
class BadUrl:
    """RFC 4469 §6:  resp-text-code =/ "BADURL" SP url-resp-text
                     url-resp-text  = 1*(%x01-09 / %x0B-0C / %x0E-5C / %x5E-FE)
                     ; Any TEXT-CHAR except "]" """

    url: str
    name: ClassVar[str] = "BADURL"

    def encode(self) -> bytes:
        text = "".join(c for c in self.url if c not in "]\r\n\x00") or "?"
        return b"BADURL " + text.encode("utf-8")


@dataclass(frozen=True, slots=True)
class CopyUid:
    """RFC 4315 §4:  resp-code-copy = "COPYUID" SP nz-number SP uid-set SP uid-set"""

    uidvalidity: int
    source: SequenceSet
    destination: SequenceSet
    name: ClassVar[str] = "COPYUID"

    def encode(self) -> bytes:
        if self.source.uses_star or self.destination.uses_star:
            raise ValueError("uid-set has no '*'")
        return b"COPYUID %d %s %s" % (
            self.uidvalidity,
            str(self.source).encode("ascii"),
            str(self.destination).encode("ascii"),
        )


@dataclass(frozen=True, slots=True)
class HighestModSeq:
    """RFC 7162 §7:  resp-text-code =/ "HIGHESTMODSEQ" SP mod-sequence-value"""

    modseq: int
    name: ClassVar[str] = "HIGHESTMODSEQ"

    def encode(self) -> bytes:
        return b"HIGHESTMODSEQ " + wire.number(self.modseq)


@dataclass(frozen=True, slots=True)
class Modified:
    """RFC 7162 §7:  resp-text-code =/ "MODIFIED" SP sequence-set"""

    sequence: SequenceSet
    name: ClassVar[str] = "MODIFIED"

    def encode(self) -> bytes:
        return b"MODIFIED " + str(self.sequence).encode("ascii")


ResponseCode = (
    Code
    | BadCharset
    | CapabilityCode
    | PermanentFlags
    | UidNext
    | UidValidity
    | Unseen
    | AppendUid
    | CopyUid
    | HighestModSeq
    | Modified
    | BadUrl
)


class Codes:
    """The response codes that take no argument."""

    # RFC 3501 §7.1
    ALERT = Code("ALERT")
    PARSE = Code("PARSE")
    READ_ONLY = Code("READ-ONLY")
    READ_WRITE = Code("READ-WRITE")
    TRYCREATE = Code("TRYCREATE")
    # RFC 4315 §3
    UIDNOTSTICKY = Code("UIDNOTSTICKY")
    # RFC 7162 §3.1.2; CLOSED comes with QRESYNC (RFC 7162 §3.2)
    NOMODSEQ = Code("NOMODSEQ")
    CLOSED = Code("CLOSED")
    # RFC 5530 §3
    UNAVAILABLE = Code("UNAVAILABLE")
    AUTHENTICATIONFAILED = Code("AUTHENTICATIONFAILED")
    AUTHORIZATIONFAILED = Code("AUTHORIZATIONFAILED")
    EXPIRED = Code("EXPIRED")
    PRIVACYREQUIRED = Code("PRIVACYREQUIRED")
    CONTACTADMIN = Code("CONTACTADMIN")
    NOPERM = Code("NOPERM")
    INUSE = Code("INUSE")
    EXPUNGEISSUED = Code("EXPUNGEISSUED")
    CORRUPTION = Code("CORRUPTION")
    SERVERBUG = Code("SERVERBUG")
    CLIENTBUG = Code("CLIENTBUG")
    CANNOT = Code("CANNOT")
    LIMIT = Code("LIMIT")
    OVERQUOTA = Code("OVERQUOTA")
    ALREADYEXISTS = Code("ALREADYEXISTS")
    NONEXISTENT = Code("NONEXISTENT")
    # RFC 3516 §4.2: a part whose content-transfer-encoding we cannot undo
    UNKNOWN_CTE = Code("UNKNOWN-CTE")
    # defined by RFC 4469 (CATENATE); RFC 7888 and RFC 7889 use it for literals
    # too large to take
    TOOBIG = Code("TOOBIG")
    # draft-ietf-mailmaint-imap-uidbatches: a batch below the server's smallest, and an
    # answer larger than it gives
    TOOFEW = Code("TOOFEW")
    TOOMANY = Code("TOOMANY")
    # RFC 6154 §3: CREATE ... (USE (...)) with a use that cannot be given
    USEATTR = Code("USEATTR")


# -- status responses and the continuation request ------------------------------------


def _resp_text(code: ResponseCode | None, text: str) -> bytes:
    # resp-text       = ["[" resp-text-code "]" SP] text
    prefix = b"" if code is None else b"[" + code.encode() + b"] "
    return prefix + wire.text(text)


def _check_text(text: str) -> None:
    if not text:
        raise ValueError("resp-text needs text (text = 1*TEXT-CHAR)")


@dataclass(frozen=True, slots=True)
class Tagged:
    """response-tagged = tag SP resp-cond-state CRLF
    resp-cond-state = ("OK" / "NO" / "BAD") SP resp-text"""

    tag: str
    status: Literal["OK", "NO", "BAD"]
    text: str
    code: ResponseCode | None = None

    def __post_init__(self) -> None:
        _check_text(self.text)

    def encode(self) -> bytes:
        return wire.text(self.tag) + b" " + self.status.encode() + b" " + _resp_text(self.code, self.text) + CRLF


@dataclass(frozen=True, slots=True)
class Untagged:
    """ "*" SP (resp-cond-state / resp-cond-bye / resp-cond-auth) CRLF

    resp-cond-auth  = ("OK" / "PREAUTH") SP resp-text
    resp-cond-bye   = "BYE" SP resp-text
    """

    status: Literal["OK", "NO", "BAD", "PREAUTH", "BYE"]
    text: str
    code: ResponseCode | None = None

    def __post_init__(self) -> None:
        _check_text(self.text)

    def encode(self) -> bytes:
        return b"* " + self.status.encode() + b" " + _resp_text(self.code, self.text) + CRLF


@dataclass(frozen=True, slots=True)
class ContinueRequest:
    """continue-req = "+" SP (resp-text / base64) CRLF

    ``data`` (a SASL challenge) is sent base64-encoded; otherwise ``text``.  With
    neither, the line is "+ " CRLF (an empty base64).
    """

    text: str = ""
    data: bytes | None = None

    def encode(self) -> bytes:
        if self.data is not None:
            return b"+ " + base64.b64encode(self.data) + CRLF
        return b"+ " + wire.text(self.text) + CRLF


# -- server data ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CapabilityData:
    """capability-data = "CAPABILITY" *(SP capability) SP "IMAP4rev1"
                         *(SP capability)"""

    capabilities: tuple[str, ...]

    def encode(self) -> bytes:
        return b"* CAPABILITY " + b" ".join(wire.atom(c) for c in self.capabilities) + CRLF


@dataclass(frozen=True, slots=True)
class ExistsData:
    """mailbox-data =/ number SP "EXISTS" """

    count: int

    def encode(self) -> bytes:
        return b"* %d EXISTS\r\n" % self.count


@dataclass(frozen=True, slots=True)
class RecentData:
    """mailbox-data =/ number SP "RECENT" """

    count: int

    def encode(self) -> bytes:
        return b"* %d RECENT\r\n" % self.count


@dataclass(frozen=True, slots=True)
class ExpungeData:
    """message-data = nz-number SP "EXPUNGE" """

    seq: int

    def encode(self) -> bytes:
        return b"* %d EXPUNGE\r\n" % self.seq


@dataclass(frozen=True, slots=True)
class VanishedData:
    """RFC 7162 §7:  message-data =/ expunged-resp
    expunged-resp = "VANISHED" [SP "(EARLIER)"] SP known-uids"""

    uids: SequenceSet
    earlier: bool = False

    def encode(self) -> bytes:
        return b"* VANISHED " + (b"(EARLIER) " if self.earlier else b"") + str(self.uids).encode() + CRLF


@dataclass(frozen=True, slots=True)
class UidBatchesData:
    """draft-ietf-mailmaint-imap-uidbatches:
    uidbatches-response = "UIDBATCHES" SP search-correlator
                          [SP uid-range *("," uid-range)]    ; highest UID first"""

    tag: str
    ranges: tuple[tuple[int, int], ...]

    def encode(self) -> bytes:
        out = b"* UIDBATCHES (TAG " + wire.string(self.tag) + b")"
        if self.ranges:
            out += b" " + b",".join(b"%d:%d" % r for r in self.ranges)
        return out + CRLF


@dataclass(frozen=True, slots=True)
class FlagsData:
    """mailbox-data =/ "FLAGS" SP flag-list"""

    flags: tuple[str, ...]

    def encode(self) -> bytes:
        return b"* FLAGS " + wire.flag_list(self.flags) + CRLF


@dataclass(frozen=True, slots=True)
class ListData:
    """mailbox-data =/ "LIST" SP mailbox-list

    mailbox-list    = "(" [mbx-list-flags] ")" SP
                       (DQUOTE QUOTED-CHAR DQUOTE / nil) SP mailbox
    RFC 5258 §6:  mailbox-list =/ ... [SP mbox-list-extended], of which we send
    CHILDINFO:  childinfo-extended-item = "CHILDINFO" SP "("
                    list-select-base-opt-quoted *(SP list-select-base-opt-quoted) ")"
    """

    attributes: tuple[str, ...]
    delimiter: str | None
    mailbox: str
    child_info: tuple[str, ...] = ()
    old_name: str | None = None  # RFC 5465 §5.4: "OLDNAME" of a renamed mailbox
    keyword: ClassVar[bytes] = b"LIST"

    def encode(self) -> bytes:
        if self.delimiter is None:
            delimiter = b"NIL"
        elif len(self.delimiter) == 1 and self.delimiter.isascii() and self.delimiter not in "\r\n\x00":
            delimiter = wire.string(self.delimiter)
        else:
            raise ValueError("a hierarchy delimiter is one 7-bit character")
        out = b"* " + self.keyword + b" " + wire.flag_list(self.attributes) + b" " + delimiter
        out += b" " + wire.astring(self.mailbox)
        if self.child_info:
            out += b' ("CHILDINFO" ' + wire.paren(wire.string(c) for c in self.child_info) + b")"
        elif self.old_name is not None:
            out += b' ("OLDNAME" (' + wire.astring(self.old_name) + b"))"
        return out + CRLF


@dataclass(frozen=True, slots=True)
class LsubData(ListData):
    """mailbox-data =/ "LSUB" SP mailbox-list"""

    keyword: ClassVar[bytes] = b"LSUB"


@dataclass(frozen=True, slots=True)
class StatusData:
    """mailbox-data =/ "STATUS" SP mailbox SP "(" [status-att-list] ")"
    status-att-list =  status-att SP number *(SP status-att SP number)
    RFC 8474 §7:  status-att-val =/ "MAILBOXID" SP "(" objectid ")"  (a str value)"""

    mailbox: str
    items: tuple[tuple[str, int | str], ...]

    def encode(self) -> bytes:
        values = b" ".join(wire.atom(k) + b" " + (wire.number(v) if isinstance(v, int) else
                                                   b"(" + wire.atom(v) + b")") for k, v in self.items)
        return b"* STATUS " + wire.astring(self.mailbox) + b" (" + values + b")" + CRLF


@dataclass(frozen=True, slots=True)
class SearchData:
    """mailbox-data =/ "SEARCH" *(SP nz-number)
    RFC 7162 §7:  mailbox-data =/ "SEARCH" [1*(SP nz-number) SP
                  search-sort-mod-seq];  search-sort-mod-seq = "(" "MODSEQ" SP
                  mod-sequence-value ")" """

    numbers: tuple[int, ...]
    modseq: int | None = None

    def encode(self) -> bytes:
        out = b"* SEARCH"
        for n in self.numbers:
            out += b" %d" % n
        if self.modseq is not None and self.numbers:
            out += b" (MODSEQ %d)" % self.modseq
        return out + CRLF


def compact(numbers: Iterable[int]) -> bytes:
    """A sequence-set naming ``numbers`` in their order: runs of consecutive
    ascending numbers become ranges (``1:3,7,5``)."""
    out: list[bytes] = []
    start = prev = -1
    for n in numbers:
        if n == prev + 1 and start >= 0:
            prev = n
            continue
        if start >= 0:
            out.append(b"%d" % start if start == prev else b"%d:%d" % (start, prev))
        start = prev = n
    if start >= 0:
        out.append(b"%d" % start if start == prev else b"%d:%d" % (start, prev))
    return b",".join(out)


@dataclass(frozen=True, slots=True)
class ESearchData:
    """RFC 4731 §3.1 (and RFC 5267 §3.2 for SORT):
    esearch-response   = "ESEARCH" [search-correlator] [SP "UID"]
                         *(SP search-return-data)
    search-correlator  = SP "(" "TAG" SP tag-string ")"
    search-return-data = "MIN" SP nz-number / "MAX" SP nz-number /
                         "ALL" SP sequence-set / "COUNT" SP number
    RFC 7162 §7:  search-return-data =/ "MODSEQ" SP mod-sequence-value
    RFC 5267 §6:  search-return-data =/ "ADDTO" SP "(" context-position SP
                      sequence-set ")" / "REMOVEFROM" SP "(" context-position SP
                      sequence-set ")"
                  context-position = number
    RFC 9394 §3:  ret-data-partial = "PARTIAL" SP "(" partial-range SP
                      partial-results ")"
                  partial-results = sequence-set / "NIL"

    ``all`` is written in its order (``compact``); None leaves an item out.
    ``partial`` is the range asked for (anything with ``encode()``) and the
    numbers it names; ``addto`` and ``removefrom`` are (position, numbers) items."""

    tag: str | None
    uid: bool = False
    min: int | None = None
    max: int | None = None
    all: tuple[int, ...] | None = None
    count: int | None = None
    modseq: int | None = None
    partial: tuple[Any, tuple[int, ...]] | None = None
    addto: tuple[tuple[int, tuple[int, ...]], ...] = ()
    removefrom: tuple[tuple[int, tuple[int, ...]], ...] = ()

    def encode(self) -> bytes:
        out = b"* ESEARCH"
        if self.tag is not None:
            out += b" (TAG " + wire.string(self.tag) + b")"
        if self.uid:
            out += b" UID"
        if self.min is not None:
            out += b" MIN %d" % self.min
        if self.max is not None:
            out += b" MAX %d" % self.max
        if self.all:
            out += b" ALL " + compact(self.all)
        if self.count is not None:
            out += b" COUNT %d" % self.count
        if self.modseq is not None:
            out += b" MODSEQ %d" % self.modseq
        if self.partial is not None:
            picked = self.partial[1]
            out += b" PARTIAL (" + self.partial[0].encode() + b" " + (compact(picked) if picked else b"NIL") + b")"
        for position, numbers in self.removefrom:
            out += b" REMOVEFROM (%d " % position + compact(numbers) + b")"
        for position, numbers in self.addto:
            out += b" ADDTO (%d " % position + compact(numbers) + b")"
        return out + CRLF


@dataclass(frozen=True, slots=True)
class SortData:
    """RFC 5256 §5:  sort-data = "SORT" *(SP nz-number)
    RFC 7162 §7:  sort-data = "SORT" [1*(SP nz-number) SP search-sort-mod-seq]"""

    numbers: tuple[int, ...]
    modseq: int | None = None

    def encode(self) -> bytes:
        out = b"* SORT"
        for n in self.numbers:
            out += b" %d" % n
        if self.modseq is not None and self.numbers:
            out += b" (MODSEQ %d)" % self.modseq
        return out + CRLF


@dataclass(frozen=True, slots=True)
class ThreadNode:
    """One message of a thread (``number`` None: a dummy standing for a missing
    parent, only at the top of a thread) and its replies."""

    number: int | None
    children: tuple[ThreadNode, ...] = ()

    def encode(self) -> bytes:
        """thread-list    = "(" (thread-members / thread-nested) ")"
        thread-members = nz-number *(SP nz-number) [SP thread-nested]
        thread-nested  = 2*thread-list"""
        members: list[bytes] = []
        node = self
        while True:
            if node.number is not None:
                members.append(b"%d" % node.number)
            if len(node.children) == 1:
                node = node.children[0]
                continue
            nested = b"".join(child.encode() for child in node.children)
            if nested:
                members.append(nested)
            break
        return b"(" + b" ".join(members) + b")"


@dataclass(frozen=True, slots=True)
class ThreadData:
    """RFC 5256 §5:  thread-data = "THREAD" [SP 1*thread-list]"""

    threads: tuple[ThreadNode, ...]

    def encode(self) -> bytes:
        if not self.threads:
            return b"* THREAD" + CRLF
        return b"* THREAD " + b"".join(t.encode() for t in self.threads) + CRLF


@dataclass(frozen=True, slots=True)
class NamespaceData:
    """RFC 2342 §6, as corrected by RFC 4466 §3:
    Namespace-Response = "NAMESPACE" SP Namespace SP Namespace SP Namespace
    Namespace          = nil / "(" 1*Namespace-Descr ")"
    Namespace-Descr    = "(" string SP (DQUOTE QUOTED-CHAR DQUOTE / nil)
                         *(Namespace-Response-Extension) ")"

    Each namespace is a tuple of (prefix, delimiter); empty means NIL.
    """

    personal: tuple[tuple[str, str | None], ...] = ()
    other_users: tuple[tuple[str, str | None], ...] = ()
    shared: tuple[tuple[str, str | None], ...] = ()

    def encode(self) -> bytes:
        parts = []
        for namespace in (self.personal, self.other_users, self.shared):
            if not namespace:
                parts.append(b"NIL")
            else:
                parts.append(
                    b"("
                    + b"".join(b"(" + wire.string(p) + b" " + wire.nstring(d) + b")" for p, d in namespace)
                    + b")"
                )
        return b"* NAMESPACE " + b" ".join(parts) + CRLF


@dataclass(frozen=True, slots=True)
class EnabledData:
    """RFC 5161 §4:  enable-data = "ENABLED" *(SP capability)"""

    capabilities: tuple[str, ...]

    def encode(self) -> bytes:
        return b"* ENABLED" + b"".join(b" " + wire.atom(c) for c in self.capabilities) + CRLF


@dataclass(frozen=True, slots=True)
class IdData:
    """RFC 2971 §4:  id_response ::= "ID" SPACE id_params_list"""

    parameters: tuple[tuple[str, str | None], ...] | None

    def encode(self) -> bytes:
        if not self.parameters:
            return b"* ID NIL\r\n"
        return (
            b"* ID " + wire.paren(wire.string(k) + b" " + wire.nstring(v) for k, v in self.parameters) + CRLF
        )


@dataclass(frozen=True, slots=True)
class AclData:
    """RFC 4314 §7:  acl-data = "ACL" SP mailbox *(SP identifier SP rights)"""

    mailbox: str
    entries: tuple[tuple[str, str], ...]

    def encode(self) -> bytes:
        out = b"* ACL " + wire.astring(self.mailbox)
        for identifier, rights in self.entries:
            out += b" " + wire.astring(identifier) + b" " + wire.astring(rights)
        return out + CRLF


@dataclass(frozen=True, slots=True)
class ListRightsData:
    """RFC 4314 §7:  listrights-data = "LISTRIGHTS" SP mailbox SP identifier
                                       SP rights *(SP rights)"""

    mailbox: str
    identifier: str
    required: str
    optional: tuple[str, ...] = ()

    def encode(self) -> bytes:
        out = b"* LISTRIGHTS " + wire.astring(self.mailbox) + b" " + wire.astring(self.identifier)
        out += b" " + wire.astring(self.required)
        for rights in self.optional:
            out += b" " + wire.astring(rights)
        return out + CRLF


@dataclass(frozen=True, slots=True)
class MyRightsData:
    """RFC 4314 §7:  myrights-data = "MYRIGHTS" SP mailbox SP rights"""

    mailbox: str
    rights: str

    def encode(self) -> bytes:
        return b"* MYRIGHTS " + wire.astring(self.mailbox) + b" " + wire.astring(self.rights) + CRLF


@dataclass(frozen=True, slots=True)
class QuotaData:
    """RFC 9208 §7:
    quota-response = "QUOTA" SP quota-root-name SP quota-list
    quota-list     = "(" quota-resource *(SP quota-resource) ")"
    quota-resource = resource-name SP resource-usage SP resource-limit"""

    root: str
    resources: tuple[tuple[str, int, int], ...]

    def encode(self) -> bytes:
        items = b" ".join(wire.atom(n) + b" " + wire.number(u) + b" " + wire.number(lim)
                          for n, u, lim in self.resources)
        return b"* QUOTA " + wire.astring(self.root) + b" (" + items + b")" + CRLF


@dataclass(frozen=True, slots=True)
class QuotaRootData:
    """RFC 9208 §7:  quotaroot-response = "QUOTAROOT" SP mailbox *(SP quota-root-name)"""

    mailbox: str
    roots: tuple[str, ...]

    def encode(self) -> bytes:
        return b"* QUOTAROOT " + wire.astring(self.mailbox) + b"".join(b" " + wire.astring(r) for r in self.roots) + CRLF


@dataclass(frozen=True, slots=True)
class GenUrlAuthData:
    """RFC 4467 §9:  genurlauth-data = "*" SP "GENURLAUTH" 1*(SP url-full)"""

    urls: tuple[str, ...]

    def encode(self) -> bytes:
        return b"* GENURLAUTH" + b"".join(b" " + wire.string(u) for u in self.urls) + CRLF


@dataclass(frozen=True, slots=True)
class UrlFetchData:
    """RFC 4467 §9:  urlfetch-data = "*" SP "URLFETCH" 1*(SP url-full SP nstring)
    RFC 5524 §5 (``ext`` given, the items asked for in the extended form):
        url-fetch-data  = url-full SP (nstring / 1*(SP "(" url-fetch-resp ")"))
        url-fetch-resp  = "BODYPARTSTRUCTURE" SP "(" body ")" / "BODY" SP nstring /
                          "BINARY" SP nstring8
    ``ext`` holds (item name, its encoded value); None as ``data`` without ``ext``
    (or as the whole answer to an extended request) is NIL: the URL names nothing."""

    url: str
    data: bytes | None = None
    ext: tuple[tuple[str, bytes], ...] | None = None

    def encode(self) -> bytes:
        head = b"* URLFETCH " + wire.string(self.url)
        if self.ext:
            return head + b"".join(b" (" + n.encode("ascii") + b" " + v + b")" for n, v in self.ext) + CRLF
        return head + b" " + nstring8(self.data) + CRLF


# -- FETCH ----------------------------------------------------------------------------
#
# message-data    = nz-number SP ("EXPUNGE" / ("FETCH" SP msg-att))
# msg-att         = "(" (msg-att-dynamic / msg-att-static)
#                    *(SP (msg-att-dynamic / msg-att-static)) ")"


def nstring8(data: bytes | None) -> bytes:
    """nstring, or a literal8 (RFC 3516 §4.2, ``~{n}``) for octets with a NUL, which
    no string may carry: only a message APPENDed as a literal8 (with BINARY) holds
    NUL, and a client that sent one reads literal8."""
    if data is not None and b"\x00" in data:
        return b"~{%d}\r\n" % len(data) + data
    return wire.nstring(data)


@dataclass(frozen=True, slots=True)
class FlagsItem:
    """msg-att-dynamic = "FLAGS" SP "(" [flag-fetch *(SP flag-fetch)] ")" """

    flags: tuple[str, ...]

    def encode(self) -> bytes:
        return b"FLAGS " + wire.flag_list(self.flags)


@dataclass(frozen=True, slots=True)
class UidItem:
    """msg-att-static =/ "UID" SP uniqueid"""

    uid: int

    def encode(self) -> bytes:
        return b"UID " + wire.number(self.uid)


@dataclass(frozen=True, slots=True)
class InternalDateItem:
    """msg-att-static =/ "INTERNALDATE" SP date-time"""

    when: datetime

    def encode(self) -> bytes:
        return b"INTERNALDATE " + wire.date_time(self.when)


@dataclass(frozen=True, slots=True)
class PreviewItem:
    """RFC 8970 §6:  msg-att-dynamic =/ "PREVIEW" SP nstring
    (UTF-8: a literal when it is not ASCII)."""

    text: str | None

    def encode(self) -> bytes:
        return b"PREVIEW " + wire.nstring(self.text)


@dataclass(frozen=True, slots=True)
class SizeItem:
    """msg-att-static =/ "RFC822.SIZE" SP number"""

    size: int

    def encode(self) -> bytes:
        return b"RFC822.SIZE " + wire.number(self.size)


@dataclass(frozen=True, slots=True)
class EnvelopeItem:
    """msg-att-static =/ "ENVELOPE" SP envelope"""

    envelope: Envelope

    def encode(self) -> bytes:
        return b"ENVELOPE " + self.envelope.encode()


@dataclass(frozen=True, slots=True)
class BodyStructureItem:
    """msg-att-static =/ "BODY" ["STRUCTURE"] SP body

    ``extensible`` False writes BODY, without extension data."""

    body: BodyStructure
    extensible: bool = True

    def encode(self) -> bytes:
        return (b"BODYSTRUCTURE " if self.extensible else b"BODY ") + self.body.encode(self.extensible)


@dataclass(frozen=True, slots=True)
class BodySectionItem:
    """msg-att-static =/ "BODY" section ["<" number ">"] SP nstring

    ``origin`` only when the client asked for a partial fetch (RFC 3501 §7.4.2).
    """

    section: Section
    data: bytes | None
    origin: int | None = None

    def encode(self) -> bytes:
        out = b"BODY[" + str(self.section).encode("ascii") + b"]"
        if self.origin is not None:
            out += b"<%d>" % self.origin
        return out + b" " + nstring8(self.data)


@dataclass(frozen=True, slots=True)
class BinaryItem:
    """RFC 3516 §6:  msg-att-static =/ "BINARY" section-binary SP (nstring / literal8)
                                    / "BINARY.SIZE" section-binary SP number

    The data goes as a literal8 (``~{n}``) when it holds a NUL, which no other
    string may carry (RFC 3516 §4.2); ``origin`` only for a partial fetch."""

    parts: tuple[int, ...]
    data: bytes | None
    origin: int | None = None

    def encode(self) -> bytes:
        out = b"BINARY[" + ".".join(str(p) for p in self.parts).encode("ascii") + b"]"
        if self.origin is not None:
            out += b"<%d>" % self.origin
        return out + b" " + nstring8(self.data)


@dataclass(frozen=True, slots=True)
class BinarySizeItem:
    """RFC 3516 §6:  "BINARY.SIZE" section-binary SP number"""

    parts: tuple[int, ...]
    size: int

    def encode(self) -> bytes:
        return b"BINARY.SIZE[" + ".".join(str(p) for p in self.parts).encode("ascii") + b"] " + wire.number(self.size)


@dataclass(frozen=True, slots=True)
class Rfc822Item:
    """msg-att-static =/ "RFC822" [".HEADER" / ".TEXT"] SP nstring"""

    att: Literal[Att.RFC822, Att.RFC822_HEADER, Att.RFC822_TEXT]
    data: bytes | None

    def encode(self) -> bytes:
        name: str = self.att.value
        return name.encode("ascii") + b" " + nstring8(self.data)


@dataclass(frozen=True, slots=True)
class ModSeqItem:
    """RFC 7162 §7:  fetch-mod-resp = "MODSEQ" SP "(" permsg-modsequence ")" """

    modseq: int

    def encode(self) -> bytes:
        return b"MODSEQ (%d)" % self.modseq


FetchItem = (
    FlagsItem
    | UidItem
    | InternalDateItem
    | SizeItem
    | EnvelopeItem
    | BodyStructureItem
    | BodySectionItem
    | BinaryItem
    | BinarySizeItem
    | Rfc822Item
    | ModSeqItem
)


@dataclass(frozen=True, slots=True)
class FetchData:
    """message-data = nz-number SP "FETCH" SP msg-att"""

    seq: int
    items: tuple[FetchItem, ...]

    def encode(self) -> bytes:
        if not self.items:
            raise ValueError("msg-att has at least one item")
        return b"* %d FETCH " % self.seq + wire.paren(i.encode() for i in self.items) + CRLF


Response = (
    Tagged
    | Untagged
    | ContinueRequest
    | CapabilityData
    | ExistsData
    | RecentData
    | ExpungeData
    | VanishedData
    | UidBatchesData
    | FlagsData
    | ListData
    | StatusData
    | SearchData
    | ESearchData
    | SortData
    | ThreadData
    | NamespaceData
    | EnabledData
    | IdData
    | AclData
    | ListRightsData
    | MyRightsData
    | QuotaData
    | QuotaRootData
    | GenUrlAuthData
    | UrlFetchData
    | FetchData
)


def encode_all(responses: Iterable[Response]) -> bytes:
    """The wire form of several responses, in order."""
    return b"".join(r.encode() for r in responses)
