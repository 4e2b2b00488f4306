"""Building the email: the placeholders an issue is frozen with, the per-recipient
message (stdlib path) and its byte-join skeleton (fast path) from shared parts, fast
MIME encoding, one-off messages (confirmations, notices), DKIM signing and the DNS
checks of ``digest doctor``.

Imports only :mod:`digest.core` (and :mod:`digest.exceptions`).
"""
