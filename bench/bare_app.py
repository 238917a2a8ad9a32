"""Ceiling for any webhook receiver: one POST route, read the body, answer 200 {"ok":true}.

Copied from shared/bench/bare_app.py (the baseline harness); one change: the same handler is
also routed at `/webhooks/shopify/{integration_id}`, the URL shape order-bridge serves, so all
targets of a benchmark get the very same requests (the path parameter costs Starlette a regex
match, as it does order-bridge).

Deliberately does no per-request work beyond what Starlette itself does:
the response body is a pre-built bytes constant (no JSON encoding per request).

Run:  uvicorn bare_app:app --host 127.0.0.1 --port 8001 --no-access-log --loop uvloop --http httptools
"""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

OK_BODY = b'{"ok":true}'


async def webhook(request: Request) -> Response:
    await request.body()
    return Response(OK_BODY, status_code=200, media_type="application/json")


app = Starlette(
    routes=[
        Route("/webhooks/shopify", webhook, methods=["POST"]),
        Route("/webhooks/shopify/{integration_id}", webhook, methods=["POST"]),
    ]
)
