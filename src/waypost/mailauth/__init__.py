"""Mail authentication: DKIM signing of our outgoing mail, and the inbound verdict
engine (SPF, DKIM, ARC, DMARC) that produces one Authentication-Results field and a trace.

Owns: the DKIM keys' life cycle (through ``waypost.db``), signing, SPF/DKIM/DMARC
and ARC evaluation, ARC sealing of what we send on, the records a domain should publish.  Never: SQL (the ``db`` package does
it), listener code, or a decision to refuse a message — it gives verdicts; the
listener that calls it applies the policy.
"""

from .arc import ARCResult, Sealer, should_seal
from .keys import ALGORITHMS, dns_name, dns_record, generate_key, signing_key
from .lookup import AnswerCache, DNSTempError, Lookup
from .psl import load as load_psl
from .sign import Signer, should_sign
from .spf import SPFResult, check_host, check_spf
from .verdict import Verdict, check_message

__all__ = [
    "ARCResult",
    "Sealer",
    "should_seal",
    "ALGORITHMS",
    "AnswerCache",
    "DNSTempError",
    "Lookup",
    "SPFResult",
    "Signer",
    "Verdict",
    "check_host",
    "check_message",
    "check_spf",
    "dns_name",
    "dns_record",
    "generate_key",
    "load_psl",
    "should_sign",
    "signing_key",
]
