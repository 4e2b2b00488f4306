"""What the providers tell us after a send, as django-anymail does it: one module per
provider (``postmark``, ``sendgrid``, ``mailgun``, ``resend``, ``ses``), each with
``verify`` (the provider's own proof that a request is theirs), ``parse`` (its payload →
:class:`~digest.webhooks.events.MailEvent` values; events we do not act on — opens,
clicks, "sent" — are dropped) and ``receive`` (verify, then parse). ``common`` holds
what they share; ``events`` the one normalised event type, stored once per (provider,
event id) and applied (suppressions). The HTTP route is :mod:`digest.web.webhooks`.
"""
