"""Each reader's own digest: the issue compiled once per preference set among its
recipients (``variants``) and delivery at a local time in waves (``waves``). The
preferences themselves are subscriber data (``subscribers/preferences.py``); click
counts belong to the issue (``digest/issue/clicks.py``)."""
