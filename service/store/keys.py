"""Keyed hashes of personal identifiers: the only form in which ID numbers and phones are stored
or used as keys (whitelist, lists, velocity).

HMAC-SHA256 with the configured secret (``LOAN_PII_KEY``), over ``kind:value`` so that the same
digits as a phone and as a device id never collide, truncated to 16 bytes: 2^-64 collision odds
per pair are far below any list's size, and the stores stay small. Without the secret a stored key
cannot be reversed by enumerating the 10^11 mobile numbers or the few billion valid ID numbers.
"""

from __future__ import annotations

import hmac

from service.identifiers import normalise

KEY_BYTES = 16


class KeyedHash:
    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()

    def __call__(self, kind: str, value: str) -> bytes:
        message = f"{kind}:{normalise(kind, value)}".encode()
        return hmac.digest(self._secret, message, "sha256")[:KEY_BYTES]
