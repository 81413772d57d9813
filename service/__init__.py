"""Instant-loan decisioning service."""

__version__ = "0.1.0"
