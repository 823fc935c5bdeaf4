"""API tokens as configuration holds them: each one's holder, SHA-256 digest, scopes and
expiry, minted once and read from LIANBAN_TOKENS_FILE. No web framework here: settings
and the command line use tokens without loading one (the checks are `router.http.auth`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from contracts.errors import ConfigurationError

TOKEN_PREFIX = "lb_"


class Scope(StrEnum):
    BUNDLES_WRITE = "bundles:write"  # submit, withdraw, correct
    BUNDLES_READ = "bundles:read"  # status, timeline, reply, catalog
    FILES_WRITE = "files:write"  # upload materials
    FILES_READ = "files:read"  # pull a bundle's files
    OPS = "ops"  # operator pages: metrics, dead-letter replay


def manual_scope(department: str) -> str:
    """The scope of one department's staff on the manual work queue."""
    return f"manual:{department}"


@dataclass(frozen=True)
class ApiToken:
    """A configured token: its name (who holds it), digest, scopes and expiry."""

    name: str
    sha256: str
    scopes: frozenset[str]
    expires_at: datetime | None = None

    @property
    def token_id(self) -> str:
        """A short id that names the token in the audit log without opening anything."""
        return self.sha256[:12]

    @property
    def actor(self) -> str:
        """Who acted, for the timeline and the audit log: the holder (a staff member's
        own name on their token) and the token."""
        return f"{self.name[:100]} (token {self.token_id})"

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sha256": self.sha256,
            "scopes": sorted(self.scopes),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
        }

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> ApiToken:
        expires = entry.get("expires_at")
        expires_at = datetime.fromisoformat(expires) if expires else None
        if expires_at is not None and expires_at.tzinfo is None:
            raise ConfigurationError(f"token {entry['name']!r}: expires_at needs a time zone")
        return cls(
            name=str(entry["name"]),
            sha256=str(entry["sha256"]).lower(),
            scopes=frozenset(entry["scopes"]),
            expires_at=expires_at,
        )


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def mint(
    name: str, scopes: Iterable[str], lifetime: timedelta | None = None
) -> tuple[SecretStr, ApiToken]:
    """A new token (to hand over once) and the entry configuration keeps for it."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = datetime.now(UTC) + lifetime if lifetime is not None else None
    return SecretStr(token), ApiToken(name, digest(token), frozenset(scopes), expires_at)


def load_tokens(path: Path) -> tuple[ApiToken, ...]:
    """The tokens file: a JSON list of `ApiToken.as_json` entries."""
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
        return tuple(ApiToken.from_json(entry) for entry in entries)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigurationError(f"cannot read the tokens file {path}: {error}") from None


Tokens = Callable[[], Sequence[ApiToken]]
"""The tokens in force now."""


def fixed_tokens(tokens: Sequence[ApiToken]) -> Tokens:
    return lambda: tokens


def find_token(
    tokens: Sequence[ApiToken], presented: str, now: datetime | None = None
) -> ApiToken | None:
    """The configured token `presented` is, if any and unexpired.

    Every digest is compared, in constant time, so timing tells nothing about which
    entry nearly matched.
    """
    presented_digest = digest(presented)
    found: ApiToken | None = None
    for token in tokens:
        if hmac.compare_digest(token.sha256, presented_digest) and found is None:
            found = token
    if found is None or (found.expires_at is not None and found.expires_at <= (now or _now())):
        return None
    return found


def _now() -> datetime:
    return datetime.now(UTC)
