"""Optional bearer-token auth for the prediction routes (API_TOKENS / API_TOKENS_FILE).

Off unless tokens are configured; the probes (/live_check, /ready_check) and the pages never
need a token. Tokens are compared as SHA-256 digests with hmac.compare_digest, against every
configured token, so neither a token's length nor its first differing byte shows in the time
taken. A missing or wrong token gets a 401 with `WWW-Authenticate: Bearer` (RFC 6750).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

import orjson

PROTECTED = ("/predict", "/predict/", "/predict/batch", "/explain")


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


class BearerAuth:
    """Pure ASGI: only requests to `paths` are checked; the rest pass untouched."""

    def __init__(self, app, tokens: Iterable[str], paths: Iterable[str] = PROTECTED):
        self.app = app
        self.digests = [_digest(t.encode()) for t in tokens]
        if not self.digests:
            raise ValueError("BearerAuth needs at least one token")
        self.paths = frozenset(paths)

    def authorised(self, header: bytes | None) -> bool:
        scheme, _, token = (header or b"").partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            return False
        given = _digest(token.strip())
        ok = False
        for digest in self.digests:  # no early exit: every token is compared
            ok |= hmac.compare_digest(given, digest)
        return ok

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] not in self.paths:
            return await self.app(scope, receive, send)
        header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        if self.authorised(header):
            return await self.app(scope, receive, send)
        error = "invalid_token" if header else None
        challenge = b'Bearer realm="heart-disease-api"' + (b', error="invalid_token"' if error else b"")
        body = orjson.dumps(
            {
                "detail": "a valid bearer token is required: send Authorization: Bearer <token>"
                if header is None
                else "the bearer token is not valid"
            }
        )
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", challenge),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
