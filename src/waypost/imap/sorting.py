"""SORT keys and THREAD algorithms (RFC 5256, RFC 5957), pure: messages in, order
out.  No file, socket or index here: the handlers (``commands/sort.py``) hand in each
message's header block, as the SEARCH header cache keeps it.

Strings are compared with the i;unicode-casemap collation (RFC 5051; I18NLEVEL=1,
RFC 5255): each character titlecased, then NFKD, as UTF-8 octets (``casemap``; for
ASCII the same as i;ascii-casemap).  Ties go to the lower message number (RFC 5256
§3).
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Callable, Iterable, Sequence

from . import collation
from . import message as mime
from .proto import ThreadNode
from .proto.structure import Address

__all__ = [
    "Item",
    "base_subject",
    "casemap",
    "ordered_subject",
    "references",
    "refs",
    "sent_date",
    "sort",
]


def casemap(text: str) -> bytes:
    """The form SORT orders and THREAD compares base subjects in: i;unicode-casemap
    (RFC 5051, the default comparator of I18NLEVEL=1, RFC 5255 §4.3)."""
    return collation.casemap(text)


# -- base subject (RFC 5256 §2.1) -------------------------------------------------------
#
# subj-refwd   = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"
# subj-blob    = "[" *BLOBCHAR "]" *WSP
# subj-leader  = (*subj-blob subj-refwd) / WSP
# subj-trailer = "(fwd)" / WSP
# subj-fwd-hdr = "[fwd:"    subj-fwd-trl = "]"

_BLOB = r"\[[^\[\]]*\] *"
_LEADER = re.compile(rf"(?:{_BLOB})*(?:re|fwd?) *(?:{_BLOB})?:|\ ", re.I)
_BLOB_PREFIX = re.compile(_BLOB)
_WHITE = re.compile(r"[ \t\r\n]+")


def base_subject(raw: str | bytes | None) -> tuple[str, bool]:
    """RFC 5256 §2.1: the base subject of a Subject field value (encoded-words
    decoded), and whether the message is a reply or forward (a subj-refwd, a
    "(fwd)" trailer or a "[fwd: ...]" wrapper was removed)."""
    if raw is None:
        return "", False
    # (1) decode encoded-words; white space runs become one space.
    text = mime.decode_header(raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogateescape"))
    text = _WHITE.sub(" ", text)
    refwd = False
    while True:
        # (2) trailing "(fwd)" and white space, repeatedly.
        while True:
            if text.endswith(" "):
                text = text[:-1]
            elif text[-5:].lower() == "(fwd)":
                text = text[:-5]
                refwd = True
            else:
                break
        # (3) to (5): leaders, and a leading blob that does not leave nothing.
        while True:
            m = _LEADER.match(text)
            if m is not None:
                if m.group() != " ":
                    refwd = True
                text = text[m.end():]
                continue
            m = _BLOB_PREFIX.match(text)
            if m is not None and text[m.end():]:
                text = text[m.end():]
                continue
            break
        # (6) a "[fwd: ...]" wrapper: remove it and start again from (2).
        if text[:5].lower() == "[fwd:" and text.endswith("]"):
            text = text[5:-1]
            refwd = True
            continue
        return text, refwd


# -- dates and addresses --------------------------------------------------------------


def sent_date(raw: str | bytes | None, internaldate: float) -> float:
    """RFC 5256 §2.2: the Date field as seconds since the epoch (UTC), or the
    internal date when it is missing or cannot be read."""
    if raw is None:
        return internaldate
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    try:
        parsed = email.utils.parsedate_tz(text)
        if parsed is None:
            return internaldate
        return float(email.utils.mktime_tz(parsed))
    except (TypeError, ValueError, OverflowError, IndexError):
        return internaldate


def _str(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _first(addresses: tuple[Address, ...]) -> Address | None:
    """The first address as the envelope lists it: for a group, its start (the
    group's name in ``mailbox``), as Dovecot sorts."""
    return addresses[0] if addresses else None


def _mailbox(addresses: tuple[Address, ...]) -> str:
    """RFC 5256 §3: the addr-mailbox of the first address."""
    a = _first(addresses)
    return "" if a is None else _str(a.mailbox)


def _display(addresses: tuple[Address, ...]) -> str:
    """RFC 5957 §3: the display name of the first address (decoded), else its
    addr-spec (``mailbox`` alone when there is no host, as in a group's start)."""
    a = _first(addresses)
    if a is None:
        return ""
    if a.name is not None:
        raw = a.name if isinstance(a.name, bytes) else a.name.encode("utf-8", "surrogateescape")
        name = mime.decode_header(raw).strip()
        if name:
            return name
    if a.host is None or a.host == "":
        return _str(a.mailbox)
    return f"{_str(a.mailbox)}@{_str(a.host)}"


# -- SORT -----------------------------------------------------------------------------


class Item:
    """One message as SORT and THREAD see it: ``number`` is what the answer names
    (message number or UID), ``seq`` breaks ties; ``header`` its header block, read
    field by field as the keys need them (first occurrence, as ENVELOPE)."""

    __slots__ = ("number", "seq", "internaldate", "size", "header", "_fields")

    def __init__(self, number: int, seq: int, internaldate: float, size: int, header: bytes) -> None:
        self.number = number
        self.seq = seq
        self.internaldate = internaldate
        self.size = size
        self.header = header
        self._fields: dict[str, bytes | None] = {}

    def field(self, name: str) -> bytes | None:
        """The unfolded value of the first field called ``name``, or None."""
        try:
            return self._fields[name]
        except KeyError:
            value = self._fields[name] = mime.header_value(self.header, name)
            return value

    def addresses(self, name: str) -> tuple[Address, ...]:
        return mime.address_list(self.field(name))


def _key(name: str) -> Callable[[Item], object]:
    if name == "ARRIVAL":
        return lambda m: m.internaldate
    if name == "SIZE":
        return lambda m: m.size
    if name == "DATE":
        return lambda m: sent_date(m.field("Date"), m.internaldate)
    if name == "SUBJECT":
        return lambda m: casemap(base_subject(m.field("Subject"))[0])
    if name in ("FROM", "TO", "CC"):
        return lambda m: casemap(_mailbox(m.addresses(name)))
    if name in ("DISPLAYFROM", "DISPLAYTO"):
        return lambda m: casemap(_display(m.addresses(name[7:])))
    raise ValueError(f"unknown sort key {name!r}")


def sort(items: Iterable[Item], keys: Sequence[tuple[str, bool]]) -> list[Item]:
    """RFC 5256 §3 SORT: by ``keys`` ((name, reversed), first key first); what all
    keys leave equal stays in message number order."""
    order = sorted(items, key=lambda m: m.seq)
    for name, reverse in reversed(keys):
        key = _key(name)
        values = {id(m): key(m) for m in order}
        # A stable sort: equal values keep the order of the keys after them (and
        # in the end of the message numbers), also in reverse.
        order.sort(key=lambda m: values[id(m)], reverse=reverse)  # type: ignore[arg-type,return-value]
    return order


# -- THREAD (RFC 5256 §3) ---------------------------------------------------------------

_MSG_ID = re.compile(rb"<([^<>\s]+)>")


def _ids(raw: str | bytes | None) -> list[bytes]:
    if raw is None:
        return []
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogateescape")
    return [m for m in _MSG_ID.findall(data) if b"@" in m]


class _Info:
    __slots__ = ("item", "date", "subject", "refwd")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.date = sent_date(item.field("Date"), item.internaldate)
        subject, self.refwd = base_subject(item.field("Subject"))
        self.subject = casemap(subject)

    def order(self) -> tuple[float, int]:
        return (self.date, self.item.seq)


def ordered_subject(items: Iterable[Item]) -> list[ThreadNode]:
    """THREAD=ORDEREDSUBJECT: messages sorted by base subject, then sent date; each
    run of one subject is a thread whose first message is the parent of the rest;
    threads in the order of their first messages' sent dates."""
    infos = sorted((_Info(i) for i in items), key=lambda x: (x.subject, x.date, x.item.seq))
    threads: list[tuple[tuple[float, int], ThreadNode]] = []
    i = 0
    while i < len(infos):
        j = i + 1
        while j < len(infos) and infos[j].subject == infos[i].subject:
            j += 1
        root = infos[i]
        kids = tuple(ThreadNode(x.item.number) for x in infos[i + 1 : j])
        threads.append((root.order(), ThreadNode(root.item.number, kids)))
        i = j
    threads.sort(key=lambda t: t[0])
    return [t[1] for t in threads]


class _Box:
    """A container of the REFERENCES algorithm: a message, or a dummy (``info``
    None) standing for one that was referenced but is not here."""

    __slots__ = ("info", "parent", "children")

    def __init__(self, info: _Info | None) -> None:
        self.info = info
        self.parent: _Box | None = None
        self.children: list[_Box] = []

    def descends_from(self, other: _Box) -> bool:
        node: _Box | None = self
        while node is not None:
            if node is other:
                return True
            node = node.parent
        return False

    def unlink(self) -> None:
        if self.parent is not None:
            self.parent.children.remove(self)
            self.parent = None

    def link_under(self, parent: _Box) -> None:
        self.parent = parent
        parent.children.append(self)

    def first(self) -> _Info | None:
        """The message that stands for this container: its own, or its first
        child's (a dummy's children are sorted first)."""
        if self.info is not None:
            return self.info
        return self.children[0].first() if self.children else None

    def order(self) -> tuple[float, int]:
        info = self.first()
        return (0.0, 0) if info is None else info.order()


def _prune(children: list[_Box], at_root: bool) -> list[_Box]:
    """RFC 5256 §3 REFERENCES step (3)."""
    out: list[_Box] = []
    for box in children:
        box.children = _prune(box.children, False)
        for child in box.children:
            child.parent = box
        if box.info is not None:
            out.append(box)
        elif not box.children:
            continue
        elif at_root and len(box.children) > 1:
            out.append(box)
        else:
            out.extend(box.children)
    return out


def _sort_tree(boxes: list[_Box]) -> None:
    """Step (6): siblings by sent date, the deepest first (a dummy sorts as its
    first child)."""
    for box in boxes:
        _sort_tree(box.children)
    boxes.sort(key=_Box.order)


def _node(box: _Box) -> ThreadNode:
    number = None if box.info is None else box.info.item.number
    return ThreadNode(number, tuple(_node(c) for c in box.children))


def _linked(items: Iterable[Item]) -> list[_Box]:
    """REFERENCES steps (1) to (3): the messages linked by their references, the
    root set with its dummies pruned."""
    infos = sorted((_Info(i) for i in items), key=lambda x: x.item.seq)
    table: dict[bytes, _Box] = {}
    boxes: list[_Box] = []
    # (1) link messages by their references.
    for info in infos:
        item = info.item
        ids = _ids(item.field("Message-ID"))
        box: _Box | None = None
        if ids:
            known = table.get(ids[0])
            if known is None:
                box = table[ids[0]] = _Box(info)
                boxes.append(box)
            elif known.info is None:  # referenced before: the dummy is this message
                box = known
                box.info = info
        if box is None:  # no Message-ID, or a duplicate: a unique one
            box = _Box(info)
            boxes.append(box)
        refs = _ids(item.field("References"))
        if not refs:
            refs = _ids(item.field("In-Reply-To"))[:1]
        # (1.A) each reference the parent of the next.
        prev: _Box | None = None
        for ref in refs:
            ref_box = table.get(ref)
            if ref_box is None:
                ref_box = table[ref] = _Box(None)
                boxes.append(ref_box)
            if (prev is not None and ref_box.parent is None and ref_box is not prev
                    and not prev.descends_from(ref_box)):
                ref_box.link_under(prev)
            prev = ref_box
        # (1.B) the last reference is the message's parent: any parent it had
        # goes, and the new link is not made if it would close a loop.
        box.unlink()
        if prev is not None and not prev.descends_from(box):
            box.link_under(prev)
    # (2) the root set; (3) prune dummies.
    roots = _prune([b for b in boxes if b.parent is None], True)
    for root in roots:
        root.parent = None
    return roots


def references(items: Iterable[Item]) -> list[ThreadNode]:
    """THREAD=REFERENCES (RFC 5256 §3)."""
    roots = _linked(items)
    # (4) the root set by sent date (a dummy's children first).
    _sort_tree(roots)
    # (5) gather threads of one base subject.
    def subject(box: _Box) -> tuple[bytes, bool, bool]:
        info = box.first()
        if info is None:
            return b"", False, False
        return info.subject, box.info is None, box.info is not None and box.info.refwd

    by_subject: dict[bytes, _Box] = {}
    for root in roots:
        subj, dummy, refwd = subject(root)
        if not subj:
            continue
        held = by_subject.get(subj)
        if held is None:
            by_subject[subj] = root
        elif held.info is not None and (dummy or (held.info.refwd and not refwd)):
            by_subject[subj] = root
    removed: set[int] = set()
    replaced: dict[int, _Box] = {}
    for root in roots:
        subj, dummy, refwd = subject(root)
        if not subj or root.parent is not None:  # empty, or already under a new dummy
            continue
        held = by_subject[subj]
        if held is root:
            continue
        removed.add(id(root))
        if held.info is None and dummy:
            for child in root.children:
                child.link_under(held)
            root.children = []
        elif held.info is None:
            root.link_under(held)
        elif refwd and not held.info.refwd:
            root.link_under(held)
        else:
            joined = _Box(None)
            replaced[id(held)] = joined
            held.link_under(joined)
            root.link_under(joined)
            by_subject[subj] = joined
    top = [replaced.get(id(r), r) for r in roots if id(r) not in removed]
    # (6) every set of siblings by sent date.
    _sort_tree(top)
    return [_node(b) for b in top]


def _newest(box: _Box) -> tuple[float, int]:
    """The (sent date, number) of the newest message of a thread."""
    best = (0.0, 0) if box.info is None else box.info.order()
    for child in box.children:
        best = max(best, _newest(child))
    return best


def refs(items: Iterable[Item]) -> list[ThreadNode]:
    """THREAD=REFS (draft-ietf-morg-inthread, as Dovecot offers it): REFERENCES'
    linking by Message-ID, References and In-Reply-To (steps 1 to 3) without its
    gathering of threads by base subject (step 5); siblings by sent date as in step
    (6), and the threads by the sent date of their newest message, so that the
    thread with the latest reply comes last."""
    roots = _linked(items)
    _sort_tree(roots)
    roots.sort(key=_newest)
    return [_node(b) for b in roots]
