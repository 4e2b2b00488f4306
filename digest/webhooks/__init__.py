"""What comes back after a send, all landing as
:class:`~digest.webhooks.events.MailEvent` values in the one event store (``events``:
stored once per (provider, event id), then applied — suppressions).

From the providers, as django-anymail does it: one module per provider (``postmark``,
``sendgrid``, ``mailgun``, ``resend``, ``ses``), each with ``verify`` (the provider's
own proof that a request is theirs), ``parse`` (its payload → events; those we do not
act on — opens, clicks, "sent" — are dropped) and ``receive`` (verify, then parse);
``common`` holds what they share. The HTTP route is :mod:`digest.web.webhooks`.

By mail: ``mail_reading`` (what a DSN, an ARF report or a reply says),
``mail_events`` (who it is about, through VERP or a signed link, and the events),
``mail_listener`` (``digest inbound``, SMTP or LMTP), ``mailbox`` (the bounce mailbox
poller) and ``replies`` (forwarding what a person wrote).
"""
