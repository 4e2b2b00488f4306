"""Sending at scale: limits every worker shares (the global rate, per-domain rates, a
warm-up plan), the buckets behind them, and the worker processes themselves."""
