"""Shop-platform adapters: each turns one platform's webhook into a Sendcloud order.

The registry below is how the service finds them: everything it knows about a platform (ping,
headers, signature, sample, config options) comes through `adapters.base.Adapter`. Adding a
platform = one module with a class that satisfies the protocol, its fixtures under
`tests/fixtures/<platform>/`, and one line in `ADAPTERS` — or, for a platform that lives outside
this package (the tests' made-up one), `register()` before the config is loaded and the app built.
"""

from __future__ import annotations

from collections.abc import Callable

from adapters.base import Adapter, PlatformOptions, Reason, TranslationError
from adapters.sendcloud import DEFAULT_CURRENCIES, Order
from adapters.shopify import ShopifyAdapter
from adapters.woocommerce import WooCommerceAdapter

__all__ = [
    "ADAPTERS",
    "DEFAULT_CURRENCIES",
    "Adapter",
    "AdapterFactory",
    "Order",
    "PlatformOptions",
    "Reason",
    "TranslationError",
    "get_adapter",
    "register",
    "unregister",
]

#: Builds a platform's adapter for the currencies Sendcloud accepts (an adapter class itself).
AdapterFactory = Callable[[frozenset[str]], Adapter]

#: platform name (the `{platform}` URL segment and the config's `platform`) → adapter factory
ADAPTERS: dict[str, AdapterFactory] = {
    "shopify": ShopifyAdapter,
    "woocommerce": WooCommerceAdapter,
}


def get_adapter(platform: str, currencies: frozenset[str] = DEFAULT_CURRENCIES) -> Adapter:
    """The adapter for `platform`, accepting `currencies`; KeyError for an unknown platform."""
    return ADAPTERS[platform](currencies)


def register(factory: AdapterFactory) -> str:
    """Add a platform from outside this package; returns its name (the adapter's `platform`).

    Refuses a name already taken (`ValueError`): a registration never replaces a platform.
    """
    platform = factory(DEFAULT_CURRENCIES).platform
    if platform in ADAPTERS:
        raise ValueError(f"platform {platform!r} is already registered")
    ADAPTERS[platform] = factory
    return platform


def unregister(platform: str) -> None:
    """Remove a platform `register()` added (tests clean up with it); KeyError if unknown."""
    del ADAPTERS[platform]
