"""The placeholders an issue is frozen with, filled in when a message is built.

The renderer writes them (:mod:`digest.issue.render`), the message and its skeleton fill
them per issue and per recipient, and the API transports that substitute on the
provider's side translate them into the provider's own syntax. Content can never
produce one: every rendered value has ``[[%`` defused by the renderer.
"""

from __future__ import annotations

#: The placeholder syntax: ``[[%name%]]``.
PLACEHOLDER = "[[%{}%]]"
#: What the renderer defuses in every value, so content cannot forge a placeholder.
PLACEHOLDER_OPEN = "[[%"
#: The values that differ per recipient.
PER_RECIPIENT = ("greeting", "unsubscribe_url", "preferences_url")
#: The issue's "view in browser" URL: the same for every recipient, filled in when the
#: message is prepared (digest.mail.message.IssueMessage) from the current DIGEST_BASE_URL.
ARCHIVE_URL = "archive_url"
#: The per-issue placeholder for DIGEST_BASE_URL in counted links (digest/issue/clicks.py).
BASE_URL = "base_url"


def placeholder(name: str) -> str:
    return PLACEHOLDER.format(name)
