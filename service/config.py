"""Typed configuration: a TOML file with `${ENV}` interpolation, checked once at start-up (DESIGN §4).

`load_config(path)` (or `loads_config(text)`) returns a frozen `Config` or raises `ConfigError`
whose message is ONE line naming the key in dotted form, e.g.
`sendcloud.timeout_seconds: expected a number, got a string`, `unknown key server.prot`,
`integrations[1].platform: unknown platform "magento" (known: shopify, woocommerce)`.
Array indexes in keys count from 0, as in msgspec's paths.

Interpolation: in every string *value* (never in keys, never in numbers), `${NAME}` is replaced
by the environment variable `NAME` (letters, digits and `_`, not starting with a digit); an unset
variable is an error, an empty one is an empty string. `$${` stands for a literal `${`
(`"a$${b}"` → `a${b}`); a `$` not followed by `{` is kept as it is. Substitution is one pass:
a variable's value is never interpolated again.

Secrets (`sendcloud.secret_key`, `integrations[].secrets`) stay plain `str` so the rest of the
code (e.g. `Adapter.verify(..., secrets)`) needs no unwrapping; instead every section overrides
`__repr__` (and `__rich_repr__`) to show a set secret as `'***'`. So `repr(config)`,
`str(config)` and log renderers that fall back to `repr` (structlog's JSON renderer does) are
safe; `msgspec.to_builtins`/`json.encode` and reading the attribute give the real value, on
purpose. Error messages name keys, types, constraints and variable names; they never quote a
value that came from the environment, nor the value of a secret key.

Checks: types and ranges are `msgspec.Meta` constraints on the Structs (so `convert` enforces
them); what spans several fields runs after decoding: unique integration ids, a registered
`platform`, `max_wait_seconds >= debounce_seconds`, credentials unless `base_url = "sandbox"`,
a `base_url` that is `"sandbox"` or an http(s) URL (a trailing `/` is stripped), finite numbers.
Structs built directly in code skip all of these checks.
"""

from __future__ import annotations

import difflib
import functools
import math
import os
import re
import tomllib
import typing
from collections.abc import Iterator, Mapping, Set
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union, cast
from urllib.parse import urlsplit

import msgspec
from msgspec import inspect as mi

from adapters import ADAPTERS, DEFAULT_CURRENCIES, AdapterFactory, PlatformOptions

__all__ = [
    "SANDBOX",
    "AdminConfig",
    "BufferConfig",
    "Config",
    "ConfigError",
    "IntegrationConfig",
    "LogLevel",
    "LoggingConfig",
    "SendcloudConfig",
    "ServerConfig",
    "StoreConfig",
    "load_config",
    "loads_config",
]

#: `sendcloud.base_url` value that selects the built-in local Sendcloud simulator.
SANDBOX = "sandbox"

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]

_CURRENCY_PATTERN = r"^[A-Z]{3}\Z"
NonEmptyStr = Annotated[str, msgspec.Meta(min_length=1)]
Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]
CurrencyCode = Annotated[str, msgspec.Meta(pattern=_CURRENCY_PATTERN)]
#: Sendcloud accepts at most 100 orders per `POST /api/v3/orders`.
BatchSize = Annotated[int, msgspec.Meta(ge=1, le=100)]

_MASK = "***"


class ConfigError(Exception):
    """The configuration cannot be used; `str(error)` is one line naming the key (`key` when known)."""

    def __init__(self, message: str, key: str | None = None) -> None:
        self.key = key
        super().__init__(_one_line(message))


class _Section(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every section: repr masks `_SECRET_FIELDS`.

    Each subclass repeats `frozen`, `kw_only` and `forbid_unknown_fields`: msgspec applies
    `kw_only` per class, and mypy wants `frozen` spelled out on every subclass.
    """

    _SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset()

    def _shown(self) -> Iterator[tuple[str, object]]:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if name in self._SECRET_FIELDS:
                value = _masked(value)
            yield name, value

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in self._shown())
        return f"{type(self).__name__}({fields})"

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        # msgspec's own __rich_repr__ would show the secrets to `rich` (pretty tracebacks).
        return list(self._shown())


def _masked(value: object) -> object:
    """`'***'` for a set secret, each item of a tuple of secrets masked; `''` stays `''`."""
    if isinstance(value, tuple):
        return tuple(_masked(item) for item in value)
    return _MASK if value else value


class ServerConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`[server]`: where the HTTP app listens and the largest webhook body it reads."""

    host: NonEmptyStr = "0.0.0.0"
    port: Port = 8080
    max_body_bytes: PositiveInt = 5_000_000


class SendcloudConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`[sendcloud]`: API endpoint (or `"sandbox"`), credentials, rate limit, accepted currencies."""

    _SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset({"secret_key"})

    base_url: NonEmptyStr = "https://panel.sendcloud.sc/api/v3"
    public_key: str = ""
    secret_key: str = ""
    #: optional `Sendcloud-Partner-Id` header; empty = not sent
    partner_id: str = ""
    requests_per_minute: PositiveInt = 100
    burst_per_second: PositiveInt = 15
    timeout_seconds: PositiveFloat = 10.0
    #: ISO 4217 codes Sendcloud accepts in prices (passed to the adapters)
    currencies: Annotated[tuple[CurrencyCode, ...], msgspec.Meta(min_length=1)] = tuple(sorted(DEFAULT_CURRENCIES))

    @property
    def is_sandbox(self) -> bool:
        """True when orders go to the built-in local simulator instead of Sendcloud."""
        return self.base_url == SANDBOX

    @property
    def currency_set(self) -> frozenset[str]:
        """`currencies` as the frozenset `adapters.get_adapter` takes."""
        return frozenset(self.currencies)


class BufferConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`[buffer]`: debounce timing, batch size, memory bounds, dedupe and dead-letter sizes."""

    #: flush a lane when it has been quiet this long (0 = as soon as it is idle)
    debounce_seconds: NonNegativeFloat = 1.0
    #: ...or when its oldest order has waited this long (>= debounce_seconds)
    max_wait_seconds: PositiveFloat = 5.0
    max_batch: BatchSize = 100
    #: across all lanes; above it webhooks get 503
    max_pending: PositiveInt = 50_000
    shutdown_timeout_seconds: PositiveFloat = 20.0
    #: how long a platform delivery id is remembered as seen
    dedupe_ttl_seconds: PositiveFloat = 86_400.0
    dedupe_max_entries: PositiveInt = 200_000
    dead_letter_capacity: PositiveInt = 10_000
    #: per lane, how many sent orders are remembered (their version) to drop stale repeats
    remember_sent: PositiveInt = 100_000


#: `memory://`, `sqlite:///relative/path` / `sqlite:////absolute/path`, or a libpq URI
#: `postgresql://user:password@host:5432/database` (service.store.factory)
StoreUrl = Annotated[str, msgspec.Meta(pattern=r"\A(memory://|sqlite:///[^\x00]+|postgres(ql)?://[^\s\x00]+)\Z")]


class StoreConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`[store]`: where the buffer keeps what it accepted (DESIGN §5)."""

    #: the SQLite file (relative to the working directory with three slashes, absolute with four),
    #: `memory://` (the process's memory, lost on a crash), or a PostgreSQL database shared by
    #: replicas (`postgresql://user@host:5432/db`; the password as `${ENV}` in the URL, or in
    #: `password_file`)
    url: StoreUrl = "sqlite:///state/order-bridge.db"
    #: PostgreSQL only: a file holding the password (a mounted Secret), read at each new
    #: connection, so a rotated password is picked up without a restart
    password_file: NonEmptyStr | None = None
    #: "full": a commit survives power loss; "normal": it survives a crash of the process, not of
    #: the machine, and costs less (SQLite's WAL documentation)
    synchronous: Literal["full", "normal"] = "full"
    #: dead letters (the order and the webhook body they came from: personal data) are deleted
    #: this long after they were made
    dead_letter_retention_days: PositiveFloat = 30.0
    #: each order's history (ids, times, outcomes: no personal data) is kept this long
    history_days: PositiveFloat = 7.0


#: an admin bearer token: long enough that guessing is hopeless
AdminToken = Annotated[str, msgspec.Meta(min_length=16)]


class AdminConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`[admin]`: the admin API and console, on a listener of their own (off without the table)."""

    _SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset({"token"})

    host: NonEmptyStr = "127.0.0.1"
    port: Port = 9090
    #: `Authorization: Bearer <token>`; a list allows rotation (any matches). Empty: made up at
    #: start and printed — only with the sandbox
    token: AdminToken | Annotated[tuple[AdminToken, ...], msgspec.Meta(min_length=1)] | Literal[""] = ""

    @property
    def tokens(self) -> tuple[str, ...]:
        return (self.token,) if isinstance(self.token, str) else self.token


class LoggingConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`[logging]`: the lowest level written."""

    level: LogLevel = "INFO"


class IntegrationConfig(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One `[[integrations]]` table: a Sendcloud integration fed by one shop.

    A tagged union keyed by `platform`: what a file loads is a subclass per registered platform
    (`_integration_type`), tagged with the platform's name, whose `options` is that adapter's
    `options_type` (the `[integrations.options]` table). So the platform's own Struct checks its
    options, and adding a platform needs no change here.
    """

    _SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset({"secrets"})

    #: Sendcloud integration id (`order_details.integration.id`), the `{integration_id}` URL segment
    id: PositiveInt
    #: webhook signing secrets; any may match, so a secret can be rotated without downtime
    secrets: Annotated[tuple[NonEmptyStr, ...], msgspec.Meta(min_length=1)]
    #: the platform's options (`[integrations.options]`), typed by its adapter
    options: PlatformOptions = msgspec.field(default_factory=PlatformOptions)

    @property
    def platform(self) -> str:
        """A key of `adapters.ADAPTERS`, the `{platform}` URL segment: the union's tag."""
        return cast(str, self.__struct_config__.tag)

    def _shown(self) -> Iterator[tuple[str, object]]:
        yield "platform", self.platform
        yield from super()._shown()


class Config(_Section, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The whole configuration: what a file loads is `_config_type()`'s subclass, whose
    integrations are the union of the registered platforms'."""

    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    sendcloud: SendcloudConfig = msgspec.field(default_factory=SendcloudConfig)
    buffer: BufferConfig = msgspec.field(default_factory=BufferConfig)
    store: StoreConfig = msgspec.field(default_factory=StoreConfig)
    logging: LoggingConfig = msgspec.field(default_factory=LoggingConfig)
    admin: AdminConfig | None = None
    integrations: Annotated[tuple[IntegrationConfig, ...], msgspec.Meta(min_length=1)]


def _integration_type(platform: str, factory: AdapterFactory) -> type[IntegrationConfig]:
    """`IntegrationConfig` for one platform: tagged `platform`, options of its adapter's type."""
    options_type = factory(DEFAULT_CURRENCIES).options_type
    name = "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", platform)) + "Integration"
    kind = msgspec.defstruct(
        name,
        [("options", options_type, msgspec.field(default_factory=options_type))],
        bases=(IntegrationConfig,),
        module=__name__,
        tag=platform,
        tag_field="platform",
        frozen=True,
        kw_only=True,
        forbid_unknown_fields=True,
    )
    return cast(type[IntegrationConfig], kind)


def _config_type() -> type[Config]:
    """`Config` whose integrations are the tagged union of the platforms registered now."""
    return _config_type_for(tuple(sorted(ADAPTERS.items())))


@functools.cache
def _config_type_for(registry: tuple[tuple[str, AdapterFactory], ...]) -> type[Config]:
    # Built at run time, so not a type mypy can read: `Union[...]` of the per-platform classes.
    union: Any = Union.__getitem__(tuple(_integration_type(platform, factory) for platform, factory in registry))
    integrations: Any = Annotated[tuple[union, ...], msgspec.Meta(min_length=1)]
    kind = msgspec.defstruct(
        "Config",
        [("integrations", integrations)],
        bases=(Config,),
        module=__name__,
        frozen=True,
        kw_only=True,
        forbid_unknown_fields=True,
    )
    return cast(type[Config], kind)


# ---------------------------------------------------------------- loading


def load_config(path: str | Path, environ: Mapping[str, str] = os.environ) -> Config:
    """Read, interpolate and check the TOML file at `path`; `ConfigError` on any problem."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return loads_config(text, environ, source=str(path))


def loads_config(text: str, environ: Mapping[str, str] = os.environ, *, source: str = "<config>") -> Config:
    """`load_config` for TOML text already in memory; `source` names it in TOML syntax errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: {_toml_error(str(exc))}") from None
    from_environ: set[str] = set()
    data = _interpolate(data, "", environ, from_environ)
    _check_platforms(data, from_environ)
    try:
        config = msgspec.convert(data, _config_type())
    except msgspec.ValidationError as exc:
        raise _from_validation_error(str(exc)) from None
    return _checked(config, from_environ)


_TOML_POSITION = re.compile(
    r"^(?P<reason>.*) \((?P<where>at line (?P<line>\d+), column (?P<col>\d+)|at end of document)\)$"
)


def _toml_error(message: str) -> str:
    """`Invalid value (at line 3, column 7)` → `invalid TOML at line 3, column 7: Invalid value`."""
    match = _TOML_POSITION.match(message)
    if match is None:
        return f"invalid TOML: {message}"
    return f"invalid TOML {match['where']}: {match['reason']}"


# ---------------------------------------------------------------- interpolation

_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _interpolate(value: Any, key: str, environ: Mapping[str, str], from_environ: set[str]) -> Any:
    """`value` with `${NAME}` replaced in every string inside it; `key` is its dotted path.

    The keys of strings that took a variable's value are added to `from_environ`: error
    messages never quote those (a secret may have landed in the wrong key).
    """
    if isinstance(value, str):
        if "${" not in value:
            return value
        substituted, used = _substitute(value, key, environ)
        if used:
            from_environ.add(key)
        return substituted
    if isinstance(value, dict):
        return {name: _interpolate(item, _join(key, name), environ, from_environ) for name, item in value.items()}
    if isinstance(value, list):
        return [_interpolate(item, f"{key}[{index}]", environ, from_environ) for index, item in enumerate(value)]
    return value


def _substitute(text: str, key: str, environ: Mapping[str, str]) -> tuple[str, bool]:
    """`text` with its references replaced, and whether any variable was used."""
    used = False

    def replace(match: re.Match[str]) -> str:
        nonlocal used
        whole = match.group(0)
        if whole == "$${":
            return "${"
        name = match.group(1)
        if name is None:
            raise ConfigError(f"{key}: unterminated ${{ (write $${{ for a literal ${{)", key)
        if not _NAME.match(name):
            # The text between the braces is not echoed: it may be part of a literal secret.
            raise ConfigError(
                f"{key}: invalid variable reference, a name is letters, digits and _ (write $${{ for a literal ${{)",
                key,
            )
        try:
            value = environ[name]
        except KeyError:
            raise ConfigError(f"{key}: environment variable {name} is not set", key) from None
        used = True
        return value

    return _REFERENCE.sub(replace, text), used


# ---------------------------------------------------------------- msgspec errors → one line

_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>.*)`)?$", re.DOTALL)
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>.*)`$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(?P<name>.*)`$", re.DOTALL)
_WRONG_TYPE = re.compile(r"^Expected `(?P<expected>\w+)`, got `(?P<got>\w+)`$")
_BOUND = re.compile(r"^Expected `(?P<type>int|float)` (?P<op>>=|<=|>|<) (?P<bound>\S+)$")
_LENGTH = re.compile(r"^Expected `(?P<type>str|array|object)` of length (?P<op>>=|<=) (?P<bound>\d+)$")
_REGEX = re.compile(r"^Expected `str` matching regex ", re.DOTALL)
_ENUM = re.compile(r"^Invalid enum value ", re.DOTALL)

_TYPE_WORDS = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "a boolean",
    "array": "an array",
    "object": "a table",
    "datetime": "a date-time",
    "date": "a date",
    "time": "a time",
    "null": "null",
}
_BOUND_WORDS = {">=": "at least", "<=": "at most", ">": "greater than", "<": "less than"}


def _from_validation_error(text: str) -> ConfigError:
    """msgspec's `<message> - at `$.a[0].b`` as a `ConfigError` naming `a[0].b` (values left out)."""
    at = _AT.match(text)
    assert at is not None  # the pattern matches any text
    message, path = at["message"], (at["path"] or "").removeprefix(".")

    if unknown := _UNKNOWN.match(message):
        key = _join(path, unknown["name"])
        return ConfigError(f"unknown key {key}{_did_you_mean(path, unknown['name'])}", key)
    if missing := _MISSING.match(message):
        key = _join(path, missing["name"])
        return ConfigError(f"{key}: missing", key)
    key = path or "(top level)"
    if wrong := _WRONG_TYPE.match(message):
        expected, got = wrong["expected"], wrong["got"]
        hint = " (write [[integrations]] tables)" if path == "integrations" and got == "object" else ""
        return ConfigError(f"{key}: expected {_type_word(expected)}, got {_type_word(got)}{hint}", key)
    if bound := _BOUND.match(message):
        return ConfigError(f"{key}: must be {_BOUND_WORDS[bound['op']]} {_number(bound['bound'])}", key)
    if length := _LENGTH.match(message):
        return ConfigError(f"{key}: {_length_problem(length['type'], length['op'], int(length['bound']))}", key)
    if _REGEX.match(message):
        kind = _type_at(path)
        if isinstance(kind, mi.StrType) and kind.pattern == _CURRENCY_PATTERN:
            return ConfigError(f"{key}: must be a 3-letter upper-case ISO 4217 currency code, e.g. EUR", key)
        return ConfigError(f"{key}: has an invalid format", key)
    if _ENUM.match(message):
        # msgspec quotes the value here; name the allowed ones instead.
        choices = _literal_choices(path)
        allowed = f"must be one of {', '.join(choices)}" if choices else "is not an allowed value"
        return ConfigError(f"{key}: {allowed}", key)
    # Not a form listed above: keep msgspec's words unless they quote something (a value, maybe).
    detail = "" if "'" in message or '"' in message else f" ({message})"
    return ConfigError(f"{key}: invalid value{detail}", key)


def _type_word(name: str) -> str:
    return _TYPE_WORDS.get(name, f"`{name}`")


def _number(text: str) -> str:
    """`0.0` → `0`, `2.5` → `2.5`: bounds as a person writes them."""
    return text.removesuffix(".0")


def _length_problem(kind: str, op: str, bound: int) -> str:
    if kind == "str":
        if op == ">=" and bound == 1:
            return "must not be empty"
        return f"must be {_BOUND_WORDS[op]} {bound} characters long"
    if op == ">=" and bound == 1:
        return "must have at least one entry"
    return f"must have {_BOUND_WORDS[op]} {bound} entries"


_PATH_TOKEN = re.compile(r"\[(\d+)\]|\.?([^.\[]+)")


def _type_at(path: str) -> mi.Type | None:
    """The msgspec type at a dotted path of `Config` (`integrations[0].secrets`), None if not found.

    Through the integrations' union only fields every platform has alike lead on (not `options`).
    """
    current: mi.Type = mi.type_info(_config_type())
    for token in _PATH_TOKEN.finditer(path):
        current = _unwrap(current)
        if token.group(1) is not None:
            if not isinstance(current, mi.ListType | mi.VarTupleType):
                return None
            current = current.item_type
        else:
            by_name = _fields(current)
            if token.group(2) not in by_name:
                return None
            current = by_name[token.group(2)]
    return _unwrap(current)


def _fields(kind: mi.Type) -> dict[str, mi.Type]:
    """The fields of a Struct type by name; of a union of Structs, those all members share alike."""
    if isinstance(kind, mi.StructType):
        return {field.encode_name: field.type for field in kind.fields}
    if isinstance(kind, mi.UnionType) and all(isinstance(member, mi.StructType) for member in kind.types):
        first, *rest = (_fields(member) for member in kind.types)
        return {name: field for name, field in first.items() if all(other.get(name) == field for other in rest)}
    return {}


def _unwrap(kind: mi.Type) -> mi.Type:
    while isinstance(kind, mi.Metadata):
        kind = kind.type
    return kind


def _literal_choices(path: str) -> list[str]:
    """The allowed values of the Literal field at `path`, in declaration order (msgspec sorts them)."""
    parent_path, _, name = path.rpartition(".")
    parent = _type_at(parent_path)
    if isinstance(parent, mi.StructType):
        for field in parent.fields:
            if field.encode_name == name:
                hint = typing.get_type_hints(parent.cls)[field.name]
                if typing.get_origin(hint) is Literal:
                    return [str(value) for value in typing.get_args(hint)]
    kind = _type_at(path)
    return [str(value) for value in kind.values] if isinstance(kind, mi.LiteralType) else []


def _did_you_mean(path: str, name: str) -> str:
    kind = _type_at(path)
    if kind is None:
        return ""
    close = difflib.get_close_matches(name, list(_fields(kind)), n=1, cutoff=0.6)
    return f" (did you mean {_join(path, close[0])}?)" if close else ""


# ---------------------------------------------------------------- checks across fields


def _checked(config: Config, from_environ: Set[str]) -> Config:
    """`config` after the checks msgspec cannot express, with `base_url` normalised.

    `from_environ`: keys whose value came (partly) from the environment, never quoted.
    """
    for section_name in ("server", "sendcloud", "buffer"):
        section = getattr(config, section_name)
        for name in section.__struct_fields__:
            value = getattr(section, name)
            if isinstance(value, float) and not math.isfinite(value):
                key = f"{section_name}.{name}"
                raise ConfigError(f"{key}: must be a finite number", key)

    buffer = config.buffer
    if buffer.max_wait_seconds < buffer.debounce_seconds:
        raise ConfigError(
            "buffer.max_wait_seconds: must be at least buffer.debounce_seconds "
            f"({buffer.max_wait_seconds:g} < {buffer.debounce_seconds:g})",
            "buffer.max_wait_seconds",
        )

    sendcloud = config.sendcloud
    if not sendcloud.is_sandbox:
        base_url = sendcloud.base_url.rstrip("/")
        if not _is_http_url(base_url):
            # The value is not echoed: a URL may carry credentials.
            raise ConfigError(
                f'sendcloud.base_url: must be "{SANDBOX}" or an http(s) URL without query or fragment',
                "sendcloud.base_url",
            )
        for name in ("public_key", "secret_key"):
            if not getattr(sendcloud, name):
                key = f"sendcloud.{name}"
                raise ConfigError(f'{key}: must be set unless sendcloud.base_url is "{SANDBOX}"', key)
        if base_url != sendcloud.base_url:
            config = msgspec.structs.replace(config, sendcloud=msgspec.structs.replace(sendcloud, base_url=base_url))

    admin = config.admin
    if admin is not None and admin.token == "" and not sendcloud.is_sandbox:
        raise ConfigError(f'admin.token: must be set unless sendcloud.base_url is "{SANDBOX}"', "admin.token")

    first_index: dict[int, int] = {}
    for index, integration in enumerate(config.integrations):
        if integration.id in first_index:
            key = f"integrations[{index}].id"
            raise ConfigError(
                f"{key}: duplicate integration id {integration.id} (also integrations[{first_index[integration.id]}])",
                key,
            )
        first_index[integration.id] = index
    return config


def _check_platforms(data: Any, from_environ: Set[str]) -> None:
    """An unknown `platform` named clearly, before msgspec's union would quote it as a bad tag.

    Anything else wrong with an integration (a missing or non-string platform, say) is left to
    msgspec, whose message names the key.
    """
    integrations = data.get("integrations") if isinstance(data, dict) else None
    if not isinstance(integrations, list):
        return
    for index, integration in enumerate(integrations):
        platform = integration.get("platform") if isinstance(integration, dict) else None
        if isinstance(platform, str) and platform not in ADAPTERS:
            key = f"integrations[{index}].platform"
            given = "" if key in from_environ else f' "{platform}"'
            raise ConfigError(f"{key}: unknown platform{given} (known: {', '.join(sorted(ADAPTERS))})", key)


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and port_ok
        and not parts.query
        and not parts.fragment
        and not any(char.isspace() for char in url)
    )


# ---------------------------------------------------------------- helpers


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _one_line(message: str) -> str:
    """Control characters (a newline in a quoted TOML key, say) escaped, so a message stays one line."""
    if message.isprintable():
        return message
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in message)
