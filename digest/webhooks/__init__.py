"""What comes back: provider webhooks and, by mail, DSNs, ARF reports and replies.

Everything lands as :class:`digest.events.MailEvent` values in the one event store.
"""
