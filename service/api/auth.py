"""Bearer API keys with roles, stored only as SHA-256 hashes and compared in constant time.

Keys are long random tokens, not passwords, so one SHA-256 is the right hash: a slow KDF would
cost every request milliseconds for no gain against brute force of a 256-bit secret.
"""

from __future__ import annotations

import hashlib
import hmac

from service.api.problems import ProblemError

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="loan-decision"'}


class KeyRing:
    def __init__(self, hashed: dict[bytes, str]) -> None:
        self._keys = list(hashed.items())

    def role_of(self, authorization: str | None) -> tuple[str | None, str]:
        """(the key's role or None, the key's fingerprint for audit trails)."""
        if not authorization:
            return None, ""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None, ""
        digest = hashlib.sha256(token.strip().encode("utf-8", "surrogateescape")).digest()
        role = None
        for known, known_role in self._keys:  # compare against every key: no early exit
            if hmac.compare_digest(digest, known):
                role = known_role
        return role, digest.hex()[:12]

    def require(self, authorization: str | None, role: str) -> str:
        """The key's fingerprint (the first 12 hex digits of its configured SHA-256), or 401/403."""
        found, fingerprint = self.role_of(authorization)
        if found is None:
            raise ProblemError(401, "unauthorized", "a valid 'Authorization: Bearer <key>' is required",
                               headers=_CHALLENGE)
        if found != role:
            raise ProblemError(403, "forbidden", f"this key's role may not call this endpoint (needs '{role}')")
        return fingerprint
