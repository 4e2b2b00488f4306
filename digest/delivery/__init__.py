"""Getting a frozen issue to every reader, at least once and never lost:

- ``queue``: one Delivery row per (issue, reader), enqueued set-wise; the issue's state;
- ``send_loop``: the send loop — claim a batch, build and send each message, record
  every answer, read pause/cancel between messages;
- ``leases`` (claims with expiry, the heartbeat, the claim ahead), ``outcomes`` (sent,
  retry with backoff, failed and suppressed), ``controls`` (pause, resume, cancel,
  retry failed);
- ``pacing`` (this sender's adaptive messages-per-second), ``limits`` (the limits every
  sender shares: global rate, recipient domains, warm-up) over ``buckets`` (database,
  Redis or memory);
- the sender processes: ``worker`` (the long-running ``digest worker``), ``pool``
  (``digest send --workers N``) and ``launch`` (the fork server they come from).
"""
