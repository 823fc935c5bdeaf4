"""Settings from environment variables (LIANBAN_*), with the embedded mode as default."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///var/lianban.db"
    broker_url: str = "memory://"
    materials_dir: Path = Path("var/materials")
    materials_url: str | None = None
    """s3://bucket/prefix?endpoint_url=… (or file:///dir): replaces materials_dir when set."""
    host: str = "127.0.0.1"
    port: int = 8400
    log_level: str = "info"
    callback_backoff_seconds: float = 1.0
    """First retry delay of a failed callback; it doubles up to ten minutes."""
    manual_tokens: dict[str, str] = field(default_factory=dict)
    """Bearer token of each manual department's work queue (LIANBAN_MANUAL_TOKENS=dept=token,…)."""
    filedrop_dir: Path | None = None
    """The front-end machine (前置机) exchange: inbox/, processed/, failed/ and outbox/."""

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        defaults = cls()
        filedrop = env.get("LIANBAN_FILEDROP_DIR")
        return cls(
            database_url=env.get("LIANBAN_DATABASE_URL", defaults.database_url),
            broker_url=env.get("LIANBAN_BROKER_URL", defaults.broker_url),
            materials_dir=Path(env.get("LIANBAN_MATERIALS_DIR", str(defaults.materials_dir))),
            materials_url=env.get("LIANBAN_MATERIALS_URL") or None,
            host=env.get("LIANBAN_HOST", defaults.host),
            port=int(env.get("LIANBAN_PORT", str(defaults.port))),
            log_level=env.get("LIANBAN_LOG_LEVEL", defaults.log_level),
            manual_tokens=_pairs(env.get("LIANBAN_MANUAL_TOKENS", "")),
            filedrop_dir=Path(filedrop) if filedrop else None,
        )


def _pairs(text: str) -> dict[str, str]:
    pairs = (entry.split("=", 1) for entry in text.split(",") if entry.strip())
    return {key.strip(): value.strip() for key, value in pairs}
