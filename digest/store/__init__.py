"""The store: the engine (SQLite or PostgreSQL, migrations), every table — content,
issues and deliveries (``models``), subscribers and consent (``subscriber_models``),
console accounts (``account_models``) — the canonical JSON schema and the importer.

Imports only :mod:`digest.core` (and :mod:`digest.exceptions`).
"""
