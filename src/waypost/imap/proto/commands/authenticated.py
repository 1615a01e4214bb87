"""Commands legal once authenticated, with or without a selected mailbox.

RFC 3501 §6.3: SELECT EXAMINE CREATE DELETE RENAME SUBSCRIBE UNSUBSCRIBE LIST LSUB
STATUS APPEND; NAMESPACE (RFC 2342), ENABLE (RFC 5161), IDLE (RFC 2177), the ACL
commands (RFC 4314); LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819), SPECIAL-USE
(RFC 6154), SELECT/EXAMINE (CONDSTORE) and (QRESYNC ...) (RFC 7162), COMPRESS (RFC 4978), STATUS=SIZE
(RFC 8438) and LIST-MYRIGHTS (RFC 8440).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Literal

from ..lexer import Reader, Reason
from ..sequence import SequenceSet
from .base import Command, CommandParser

__all__ = [
    "LIST_RETURN_OPTIONS",
    "LIST_SELECT_OPTIONS",
    "PARSERS",
    "QresyncParams",
    "STATUS_ITEMS",
    "Append",
    "AppendMessage",
    "CatUrl",
    "Compress",
    "Create",
    "Delete",
    "DeleteAcl",
    "Enable",
    "Examine",
    "GetAcl",
    "Idle",
    "List",
    "ListRights",
    "Lsub",
    "MyRights",
    "Namespace",
    "Rename",
    "Select",
    "SetAcl",
    "Status",
    "Subscribe",
    "Unsubscribe",
]

# status-att      = "MESSAGES" / "RECENT" / "UIDNEXT" / "UIDVALIDITY" / "UNSEEN"
# RFC 7162 §7:  status-att =/ "HIGHESTMODSEQ"
# RFC 8438 §4:  status-att =/ "SIZE"
STATUS_ITEMS = ("MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ", "SIZE",
                "MAILBOXID",  # RFC 8474 §4.2
                "DELETED",    # RFC 9051 §6.3.11
                "DELETED-STORAGE",  # RFC 9208 §4.2
                "APPENDLIMIT")      # RFC 7889 §4: status-att =/ "APPENDLIMIT"

# RFC 5258 §6:
# list-select-base-opt        = "SUBSCRIBED" / option-extension
# list-select-independent-opt = "REMOTE" / option-extension
# list-select-mod-opt         = "RECURSIVEMATCH" / option-extension
# RFC 6154 §6:  list-select-independent-opt =/ "SPECIAL-USE"
LIST_SELECT_OPTIONS = ("SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE")
# RFC 5258 §6:  return-option = "SUBSCRIBED" / "CHILDREN" / status-option /
#                               option-extension
# RFC 6154 §6:  return-option =/ "SPECIAL-USE"
# RFC 8440 §4:  return-option =/ "MYRIGHTS"
LIST_RETURN_OPTIONS = ("SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS", "MYRIGHTS")

# RFC 6154 §6:
# use-attr = "\All" / "\Archive" / "\Drafts" / "\Flagged" / "\Junk" / "\Sent" /
#            "\Trash" / use-attr-ext ;  use-attr-ext = "\" atom
SPECIAL_USE = {a.upper(): a for a in ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")}

# RFC 4314 §7:  rights = astring ;; only lowercase ASCII letters and digits
_RIGHTS = re.compile(rb"[a-z0-9]*\Z")


@dataclass(frozen=True, slots=True)
class QresyncParams:
    """What the client knew of a mailbox (RFC 7162 §3.2.5): its UIDVALIDITY and
    mod-sequence, optionally the UIDs it holds (no "*") and pairs of message
    numbers and UIDs (``seq_match``: known-sequence-set, known-uid-set)."""

    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None
    seq_match: tuple[SequenceSet, SequenceSet] | None = None


@dataclass(frozen=True, slots=True)
class Select(Command):
    """``condstore``: SELECT mailbox (CONDSTORE), RFC 7162 §3.1.8; ``qresync``:
    SELECT mailbox (QRESYNC (...)), RFC 7162 §3.2.5."""

    mailbox: str
    condstore: bool = False
    name: ClassVar[str] = "SELECT"
    qresync: QresyncParams | None = None


@dataclass(frozen=True, slots=True)
class Examine(Command):
    mailbox: str
    condstore: bool = False
    name: ClassVar[str] = "EXAMINE"
    qresync: QresyncParams | None = None


@dataclass(frozen=True, slots=True)
class Create(Command):
    """``special_use``: CREATE mailbox (USE (\\Drafts ...)), RFC 6154 §3."""

    mailbox: str
    special_use: tuple[str, ...] = ()
    name: ClassVar[str] = "CREATE"


@dataclass(frozen=True, slots=True)
class Delete(Command):
    mailbox: str
    name: ClassVar[str] = "DELETE"


@dataclass(frozen=True, slots=True)
class Rename(Command):
    mailbox: str
    new_name: str
    name: ClassVar[str] = "RENAME"


@dataclass(frozen=True, slots=True)
class Subscribe(Command):
    mailbox: str
    name: ClassVar[str] = "SUBSCRIBE"


@dataclass(frozen=True, slots=True)
class Unsubscribe(Command):
    mailbox: str
    name: ClassVar[str] = "UNSUBSCRIBE"


@dataclass(frozen=True, slots=True)
class List(Command):
    """LIST, plain (RFC 3501 §6.3.8) or extended (RFC 5258).

    ``patterns`` has one item for the RFC 3501 form.  ``select_options`` and
    ``return_options`` are upper-case names from ``LIST_SELECT_OPTIONS`` and
    ``LIST_RETURN_OPTIONS``; ``return_status`` holds the items of
    ``RETURN (STATUS (...))`` (RFC 5819), and "STATUS" is then in
    ``return_options``.  ``extended`` says the client used RFC 5258 syntax, which
    changes what the server must send (RFC 5258 §3).  ``reference`` and
    ``patterns`` are kept as sent: no INBOX folding, no modified UTF-7 decoding.
    """

    reference: str
    patterns: tuple[str, ...]
    select_options: tuple[str, ...] = ()
    return_options: tuple[str, ...] = ()
    return_status: tuple[str, ...] = ()
    extended: bool = False
    name: ClassVar[str] = "LIST"


@dataclass(frozen=True, slots=True)
class Lsub(Command):
    reference: str
    pattern: str
    name: ClassVar[str] = "LSUB"


@dataclass(frozen=True, slots=True)
class Status(Command):
    """``items``: upper-case names from ``STATUS_ITEMS``, in the client's order."""

    mailbox: str
    items: tuple[str, ...]
    name: ClassVar[str] = "STATUS"


@dataclass(frozen=True, slots=True)
class CatUrl:
    """RFC 4469 §5:  url = "URL" SP astring: a part of a CATENATE taken from a
    message (or a section of it) on this server."""

    url: str


@dataclass(frozen=True, slots=True)
class AppendMessage:
    """One message of an APPEND: its octets, flags and date; ``binary`` when it came
    as a literal8 (RFC 3516 §4.4) and so may hold NUL octets.  A CATENATE (RFC 4469)
    has its parts, text octets or ``CatUrl``, in ``catenate`` and no ``message``."""

    message: bytes
    flags: tuple[str, ...] = ()
    date_time: datetime | None = None
    binary: bool = False
    catenate: tuple[bytes | CatUrl, ...] | None = None

    def __repr__(self) -> str:  # a message can be megabytes
        return (f"AppendMessage(flags={self.flags!r}, date_time={self.date_time!r}, binary={self.binary}, "
                f"message=<{len(self.message)} octets>)")


@dataclass(frozen=True, slots=True)
class Append(Command):
    """The first message is in ``message``, ``flags``, ``date_time`` and ``binary``;
    the others of a MULTIAPPEND (RFC 3502) in ``more``.  ``messages`` has them all."""

    mailbox: str
    message: bytes
    flags: tuple[str, ...] = ()
    date_time: datetime | None = None
    more: tuple[AppendMessage, ...] = ()
    binary: bool = False
    catenate: tuple[bytes | CatUrl, ...] | None = None
    name: ClassVar[str] = "APPEND"

    @property
    def messages(self) -> tuple[AppendMessage, ...]:
        return (AppendMessage(self.message, self.flags, self.date_time, self.binary, self.catenate), *self.more)

    def __repr__(self) -> str:  # a message can be megabytes
        return (
            f"Append(tag={self.tag!r}, mailbox={self.mailbox!r}, flags={self.flags!r}, "
            f"date_time={self.date_time!r}, binary={self.binary}, message=<{len(self.message)} octets>, "
            f"more={self.more!r})"
        )


@dataclass(frozen=True, slots=True)
class Namespace(Command):
    name: ClassVar[str] = "NAMESPACE"


@dataclass(frozen=True, slots=True)
class Enable(Command):
    """``capabilities`` upper-cased, in the client's order."""

    capabilities: tuple[str, ...]
    name: ClassVar[str] = "ENABLE"


@dataclass(frozen=True, slots=True)
class Idle(Command):
    """IDLE; the DONE line that ends it is read with ``parse_idle_done``."""

    name: ClassVar[str] = "IDLE"


@dataclass(frozen=True, slots=True)
class SetAcl(Command):
    """SETACL: ``mode`` "+" adds ``rights``, "-" removes them, "" replaces."""

    mailbox: str
    identifier: str
    rights: str
    mode: Literal["", "+", "-"] = ""
    name: ClassVar[str] = "SETACL"


@dataclass(frozen=True, slots=True)
class DeleteAcl(Command):
    mailbox: str
    identifier: str
    name: ClassVar[str] = "DELETEACL"


@dataclass(frozen=True, slots=True)
class GetAcl(Command):
    mailbox: str
    name: ClassVar[str] = "GETACL"


@dataclass(frozen=True, slots=True)
class ListRights(Command):
    mailbox: str
    identifier: str
    name: ClassVar[str] = "LISTRIGHTS"


@dataclass(frozen=True, slots=True)
class MyRights(Command):
    mailbox: str
    name: ClassVar[str] = "MYRIGHTS"


@dataclass(frozen=True, slots=True)
class Compress(Command):
    """RFC 4978 §3; ``algorithm`` is upper case ("DEFLATE" is the only one)."""

    algorithm: str
    name: ClassVar[str] = "COMPRESS"


def _compress(r: Reader, tag: str) -> Command:
    # RFC 4978 §4:
    # command-auth =/ compress
    # compress    = "COMPRESS" SP algorithm
    # algorithm   = "DEFLATE"
    r.sp()
    algorithm = r.keyword("compression algorithm")
    if algorithm != "DEFLATE":
        r.fail(Reason.UNKNOWN_OPTION, f"unknown compression algorithm {algorithm!r}")
    return Compress(tag, algorithm)


# -- SELECT, EXAMINE ------------------------------------------------------------------


def _select_params(r: Reader) -> tuple[bool, QresyncParams | None]:
    # RFC 4466 §3:
    # select          = "SELECT" SP mailbox [select-params]
    # select-params   = SP "(" select-param *(SP select-param) ")"
    # select-param    = select-param-name [SP select-param-value]
    # RFC 7162 §7:  select-param =/ condstore-param ;  condstore-param = "CONDSTORE"
    #   select-param =/ "QRESYNC" SP "(" uidvalidity SP mod-sequence-value
    #                   [SP known-uids] [SP seq-match-data] ")"
    if not r.skip_sp():
        return False, None
    r.open()
    condstore = False
    qresync: QresyncParams | None = None
    while True:
        name = r.keyword("select parameter")
        if name == "CONDSTORE":
            condstore = True
        elif name == "QRESYNC" and qresync is None:
            r.sp()
            qresync = _qresync_param(r)
        else:
            r.fail(Reason.UNKNOWN_OPTION, f"unknown SELECT parameter {name!r}")
        if not r.skip_sp():
            break
    r.close()
    return condstore, qresync


def _known_set(r: Reader, what: str) -> SequenceSet:
    # known-uids = sequence-set ;; sequence of UIDs, "*" is not allowed
    value = r.sequence_set()
    if value.saved or value.uses_star:
        r.fail(Reason.BAD_SEQUENCE, f"{what}: \"*\" and \"$\" are not allowed")
    return value


def _qresync_param(r: Reader) -> QresyncParams:
    # RFC 7162 §7:
    # uidvalidity    = nz-number
    # seq-match-data = "(" known-sequence-set SP known-uid-set ")"
    # known-sequence-set = sequence-set ; "*" is not allowed
    # known-uid-set  = sequence-set ; "*" is not allowed
    r.open()
    uidvalidity = r.nz_number("UIDVALIDITY")
    r.sp()
    modseq = r.mod_sequence(zero=False)
    known: SequenceSet | None = None
    match: tuple[SequenceSet, SequenceSet] | None = None
    if r.skip_sp():
        if r.peek() != 0x28:
            known = _known_set(r, "known UIDs")
            if r.skip_sp():
                match = _seq_match(r)
        else:
            match = _seq_match(r)
    r.close()
    return QresyncParams(uidvalidity, modseq, known, match)


def _seq_match(r: Reader) -> tuple[SequenceSet, SequenceSet]:
    r.open()
    seqs = _known_set(r, "known sequence set")
    r.sp()
    uids = _known_set(r, "known UID set")
    r.close()
    return seqs, uids


def _select(r: Reader, tag: str) -> Command:
    r.sp()
    mailbox = r.mailbox()
    condstore, qresync = _select_params(r)
    return Select(tag, mailbox, condstore, qresync=qresync)


def _examine(r: Reader, tag: str) -> Command:
    # examine         = "EXAMINE" SP mailbox [select-params]   (RFC 4466 §3)
    r.sp()
    mailbox = r.mailbox()
    condstore, qresync = _select_params(r)
    return Examine(tag, mailbox, condstore, qresync=qresync)


# -- mailbox management ---------------------------------------------------------------


def _create(r: Reader, tag: str) -> Command:
    # RFC 4466 §3:
    # create          = "CREATE" SP mailbox [create-params]
    # create-params   = SP "(" create-param *( SP create-param) ")"
    # RFC 6154 §6:
    # create-param =/ "USE" SP "(" [use-attr *(SP use-attr)] ")"
    r.sp()
    mailbox = r.mailbox()
    uses: list[str] = []
    if r.skip_sp():
        r.open()
        while True:
            name = r.keyword("CREATE parameter")
            if name != "USE":
                r.fail(Reason.UNKNOWN_OPTION, f"unknown CREATE parameter {name!r}")
            r.sp()
            r.open()
            if not r.try_close():
                uses.append(_use_attr(r))
                while r.skip_sp():
                    uses.append(_use_attr(r))
                r.close()
            if not r.skip_sp():
                break
        r.close()
    return Create(tag, mailbox, tuple(dict.fromkeys(uses)))


def _use_attr(r: Reader) -> str:
    r.expect(0x5C, "special-use attribute")
    name = "\\" + r.atom("special-use attribute").decode("ascii")
    return SPECIAL_USE.get(name.upper(), name)


def _one_mailbox(cls: type[Delete] | type[Subscribe] | type[Unsubscribe] | type[GetAcl] | type[MyRights]) -> CommandParser:
    # delete          = "DELETE" SP mailbox
    # subscribe       = "SUBSCRIBE" SP mailbox
    # unsubscribe     = "UNSUBSCRIBE" SP mailbox
    # RFC 4314 §7:  getacl = "GETACL" SP mailbox ;  myrights = "MYRIGHTS" SP mailbox
    def parse(r: Reader, tag: str) -> Command:
        r.sp()
        return cls(tag, r.mailbox())

    return parse


def _rename(r: Reader, tag: str) -> Command:
    # rename          = "RENAME" SP mailbox SP mailbox
    r.sp()
    old = r.mailbox()
    r.sp()
    return Rename(tag, old, r.mailbox())


# -- LIST, LSUB, STATUS ---------------------------------------------------------------


def _list(r: Reader, tag: str) -> Command:
    # RFC 5258 §6:
    # list = "LIST" [SP list-select-opts] SP mailbox SP mbox-or-pat
    #        [SP list-return-opts]
    # list-select-opts = "(" [
    #        (*(list-select-opt SP) list-select-base-opt
    #        *(SP list-select-opt))
    #        / (list-select-independent-opt
    #        *(SP list-select-independent-opt))
    #        ] ")"
    # mbox-or-pat = list-mailbox / patterns
    # patterns    = "(" list-mailbox *(SP list-mailbox) ")"
    r.sp()
    extended = False
    select: list[str] = []
    if r.peek() == 0x28:
        extended = True
        r.open()
        if not r.try_close():
            select.append(_option(r, LIST_SELECT_OPTIONS, "LIST selection option"))
            while r.skip_sp():
                select.append(_option(r, LIST_SELECT_OPTIONS, "LIST selection option"))
            r.close()
        # RFC 5258 §3.1: RECURSIVEMATCH "MUST NOT occur as the only selection
        # option (or only with REMOTE)".
        if "RECURSIVEMATCH" in select and "SUBSCRIBED" not in select:
            r.fail(Reason.SYNTAX, "RECURSIVEMATCH needs SUBSCRIBED")
        r.sp()
    reference = r.text(r.astring("reference name"), "reference name")
    r.sp()
    patterns: list[str] = []
    if r.peek() == 0x28:
        extended = True
        r.open()
        patterns.append(r.text(r.list_mailbox(), "mailbox pattern"))
        while r.skip_sp():
            patterns.append(r.text(r.list_mailbox(), "mailbox pattern"))
        r.close()
    else:
        patterns.append(r.text(r.list_mailbox(), "mailbox pattern"))
    returns: list[str] = []
    status: tuple[str, ...] = ()
    if r.skip_sp():
        # list-return-opts = "RETURN" SP "(" [return-option *(SP return-option)] ")"
        # RFC 5819 §4:  return-option =/ status-option
        #   status-option = "STATUS" SP "(" status-att *(SP status-att) ")"
        if not r.take("RETURN"):
            r.fail_here("RETURN")
        extended = True
        r.sp()
        r.open()
        if not r.try_close():
            while True:
                option = _option(r, LIST_RETURN_OPTIONS, "LIST return option")
                returns.append(option)
                if option == "STATUS":
                    r.sp()
                    status = _status_items(r)
                if not r.skip_sp():
                    break
            r.close()
    return List(
        tag,
        reference,
        tuple(patterns),
        tuple(dict.fromkeys(select)),
        tuple(dict.fromkeys(returns)),
        status,
        extended,
    )


def _option(r: Reader, known: tuple[str, ...], what: str) -> str:
    # RFC 5258 §3: unknown options are rejected with a tagged BAD.
    name = r.keyword(what)
    if name not in known:
        r.fail(Reason.UNKNOWN_OPTION, f"unknown {what} {name!r}")
    return name


def _lsub(r: Reader, tag: str) -> Command:
    # lsub            = "LSUB" SP mailbox SP list-mailbox
    r.sp()
    reference = r.text(r.astring("reference name"), "reference name")
    r.sp()
    return Lsub(tag, reference, r.text(r.list_mailbox(), "mailbox pattern"))


def _status_items(r: Reader) -> tuple[str, ...]:
    # "(" status-att *(SP status-att) ")"
    r.open()
    items = [_status_att(r)]
    while r.skip_sp():
        items.append(_status_att(r))
    r.close()
    return tuple(dict.fromkeys(items))


def _status_att(r: Reader) -> str:
    name = r.keyword("status item")
    if name not in STATUS_ITEMS:
        r.fail(Reason.SYNTAX, f"unknown status item {name!r}")
    return name


def _status(r: Reader, tag: str) -> Command:
    # status          = "STATUS" SP mailbox SP
    #                   "(" status-att *(SP status-att) ")"
    r.sp()
    mailbox = r.mailbox()
    r.sp()
    return Status(tag, mailbox, _status_items(r))


# -- APPEND ---------------------------------------------------------------------------


def _append(r: Reader, tag: str) -> Command:
    # RFC 3502 §6 (MULTIAPPEND):
    #   append          = "APPEND" SP mailbox 1*append-message
    #   append-message  = append-opts SP append-data
    #   append-opts     = [SP flag-list] [SP date-time]
    # RFC 3516 §4.4 (BINARY), RFC 4466 §2.1:
    #   append-data     = literal / literal8
    #   literal8        = "~{" number ["+"] "}" CRLF *OCTET
    r.sp()
    mailbox = r.mailbox()
    first = _append_message(r)
    more: list[AppendMessage] = []
    while r.peek() == 0x20:
        if len(more) + 1 >= r.params.max_append_messages:
            r.fail(Reason.TOO_MANY_MESSAGES, f"more than {r.params.max_append_messages} messages in one APPEND")
        more.append(_append_message(r))
    return Append(tag, mailbox, first.message, first.flags, first.date_time, tuple(more), first.binary,
                  first.catenate)


def _append_message(r: Reader) -> AppendMessage:
    r.sp()
    flags: tuple[str, ...] = ()
    if r.peek() == 0x28:
        flags = r.flag_list()
        r.sp()
    when: datetime | None = None
    if r.peek() == 0x22:
        when = r.date_time()
        r.sp()
    c = r.peek()
    if c == 0x7E:
        return AppendMessage(r.literal8(), flags, when, True)
    if c != 0x7B and r.take("CATENATE"):
        return AppendMessage(b"", flags, when, catenate=_catenate(r))
    if c != 0x7B:
        r.fail_here("message literal")
    return AppendMessage(r.literal(), flags, when)


def _catenate(r: Reader) -> tuple[bytes | CatUrl, ...]:
    # RFC 4469 §5:
    #   append-data     =/ "CATENATE" SP "(" cat-part *(SP cat-part) ")"
    #   cat-part        = text-literal / url
    #   text-literal    = "TEXT" SP literal
    #   url             = "URL" SP astring
    # (RFC 3516 §4.4 lets the text be a literal8 as well.)
    r.sp()
    r.open()
    parts = [_cat_part(r)]
    while r.skip_sp():
        parts.append(_cat_part(r))
    r.close()
    return tuple(parts)


def _cat_part(r: Reader) -> bytes | CatUrl:
    if r.take("TEXT"):
        r.sp()
        return r.literal8() if r.peek() == 0x7E else r.literal()
    if r.take("URL"):
        r.sp()
        return CatUrl(r.text(r.astring("URL"), "URL"))
    r.fail_here("TEXT or URL")


# -- NAMESPACE, ENABLE, IDLE ----------------------------------------------------------


def _enable(r: Reader, tag: str) -> Command:
    # RFC 5161 §4:  command-any =/ "ENABLE" 1*(SP capability)
    # capability      = ("AUTH=" auth-type) / atom
    capabilities: list[str] = []
    r.sp()
    capabilities.append(r.keyword("capability"))
    while r.skip_sp():
        capabilities.append(r.keyword("capability"))
    return Enable(tag, tuple(dict.fromkeys(capabilities)))


# -- ACL (RFC 4314) -------------------------------------------------------------------


def _identifier(r: Reader) -> str:
    # identifier      = astring   (UTF-8 since RFC 4314, Appendix A item 1)
    return r.text(r.astring("identifier"), "identifier")


def _rights(r: Reader, raw: bytes) -> str:
    if not _RIGHTS.match(raw):
        r.fail(Reason.SYNTAX, "rights are lowercase ASCII letters and digits")
    return raw.decode("ascii")


def _setacl(r: Reader, tag: str) -> Command:
    # setacl          = "SETACL" SP mailbox SP identifier
    #                     SP mod-rights
    # mod-rights      = astring
    #                     ;; +rights to add, -rights to remove
    #                     ;; rights to replace
    r.sp()
    mailbox = r.mailbox()
    r.sp()
    identifier = _identifier(r)
    r.sp()
    raw = r.astring("rights")
    mode: Literal["", "+", "-"] = ""
    if raw[:1] == b"+":
        mode, raw = "+", raw[1:]
    elif raw[:1] == b"-":
        mode, raw = "-", raw[1:]
    return SetAcl(tag, mailbox, identifier, _rights(r, raw), mode)


def _mailbox_identifier(cls: type[DeleteAcl] | type[ListRights]) -> CommandParser:
    # deleteacl       = "DELETEACL" SP mailbox SP identifier
    # listrights      = "LISTRIGHTS" SP mailbox SP identifier
    def parse(r: Reader, tag: str) -> Command:
        r.sp()
        mailbox = r.mailbox()
        r.sp()
        return cls(tag, mailbox, _identifier(r))

    return parse


PARSERS: dict[str, CommandParser] = {
    "SELECT": _select,
    "EXAMINE": _examine,
    "CREATE": _create,
    "DELETE": _one_mailbox(Delete),
    "RENAME": _rename,
    "SUBSCRIBE": _one_mailbox(Subscribe),
    "UNSUBSCRIBE": _one_mailbox(Unsubscribe),
    "LIST": _list,
    "LSUB": _lsub,
    "STATUS": _status,
    "APPEND": _append,
    # RFC 2342 §6:  Namespace_Command = "NAMESPACE"
    "NAMESPACE": lambda r, tag: Namespace(tag),
    "ENABLE": _enable,
    # RFC 2177 §4:  idle ::= "IDLE" CRLF "DONE"
    "IDLE": lambda r, tag: Idle(tag),
    "SETACL": _setacl,
    "DELETEACL": _mailbox_identifier(DeleteAcl),
    "GETACL": _one_mailbox(GetAcl),
    "LISTRIGHTS": _mailbox_identifier(ListRights),
    "MYRIGHTS": _one_mailbox(MyRights),
    "COMPRESS": _compress,
}
