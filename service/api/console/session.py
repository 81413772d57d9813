"""Console sessions: a signed cookie naming the reviewer's key, and CSRF tokens bound to it.

The reviewer signs in once with their key; the key itself is never stored — not in the
cookie, not in the URL, not in the browser's storage. The cookie carries the key's name, a
fingerprint of its hash (a rotated key ends its sessions), a random session id and an expiry,
signed with HMAC-SHA256 under a secret derived from ``LOAN_PII_KEY`` (shared by every replica,
so any replica accepts the session). It is ``HttpOnly`` and ``SameSite=Strict``, ``Secure``
behind HTTPS. Every form carries a CSRF token, an HMAC of the session id, checked on each POST
together with the ``Origin`` header.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

COOKIE = "loan_console"
LIFETIME_S = 8 * 3600  # a working day; sign in again after it


@dataclass(frozen=True)
class Session:
    key: str  # the API key's name: what the audit records
    fingerprint: bytes  # the first bytes of the key's SHA-256
    sid: str
    expires: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    def __init__(self, secret: bytes, now: Callable[[], float] = time.time) -> None:
        self._secret = hmac.new(secret, b"loan-console-session-v1", hashlib.sha256).digest()
        self._now = now

    def _sign(self, payload: bytes) -> str:
        return _b64(hmac.new(self._secret, payload, hashlib.sha256).digest())

    def issue(self, key: str, digest: bytes) -> tuple[Session, str]:
        session = Session(key, digest[:8], _b64(os.urandom(16)), int(self._now()) + LIFETIME_S)
        payload = orjson.dumps({"k": session.key, "f": _b64(session.fingerprint), "s": session.sid,
                                "e": session.expires})
        return session, f"{_b64(payload)}.{self._sign(payload)}"

    def read(self, cookie: str | None) -> Session | None:
        """The session of a cookie, or None if it is absent, forged, altered or expired."""
        if not cookie or cookie.count(".") != 1:
            return None
        body, signature = cookie.split(".")
        try:
            payload = _unb64(body)
        except ValueError:
            return None
        if not hmac.compare_digest(self._sign(payload), signature):
            return None
        data = orjson.loads(payload)
        if data["e"] < self._now():
            return None
        return Session(data["k"], _unb64(data["f"]), data["s"], data["e"])

    def csrf(self, session: Session) -> str:
        return self._sign(b"csrf|" + session.sid.encode())

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf(session), token or "")
