"""Message authentication: SPF, DKIM, DMARC, ARC → result values + Authentication-Results.

All DNS goes through the ``mailwarden.dns`` Resolver. dkimpy (DKIM, ARC) runs in worker
threads on prefetched keys; the public suffix list (DMARC) loads once, in a thread.
"""

from mailwarden.auth.arc import ArcResult, verify_arc
from mailwarden.auth.dkim import DkimResult, dkim_txt_record, sign, verify_dkim
from mailwarden.auth.dmarc import (
    DmarcRecord,
    DmarcRecordError,
    DmarcResult,
    check_dmarc,
    from_domain,
    load_psl,
    parse_record,
)
from mailwarden.auth.results import authentication_results, format_results
from mailwarden.auth.spf import SpfResult, check_host, check_spf
from mailwarden.auth.verdict import AuthVerdict, authenticate
from mailwarden.core.headers import read_headers

__all__ = [
    "ArcResult",
    "AuthVerdict",
    "DkimResult",
    "DmarcRecord",
    "DmarcRecordError",
    "DmarcResult",
    "SpfResult",
    "authenticate",
    "authentication_results",
    "check_dmarc",
    "check_host",
    "check_spf",
    "dkim_txt_record",
    "format_results",
    "from_domain",
    "load_psl",
    "parse_record",
    "read_headers",
    "sign",
    "verify_arc",
    "verify_dkim",
]
