"""The subscriber lifecycle: add and import (CSV), double opt-in, the consent log,
suppression, preferences (topics, frequency, time zone), privacy (show, export,
forget).

Depends on :mod:`digest.core` and :mod:`digest.store` only (the tables are in
``digest/store/subscriber_models.py``); the emails it asks for (confirmation, a fresh
unsubscribe link) are sent by :mod:`digest.notices.subscribers`.
"""
