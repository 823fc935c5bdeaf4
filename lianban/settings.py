"""Settings from environment variables (LIANBAN_*), with the embedded mode as default.

Every variable is one field of `Settings`, with its type, default and description: the
README's table (`lianban config --markdown`), `lianban --help` and the one-line error for
an invalid value all come from here.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import structlog
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from contracts.application import DEFAULT_MAX_BODY_BYTES
from contracts.errors import ConfigurationError
from contracts.personal_data import mask_text
from router.http.tokens import ApiToken
from runtime.outbound import OutboundPolicy, parse_hosts, parse_prefixes
from runtime.webhooks import BadWebhookSecret, secret_key

if TYPE_CHECKING:
    # Only a router role opens the database: an adapter process never loads SQLAlchemy.
    from router.store import Database

log = structlog.get_logger(__name__)

PREFIX = "LIANBAN_"
# Given in code (the demo, tests), never read from the environment: LIANBAN_TOKENS_FILE is.
_NOT_FROM_ENVIRONMENT = frozenset({"api_tokens"})
# Named per department, so not fields: read by adapters.registry and adapters.manual.
PER_DEPARTMENT_VARIABLES = {
    "LIANBAN_ADAPTER_<DEPARTMENT>_URL": "The department system's URL its adapter calls.",
    "LIANBAN_ADAPTER_<DEPARTMENT>_TOKEN": "The work-queue token of a `--manual` adapter.",
}

CommaSeparated = Annotated[tuple[str, ...], NoDecode]


class Settings(BaseSettings):
    """Where URLs may carry credentials, they are left out of the repr, so printing or
    logging settings never shows a password (log lines also mask `scheme://user:***@`)."""

    # `LIANBAN_X=` (an empty value, as compose files write) means the default.
    model_config = SettingsConfigDict(
        env_prefix=PREFIX, env_ignore_empty=True, frozen=True, extra="ignore"
    )

    database_url: str = Field(
        "sqlite:///var/lianban.db",
        repr=False,
        description="SQLAlchemy URL of the router's database (SQLite embedded, PostgreSQL real).",
    )
    broker_url: str = Field(
        "memory://",
        repr=False,
        description="kombu URL of the broker: memory:// embedded, amqp://… for RabbitMQ.",
    )
    materials_dir: Path = Field(
        Path("var/materials"), description="Where uploaded materials are stored on disk."
    )
    materials_url: str | None = Field(
        None,
        description="s3://bucket/prefix?endpoint_url=… (or file:///dir): replaces "
        "LIANBAN_MATERIALS_DIR when set.",
    )
    host: str = Field("127.0.0.1", description="Address the HTTP API (or a simulator) binds.")
    port: int = Field(8400, ge=0, le=65535, description="Port of the HTTP API (or a simulator).")
    log_level: Literal["debug", "info", "warning", "error", "critical"] = Field(
        "info", description="Lowest level logged."
    )
    log_format: Literal["auto", "console", "json"] = Field(
        "auto",
        description="console: lines for people; json: one object a line for machines; "
        "auto: console when standard error is a terminal, else json.",
    )
    traces_exporter: Literal["none", "console", "otlp"] = Field(
        "none", description="Where spans go: none, console (JSON lines on stdout) or otlp."
    )
    health_host: str = Field(
        "127.0.0.1", description="Address of /healthz and /readyz of a process without the API."
    )
    health_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="Port of /healthz and /readyz of a process without the API (an adapter).",
    )
    callback_backoff_seconds: float = Field(
        1.0, gt=0, description="First retry delay of a failed callback; doubles up to 10 min."
    )
    courier_url: str | None = Field(
        None,
        description="Base URL of the courier API (contracts/courier.py) post deliveries "
        "(邮寄送达) get their waybills from; unset, they wait for one.",
    )
    courier_backoff_seconds: float = Field(
        1.0,
        gt=0,
        description="First retry delay of a failed waybill request; doubles up to 10 min.",
    )
    courier_tracking_seconds: float = Field(
        600.0,
        gt=0,
        description="How often a parcel in transit has its tracking read, until signed for "
        "(the courier's proof of delivery is then recorded).",
    )
    poll_round_seconds: float = Field(
        5.0, gt=0, description="How often the poll scheduler sends the decision polls due."
    )
    poll_jitter_seconds: float = Field(
        30.0, ge=0, description="Random delay that spreads decision polls falling due together."
    )
    decisions_host: str = Field(
        "127.0.0.1",
        description="Address where an adapter process serves POST /v1/decisions/<department> "
        "for departments that call back.",
    )
    decisions_port: int | None = Field(
        None, ge=0, le=65535, description="Port of the adapter's decision endpoint."
    )
    decisions_secret: str | None = Field(
        None,
        repr=False,
        description="Secret departments sign decision pushes with (HMAC-SHA256 of the body).",
    )
    tokens_file: Path | None = Field(
        None,
        description="JSON list of API token digests (`lianban token new`); without it the "
        "API refuses every request.",
    )
    api_tokens: tuple[ApiToken, ...] = Field((), exclude=True)
    """Who may call the HTTP API when no LIANBAN_TOKENS_FILE is set: given in code (tests,
    the demo). A tokens file is read again when it changes (lianban.stack.api_tokens)."""
    auth_failures_per_minute: int = Field(
        30,
        gt=0,
        description="Unknown or expired tokens one client may present in a minute before "
        "every request of its is refused (429) for the rest of that minute.",
    )
    tls_certfile: Path | None = Field(None, description="Serve HTTPS with this certificate (PEM).")
    tls_keyfile: Path | None = Field(None, description="The HTTPS certificate's key (PEM).")
    tls_ca_certs: Path | None = Field(
        None, description="Require client certificates signed by this CA (mutual TLS)."
    )
    signing_keys_dir: Path | None = Field(
        None,
        description="Private keys this process signs messages with: `<signer>.pem`, an "
        "unencrypted Ed25519 key in PEM, PKCS #8 (as `lianban keys new` or `openssl genpkey "
        "-algorithm ed25519` writes it).",
    )
    trusted_keys: Path | None = Field(
        None, description="Public keys whose signatures this process accepts (`lianban keys new`)."
    )
    filedrop_dir: Path | None = Field(
        None, description="The front-end machine (前置机) exchange: inbox/, processed/, failed/."
    )
    sms_gateway_url: str | None = Field(
        None,
        repr=False,
        description="The SMS gateway (短信平台) the applicant's 受理 / 不予受理 messages are "
        "POSTed to; unset, no message is sent and the timeline says so.",
    )
    notice_font_file: Path = Field(
        Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
        description="The CJK TrueType font (or collection) embedded in 受理通知书 and "
        "不予受理决定书 PDFs.",
    )
    audit_key_file: Path | None = Field(
        None,
        description="Secret (at least 32 bytes) every process signs its audit records with, so "
        "rows inserted from outside never verify; without it a public development key.",
    )
    audit_retention_days: int = Field(
        190, description="How long audit records are kept; at least 184 (网络安全法 第二十一条)."
    )
    rabbitmq_management_url: str | None = Field(
        None,
        repr=False,
        description="RabbitMQ management API (`lianban queues`, the ops page); default: the "
        "broker's host, port 15672, the broker's credentials.",
    )
    metrics_host: str = Field(
        "127.0.0.1", description="Address of /metrics of a process without the API."
    )
    metrics_port: int | None = Field(
        None, ge=0, le=65535, description="Port of /metrics of a process without the API."
    )
    adapter_metrics_urls: CommaSeparated = Field(
        (), description="Comma-separated adapters' /metrics URLs, read by the ops page."
    )
    outbound_hosts: CommaSeparated = Field(
        (),
        description="The only hosts callbacks and department systems may be reached at "
        "(comma-separated); unset, any host with public addresses only.",
    )
    callback_url_prefixes: CommaSeparated = Field(
        (),
        description="Comma-separated URL prefixes (`https://host[:port]/path`) an "
        "application's callback_url must lie under, else intake refuses it (422 "
        "callback_url_not_allowed); unset, any URL LIANBAN_OUTBOUND_HOSTS allows.",
    )
    callback_secret_file: Path | None = Field(
        None,
        description="File holding the secret (`whsec_…`, `lianban callback-secret`) every "
        "callback is signed with (Standard Webhooks); without it a public development secret.",
    )
    max_body_bytes: int = Field(
        DEFAULT_MAX_BODY_BYTES,
        gt=0,
        description="The largest request body the API reads (materials excepted): larger "
        "ones get 413.",
    )
    calendar_dir: Path | None = Field(
        None,
        description="Operator's working-day year files (`<year>.yaml`), read by "
        "router.domain.workdays; they win over the bundled calendar.",
    )
    adapter_areas: dict[str, list[str]] = Field(
        default_factory=dict,
        description="JSON: department → the GB/T 2260 prefixes its deployed adapters serve, "
        "one queue each (each adapter started with `--area`); an item goes to the most "
        "specific area covering the office that decides it, and an application with an item "
        "none covers is refused (area_not_served). A department not listed: one adapter for "
        "the whole province.",
    )
    catalog_dir: Path | None = Field(
        None,
        description="Where an operator publishes catalog versions: each subdirectory "
        "`<version>/` is a whole catalog data tree; the newest name becomes current without a "
        "restart, and bundles finish under the version they were accepted under.",
    )
    catalog_check_seconds: float = Field(
        30.0, gt=0, description="How often router roles look for a newly published catalog version."
    )
    calendar_check_seconds: float = Field(
        60.0,
        gt=0,
        description="How often router roles re-read the year files and the installed "
        "chinesecalendar for a changed year.",
    )
    deadline_check_seconds: float = Field(
        30.0, gt=0, description="How often the deadline watcher looks for 预警 and 超期."
    )
    rectification_working_days: int = Field(
        15,
        ge=1,
        le=60,
        description="Working days a department has to rectify a 差评 and reply to the "
        "applicant (整改反馈; 国办发〔2019〕51号 asks a limit, provinces set 15 or fewer).",
    )
    certificate_library_url: str | None = Field(
        None,
        description="The certificate library (电子证照库) cited licences are verified and "
        "fetched from; unset: a cited licence is refused as unverifiable.",
    )
    certificate_library_plugin: str = Field(
        "http",
        description="Its connector: an entry point of the `lianban.certificate_libraries` group.",
    )
    certificate_library_timeout_seconds: float = Field(
        3.0, gt=0, le=60, description="How long one call to the certificate library may take."
    )
    certificate_library_concurrency: int = Field(
        8,
        ge=1,
        le=64,
        description="Calls to the certificate library in flight at once, for all applications.",
    )
    failpoints: str | None = Field(
        None, description="Chaos tests only: crash points, e.g. relay.after_publish=3."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _Environment(settings_cls)

    @field_validator("adapter_metrics_urls", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        return tuple(url for url in value.split(",") if url) if isinstance(value, str) else value

    @field_validator("outbound_hosts", mode="before")
    @classmethod
    def _parse_hosts(cls, value: Any) -> Any:
        return parse_hosts(value) if isinstance(value, str) else value

    @field_validator("callback_url_prefixes", mode="before")
    @classmethod
    def _parse_prefixes(cls, value: Any) -> Any:
        return parse_prefixes(value) if isinstance(value, str) else value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The process's settings (or those of `environ`); an invalid value raises a
        ConfigurationError naming the variable and what it accepts."""
        try:
            if environ is None:
                return cls()
            values = {
                name.removeprefix(PREFIX).lower(): value
                for name, value in environ.items()
                if name.startswith(PREFIX)
                and value
                and name.removeprefix(PREFIX).lower() in _FROM_ENV
            }
            return cls.model_validate(values)
        except ValidationError as error:
            raise ConfigurationError(_explain(error)) from None

    @property
    def tls(self) -> TlsFiles | None:
        """Serve HTTPS, and with a CA bundle require client certificates (mutual TLS)."""
        if self.tls_certfile is None or self.tls_keyfile is None:
            return None
        return TlsFiles(self.tls_certfile, self.tls_keyfile, self.tls_ca_certs)

    def effective(self) -> dict[str, str]:
        """Every variable and its value, credentials in URLs masked."""
        values = self.model_dump(mode="json")
        return {
            variable_name(name): mask_text("" if values[name] is None else _shown(values[name]))
            for name in _FROM_ENV
        }


def _shown(value: Any) -> str:
    return ",".join(value) if isinstance(value, list) else str(value)


class _Environment(EnvSettingsSource):
    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if field_name in _NOT_FROM_ENVIRONMENT:
            return None, field_name, False
        return super().get_field_value(field, field_name)


_FROM_ENV = [name for name in Settings.model_fields if name not in _NOT_FROM_ENVIRONMENT]


def variable_name(field_name: str) -> str:
    return PREFIX + field_name.upper()


def _explain(error: ValidationError) -> str:
    """One line: the first invalid variable, the value given and what it accepts."""
    problem = error.errors()[0]
    name = variable_name(str(problem["loc"][0])) if problem["loc"] else "settings"
    given = problem.get("input")
    accepts = problem["msg"]
    expected = (problem.get("ctx") or {}).get("expected")
    if expected:
        accepts = f"expected one of {expected}"
    return f"{name}={given!r} is invalid: {accepts}"


def variables() -> list[tuple[str, str, str]]:
    """(variable, default, description) of every LIANBAN_* variable, in declaration order."""
    rows = []
    for name in _FROM_ENV:
        field = Settings.model_fields[name]
        default = field.default
        shown = "" if default is None or default == () else _shown(default)
        rows.append((variable_name(name), shown, field.description or ""))
    rows += [(name, "", description) for name, description in PER_DEPARTMENT_VARIABLES.items()]
    return rows


def markdown_table() -> str:
    """The README's table of variables (tests/test_settings.py keeps the README in step)."""
    lines = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for name, default, description in variables():
        shown = f"`{default}`" if default else ""
        escaped = description.replace("|", r"\|")
        lines.append(f"| `{name}` | {shown} | {escaped} |")
    return "\n".join(lines) + "\n"


def audit_key(settings: Settings) -> bytes:
    """The audit key from LIANBAN_AUDIT_KEY_FILE, or the development key."""
    if settings.audit_key_file is None:
        if not settings.database_url.startswith("sqlite"):
            log.warning(
                "audit.development_key",
                hint="set LIANBAN_AUDIT_KEY_FILE: with the public development key, rows "
                "inserted from outside would verify",
            )
        from router.store.engine import DEVELOPMENT_AUDIT_KEY

        return DEVELOPMENT_AUDIT_KEY
    key = settings.audit_key_file.read_bytes().strip()
    if len(key) < _AUDIT_KEY_MINIMUM:
        raise ConfigurationError(
            f"{settings.audit_key_file} holds {len(key)} bytes; an audit key needs "
            f"{_AUDIT_KEY_MINIMUM} (e.g. `head -c 48 /dev/urandom | base64`)"
        )
    return key


def outbound_policy(settings: Settings) -> OutboundPolicy:
    """Where callbacks and department systems may be reached (runtime.outbound)."""
    return OutboundPolicy(settings.outbound_hosts, settings.callback_url_prefixes)


def callback_secret(settings: Settings) -> SecretStr:
    """The secret callbacks are signed with, from LIANBAN_CALLBACK_SECRET_FILE, or the
    development secret (a warning outside SQLite: anyone may sign with it)."""
    if settings.callback_secret_file is None:
        if not settings.database_url.startswith("sqlite"):
            log.warning(
                "callbacks.development_secret",
                hint="set LIANBAN_CALLBACK_SECRET_FILE: with the public development secret, "
                "anyone can sign a callback the platform accepts",
            )
        return DEVELOPMENT_CALLBACK_SECRET
    secret = SecretStr(settings.callback_secret_file.read_text(encoding="utf-8").strip())
    try:
        secret_key(secret)
    except BadWebhookSecret as error:
        # The reason only: the file's content is the secret.
        raise ConfigurationError(f"{settings.callback_secret_file}: {error}") from None
    return secret


# Public on purpose, like the development audit key: for the embedded mode and tests.
DEVELOPMENT_CALLBACK_SECRET = SecretStr("whsec_bGlhbmJhbiBkZXZlbG9wbWVudCBjYWxsYmFjayBzZWNyZXQ=")


def open_database(settings: Settings) -> Database:
    """The configured database, its audit records signed with the configured key."""
    from router.store import Database

    return Database(settings.database_url, audit_key=audit_key(settings))


_AUDIT_KEY_MINIMUM = 32


@dataclass(frozen=True)
class TlsFiles:
    """LIANBAN_TLS_CERTFILE and LIANBAN_TLS_KEYFILE (PEM); LIANBAN_TLS_CA_CERTS, when set,
    makes a client certificate signed by that CA mandatory."""

    certfile: Path
    keyfile: Path
    client_ca: Path | None = None

    def uvicorn_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"ssl_certfile": self.certfile, "ssl_keyfile": self.keyfile}
        if self.client_ca is not None:
            options |= {"ssl_ca_certs": self.client_ca, "ssl_cert_reqs": ssl.CERT_REQUIRED}
        return options
