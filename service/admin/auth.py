"""Who may use the admin listener: a bearer token from `[admin] token` (several for rotation).

The API takes `Authorization: Bearer <token>`. The console's pages are opened by a browser,
which cannot add that header: its login form sets an HttpOnly, SameSite=Strict cookie instead,
holding not the token but an HMAC of it (`console_cookie`): a browser sends cookies to every
port of a host, and what reaches another local service must not be a working API token. The
cookie is only as good as its token: rotating the token out logs the console out. A request
authenticated by the cookie that changes something must also carry
`X-Requested-With: order-bridge` (the console's script sends it): another site can make a
browser send the cookie, but not that header without a CORS preflight, which nothing here
answers. Tokens are compared in constant time, each of them, whatever matched first.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from starlette.requests import HTTPConnection

__all__ = ["COOKIE", "CSRF_HEADER", "authenticated", "console_cookie", "token_matches"]

COOKIE = "order_bridge_admin"
CSRF_HEADER = "x-requested-with"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def token_matches(given: str, tokens: Sequence[str]) -> bool:
    """True when `given` is one of `tokens`; every token is compared (constant time each)."""
    given_bytes = given.encode()
    matched = False
    for token in tokens:
        matched |= bool(token) and hmac.compare_digest(given_bytes, token.encode())
    return matched


def console_cookie(token: str) -> str:
    """The console's cookie value for `token`: an HMAC of it, not the token itself."""
    return hmac.new(token.encode(), b"order-bridge admin console", hashlib.sha256).hexdigest()


def authenticated(request: HTTPConnection, tokens: Sequence[str]) -> bool:
    """The request carries a valid bearer token, or the console's cookie (with the anti-forgery
    header when it changes something)."""
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() == "bearer" and given:
        return token_matches(given.strip(), tokens)
    cookie = request.cookies.get(COOKIE)
    if not cookie or not token_matches(cookie, [console_cookie(token) for token in tokens if token]):
        return False
    return request.scope.get("method", "GET") in _SAFE_METHODS or request.headers.get(CSRF_HEADER) == "order-bridge"
