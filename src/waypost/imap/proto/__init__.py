"""The IMAP4rev1 protocol core, sans-IO: bytes in, typed commands out; typed
responses in, bytes out.

Owns the grammar of client commands (RFC 3501 §9 and the extensions we offer:
ESEARCH, SEARCHRES, SORT, ESORT, THREAD, LITERAL+, IDLE, NAMESPACE, UIDPLUS, MOVE, ENABLE, SPECIAL-USE, LIST-EXTENDED,
LIST-STATUS, UNSELECT, ID, SASL-IR, CONDSTORE, ACL, COMPRESS=DEFLATE,
STATUS=SIZE, LIST-MYRIGHTS), the deflate streams of COMPRESS, the wire form of server
responses, the connection state table and the reply catalogue.  It never touches
a socket, a file, a clock or the event loop, and never decides what a command
*does*: the asyncio adapter (``waypost.imap.server``) reads and writes, the
handlers (``waypost.imap.commands``) act on the mailstore.

The adapter's loop, in short::

    while True:
        try:
            command, buf = parse_command(buf, params)
        except NeedMore as more:
            if more.continuation_required:       # once per literal_offset
                write(R.CONTINUE_LITERAL.continuation().encode())
            buf += await read()
            continue
        except Rejected as refused:
            write(refused.reply().encode())
            buf = buf[refused.discard:]
            ...  # feed refused.skipper until done, if there is one
            continue
        if (reply := refusal(command, state)) is not None:
            write(reply.tagged(command.tag).encode())
            continue
        ...  # run the handler; state = next_state(state, command, result)
"""

from .commands import (
    Append,
    AppendMessage,
    CatUrl,
    Authenticate,
    Capability,
    Check,
    Close,
    Command,
    Compress,
    Copy,
    Create,
    Delete,
    DeleteAcl,
    Enable,
    Examine,
    Expunge,
    Fetch,
    GetAcl,
    Id,
    Idle,
    List,
    ListRights,
    Login,
    Logout,
    Lsub,
    Move,
    MyRights,
    Namespace,
    Noop,
    Rename,
    Search,
    Select,
    SetAcl,
    Sort,
    StartTls,
    Status,
    Store,
    Subscribe,
    Thread,
    UidExpunge,
    Unselect,
    Unsubscribe,
)
from .compress import CompressError, Deflate
from .errors import BadCharset, BadCommand, LiteralTooLarge, NeedMore, Rejected
from .fetch import MACROS, Att, BinarySection, BodySection, FetchAttribute, Section
from .framing import CommandSkipper
from .url import ImapUrl, parse_imap_url
from .lexer import Reason
from .params import DEFAULT_PARAMS, Params
from .parser import IdleDone, SaslResponse, parse_command, parse_idle_done, parse_sasl_response
from .replies import R, Reply
from .response import (
    AclData,
    AppendUid,
    BadUrl,
    BinaryItem,
    BinarySizeItem,
    BodySectionItem,
    BodyStructureItem,
    CapabilityCode,
    CapabilityData,
    Code,
    Codes,
    ContinueRequest,
    CopyUid,
    EnabledData,
    ESearchData,
    EnvelopeItem,
    ExistsData,
    ExpungeData,
    FetchData,
    FetchItem,
    FlagsData,
    FlagsItem,
    HighestModSeq,
    IdData,
    InternalDateItem,
    ListData,
    ListRightsData,
    LsubData,
    Modified,
    ModSeqItem,
    MyRightsData,
    NamespaceData,
    PermanentFlags,
    RecentData,
    Response,
    ResponseCode,
    Rfc822Item,
    SearchData,
    SizeItem,
    SortData,
    StatusData,
    Tagged,
    ThreadData,
    ThreadNode,
    UidItem,
    UidNext,
    UidValidity,
    Unseen,
    Untagged,
    encode_all,
)
from .response import BadCharset as BadCharsetCode
from .search import (
    All,
    And,
    Body,
    DateKey,
    EnvelopeField,
    HasFlag,
    Header,
    Larger,
    ModSeqKey,
    Not,
    Or,
    SearchKey,
    SequenceKey,
    Smaller,
    Text,
)
from .sequence import SAVED, SequenceError, SequenceSet, resolve
from .state import LEGAL, State, is_legal, next_state, refusal
from .structure import Address, BodyStructure, Envelope, MultiPart, SinglePart
from .utf7 import utf7_decode, utf7_encode

__all__ = [
    # parsing
    "DEFAULT_PARAMS",
    "Params",
    "ImapUrl",
    "parse_imap_url",
    "parse_command",
    "parse_idle_done",
    "parse_sasl_response",
    "IdleDone",
    "SaslResponse",
    "NeedMore",
    "Rejected",
    "BadCommand",
    "BadCharset",
    "LiteralTooLarge",
    "CommandSkipper",
    "Reason",
    # COMPRESS=DEFLATE
    "CompressError",
    "Deflate",
    # commands
    "Command",
    "Compress",
    "Append",
    "AppendMessage",
    "CatUrl",
    "Authenticate",
    "Capability",
    "Check",
    "Close",
    "Copy",
    "Create",
    "Delete",
    "DeleteAcl",
    "Enable",
    "Examine",
    "Expunge",
    "Fetch",
    "GetAcl",
    "Id",
    "Idle",
    "List",
    "ListRights",
    "Login",
    "Logout",
    "Lsub",
    "Move",
    "MyRights",
    "Namespace",
    "Noop",
    "Rename",
    "Search",
    "Select",
    "SetAcl",
    "Sort",
    "StartTls",
    "Status",
    "Store",
    "Subscribe",
    "Thread",
    "UidExpunge",
    "Unselect",
    "Unsubscribe",
    # sequence sets
    "SAVED",
    "SequenceSet",
    "SequenceError",
    "resolve",
    # FETCH items
    "Att",
    "BinarySection",
    "BodySection",
    "FetchAttribute",
    "MACROS",
    "Section",
    # SEARCH keys
    "SearchKey",
    "All",
    "And",
    "Body",
    "DateKey",
    "EnvelopeField",
    "HasFlag",
    "Header",
    "Larger",
    "ModSeqKey",
    "Not",
    "Or",
    "SequenceKey",
    "Smaller",
    "Text",
    # mailbox names
    "utf7_decode",
    "utf7_encode",
    # responses
    "Response",
    "encode_all",
    "Tagged",
    "Untagged",
    "ContinueRequest",
    "CapabilityData",
    "ExistsData",
    "RecentData",
    "ExpungeData",
    "FlagsData",
    "ListData",
    "LsubData",
    "StatusData",
    "SearchData",
    "ESearchData",
    "SortData",
    "ThreadData",
    "ThreadNode",
    "NamespaceData",
    "EnabledData",
    "IdData",
    "AclData",
    "ListRightsData",
    "MyRightsData",
    "FetchData",
    "FetchItem",
    "FlagsItem",
    "UidItem",
    "InternalDateItem",
    "SizeItem",
    "EnvelopeItem",
    "BodyStructureItem",
    "BinaryItem",
    "BinarySizeItem",
    "BodySectionItem",
    "Rfc822Item",
    "ModSeqItem",
    "Address",
    "Envelope",
    "BodyStructure",
    "SinglePart",
    "MultiPart",
    # response codes
    "ResponseCode",
    "Code",
    "Codes",
    "BadCharsetCode",
    "CapabilityCode",
    "PermanentFlags",
    "UidNext",
    "UidValidity",
    "Unseen",
    "AppendUid",
    "BadUrl",
    "CopyUid",
    "HighestModSeq",
    "Modified",
    # replies and states
    "R",
    "Reply",
    "State",
    "LEGAL",
    "is_legal",
    "next_state",
    "refusal",
]
