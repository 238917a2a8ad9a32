"""'Minimum realistic work' webhook receiver.

Copied from shared/bench/hmac_app.py (the baseline harness); one change: the same handler is
also routed at `/webhooks/shopify/{integration_id}`, the URL shape order-bridge serves, so all
targets of a benchmark get the very same requests. Every integration shares the one secret.

Per request:
  1. read the raw body,
  2. verify Shopify-style HMAC: base64(HMAC-SHA256(secret, raw_body)) == X-Shopify-Hmac-Sha256,
     compared with hmac.compare_digest (401 on mismatch or missing header),
  3. msgspec-decode the JSON body into a plain dict (400 on invalid JSON),
  4. answer 200 {"ok":true}.

Secret comes from WEBHOOK_SECRET (default 'bench-secret', which the wrk scripts sign with).

Run:  uvicorn hmac_app:app --host 127.0.0.1 --port 8002 --no-access-log --loop uvloop --http httptools
"""

import base64
import hashlib
import hmac
import os

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

SECRET = os.environ.get("WEBHOOK_SECRET", "bench-secret").encode()
OK_BODY = b'{"ok":true}'
_decode = msgspec.json.Decoder().decode  # untyped -> dict/list/str/int/float/bool/None


def _valid_hmac(body: bytes, received: str | None) -> bool:
    if not received:
        return False
    expected = base64.b64encode(hmac.new(SECRET, body, hashlib.sha256).digest())
    return hmac.compare_digest(expected, received.encode("ascii", "replace"))


async def webhook(request: Request) -> Response:
    body = await request.body()
    if not _valid_hmac(body, request.headers.get("x-shopify-hmac-sha256")):
        return Response(b'{"ok":false,"error":"invalid hmac"}', status_code=401, media_type="application/json")
    try:
        payload = _decode(body)
    except msgspec.DecodeError:
        return Response(b'{"ok":false,"error":"invalid json"}', status_code=400, media_type="application/json")
    if not isinstance(payload, dict):
        return Response(b'{"ok":false,"error":"expected object"}', status_code=400, media_type="application/json")
    return Response(OK_BODY, status_code=200, media_type="application/json")


app = Starlette(
    routes=[
        Route("/webhooks/shopify", webhook, methods=["POST"]),
        Route("/webhooks/shopify/{integration_id}", webhook, methods=["POST"]),
    ]
)
