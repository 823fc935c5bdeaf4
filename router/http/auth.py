"""Who may call the HTTP API: bearer tokens, each with scopes and an expiry.

Configuration holds only each token's SHA-256 digest (a tokens file, `LIANBAN_TOKENS_FILE`),
so a leaked configuration opens nothing; the token itself is shown once, when it is minted
(`lianban token new`). Tokens are 256 random bits, so a plain digest cannot be guessed
back. A request is refused before its route runs: it leaves no trace in state.

    missing or unknown token → 401    expired → 401    token without the scope → 403
    too many unknown or expired tokens from one client this minute → 429 (router.http.guessing)

The tokens are read through `app.state.api_tokens`, a callable: a tokens file is read
again when it changes (`runtime.reloading`), so a revoked token is refused within a minute.
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
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from contracts.errors import ConfigurationError
from router.http.guessing import CredentialGuesses

TOKEN_PREFIX = "lb_"
REALM = "lianban"


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


_bearer = HTTPBearer(auto_error=False, description="A token minted with `lianban token new`")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def authorize(
    request: Request, credentials: HTTPAuthorizationCredentials | None, scope: str
) -> ApiToken:
    """The caller's token if it is valid and carries `scope`; otherwise a 401 or 403."""
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="a bearer token is required",
            headers={"WWW-Authenticate": f'Bearer realm="{REALM}"'},
        )
    guesses: CredentialGuesses | None = getattr(request.app.state, "guesses", None)
    client = request.client.host if request.client else "unknown"
    retry_after = guesses.retry_after(client) if guesses else None
    if retry_after is not None:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail="too many unknown tokens from this client; retry later",
            headers={"Retry-After": str(retry_after)},
        )
    tokens: Tokens = getattr(request.app.state, "api_tokens", fixed_tokens(()))
    token = find_token(tokens(), credentials.credentials)
    if token is None:
        if guesses is not None:
            guesses.refused(client)
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="the token is unknown or expired",
            headers={"WWW-Authenticate": f'Bearer realm="{REALM}", error="invalid_token"'},
        )
    if scope not in token.scopes:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"the token lacks the scope {scope}",
            headers={
                # A manual scope holds the department from the URL, which may be anything:
                # percent-encoded, it always fits a header (found by tests/test_fuzz_intake.py).
                "WWW-Authenticate": f'Bearer realm="{REALM}", error="insufficient_scope", '
                f'scope="{quote(scope, safe=":")}"'
            },
        )
    return token


def require_scope(scope: str) -> Callable[..., ApiToken]:
    """A FastAPI dependency admitting only callers whose token carries `scope`:
    `dependencies=[Depends(require_scope(Scope.OPS))]`, or a parameter to learn who called."""

    def authorized(request: Request, credentials: Credentials) -> ApiToken:
        return authorize(request, credentials, scope)

    return authorized
