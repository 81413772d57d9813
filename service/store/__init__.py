"""Durable state: decisions (with idempotency), and later whitelist, lists and counters."""
