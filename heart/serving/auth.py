"""Bearer-token auth, deny by default: with tokens configured, every request needs one except
the short PUBLIC list (API_AUTH, API_TOKENS / API_TOKENS_FILE; docs/security.md).

The check is one ASGI layer in front of the router, so a route added later (by anyone, in
any router) is protected without being listed anywhere; an unknown path is a 401 too, so an
anonymous client cannot map the API. Public: the probes (Kubernetes' and KServe's), the page
at / with its assets, and the docs with the OpenAPI document they render. Not public:
/model (the card: metrics, threshold, training data), /metrics on the API port (give
Prometheus the token, or use METRICS_PORT, a separate listener kept off the Service), and
every other V2 route. Tokens are compared as SHA-256 digests with hmac.compare_digest,
against every configured token, so neither a token's length nor its first differing byte
shows in the time taken. A missing or wrong token gets a 401 with `WWW-Authenticate: Bearer`
(RFC 6750); more than one Authorization header is a 400 (invalid_request), whatever their
order: which one a server or a proxy reads is not agreed, so none is. Replies are in the
route family's error shape (errors.error_body: {"error"} under /v2).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from .errors import error_body, error_json, route_path

PROBES = ("/live_check", "/ready_check", "/v2/health/live", "/v2/health/ready")
PAGES = ("/", "/docs", "/redoc", "/openapi.json")
PUBLIC = frozenset((*PROBES, *PAGES))
PUBLIC_PREFIXES = ("/static/",)  # the page's and the docs' vendored assets (read-only files)
REALM = b'Bearer realm="heart-disease-api"'


def is_public(scope) -> bool:
    """The path as the router matches it (without a --root-path prefix) is on the public list."""
    path = route_path(scope)
    return path in PUBLIC or path.startswith(PUBLIC_PREFIXES)


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


MISSING = "a valid bearer token is required: send Authorization: Bearer <token>"
INVALID = "the bearer token is not valid"
SEVERAL = "send one Authorization header, not {n}"
INVALID_CHALLENGE = REALM + b', error="invalid_token"'
SEVERAL_CHALLENGE = REALM + b', error="invalid_request"'


def _refusal(scope, status: int, message: str, challenge: bytes) -> tuple[dict, dict]:
    """The 401/400's two ASGI messages, its body in the path's error shape."""
    body = error_json(error_body(scope, message))
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", challenge),
    ]
    return {"type": "http.response.start", "status": status, "headers": headers}, {
        "type": "http.response.body",
        "body": body,
    }


class BearerAuth:
    """Pure ASGI, in front of everything: a request passes with a valid token or to a public path."""

    def __init__(self, app, tokens: Iterable[str]):
        self.app = app
        self.digests = [_digest(t.encode()) for t in tokens]
        if not self.digests:
            raise ValueError("BearerAuth needs at least one token")

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
        kind = scope["type"]
        if kind == "lifespan" or (kind == "http" and is_public(scope)):
            return await self.app(scope, receive, send)
        given = [v for k, v in scope["headers"] if k == b"authorization"]
        if len(given) == 1 and self.authorised(given[0]):
            return await self.app(scope, receive, send)
        if kind != "http":  # a websocket (none is served): refused before it is accepted
            return await send({"type": "websocket.close", "code": 1008})
        if len(given) > 1:
            start, body = _refusal(scope, 400, SEVERAL.format(n=len(given)), SEVERAL_CHALLENGE)
        elif given:
            start, body = _refusal(scope, 401, INVALID, INVALID_CHALLENGE)
        else:
            start, body = _refusal(scope, 401, MISSING, REALM)
        await send(start)
        await send(body)
