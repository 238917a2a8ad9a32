"""`service.config`: the DESIGN §4 file, defaults, `${ENV}` interpolation and one-line errors that keep secrets."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters import DEFAULT_CURRENCIES
from adapters.shopify import ShopifyOptions
from adapters.woocommerce import WooCommerceOptions
from service.config import (
    BufferConfig,
    Config,
    ConfigError,
    IntegrationConfig,
    LoggingConfig,
    SendcloudConfig,
    ServerConfig,
    load_config,
    loads_config,
)

ROOT = Path(__file__).parent.parent

#: distinctive values that must never show up in a repr or an error message
SECRET = "s3cr3t-VALUE-never-shown-7f1c"
OLD_SECRET = "0ld-s3cr3t-never-shown-91ab"
SENDCLOUD_SECRET = "sc-s3cr3t-never-shown-44de"

#: the example of DESIGN §4, verbatim
DESIGN_EXAMPLE = """\
[server]
host = "0.0.0.0"
port = 8080
max_body_bytes = 5_000_000

[sendcloud]
base_url = "https://panel.sendcloud.sc/api/v3"   # or "sandbox" for the built-in local simulator
public_key = "${SENDCLOUD_PUBLIC_KEY}"
secret_key = "${SENDCLOUD_SECRET_KEY}"
partner_id = ""                     # optional Sendcloud-Partner-Id header
requests_per_minute = 100           # documented account limit for POST
burst_per_second = 15
timeout_seconds = 10

[buffer]
debounce_seconds = 1.0              # flush a lane when it has been quiet this long
max_wait_seconds = 5.0              # ...or when its oldest order has waited this long
max_batch = 100                     # Sendcloud's documented maximum
max_pending = 50_000                # across all lanes; above it webhooks get 503
shutdown_timeout_seconds = 20

[[integrations]]
id = 12345                          # Sendcloud integration id (order_details.integration.id)
platform = "shopify"
secrets = ["${SHOP_A_SECRET}", "${SHOP_A_OLD_SECRET}"]   # any may match: rotation without downtime
"""

ENV = {
    "SENDCLOUD_PUBLIC_KEY": "public-key-1",
    "SENDCLOUD_SECRET_KEY": SENDCLOUD_SECRET,
    "SHOP_A_SECRET": SECRET,
    "SHOP_A_OLD_SECRET": OLD_SECRET,
}

SANDBOX = '[sendcloud]\nbase_url = "sandbox"\n'
INTEGRATION = '[[integrations]]\nid = 1\nplatform = "shopify"\nsecrets = ["${SHOP_A_SECRET}"]\n'
#: the smallest valid config: sandbox, one integration
MINIMAL = SANDBOX + INTEGRATION


def _section(name: str, body: str) -> str:
    """A valid minimal config with `body` added to section `name`."""
    if name == "sendcloud":
        return f"{SANDBOX}{body}\n{INTEGRATION}"
    return f"[{name}]\n{body}\n{MINIMAL}"


def _load(text: str, env: dict[str, str] | None = None) -> Config:
    return loads_config(textwrap.dedent(text), ENV if env is None else env)


def _error(text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        _load(text, env)
    message = str(caught.value)
    _assert_safe(message)
    return message


def _assert_safe(message: str) -> None:
    assert "\n" not in message and "\r" not in message
    for secret in (SECRET, OLD_SECRET, SENDCLOUD_SECRET):
        assert secret not in message


def test_design_example_loads_with_every_value(tmp_path: Path) -> None:
    """The DESIGN §4 example, written to a file with its variables set, loads with every value as written."""
    path = tmp_path / "order-bridge.toml"
    path.write_text(DESIGN_EXAMPLE, encoding="utf-8")
    config = load_config(path, ENV)
    assert config.server == ServerConfig(host="0.0.0.0", port=8080, max_body_bytes=5_000_000)
    assert config.sendcloud == SendcloudConfig(
        base_url="https://panel.sendcloud.sc/api/v3",
        public_key="public-key-1",
        secret_key=SENDCLOUD_SECRET,
        partner_id="",
        requests_per_minute=100,
        burst_per_second=15,
        timeout_seconds=10.0,
        currencies=("EUR", "GBP", "USD"),
    )
    assert isinstance(config.sendcloud.timeout_seconds, float)
    assert config.buffer == BufferConfig(
        debounce_seconds=1.0, max_wait_seconds=5.0, max_batch=100, max_pending=50_000, shutdown_timeout_seconds=20.0
    )
    assert config.logging == LoggingConfig(level="INFO")
    (integration,) = config.integrations
    assert isinstance(integration, IntegrationConfig)
    assert (integration.id, integration.platform, integration.secrets) == (12345, "shopify", (SECRET, OLD_SECRET))
    assert integration.options == ShopifyOptions()
    assert load_config(str(path), ENV) == config


def test_defaults_when_sections_are_absent() -> None:
    """Every key but the integrations and the credentials has the default DESIGN §4 gives."""
    config = _load(MINIMAL)
    assert config.server == ServerConfig()
    assert (config.server.host, config.server.port, config.server.max_body_bytes) == ("0.0.0.0", 8080, 5_000_000)
    sendcloud = config.sendcloud
    assert (sendcloud.public_key, sendcloud.secret_key, sendcloud.partner_id) == ("", "", "")
    assert (sendcloud.requests_per_minute, sendcloud.burst_per_second, sendcloud.timeout_seconds) == (100, 15, 10.0)
    assert sendcloud.currencies == ("EUR", "GBP", "USD")
    assert sendcloud.currency_set == DEFAULT_CURRENCIES
    assert sendcloud.is_sandbox
    assert config.buffer == BufferConfig(
        debounce_seconds=1.0,
        max_wait_seconds=5.0,
        max_batch=100,
        max_pending=50_000,
        shutdown_timeout_seconds=20.0,
        dedupe_ttl_seconds=86_400.0,
        dedupe_max_entries=200_000,
        dead_letter_capacity=10_000,
    )
    assert config.logging.level == "INFO"
    assert SendcloudConfig().base_url == "https://panel.sendcloud.sc/api/v3"


def test_integrations_are_a_union_tagged_by_platform_with_the_adapters_options() -> None:
    """Each integration is its platform's type; `[integrations.options]` is checked by that adapter's Struct."""
    config = _load(
        """
        [sendcloud]
        base_url = "sandbox"
        [[integrations]]
        id = 7
        platform = "shopify"
        secrets = ["a"]
        [integrations.options]
        shop_domain = "${DOMAIN}"
        [[integrations]]
        id = 9
        platform = "woocommerce"
        secrets = ["b", "c"]
        """,
        {**ENV, "DOMAIN": "a-shop.myshopify.com"},
    )
    shopify, woo = config.integrations
    assert (shopify.platform, shopify.options) == ("shopify", ShopifyOptions(shop_domain="a-shop.myshopify.com"))
    assert (woo.platform, woo.secrets, woo.options) == ("woocommerce", ("b", "c"), WooCommerceOptions())
    assert type(shopify) is not type(woo)
    assert "platform='woocommerce'" in repr(woo) and "secrets=('***', '***')" in repr(woo)


@pytest.mark.parametrize(
    ("options", "platform", "expected"),
    [
        ('shop_domain = "x"', "woocommerce", "unknown key integrations[0].options.shop_domain"),
        ("store_url = 1", "woocommerce", "integrations[0].options.store_url: expected a string, got an integer"),
        ('shop_domian = "x"', "shopify", "unknown key integrations[0].options.shop_domian"),
    ],
)
def test_options_of_another_platform_or_type_are_refused(options: str, platform: str, expected: str) -> None:
    """An option is the platform's own: another platform's key, or a wrong type, is one line naming the key."""
    text = SANDBOX + _integrations((1, platform)) + f"[integrations.options]\n{options}\n"
    assert _error(text) == expected


def test_sandbox_example_loads() -> None:
    """`examples/sandbox.toml` loads without any environment: sandbox, local host, two integrations."""
    config = load_config(ROOT / "examples" / "sandbox.toml", {})
    assert config.sendcloud.is_sandbox
    assert (config.server.host, config.server.port) == ("127.0.0.1", 8080)
    assert config.buffer.debounce_seconds == 1.0
    assert [(i.id, i.platform, i.secrets) for i in config.integrations] == [
        (1, "shopify", ("sandbox-shopify-secret",)),
        (2, "woocommerce", ("sandbox-woocommerce-secret",)),
    ]


@pytest.mark.parametrize(
    ("value", "env", "expected"),
    [
        ("${A}", {"A": "x"}, "x"),
        ("pre-${A}-post", {"A": "x"}, "pre-x-post"),
        ("${A}${B_2}", {"A": "x", "B_2": "y"}, "xy"),
        ("${A}", {"A": ""}, ""),
        ("$${A}", {}, "${A}"),
        ("a$${A}b", {"A": "x"}, "a${A}b"),
        ("$${A} and ${A}", {"A": "x"}, "${A} and x"),
        ("cost $5 {x} $A", {}, "cost $5 {x} $A"),
        ("${A}", {"A": "${B}"}, "${B}"),
    ],
)
def test_interpolation(value: str, env: dict[str, str], expected: str) -> None:
    """`${NAME}` is replaced anywhere in a string, `$${` is a literal `${`, values are not interpolated again."""
    config = _load(_section("sendcloud", f'partner_id = "{value}"'), {"SHOP_A_SECRET": "s", **env})
    assert config.sendcloud.partner_id == expected


def test_interpolation_reaches_arrays_and_integrations() -> None:
    """Strings inside arrays and `[[integrations]]` tables are interpolated; numbers are left alone."""
    config = _load(
        """
        [sendcloud]
        base_url = "sandbox"
        currencies = ["${CUR}", "EUR"]
        [[integrations]]
        id = 3
        platform = "${PLATFORM}"
        secrets = ["${SHOP_A_SECRET}", "${SHOP_A_OLD_SECRET}"]
        """,
        {**ENV, "CUR": "PLN", "PLATFORM": "woocommerce"},
    )
    assert config.sendcloud.currencies == ("PLN", "EUR")
    assert config.integrations[0].platform == "woocommerce"
    assert config.integrations[0].secrets == (SECRET, OLD_SECRET)


@pytest.mark.parametrize(
    ("text", "unset", "expected"),
    [
        (
            DESIGN_EXAMPLE,
            "SENDCLOUD_SECRET_KEY",
            "sendcloud.secret_key: environment variable SENDCLOUD_SECRET_KEY is not set",
        ),
        (
            DESIGN_EXAMPLE,
            "SHOP_A_OLD_SECRET",
            "integrations[0].secrets[1]: environment variable SHOP_A_OLD_SECRET is not set",
        ),
        (MINIMAL.replace('"sandbox"', '"${BASE}/api"'), "", "sendcloud.base_url: environment variable BASE is not set"),
        (MINIMAL.replace('"sandbox"', '"${BASE"'), "", "sendcloud.base_url: unterminated ${"),
        (MINIMAL.replace('"sandbox"', '"${}"'), "", "sendcloud.base_url: invalid variable reference"),
        (MINIMAL.replace('"sandbox"', '"${1A}"'), "", "sendcloud.base_url: invalid variable reference"),
    ],
)
def test_interpolation_errors(text: str, unset: str, expected: str) -> None:
    """An unset variable or a malformed reference is one line naming the key (and the variable)."""
    env = {name: value for name, value in ENV.items() if name != unset}
    assert _error(text, env).startswith(expected)


def test_reference_text_is_not_echoed() -> None:
    """A malformed `${...}` inside a literal secret does not put the secret's text in the message."""
    message = _error(MINIMAL.replace('"${SHOP_A_SECRET}"', f'"{SECRET}${{{SECRET}"'), ENV)
    assert message.startswith("integrations[0].secrets[0]: unterminated ${")


CURRENCY = "must be a 3-letter upper-case ISO 4217 currency code, e.g. EUR"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # unknown keys, at the top level, in a section, inside an integration
        ("colour = 'blue'\n" + MINIMAL, "unknown key colour"),
        (_section("server", "prot = 80"), "unknown key server.prot (did you mean server.port?)"),
        (_section("metrics", "port = 9000"), "unknown key metrics"),
        (MINIMAL + "secret = 'x'\n", "unknown key integrations[0].secret (did you mean integrations[0].secrets?)"),
        # missing
        (SANDBOX, "integrations: missing"),
        ("[[integrations]]\nid = 1\nplatform = 'shopify'\n", "integrations[0].secrets: missing"),
        ("[[integrations]]\nplatform = 'shopify'\nsecrets = ['x']\n", "integrations[0].id: missing"),
        # wrong types
        (
            _section("sendcloud", "timeout_seconds = 'ten'"),
            "sendcloud.timeout_seconds: expected a number, got a string",
        ),
        (_section("server", 'port = "8080"'), "server.port: expected an integer, got a string"),
        (_section("server", "port = 80.5"), "server.port: expected an integer, got a number"),
        (_section("server", "port = true"), "server.port: expected an integer, got a boolean"),
        (_section("server", "host = 1"), "server.host: expected a string, got an integer"),
        ("server = 1\n" + MINIMAL, "server: expected a table, got an integer"),
        (_section("buffer", "max_wait_seconds = 2024-01-01"), "buffer.max_wait_seconds: expected a number, got a date"),
        (_section("sendcloud", "currencies = 'EUR'"), "sendcloud.currencies: expected an array, got a string"),
        ("[integrations]\nid = 1\n", "integrations: expected an array, got a table (write [[integrations]] tables)"),
        ("integrations = [1]\n", "integrations[0]: expected a table, got an integer"),
        (MINIMAL.replace("id = 1", "id = '1'"), "integrations[0].id: expected an integer, got a string"),
        (_section("logging", "level = 10"), "logging.level: expected a string, got an integer"),
        # constraints
        (_section("server", "port = 0"), "server.port: must be at least 1"),
        (_section("server", "port = 65536"), "server.port: must be at most 65535"),
        (_section("server", "host = ''"), "server.host: must not be empty"),
        (_section("server", "max_body_bytes = 0"), "server.max_body_bytes: must be at least 1"),
        (_section("buffer", "max_batch = 101"), "buffer.max_batch: must be at most 100"),
        (_section("buffer", "max_batch = 0"), "buffer.max_batch: must be at least 1"),
        (_section("buffer", "debounce_seconds = -0.5"), "buffer.debounce_seconds: must be at least 0"),
        (_section("buffer", "shutdown_timeout_seconds = 0"), "buffer.shutdown_timeout_seconds: must be greater than 0"),
        (_section("buffer", "max_wait_seconds = nan"), "buffer.max_wait_seconds: must be greater than 0"),
        (_section("buffer", "max_wait_seconds = inf"), "buffer.max_wait_seconds: must be a finite number"),
        (_section("sendcloud", "timeout_seconds = -1"), "sendcloud.timeout_seconds: must be greater than 0"),
        (_section("sendcloud", "requests_per_minute = 0"), "sendcloud.requests_per_minute: must be at least 1"),
        (_section("sendcloud", "currencies = []"), "sendcloud.currencies: must have at least one entry"),
        (_section("sendcloud", "currencies = ['EUR', 'eur']"), f"sendcloud.currencies[1]: {CURRENCY}"),
        (_section("sendcloud", "currencies = ['EURO']"), f"sendcloud.currencies[0]: {CURRENCY}"),
        (_section("logging", "level = 'info'"), "logging.level: must be one of DEBUG, INFO, WARNING, ERROR"),
        (MINIMAL.replace("id = 1", "id = 0"), "integrations[0].id: must be at least 1"),
        (MINIMAL.replace('["${SHOP_A_SECRET}"]', "[]"), "integrations[0].secrets: must have at least one entry"),
        (
            MINIMAL.replace('"${SHOP_A_SECRET}"', '"${SHOP_A_SECRET}", ""'),
            "integrations[0].secrets[1]: must not be empty",
        ),
        ("integrations = []\n", "integrations: must have at least one entry"),
    ],
)
def test_schema_errors(text: str, expected: str) -> None:
    """Unknown keys, missing keys, wrong types and violated constraints are one line naming the key."""
    assert _error(text) == expected


def _integrations(*rows: tuple[int, str]) -> str:
    """`[[integrations]]` tables for (id, platform) pairs, each with a throwaway secret."""
    return "".join(
        f'[[integrations]]\nid = {id_}\nplatform = "{platform}"\nsecrets = ["x"]\n' for id_, platform in rows
    )


def _real(
    base_url: str = "https://example.test/api/v3", public_key: str = "p", secret_key: str = "${SENDCLOUD_SECRET_KEY}"
) -> str:
    """A config for a real Sendcloud endpoint, with one integration."""
    sendcloud = f'[sendcloud]\nbase_url = "{base_url}"\npublic_key = "{public_key}"\nsecret_key = "{secret_key}"\n'
    return sendcloud + _integrations((1, "shopify"))


NO_KEY = 'must be set unless sendcloud.base_url is "sandbox"'
BAD_URL = 'sendcloud.base_url: must be "sandbox" or an http(s) URL'
KNOWN = "(known: shopify, woocommerce)"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            SANDBOX + _integrations((1, "shopify"), (2, "woocommerce"), (1, "woocommerce")),
            "integrations[2].id: duplicate integration id 1 (also integrations[0])",
        ),
        (
            SANDBOX + _integrations((1, "shopify"), (2, "magento")),
            f'integrations[1].platform: unknown platform "magento" {KNOWN}',
        ),
        (SANDBOX + _integrations((1, "Shopify")), f'integrations[0].platform: unknown platform "Shopify" {KNOWN}'),
        (
            SANDBOX + "[buffer]\ndebounce_seconds = 3.0\nmax_wait_seconds = 2.0\n" + _integrations((1, "shopify")),
            "buffer.max_wait_seconds: must be at least buffer.debounce_seconds (2 < 3)",
        ),
        (_integrations((1, "shopify")), f"sendcloud.public_key: {NO_KEY}"),
        (_real(public_key=""), f"sendcloud.public_key: {NO_KEY}"),
        (_real(secret_key=""), f"sendcloud.secret_key: {NO_KEY}"),
        (_real(base_url="ftp://example.test"), BAD_URL),
        (_real(base_url="example.test/api/v3"), BAD_URL),
        (_real(base_url="https://example.test/api?x=1"), BAD_URL),
        (_real(base_url="https://example.test/api#top"), BAD_URL),
        (_real(base_url="https://example.test:99999/api"), BAD_URL),
        (_real(base_url="https:///api"), BAD_URL),
        (_real(base_url="Sandbox"), BAD_URL),
    ],
)
def test_cross_field_errors(text: str, expected: str) -> None:
    """Duplicate ids, unknown platforms, max_wait < debounce, a bad base_url or missing credentials are refused."""
    assert _error(text).startswith(expected)


def test_real_sendcloud_config_and_trailing_slash() -> None:
    """With credentials an http(s) base_url is accepted and its trailing slash stripped; equal timings are fine."""
    config = _load(
        "[buffer]\ndebounce_seconds = 2\nmax_wait_seconds = 2\n"
        + _real(base_url="https://example.test/api/v3/")
        + _integrations((2, "shopify"))
    )
    assert config.sendcloud.base_url == "https://example.test/api/v3"
    assert not config.sendcloud.is_sandbox
    assert config.sendcloud.secret_key == SENDCLOUD_SECRET
    assert config.buffer.debounce_seconds == config.buffer.max_wait_seconds == 2.0
    http = _load(_real(base_url="http://127.0.0.1:9000//"))
    assert http.sendcloud.base_url == "http://127.0.0.1:9000"


def test_toml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    """A TOML syntax error names the file, line and column, on one line."""
    path = tmp_path / "broken.toml"
    path.write_text('[server]\nport = 80\nhost = "0.0.0.0\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, ENV)
    message = str(caught.value)
    assert message.startswith(f"{path}: invalid TOML at line 3, column ")
    _assert_safe(message)
    duplicate = _error("[server]\nport = 1\n[server]\n")
    assert duplicate.startswith("<config>: invalid TOML at line 3, column ")


@pytest.mark.parametrize(("name", "problem"), [("absent.toml", "file not found"), ("", "is a directory")])
def test_unreadable_file(tmp_path: Path, name: str, problem: str) -> None:
    """A missing file or a directory is one line naming the path."""
    path = tmp_path / name
    with pytest.raises(ConfigError) as caught:
        load_config(path, ENV)
    message = str(caught.value)
    assert message.startswith(f"{path}: {problem}")
    _assert_safe(message)


def test_not_utf8(tmp_path: Path) -> None:
    """A file that is not UTF-8 is refused with one line."""
    path = tmp_path / "latin1.toml"
    path.write_bytes(b"# caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path, ENV)


def test_secrets_are_masked_in_repr() -> None:
    """`repr()` of the config and of its sections shows set secrets as '***' and keeps everything else."""
    config = _load(DESIGN_EXAMPLE)
    for text in (
        repr(config),
        str(config),
        repr(config.sendcloud),
        repr(config.integrations),
        repr(config.__rich_repr__()),
    ):
        for secret in (SECRET, OLD_SECRET, SENDCLOUD_SECRET):
            assert secret not in text
    assert "secret_key='***'" in repr(config.sendcloud)
    assert "public_key='public-key-1'" in repr(config.sendcloud)
    assert "secrets=('***', '***')" in repr(config.integrations[0])
    assert "secret_key=''" in repr(SendcloudConfig())
    # the values themselves are untouched
    assert config.sendcloud.secret_key == SENDCLOUD_SECRET
    assert config.integrations[0].secrets == (SECRET, OLD_SECRET)


@pytest.mark.parametrize(
    "text",
    [
        _section("server", "port = '${SHOP_A_SECRET}'"),
        _section("buffer", "max_batch = '${SHOP_A_SECRET}'"),
        _section("server", "host = ['${SHOP_A_SECRET}']"),
        _section("logging", "level = '${SHOP_A_SECRET}'"),
        _section("sendcloud", "currencies = ['${SHOP_A_SECRET}']"),
        MINIMAL.replace("shopify", "${SHOP_A_OLD_SECRET}"),
        MINIMAL.replace('"sandbox"', '"https://${SENDCLOUD_SECRET_KEY}@example.test:0x/"'),
        MINIMAL.replace('"sandbox"', '"${SENDCLOUD_SECRET_KEY}"'),
        _section("server", f'host = "{SECRET}"\nport = "{SECRET}"'),
        _section("server", "prot = '${SHOP_A_SECRET}'"),
        DESIGN_EXAMPLE.replace('"${SENDCLOUD_PUBLIC_KEY}"', '""'),
    ],
)
def test_secrets_never_in_error_messages(text: str) -> None:
    """Where a secret lands in the wrong place, the message gives the key and the type, never the value."""
    _error(text)  # `_error` asserts the message is one line without any secret


#: configs with `@REF@` where a variable's value lands, in keys of every kind
MISPLACED = [
    _section("server", "host = @REF@"),
    _section("server", "port = @REF@"),
    _section("server", "max_body_bytes = @REF@"),
    _section("sendcloud", "timeout_seconds = @REF@"),
    _section("sendcloud", "currencies = [@REF@]"),
    _section("sendcloud", "partner_id = @REF@"),
    _section("buffer", "max_batch = @REF@"),
    _section("buffer", "debounce_seconds = [@REF@]"),
    _section("logging", "level = @REF@"),
    MINIMAL.replace('"sandbox"', "@REF@"),
    MINIMAL.replace('"shopify"', "@REF@"),
    MINIMAL.replace("id = 1", "id = @REF@"),
    MINIMAL.replace('"${SHOP_A_SECRET}"', '"", @REF@'),
    _real(base_url="https://x.test/${S}?q"),
    _real(public_key="${S}").replace('"${SENDCLOUD_SECRET_KEY}"', '""'),
]


@settings(max_examples=300, deadline=None)
@given(
    secret=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=12),
    template=st.sampled_from(MISPLACED),
    wrap=st.sampled_from(['"${S}"', '"pre-${S}"', "'${S}'"]),
)
def test_environment_values_never_reach_error_messages(secret: str, template: str, wrap: str) -> None:
    """Whatever a variable holds and wherever it lands, an error message is one line without its value."""
    text = template.replace("@REF@", wrap)
    try:
        loads_config(text, {**ENV, "S": secret})
    except ConfigError as error:
        message = str(error)
        assert "\n" not in message
        if secret in message:
            # Hypothesis also draws the source's own string constants ("integrations"): such a value
            # is part of the fixed wording, not an echo, if a different value gives it too.
            with pytest.raises(ConfigError) as other:
                loads_config(text, {**ENV, "S": "~" * len(secret)})
            assert secret in str(other.value), f"the variable's value is echoed: {message}"


def test_values_from_the_environment_are_not_quoted() -> None:
    """An unknown platform written in the file is quoted; one that came from a variable is not."""
    from_env = _error(MINIMAL.replace('"shopify"', '"${SHOP_A_SECRET}"'))
    assert from_env == "integrations[0].platform: unknown platform (known: shopify, woocommerce)"
    literal = _error(MINIMAL.replace('"shopify"', '"magento"'))
    assert literal == 'integrations[0].platform: unknown platform "magento" (known: shopify, woocommerce)'


def test_messages_stay_on_one_line() -> None:
    """A key with a newline in its (quoted) name is escaped, so the message is still one line."""
    message = _error('"two\\nlines" = 1\n' + MINIMAL)
    assert message == "unknown key two\\nlines"
    assert str(ConfigError("a\nb")) == "a\\nb"


def test_config_error_names_the_key() -> None:
    """`ConfigError.key` carries the dotted key when there is one."""
    with pytest.raises(ConfigError) as caught:
        _load("[buffer]\nmax_batch = 101\n" + MINIMAL)
    assert caught.value.key == "buffer.max_batch"


def test_structs_are_frozen() -> None:
    """The loaded config cannot be changed in place."""
    config = _load(MINIMAL)
    with pytest.raises(AttributeError):
        config.server.port = 1  # type: ignore[misc]


def test_the_admin_table_is_off_by_default_and_checked() -> None:
    """`[admin]` turns the admin listener on; its token is a secret, at least 16 characters, one
    or a list (rotation), and may be left out only with the sandbox (one is made up at start)."""
    assert _load(MINIMAL).admin is None
    token, old = "a-token-of-enough-length", "an-old-token-of-enough-length"
    config = _load(SANDBOX + f'[admin]\nport = 9191\ntoken = ["{token}", "{old}"]\n' + INTEGRATION)
    assert config.admin is not None and (config.admin.host, config.admin.port) == ("127.0.0.1", 9191)
    assert config.admin.tokens == (token, old) and token not in repr(config) and old not in repr(config)
    single = _load(SANDBOX + f'[admin]\ntoken = "{token}"\n' + INTEGRATION).admin
    assert single is not None and single.tokens == (token,)
    assert _load(SANDBOX + "[admin]\n" + INTEGRATION).admin is not None  # sandbox: made up at start
    assert _error(SANDBOX + '[admin]\ntoken = "short"\n' + INTEGRATION).startswith("admin.token:")
    assert _error(SANDBOX + "[admin]\ntoken = []\n" + INTEGRATION).startswith("admin.token:")
    assert _error(SANDBOX + "[admin]\nport = 0\n" + INTEGRATION).startswith("admin.port:")
    real = _real().replace("[[integrations]]", "[admin]\n[[integrations]]", 1)
    assert _error(real) == 'admin.token: must be set unless sendcloud.base_url is "sandbox"'
