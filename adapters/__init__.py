"""Shop-platform adapters: each turns one platform's webhook into a Sendcloud order.

The registry below is how the service finds them. Adding a platform = one module with a class
that satisfies `adapters.base.Adapter`, its fixtures under `tests/fixtures/<platform>/`, and
one line in `ADAPTERS`.
"""

from __future__ import annotations

from collections.abc import Callable

from adapters.base import Adapter, Reason, TranslationError
from adapters.sendcloud import DEFAULT_CURRENCIES, Order
from adapters.shopify import ShopifyAdapter
from adapters.woocommerce import WooCommerceAdapter

__all__ = ["ADAPTERS", "DEFAULT_CURRENCIES", "Adapter", "Order", "Reason", "TranslationError", "get_adapter"]

#: platform name (the `{platform}` URL segment and the config's `platform`) → adapter factory
ADAPTERS: dict[str, Callable[[frozenset[str]], Adapter]] = {
    "shopify": ShopifyAdapter,
    "woocommerce": WooCommerceAdapter,
}


def get_adapter(platform: str, currencies: frozenset[str] = DEFAULT_CURRENCIES) -> Adapter:
    """The adapter for `platform`, accepting `currencies`; KeyError for an unknown platform."""
    return ADAPTERS[platform](currencies)
