"""Delivery to the next hop over SMTP (``remote``).

This package owns the SMTP client side: finding the hops for a destination (DNS),
running one transaction per call and reporting one result per recipient.  It never
retries, bounces, touches the spool or limits concurrency: the queue manager does,
from the results.
"""

from .remote import (
    Destination,
    Hop,
    IsSelf,
    PermanentResolveError,
    RecipientResult,
    ResolveError,
    Resolver,
    TemporaryResolveError,
    backs_up,
    deliver,
    deliver_to_hops,
    plan,
    split_reply,
)

__all__ = [
    "Destination",
    "Hop",
    "IsSelf",
    "PermanentResolveError",
    "RecipientResult",
    "ResolveError",
    "backs_up",
    "Resolver",
    "TemporaryResolveError",
    "deliver",
    "deliver_to_hops",
    "plan",
    "split_reply",
]
