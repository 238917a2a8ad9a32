"""What every platform adapter is, and what it may raise.

An adapter turns one platform's webhook into a Sendcloud order. It never imports `service`;
the service finds adapters through the registry in `adapters/__init__.py`.

Errors: `translate()` raises `TranslationError` and nothing else, for any input bytes. Its
`reason` is a machine code the service maps to an HTTP answer (DESIGN §1 step 5):

- `malformed_body`      the body is not the platform's order shape → 400, the shop may fix it
- `no_shippable_items`  no line item needs shipping → 200 `ignored`
- `unsupported_currency`  a well-formed order that cannot become a valid Sendcloud order →
                        dead letter, 200 `dead_lettered` (retrying cannot change it)

Adapters build orders that are valid by construction: what the shop sends is checked when it
is decoded (typed payload Structs with constraints), and every output field is derived so that
it meets the spec. `adapters.sendcloud.validate()` is the independent check of that claim; the
tests run it, and the published OpenAPI schema, on every order the adapters produce, including
orders made from fuzzed input.
"""

from __future__ import annotations

import base64
import hmac
import re
from collections.abc import Iterator, Mapping, Sequence
from enum import StrEnum
from typing import Any, ClassVar, Protocol

import msgspec

from adapters.sendcloud import Order

__all__ = [
    "DECODE_ERRORS",
    "Adapter",
    "Headers",
    "PlatformOptions",
    "Reason",
    "TranslationError",
    "header",
    "hmac_sha256_base64",
    "hmac_sha256_base64_matches",
    "unsupported_currency",
]

Headers = Mapping[str, str]

#: What decoding untrusted bytes may raise: msgspec's `DecodeError` (a `ValueError`), a
#: `UnicodeDecodeError` (also a `ValueError`) for invalid UTF-8 inside a string, and a
#: `RecursionError` for very deep nesting inside a field the payload Structs skip.
DECODE_ERRORS: tuple[type[Exception], ...] = (ValueError, RecursionError)

_CODE = re.compile(r"[A-Z]{3}")


class Reason(StrEnum):
    MALFORMED_BODY = "malformed_body"
    NO_SHIPPABLE_ITEMS = "no_shippable_items"
    UNSUPPORTED_CURRENCY = "unsupported_currency"


class TranslationError(Exception):
    """The one error `translate()` raises: a machine `reason` and a human `detail`.

    `detail` names fields and rules, never values: it is logged and returned to shops.
    """

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        #: the order's id and number, when the body was read far enough to know them (a dead
        #: letter is then findable by them)
        self.order_id: str | None = None
        self.order_number: str | None = None

    def about(self, order_id: str, order_number: str) -> TranslationError:
        """This error, naming the order it is about."""
        self.order_id, self.order_number = order_id, order_number
        return self


def unsupported_currency(offered: Sequence[str], allowed: frozenset[str]) -> TranslationError:
    """The error for an order in none of the currencies Sendcloud accepts."""
    # Only well-formed codes are repeated: the detail must never echo arbitrary payload text.
    codes = " or ".join(sorted({c if _CODE.fullmatch(c) else "an invalid code" for c in offered if c})) or "none"
    return TranslationError(
        Reason.UNSUPPORTED_CURRENCY,
        f"order currency {codes} is not one Sendcloud accepts ({', '.join(sorted(allowed))})",
    )


class PlatformOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of an adapter's per-integration options: the config's `[integrations.options]` table.

    Each adapter declares a subclass with its own fields (all with defaults, so an integration
    may leave the table out); the service's config builds its tagged union of integrations from
    them, keyed by `platform`. A subclass repeats `frozen`, `kw_only` and `forbid_unknown_fields`
    (msgspec applies them per class), and lists fields holding credentials in `secret_fields`:
    `repr` shows those as `'***'`, like the rest of the config.
    """

    secret_fields: ClassVar[frozenset[str]] = frozenset()

    def _shown(self) -> Iterator[tuple[str, object]]:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            yield name, ("***" if value and name in self.secret_fields else value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{name}={value!r}' for name, value in self._shown())})"

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        return list(self._shown())


class Adapter(Protocol):
    """One shop platform. Instances are immutable and safe to share between requests.

    Everything the service and its tools know about a platform comes from here: how a delivery
    is verified, read, translated and recognised as a ping; which headers it carries (for the
    OpenAPI document); how the platform signs one (`send-sample`, tests, benchmarks); a sample
    order; and the type of its per-integration options in the config.
    """

    @property
    def platform(self) -> str:
        """Registry key and the `{platform}` segment of the webhook URL."""
        ...

    @property
    def order_topics(self) -> frozenset[str]:
        """Topics whose body is an order to translate; any other topic is ignored."""
        ...

    @property
    def headers(self) -> Mapping[str, str]:
        """The request headers the adapter reads, name → what it is (the OpenAPI document lists them)."""
        ...

    @property
    def ping(self) -> str | None:
        """What the platform's unsigned ping looks like, for the documentation; None if it sends none."""
        ...

    @property
    def options_type(self) -> type[PlatformOptions]:
        """The Struct of this platform's `[integrations.options]` table."""
        ...

    @property
    def sample_secret(self) -> str:
        """The secret `examples/sandbox.toml` gives this platform's integration (`send-sample`'s default)."""
        ...

    def is_ping(self, headers: Headers, body: bytes) -> bool:
        """True for the platform's unsigned "is this URL alive?" delivery: answered 200 `ignored`
        before any signature check (DESIGN §1 step 1)."""
        ...

    def verify(self, headers: Headers, body: bytes, secrets: Sequence[str]) -> bool:
        """True when the signature header matches the raw body under any of `secrets`."""
        ...

    def delivery_id(self, headers: Headers) -> str | None:
        """The platform's id of this delivery (the same on the platform's retries)."""
        ...

    def topic(self, headers: Headers) -> str | None: ...

    def translate(self, body: bytes, integration_id: int) -> Order:
        """The raw body as one Sendcloud order for `integration_id`, or `TranslationError`."""
        ...

    def sign(
        self, body: bytes, secret: str, *, topic: str | None = None, delivery_id: str | None = None
    ) -> dict[str, str]:
        """Every request header of one delivery of `body`, signed with `secret` as the platform
        signs it: what `send-sample`, the tests and the benchmarks send. `topic` defaults to the
        platform's order-creation topic, `delivery_id` to a fresh one."""
        ...

    def sample(self) -> bytes:
        """A sample order webhook body (`send-sample`'s default, the tests' and benchmarks' seed)."""
        ...


def header(headers: Headers, *names: str) -> str | None:
    """The first of `names` present in `headers`, matched case-insensitively.

    The service passes ASGI's lower-case names, so the first lookups answer; a dict with other
    casing (tests, the CLI) falls back to a scan of lower-cased keys.
    """
    for name in names:
        value = headers.get(name)
        if value is not None:
            return value
    wanted = {name.lower() for name in names}
    for key, value in headers.items():
        if key.lower() in wanted:
            return value
    return None


def hmac_sha256_base64(secret: str, body: bytes) -> str:
    """The one HMAC recipe of the project, Shopify's and WooCommerce's: base64(HMAC-SHA256(secret,
    raw body)), the secret UTF-8 encoded. Verifying and signing both use it."""
    return base64.b64encode(hmac.digest(secret.encode(), body, "sha256")).decode("ascii")


def hmac_sha256_base64_matches(body: bytes, signature: str | None, secrets: Sequence[str]) -> bool:
    """True when `signature` is `hmac_sha256_base64(secret, body)` for any of `secrets`.

    Every secret is tried (rotation: old and new both valid) and every comparison is
    constant time, so the answer's timing does not depend on which secret matched or on how
    much of the signature was right.
    """
    if not signature:
        return False
    received = signature.strip().encode("ascii", "replace")
    matched = False
    for secret in secrets:
        if not secret:
            continue
        expected = hmac_sha256_base64(secret, body).encode("ascii")
        matched |= hmac.compare_digest(expected, received)
    return matched
