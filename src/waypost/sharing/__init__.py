"""Domain sharing: the Minger protocol (draft-hathcock-minger-06) as MDaemon speaks it.

Owns the Minger wire format (``proto``, sans-IO), the UDP responder that answers our
peers (``server``) and the client that asks them (``client``).  It never decides
whether an address exists (the directory does, through the ``lookup`` it is handed)
and never decides where mail goes (the router does, with the answers the caller
brings it).  Our reading of the draft and its open points: docs/minger.md.
"""

from .client import MingerError, MingerTimeout, MingerUnreachable, Peer, query, query_many
from .proto import (
    DEFAULT_PORT,
    MAX_DATAGRAM_SIZE,
    MAX_MAILBOX_LENGTH,
    MAX_SECRET_LENGTH,
    MIN_SECRET_LENGTH,
    Code,
    Malformed,
    Query,
    Reply,
    digest,
    digest_matches,
    encode_query,
    encode_reply,
    parse_query,
    parse_reply,
)
from .peers import PEERS_KEY, SharingPeer, directory_code, load_peers, save_peers
from .server import Lookup, MingerServer, RateLimiter, ServerStats

__all__ = [
    "PEERS_KEY",
    "SharingPeer",
    "directory_code",
    "load_peers",
    "save_peers",
    "Code",
    "DEFAULT_PORT",
    "Lookup",
    "MAX_DATAGRAM_SIZE",
    "MAX_MAILBOX_LENGTH",
    "MAX_SECRET_LENGTH",
    "MIN_SECRET_LENGTH",
    "Malformed",
    "MingerError",
    "MingerServer",
    "MingerTimeout",
    "MingerUnreachable",
    "Peer",
    "Query",
    "RateLimiter",
    "Reply",
    "ServerStats",
    "digest",
    "digest_matches",
    "encode_query",
    "encode_reply",
    "parse_query",
    "parse_reply",
    "query",
    "query_many",
]
