"""JSON Schema validators for Sendcloud's `POST /api/v3/orders` request, built from the vendored spec.

The schema is read from `tests/sendcloud/orders-openapi.yaml` (Sendcloud's published OpenAPI 3.1
document, byte for byte; provenance in `tests/sendcloud/SOURCE.md`). It is the *independent* check
of `adapters/sendcloud.py`: the Structs are hand-written from the same spec, so an order they encode
must also pass the published schema.

What `order_validator()` checks is `paths./orders.post.requestBody.content.application/json.schema.items`
(one order: `allOf[components.schemas.order, {properties: {id: string}}]`) as JSON Schema 2020-12,
which OpenAPI 3.1 is, with `#/components/...` refs resolved inside the document. On a copy of the
document it makes these changes, each because the YAML alone would check less than Sendcloud does:

* `nullable: true`, an OpenAPI 3.0 leftover that 2020-12 ignores (used in `dangerous-goods`),
  becomes `"null"` added to `type` (and `None` to `enum`), which is what it means.
* The `price.currency` enum (EUR, GBP, USD) is replaced by the `currencies` given: Sendcloud may
  widen it and the project makes it configurable.
* `format: date-time` is *asserted*, not just annotated (2020-12 only annotates by default). The
  check is RFC 3339 `date-time`: full date, `T`, full time, and a mandatory `Z` or `±HH:MM` offset.
  The description says "ISO 8601", but a time without an offset is ambiguous, so it is rejected.
  `rfc3339-validator` is not a dependency, so the check is a regex plus `datetime.fromisoformat`.
  No other format is asserted: `email` and `url` stay annotations (`url` is not even a format
  name JSON Schema defines, and what Sendcloud does with a bad e-mail address is undocumented).
* `readOnly` properties of `order` (`created_at`, `modified_at`) are forbidden: 2020-12 treats
  `readOnly` as an annotation, but the spec says Sendcloud sets them. `order.id` is `readOnly`
  too, but the request schema's second `allOf` branch declares it again for requests (the spec
  says to send it as a string to name the order to update), so it stays allowed.

`request_validator()` checks the whole request body, the JSON array, and adds `maxItems: 100`:
the limit is only in the prose ("up to 100 orders maximum") and in the `BatchSizeLimitExceeded`
error example, not in the schema.

Known limits of the published schema that these validators keep (the model in
`adapters/sendcloud.py` is deliberately stricter; `tests/test_sendcloud_model.py` lists them):
`quantity` has `minLength: 1`, a string keyword on an integer, so it constrains nothing;
`country_code` is only `minLength: 1`; the `costs-object` `value` pattern is not anchored, so any
string containing a digit matches it; `price` has no `required` list inside order items.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import jsonschema.protocols  # type: ignore[import-untyped]
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

__all__ = [
    "MAX_BATCH_SIZE",
    "REQUEST_SCHEMA_POINTER",
    "SPEC_PATH",
    "is_rfc3339_datetime",
    "load_spec",
    "order_validator",
    "request_examples",
    "request_validator",
]

SPEC_PATH = Path(__file__).parent / "sendcloud" / "orders-openapi.yaml"

#: JSON Pointer (RFC 6901) to the request body schema of `POST /orders` inside the document.
REQUEST_SCHEMA_POINTER = "/paths/~1orders/post/requestBody/content/application~1json/schema"

#: "Maximum batch size: 100 orders per request" (spec prose and the BatchSizeLimitExceeded example).
MAX_BATCH_SIZE = 100

# The document's base URI inside the registry; any URI works, refs in it are all `#/...`.
_BASE_URI = "urn:order-bridge:sendcloud:orders-openapi"

# RFC 3339 section 5.6 `date-time`; `T` and `Z` may be lower case (section 5.6, NOTE).
# re.ASCII so that `\d` is 0-9 only; fullmatch so that a trailing newline does not pass.
_RFC3339_DATE_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?P<fraction>\.\d+)?(?P<offset>[Zz]|[+-]\d{2}:\d{2})",
    re.ASCII,
)


def is_rfc3339_datetime(instance: object) -> bool:
    """True if `instance` is an RFC 3339 date-time with a `Z` or `±HH:MM` offset; non-strings pass.

    Non-strings pass because `format` only applies to strings (`type` rejects them separately).
    Leap seconds (`:60`) are rejected: `datetime` cannot represent them, and neither can msgspec.
    """
    if not isinstance(instance, str):
        return True
    match = _RFC3339_DATE_TIME.fullmatch(instance)
    if match is None:
        return False
    text = instance.upper()
    if match["offset"] in {"Z", "z"}:
        text = text[:-1] + "+00:00"
    fraction = match["fraction"]
    if fraction is not None and len(fraction) > 7:  # `datetime` keeps microseconds: cut the rest
        text = text.replace(fraction, fraction[:7], 1)
    try:
        parsed = datetime.fromisoformat(text)  # range checks: month 13, day 31 in April, 24:00, +24:00
    except ValueError:
        return False
    return parsed.tzinfo is not None


def _date_time_format_checker() -> jsonschema.FormatChecker:
    checker = jsonschema.FormatChecker(formats=())
    checker.checks("date-time")(is_rfc3339_datetime)
    return checker


@functools.cache
def _parsed_spec() -> dict[str, Any]:
    with SPEC_PATH.open(encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    if not isinstance(document, dict):
        raise TypeError(f"{SPEC_PATH} is not an OpenAPI document")
    return document


def load_spec() -> dict[str, Any]:
    """The vendored OpenAPI document as parsed YAML; a fresh copy, safe to change."""
    return copy.deepcopy(_parsed_spec())


def request_examples() -> dict[str, list[dict[str, Any]]]:
    """The named request examples of `POST /orders` (`name -> value`); each value is a list of orders."""
    content = load_spec()["paths"]["/orders"]["post"]["requestBody"]["content"]["application/json"]
    return {name: example["value"] for name, example in content["examples"].items()}


def _nullable_to_type_null(node: Any) -> None:
    """Rewrite OpenAPI 3.0 `nullable: true` in place into its 2020-12 meaning ("null" allowed)."""
    if isinstance(node, dict):
        if node.get("nullable") is True:
            del node["nullable"]
            kind = node.get("type")
            if isinstance(kind, str):
                node["type"] = [kind, "null"]
            elif isinstance(kind, list) and "null" not in kind:
                kind.append("null")
            if isinstance(node.get("enum"), list) and None not in node["enum"]:
                node["enum"].append(None)
        for value in node.values():
            _nullable_to_type_null(value)
    elif isinstance(node, list):
        for value in node:
            _nullable_to_type_null(value)


def _resolve_pointer(document: dict[str, Any], pointer: str) -> Any:
    node: Any = document
    for token in pointer.lstrip("/").split("/"):
        node = node[token.replace("~1", "/").replace("~0", "~")]
    return node


def _prepared_spec(currencies: Iterable[str]) -> dict[str, Any]:
    allowed = sorted(set(currencies))
    if not allowed:
        raise ValueError("at least one currency is needed")
    document = load_spec()
    schemas = document["components"]["schemas"]
    _nullable_to_type_null(schemas)

    currency = schemas["price"]["properties"]["currency"]
    if not isinstance(currency.get("enum"), list):  # the spec changed shape: look at it again
        raise LookupError("components.schemas.price.properties.currency has no enum any more")
    currency["enum"] = allowed

    items = _resolve_pointer(document, REQUEST_SCHEMA_POINTER)["items"]
    redeclared = {name for branch in items["allOf"] if "$ref" not in branch for name in branch.get("properties", {})}
    read_only = sorted(
        name
        for name, schema in schemas["order"]["properties"].items()
        if schema.get("readOnly") is True and name not in redeclared
    )
    items["allOf"].append({"properties": dict.fromkeys(read_only, False)})
    return document


def _validator(schema: dict[str, Any], currencies: Iterable[str]) -> jsonschema.protocols.Validator:
    resource: Resource[Any] = DRAFT202012.create_resource(_prepared_spec(currencies))
    registry: Registry[Any] = Registry().with_resource(_BASE_URI, resource)
    validator_class = jsonschema.Draft202012Validator
    validator_class.check_schema(schema)
    return validator_class(schema, registry=registry, format_checker=_date_time_format_checker())


def order_validator(currencies: Iterable[str] = ("EUR", "GBP", "USD")) -> jsonschema.protocols.Validator:
    """A validator for ONE element of the `POST /orders` request array (see the module docstring)."""
    return _validator({"$ref": f"{_BASE_URI}#{REQUEST_SCHEMA_POINTER}/items"}, currencies)


def request_validator(currencies: Iterable[str] = ("EUR", "GBP", "USD")) -> jsonschema.protocols.Validator:
    """A validator for the whole `POST /orders` request body: an array of at most 100 orders."""
    return _validator(
        {"allOf": [{"$ref": f"{_BASE_URI}#{REQUEST_SCHEMA_POINTER}"}], "maxItems": MAX_BATCH_SIZE},
        currencies,
    )
