"""Bearer API keys with roles and names, stored only as SHA-256 hashes and compared in constant
time. Several keys may hold one role (rotation: add the new key, move the callers, remove the
old one); a key may expire.

Keys are long random tokens, not passwords, so one SHA-256 is the right hash: a slow KDF would
cost every request milliseconds for no gain against brute force of a 256-bit secret.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
from collections.abc import Callable

from service.api.problems import ProblemError
from service.config import ApiKey
from service.identifiers import CHINA

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="loan-decision"'}
log = logging.getLogger("service.api.auth")


def today_in_beijing() -> dt.date:
    return dt.datetime.now(CHINA).date()


class KeyRing:
    def __init__(self, keys: list[ApiKey], today: Callable[[], dt.date] = today_in_beijing) -> None:
        self._keys = keys
        self._today = today

    def key_of(self, authorization: str | None) -> ApiKey | None:
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        digest = hashlib.sha256(token.strip().encode("utf-8", "surrogateescape")).digest()
        found = None
        for key in self._keys:  # compare against every key: no early exit
            if hmac.compare_digest(digest, key.digest):
                found = key
        return found

    def current(self, name: str, fingerprint: bytes) -> ApiKey | None:
        """The key of that name and digest fingerprint, if it is still configured and not expired
        (a console session lives only as long as the key it signed in with)."""
        for key in self._keys:
            if key.name == name and hmac.compare_digest(key.digest[:len(fingerprint)], fingerprint):
                if key.expires is None or self._today() <= key.expires:
                    return key
        return None

    def require(self, authorization: str | None, role: str | tuple[str, ...]) -> str:
        """The key's name (what audit trails record), or 401 (no such key, or expired) / 403."""
        key = self.key_of(authorization)
        if key is None:
            raise ProblemError(401, "unauthorized", "a valid 'Authorization: Bearer <key>' is required",
                               headers=_CHALLENGE)
        if key.expires is not None and self._today() > key.expires:
            log.warning("an expired API key was used", extra={"fields": {"key": key.name,
                                                                         "expired": key.expires.isoformat()}})
            raise ProblemError(401, "unauthorized", f"this key expired on {key.expires.isoformat()}",
                               headers=_CHALLENGE)
        roles = (role,) if isinstance(role, str) else role
        if key.role not in roles:
            raise ProblemError(403, "forbidden", "this key's role may not call this endpoint (needs "
                                                 f"{' or '.join(repr(r) for r in roles)})")
        return key.name
