"""One-off emails to one person, built like the digest (Jinja + MJML, a
:class:`~digest.mail.oneoff.OneOffMessage`) and sent through the configured transport:
``subscribers`` (the double opt-in confirmation, a fresh unsubscribe link) and
``reviewers`` (a draft is waiting for review)."""
