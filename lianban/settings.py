"""Settings from environment variables (LIANBAN_*), with the embedded mode as default."""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from router.http.auth import ApiToken, load_tokens


@dataclass(frozen=True)
class Settings:
    """Where URLs may carry credentials, they are left out of the repr, so printing or
    logging settings never shows a password (log lines also mask `scheme://user:***@`)."""

    database_url: str = field(default="sqlite:///var/lianban.db", repr=False)
    broker_url: str = field(default="memory://", repr=False)
    materials_dir: Path = Path("var/materials")
    materials_url: str | None = None
    """s3://bucket/prefix?endpoint_url=… (or file:///dir): replaces materials_dir when set."""
    host: str = "127.0.0.1"
    port: int = 8400
    log_level: str = "info"
    traces_exporter: str = "none"
    """Where spans go: none, console (JSON lines on stdout) or otlp (runtime.tracing)."""
    health_host: str = "127.0.0.1"
    health_port: int | None = None
    """Where a process without the HTTP API serves /healthz and /readyz (runtime.health)."""
    callback_backoff_seconds: float = 1.0
    """First retry delay of a failed callback; it doubles up to ten minutes."""
    poll_round_seconds: float = 5.0
    poll_jitter_seconds: float = 30.0
    """The poll scheduler's round, and the random delay that spreads polls due together."""
    decisions_host: str = "127.0.0.1"
    decisions_port: int | None = None
    """Where an adapter process serves POST /v1/decisions/<department> for departments
    that call back (`decisions = CalledBack()`)."""
    decisions_secret: str | None = field(default=None, repr=False)
    """The secret departments sign their decision pushes with (HMAC-SHA256 of the body)."""
    api_tokens: tuple[ApiToken, ...] = ()
    """Who may call the HTTP API, as digests (LIANBAN_TOKENS_FILE; `lianban token new`)."""
    tls: TlsFiles | None = None
    """Serve HTTPS, and with a CA bundle require client certificates (mutual TLS)."""
    signing_keys_dir: Path | None = None
    """Private keys this process signs messages with: `<signer>.pem` (router, departments)."""
    trusted_keys_file: Path | None = None
    """Public keys whose signatures this process accepts (`lianban keys new` prints them)."""
    filedrop_dir: Path | None = None
    """The front-end machine (前置机) exchange: inbox/, processed/, failed/ and outbox/."""
    audit_retention_days: int = 190
    """How long audit records are kept; at least 184 (six months, 网络安全法 第二十一条)."""
    rabbitmq_management_url: str | None = field(default=None, repr=False)
    """The RabbitMQ management API (`lianban queues`, the ops page); default: the broker's
    host, port 15672, with the broker's credentials."""
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    """Where a process without the HTTP API (an adapter) serves its own /metrics."""
    adapter_metrics_urls: tuple[str, ...] = ()
    """The adapters' /metrics, read by the ops page for their circuit breakers."""
    calendar_check_seconds: float = 60.0
    """How often router roles re-read the year files (LIANBAN_CALENDAR_DIR) and the
    installed chinesecalendar for a changed year (router.domain.calendar_watcher)."""
    deadline_check_seconds: float = 30.0
    """How often the deadline watcher looks for 预警 and 超期 (router.domain.deadlines)."""

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        defaults = cls()
        filedrop = env.get("LIANBAN_FILEDROP_DIR")
        tokens_file = env.get("LIANBAN_TOKENS_FILE")
        metrics_port = env.get("LIANBAN_METRICS_PORT")
        health_port = env.get("LIANBAN_HEALTH_PORT")
        decisions_port = env.get("LIANBAN_DECISIONS_PORT")
        return cls(
            database_url=env.get("LIANBAN_DATABASE_URL", defaults.database_url),
            broker_url=env.get("LIANBAN_BROKER_URL", defaults.broker_url),
            materials_dir=Path(env.get("LIANBAN_MATERIALS_DIR", str(defaults.materials_dir))),
            materials_url=env.get("LIANBAN_MATERIALS_URL") or None,
            host=env.get("LIANBAN_HOST", defaults.host),
            port=int(env.get("LIANBAN_PORT", str(defaults.port))),
            log_level=env.get("LIANBAN_LOG_LEVEL", defaults.log_level),
            traces_exporter=env.get("LIANBAN_TRACES_EXPORTER", defaults.traces_exporter),
            health_host=env.get("LIANBAN_HEALTH_HOST", defaults.health_host),
            decisions_host=env.get("LIANBAN_DECISIONS_HOST", defaults.decisions_host),
            decisions_port=int(decisions_port) if decisions_port else None,
            decisions_secret=env.get("LIANBAN_DECISIONS_SECRET") or None,
            health_port=int(health_port) if health_port else None,
            api_tokens=load_tokens(Path(tokens_file)) if tokens_file else (),
            tls=TlsFiles.from_env(env),
            signing_keys_dir=_path(env.get("LIANBAN_SIGNING_KEYS_DIR")),
            trusted_keys_file=_path(env.get("LIANBAN_TRUSTED_KEYS")),
            filedrop_dir=Path(filedrop) if filedrop else None,
            audit_retention_days=int(
                env.get("LIANBAN_AUDIT_RETENTION_DAYS", str(defaults.audit_retention_days))
            ),
            rabbitmq_management_url=env.get("LIANBAN_RABBITMQ_MANAGEMENT_URL") or None,
            metrics_host=env.get("LIANBAN_METRICS_HOST", defaults.metrics_host),
            metrics_port=int(metrics_port) if metrics_port else None,
            adapter_metrics_urls=tuple(
                url for url in env.get("LIANBAN_ADAPTER_METRICS_URLS", "").split(",") if url
            ),
            calendar_check_seconds=float(
                env.get("LIANBAN_CALENDAR_CHECK_SECONDS", str(defaults.calendar_check_seconds))
            ),
            deadline_check_seconds=float(
                env.get("LIANBAN_DEADLINE_CHECK_SECONDS", str(defaults.deadline_check_seconds))
            ),
        )


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


@dataclass(frozen=True)
class TlsFiles:
    """LIANBAN_TLS_CERTFILE and LIANBAN_TLS_KEYFILE (PEM); LIANBAN_TLS_CA_CERTS, when set,
    makes a client certificate signed by that CA mandatory."""

    certfile: Path
    keyfile: Path
    client_ca: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TlsFiles | None:
        certfile, keyfile = env.get("LIANBAN_TLS_CERTFILE"), env.get("LIANBAN_TLS_KEYFILE")
        if not certfile or not keyfile:
            return None
        client_ca = env.get("LIANBAN_TLS_CA_CERTS")
        return cls(Path(certfile), Path(keyfile), Path(client_ca) if client_ca else None)

    def uvicorn_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"ssl_certfile": self.certfile, "ssl_keyfile": self.keyfile}
        if self.client_ca is not None:
            options |= {"ssl_ca_certs": self.client_ca, "ssl_cert_reqs": ssl.CERT_REQUIRED}
        return options
