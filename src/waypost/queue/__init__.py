"""The queue: the durable spool (group commit), per-destination queues, retries, DSNs.

A message answered with 250 is in the spool (fsync'ed) and in the index; it leaves the
spool only when every recipient is delivered or bounced.  This package decides when to
deliver; ``waypost.delivery`` and ``waypost.mailstore`` do the delivering.
"""

from .manager import QueueManager, Recipient, count_received, release_dead_worker, release_node
from .spool import Spool, SpoolEntry, SpoolError, SpoolStream, new_message_id

__all__ = ["QueueManager", "Recipient", "Spool", "SpoolEntry", "SpoolError", "SpoolStream", "count_received",
           "new_message_id", "release_dead_worker", "release_node"]
